//! A monitor's definition (SPEC §7), parsed from the JSON of `POST /v1/monitors`
//! (and `keel monitors apply`): every field checked, every mistake a
//! [`FieldError`] pointing at it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::condition::Condition;
use crate::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorKind {
    Http,
    Tcp,
    Push,
}

impl MonitorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Http => "http",
            MonitorKind::Tcp => "tcp",
            MonitorKind::Push => "push",
        }
    }
}

/// A valid monitor definition. Serialised as the API shows it (and as stores keep
/// it); only [`MonitorSpec::parse`] makes one from outside input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSpec {
    pub name: String,
    pub kind: MonitorKind,
    /// `https://…` for http, `host:port` for tcp, absent for push.
    pub target: Option<String>,
    pub interval_s: u32,
    pub timeout_ms: u32,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub third_party: bool,
    pub public: bool,
    pub conditions: Vec<String>,
    /// Consecutive failed checks that open an incident.
    pub incident_after: u32,
    /// Push monitors: how long past `interval_s` a heartbeat may be late.
    pub grace_s: u32,
    /// Notification channel ids for its incidents; empty means every channel
    /// of the tenant.
    #[serde(default)]
    pub channels: Vec<String>,
}

pub const MAX_INTERVAL_S: u32 = 86_400;
pub const MAX_TIMEOUT_MS: u32 = 60_000;
pub const MAX_CONDITIONS: usize = 20;
const MAX_NAME: usize = 200;
const MAX_TARGET: usize = 2_048;
const MAX_HEADERS: usize = 32;
const MAX_BODY: usize = 64 * 1024;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const FIELDS: [&str; 14] = [
    "channels",
    "name",
    "kind",
    "target",
    "interval_s",
    "timeout_ms",
    "method",
    "headers",
    "body",
    "third_party",
    "public",
    "conditions",
    "incident_after",
    "grace_s",
];

