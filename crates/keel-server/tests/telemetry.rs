//! SPEC §6 telemetry through HTTP: the simple shape and OTLP/HTTP in (protobuf and
//! JSON, gzip, partial success, bad input), logs and metric queries out, and the
//! seed's flow end to end — an upload under `data/` ending in `.json` imported by
//! a `telemetry-import` subscription. Runs on SQLite + files, and in CI again on
//! PostgreSQL + Redis + NATS + S3 (`KEEL_TEST_HTTP_BACKEND=postgres`).

mod common;

use std::{io::Write, time::Duration};

use common::{spawn_app, spawn_app_with, Bearer, ExpectProblem, TestApp};
use keel_server::ServerConfig;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
        metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    },
    common::v1::{any_value, AnyValue, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics,
    },
    resource::v1::Resource,
};
use prost::Message;
use reqwest::Method;
use serde_json::{json, Value};

const FROM: &str = "2024-06-15T00:00:00Z";
const TO: &str = "2024-06-16T00:00:00Z";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post_telemetry(
    app: &TestApp,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.request(Method::POST, "/v1/telemetry")
        .key(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn logs(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let found = app
        .get_json(&format!("/v1/logs?from={FROM}&to={TO}&{query}"), key)
        .await;
    found["logs"].as_array().unwrap().clone()
}

fn bodies(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["log"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn simple_telemetry_is_stored_and_queried_by_account_level_words_and_time() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    // The seed's shape: one object with a log and a metric (counted as 1).
    let seed = post_telemetry(
        &app,
        &key,
        "application/json",
        br#"{"log": "sample_log_data", "metric": "sample_metric_data", "account": "111"}"#.to_vec(),
    )
    .await;
    assert_eq!(seed.status(), 202);
    assert_eq!(
        seed.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "rejected": 0, "errors": []})
    );

    let array = json!([
        {"log": "Disk full on /dev/sda1", "level": "ERROR", "ts": "2024-06-15T10:00:00Z", "account": "111", "attributes": {"host": "a"}},
        {"log": "disk quota exceeded", "level": "warn", "ts": "2024-06-15T11:00:00Z", "resource": {"cloud.account.id": "222"}},
        {"metric": "cpu", "value": 0.5, "ts": "2024-06-15T10:00:10Z", "labels": {"host": "a"}, "account": "111"},
        {"metric": "cpu", "value": 1.5, "ts": "2024-06-15T10:00:50Z", "labels": {"host": "b"}, "account": "111"},
        {"metric": "cpu", "value": 4.0, "ts": "2024-06-15T10:01:10Z", "labels": {"host": "a"}, "account": "222"},
        {"nothing": "here"}
    ]);
    let response = post_telemetry(
        &app,
        &key,
        "application/json",
        array.to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 202);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(5), Some(1))
    );
    assert!(
        report["errors"][0].as_str().unwrap().starts_with("/5:"),
        "{report}"
    );

    // NDJSON, gzipped, with a broken line and one far too long.
    let huge = format!("{{\"log\": \"{}\"}}", "x".repeat(300 * 1024));
    let ndjson = format!(
        "{{\"log\": \"service started\", \"ts\": \"2024-06-15T09:00:00Z\", \"account\": \"111\"}}\n{{not json\n{huge}\n"
    );
    let response = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(ndjson.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{report}"
    );
    assert!(report["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("line 2: not JSON"));
    assert!(report["errors"][1]
        .as_str()
        .unwrap()
        .contains("longer than"));

    // Queries: newest first, by words, level, account and time.
    let all = logs(&app, &key, "").await;
    assert_eq!(
        bodies(&all),
        [
            "sample_log_data",
            "disk quota exceeded",
            "Disk full on /dev/sda1",
            "service started"
        ]
    );
    assert_eq!(all[2]["level"], "ERROR");
    assert_eq!(all[2]["account"], "111");
    assert_eq!(all[2]["attributes"]["host"], "a");
    assert_eq!(all[2]["ts"], "2024-06-15T10:00:00Z");
    assert_eq!(
        bodies(&logs(&app, &key, "q=DISK").await),
        ["disk quota exceeded", "Disk full on /dev/sda1"]
    );
    assert_eq!(
        bodies(&logs(&app, &key, "q=disk%20full&level=error").await),
        ["Disk full on /dev/sda1"]
    );
    assert_eq!(
        bodies(&logs(&app, &key, "account=222").await),
        ["disk quota exceeded"]
    );
    let window = app
        .get_json(
            "/v1/logs?from=2024-06-15T09:30:00Z&to=2024-06-15T10:30:00Z",
            &key,
        )
        .await;
    assert_eq!(
        bodies(window["logs"].as_array().unwrap()),
        ["Disk full on /dev/sda1"]
    );
    // The default window is the last hour: the seed line (sent "now") only.
    let recent = app.get_json("/v1/logs", &key).await;
    assert_eq!(
        bodies(recent["logs"].as_array().unwrap()),
        ["sample_log_data"]
    );
    // Cursors.
    let first = app
        .get_json(&format!("/v1/logs?from={FROM}&to={TO}&limit=3"), &key)
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(
            &format!("/v1/logs?from={FROM}&to={TO}&limit=3&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(
        bodies(rest["logs"].as_array().unwrap()),
        ["service started"]
    );
    assert!(rest["next_cursor"].is_null());

    // Metrics: one series per step, each aggregation, labels and account.
    let series = |query: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            app.get_json(
                &format!(
                    "/v1/metrics/cpu?from=2024-06-15T10:00:00Z&to=2024-06-15T10:02:00Z&{query}"
                ),
                &key,
            )
            .await
        }
    };
    let avg = series("step=1m").await;
    assert_eq!(avg["metric"], "cpu");
    assert_eq!(avg["agg"], "avg");
    assert_eq!(
        avg["points"],
        json!([{"ts": "2024-06-15T10:00:00Z", "value": 1.0}, {"ts": "2024-06-15T10:01:00Z", "value": 4.0}])
    );
    assert_eq!(
        series("agg=sum").await["points"],
        json!([{"ts": "2024-06-15T10:00:00Z", "value": 6.0}])
    );
    assert_eq!(series("agg=count").await["points"][0]["value"], 3.0);
    assert_eq!(
        series("agg=max&account=111").await["points"][0]["value"],
        1.5
    );
    assert_eq!(
        series("agg=p99&label.host=a").await["points"][0]["value"],
        4.0
    );
    assert_eq!(
        series("agg=min&label.host=a&account=111").await["points"][0]["value"],
        0.5
    );
    let seed_metric = app
        .get_json("/v1/metrics/sample_metric_data?agg=sum", &key)
        .await;
    assert_eq!(seed_metric["points"][0]["value"], 1.0);

    // Another tenant sees none of it.
    let other = app.register("other@example.com").await;
    assert!(logs(&app, &other, "").await.is_empty());
    let theirs = app
        .get_json(
            "/v1/metrics/cpu?from=2024-06-15T10:00:00Z&to=2024-06-15T10:02:00Z",
            &other,
        )
        .await;
    assert_eq!(theirs["points"], json!([]));
}

