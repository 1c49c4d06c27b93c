//! A real OpenTelemetry SDK as the client (SPEC §6): the Python SDK's OTLP/HTTP
//! protobuf exporters send 50 log records and two metrics (metrics gzipped) to a
//! running Keel, and every record is queryable afterwards.
//!
//! Needs `KEEL_TEST_OTEL_PYTHON`: a Python with `opentelemetry-sdk` and
//! `opentelemetry-exporter-otlp-proto-http` (`.ci/run` makes a virtual environment
//! and sets it). Without it the test says so and skips.

mod common;

use common::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn the_python_sdk_exports_logs_and_metrics_that_are_queryable() {
    let Ok(python) = std::env::var("KEEL_TEST_OTEL_PYTHON") else {
        eprintln!("skipped: set KEEL_TEST_OTEL_PYTHON to a Python with the OpenTelemetry SDK");
        return;
    };
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/otel_sdk_client.py"
    );
    let output = tokio::process::Command::new(&python)
        .args([script, &app.base, &key, "run-42"])
        .output()
        .await
        .expect("run the OpenTelemetry client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client failed: {stderr}");
    assert!(!stderr.contains("Failed to export"), "{stderr}");

    // The SDK stamps records with the real time; the test clock is elsewhere.
    let window = "from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(
                &format!("/v1/logs?{window}&account=otel-acct&q=run%2042&limit=20{cursor}"),
                &key,
            )
            .await;
        seen.extend(
            page["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["log"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    seen.sort();
    let mut expected: Vec<String> = (0..50)
        .map(|i| format!("sdk record {i} of run-42"))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    let one = app
        .get_json(
            &format!("/v1/logs?{window}&q=sdk%20record%207&limit=1"),
            &key,
        )
        .await;
    let line = &one["logs"][0];
    assert_eq!(line["attributes"]["resource"]["service.name"], "sdk-test");
    assert!(
        line["level"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .starts_with("warn"),
        "{line}"
    );

    let metric = |name: &str, agg: &str| {
        let path = format!(
            "/v1/metrics/{name}?{window}&account=otel-acct&label.route=/checkout&agg={agg}"
        );
        let app = &app;
        let key = key.clone();
        async move {
            let series: Value = app.get_json(&path, &key).await;
            series["points"][0]["value"].as_f64()
        }
    };
    assert_eq!(metric("sdk.requests", "max").await, Some(7.0));
    assert_eq!(metric("sdk.latency_count", "max").await, Some(7.0));
    assert_eq!(metric("sdk.latency_sum", "max").await, Some(280.0));
}
