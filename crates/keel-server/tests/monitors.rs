//! Monitors over HTTP with the prober role running (SPEC §7): definitions and
//! their 400s, a real local target that goes down and comes back (uptime,
//! downtime, incidents opened and resolved), heartbeats of push monitors and the
//! ones that never come, TCP checks, and the probe address policy. Time is the
//! test's clock: each step moves it to the monitor's next slot and waits for the
//! prober to record that slot.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use common::{spawn_app_with, Bearer, ExpectProblem, TestApp};
use keel_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

/// A local service whose health the test switches.
#[derive(Clone, Default)]
struct Target {
    down: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

async fn health(State(target): State<Target>) -> (StatusCode, Json<Value>) {
    target.hits.fetch_add(1, Ordering::SeqCst);
    if target.down.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "down"})),
        )
    } else {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    }
}

async fn start_target() -> (String, Target) {
    let target = Target::default();
    let app = Router::new()
        .route("/health", get(health))
        .with_state(target.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, target)
}

fn local_probes() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.limits.probe_allow = vec!["127.0.0.0/8".into()];
    config
}

async fn create(app: &TestApp, body: Value) -> Value {
    let response = app
        .post_json("/v1/monitors", body)
        .key(&app.operator_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn monitor(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/monitors/{id}"), &app.operator_key)
        .await
}

/// Moves the clock to the monitor's next slot and waits until the prober has
/// recorded it; returns the monitor afterwards.
async fn next_check(app: &TestApp, id: &str) -> Value {
    let before = monitor(app, id).await;
    let slot = before["next_check_at"].as_str().unwrap().to_owned();
    app.set_today(&slot);
    for _ in 0..200 {
        let now = monitor(app, id).await;
        if now["last_check_at"].as_str() == Some(slot.as_str()) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the slot {slot} was not checked: {}",
        monitor(app, id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_are_managed_and_bad_definitions_named() {
    let app = spawn_app_with(local_probes()).await;
    let key = app.operator_key.clone();
    let bad = app
        .post_json(
            "/v1/monitors",
            json!({"name": "api", "kind": "http", "target": "http://127.0.0.1:1/",
                   "conditions": ["status == 200", "statsu == 200"]}),
        )
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(bad["errors"][0]["pointer"], "/conditions/1");
    assert!(bad["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("\"statsu == 200\""));
    let bad = app
        .post_json(
            "/v1/monitors",
            json!({"name": "x", "kind": "tcp", "target": "db"}),
        )
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(bad["errors"][0]["pointer"], "/target");

    let made = create(
        &app,
        json!({"name": "api", "kind": "http", "target": "http://127.0.0.1:1/",
               "interval_s": 30, "conditions": ["status == 200"]}),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["status"], "pending");
    assert_eq!(made["timeout_ms"], 5000);
    assert_eq!(made["incident_after"], 2);
    app.post_json("/v1/monitors", json!({"name": "api", "kind": "push"}))
        .key(&key)
        .problem(409)
        .await;
    let listed = app.get_json("/v1/monitors?limit=10", &key).await;
    assert_eq!(listed["monitors"][0]["id"], id);

    let replaced: Value = app
        .put_json(
            &format!("/v1/monitors/{id}"),
            json!({"name": "api", "kind": "tcp", "target": "127.0.0.1:1", "interval_s": 60}),
        )
        .key(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["kind"], "tcp");
    assert_eq!(replaced["created_at"], made["created_at"]);

    // Another tenant sees nothing; a read key cannot manage monitors.
    let other = app.register("other@example.com").await;
    app.get(&format!("/v1/monitors/{id}"))
        .key(&other)
        .problem(404)
        .await;
    app.request(Method::DELETE, &format!("/v1/monitors/{id}"))
        .key(&other)
        .problem(404)
        .await;
    app.get(&format!("/v1/monitors/{id}/uptime"))
        .key(&other)
        .problem(404)
        .await;
    app.get(&format!("/v1/monitors/{id}/uptime?window=1w"))
        .key(&key)
        .problem(400)
        .await;
    app.get("/v1/monitors").problem(401).await;

    let gone = app
        .request(Method::DELETE, &format!("/v1/monitors/{id}"))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    app.get(&format!("/v1/monitors/{id}"))
        .key(&key)
        .problem(404)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_goes_down_and_comes_back() {
    let app = spawn_app_with(local_probes()).await;
    let key = app.operator_key.clone();
    let (url, target) = start_target().await;
    let made = create(
        &app,
        json!({"name": "api", "kind": "http", "target": url, "interval_s": 30,
               "timeout_ms": 2000,
               "conditions": ["status == 200", "body.status == \"ok\"",
                              "header.content-type == application/json",
                              "response_time_ms < 2000"]}),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();

    let mut seen = Vec::new();
    for down in [false, false, true, true, true, false] {
        target.down.store(down, Ordering::SeqCst);
        let m = next_check(&app, &id).await;
        seen.push(m["status"].as_str().unwrap().to_owned());
        if down {
            assert_eq!(m["last_failure"], "status == 200 (was 503)");
        }
    }
    assert_eq!(seen, ["up", "up", "down", "down", "down", "up"]);
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        6,
        "one request per slot, no more"
    );

    let uptime = app
        .get_json(&format!("/v1/monitors/{id}/uptime?window=1h"), &key)
        .await;
    assert_eq!(uptime["checks"], 6);
    assert_eq!(uptime["uptime_percent"], 50.0);
    assert_eq!(uptime["downtime_minutes"], 1.5, "three failed 30 s slots");
    // Local checks take well under a millisecond: the p50 may sit in the lowest bucket.
    assert!(uptime["p50_ms"].as_f64().unwrap() >= 0.0, "{uptime}");
    assert!(uptime["p99_ms"].as_f64().unwrap() > 0.0, "{uptime}");
    assert!(uptime["p99_ms"].as_f64().unwrap() >= uptime["p50_ms"].as_f64().unwrap());
    assert_eq!(uptime["incidents"].as_array().unwrap().len(), 1);

    let incidents = app
        .get_json(&format!("/v1/monitors/{id}/incidents"), &key)
        .await;
    let incident = &incidents["incidents"][0];
    assert_eq!(incident["status"], "resolved");
    assert_eq!(incident["cause"], "status == 200 (was 503)");
    assert!(incident["opened_at"].as_str().unwrap() < incident["resolved_at"].as_str().unwrap());
    let incident_id = incident["id"].as_str().unwrap();
    let patched: Value = app
        .request(Method::PATCH, &format!("/v1/incidents/{incident_id}"))
        .json(&json!({"cause": "a bad deploy", "notes": "rolled back at 12:03"}))
        .key(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["cause"], "a bad deploy");
    assert_eq!(patched["notes"], "rolled back at 12:03");
    app.request(Method::PATCH, &format!("/v1/incidents/{incident_id}"))
        .json(&json!({"cause": 5}))
        .key(&key)
        .problem(400)
        .await;
    let other = app.register("other@example.com").await;
    app.request(Method::PATCH, &format!("/v1/incidents/{incident_id}"))
        .json(&json!({"notes": "mine"}))
        .key(&other)
        .problem(404)
        .await;

    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_probe_results_total{kind=\"http\",outcome=\"down\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_push_monitor_up_and_a_missed_one_takes_it_down() {
    let app = spawn_app_with(local_probes()).await;
    let key = app.operator_key.clone();
    let made = create(
        &app,
        json!({"name": "nightly", "kind": "push", "interval_s": 60, "grace_s": 10,
               "incident_after": 1, "conditions": ["response_time_ms < 60000"]}),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    let push_url = made["push_url"].as_str().unwrap().to_owned();
    assert!(push_url.starts_with(&format!("/v1/monitors/{id}/push?token=")));

    let beat: Value = app
        .request(Method::POST, &format!("{push_url}&duration_ms=1200"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(beat["status"], "up");
    assert_eq!(monitor(&app, &id).await["status"], "up");
    // A job that took too long is down by its condition.
    let slow: Value = app
        .request(Method::POST, &format!("{push_url}&duration_ms=70000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(slow["status"], "down");
    app.request(Method::POST, &format!("{push_url}&status=up"))
        .send()
        .await
        .unwrap();
    // Wrong token or another monitor's id: 404.
    app.request(Method::POST, &format!("/v1/monitors/{id}/push?token=nope"))
        .problem(404)
        .await;
    app.request(Method::POST, &format!("{push_url}&status=sideways"))
        .problem(400)
        .await;

    // No heartbeat within 70 s: the prober records it down and opens an incident.
    let m = next_check(&app, &id).await;
    assert_eq!(m["status"], "down");
    assert_eq!(m["last_failure"], "no heartbeat within 70 s");
    assert!(m["open_incident"].is_string());
    // The next heartbeat resolves it.
    app.request(Method::POST, &push_url).send().await.unwrap();
    let m = monitor(&app, &id).await;
    assert_eq!(m["status"], "up");
    assert!(m["open_incident"].is_null());
    let incidents = app
        .get_json(&format!("/v1/monitors/{id}/incidents"), &key)
        .await;
    let all = incidents["incidents"].as_array().unwrap();
    assert_eq!(
        all.len(),
        2,
        "the slow run and the missed heartbeat: {incidents}"
    );
    assert!(all.iter().all(|i| i["status"] == "resolved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checks_connect_and_internal_addresses_need_probe_allow() {
    let app = spawn_app_with(local_probes()).await;
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = create(
        &app,
        json!({"name": "db", "kind": "tcp", "target": open.local_addr().unwrap().to_string(),
               "interval_s": 10, "timeout_ms": 1000}),
    )
    .await;
    let down = create(
        &app,
        json!({"name": "gone", "kind": "tcp", "target": closed.to_string(),
               "interval_s": 10, "timeout_ms": 1000}),
    )
    .await;
    let m = next_check(&app, up["id"].as_str().unwrap()).await;
    assert_eq!(m["status"], "up");
    let m = next_check(&app, down["id"].as_str().unwrap()).await;
    assert_eq!(m["status"], "down");
    assert_eq!(m["last_failure"], "could not connect");

    // Without probe_allow, loopback is refused before anything is sent.
    let strict = common::spawn_app().await;
    let (url, target) = start_target().await;
    let made = create(
        &strict,
        json!({"name": "inside", "kind": "http", "target": url, "interval_s": 30}),
    )
    .await;
    let m = next_check(&strict, made["id"].as_str().unwrap()).await;
    assert_eq!(m["status"], "down");
    assert!(
        m["last_failure"].as_str().unwrap().contains("probe_allow"),
        "{m}"
    );
    assert_eq!(target.hits.load(Ordering::SeqCst), 0);
    drop(open);
}