impl MonitorSpec {
    /// Parses a monitor definition, collecting every mistake.
    pub fn parse(raw: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(object) = raw.as_object() else {
            return Err(vec![FieldError::new("", "a monitor is a JSON object")]);
        };
        for key in object.keys() {
            if !FIELDS.contains(&key.as_str()) {
                errors.push(FieldError::new(format!("/{key}"), "unknown field"));
            }
        }
        let mut fields = Fields {
            object,
            errors: &mut errors,
        };
        let name = fields.string("name", MAX_NAME).unwrap_or_default();
        if object.get("name").is_none() {
            fields.fail("name", "a monitor needs a name");
        } else if name.trim().is_empty() && fields.errors.is_empty() {
            fields.fail("name", "a name cannot be blank");
        }
        let kind = match object.get("kind").and_then(Value::as_str) {
            Some("http") => Some(MonitorKind::Http),
            Some("tcp") => Some(MonitorKind::Tcp),
            Some("push") => Some(MonitorKind::Push),
            _ => {
                fields.fail("kind", "expected \"http\", \"tcp\" or \"push\"");
                None
            }
        };
        let interval_s = fields.number("interval_s", 1, u64::from(MAX_INTERVAL_S), 60) as u32;
        let timeout_ms = fields.number("timeout_ms", 1, u64::from(MAX_TIMEOUT_MS), 5_000) as u32;
        let incident_after = fields.number("incident_after", 1, 100, 2) as u32;
        let grace_s = fields.number(
            "grace_s",
            0,
            u64::from(MAX_INTERVAL_S),
            u64::from(interval_s.min(60)),
        ) as u32;
        let third_party = fields.boolean("third_party");
        let public = fields.boolean("public");
        let target = fields.string("target", MAX_TARGET);
        let method = fields
            .string("method", 10)
            .map(|m| m.to_ascii_uppercase())
            .unwrap_or_else(|| "GET".into());
        if !METHODS.contains(&method.as_str()) {
            fields.fail(
                "method",
                "expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
            );
        }
        let headers = fields.headers();
        let body = fields.string("body", MAX_BODY);
        let conditions = fields.conditions();
        let channels = match object.get("channels") {
            None => Vec::new(),
            Some(Value::Array(items))
                if items.len() <= crate::slo::MAX_CHANNELS
                    && items.iter().all(Value::is_string) =>
            {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                fields.fail("channels", "expected up to 20 channel ids (strings)");
                Vec::new()
            }
        };

        let named = |field: &str| object.contains_key(field);
        match kind {
            Some(MonitorKind::Http) => {
                match &target {
                    Some(t) => {
                        if let Err(why) = http_target(t) {
                            fields.fail("target", why);
                        }
                    }
                    None => fields.fail("target", "an http monitor needs a URL"),
                }
                if u64::from(timeout_ms) > u64::from(interval_s) * 1000 {
                    fields.fail(
                        "timeout_ms",
                        "the timeout cannot be longer than the interval",
                    );
                }
            }
            Some(MonitorKind::Tcp) => {
                match &target {
                    Some(t) => {
                        if let Err(why) = tcp_target(t) {
                            fields.fail("target", why);
                        }
                    }
                    None => fields.fail("target", "a tcp monitor needs host:port"),
                }
                if u64::from(timeout_ms) > u64::from(interval_s) * 1000 {
                    fields.fail(
                        "timeout_ms",
                        "the timeout cannot be longer than the interval",
                    );
                }
                for field in ["method", "headers", "body"] {
                    if named(field) {
                        fields.fail(field, "only http monitors send requests");
                    }
                }
            }
            Some(MonitorKind::Push) => {
                for field in ["target", "method", "headers", "body"] {
                    if named(field) {
                        fields.fail(field, "push monitors are called, they call nothing");
                    }
                }
            }
            None => {}
        }
        if let Some(kind) = kind {
            for (i, c) in conditions.iter().enumerate() {
                if let Some(why) = subject_unfit(kind, target.as_deref(), c) {
                    errors.push(FieldError::new(
                        format!("/conditions/{i}"),
                        format!("{c:?}: {why}"),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: name.trim().to_owned(),
            kind: kind.expect("checked above"),
            target: target.filter(|_| kind != Some(MonitorKind::Push)),
            interval_s,
            timeout_ms,
            method,
            headers,
            body,
            third_party,
            public,
            conditions: conditions.iter().map(ToString::to_string).collect(),
            incident_after,
            grace_s,
            channels,
        })
    }

    /// The conditions, parsed (they were checked when the spec was made).
    pub fn parsed_conditions(&self) -> Vec<Condition> {
        self.conditions
            .iter()
            .filter_map(|c| Condition::parse(c).ok())
            .collect()
    }

    /// The interval in µs: from one check slot to the next.
    pub fn interval_micros(&self) -> i64 {
        i64::from(self.interval_s) * 1_000_000
    }

    /// How long after a check (or a heartbeat) the next one is due, in µs; push
    /// monitors add their grace.
    pub fn period_micros(&self) -> i64 {
        let grace = if self.kind == MonitorKind::Push {
            i64::from(self.grace_s)
        } else {
            0
        };
        (i64::from(self.interval_s) + grace) * 1_000_000
    }
}

/// Why a condition cannot apply to a kind of monitor.
fn subject_unfit(kind: MonitorKind, target: Option<&str>, c: &Condition) -> Option<&'static str> {
    use super::condition::Subject;
    match (kind, &c.subject) {
        (MonitorKind::Http, Subject::CertExpiresInDays)
            if !target.is_some_and(|t| t.to_ascii_lowercase().starts_with("https:")) =>
        {
            Some("only https targets have a certificate")
        }
        (MonitorKind::Http, _) => None,
        (MonitorKind::Tcp, Subject::ResponseTimeMs) => None,
        (MonitorKind::Tcp, _) => Some("a tcp check only has response_time_ms"),
        (MonitorKind::Push, Subject::ResponseTimeMs) => None,
        (MonitorKind::Push, _) => Some("a heartbeat only has response_time_ms (its duration_ms)"),
    }
}

fn http_target(raw: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(raw).map_err(|_| "not a URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("an http monitor's URL is http:// or https://");
    }
    if url.host().is_none() {
        return Err("the URL has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in headers, not in the URL");
    }
    Ok(())
}

/// `host:port`, `[v6]:port` or `v4:port`.
fn tcp_target(raw: &str) -> Result<(), &'static str> {
    let (host, port) = raw.rsplit_once(':').ok_or("expected host:port")?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("the port is a number from 1 to 65535")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(|v6| v6.parse::<std::net::Ipv6Addr>().map(|_| v6))
        .transpose()
        .map_err(|_| "not an IPv6 address")?
        .unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if valid {
        Ok(())
    } else {
        Err("expected host:port")
    }
}

/// Reads fields of one object, recording what is wrong.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: &'a mut Vec<FieldError>,
}

