//! The simple telemetry shape (SPEC §6): items `{"log": "...", "level"?, "ts"?,
//! "attributes"?}` and/or `{"metric": "name", "value"?, "ts"?, "labels"?}`, with an
//! optional `"account"`, sent as one JSON object, an array of them, or NDJSON. An
//! item with both `log` and `metric` (the seed's shape) yields a line and a point.
//!
//! `ts` is an RFC 3339 string or a number of Unix seconds (fractions allowed);
//! numbers too large to be seconds are read as milliseconds (≥ 10¹¹), microseconds
//! (≥ 10¹⁴) or nanoseconds (≥ 10¹⁷) — what senders put in such fields in practice.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{
    check_metric_name, check_short, label_text, otlp, LogLine, MetricPoint, Parsed,
    ACCOUNT_ATTRIBUTE, MAX_LOG_BYTES,
};

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON object or an array of them.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Parses a `POST /v1/telemetry` body. `Err` only when a JSON body is not JSON, or
/// not an object or array: then nothing in it can be read.
pub fn parse(body: &[u8], framing: Framing, now: Timestamp) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    match framing {
        Framing::Json => {
            let value: Value =
                serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
            match value {
                Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        item_into(&mut parsed, item, &format!("/{i}"), now, false);
                    }
                }
                item @ Value::Object(_) => item_into(&mut parsed, item, "/", now, false),
                _ => return Err("the body must be a JSON object or an array of them".into()),
            }
        }
        Framing::Ndjson => ndjson_into(&mut parsed, body, now, false),
    }
    Ok(parsed)
}

/// Parses an object's content for `telemetry-import`: a JSON array, one JSON
/// object, OTLP/JSON (`resourceLogs` / `resourceMetrics`), or NDJSON whose lines
/// are simple items or OTLP/JSON requests (as the Collector's file exporter writes).
pub fn parse_import(content: &[u8], now: Timestamp) -> Parsed {
    let mut parsed = Parsed::default();
    let start = content.iter().position(|b| !b.is_ascii_whitespace());
    let whole = match start.map(|i| content[i]) {
        Some(b'[') | Some(b'{') => serde_json::from_slice::<Value>(content).ok(),
        _ => None,
    };
    match whole {
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                item_into(&mut parsed, item, &format!("/{i}"), now, true);
            }
        }
        Some(item @ Value::Object(_)) => item_into(&mut parsed, item, "/", now, true),
        _ => ndjson_into(&mut parsed, content, now, true),
    }
    parsed
}

fn ndjson_into(parsed: &mut Parsed, body: &[u8], now: Timestamp, allow_otlp: bool) {
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let at = format!("line {}", n + 1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_LOG_BYTES * 2 {
            parsed.rejected.add(
                &at,
                format!("the line is longer than {} bytes", MAX_LOG_BYTES * 2),
            );
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(item) => item_into(parsed, item, &at, now, allow_otlp),
            Err(e) => parsed.rejected.add(&at, format!("not JSON: {e}")),
        }
    }
}

fn item_into(parsed: &mut Parsed, item: Value, at: &str, now: Timestamp, allow_otlp: bool) {
    let Value::Object(item) = item else {
        parsed.rejected.add(at, "an item must be a JSON object");
        return;
    };
    if allow_otlp && (item.contains_key("resourceLogs") || item.contains_key("resourceMetrics")) {
        match otlp::from_json_value(Value::Object(item), now) {
            Ok(more) => {
                parsed.batch.logs.extend(more.batch.logs);
                parsed.batch.points.extend(more.batch.points);
                parsed.rejected.merge(more.rejected);
            }
            Err(e) => parsed.rejected.add(at, e),
        }
        return;
    }
    match simple_item(&item, now) {
        Ok((log, point)) => {
            parsed.batch.logs.extend(log);
            parsed.batch.points.extend(point);
        }
        Err(why) => parsed.rejected.add(at, why),
    }
}

type Item = (Option<LogLine>, Option<MetricPoint>);

