//! The webhook target against a real local HTTP server: signatures, retries with
//! backoff, dead-lettering after max_receives, and every attempt recorded.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use common::{local_webhooks, spawn_app_with, Bearer, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Answer 500 to this many calls first.
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.calls.lock().unwrap().push((headers, body));
    let mut fail = receiver.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_receiver(fail_first: usize) -> (String, Receiver) {
    let receiver = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Default::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, receiver)
}

async fn subscribe(app: &TestApp, key: &str, url: &str, max_receives: u32) {
    let put = app
        .request(Method::PUT, "/v1/topics/events/subscriptions/hook")
        .json(&json!({
            "target": {"type": "webhook", "url": url, "secret": "s3cret-s3cret-s3cret"},
            "max_receives": max_receives,
            "retry_backoff_s": [0],
        }))
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let shown: Value = put.json().await.unwrap();
    assert_eq!(
        shown["target"]["secret"], "********",
        "secrets are never shown"
    );
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn delivers_signed_messages_and_retries_failures() {
    let app = spawn_app_with(local_webhooks()).await;
    let key = app.register("hooks@example.com").await;
    let (url, receiver) = start_receiver(2).await;
    subscribe(&app, &key, &url, 5).await;
    let published: Value = app
        .post_json(
            "/v1/topics/events/messages",
            json!({"body": {"hello": "world"}, "attributes": {"kind": "greeting"}}),
        )
        .key(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = published["ids"][0].as_str().unwrap().to_owned();
    wait_for("three calls", async || {
        receiver.calls.lock().unwrap().len() >= 3
    })
    .await;

    let calls = receiver.calls.lock().unwrap().clone();
    for (attempt, (headers, body)) in calls.iter().enumerate() {
        let signature = headers["x-keel-signature"].to_str().unwrap();
        assert_eq!(
            signature,
            keel_server::workers::signature("s3cret-s3cret-s3cret", body)
        );
        assert_eq!(headers["x-keel-message-id"], id.as_str());
        assert_eq!(
            headers["x-keel-delivery-attempt"],
            (attempt + 1).to_string().as_str()
        );
        let envelope: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(envelope["id"], id.as_str());
        assert_eq!(envelope["body"], json!({"hello": "world"}));
        assert_eq!(envelope["attributes"]["kind"], "greeting");
        assert_eq!(envelope["topic"], "events");
    }
    // Acked on the third try: nothing left, nothing dead.
    wait_for("the ack", async || {
        let stats: Value = app.get_json("/v1/queues/events/hook", &key).await;
        stats["depth"] == 0 && stats["in_flight"] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.calls.lock().unwrap().len(),
        3,
        "no delivery after the ack"
    );
    let attempts: Value = app.get_json("/v1/queues/events/hook/attempts", &key).await;
    let outcomes: Vec<(&str, u64)> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("delivered", 3), ("failed", 2), ("failed", 1)]);
    assert_eq!(attempts["attempts"][1]["status"], 500);
}

#[tokio::test]
async fn dead_letters_after_max_receives_with_the_last_error() {
    let app = spawn_app_with(local_webhooks()).await;
    let key = app.register("dead@example.com").await;
    let (url, receiver) = start_receiver(usize::MAX).await;
    subscribe(&app, &key, &url, 2).await;
    app.post_json("/v1/topics/events/messages", json!({"body": 1}))
        .key(&key)
        .send()
        .await
        .unwrap();
    wait_for("the dead letter", async || {
        let stats: Value = app.get_json("/v1/queues/events/hook", &key).await;
        stats["dlq_depth"] == 1
    })
    .await;
    assert_eq!(receiver.calls.lock().unwrap().len(), 2);
    let dlq: Value = app.get_json("/v1/queues/events/hook/dlq", &key).await;
    assert!(
        dlq["messages"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{dlq}"
    );
    let attempts: Value = app.get_json("/v1/queues/events/hook/attempts", &key).await;
    assert_eq!(attempts["attempts"][0]["outcome"], "dead-lettered");

    // Redrive: the receiver is fixed now, and the message arrives.
    *receiver.fail_first.lock().unwrap() = 0;
    let moved: Value = app
        .post_json_with("/v1/queues/events/hook/dlq/redrive", json!({}), &key)
        .await;
    assert_eq!(moved["moved"], 1);
    wait_for("the redriven delivery", async || {
        receiver.calls.lock().unwrap().len() == 3
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_failed_attempt_not_a_crash() {
    let app = spawn_app_with(local_webhooks()).await;
    let key = app.register("down@example.com").await;
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    subscribe(&app, &key, &format!("http://127.0.0.1:{port}/hook"), 1).await;
    app.post_json("/v1/topics/events/messages", json!({"body": 1}))
        .key(&key)
        .send()
        .await
        .unwrap();
    wait_for("the dead letter", async || {
        let stats: Value = app.get_json("/v1/queues/events/hook", &key).await;
        stats["dlq_depth"] == 1
    })
    .await;
    let attempts: Value = app.get_json("/v1/queues/events/hook/attempts", &key).await;
    // Generic on purpose: the attempt log is no port scanner.
    assert_eq!(attempts["attempts"][0]["error"], "could not connect");
}

#[tokio::test]
async fn a_changed_url_takes_effect_without_a_restart() {
    let app = spawn_app_with(local_webhooks()).await;
    let key = app.register("moved@example.com").await;
    let (first_url, first) = start_receiver(0).await;
    let (second_url, second) = start_receiver(0).await;
    subscribe(&app, &key, &first_url, 5).await;
    app.post_json(
        "/v1/topics/events/messages",
        json!({"body": "to the first"}),
    )
    .key(&key)
    .send()
    .await
    .unwrap();
    wait_for("the first receiver", async || {
        first.calls.lock().unwrap().len() == 1
    })
    .await;
    subscribe(&app, &key, &second_url, 5).await;
    // The supervisor notices the change on its next pass (at most ~1.5 s).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    app.post_json(
        "/v1/topics/events/messages",
        json!({"body": "to the second"}),
    )
    .key(&key)
    .send()
    .await
    .unwrap();
    wait_for("the second receiver", async || {
        second.calls.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(
        first.calls.lock().unwrap().len(),
        1,
        "the old URL is no longer used"
    );
}
