//! Incident notices are never lost between the store and the bus (issue 10): a
//! change the store committed is told to the channels even when the process
//! that made it never got to publish. The test commits incident changes
//! straight through the store, as a prober killed right after its commit would
//! have left them — nobody wakes the relay — and the running server's relay
//! finds them on its next look and delivers them to a webhook channel, in order.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use common::{local_webhooks, spawn_app_with, Bearer};
use keel_core::clock::Clock;
use keel_store::monitors::CheckResult;
use serde_json::{json, Value};

type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(received): State<Received>, Json(body): Json<Value>) -> StatusCode {
    received.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_queued_by_a_process_that_died_are_delivered() {
    let app = spawn_app_with(local_webhooks()).await;
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = Router::new()
        .route("/hook", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    for (path, body) in [
        (
            "/v1/channels",
            json!({"name": "ops", "kind": "webhook", "url": hook}),
        ),
        (
            "/v1/monitors",
            json!({"name": "heartbeat", "kind": "push", "interval_s": 60, "incident_after": 1}),
        ),
    ] {
        let response = app
            .post_json(path, body)
            .key(&app.operator_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{path}");
    }
    let monitors = app.get_json("/v1/monitors", &app.operator_key).await;
    let id = monitors["monitors"][0]["id"].as_str().unwrap().to_owned();
    let monitor = app.state.store.push_monitor(&id).await.unwrap().unwrap();

    let check = |up: bool| CheckResult {
        tenant: monitor.tenant.clone(),
        monitor_id: id.clone(),
        scheduled_at: None,
        at: app.clock.now(),
        up,
        maintenance: false,
        latency_us: None,
        status: None,
        failure: (!up).then(|| "no heartbeat".to_owned()),
        next_check_at: app.clock.now().as_microsecond() + 60_000_000,
    };
    // Committed, never announced: what a prober killed after its commit leaves.
    let opened = app
        .state
        .store
        .record_checks(vec![check(false)])
        .await
        .unwrap();
    let resolved = app
        .state
        .store
        .record_checks(vec![check(true)])
        .await
        .unwrap();
    assert_eq!((opened.len(), resolved.len()), (1, 1));

    let mut got = Vec::new();
    for _ in 0..500 {
        got = received.lock().unwrap().clone();
        if got.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let told: Vec<(&str, &str)> = got
        .iter()
        .map(|n| (n["kind"].as_str().unwrap(), n["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        told,
        vec![("incident", "opened"), ("incident", "resolved")],
        "{got:#?}"
    );
    assert_eq!(got[0]["summary"], "heartbeat is down: no heartbeat");
    assert_eq!(got[0]["detail"]["monitor"]["name"], "heartbeat");
    // Published once each: nothing more arrives on the relay's later looks.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(received.lock().unwrap().len(), 2);
}