fn simple_item(item: &Map<String, Value>, now: Timestamp) -> Result<Item, String> {
    if !item.contains_key("log") && !item.contains_key("metric") {
        return Err("an item needs `log` or `metric`".into());
    }
    let ts = match item.get("ts") {
        None | Some(Value::Null) => now,
        Some(ts) => timestamp(ts)?,
    };
    let attributes = match item.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err("`attributes` must be an object".into()),
    };
    let labels = match item.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => labels(map)?,
        Some(_) => return Err("`labels` must be an object".into()),
    };
    let account = account(item, &attributes, &labels)?;
    let log = match item.get("log") {
        None => None,
        Some(Value::String(text)) => {
            if text.len() > MAX_LOG_BYTES {
                return Err(format!("`log` is longer than {MAX_LOG_BYTES} bytes"));
            }
            let level = match item.get("level") {
                None | Some(Value::Null) => "info".to_owned(),
                Some(Value::String(level)) => {
                    check_short("`level`", level)?;
                    level.clone()
                }
                Some(_) => return Err("`level` must be a string".into()),
            };
            Some(LogLine {
                ts,
                level,
                body: text.clone(),
                account: account.clone(),
                attributes,
            })
        }
        Some(_) => return Err("`log` must be a string".into()),
    };
    let point = match item.get("metric") {
        None => None,
        Some(Value::String(name)) => {
            check_metric_name(name).map_err(|e| format!("`metric`: {e}"))?;
            let value = match item.get("value") {
                None | Some(Value::Null) => 1.0,
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or("`value` must be a finite number")?,
                Some(_) => return Err("`value` must be a number".into()),
            };
            Some(MetricPoint {
                ts,
                name: name.clone(),
                value,
                account,
                labels,
            })
        }
        Some(_) => return Err("`metric` must be a string (the metric's name)".into()),
    };
    Ok((log, point))
}

fn labels(map: &Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    map.iter()
        .map(|(k, v)| {
            if matches!(v, Value::Object(_) | Value::Array(_)) {
                return Err(format!("label `{k}` must be a string, number or boolean"));
            }
            let text = label_text(v);
            check_short("a label key", k)?;
            check_short("a label value", &text)?;
            Ok((k.clone(), text))
        })
        .collect()
}

/// `account`, else `resource["cloud.account.id"]`, else the attribute or label of
/// that name; empty when none is there.
fn account(
    item: &Map<String, Value>,
    attributes: &Map<String, Value>,
    labels: &BTreeMap<String, String>,
) -> Result<String, String> {
    let from_resource = item
        .get("resource")
        .and_then(|r| r.get(ACCOUNT_ATTRIBUTE))
        .or_else(|| attributes.get(ACCOUNT_ATTRIBUTE));
    let account = match (item.get("account"), from_resource) {
        (Some(Value::String(a)), _) => a.clone(),
        (Some(Value::Null) | None, Some(v)) if !v.is_null() => label_text(v),
        (Some(Value::Null) | None, _) => labels.get(ACCOUNT_ATTRIBUTE).cloned().unwrap_or_default(),
        (Some(_), _) => return Err("`account` must be a string".into()),
    };
    check_short("`account`", &account)?;
    Ok(account)
}

