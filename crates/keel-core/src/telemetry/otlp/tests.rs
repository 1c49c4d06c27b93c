use opentelemetry_proto::tonic::{
    common::v1::{any_value, AnyValue, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        metric::Data, number_data_point, summary_data_point::ValueAtQuantile, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Summary,
        SummaryDataPoint,
    },
    resource::v1::Resource,
};
use serde_json::json;

use super::*;

fn now() -> Timestamp {
    "2026-11-24T10:00:00Z".parse().unwrap()
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

fn resource(account: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            text("cloud.account.id", account),
            text("service.name", "api"),
        ],
        ..Default::default()
    })
}

fn log_request() -> ExportLogsServiceRequest {
    let record = |body: &str, severity: i32, trace: Vec<u8>| LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes: vec![text("user", "ada")],
        trace_id: trace,
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("111"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record("disk full", 17, vec![1; 16]),
                    record("bad trace", 9, vec![1; 3]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn protobuf_logs_become_lines_and_bad_records_are_counted() {
    let body = log_request().encode_to_vec();
    let parsed = decode_logs(&body, Encoding::Protobuf, now()).unwrap();
    assert_eq!(parsed.batch.logs.len(), 1);
    assert_eq!(parsed.rejected.count, 1);
    let line = &parsed.batch.logs[0];
    assert_eq!(line.body, "disk full");
    assert_eq!(line.level, "error");
    assert_eq!(line.account, "111");
    assert_eq!(line.ts.as_nanosecond(), 1_700_000_000_123_456_789);
    assert_eq!(line.attributes["trace_id"], "01".repeat(16));
    assert_eq!(line.attributes["user"], "ada");
    assert_eq!(line.attributes["resource"]["service.name"], "api");
}

#[test]
fn truncated_protobuf_is_refused_whole() {
    let body = log_request().encode_to_vec();
    assert!(decode_logs(&body[..body.len() - 3], Encoding::Protobuf, now()).is_err());
    assert!(decode_metrics(b"\xff\xff\xff", Encoding::Protobuf, now()).is_err());
}

#[test]
fn otlp_json_takes_hex_ids_integer_enums_string_int64s_and_ignores_unknown_fields() {
    let body = json!({
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "cloud.account.id", "value": {"stringValue": "222"}}]},
            "someFutureField": {"x": 1},
            "scopeLogs": [{
                "scope": {"name": "test"},
                "logRecords": [{
                    "timeUnixNano": "1700000000000000000",
                    "observedTimeUnixNano": 1700000000000000001u64,
                    "severityNumber": 13,
                    "severityText": "WARN",
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "body": {"stringValue": "slow"},
                    "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                    "unknown": true
                }]
            }]
        }]
    });
    let parsed = decode_logs(body.to_string().as_bytes(), Encoding::Json, now()).unwrap();
    assert_eq!(parsed.rejected.count, 0, "{:?}", parsed.rejected);
    let line = &parsed.batch.logs[0];
    assert_eq!(line.level, "WARN");
    assert_eq!(line.account, "222");
    assert_eq!(line.ts.as_second(), 1_700_000_000);
    assert_eq!(line.attributes["span_id"], "eee19b7ec3c1b174");
    assert_eq!(line.attributes["n"], 42);
    assert!(decode_logs(b"{\"resourceLogs\": 5}", Encoding::Json, now()).is_err());
    assert!(decode_logs(b"not json", Encoding::Json, now()).is_err());
}

#[test]
fn metrics_map_gauges_histograms_and_summaries() {
    let gauge = |value: Option<number_data_point::Value>| NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        attributes: vec![text("host", "h1")],
        value,
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("333"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "cpu".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![
                                gauge(Some(number_data_point::Value::AsDouble(0.5))),
                                gauge(Some(number_data_point::Value::AsInt(3))),
                                gauge(None),
                                gauge(Some(number_data_point::Value::AsDouble(f64::NAN))),
                            ],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                count: 4,
                                sum: Some(10.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "rpc".into(),
                        data: Some(Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                count: 2,
                                sum: 3.0,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.99,
                                    value: 2.5,
                                }],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let parsed = decode_metrics(&request.encode_to_vec(), Encoding::Protobuf, now()).unwrap();
    assert_eq!(parsed.rejected.count, 2, "{:?}", parsed.rejected);
    let points: Vec<(&str, f64)> = parsed
        .batch
        .points
        .iter()
        .map(|p| (p.name.as_str(), p.value))
        .collect();
    assert_eq!(
        points,
        [
            ("cpu", 0.5),
            ("cpu", 3.0),
            ("latency_count", 4.0),
            ("latency_sum", 10.0),
            ("rpc_count", 2.0),
            ("rpc_sum", 3.0),
            ("rpc", 2.5)
        ]
    );
    assert!(parsed.batch.points.iter().all(|p| p.account == "333"));
    assert_eq!(parsed.batch.points[0].labels["host"], "h1");
    assert_eq!(parsed.batch.points[6].labels["quantile"], "0.99");
    assert_eq!(parsed.batch.points[2].ts, now(), "no time: when it arrived");

    let json_body = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "q", "sum": {"dataPoints": [{"asInt": "7", "timeUnixNano": "1700000000000000000"}], "aggregationTemporality": 2, "isMonotonic": true}}
    ]}]}]});
    let parsed = decode_metrics(json_body.to_string().as_bytes(), Encoding::Json, now()).unwrap();
    assert_eq!(parsed.batch.points[0].value, 7.0);
}

#[test]
fn responses_set_partial_success_only_when_something_was_rejected() {
    let full = logs_response(0, "", Encoding::Protobuf);
    assert!(ExportLogsServiceResponse::decode(&full[..])
        .unwrap()
        .partial_success
        .is_none());
    let partial = logs_response(2, "2 rejected", Encoding::Protobuf);
    let decoded = ExportLogsServiceResponse::decode(&partial[..]).unwrap();
    assert_eq!(decoded.partial_success.unwrap().rejected_log_records, 2);
    let json: Value = serde_json::from_slice(&metrics_response(3, "x", Encoding::Json)).unwrap();
    let rejected = &json["partialSuccess"]["rejectedDataPoints"];
    assert!(rejected == 3 || rejected == "3", "{json}");
    let json: Value = serde_json::from_slice(&metrics_response(0, "", Encoding::Json)).unwrap();
    assert!(
        json.get("partialSuccess").is_none_or(Value::is_null),
        "{json}"
    );
    let status = Status::decode(&status_body(3, "bad", Encoding::Protobuf)[..]).unwrap();
    assert_eq!((status.code, status.message.as_str()), (3, "bad"));
}
