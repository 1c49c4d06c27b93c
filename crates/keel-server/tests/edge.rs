//! SPEC §0 conventions through HTTP: request ids, problem documents for every
//! error class, body limits, rate limits, 503 while the store is locked, metrics,
//! the request overview and the OpenAPI document.

mod common;

use std::time::Duration;

use common::{expect_problem, spawn_app, spawn_app_with, Bearer, ExpectProblem};
use keel_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = spawn_app().await;
    let given = app
        .get("/healthz")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-abc-123");
    let made = app.get("/healthz").send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    // Unsafe ids are replaced, not echoed.
    let unsafe_id = app
        .get("/healthz")
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(unsafe_id.headers()["x-request-id"], "a b");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let problem = app.get("/nope").problem(404).await;
    assert_eq!(problem["instance"], "/nope");
    let wrong = app
        .request(Method::DELETE, "/v1/next")
        .send()
        .await
        .unwrap();
    assert!(wrong.headers().contains_key("allow"));
    expect_problem(wrong, 405).await;
    app.request(Method::PATCH, "/hello/Ana").problem(405).await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(ServerConfig {
        body_limit_bytes: 1024,
        ..Default::default()
    })
    .await;
    let big = json!({"dateOfBirth": "1990-01-01", "padding": "x".repeat(2000)});
    app.put_json("/hello/Ana", big).problem(413).await;
    // The default limit is 1 MiB.
    let app = spawn_app().await;
    let big = json!({"email": "a@example.com", "password": "x".repeat(1024 * 1024 + 10)});
    app.post_json("/v1/users", big).problem(413).await;
}

