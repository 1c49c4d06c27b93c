//! One tenant cannot starve another: quotas on keys, topics, subscriptions,
//! webhooks and fan-out bytes, each refusal a 403 naming the quota; a per-tenant
//! rate limit over all of a tenant's keys; filter policies with bounds.

mod common;

use common::{spawn_app_with, Bearer, ExpectProblem, TestApp};
use keel_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

fn small() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.limits.max_keys_per_tenant = 3;
    config.limits.max_topics_per_tenant = 2;
    config.limits.max_subscriptions_per_tenant = 3;
    config.limits.max_webhooks_per_tenant = 1;
    config.limits.max_fanout_bytes_per_publish = 10_000;
    config
}

async fn expect_quota(request: reqwest::RequestBuilder, quota: &str) {
    let problem = request.problem(403).await;
    assert_eq!(problem["type"], "urn:keel:problem:quota-exceeded");
    assert_eq!(problem["quota"], quota, "{problem}");
    assert!(problem["limit"].is_u64());
}

fn subscribe(
    app: &TestApp,
    key: &str,
    topic: &str,
    name: &str,
    target: Value,
) -> reqwest::RequestBuilder {
    app.request(
        Method::PUT,
        &format!("/v1/topics/{topic}/subscriptions/{name}"),
    )
    .json(&json!({ "target": target }))
    .key(key)
}

#[tokio::test]
async fn keys_per_tenant() {
    let app = spawn_app_with(small()).await;
    let owner = app.register("keys@example.com").await;
    // The owner key is the first of three.
    for _ in 0..2 {
        let response = app
            .post_json("/v1/keys", json!({"scopes": ["read"]}))
            .key(&owner)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    expect_quota(
        app.post_json("/v1/keys", json!({"scopes": ["read"]}))
            .key(&owner),
        "keys_per_tenant",
    )
    .await;
    // Another tenant is unaffected.
    let other = app.register("other@example.com").await;
    let response = app
        .post_json("/v1/keys", json!({"scopes": ["read"]}))
        .key(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn topics_subscriptions_and_webhooks_per_tenant() {
    let app = spawn_app_with(small()).await;
    let key = app.register("bus@example.com").await;
    for topic in ["a", "b"] {
        let response = app
            .request(Method::PUT, &format!("/v1/topics/{topic}"))
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    expect_quota(
        app.request(Method::PUT, "/v1/topics/c").key(&key),
        "topics_per_tenant",
    )
    .await;
    // Publishing creates topics too, and is held to the same quota.
    expect_quota(
        app.post_json("/v1/topics/d/messages", json!({"body": 1}))
            .key(&key),
        "topics_per_tenant",
    )
    .await;
    let hook = json!({"type": "webhook", "url": "https://hooks.example.com/x", "secret": "a-secret-of-16-chars"});
    assert_eq!(
        subscribe(&app, &key, "a", "h1", hook.clone())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    expect_quota(
        subscribe(&app, &key, "a", "h2", hook),
        "webhooks_per_tenant",
    )
    .await;
    for name in ["q1", "q2"] {
        let status = subscribe(&app, &key, "b", name, json!({"type": "queue"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    expect_quota(
        subscribe(&app, &key, "b", "q3", json!({"type": "queue"})),
        "subscriptions_per_tenant",
    )
    .await;
    // Replacing an existing subscription is not a new one.
    let status = subscribe(&app, &key, "b", "q1", json!({"type": "queue"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn fan_out_bytes_per_publish() {
    let app = spawn_app_with(small()).await;
    let key = app.register("fanout@example.com").await;
    for name in ["q1", "q2", "q3"] {
        subscribe(&app, &key, "wide", name, json!({"type": "queue"}))
            .send()
            .await
            .unwrap();
    }
    // 4 KB copied to three queues is 12 KB: over the 10 KB quota.
    let big = "x".repeat(4000);
    expect_quota(
        app.post_json("/v1/topics/wide/messages", json!({"body": big}))
            .key(&key),
        "fanout_bytes_per_publish",
    )
    .await;
    let response = app
        .post_json(
            "/v1/topics/wide/messages",
            json!({"body": "x".repeat(3000)}),
        )
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_tenant_rate_limit_spans_all_its_keys() {
    let mut config = ServerConfig::default();
    config.limits.tenant_rate_limit_per_second = 0.001;
    config.limits.tenant_rate_limit_burst = 6.0;
    let app = spawn_app_with(config).await;
    let owner = app.register("rate@example.com").await;
    let second = app
        .post_json_with("/v1/keys", json!({"scopes": ["read"]}), &owner)
        .await;
    let second = second["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let key = if i % 2 == 0 { &owner } else { &second };
        statuses.push(
            app.get("/v1/me")
                .key(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    // One request went to creating the second key; five more fit in the burst.
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another tenant is unaffected.
    let other = app.register("calm@example.com").await;
    assert_eq!(
        app.get("/v1/me").key(&other).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn filter_policies_are_bounded() {
    let app = spawn_app_with(ServerConfig::default()).await;
    let key = app.register("filters@example.com").await;
    let alternatives: Vec<Value> = (0..330_000).map(|_| json!({})).collect();
    let problem = app
        .request(Method::PUT, "/v1/topics/t/subscriptions/s")
        .json(&json!({"target": {"type": "queue"}, "filter": {"$or": alternatives}}))
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(problem["errors"][0]["pointer"], "/filter/$or");
}

#[tokio::test]
async fn fan_out_bytes_per_second_per_tenant() {
    let mut config = small();
    config.limits.fanout_bytes_per_second_per_tenant = 1_000;
    let app = spawn_app_with(config).await;
    let key = app.register("stream@example.com").await;
    for name in ["q1", "q2", "q3"] {
        subscribe(&app, &key, "wide", name, json!({"type": "queue"}))
            .send()
            .await
            .unwrap();
    }
    // 3 KB to three queues is 9 KB a call: the burst (one publish's quota, 10 KB)
    // takes the first, the second goes into debt, the third waits.
    let publish = || {
        app.post_json(
            "/v1/topics/wide/messages",
            json!({"body": "x".repeat(3000)}),
        )
        .key(&key)
    };
    assert_eq!(publish().send().await.unwrap().status(), 202);
    assert_eq!(publish().send().await.unwrap().status(), 202);
    let refused = publish().send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another tenant publishes meanwhile.
    let other = app.register("other-stream@example.com").await;
    let response = app
        .post_json(
            "/v1/topics/wide/messages",
            json!({"body": "x".repeat(3000)}),
        )
        .key(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}
