//! Monitor conditions (SPEC §7): `status == 200`, `response_time_ms < 500`,
//! `body.status == "ok"`, `header.content-type == "application/json"`,
//! `cert_expires_in_days > 14` — a subject, a comparison and a value, parsed once
//! when the monitor is saved and evaluated against every check's observation.
//!
//! The value is a JSON literal (`200`, `"ok"`, `true`, `null`); anything else is
//! taken as the text written (`header.content-type == application/json`). Ordering
//! comparisons (`<`, `<=`, `>`, `>=`) compare numbers only, so they need a number.

use std::fmt;

use serde_json::Value;

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Status,
    ResponseTimeMs,
    CertExpiresInDays,
    /// The whole body as text.
    Body,
    /// A value inside a JSON body.
    BodyPath(Vec<PathStep>),
    /// A response header, by its lowercased name.
    Header(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn orders(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// Whether `left <op> right` holds for ordered numbers.
    pub fn holds<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            Op::Eq => left == right,
            Op::Ne => left != right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
        }
    }
}

/// One parsed condition; displays as it was written (normalised spacing).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    pub subject: Subject,
    pub op: Op,
    pub value: Value,
}

/// What one check saw, for conditions to judge.
#[derive(Debug, Default, Clone)]
pub struct Observation {
    pub status: Option<u16>,
    pub response_time_ms: u64,
    pub body: Option<String>,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub cert_expires_in_days: Option<i64>,
}

/// Longest condition text accepted.
const MAX_LEN: usize = 500;

impl Condition {
    /// Parses `subject op value`; the error says what is wrong, quoting nothing
    /// (the caller quotes the condition).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("a condition cannot be empty".into());
        }
        if text.len() > MAX_LEN {
            return Err(format!("a condition is at most {MAX_LEN} bytes"));
        }
        let (at, op) = find_operator(text).ok_or(
            "expected `subject operator value` with one of ==, !=, <, <=, >, >=".to_string(),
        )?;
        let subject_text = text[..at].trim();
        let value_text = text[at + op.symbol().len()..].trim();
        let subject = parse_subject(subject_text)?;
        if value_text.is_empty() {
            return Err(format!("nothing to compare {subject_text} with"));
        }
        let value = serde_json::from_str::<Value>(value_text)
            .unwrap_or_else(|_| Value::String(value_text.to_owned()));
        if op.orders() && !value.is_number() {
            return Err(format!(
                "{} compares numbers; {value_text} is not one",
                op.symbol()
            ));
        }
        if matches!(
            subject,
            Subject::Status | Subject::ResponseTimeMs | Subject::CertExpiresInDays
        ) && !value.is_number()
        {
            return Err(format!(
                "{subject_text} is a number; {value_text} is not one"
            ));
        }
        Ok(Self {
            text: format!("{subject_text} {} {value_text}", op.symbol()),
            subject,
            op,
            value,
        })
    }

    /// `Ok` when the observation satisfies the condition, else why not
    /// (`status == 200 (was 503)`).
    pub fn check(&self, seen: &Observation) -> Result<(), String> {
        let actual = match self.actual(seen) {
            Ok(actual) => actual,
            Err(missing) => return Err(format!("{self} ({missing})")),
        };
        if compare(&actual, self.op, &self.value) {
            Ok(())
        } else {
            Err(format!("{self} (was {})", shown(&actual)))
        }
    }

    fn actual(&self, seen: &Observation) -> Result<Value, &'static str> {
        Ok(match &self.subject {
            Subject::Status => Value::from(seen.status.ok_or("no status")?),
            Subject::ResponseTimeMs => Value::from(seen.response_time_ms),
            Subject::CertExpiresInDays => {
                Value::from(seen.cert_expires_in_days.ok_or("no certificate")?)
            }
            Subject::Body => Value::String(seen.body.clone().ok_or("no body")?),
            Subject::BodyPath(path) => {
                let body = seen.body.as_deref().ok_or("no body")?;
                let json: Value = serde_json::from_str(body).map_err(|_| "the body is not JSON")?;
                let mut at = &json;
                for step in path {
                    at = match step {
                        PathStep::Field(name) => at.get(name.as_str()),
                        PathStep::Index(i) => at.get(*i),
                    }
                    .ok_or("missing")?;
                }
                at.clone()
            }
            Subject::Header(name) => seen
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| Value::String(v.clone()))
                .ok_or("no such header")?,
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The first comparison operator outside a quoted string, preferring the
/// two-character spellings.
fn find_operator(text: &str) -> Option<(usize, Op)> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            let next = bytes.get(i + 1).copied();
            let op = match (b, next) {
                (b'=', Some(b'=')) => Some(Op::Eq),
                (b'!', Some(b'=')) => Some(Op::Ne),
                (b'<', Some(b'=')) => Some(Op::Le),
                (b'>', Some(b'=')) => Some(Op::Ge),
                (b'<', _) => Some(Op::Lt),
                (b'>', _) => Some(Op::Gt),
                _ => None,
            };
            if let Some(op) = op {
                return Some((i, op));
            }
        }
        i += 1;
    }
    None
}