/// RFC 3339 text, or Unix time as a number (see the module's note on units).
pub fn timestamp(value: &Value) -> Result<Timestamp, String> {
    match value {
        Value::String(text) => text
            .parse::<Timestamp>()
            .map_err(|_| format!("`ts` {text:?} is not an RFC 3339 timestamp")),
        Value::Number(n) => {
            let v = n.as_f64().ok_or("`ts` is not a number")?;
            let nanos = if v >= 1e17 {
                v
            } else if v >= 1e14 {
                v * 1e3
            } else if v >= 1e11 {
                v * 1e6
            } else {
                v * 1e9
            };
            if !nanos.is_finite() || nanos.abs() > 9.0e18 {
                return Err("`ts` is out of range".into());
            }
            Timestamp::from_nanosecond(nanos as i128).map_err(|_| "`ts` is out of range".into())
        }
        _ => Err("`ts` must be an RFC 3339 string or a number of Unix seconds".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_seed_shape_is_a_line_and_a_count() {
        let body = br#"{"log": "sample_log_data", "metric": "sample_metric_data"}"#;
        let parsed = parse(body, Framing::Json, now()).unwrap();
        assert_eq!(parsed.rejected.count, 0);
        assert_eq!(parsed.batch.logs[0].body, "sample_log_data");
        assert_eq!(parsed.batch.logs[0].level, "info");
        assert_eq!(parsed.batch.logs[0].ts, now());
        assert_eq!(parsed.batch.points[0].name, "sample_metric_data");
        assert_eq!(parsed.batch.points[0].value, 1.0);
    }

    #[test]
    fn arrays_and_ndjson_keep_good_items_beside_bad_ones() {
        let body = json!([
            {"log": "a", "account": "111", "level": "ERROR", "ts": "2026-11-24T09:00:00Z"},
            {"metric": "cpu", "value": 0.5, "labels": {"host": "h1", "core": 2}, "resource": {"cloud.account.id": "222"}},
            {"nothing": true},
            7
        ]);
        let parsed = parse(body.to_string().as_bytes(), Framing::Json, now()).unwrap();
        assert_eq!(parsed.batch.logs.len(), 1);
        assert_eq!(parsed.batch.logs[0].account, "111");
        assert_eq!(parsed.batch.points[0].account, "222");
        assert_eq!(parsed.batch.points[0].labels["core"], "2");
        assert_eq!(parsed.rejected.count, 2);
        assert!(
            parsed.rejected.errors[0].starts_with("/2:"),
            "{:?}",
            parsed.rejected
        );

        let ndjson = b"{\"log\": \"one\"}\n{broken\n\n{\"metric\": \"x y\"}\r\n{\"log\": \"two\", \"ts\": 1700000000}\n";
        let parsed = parse(ndjson, Framing::Ndjson, now()).unwrap();
        assert_eq!(parsed.batch.logs.len(), 2);
        assert_eq!(parsed.batch.logs[1].ts.as_second(), 1_700_000_000);
        assert_eq!(parsed.rejected.count, 2);
        assert!(parsed.rejected.errors[0].starts_with("line 2: not JSON"));
        assert!(parsed.rejected.errors[1].starts_with("line 4: `metric`"));
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_whole() {
        assert!(parse(b"nope", Framing::Json, now()).is_err());
        assert!(parse(b"\"text\"", Framing::Json, now()).is_err());
        assert_eq!(
            parse(b"nope", Framing::Ndjson, now())
                .unwrap()
                .rejected
                .count,
            1
        );
    }

    #[test]
    fn huge_lines_and_bad_fields_are_rejected_alone() {
        let huge = format!(
            "{{\"log\": \"{}\"}}\n{{\"log\": \"ok\"}}\n",
            "x".repeat(MAX_LOG_BYTES + 1)
        );
        let parsed = parse(huge.as_bytes(), Framing::Ndjson, now()).unwrap();
        assert_eq!(parsed.batch.logs.len(), 1);
        assert_eq!(parsed.rejected.count, 1);
        for bad in [
            json!({"log": 5}),
            json!({"log": "x", "ts": "yesterday"}),
            json!({"metric": "m", "value": "high"}),
            json!({"metric": "m", "labels": {"k": [1]}}),
            json!({"log": "x", "account": 3}),
            json!({"log": "x", "attributes": []}),
        ] {
            let parsed = parse(bad.to_string().as_bytes(), Framing::Json, now()).unwrap();
            assert_eq!(parsed.rejected.count, 1, "{bad}");
            assert!(parsed.batch.is_empty(), "{bad}");
        }
    }

    #[test]
    fn numeric_timestamps_are_read_by_magnitude() {
        let second: Timestamp = "2023-11-14T22:13:20Z".parse().unwrap();
        for v in [
            json!(1_700_000_000),
            json!(1_700_000_000_000u64),
            json!(1_700_000_000_000_000u64),
            json!(1_700_000_000_000_000_000u64),
        ] {
            assert_eq!(timestamp(&v).unwrap(), second, "{v}");
        }
        assert!(timestamp(&json!(1e300)).is_err());
    }

    #[test]
    fn imports_sniff_arrays_objects_otlp_and_ndjson() {
        let now = now();
        assert_eq!(
            parse_import(br#"[{"log": "a"}, {"log": "b"}]"#, now)
                .batch
                .logs
                .len(),
            2
        );
        assert_eq!(parse_import(br#" {"log": "a"} "#, now).batch.logs.len(), 1);
        assert_eq!(
            parse_import(b"{\"log\": \"a\"}\n{\"log\": \"b\"}", now)
                .batch
                .logs
                .len(),
            2
        );
        let otlp = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}]});
        let parsed = parse_import(otlp.to_string().as_bytes(), now);
        assert_eq!(parsed.batch.logs[0].body, "hi");
        let garbage = parse_import(b"\x00\x01 not telemetry", now);
        assert!(garbage.batch.is_empty());
        assert_eq!(garbage.rejected.count, 1);
    }
}