impl Fields<'_> {
    fn fail(&mut self, field: &str, why: impl Into<String>) {
        self.errors.push(FieldError::new(format!("/{field}"), why));
    }

    fn string(&mut self, field: &str, max: usize) -> Option<String> {
        match self.object.get(field)? {
            Value::String(s) if s.len() <= max && !s.contains('\0') => Some(s.clone()),
            Value::String(_) => {
                self.fail(field, format!("at most {max} bytes, without NUL"));
                None
            }
            _ => {
                self.fail(field, "expected a string");
                None
            }
        }
    }

    fn number(&mut self, field: &str, min: u64, max: u64, default: u64) -> u64 {
        match self.object.get(field) {
            None => default,
            Some(v) => match v.as_u64().filter(|n| (min..=max).contains(n)) {
                Some(n) => n,
                None => {
                    self.fail(field, format!("an integer from {min} to {max}"));
                    default
                }
            },
        }
    }

    fn boolean(&mut self, field: &str) -> bool {
        match self.object.get(field) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.fail(field, "expected true or false");
                false
            }
        }
    }

    fn headers(&mut self) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::new();
        let Some(raw) = self.object.get("headers") else {
            return headers;
        };
        let Some(map) = raw.as_object() else {
            self.fail("headers", "expected an object of header names to values");
            return headers;
        };
        if map.len() > MAX_HEADERS {
            self.fail("headers", format!("at most {MAX_HEADERS} headers"));
        }
        for (name, value) in map {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let value = value.as_str().filter(|v| {
                v.len() <= 4096 && v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            });
            match (name_ok, value) {
                (true, Some(v)) => {
                    headers.insert(name.clone(), v.to_owned());
                }
                _ => self.errors.push(FieldError::new(
                    format!("/headers/{}", name.replace('~', "~0").replace('/', "~1")),
                    "header names are tokens and values printable ASCII",
                )),
            }
        }
        headers
    }

    fn conditions(&mut self) -> Vec<Condition> {
        let Some(raw) = self.object.get("conditions") else {
            return Vec::new();
        };
        let Some(list) = raw.as_array() else {
            self.fail("conditions", "expected an array of conditions");
            return Vec::new();
        };
        if list.len() > MAX_CONDITIONS {
            self.fail("conditions", format!("at most {MAX_CONDITIONS} conditions"));
        }
        let mut parsed = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let pointer = format!("/conditions/{i}");
            match c.as_str() {
                Some(text) => match Condition::parse(text) {
                    Ok(c) => parsed.push(c),
                    Err(why) => self
                        .errors
                        .push(FieldError::new(pointer, format!("{text:?}: {why}"))),
                },
                None => self
                    .errors
                    .push(FieldError::new(pointer, "a condition is a string")),
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pointers(raw: Value) -> Vec<String> {
        MonitorSpec::parse(&raw)
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn the_specs_example_parses_with_defaults() {
        let spec = MonitorSpec::parse(&json!({
            "name": "api", "kind": "http", "target": "https://example.com/health",
            "interval_s": 30, "timeout_ms": 5000, "third_party": false, "public": false,
            "conditions": ["status == 200", "response_time_ms < 500",
                           "body.status == \"ok\"", "cert_expires_in_days > 14"]
        }))
        .unwrap();
        assert_eq!(spec.method, "GET");
        assert_eq!(spec.incident_after, 2);
        assert_eq!(spec.parsed_conditions().len(), 4);
        let tcp = MonitorSpec::parse(&json!({"name": "db", "kind": "tcp", "target": "[::1]:5432"}))
            .unwrap();
        assert_eq!((tcp.interval_s, tcp.timeout_ms), (60, 5000));
        let push = MonitorSpec::parse(&json!({"name": "cron", "kind": "push", "interval_s": 3600}))
            .unwrap();
        assert_eq!(push.grace_s, 60);
        assert_eq!(push.period_micros(), 3_660_000_000);
    }

    #[test]
    fn a_bad_condition_points_at_its_index_and_quotes_it() {
        let errors = MonitorSpec::parse(&json!({
            "name": "api", "kind": "http", "target": "http://x",
            "conditions": ["status == 200", "statsu == 200"]
        }))
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/conditions/1");
        assert!(
            errors[0].detail.contains("\"statsu == 200\""),
            "{}",
            errors[0].detail
        );
    }

    #[test]
    fn every_mistake_is_named() {
        assert_eq!(
            pointers(json!({"kind": "ftp", "interval_s": 0, "colour": 1})),
            ["/colour", "/name", "/kind", "/interval_s"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "http", "target": "ftp://x"})),
            ["/target"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "http", "target": "http://x",
                            "interval_s": 1, "timeout_ms": 1001})),
            ["/timeout_ms"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "tcp", "target": "db:99999", "method": "GET"})),
            ["/target", "/method"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "tcp", "target": "db:1",
                            "conditions": ["status == 200"]})),
            ["/conditions/0"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "http", "target": "http://x",
                            "conditions": ["cert_expires_in_days > 3"]})),
            ["/conditions/0"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "push", "target": "http://x"})),
            ["/target"]
        );
        assert_eq!(
            pointers(json!({"name": "a", "kind": "http", "target": "http://x",
                            "headers": {"bad name": "v", "ok": 1}})),
            ["/headers/bad name", "/headers/ok"]
        );
        assert_eq!(pointers(json!({"name": " ", "kind": "push"})), ["/name"]);
        assert_eq!(pointers(json!([])), [""]);
    }
}
