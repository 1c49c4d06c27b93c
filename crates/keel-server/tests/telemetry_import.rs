//! The seed's flow end to end (SPEC §6): an upload under `data/` ending in `.json`
//! is imported by a `telemetry-import` subscription and its event queued, other
//! uploads are not. Runs on SQLite + files, and in CI again on PostgreSQL +
//! Redis + NATS + S3 (`KEEL_TEST_HTTP_BACKEND=postgres`).

mod common;

use std::time::Duration;

use common::{
    spawn_app,
    telemetry::{bodies, logs, FROM, TO},
    Bearer, TestApp,
};
use reqwest::Method;
use serde_json::{json, Value};

async fn upload(app: &TestApp, key: &str, path: &str, body: &str) -> Value {
    let response = app
        .request(Method::PUT, &format!("/v1/buckets/acct-111/objects/{path}"))
        .key(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "PUT {path}");
    response.json().await.unwrap()
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn attempts(app: &TestApp, key: &str) -> Vec<Value> {
    app.get_json("/v1/queues/incoming/importer/attempts", key)
        .await["attempts"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_seed_flow_imports_matching_uploads_and_queues_their_events() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    let created = app
        .request(Method::PUT, "/v1/buckets/acct-111")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let rules = json!([{"events": ["ObjectCreated:*"], "prefix": "data/", "suffix": ".json", "topic": "incoming"}]);
    let response = app
        .put_json("/v1/buckets/acct-111/notifications", rules)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for (name, target, max_receives) in [
        ("importer", json!({"type": "telemetry-import"}), 2),
        ("audit", json!({"type": "queue"}), 5),
    ] {
        let response = app
            .put_json(
                &format!("/v1/topics/incoming/subscriptions/{name}"),
                json!({"target": target, "max_receives": max_receives, "retry_backoff_s": [1]}),
            )
            .key(&key)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{name}");
    }

    // A matching upload: NDJSON with a broken line; lines without an account
    // take the bucket's name.
    let content = [
        r#"{"log": "nightly export finished", "level": "info", "ts": "2024-06-15T10:00:00Z", "account": "111"}"#,
        r#"{"metric": "rows_exported", "value": 1200, "ts": "2024-06-15T10:00:00Z", "account": "111"}"#,
        r#"{"log": "export took 93 s", "ts": "2024-06-15T10:00:01Z"}"#,
        r#"{"log": broken"#,
    ]
    .join("\n");
    let matching = upload(&app, &key, "data/export 1.json", &content).await;
    upload(
        &app,
        &key,
        "data/export.txt",
        r#"{"log": "not matching suffix", "account": "111"}"#,
    )
    .await;
    upload(
        &app,
        &key,
        "other/export.json",
        r#"{"log": "not matching prefix", "account": "111"}"#,
    )
    .await;
    let unreadable = upload(
        &app,
        &key,
        "data/garbage.json",
        "\u{1}\u{2} this is not telemetry",
    )
    .await;

    wait_for("the import", || async {
        attempts(&app, &key)
            .await
            .iter()
            .any(|a| a["outcome"] == "delivered")
    })
    .await;
    let lines = logs(&app, &key, "account=111").await;
    assert_eq!(bodies(&lines), ["nightly export finished"]);
    assert_eq!(
        bodies(&logs(&app, &key, "account=acct-111").await),
        ["export took 93 s"]
    );
    assert!(
        logs(&app, &key, "q=matching").await.is_empty(),
        "non-matching objects are not imported"
    );
    let exported = app
        .get_json(
            &format!("/v1/metrics/rows_exported?from={FROM}&to={TO}&account=111&agg=sum"),
            &key,
        )
        .await;
    assert_eq!(exported["points"][0]["value"], 1200.0);
    let delivered = attempts(&app, &key)
        .await
        .into_iter()
        .find(|a| a["outcome"] == "delivered")
        .unwrap();
    assert_eq!(delivered["report"]["imported"], 3);
    assert_eq!(delivered["report"]["rejected"], 1);
    assert!(
        delivered["report"]["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("line 4"),
        "{delivered}"
    );

    // The unreadable object dead-letters with its reason.
    wait_for("the dead letter", || async {
        let dlq = app.get_json("/v1/queues/incoming/importer/dlq", &key).await;
        dlq["messages"].as_array().is_some_and(|m| !m.is_empty())
    })
    .await;
    let dlq = app.get_json("/v1/queues/incoming/importer/dlq", &key).await;
    let dead = &dlq["messages"][0];
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("no readable telemetry"),
        "{dead}"
    );
    assert_eq!(
        dead["body"]["Records"][0]["s3"]["object"]["eTag"],
        unreadable["etag"]
    );

    // The queue subscription holds exactly the S3 events of the matching uploads.
    let mut events = Vec::new();
    loop {
        let got = app
            .post_json_with(
                "/v1/queues/incoming/audit/receive",
                json!({"max": 10, "wait_s": 1}),
                &key,
            )
            .await;
        let messages = got["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            break;
        }
        events.extend(messages);
    }
    let keys: Vec<&str> = events
        .iter()
        .map(|m| {
            m["body"]["Records"][0]["s3"]["object"]["key"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(keys, ["data/export+1.json", "data/garbage.json"]);
    assert_eq!(
        events[0]["body"]["Records"][0]["eventName"],
        "ObjectCreated:Put"
    );
    assert_eq!(
        events[0]["body"]["Records"][0]["s3"]["object"]["eTag"],
        matching["etag"]
    );

    // A redelivered event (published again, as after a crash before the ack)
    // imports nothing twice.
    let again = app
        .post_json_with(
            "/v1/topics/incoming/messages",
            json!({"body": events[0]["body"]}),
            &key,
        )
        .await;
    assert!(again["ids"].is_array(), "{again}");
    wait_for("the duplicate's attempt", || async {
        attempts(&app, &key)
            .await
            .iter()
            .any(|a| a["report"]["duplicate"] == true)
    })
    .await;
    assert_eq!(logs(&app, &key, "account=111").await.len(), 1);
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_telemetry_imports_total{outcome=\"imported\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("keel_telemetry_imports_total{outcome=\"duplicate\"} 1"));
    assert!(metrics.contains("keel_telemetry_imports_total{outcome=\"dead-lettered\"} 1"));
}
