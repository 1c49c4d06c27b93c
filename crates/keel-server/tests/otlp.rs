//! OTLP/HTTP as the specification says (SPEC §6): protobuf and JSON bodies,
//! partial success, `google.rpc.Status` errors in the request's encoding, gzip,
//! string int64s, and the limits applied after decompression.

mod common;

use common::{
    spawn_app_with,
    telemetry::{bodies, gzip, logs, FROM, TO},
    Bearer, TestApp,
};
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