#[tokio::test]
async fn bad_telemetry_gets_clear_answers() {
    let mut config = ServerConfig::default();
    config.limits.telemetry_max_bytes = 64 * 1024;
    let app = spawn_app_with(config).await;
    let key = app.register("o@example.com").await;
    let wrong_type = post_telemetry(&app, &key, "text/plain", b"{\"log\": \"x\"}".to_vec()).await;
    assert_eq!(wrong_type.status(), 415);
    let not_json = post_telemetry(&app, &key, "application/json", b"{nope".to_vec()).await;
    assert_eq!(not_json.status(), 400);
    let too_big = post_telemetry(&app, &key, "application/x-ndjson", vec![b' '; 65 * 1024]).await;
    assert_eq!(too_big.status(), 413);
    // A gzip bomb: 66 bytes on the wire, 10 MiB inflated.
    let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
    assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
    let response = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(bomb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let broken_gzip = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(broken_gzip.status(), 400);
    let brotli = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(b"{}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.status(), 415);
    // Queries refuse what they cannot answer.
    for bad in [
        "/v1/logs?from=yesterday",
        "/v1/logs?from=2024-06-15T12:00:00Z&to=2024-06-15T11:00:00Z",
        "/v1/metrics/cpu?agg=median",
        "/v1/metrics/cpu?step=0",
        "/v1/metrics/cpu?step=1s&from=2024-01-01T00:00:00Z&to=2024-06-01T00:00:00Z",
        "/v1/metrics/cpu?color=red",
        "/v1/metrics/1cpu",
        "/v1/logs?account=%00",
        "/v1/metrics/cpu?label.host=a%00",
    ] {
        app.get(bad).key(&key).problem(400).await;
    }
    // A read-only key cannot write telemetry.
    let reader = app
        .post_json_with("/v1/keys", json!({"scopes": ["read"]}), &key)
        .await["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = post_telemetry(
        &app,
        &reader,
        "application/json",
        b"{\"log\": \"x\"}".to_vec(),
    )
    .await;
    assert_eq!(refused.status(), 403);
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn otlp_logs(bodies: &[&str], trace_id: Vec<u8>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![text("cloud.account.id", "333"), text("service.name", "api")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        time_unix_nano: 1_718_445_600_000_000_000, // 2024-06-15T10:00:00Z
                        severity_number: 17,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue((*b).into())),
                        }),
                        trace_id: trace_id.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn otlp_post(
    app: &TestApp,
    key: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.request(Method::POST, path)
        .key(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn otlp_http_answers_as_the_specification_says() {
    let mut config = ServerConfig::default();
    config.limits.telemetry_max_bytes = 256 * 1024;
    let app = spawn_app_with(config).await;
    let key = app.register("o@example.com").await;

    // Protobuf, full success: 200, protobuf back, partial_success unset.
    let request = otlp_logs(&["payment failed", "payment retried"], vec![7; 16]);
    let response = otlp_post(
        &app,
        &key,
        "/v1/logs",
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(&response.bytes().await.unwrap()[..]).unwrap();
    assert!(answer.partial_success.is_none());

    // A record with a 3-byte trace id is rejected alone: partial success.
    let mut request = otlp_logs(&["kept"], vec![7; 16]);
    request.resource_logs[0].scope_logs[0].log_records.extend(
        otlp_logs(&["dropped"], vec![1, 2, 3]).resource_logs[0].scope_logs[0]
            .log_records
            .clone(),
    );
    let response = otlp_post(
        &app,
        &key,
        "/v1/logs",
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let partial = ExportLogsServiceResponse::decode(&response.bytes().await.unwrap()[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );

    // OTLP/JSON with string int64s, hex ids, integer enums, unknown fields, gzipped.
    let json_body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "cloud.account.id", "value": {"stringValue": "444"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1718445600000000000", "severityNumber": 9, "severityText": "INFO",
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "body": {"stringValue": "json export arrived"}, "futureField": 1
        }]}]
    }]});
    let response = app
        .request(Method::POST, "/v1/logs")
        .key(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(json_body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer.get("partialSuccess").is_none_or(Value::is_null),
        "{answer}"
    );

    let found = logs(&app, &key, "q=payment").await;
    assert_eq!(found.len(), 2);
    assert_eq!(found[0]["level"], "error");
    assert_eq!(found[0]["account"], "333");
    assert_eq!(found[0]["attributes"]["trace_id"], "07".repeat(16));
    assert_eq!(found[0]["attributes"]["resource"]["service.name"], "api");
    let from_json = logs(&app, &key, "account=444").await;
    assert_eq!(bodies(&from_json), ["json export arrived"]);
    assert_eq!(from_json[0]["attributes"]["span_id"], "eee19b7ec3c1b174");
    assert!(logs(&app, &key, "q=dropped").await.is_empty());

    // Metrics in protobuf.
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![text("cloud.account.id", "333")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: [3, 5, 10]
                            .into_iter()
                            .map(|v| NumberDataPoint {
                                time_unix_nano: 1_718_445_600_000_000_000,
                                value: Some(number_data_point::Value::AsInt(v)),
                                attributes: vec![text("queue", "jobs")],
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = otlp_post(
        &app,
        &key,
        "/v1/metrics",
        "application/x-protobuf",
        metrics.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer =
        ExportMetricsServiceResponse::decode(&response.bytes().await.unwrap()[..]).unwrap();
    assert!(answer.partial_success.is_none());
    let series = app
        .get_json(
            &format!(
                "/v1/metrics/queue.depth?from={FROM}&to={TO}&agg=max&account=333&label.queue=jobs"
            ),
            &key,
        )
        .await;
    assert_eq!(series["points"][0]["value"], 10.0);

    // Bad input: each a clear status with a google.rpc.Status body.
    let whole = otlp_logs(&["x"], vec![]).encode_to_vec();
    let truncated = otlp_post(
        &app,
        &key,
        "/v1/logs",
        "application/x-protobuf",
        whole[..whole.len() - 2].to_vec(),
    )
    .await;
    assert_eq!(truncated.status(), 400);
    assert_eq!(
        truncated.headers()["content-type"],
        "application/x-protobuf"
    );
    let status = opentelemetry_proto_status(&truncated.bytes().await.unwrap());
    assert_eq!(status.0, 3);
    assert!(status.1.contains("protobuf"), "{}", status.1);
    let bad_json = otlp_post(
        &app,
        &key,
        "/v1/metrics",
        "application/json",
        b"{\"resourceMetrics\": 7}".to_vec(),
    )
    .await;
    assert_eq!(bad_json.status(), 400);
    assert_eq!(bad_json.json::<Value>().await.unwrap()["code"], 3);
    let wrong_type = otlp_post(&app, &key, "/v1/logs", "text/plain", b"hello".to_vec()).await;
    assert_eq!(wrong_type.status(), 415);
    let bomb = app
        .request(Method::POST, "/v1/logs")
        .key(&key)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&vec![0u8; 8 * 1024 * 1024]))
        .send()
        .await
        .unwrap();
    assert_eq!(bomb.status(), 413);
    assert_eq!(bomb.headers()["content-type"], "application/x-protobuf");

    // Counted on /metrics.
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_telemetry_records_total{signal=\"logs\",outcome=\"accepted\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_telemetry_records_total{signal=\"logs\",outcome=\"rejected\"} 1")
    );
    assert!(
        metrics.contains("keel_telemetry_records_total{signal=\"metrics\",outcome=\"accepted\"} 3")
    );
}

/// (code, message) of a protobuf `google.rpc.Status`.
fn opentelemetry_proto_status(bytes: &[u8]) -> (i32, String) {
    let status = keel_core::telemetry::otlp::Status::decode(bytes).unwrap();
    (status.code, status.message)
}

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

#[tokio::test]
async fn retention_is_per_tenant_and_pruning_takes_only_what_is_older() {
    let app = spawn_app().await;
    let short = app.register("short@example.com").await;
    let long = app.register("long@example.com").await;
    assert_eq!(
        app.get_json("/v1/telemetry/retention", &short).await,
        json!({"days": 7, "default": true})
    );
    let set = app
        .put_json("/v1/telemetry/retention", json!({"days": 1}))
        .key(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"days": 1, "default": false})
    );
    for bad in [
        json!({"days": 0}),
        json!({"days": 3651}),
        json!({"days": "week"}),
    ] {
        app.put_json("/v1/telemetry/retention", bad)
            .key(&short)
            .problem(400)
            .await;
    }
    // The clock says 2024-06-15T12:00:00Z: one line two days old, one new.
    let lines = json!([
        {"log": "two days old", "ts": "2024-06-13T12:00:00Z"},
        {"log": "fresh", "ts": "2024-06-15T11:59:00Z"},
        {"metric": "old_metric", "ts": "2024-06-13T12:00:00Z"}
    ]);
    for key in [&short, &long] {
        let response = post_telemetry(
            &app,
            key,
            "application/json",
            lines.to_string().into_bytes(),
        )
        .await;
        assert_eq!(response.status(), 202);
    }
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let gone = keel_server::ingest::prune_once(
        &*app.state.store,
        &*app.state.clock,
        Duration::from_secs(7 * 86_400),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(gone, 2, "the short tenant's old line and old point");
    let june = |key: &str| {
        let app = &app;
        let key = key.to_owned();
        async move {
            let found = app
                .get_json(
                    "/v1/logs?from=2024-06-01T00:00:00Z&to=2024-06-16T00:00:00Z",
                    &key,
                )
                .await;
            found["logs"].as_array().unwrap().clone()
        }
    };
    assert_eq!(bodies(&june(&short).await), ["fresh"]);
    assert_eq!(bodies(&june(&long).await), ["fresh", "two days old"]);
    let old = "/v1/metrics/old_metric?from=2024-06-01T00:00:00Z&to=2024-06-16T00:00:00Z&agg=count";
    assert_eq!(app.get_json(old, &short).await["points"], json!([]));
    assert_eq!(app.get_json(old, &long).await["points"][0]["value"], 1.0);
    let reset = app
        .put_json("/v1/telemetry/retention", json!({"days": null}))
        .key(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reset.json::<Value>().await.unwrap(),
        json!({"days": 7, "default": true})
    );
}
