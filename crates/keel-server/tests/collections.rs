//! SPEC §5 through HTTP: POST publishes, the store worker writes, GET reads.

mod common;

use std::time::{Duration, Instant};

use common::{expect_problem, spawn_app, Bearer, ExpectProblem, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn list(app: &TestApp, key: &str, query: &str) -> Value {
    let response = app
        .get(&format!("/v1/collections/users/records{query}"))
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn wait_true_answers_201_once_stored_and_reads_see_it() {
    let app = spawn_app().await;
    let key = app.register("c@example.com").await;
    // A read before any write is cached as empty …
    assert_eq!(list(&app, &key, "").await["records"], json!([]));
    let response = app
        .post_json(
            "/v1/collections/users/records?wait=true",
            json!({"name": "Ana"}),
        )
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let ids: Value = response.json().await.unwrap();
    let id = ids["ids"][0].as_str().unwrap().to_owned();
    // … and a write acknowledged with wait=true is visible at once (read-your-writes).
    let records = list(&app, &key, "").await;
    assert_eq!(records["records"][0]["id"], id.as_str());
    assert_eq!(records["records"][0]["data"], json!({"name": "Ana"}));
    for field in ["created_at", "updated_at"] {
        assert!(records["records"][0][field].is_string());
    }
    let one: Value = app
        .get_json(&format!("/v1/collections/users/records/{id}"), &key)
        .await;
    assert_eq!(one["data"]["name"], "Ana");
}

#[tokio::test]
async fn without_wait_it_is_202_and_the_rows_arrive() {
    let app = spawn_app().await;
    let key = app.register("c@example.com").await;
    let batch: Vec<Value> = (0..250).map(|i| json!({"n": i})).collect();
    let response = app
        .post_json("/v1/collections/users/records", json!({"records": batch}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let ids: Value = response.json().await.unwrap();
    assert_eq!(ids["ids"].as_array().unwrap().len(), 250);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen.clear();
        let mut cursor = String::new();
        loop {
            let page = list(&app, &key, &format!("?limit=100{cursor}")).await;
            seen.extend(
                page["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["data"]["n"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        if seen.len() == 250 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Newest first: published in order 0..250, so listed 249..0.
    assert_eq!(seen, (0..250).rev().collect::<Vec<i64>>());
}

#[tokio::test]
async fn delete_and_not_found() {
    let app = spawn_app().await;
    let key = app.register("c@example.com").await;
    let ids: Value = app
        .post_json(
            "/v1/collections/users/records?wait=true",
            json!({"name": "Bo"}),
        )
        .key(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ids["ids"][0].as_str().unwrap();
    let path = format!("/v1/collections/users/records/{id}");
    assert_eq!(app.get(&path).key(&key).send().await.unwrap().status(), 200);
    assert_eq!(
        app.request(Method::DELETE, &path)
            .key(&key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    app.get(&path).key(&key).problem(404).await;
    app.request(Method::DELETE, &path)
        .key(&key)
        .problem(404)
        .await;
    assert_eq!(list(&app, &key, "").await["records"], json!([]));
}

#[tokio::test]
async fn bad_input() {
    let app = spawn_app().await;
    let key = app.register("c@example.com").await;
    for (body, status) in [
        (json!([1, 2]), 400),
        (json!("x"), 400),
        (json!({"records": []}), 400),
        (json!({"records": [1]}), 400),
        (
            json!({"records": (0..1001).map(|i| json!({"i": i})).collect::<Vec<_>>()}),
            413,
        ),
    ] {
        expect_problem(
            app.post_json("/v1/collections/users/records", body)
                .key(&key)
                .send()
                .await
                .unwrap(),
            status,
        )
        .await;
    }
    app.post_json("/v1/collections/bad%20name/records", json!({}))
        .key(&key)
        .problem(400)
        .await;
    app.get("/v1/collections/users/records?cursor=zzz")
        .key(&key)
        .problem(400)
        .await;
    app.get("/v1/collections/users/records").problem(401).await;
}

#[tokio::test]
async fn another_tenants_records_are_not_found() {
    let app = spawn_app().await;
    let mine = app.register("mine@example.com").await;
    let theirs = app.register("theirs@example.com").await;
    let ids: Value = app
        .post_json(
            "/v1/collections/users/records?wait=true",
            json!({"secret": true}),
        )
        .key(&mine)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/collections/users/records/{}",
        ids["ids"][0].as_str().unwrap()
    );
    app.get(&path).key(&theirs).problem(404).await;
    app.request(Method::DELETE, &path)
        .key(&theirs)
        .problem(404)
        .await;
    assert_eq!(list(&app, &theirs, "").await["records"], json!([]));
    assert_eq!(
        app.get(&path).key(&mine).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_subscription_can_store_any_topic_into_a_collection() {
    let app = spawn_app().await;
    let key = app.register("c@example.com").await;
    // Two store subscriptions on one topic writing into one collection: the same
    // message is upserted by its id, so it is stored once.
    for name in ["a", "b"] {
        let put = app
            .request(
                Method::PUT,
                &format!("/v1/topics/signups/subscriptions/{name}"),
            )
            .json(&json!({"target": {"type": "store", "collection": "people"}}))
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    }
    app.post_json(
        "/v1/topics/signups/messages",
        json!({"body": {"who": "Cy"}}),
    )
    .key(&key)
    .send()
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats_a: Value = app.get_json("/v1/queues/signups/a", &key).await;
        let stats_b: Value = app.get_json("/v1/queues/signups/b", &key).await;
        if stats_a["depth"] == 0
            && stats_b["depth"] == 0
            && stats_a["in_flight"] == 0
            && stats_b["in_flight"] == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let people: Value = app.get_json("/v1/collections/people/records", &key).await;
    assert_eq!(people["records"].as_array().unwrap().len(), 1, "{people}");
    assert_eq!(people["records"][0]["data"]["who"], "Cy");
}
