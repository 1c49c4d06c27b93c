//! SPEC §11 on the real binary: kill -9 while clients publish records; after a
//! restart every record answered 202 is stored exactly once. And SIGTERM while a
//! webhook delivery is in flight: the delivery finishes or returns to the queue.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

mod common;
use common::{
    assert_stored_exactly_once, get_json, stored_records, wait_drained, Keel, OPERATOR_KEY,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_answered_202_is_stored_exactly_once_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let accepted: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    for cycle in 0..3u64 {
        let mut keel = Keel::start(dir.path());
        let mut tasks = Vec::new();
        for c in 0..8u64 {
            let (base, accepted) = (keel.base.clone(), accepted.clone());
            let client_id = cycle * 100 + c;
            // Made before the clock starts: a client loads the system's roots.
            let client = reqwest::Client::new();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let response = client
                        .post(format!("{base}/v1/collections/crash/records"))
                        .bearer_auth(OPERATOR_KEY)
                        .json(&json!({"client": client_id, "n": n}))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 202 => accepted.lock().unwrap().push((client_id, n)),
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        keel.signal(Signal::SIGKILL);
        keel.wait_exit(Duration::from_secs(5));
        for task in tasks {
            task.await.unwrap();
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > 100,
        "only {} records were accepted",
        accepted.len()
    );

    let keel = Keel::start(dir.path());
    wait_drained(&keel.base, "crash", Duration::from_secs(30)).await;
    let rows = stored_records(&keel.base, "crash").await;
    assert_stored_exactly_once(&accepted, &rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_webhook_delivery_finish() {
    use axum::{routing::post, Router};
    // A receiver that takes 1 s to answer and counts what it got.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = {
        let received = received.clone();
        Router::new().route(
            "/slow",
            post(move |headers: axum::http::HeaderMap| {
                let received = received.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    received
                        .lock()
                        .unwrap()
                        .push(headers["x-keel-message-id"].to_str().unwrap().to_owned());
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut keel = Keel::start(dir.path());
    let client = reqwest::Client::new();
    let put = client
        .put(format!("{}/v1/topics/jobs/subscriptions/hook", keel.base))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"target": {"type": "webhook", "url": url, "secret": "x-long-enough-secret"}, "visibility_timeout_s": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let published: Value = client
        .post(format!("{}/v1/topics/jobs/messages", keel.base))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"body": "work"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = published["ids"][0].as_str().unwrap().to_owned();
    // Wait until the worker has taken the message: the call is then in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: Value = get_json(format!("{}/v1/queues/jobs/hook", keel.base)).await;
        if stats["in_flight"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never took the message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        received.lock().unwrap().is_empty(),
        "the receiver is still working on it"
    );
    keel.signal(Signal::SIGTERM);
    let status = keel.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    // The in-flight call finished before exit, and was acked: a restart does not
    // deliver it again.
    assert_eq!(*received.lock().unwrap(), std::slice::from_ref(&id));
    let keel = Keel::start(dir.path());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats: Value = get_json(format!("{}/v1/queues/jobs/hook", keel.base)).await;
    assert_eq!(
        (stats["depth"].as_u64(), stats["in_flight"].as_u64()),
        (Some(0), Some(0)),
        "{stats}"
    );
    assert_eq!(received.lock().unwrap().len(), 1);
}
