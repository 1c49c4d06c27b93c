//! OTLP logs and metrics (SPEC §6), decoded with the `opentelemetry-proto` types —
//! protobuf through prost, OTLP/JSON through their serde mapping (ids as hex,
//! enums as integers, 64-bit integers as strings or numbers, unknown fields
//! ignored) — and turned into [`Batch`] rows.
//!
//! How OTLP maps onto Keel's rows:
//! - A log record's level is its `severity_text`, else the name of its
//!   `severity_number`'s range; its text is the body (a string as is, any other
//!   value as JSON); its attributes are the record's, with `trace_id` / `span_id`
//!   in hex and the resource's attributes under `resource`. Its time is
//!   `time_unix_nano`, else `observed_time_unix_nano`, else the time it arrived.
//! - Gauges and sums become one point per data point (cumulative sums as sent).
//!   Histograms and exponential histograms become `<name>_count` and `<name>_sum`
//!   points; summaries those two and `<name>` with a `quantile` label per quantile.
//!   Data point attributes are the labels.
//! - The account is the resource attribute `cloud.account.id` (else the record's
//!   or point's attribute of that name).
//! - A record or point Keel cannot store (ids of the wrong length, no value, a
//!   value that is not finite, a name or label over the limits) is rejected alone
//!   and counted for `partial_success`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
        metrics::v1::{
            ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        },
    },
    common::v1::{any_value, AnyValue, KeyValue},
    metrics::v1::{metric::Data, number_data_point, NumberDataPoint},
};
use prost::Message;
use serde_json::{Map, Value};

use super::{
    check_metric_name, check_short, from_nanos, label_text, severity_level, LogLine, MetricPoint,
    Parsed, ACCOUNT_ATTRIBUTE, MAX_LOG_BYTES,
};

/// How an OTLP/HTTP body is encoded (the request's content type; the response
/// uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP gives every 4xx and 5xx answer.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Decodes an `ExportLogsServiceRequest`. `Err` when the body is not one.
pub fn decode_logs(body: &[u8], encoding: Encoding, now: Timestamp) -> Result<Parsed, String> {
    let request: ExportLogsServiceRequest = match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("the body is not an OTLP logs request in protobuf: {e}"))?,
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| format!("the body is not an OTLP logs request in JSON: {e}"))?,
    };
    Ok(logs(request, now))
}

/// Decodes an `ExportMetricsServiceRequest`. `Err` when the body is not one.
pub fn decode_metrics(body: &[u8], encoding: Encoding, now: Timestamp) -> Result<Parsed, String> {
    let request: ExportMetricsServiceRequest = match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(body)
            .map_err(|e| format!("the body is not an OTLP metrics request in protobuf: {e}"))?,
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| format!("the body is not an OTLP metrics request in JSON: {e}"))?,
    };
    Ok(metrics(request, now))
}

/// An OTLP/JSON logs or metrics request already parsed as JSON (an import's line).
pub fn from_json_value(value: Value, now: Timestamp) -> Result<Parsed, String> {
    if value.get("resourceLogs").is_some() {
        let request = serde_json::from_value(value)
            .map_err(|e| format!("not an OTLP/JSON logs request: {e}"))?;
        Ok(logs(request, now))
    } else {
        let request = serde_json::from_value(value)
            .map_err(|e| format!("not an OTLP/JSON metrics request: {e}"))?;
        Ok(metrics(request, now))
    }
}

/// The answer to an export: `partial_success` only when something was rejected.
pub fn logs_response(rejected: u64, message: &str, encoding: Encoding) -> Vec<u8> {
    let response = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected as i64,
            error_message: message.to_owned(),
        }),
    };
    encode(&response, encoding)
}

/// The answer to a metrics export: `partial_success` only when something was rejected.
pub fn metrics_response(rejected: u64, message: &str, encoding: Encoding) -> Vec<u8> {
    let response = ExportMetricsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: rejected as i64,
            error_message: message.to_owned(),
        }),
    };
    encode(&response, encoding)
}

/// A `Status` body (gRPC code, message) for an error answer.
pub fn status_body(code: i32, message: &str, encoding: Encoding) -> Vec<u8> {
    encode(
        &Status {
            code,
            message: message.to_owned(),
        },
        encoding,
    )
}

