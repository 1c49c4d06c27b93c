//! SLOs over HTTP with every role running (SPEC §7): a monitor SLO whose real
//! local target goes down — budget consumed, a page and a ticket opened by the
//! evaluator and delivered to a local webhook channel through the bus, the page
//! resolved once the short window clears; a request SLO counting Keel's own
//! requests; definitions and their 400s; the Prometheus rule file. Time is the
//! test's clock: each check moves it to the monitor's next slot.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{extract::State, http::StatusCode, routing::get, routing::post, Json, Router};
use common::{local_webhooks, spawn_app_with, Bearer, ExpectProblem, TestApp};
use keel_core::clock::Clock;
use keel_server::ServerConfig;
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Target {
    down: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Value>>>,
}

async fn health(State(target): State<Target>) -> StatusCode {
    if target.down.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn receive(State(target): State<Target>, Json(body): Json<Value>) -> StatusCode {
    target.received.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

/// A health endpoint the test switches and a webhook receiver, on one port.
async fn start_target() -> (String, Target) {
    let target = Target::default();
    let app = Router::new()
        .route("/health", get(health))
        .route("/hook", post(receive))
        .with_state(target.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, target)
}

fn config() -> ServerConfig {
    let mut config = local_webhooks();
    config.limits.probe_allow = vec!["127.0.0.0/8".into()];
    config.slo_evaluate_every = Duration::from_millis(50);
    config
}

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app
        .post_json(path, body)
        .key(&app.operator_key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{path}: {body}");
    body
}

/// Moves the clock to the monitor's next slot and waits for it to be recorded.
async fn next_check(app: &TestApp, id: &str) {
    let before = app
        .get_json(&format!("/v1/monitors/{id}"), &app.operator_key)
        .await;
    let slot = before["next_check_at"].as_str().unwrap().to_owned();
    app.set_today(&slot);
    for _ in 0..400 {
        let now = app
            .get_json(&format!("/v1/monitors/{id}"), &app.operator_key)
            .await;
        if now["last_check_at"].as_str() == Some(slot.as_str()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the slot {slot} was not checked");
}

/// Polls the SLO until `ready` holds of it.
async fn slo_until(app: &TestApp, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = app
            .get_json(&format!("/v1/slos/{id}"), &app.operator_key)
            .await;
        if ready(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {last:#}");
}

fn alert<'a>(slo: &'a Value, severity: &str) -> Option<&'a Value> {
    slo["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["severity"] == severity)
}

async fn notices_until(target: &Target, what: &str, ready: impl Fn(&[Value]) -> bool) {
    for _ in 0..300 {
        if ready(&target.received.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {:#?}", target.received.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_burns_the_budget_pages_and_the_page_resolves() {
    let app = spawn_app_with(config()).await;
    let (base, target) = start_target().await;
    let channel = created(
        &app,
        "/v1/channels",
        json!({"name": "ops", "kind": "webhook", "url": format!("{base}/hook")}),
    )
    .await;
    assert_eq!(channel["kind"], "webhook");
    let monitor = created(
        &app,
        "/v1/monitors",
        json!({"name": "site", "kind": "http", "target": format!("{base}/health"),
               "interval_s": 60, "timeout_ms": 2000, "conditions": ["status == 200"]}),
    )
    .await;
    let id = monitor["id"].as_str().unwrap();
    let slo = created(
        &app,
        "/v1/slos",
        json!({"name": "site availability", "objective": 99, "window": "30d",
               "sli": {"monitor": id}, "channels": [channel["id"]]}),
    )
    .await;
    let slo_id = slo["id"].as_str().unwrap();
    assert_eq!(slo["sli"], json!({"good": 0, "total": 0, "value": null}));
    assert_eq!(slo["error_budget"]["remaining_percent"], 100.0);

    for _ in 0..10 {
        next_check(&app, id).await;
    }
    target.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        next_check(&app, id).await;
    }
    // 3 bad of 13: 1% of 13 events allowed (0.13), 3 consumed. Over 1h and 5m
    // the bad share (23% and 60%) is far above 14.4 × 1%: a page, and a ticket.
    let burning = slo_until(&app, slo_id, "a page and a ticket", |s| {
        alert(s, "page").is_some_and(|a| a["status"] == "firing")
            && alert(s, "ticket").is_some_and(|a| a["status"] == "firing")
    })
    .await;
    assert_eq!(burning["sli"]["good"], 10);
    assert_eq!(burning["sli"]["total"], 13);
    assert_eq!(burning["error_budget"]["total"], 0.13);
    assert_eq!(burning["error_budget"]["consumed"], 3);
    assert_eq!(burning["burn_rates"]["5m"], 60.0);
    // The evaluator runs between checks: after the first failure (1 of 11) the
    // slow page rule (6h/30m at 6×) already fires; the alert keeps that rule.
    let windows = alert(&burning, "page").unwrap()["windows"].clone();
    assert!(windows == "6h/30m" || windows == "1h/5m", "{windows}");
    // -(3 - 0.13) / 0.13: the budget is overspent 22 times over.
    assert_eq!(burning["error_budget"]["remaining_percent"], -2207.69230769);
    notices_until(
        &target,
        "the page and the incident reach the channel",
        |got| {
            got.iter().any(|n| {
                n["kind"] == "slo_alert" && n["event"] == "opened" && n["severity"] == "critical"
            }) && got
                .iter()
                .any(|n| n["kind"] == "incident" && n["event"] == "opened")
        },
    )
    .await;

    // Back up: once the last 30 minutes are clean both page rules clear and the
    // page resolves, though the 1h and 6h windows still hold the outage (the
    // short windows are what let an alert reset). The ticket's 2h window does
    // not clear yet.
    target.down.store(false, Ordering::SeqCst);
    for _ in 0..30 {
        next_check(&app, id).await;
    }
    let recovered = slo_until(&app, slo_id, "the page resolves", |s| {
        alert(s, "page").is_some_and(|a| a["status"] == "resolved")
    })
    .await;
    assert_eq!(recovered["burn_rates"]["5m"], 0.0);
    assert!(
        recovered["burn_rates"]["1h"].as_f64().unwrap() > 6.0,
        "{recovered:#}"
    );
    assert_eq!(alert(&recovered, "ticket").unwrap()["status"], "firing");
    notices_until(&target, "the resolution reaches the channel", |got| {
        got.iter()
            .any(|n| n["kind"] == "slo_alert" && n["event"] == "resolved")
            && got
                .iter()
                .any(|n| n["kind"] == "incident" && n["event"] == "resolved")
    })
    .await;
    // Each delivery is recorded on the channel's subscription.
    let deliveries = app
        .get_json(channel["deliveries"].as_str().unwrap(), &app.operator_key)
        .await;
    assert!(
        deliveries["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["outcome"] == "delivered")
            .count()
            >= 4,
        "{deliveries:#}"
    );
    // The month's report: 43 checks (10 up, 3 down, 30 up), one incident, three
    // failed minutes, and the SLO missed.
    let month = app.clock.now().strftime("%Y-%m").to_string();
    let report = app
        .get_json(
            &format!("/v1/reports/uptime?period={month}"),
            &app.operator_key,
        )
        .await;
    let line = &report["monitors"][0];
    assert_eq!(line["name"], "site");
    assert_eq!(line["checks"], 43);
    assert_eq!(line["incidents"], 1);
    assert_eq!(line["downtime_minutes"], 3.0);
    assert_eq!(report["slos"][0]["met"], false);
    assert_eq!(report["slos"][0]["consumed_events"], 3);
    let csv = app
        .get(&format!("/v1/reports/uptime?period={month}&format=csv"))
        .key(&app.operator_key)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("kind,name,uptime_percent,objective,met"),
        "{csv}"
    );
    assert!(csv.contains("\r\nslo,site availability,"), "{csv}");
    app.get("/v1/reports/uptime?period=2026-13")
        .key(&app.operator_key)
        .problem(400)
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
        metrics.contains("keel_slo_error_budget_remaining_percent{tenant="),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"bad\""), "SLO events counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_hides_an_outage_from_the_budget() {
    let app = spawn_app_with(config()).await;
    let (base, target) = start_target().await;
    let monitor = created(
        &app,
        "/v1/monitors",
        json!({"name": "db", "kind": "http", "target": format!("{base}/health"),
               "interval_s": 60, "timeout_ms": 2000, "incident_after": 1,
               "conditions": ["status == 200"]}),
    )
    .await;
    let id = monitor["id"].as_str().unwrap();
    let slo = created(
        &app,
        "/v1/slos",
        json!({"name": "db", "objective": 99.9, "sli": {"monitor": id}}),
    )
    .await;
    let slo_id = slo["id"].as_str().unwrap();
    next_check(&app, id).await;
    // A window over the next ten minutes, on this monitor only.
    let now = app.clock.now();
    let window = created(
        &app,
        "/v1/maintenance",
        json!({"name": "upgrade", "monitors": [id],
               "starts_at": now.to_string(),
               "ends_at": (now + jiff::SignedDuration::from_mins(10)).to_string()}),
    )
    .await;
    assert_eq!(window["active"], true);
    target.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        next_check(&app, id).await;
    }
    let during = app
        .get_json(&format!("/v1/monitors/{id}"), &app.operator_key)
        .await;
    assert_eq!(during["status"], "maintenance");
    assert_eq!(
        during["open_incident"],
        Value::Null,
        "no incident in maintenance"
    );
    let slo = app
        .get_json(&format!("/v1/slos/{slo_id}"), &app.operator_key)
        .await;
    assert_eq!(
        slo["sli"]["total"], 1,
        "only the check before the window counts"
    );
    assert_eq!(slo["error_budget"]["consumed"], 0);
    assert!(slo["alerts"].as_array().unwrap().is_empty());
    let uptime = app
        .get_json(
            &format!("/v1/monitors/{id}/uptime?window=1h"),
            &app.operator_key,
        )
        .await;
    assert_eq!(uptime["uptime_percent"], 100.0);
    assert_eq!(uptime["maintenance_checks"], 3);
    // Past its end the outage counts again.
    let listed = app.get_json("/v1/maintenance", &app.operator_key).await;
    assert_eq!(listed["windows"][0]["id"], window["id"]);
    for _ in 0..12 {
        next_check(&app, id).await;
        let m = app
            .get_json(&format!("/v1/monitors/{id}"), &app.operator_key)
            .await;
        if m["status"] != "maintenance" {
            assert_eq!(m["status"], "down");
            break;
        }
    }
    let after = app
        .get_json(&format!("/v1/slos/{slo_id}"), &app.operator_key)
        .await;
    assert_eq!(after["error_budget"]["consumed"], 1, "{after:#}");
    let bad = app
        .post_json(
            "/v1/maintenance",
            json!({"name": "x", "monitors": ["nope"],
            "recurring": {"weekdays": ["sun"], "start": "02:00", "duration_minutes": 60}}),
        )
        .key(&app.operator_key)
        .problem(400)
        .await;
    assert_eq!(bad["errors"][0]["pointer"], "/monitors/0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slo_counts_keels_own_requests() {
    let app = spawn_app_with(config()).await;
    let slo = created(
        &app,
        "/v1/slos",
        json!({"name": "greeter", "objective": 99.9, "window": "month",
               "time_zone": "Europe/Berlin",
               "sli": {"requests": {"route": "/hello/*", "good": "status < 400 and latency_ms < 5000"}}}),
    )
    .await;
    let id = slo["id"].as_str().unwrap();
    assert_eq!(
        slo["indicator"]["requests"]["good"],
        "status < 400 and latency_ms < 5000"
    );
    // Two good (a PUT and a GET), one bad (an unknown user: 404), none from
    // elsewhere (other paths do not count).
    let put = app
        .request(reqwest::Method::PUT, "/hello/alice")
        .json(&json!({"dateOfBirth": "1990-01-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(app.get("/hello/alice").send().await.unwrap().status(), 200);
    assert_eq!(app.get("/hello/nobody").send().await.unwrap().status(), 404);
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    let counted = slo_until(&app, id, "three requests counted", |s| {
        s["sli"]["total"] == 3
    })
    .await;
    assert_eq!(counted["sli"]["good"], 2);
    // 99.9% of 3 events allows 0.003 bad; 1 consumed.
    assert_eq!(counted["error_budget"]["total"], 0.003);
    assert_eq!(counted["error_budget"]["consumed"], 1);
    assert_eq!(counted["sli"]["value"], 66.66666667);
    // The month in Berlin: 2024-06 starts at 22:00 UTC on 31 May.
    assert_eq!(counted["window_start"], "2024-05-31T22:00:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_checked_and_rules_come_as_yaml() {
    let app = spawn_app_with(config()).await;
    let key = app.operator_key.clone();
    let bad = app
        .post_json(
            "/v1/slos",
            json!({"name": "x", "objective": 100, "window": "year",
                   "sli": {"requests": {"route": "/hello/*", "good": "status <"}}}),
        )
        .key(&key)
        .problem(400)
        .await;
    let pointers: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        vec!["/objective", "/window", "/sli/requests/good"]
    );
    let bad = app
        .post_json(
            "/v1/slos",
            json!({"name": "x", "objective": 99, "sli": {"monitor": "nope"}, "channels": ["c"]}),
        )
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(bad["errors"][0]["pointer"], "/sli/monitor");
    assert_eq!(bad["errors"][1]["pointer"], "/channels/0");
    let bad = app
        .post_json("/v1/channels", json!({"name": "pd", "kind": "pagerduty"}))
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(bad["errors"][0]["pointer"], "/routing_key");
    // Clients cannot make notify subscriptions of their own.
    let refused = app
        .request(reqwest::Method::PUT, "/v1/topics/t/subscriptions/s")
        .json(&json!({"target": {"type": "notify", "channel": "x"}}))
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(refused["errors"][0]["pointer"], "/target/type");

    let slo = created(
        &app,
        "/v1/slos",
        json!({"name": "api", "objective": 99.95,
               "sli": {"requests": {"route": "/v1/**", "good": "status < 500"}}}),
    )
    .await;
    let id = slo["id"].as_str().unwrap();
    assert_eq!(slo["objective"], 99.95);
    assert_eq!(
        app.post_json(
            "/v1/slos",
            json!({"name": "api", "objective": 99, "sli": {"monitor": "m"}})
        )
        .key(&key)
        .send()
        .await
        .unwrap()
        .status(),
        400,
        "the unknown monitor is named before the name clash"
    );
    let rules = app
        .get(&format!("/v1/slos/{id}/prometheus-rules"))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(rules.status(), 200);
    assert_eq!(rules.headers()["content-type"], "application/yaml");
    let yaml = rules.text().await.unwrap();
    assert!(yaml.contains("14.4 * 0.0005"), "{yaml}");
    if let Some(promtool) = common::promtool() {
        let promtool = promtool.as_path();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &yaml).unwrap();
        let out = std::process::Command::new(promtool)
            .args(["check", "rules"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules: {}{}\n{yaml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        promtool_test_rules(promtool, &yaml);
    }
    let list = app.get_json("/v1/slos", &key).await;
    assert_eq!(list["slos"].as_array().unwrap().len(), 1);
    let gone = app
        .request(reqwest::Method::DELETE, &format!("/v1/slos/{id}"))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    app.get(&format!("/v1/slos/{id}"))
        .key(&key)
        .problem(404)
        .await;
}

/// `promtool test rules`: 10% of a 99.95% SLO's events bad for 70 minutes pages
/// and tickets; the same traffic with nothing bad alerts neither.
fn promtool_test_rules(promtool: &std::path::Path, rules: &str) {
    let tenant = rules
        .lines()
        .find_map(|l| l.trim().strip_prefix("tenant: "))
        .expect("the rules name the tenant");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let series = |outcome: &str, values: &str| {
        format!(
            "      - series: 'keel_slo_events_total{{tenant={tenant},slo=\"api\",outcome=\"{outcome}\"}}'\n        values: '{values}'\n"
        )
    };
    let alert = |name: &str, severity: &str, firing: bool| {
        let expected = if firing {
            format!(
                "\n          - exp_labels: {{severity: {severity}, tenant: {tenant}, slo: \"api\"}}\n            exp_annotations: {{summary: \"SLO api is burning its error budget too fast ({severity})\"}}"
            )
        } else {
            " []".to_owned()
        };
        format!(
            "      - eval_time: 70m\n        alertname: {name}\n        exp_alerts:{expected}\n"
        )
    };
    let case = |bad: &str, firing: bool| {
        format!(
            "  - interval: 1m\n    input_series:\n{}{}    alert_rule_test:\n{}{}",
            series("good", "0+90x120"),
            series("bad", bad),
            alert("KeelSloBurnRatePage", "page", firing),
            alert("KeelSloBurnRateTicket", "ticket", firing),
        )
    };
    let tests = format!(
        "rule_files: [rules.yaml]\nevaluation_interval: 1m\ntests:\n{}{}",
        case("0+10x120", true),
        case("0x120", false)
    );
    std::fs::write(dir.path().join("tests.yaml"), &tests).unwrap();
    let out = std::process::Command::new(promtool)
        .current_dir(dir.path())
        .args(["test", "rules", "tests.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules: {}{}\n{tests}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
