//! SPEC §3 through HTTP: registration, keys, next/current/set in JSON:API, named
//! counters, concurrency and tenant isolation.

mod common;

use std::collections::BTreeSet;

use common::{expect_problem, spawn_app, Bearer, ExpectProblem};
use reqwest::Method;
use serde_json::{json, Value};

async fn value_of(response: reqwest::Response) -> i64 {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.api+json"
    );
    let body: Value = response.json().await.unwrap();
    let value = body["data"]["attributes"]["value"].as_i64().unwrap();
    assert_eq!(body["data"]["type"], "integer");
    assert_eq!(body["data"]["id"], value.to_string());
    value
}

#[tokio::test]
async fn register_then_count() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/users",
            json!({"email": "Ana@Example.com", "password": "12345678"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.api+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["type"], "users");
    assert_eq!(body["data"]["attributes"]["email"], "ana@example.com");
    let key = body["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("keel_"));

    assert_eq!(
        value_of(app.get("/v1/current").key(&key).send().await.unwrap()).await,
        0
    );
    assert_eq!(
        value_of(app.get("/v1/next").key(&key).send().await.unwrap()).await,
        1
    );
    assert_eq!(
        value_of(
            app.request(Method::POST, "/v1/next")
                .key(&key)
                .send()
                .await
                .unwrap()
        )
        .await,
        2
    );
    assert_eq!(
        value_of(app.get("/v1/current").key(&key).send().await.unwrap()).await,
        2
    );

    let set = app
        .put_json("/v1/current", json!({"current": 1000}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(value_of(set).await, 1000);
    assert_eq!(
        value_of(app.get("/v1/next").key(&key).send().await.unwrap()).await,
        1001
    );

    // The JSON:API request form, sent as JSON:API.
    let set = app
        .request(Method::PUT, "/v1/current")
        .header("content-type", "application/vnd.api+json")
        .body(json!({"data": {"type": "integer", "attributes": {"value": 5}}}).to_string())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(value_of(set).await, 5);
    let max = app
        .put_json("/v1/current", json!({"current": 9223372036854775807u64}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(value_of(max).await, i64::MAX);
    // At the top there is no next value: a conflict, never a wrap or a repeat.
    app.get("/v1/next").key(&key).problem(409).await;
}

#[tokio::test]
async fn invalid_sets_are_400s() {
    let app = spawn_app().await;
    let key = app.register("a@example.com").await;
    for body in [
        json!({"current": -1}),
        json!({"current": 1.5}),
        json!({"current": "7"}),
        json!({"current": 9223372036854775808u64}),
        json!({"current": 1e30}),
        json!({}),
        json!({"data": {"type": "integer", "attributes": {"value": -3}}}),
        json!({"data": {"type": "integer"}}),
        json!([]),
    ] {
        let response = app
            .put_json("/v1/current", body.clone())
            .key(&key)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400).await;
        assert!(
            problem["errors"][0]["pointer"].is_string(),
            "{body}: {problem}"
        );
    }
    let raw = app
        .request(Method::PUT, "/v1/current")
        .header("content-type", "application/json")
        .body("{\"current\": 12")
        .key(&key)
        .send()
        .await
        .unwrap();
    expect_problem(raw, 400).await;
    let wrong_media = app
        .request(Method::PUT, "/v1/current")
        .body("{\"current\": 1}")
        .key(&key)
        .send()
        .await
        .unwrap();
    expect_problem(wrong_media, 415).await;
    assert_eq!(
        value_of(app.get("/v1/current").key(&key).send().await.unwrap()).await,
        0
    );
}

#[tokio::test]
async fn named_counters_are_independent() {
    let app = spawn_app().await;
    let key = app.register("a@example.com").await;
    assert_eq!(
        value_of(
            app.get("/v1/counters/orders/next")
                .key(&key)
                .send()
                .await
                .unwrap()
        )
        .await,
        1
    );
    assert_eq!(
        value_of(
            app.get("/v1/counters/orders/next")
                .key(&key)
                .send()
                .await
                .unwrap()
        )
        .await,
        2
    );
    assert_eq!(
        value_of(
            app.request(Method::POST, "/v1/counters/invoices/next")
                .key(&key)
                .send()
                .await
                .unwrap()
        )
        .await,
        1
    );
    assert_eq!(
        value_of(app.get("/v1/current").key(&key).send().await.unwrap()).await,
        0
    );
    let set = app
        .put_json("/v1/counters/orders/current", json!({"current": 10}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(value_of(set).await, 10);
    assert_eq!(
        value_of(
            app.get("/v1/counters/orders/current")
                .key(&key)
                .send()
                .await
                .unwrap()
        )
        .await,
        10
    );
    app.get("/v1/counters/bad%20name/next")
        .key(&key)
        .problem(400)
        .await;
}

#[tokio::test]
async fn registration_rules() {
    let app = spawn_app().await;
    for (body, pointer) in [
        (
            json!({"email": "not-an-email", "password": "12345678"}),
            "/email",
        ),
        (
            json!({"email": "a@example.com", "password": "1234567"}),
            "/password",
        ),
        (json!({"email": "a@example.com"}), ""),
        (json!({"email": 5, "password": "12345678"}), "/email"),
    ] {
        let problem = app.post_json("/v1/users", body.clone()).problem(400).await;
        assert_eq!(
            problem["errors"][0]["pointer"], pointer,
            "{body}: {problem}"
        );
    }
    app.register("taken@example.com").await;
    let again = app
        .post_json(
            "/v1/users",
            json!({"email": "TAKEN@example.com", "password": "another-one"}),
        )
        .send()
        .await
        .unwrap();
    expect_problem(again, 409).await;
}

#[tokio::test]
async fn a_lost_key_is_replaced_with_email_and_password() {
    let app = spawn_app().await;
    let first = app.register("lost@example.com").await;
    value_of(app.get("/v1/next").key(&first).send().await.unwrap()).await;
    let response = app
        .post_json(
            "/v1/keys",
            json!({"email": "lost@example.com", "password": "correct horse"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let second = body["data"]["attributes"]["api_key"].as_str().unwrap();
    assert_ne!(second, first);
    // Same account, same counter.
    assert_eq!(
        value_of(app.get("/v1/next").key(second).send().await.unwrap()).await,
        2
    );
    for body in [
        json!({"email": "lost@example.com", "password": "wrong password"}),
        json!({"email": "nobody@example.com", "password": "correct horse"}),
    ] {
        app.post_json("/v1/keys", body).problem(401).await;
    }
}

#[tokio::test]
async fn keys_are_required_and_scoped() {
    let app = spawn_app().await;
    for path in ["/v1/next", "/v1/current", "/v1/counters/x/next"] {
        let problem = app.get(path).problem(401).await;
        assert!(problem["detail"].as_str().unwrap().contains("Bearer"));
    }
    app.get("/v1/next")
        .key("keel_abcd1234_0000000000000000000")
        .problem(401)
        .await;
    app.get("/v1/next")
        .header("authorization", "Basic YTpi")
        .problem(401)
        .await;

    let admin = app.register("scoped@example.com").await;
    let read_only: Value = app
        .post_json_with("/v1/keys", json!({"scopes": ["read"]}), &admin)
        .await;
    let read_only = read_only["data"]["attributes"]["api_key"].as_str().unwrap();
    assert_eq!(
        value_of(app.get("/v1/current").key(read_only).send().await.unwrap()).await,
        0
    );
    app.get("/v1/next").key(read_only).problem(403).await;
    app.put_json("/v1/current", json!({"current": 3}))
        .key(read_only)
        .problem(403)
        .await;
}

#[tokio::test]
async fn another_tenant_cannot_see_or_change_my_counters() {
    let app = spawn_app().await;
    let mine = app.register("mine@example.com").await;
    let theirs = app.register("theirs@example.com").await;
    for _ in 0..3 {
        value_of(
            app.get("/v1/counters/orders/next")
                .key(&mine)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    // Their view of the same names is their own, empty one.
    assert_eq!(
        value_of(
            app.get("/v1/counters/orders/current")
                .key(&theirs)
                .send()
                .await
                .unwrap()
        )
        .await,
        0
    );
    let set = app
        .put_json("/v1/counters/orders/current", json!({"current": 99}))
        .key(&theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(value_of(set).await, 99);
    assert_eq!(
        value_of(
            app.get("/v1/counters/orders/current")
                .key(&mine)
                .send()
                .await
                .unwrap()
        )
        .await,
        3
    );
    assert_eq!(
        value_of(
            app.get("/v1/counters/orders/next")
                .key(&mine)
                .send()
                .await
                .unwrap()
        )
        .await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_next_calls_hand_out_distinct_contiguous_values() {
    let app = std::sync::Arc::new(spawn_app().await);
    let key = app.register("busy@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (app, key) = (app.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..25 {
                got.push(value_of(app.get("/v1/next").key(&key).send().await.unwrap()).await);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a value was handed out twice");
    assert_eq!(distinct, (1..=800).collect::<BTreeSet<i64>>());
}