fn encode<M: Message + serde::Serialize>(message: &M, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

fn logs(request: ExportLogsServiceRequest, now: Timestamp) -> Parsed {
    let mut parsed = Parsed::default();
    for (r, resource_logs) in request.resource_logs.into_iter().enumerate() {
        let resource = attributes(resource_logs.resource.map(|r| r.attributes));
        let resource_account = resource.get(ACCOUNT_ATTRIBUTE).map(label_text);
        for scope_logs in resource_logs.scope_logs {
            'records: for record in scope_logs.log_records {
                let at = format!("resource {r}");
                let mut attrs = attributes(Some(record.attributes));
                let account = resource_account
                    .clone()
                    .or_else(|| attrs.get(ACCOUNT_ATTRIBUTE).map(label_text))
                    .unwrap_or_default();
                for (name, id, len) in [
                    ("trace_id", &record.trace_id, 16),
                    ("span_id", &record.span_id, 8),
                ] {
                    if id.is_empty() {
                        continue;
                    }
                    if id.len() != len {
                        parsed
                            .rejected
                            .add(&at, format!("{name} is not {len} bytes"));
                        continue 'records;
                    }
                    attrs.insert(name.to_owned(), Value::String(hex(id)));
                }
                if !resource.is_empty() && !attrs.contains_key("resource") {
                    attrs.insert("resource".into(), Value::Object(resource.clone()));
                }
                let nanos = [record.time_unix_nano, record.observed_time_unix_nano]
                    .into_iter()
                    .find(|n| *n != 0);
                let Some(ts) = nanos.map_or(Some(now), from_nanos) else {
                    parsed.rejected.add(&at, "the timestamp is out of range");
                    continue;
                };
                let level = if record.severity_text.is_empty() {
                    severity_level(record.severity_number).to_owned()
                } else {
                    record.severity_text
                };
                let body = match record.body.and_then(|b| b.value) {
                    None => String::new(),
                    Some(any_value::Value::StringValue(s)) => s,
                    Some(other) => json_of(other).to_string(),
                };
                let checks = check_short("the severity text", &level)
                    .and_then(|_| check_short("the account", &account))
                    .and_then(|_| {
                        if body.len() > MAX_LOG_BYTES {
                            Err(format!("the body is longer than {MAX_LOG_BYTES} bytes"))
                        } else {
                            Ok(())
                        }
                    });
                if let Err(why) = checks {
                    parsed.rejected.add(&at, why);
                    continue;
                }
                parsed.batch.logs.push(LogLine {
                    ts,
                    level,
                    body,
                    account,
                    attributes: attrs,
                });
            }
        }
    }
    parsed
}

/// One metric sample before its name and labels are checked.
struct Sample {
    name: String,
    nanos: u64,
    value: Option<f64>,
    attributes: Vec<KeyValue>,
    extra_label: Option<(String, String)>,
}

fn metrics(request: ExportMetricsServiceRequest, now: Timestamp) -> Parsed {
    let mut parsed = Parsed::default();
    for (r, resource_metrics) in request.resource_metrics.into_iter().enumerate() {
        let resource = attributes(resource_metrics.resource.map(|r| r.attributes));
        let resource_account = resource.get(ACCOUNT_ATTRIBUTE).map(label_text);
        for scope_metrics in resource_metrics.scope_metrics {
            for metric in scope_metrics.metrics {
                let at = format!("resource {r}, metric {:?}", metric.name);
                for sample in samples(&metric.name, metric.data) {
                    match point(sample, resource_account.as_deref(), now) {
                        Ok(point) => parsed.batch.points.push(point),
                        Err(why) => parsed.rejected.add(&at, why),
                    }
                }
            }
        }
    }
    parsed
}

fn number_samples(name: &str, points: Vec<NumberDataPoint>) -> Vec<Sample> {
    points
        .into_iter()
        .map(|p| Sample {
            name: name.to_owned(),
            nanos: p.time_unix_nano,
            value: p.value.map(|v| match v {
                number_data_point::Value::AsDouble(d) => d,
                number_data_point::Value::AsInt(i) => i as f64,
            }),
            attributes: p.attributes,
            extra_label: None,
        })
        .collect()
}

