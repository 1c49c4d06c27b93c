//! Auto-incrementing integers (SPEC §3): counter names and the values they may hold.

use crate::FieldError;

/// The counter `/v1/next` and `/v1/current` act on.
pub const DEFAULT_COUNTER: &str = "default";

/// 1–64 ASCII letters, digits, `_`, `-` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterName(String);

impl CounterName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "/name",
                "counter name must be 1 to 64 letters, digits, '_', '-' or '.'",
            ))
        }
    }

    pub fn default_counter() -> Self {
        Self(DEFAULT_COUNTER.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A counter's value: an integer from 0 to 2^63−1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterValue(i64);

impl CounterValue {
    pub const MAX: i64 = i64::MAX;

    /// Reads a JSON value: an integer from 0 to 2^63−1. Fractions (even `5.0`),
    /// negatives, larger integers and non-numbers are refused.
    pub fn from_json(value: &serde_json::Value, pointer: &str) -> Result<Self, FieldError> {
        value
            .as_u64()
            .filter(|n| *n <= Self::MAX as u64)
            .map(|n| Self(n as i64))
            .ok_or_else(|| {
                FieldError::new(pointer, "must be an integer from 0 to 9223372036854775807")
            })
    }

    pub fn new(value: i64) -> Option<Self> {
        (value >= 0).then_some(Self(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for ok in ["a", "orders-2026", "x.y_z", &"a".repeat(64)] {
            assert!(CounterName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", &"a".repeat(65)] {
            assert!(CounterName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(CounterValue::from_json(&json!(0), "/c").unwrap().get(), 0);
        assert_eq!(
            CounterValue::from_json(&json!(i64::MAX as u64), "/c")
                .unwrap()
                .get(),
            i64::MAX
        );
        assert!(CounterValue::from_json(&json!(i64::MAX as u64 + 1), "/c").is_err());
        assert!(CounterValue::from_json(&json!(-1), "/c").is_err());
        assert!(CounterValue::from_json(&json!(5.0), "/c").is_err());
    }
}
