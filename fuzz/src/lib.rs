//! Helpers shared by Keel's fuzz targets (see `../FUZZING.md`).
//!
//! Every JSON-taking target derives its inputs from the fuzz bytes in one of two
//! ways, chosen by the first byte:
//!
//! * **text mode** (first byte even): the rest is split on `0x00` and each part is
//!   parsed as JSON text with `serde_json` (so seeds and dictionaries are readable,
//!   and serde_json's own parser is part of the path, as in production);
//! * **structured mode** (first byte odd): the rest drives [`arbitrary`] to build
//!   `serde_json::Value`s directly, biased towards the keys and operators Keel's
//!   parsers look for, so deep and odd shapes are reached without valid syntax.

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Deepest nesting the structured generator builds. Above the filter's own limit
/// (8) so that its depth check is reached.
pub const MAX_GEN_DEPTH: usize = 11;

/// Words Keel's JSON parsers give meaning to; the generator prefers them as keys and
/// string values.
const VOCAB: &[&str] = &[
    "",
    "a",
    "b",
    "c",
    "a/b",
    "~",
    "$or",
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "numeric",
    "exists",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "body",
    "attributes",
    "id",
    "messages",
    "type",
    "queue",
    "store",
    "webhook",
    "telemetry-import",
    "url",
    "secret",
    "collection",
    "target",
    "filter",
    "filter_scope",
    "max_receives",
    "visibility_timeout_s",
    "retry_backoff_s",
    "email",
    "password",
    "scopes",
    "read",
    "write",
    "admin",
    "operator",
    "name",
    "tenant_id",
    "dateOfBirth",
    "receipts",
    "receipt",
    "delay_s",
    "ids",
    "max",
    "wait_s",
    "current",
    "data",
    "value",
    "https://example.com/hook",
    "http://",
    "0123456789abcdef",
    "EXAMPLE",
    "example",
    "ß",
    "İ",
    "K",
    "a.b",
    "x[0]",
];

pub fn arb_string(u: &mut Unstructured) -> Result<String> {
    if u.ratio(2, 3)? {
        Ok((*u.choose(VOCAB)?).to_owned())
    } else {
        Ok(u.arbitrary::<&str>()?.to_owned())
    }
}

pub fn arb_number(u: &mut Unstructured) -> Result<Number> {
    Ok(match u.int_in_range(0u8..=6)? {
        0 => Number::from(u.int_in_range(-3i64..=3)?),
        1 => Number::from(u.arbitrary::<i64>()?),
        2 => Number::from(u.arbitrary::<u64>()?),
        3 => Number::from(*u.choose(&[
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX,
            1000,
            1001,
            128,
        ])?),
        4 => Number::from(*u.choose(&[i64::MIN, -1, 0])?),
        _ => {
            let f: f64 = if u.ratio(1, 2)? {
                *u.choose(&[0.5, -0.0, 5.0, 1e300, -1e300, f64::MIN_POSITIVE, 210.75])?
            } else {
                u.arbitrary()?
            };
            Number::from_f64(f).unwrap_or_else(|| Number::from(0))
        }
    })
}

pub fn arb_scalar(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(arb_number(u)?),
        _ => Value::String(arb_string(u)?),
    })
}

/// Any JSON value, at most `depth` levels of arrays/objects deep.
pub fn arb_json(u: &mut Unstructured, depth: usize) -> Result<Value> {
    if depth == 0 || u.is_empty() {
        return arb_scalar(u);
    }
    Ok(match u.int_in_range(0u8..=5)? {
        0 | 1 => arb_scalar(u)?,
        2 => {
            let n = u.int_in_range(0usize..=4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(arb_json(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let n = u.int_in_range(0usize..=4)?;
            let mut map = Map::new();
            for _ in 0..n {
                let k = arb_string(u)?;
                map.insert(k, arb_json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// `n` JSON values from the fuzz bytes (see the module docs). In text mode a missing
/// part is `null`; `None` when a present part is not JSON text.
pub fn json_inputs(data: &[u8], n: usize) -> Option<Vec<Value>> {
    let (&mode, rest) = data.split_first()?;
    if mode % 2 == 0 {
        let mut out = Vec::with_capacity(n);
        let mut parts = rest.split(|b| *b == 0);
        for _ in 0..n {
            out.push(match parts.next() {
                Some(text) => serde_json::from_slice(text).ok()?,
                None => Value::Null,
            });
        }
        Some(out)
    } else {
        let mut u = Unstructured::new(rest);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(arb_json(&mut u, MAX_GEN_DEPTH).ok()?);
        }
        Some(out)
    }
}

/// Whether `pointer` (RFC 6901) names a location that exists in `value`.
pub fn resolves(value: &Value, pointer: &str) -> bool {
    value.pointer(pointer).is_some()
}

/// Drives a future that never waits (a response body already in memory) to its end.
pub fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("an in-memory response body was not ready"),
    }
}

/// Renders an error the way the server does and returns (status, content type,
/// parsed body). Asserts the shared problem-document properties.
pub fn render_problem(err: keel_server::problem::ApiError) -> (u16, Value) {
    use axum::response::IntoResponse;
    let response = err.into_response();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, keel_server::problem::PROBLEM_JSON);
    let bytes = now_or_never(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("in-memory body");
    let body: Value = serde_json::from_slice(&bytes).expect("a problem body is JSON");
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{body}");
    assert!(body["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("urn:keel:problem:")));
    (status, body)
}