#[tokio::test]
async fn keys_are_rate_limited_with_retry_after() {
    let app = spawn_app_with(ServerConfig {
        rate_limit_per_second: 1.0,
        rate_limit_burst: 3.0,
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/v1/me")
                .key(&app.operator_key)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let limited = app
        .get("/v1/me")
        .key(&app.operator_key)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    expect_problem(limited, 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_answers_503_then_recovers_by_itself() {
    let app = spawn_app().await;
    if app.backend != "sqlite" {
        // PostgreSQL's version of this is the fault test that stops the server.
        eprintln!("skipping: locks the SQLite file");
        return;
    }
    let key = app.register("lock@example.com").await;
    // Another process holds the database's write lock for longer than Keel's busy
    // timeout (5 s).
    let blocker = rusqlite::Connection::open(&app.db_path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let response = app
        .get("/v1/next")
        .key(&key)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 503).await;
    // Reads still work while writes wait.
    assert_eq!(
        app.get("/v1/current")
            .key(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    let after = app.get("/v1/next").key(&key).send().await.unwrap();
    assert_eq!(after.status(), 200);
    let body: Value = after.json().await.unwrap();
    assert_eq!(
        body["data"]["attributes"]["value"], 1,
        "the refused increment left no trace"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app().await;
    app.put_json("/hello/Ana", json!({"dateOfBirth": "1990-01-01"}))
        .send()
        .await
        .unwrap();
    for name in ["Ana", "Bob"] {
        app.get(&format!("/hello/{name}")).send().await.unwrap();
    }
    let response = app.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"keel_http_requests_total{route="/hello/{username}",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"keel_http_requests_total{route="/hello/{username}",method="GET",status="404"} 1"#
    ));
    assert!(
        text.contains(r#"keel_http_request_duration_seconds_bucket{le="#)
            || text.contains("keel_http_request_duration_seconds_bucket{")
    );
    assert!(text.contains("keel_store_commits_total"));
    assert!(text.contains("keel_store_committed_writes_total"));
}

#[tokio::test]
async fn metrics_can_require_an_operator_key() {
    let app = spawn_app_with(ServerConfig {
        metrics_public: false,
        ..Default::default()
    })
    .await;
    app.get("/metrics").problem(401).await;
    let user = app.register("m@example.com").await;
    app.get("/metrics").key(&user).problem(403).await;
    assert_eq!(
        app.get("/metrics")
            .key(&app.operator_key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn stats_overview_reports_percentiles_errors_and_throughput() {
    let app = spawn_app().await;
    app.put_json("/hello/Ana", json!({"dateOfBirth": "1990-01-01"}))
        .send()
        .await
        .unwrap();
    for _ in 0..8 {
        app.get("/hello/Ana").send().await.unwrap();
    }
    app.get("/hello/Nobody").send().await.unwrap();
    let overview: Value = app
        .get_json("/v1/stats/overview?window=1h", &app.operator_key)
        .await;
    assert_eq!(overview["window_minutes"], 60);
    let route = overview["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "GET /hello/{username}")
        .unwrap_or_else(|| panic!("{overview}"));
    assert_eq!(route["requests"], 9);
    assert!((route["error_rate_percent"].as_f64().unwrap() - 11.111).abs() < 0.01);
    assert_eq!(route["server_error_rate_percent"], 0.0);
    for q in ["p50", "p95", "p99"] {
        assert!(route["latency_ms"][q].as_f64().unwrap() > 0.0);
    }
    assert!(overview["overall"]["requests"].as_u64().unwrap() >= 10);
    assert!(!overview["throughput_per_minute"]
        .as_array()
        .unwrap()
        .is_empty());
    app.get("/v1/stats/overview?window=3w")
        .key(&app.operator_key)
        .problem(400)
        .await;
    let user = app.register("s@example.com").await;
    app.get("/v1/stats/overview").key(&user).problem(403).await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 200);
    app.state.start_draining();
    let draining = app.get("/readyz").send().await.unwrap();
    assert!(draining.headers().contains_key("retry-after"));
    expect_problem(draining, 503).await;
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("/hello/{username}", vec!["get", "put"]),
        ("/v1/users", vec!["post"]),
        ("/v1/keys", vec!["get", "post"]),
        ("/v1/keys/{prefix}", vec!["delete"]),
        ("/v1/next", vec!["get", "post"]),
        ("/v1/current", vec!["get", "put"]),
        ("/v1/counters/{name}/next", vec!["get", "post"]),
        ("/v1/counters/{name}/current", vec!["get", "put"]),
        ("/v1/me", vec!["get"]),
        ("/v1/audit", vec!["get"]),
        ("/v1/admin/tenants", vec!["get", "post"]),
        ("/v1/admin/keys", vec!["post"]),
        ("/v1/stats/overview", vec!["get"]),
        ("/v1/topics/{topic}", vec!["put"]),
        ("/v1/topics/{topic}/messages", vec!["post"]),
        (
            "/v1/topics/{topic}/subscriptions/{name}",
            vec!["get", "put"],
        ),
        ("/v1/queues/{topic}/{subscription}", vec!["get"]),
        ("/v1/queues/{topic}/{subscription}/receive", vec!["post"]),
        ("/v1/queues/{topic}/{subscription}/ack", vec!["post"]),
        ("/v1/queues/{topic}/{subscription}/nack", vec!["post"]),
        ("/v1/queues/{topic}/{subscription}/dlq", vec!["get"]),
        (
            "/v1/queues/{topic}/{subscription}/dlq/redrive",
            vec!["post"],
        ),
        ("/v1/queues/{topic}/{subscription}/attempts", vec!["get"]),
        ("/v1/collections/{collection}/records", vec!["get", "post"]),
        (
            "/v1/collections/{collection}/records/{id}",
            vec!["get", "delete"],
        ),
        ("/v1/buckets", vec!["get"]),
        ("/v1/subscriptions", vec!["get"]),
        ("/v1/buckets/{bucket}", vec!["put"]),
        ("/v1/buckets/{bucket}/notifications", vec!["get", "put"]),
        ("/v1/buckets/{bucket}/objects", vec!["get"]),
        (
            "/v1/buckets/{bucket}/objects/{key}",
            vec!["get", "put", "head", "delete"],
        ),
        ("/v1/telemetry", vec!["post"]),
        ("/v1/telemetry/retention", vec!["get", "put"]),
        ("/v1/logs", vec!["get", "post"]),
        ("/v1/metrics", vec!["post"]),
        ("/v1/metrics/{name}", vec!["get"]),
        ("/v1/monitors", vec!["get", "post"]),
        ("/v1/monitors/{id}", vec!["get", "put", "delete"]),
        ("/v1/monitors/{id}/push", vec!["post"]),
        ("/v1/monitors/{id}/uptime", vec!["get"]),
        ("/v1/monitors/{id}/incidents", vec!["get"]),
        ("/v1/incidents/{id}", vec!["patch"]),
        ("/v1/slos", vec!["get", "post"]),
        ("/v1/slos/{id}", vec!["get", "delete"]),
        ("/v1/slos/{id}/prometheus-rules", vec!["get"]),
        ("/v1/channels", vec!["get", "post"]),
        ("/v1/channels/{id}", vec!["get", "delete"]),
        ("/v1/maintenance", vec!["get", "post"]),
        ("/v1/maintenance/{id}", vec!["delete"]),
        ("/v1/reports/uptime", vec!["get"]),
        ("/status/{tenant}", vec!["get"]),
        ("/status/{tenant}/monitors/{id}/badge.svg", vec!["get"]),
        ("/healthz", vec!["get"]),
        ("/readyz", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/openapi.json", vec!["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        expected.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in expected {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path} missing");
        }
    }
}

/// Junk of every shape on every route with a body: never a 5xx, always a problem.
#[tokio::test]
async fn junk_input_never_causes_a_server_error() {
    let app = spawn_app().await;
    let user = app.register("junk@example.com").await;
    let bodies = [
        "",
        "null",
        "0",
        "-1",
        "\"x\"",
        "[]",
        "{}",
        "[[[[[[[[[[]]]]]]]]]]",
        "{\"a\":",
        "\u{0}",
        "{\"dateOfBirth\": {\"$gt\": 1}}",
        "{\"current\": 1e400}",
        "{\"email\": [], \"password\": {}}",
        "{\"data\": []}",
        "{\"data\": {\"attributes\": []}}",
        "{\"scopes\": \"read\"}",
        "{\"scopes\": [1]}",
        "{\"name\": \"\"}",
        "{\"tenant_id\": null}",
        "\u{feff}{}",
        r#"{"body": 1, "attributes": {"a": {}}}"#,
        r#"{"messages": [1]}"#,
        r#"{"messages": []}"#,
        r#"{"target": {"type": "queue"}, "filter": {"$or": 1}}"#,
        r#"{"target": {"type": "queue"}, "max_receives": -1}"#,
        r#"{"target": {"type": "queue"}, "visibility_timeout_s": 99999999999}"#,
        r#"{"receipts": ["x"]}"#,
        r#"{"receipts": []}"#,
        r#"{"ids": [1]}"#,
        r#"{"max": 1e9}"#,
    ];
    let routes = [
        (Method::PUT, "/hello/Ana"),
        (Method::PUT, "/v1/current"),
        (Method::PUT, "/v1/counters/a/current"),
        (Method::POST, "/v1/users"),
        (Method::POST, "/v1/keys"),
        (Method::POST, "/v1/admin/tenants"),
        (Method::POST, "/v1/admin/keys"),
        (Method::POST, "/v1/topics/junk/messages"),
        (Method::PUT, "/v1/topics/junk/subscriptions/q"),
        (Method::POST, "/v1/queues/junk/q/receive"),
        (Method::POST, "/v1/queues/junk/q/ack"),
        (Method::POST, "/v1/queues/junk/q/nack"),
        (Method::POST, "/v1/queues/junk/q/dlq/redrive"),
        (Method::POST, "/v1/collections/junk/records"),
        (Method::POST, "/v1/collections/junk/records?wait=true"),
        (Method::POST, "/v1/monitors"),
        (Method::PUT, "/v1/monitors/junk"),
        (Method::PATCH, "/v1/incidents/junk"),
        (Method::POST, "/v1/monitors/junk/push?token=x"),
        (Method::POST, "/v1/slos"),
        (Method::POST, "/v1/channels"),
        (Method::POST, "/v1/maintenance"),
    ];
    for key in [None, Some(user.as_str()), Some(app.operator_key.as_str())] {
        for (method, path) in &routes {
            for body in bodies {
                let mut request = app
                    .request(method.clone(), path)
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(key) = key {
                    request = request.key(key);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                assert!(status < 500, "{method} {path} {body:?} → {status}");
                if status >= 400 {
                    expect_problem(response, status).await;
                }
            }
        }
    }
}
