//! Telemetry (SPEC §6): logs and metric points from many accounts, parsed from the
//! simple JSON / NDJSON shape ([`simple`]) and from OTLP ([`otlp`]), and aggregated
//! for queries ([`aggregate`]).
//!
//! Parsers never fail a whole batch for one bad item: each item is either a row in
//! the [`Batch`] or a counted [`Rejections`] entry, so good lines land beside bad
//! ones (only a body that is not the format at all is refused whole).

pub mod aggregate;
pub mod otlp;
pub mod simple;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value};

/// Longest log line (its text) accepted; a longer one is rejected on its own.
pub const MAX_LOG_BYTES: usize = 256 * 1024;
/// Longest account, level, metric name, label key or label value.
pub const MAX_NAME_BYTES: usize = 256;
/// How many rejection reasons a report keeps (the count covers all of them).
pub const KEPT_ERRORS: usize = 20;
/// The resource attribute that names the account (OpenTelemetry semantic conventions).
pub const ACCOUNT_ATTRIBUTE: &str = "cloud.account.id";

/// One log line, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub ts: Timestamp,
    /// As sent (`INFO`, `warn`…); queries compare it case-insensitively.
    pub level: String,
    pub body: String,
    /// Empty when the sender named none.
    pub account: String,
    pub attributes: Map<String, Value>,
}

/// One metric sample, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub ts: Timestamp,
    pub name: String,
    pub value: f64,
    pub account: String,
    /// Label values are strings (numbers and booleans are written as JSON writes them).
    pub labels: BTreeMap<String, String>,
}

/// What one request or import holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub logs: Vec<LogLine>,
    pub points: Vec<MetricPoint>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.logs.len() + self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills in `account` on rows that have none.
    pub fn default_account(&mut self, account: &str) {
        for log in self.logs.iter_mut().filter(|l| l.account.is_empty()) {
            log.account = account.to_owned();
        }
        for point in self.points.iter_mut().filter(|p| p.account.is_empty()) {
            point.account = account.to_owned();
        }
    }
}

/// Items refused, counted, with the first few reasons (`where: why`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    pub count: u64,
    pub errors: Vec<String>,
}

impl Rejections {
    pub fn add(&mut self, at: impl std::fmt::Display, why: impl std::fmt::Display) {
        self.count += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(format!("{at}: {why}"));
        }
    }

    pub fn merge(&mut self, other: Rejections) {
        self.count += other.count;
        let room = KEPT_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }
}

/// A parsed body: what lands and what was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub batch: Batch,
    pub rejected: Rejections,
}

/// A metric name: 1–256 bytes of ASCII letters, digits and `_ . - / :`, starting
/// with a letter or `_` (what Prometheus and OpenTelemetry names have in common).
pub fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a metric name is 1 to {MAX_NAME_BYTES} characters starting with a letter or `_`"
        ));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || "_.-/:".contains(*c))) {
        return Err(format!(
            "a metric name may hold letters, digits and `_ . - / :`, not {bad:?}"
        ));
    }
    Ok(())
}

/// Checks a short text field (account, level, label key or value).
pub(crate) fn check_short(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("{what} is longer than {MAX_NAME_BYTES} bytes"));
    }
    if value.contains('\0') {
        return Err(format!("{what} contains a NUL character"));
    }
    Ok(())
}

/// A label or attribute value as the text labels hold: strings as they are,
/// anything else as JSON.
pub(crate) fn label_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The level OTLP's severity numbers stand for (its log data model's ranges).
pub fn severity_level(number: i32) -> &'static str {
    match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "unspecified",
    }
}

/// A timestamp from nanoseconds since the epoch (OTLP's unit).
pub(crate) fn from_nanos(nanos: u64) -> Option<Timestamp> {
    Timestamp::from_nanosecond(i128::from(nanos)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for good in ["cpu", "http.server.duration", "_x", "a:b/c-d_1"] {
            assert!(check_metric_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1cpu", "cpu load", "cpu\0", &"a".repeat(257), "ü"] {
            assert!(check_metric_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejections_keep_the_first_reasons_and_count_all() {
        let mut r = Rejections::default();
        for i in 0..30 {
            r.add(format!("line {i}"), "bad");
        }
        assert_eq!(r.count, 30);
        assert_eq!(r.errors.len(), KEPT_ERRORS);
        assert_eq!(r.errors[0], "line 0: bad");
    }

    #[test]
    fn severities_follow_the_log_data_model() {
        assert_eq!(severity_level(9), "info");
        assert_eq!(severity_level(13), "warn");
        assert_eq!(severity_level(17), "error");
        assert_eq!(severity_level(0), "unspecified");
        assert_eq!(severity_level(99), "unspecified");
    }
}