fn parse_subject(text: &str) -> Result<Subject, String> {
    match text {
        "status" => return Ok(Subject::Status),
        "response_time_ms" => return Ok(Subject::ResponseTimeMs),
        "cert_expires_in_days" => return Ok(Subject::CertExpiresInDays),
        "body" => return Ok(Subject::Body),
        _ => {}
    }
    if let Some(name) = text.strip_prefix("header.") {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        return if valid {
            Ok(Subject::Header(name.to_ascii_lowercase()))
        } else {
            Err(format!("{text:?} does not name a header"))
        };
    }
    if let Some(path) = text
        .strip_prefix("body.")
        .or_else(|| text.strip_prefix("body").filter(|p| p.starts_with('[')))
    {
        return parse_path(path).map(Subject::BodyPath);
    }
    Err(format!(
        "unknown subject {text:?}: expected status, response_time_ms, \
         cert_expires_in_days, body, body.<path> or header.<name>"
    ))
}

/// `a.b[0].c`: fields separated by dots, array indices in brackets.
fn parse_path(path: &str) -> Result<Vec<PathStep>, String> {
    let bad = || format!("body.{path} is not a path like body.items[0].name");
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (field, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !field.is_empty() {
            if !field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'$'))
            {
                return Err(bad());
            }
            steps.push(PathStep::Field(field.to_owned()));
        } else if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let index = rest[1..close].parse::<usize>().map_err(|_| bad())?;
            steps.push(PathStep::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(actual: &Value, op: Op, expected: &Value) -> bool {
    if op.orders() || expected.is_number() {
        let (Some(a), Some(e)) = (number_of(actual), number_of(expected)) else {
            // A number that is not there is neither equal nor ordered.
            return op == Op::Ne;
        };
        return op.holds(a, e);
    }
    let equal = actual == expected
        || match (actual, expected) {
            // `body.count == "3"` against 3, `body.ok == true` against "true".
            (Value::String(s), other) | (other, Value::String(s)) => {
                let text = other.to_string();
                *s == text
            }
            _ => false,
        };
    (op == Op::Eq) == equal
}

/// An observed value in a failure message, cut short.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Observation {
        Observation {
            status: Some(200),
            response_time_ms: 120,
            body: Some(r#"{"status":"ok","items":[{"name":"a","n":3}],"up":true}"#.into()),
            headers: vec![("content-type".into(), "application/json".into())],
            cert_expires_in_days: Some(30),
        }
    }

    fn holds(condition: &str) -> Result<(), String> {
        Condition::parse(condition).unwrap().check(&seen())
    }

    #[test]
    fn the_specs_examples_parse_and_hold() {
        for c in [
            "status == 200",
            "response_time_ms < 500",
            "body.status == \"ok\"",
            "cert_expires_in_days > 14",
            "header.Content-Type == application/json",
            "body.items[0].name == \"a\"",
            "body.items[0].n >= 3",
            "body.items[0].n == \"3\"",
            "body.up == true",
            "body.up != false",
            "status<300",
        ] {
            assert_eq!(holds(c), Ok(()), "{c}");
        }
    }

    #[test]
    fn failures_say_what_was_seen() {
        assert_eq!(
            holds("status == 503").unwrap_err(),
            "status == 503 (was 200)"
        );
        assert_eq!(
            holds("response_time_ms < 100").unwrap_err(),
            "response_time_ms < 100 (was 120)"
        );
        assert_eq!(
            holds("body.missing == 1").unwrap_err(),
            "body.missing == 1 (missing)"
        );
        assert_eq!(
            holds("header.x-nope == a").unwrap_err(),
            "header.x-nope == a (no such header)"
        );
        let down = Observation::default();
        assert_eq!(
            Condition::parse("status == 200")
                .unwrap()
                .check(&down)
                .unwrap_err(),
            "status == 200 (no status)"
        );
        let text = Observation {
            body: Some("not json".into()),
            ..Observation::default()
        };
        assert!(Condition::parse("body.a == 1")
            .unwrap()
            .check(&text)
            .unwrap_err()
            .contains("not JSON"));
        assert_eq!(
            Condition::parse("body == \"not json\"")
                .unwrap()
                .check(&text),
            Ok(())
        );
    }

    #[test]
    fn bad_conditions_are_refused_with_a_reason() {
        for (c, why) in [
            ("", "empty"),
            ("status", "operator"),
            ("status ==", "nothing to compare"),
            ("latency < 5", "unknown subject"),
            ("status == ok", "is a number"),
            ("body.a < \"x\"", "compares numbers"),
            ("body. == 1", "path"),
            ("body.a[x] == 1", "path"),
            ("header. == 1", "header"),
        ] {
            let err = Condition::parse(c).unwrap_err();
            assert!(err.contains(why), "{c}: {err}");
        }
        assert!(Condition::parse(&"status == 2".repeat(100)).is_err());
    }

    #[test]
    fn operators_inside_strings_are_values() {
        let c = Condition::parse("body.status == \"a<b\"").unwrap();
        assert_eq!(c.value, Value::String("a<b".into()));
        assert_eq!(c.to_string(), "body.status == \"a<b\"");
    }
}
