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

    /// Takes a JSON number as serde_json holds it. Fractions (even `5.0`), negatives,
    /// and integers past 2^63−1 are refused.
    pub fn from_json(value: &serde_json_number::Number, pointer: &str) -> Result<Self, FieldError> {
        match value {
            serde_json_number::Number::Unsigned(n) if *n <= Self::MAX as u64 => Ok(Self(*n as i64)),
            serde_json_number::Number::Signed(n) if *n >= 0 => Ok(Self(*n)),
            _ => Err(FieldError::new(
                pointer,
                "must be an integer from 0 to 9223372036854775807",
            )),
        }
    }

    pub fn new(value: i64) -> Option<Self> {
        (value >= 0).then_some(Self(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// The domain's view of a JSON number, so this crate needs no JSON library: the HTTP
/// edge converts.
pub mod serde_json_number {
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Number {
        Unsigned(u64),
        Signed(i64),
        Float(f64),
    }
}

#[cfg(test)]
mod tests {
    use super::serde_json_number::Number;
    use super::*;

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
        assert_eq!(
            CounterValue::from_json(&Number::Unsigned(0), "/c")
                .unwrap()
                .get(),
            0
        );
        assert_eq!(
            CounterValue::from_json(&Number::Unsigned(i64::MAX as u64), "/c")
                .unwrap()
                .get(),
            i64::MAX
        );
        assert!(CounterValue::from_json(&Number::Unsigned(i64::MAX as u64 + 1), "/c").is_err());
        assert!(CounterValue::from_json(&Number::Signed(-1), "/c").is_err());
        assert!(CounterValue::from_json(&Number::Float(5.0), "/c").is_err());
    }
}