/// `<name>_count` and `<name>_sum` for a distribution's data point.
fn count_and_sum(
    name: &str,
    nanos: u64,
    count: u64,
    sum: Option<f64>,
    attributes: Vec<KeyValue>,
) -> Vec<Sample> {
    let mut out = vec![Sample {
        name: format!("{name}_count"),
        nanos,
        value: Some(count as f64),
        attributes: attributes.clone(),
        extra_label: None,
    }];
    if let Some(sum) = sum {
        out.push(Sample {
            name: format!("{name}_sum"),
            nanos,
            value: Some(sum),
            attributes,
            extra_label: None,
        });
    }
    out
}

fn samples(name: &str, data: Option<Data>) -> Vec<Sample> {
    match data {
        None => Vec::new(),
        Some(Data::Gauge(g)) => number_samples(name, g.data_points),
        Some(Data::Sum(s)) => number_samples(name, s.data_points),
        Some(Data::Histogram(h)) => h
            .data_points
            .into_iter()
            .flat_map(|p| count_and_sum(name, p.time_unix_nano, p.count, p.sum, p.attributes))
            .collect(),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .into_iter()
            .flat_map(|p| count_and_sum(name, p.time_unix_nano, p.count, p.sum, p.attributes))
            .collect(),
        Some(Data::Summary(s)) => s
            .data_points
            .into_iter()
            .flat_map(|p| {
                let mut out = count_and_sum(
                    name,
                    p.time_unix_nano,
                    p.count,
                    Some(p.sum),
                    p.attributes.clone(),
                );
                out.extend(p.quantile_values.into_iter().map(|q| Sample {
                    name: name.to_owned(),
                    nanos: p.time_unix_nano,
                    value: Some(q.value),
                    attributes: p.attributes.clone(),
                    extra_label: Some(("quantile".into(), q.quantile.to_string())),
                }));
                out
            })
            .collect(),
    }
}

fn point(
    sample: Sample,
    resource_account: Option<&str>,
    now: Timestamp,
) -> Result<MetricPoint, String> {
    check_metric_name(&sample.name)?;
    let value = sample.value.ok_or("a data point has no value")?;
    if !value.is_finite() {
        return Err("a data point's value is not finite".into());
    }
    let ts = if sample.nanos == 0 {
        now
    } else {
        from_nanos(sample.nanos).ok_or("the timestamp is out of range")?
    };
    let mut labels = BTreeMap::new();
    for (key, value) in attributes(Some(sample.attributes)) {
        let text = label_text(&value);
        check_short("a label key", &key)?;
        check_short("a label value", &text)?;
        labels.insert(key, text);
    }
    labels.extend(sample.extra_label);
    let account = resource_account
        .map(str::to_owned)
        .or_else(|| labels.get(ACCOUNT_ATTRIBUTE).cloned())
        .unwrap_or_default();
    check_short("the account", &account)?;
    Ok(MetricPoint {
        ts,
        name: sample.name,
        value,
        account,
        labels,
    })
}

fn attributes(list: Option<Vec<KeyValue>>) -> Map<String, Value> {
    list.unwrap_or_default()
        .into_iter()
        .map(|kv| (kv.key, kv.value.map_or(Value::Null, any_json)))
        .collect()
}

fn any_json(value: AnyValue) -> Value {
    value.value.map_or(Value::Null, json_of)
}

/// An OTLP value as JSON: arrays and key-value lists nest, bytes are base64.
fn json_of(value: any_value::Value) -> Value {
    use any_value::Value as V;
    match value {
        V::StringValue(s) => Value::String(s),
        V::BoolValue(b) => Value::Bool(b),
        V::IntValue(i) => Value::from(i),
        V::DoubleValue(d) => serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number),
        V::ArrayValue(a) => Value::Array(a.values.into_iter().map(any_json).collect()),
        V::KvlistValue(kv) => Value::Object(attributes(Some(kv.values))),
        V::BytesValue(b) => {
            use base64::Engine;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // Profiling-only references into a dictionary this signal does not have.
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
