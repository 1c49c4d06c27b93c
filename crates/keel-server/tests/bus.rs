//! SPEC §4 queue semantics through HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{
    expect_problem, local_webhooks, spawn_app, spawn_app_with, Bearer, ExpectProblem, TestApp,
};
use serde_json::{json, Value};

async fn subscribe(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.request(reqwest::Method::PUT, "/v1/topics/orders/subscriptions/q")
        .json(&body)
        .key(key)
        .send()
        .await
        .unwrap()
}

async fn receive(app: &TestApp, key: &str, body: Value) -> Vec<Value> {
    let response = app
        .post_json("/v1/queues/orders/q/receive", body)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn publish_filter_receive_ack() {
    let app = spawn_app().await;
    let key = app.register("bus@example.com").await;
    let sub = subscribe(
        &app,
        &key,
        json!({"filter": {"kind": ["created"]}, "target": {"type": "queue"}, "max_receives": 3}),
    )
    .await;
    assert_eq!(sub.status(), 200);
    let published = app
        .post_json(
            "/v1/topics/orders/messages",
            json!({"messages": [
                {"body": {"n": 1}, "attributes": {"kind": "created"}},
                {"body": {"n": 2}, "attributes": {"kind": "deleted"}},
                {"body": {"n": 3}, "attributes": {"kind": "created", "total": 5}, "id": "dedup-3"}
            ]}),
        )
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    let ids: Value = published.json().await.unwrap();
    assert_eq!(ids["ids"].as_array().unwrap().len(), 3);
    let got = receive(&app, &key, json!({"max": 10})).await;
    let bodies: Vec<i64> = got
        .iter()
        .map(|m| m["body"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(bodies, [1, 3], "filtered, in publish order");
    for field in [
        "receipt",
        "receive_count",
        "id",
        "body",
        "attributes",
        "published_at",
    ] {
        assert!(got[0].get(field).is_some(), "{field}");
    }
    let receipts: Vec<Value> = got.iter().map(|m| m["receipt"].clone()).collect();
    let acked = app
        .post_json("/v1/queues/orders/q/ack", json!({"receipts": receipts}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let again = app
        .post_json("/v1/queues/orders/q/ack", json!({"receipts": receipts}))
        .key(&key)
        .send()
        .await
        .unwrap();
    expect_problem(again, 404).await;
    let stats: Value = app.get_json("/v1/queues/orders/q", &key).await;
    assert_eq!(
        stats,
        json!({"depth": 0, "in_flight": 0, "oldest_age_s": 0, "dlq_depth": 0})
    );
}

#[tokio::test]
async fn long_poll_answers_as_soon_as_a_message_arrives() {
    let app = std::sync::Arc::new(spawn_app().await);
    let key = app.register("poll@example.com").await;
    subscribe(&app, &key, json!({"target": {"type": "queue"}})).await;
    let started = Instant::now();
    let publisher = {
        let (app, key) = (app.clone(), key.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.post_json("/v1/topics/orders/messages", json!({"body": "wake"}))
                .key(&key)
                .send()
                .await
                .unwrap();
        })
    };
    let got = receive(&app, &key, json!({"max": 1, "wait_s": 10})).await;
    publisher.await.unwrap();
    assert_eq!(got[0]["body"], "wake");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // With nothing to deliver, the wait is honoured and the answer is empty.
    let started = Instant::now();
    assert!(receive(&app, &key, json!({"max": 1, "wait_s": 1}))
        .await
        .is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn expiry_dead_letters_and_redrive() {
    let app = spawn_app().await;
    let key = app.register("dlq@example.com").await;
    subscribe(
        &app,
        &key,
        json!({"target": {"type": "queue"}, "max_receives": 1, "visibility_timeout_s": 1}),
    )
    .await;
    app.post_json("/v1/topics/orders/messages", json!({"body": 7}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(receive(&app, &key, json!({})).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        receive(&app, &key, json!({})).await.is_empty(),
        "moved to the DLQ instead"
    );
    let dlq: Value = app.get_json("/v1/queues/orders/q/dlq", &key).await;
    assert_eq!(dlq["messages"][0]["body"], 7);
    let moved: Value = app
        .post_json_with("/v1/queues/orders/q/dlq/redrive", json!({}), &key)
        .await;
    assert_eq!(moved["moved"], 1);
    let back = receive(&app, &key, json!({})).await;
    assert_eq!(back[0]["receive_count"], 1);
    let nack = app
        .post_json(
            "/v1/queues/orders/q/nack",
            json!({"receipt": back[0]["receipt"], "delay_s": 0}),
        )
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(nack.status(), 204);
    let empty: Value = app
        .post_json_with("/v1/queues/orders/q/dlq/redrive", json!({}), &key)
        .await;
    assert_eq!(empty["moved"], 0);
}

#[tokio::test]
async fn bad_input_is_a_clear_problem() {
    let app = spawn_app().await;
    let key = app.register("bad@example.com").await;
    let problem = expect_problem(
        subscribe(
            &app,
            &key,
            json!({"filter": {"a": [{"numeric": [">", "x"]}]}, "target": {"type": "queue"}}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/filter/a/0/numeric/1");
    expect_problem(
        subscribe(&app, &key, json!({"target": {"type": "carrier-pigeon"}})).await,
        400,
    )
    .await;
    subscribe(&app, &key, json!({"target": {"type": "queue"}})).await;
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"body": i})).collect();
    app.post_json("/v1/topics/orders/messages", json!({"messages": too_many}))
        .key(&key)
        .problem(413)
        .await;
    app.post_json("/v1/topics/orders/messages", json!({"attributes": {}}))
        .key(&key)
        .problem(400)
        .await;
    app.post_json(
        "/v1/topics/orders/messages",
        json!({"body": 1, "attributes": {"a": [1]}}),
    )
    .key(&key)
    .problem(400)
    .await;
    app.post_json("/v1/queues/orders/q/ack", json!({"receipts": ["nope"]}))
        .key(&key)
        .problem(404)
        .await;
    app.post_json("/v1/queues/orders/q/nack", json!({"receipt": "nope"}))
        .key(&key)
        .problem(404)
        .await;
    app.post_json("/v1/queues/orders/q/receive", json!({"max": 0}))
        .key(&key)
        .problem(400)
        .await;
    app.post_json("/v1/queues/orders/q/receive", json!({"wait_s": 21}))
        .key(&key)
        .problem(400)
        .await;
    app.post_json("/v1/queues/orders/nope/receive", json!({}))
        .key(&key)
        .problem(404)
        .await;
}

#[tokio::test]
async fn another_tenants_queues_are_not_found() {
    let app = spawn_app().await;
    let mine = app.register("mine@example.com").await;
    let theirs = app.register("theirs@example.com").await;
    subscribe(&app, &mine, json!({"target": {"type": "queue"}})).await;
    app.post_json("/v1/topics/orders/messages", json!({"body": "secret"}))
        .key(&mine)
        .send()
        .await
        .unwrap();
    for path in [
        "/v1/queues/orders/q",
        "/v1/queues/orders/q/dlq",
        "/v1/topics/orders/subscriptions/q",
    ] {
        app.get(path).key(&theirs).problem(404).await;
    }
    app.post_json("/v1/queues/orders/q/receive", json!({}))
        .key(&theirs)
        .problem(404)
        .await;
    // Their publish to the same topic name reaches only their own (empty) topic.
    app.post_json("/v1/topics/orders/messages", json!({"body": "theirs"}))
        .key(&theirs)
        .send()
        .await
        .unwrap();
    let got = receive(&app, &mine, json!({"max": 10})).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], "secret");
}

#[tokio::test]
async fn metrics_report_bus_counts_and_queue_depths() {
    // Queue gauges are sampled in the background; this harness samples every 50 ms.
    let app = spawn_app_with(local_webhooks()).await;
    let key = app.register("metrics@example.com").await;
    subscribe(&app, &key, json!({"target": {"type": "queue"}})).await;
    let batch: Vec<Value> = (0..3).map(|i| json!({"body": i})).collect();
    app.post_json("/v1/topics/orders/messages", json!({"messages": batch}))
        .key(&key)
        .send()
        .await
        .unwrap();
    let got = receive(&app, &key, json!({"max": 1})).await;
    app.post_json(
        "/v1/queues/orders/q/ack",
        json!({"receipts": [got[0]["receipt"]]}),
    )
    .key(&key)
    .send()
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let scrape = |key: Option<String>| {
        let request = app.get("/metrics");
        let request = match key {
            Some(key) => request.key(&key),
            None => request,
        };
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let text = scrape(None).await;
    assert!(text.contains("keel_bus_published_total 3"), "{text}");
    assert!(text.contains("keel_bus_delivered_total 1"));
    assert!(text.contains("keel_bus_acked_total 1"));
    // Anonymous scrapes see queues summed: no tenant, topic or subscription names.
    assert!(text.lines().any(|l| l == "keel_queue_depth 2"), "{text}");
    assert!(!text.contains("orders"), "{text}");
    assert!(!text.contains("tenant="), "{text}");
    // The operator sees each queue.
    let text = scrape(Some(app.operator_key.clone())).await;
    let depth = text
        .lines()
        .find(|l| l.starts_with("keel_queue_depth{") && l.contains("topic=\"orders\""))
        .unwrap();
    assert!(depth.ends_with(" 2"), "{depth}");
    // A tenant's own key is not an operator key: it gets the sums.
    assert!(!scrape(Some(key.clone())).await.contains("orders"));
    assert!(text.contains("keel_store_commits_total"));
    let overview: Value = app.get_json("/v1/stats/overview", &app.operator_key).await;
    assert_eq!(overview["bus"]["published"], 3);
    assert!(overview["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["route"] == "POST /v1/topics/{topic}/messages"));
}

#[tokio::test]
async fn attribute_keys_are_escaped_in_error_pointers() {
    // Found by fuzzing (FUZZING.md F3): the key went into the pointer unescaped.
    let app = spawn_app().await;
    let key = app.register("pointers@example.com").await;
    let problem = app
        .post_json(
            "/v1/topics/t/messages",
            json!({"messages": [{"body": 1, "attributes": {"a/b~c": true}}]}),
        )
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(
        problem["errors"][0]["pointer"],
        "/messages/0/attributes/a~1b~0c"
    );
}
