//! Buckets, object keys, notification rules and the S3-format event records they
//! publish (SPEC §6), parsed once at the edge. `Range` headers are `range`.

mod range;
pub use range::{parse_range, ByteRange, RangeError};

use serde_json::{json, Value};

use crate::{bus::BusName, FieldError};

/// A bucket's name, by S3's rules: 3 to 63 lowercase letters, digits, '.' and '-',
/// starting and ending with a letter or digit, no "..", not shaped like an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketName(String);

impl BucketName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bytes = raw.as_bytes();
        let ok = (3..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && !raw.contains("..")
            && raw.parse::<std::net::Ipv4Addr>().is_err();
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                "/bucket",
                "bucket names are 3 to 63 lowercase letters, digits, '.' or '-', \
                 start and end with a letter or digit, and are not IP addresses",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An object's key: 1 to 1,024 bytes of UTF-8 without NUL, not starting with '/',
/// and without a `..` segment (so no key can name a path outside its bucket on a
/// file system, and keys mean the same on every adapter).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let why = if raw.is_empty() {
            Some("an object key is not empty")
        } else if raw.len() > Self::MAX_BYTES {
            Some("an object key is at most 1,024 bytes of UTF-8")
        } else if raw.contains('\0') {
            Some("an object key has no NUL character")
        } else if raw.starts_with('/') {
            Some("an object key does not start with '/'")
        } else if raw.split('/').any(|segment| segment == "..") {
            Some("an object key has no '..' segment")
        } else {
            None
        };
        match why {
            Some(why) => Err(FieldError::new("/key", why)),
            None => Ok(Self(raw.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What happened to an object, as S3 names it in an event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEvent {
    Put,
    Delete,
}

impl ObjectEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "ObjectCreated:Put",
            Self::Delete => "ObjectRemoved:Delete",
        }
    }
}

/// Event names a rule may list (with or without S3's `s3:` prefix). Keel emits
/// `ObjectCreated:Put` and `ObjectRemoved:Delete`; the others are accepted so that
/// configurations written for S3 load unchanged, and match nothing Keel does.
const EVENT_NAMES: &[&str] = &[
    "ObjectCreated:*",
    "ObjectCreated:Put",
    "ObjectCreated:Post",
    "ObjectCreated:Copy",
    "ObjectCreated:CompleteMultipartUpload",
    "ObjectRemoved:*",
    "ObjectRemoved:Delete",
    "ObjectRemoved:DeleteMarkerCreated",
];

/// One notification rule of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRule {
    /// `configurationId` in the records it publishes.
    pub id: String,
    /// Event names without the `s3:` prefix.
    pub events: Vec<String>,
    pub prefix: String,
    pub suffix: String,
    pub topic: BusName,
}

impl NotificationRule {
    pub fn matches(&self, event: ObjectEvent, key: &ObjectKey) -> bool {
        self.events
            .iter()
            .any(|pattern| event_matches(pattern, event.name()))
            && key.as_str().starts_with(&self.prefix)
            && key.as_str().ends_with(&self.suffix)
    }

    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "events": self.events, "prefix": self.prefix,
               "suffix": self.suffix, "topic": self.topic.as_str()})
    }
}

fn event_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(family) => name.starts_with(family),
        None => pattern == name,
    }
}

/// Whether two event names can both match one event (`ObjectCreated:*` and
/// `ObjectCreated:Put` can; `ObjectCreated:Put` and `ObjectCreated:Copy` cannot).
fn events_overlap(a: &str, b: &str) -> bool {
    event_matches(a, b) || event_matches(b, a)
}

/// A bucket's whole rule set, parsed from the body of `PUT …/notifications`: a JSON
/// array of `{"id"?, "events", "prefix"?, "suffix"?, "topic"}`. Two rules that share
/// an event and whose prefixes and suffixes could both match one key are refused,
/// as S3 refuses them ("Configurations overlap").
pub fn parse_rules(value: &Value) -> Result<Vec<NotificationRule>, FieldError> {
    let items = value
        .as_array()
        .ok_or_else(|| FieldError::new("", "the body is a JSON array of notification rules"))?;
    if items.len() > 100 {
        return Err(FieldError::new(
            "",
            "a bucket has at most 100 notification rules",
        ));
    }
    let mut rules: Vec<NotificationRule> = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let rule = parse_rule(item, n)?;
        if rules.iter().any(|r| r.id == rule.id) {
            return Err(FieldError::new(
                format!("/{n}/id"),
                "rule ids are unique in a bucket",
            ));
        }
        if let Some(other) = rules.iter().position(|r| overlap(r, &rule)) {
            return Err(FieldError::new(
                format!("/{n}"),
                format!(
                    "rule {n} overlaps rule {other}: they share an event and their \
                     prefixes and suffixes can match the same key"
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn parse_rule(item: &Value, n: usize) -> Result<NotificationRule, FieldError> {
    let at = |field: &str| format!("/{n}/{field}");
    let object = item
        .as_object()
        .ok_or_else(|| FieldError::new(format!("/{n}"), "a rule is a JSON object"))?;
    for field in object.keys() {
        if !matches!(
            field.as_str(),
            "id" | "events" | "prefix" | "suffix" | "topic"
        ) {
            return Err(FieldError::new(
                at(field),
                "unknown field of a notification rule",
            ));
        }
    }
    let text = |field: &str, max: usize| -> Result<String, FieldError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) if s.len() <= max && !s.contains('\0') => Ok(s.clone()),
            Some(_) => Err(FieldError::new(
                at(field),
                format!("{field} is a string of at most {max} bytes"),
            )),
        }
    };
    let (prefix, suffix) = (text("prefix", 1024)?, text("suffix", 1024)?);
    let id = match text("id", 255)? {
        id if id.is_empty() => format!("rule-{n}"),
        id => id,
    };
    let topic = object
        .get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| FieldError::new(at("topic"), "a rule names the topic it publishes to"))?;
    let topic = BusName::parse(topic, &at("topic"))?;
    let events = object
        .get("events")
        .and_then(Value::as_array)
        .filter(|events| !events.is_empty())
        .ok_or_else(|| FieldError::new(at("events"), "a rule lists one or more events"))?;
    let mut names = Vec::with_capacity(events.len());
    for (e, event) in events.iter().enumerate() {
        let name = event
            .as_str()
            .map(|s| s.strip_prefix("s3:").unwrap_or(s))
            .filter(|s| EVENT_NAMES.contains(s))
            .ok_or_else(|| {
                FieldError::new(
                    format!("/{n}/events/{e}"),
                    format!("events are S3 event names: {}", EVENT_NAMES.join(", ")),
                )
            })?;
        if !names.iter().any(|known: &String| known == name) {
            names.push(name.to_owned());
        }
    }
    Ok(NotificationRule {
        id,
        events: names,
        prefix,
        suffix,
        topic,
    })
}

fn overlap(a: &NotificationRule, b: &NotificationRule) -> bool {
    let shared_event = a
        .events
        .iter()
        .any(|x| b.events.iter().any(|y| events_overlap(x, y)));
    let prefixes = a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix);
    let suffixes = a.suffix.ends_with(&b.suffix) || b.suffix.ends_with(&a.suffix);
    shared_event && prefixes && suffixes
}

/// Encodes a key as S3 does in event records: form-URL-encoding (a space becomes
/// `+`), with `/` left as it is.
pub fn encode_key_for_event(key: &ObjectKey) -> String {
    let mut out = String::with_capacity(key.as_str().len());
    for segment_bytes in key.as_str().split('/').enumerate() {
        let (i, segment) = segment_bytes;
        if i > 0 {
            out.push('/');
        }
        for &b in segment.as_bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    out
}

/// The key an event record names: the reverse of [`encode_key_for_event`]
/// (`+` is a space, `%XX` a byte); `None` when that is not UTF-8 or a `%` is cut.
pub fn decode_key_from_event(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = encoded.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// What an event record says about the object it names.
#[derive(Debug, Clone)]
pub struct EventObject<'a> {
    pub bucket: &'a BucketName,
    pub key: &'a ObjectKey,
    /// Absent for removals, as in S3's records.
    pub size_and_etag: Option<(u64, &'a str)>,
    /// Orders events of one key: a later change has a greater sequencer.
    pub sequencer: String,
}

/// The S3-format event record one rule publishes for one change, so code written
/// for S3 notifications parses it unchanged.
pub fn event_record(
    rule: &NotificationRule,
    event: ObjectEvent,
    object: &EventObject<'_>,
    region: &str,
    event_time: &str,
) -> Value {
    let mut described = json!({
        "key": encode_key_for_event(object.key),
        "sequencer": object.sequencer,
    });
    if let Some((size, etag)) = object.size_and_etag {
        described["size"] = json!(size);
        described["eTag"] = json!(etag);
    }
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": event.name(),
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": rule.id,
            "bucket": {"name": object.bucket.as_str(),
                       "arn": format!("arn:aws:s3:::{}", object.bucket.as_str())},
            "object": described,
        }
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(value: Value) -> Result<Vec<NotificationRule>, FieldError> {
        parse_rules(&value)
    }

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket.logs", "a1b", &"a".repeat(63)] {
            assert!(BucketName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(BucketName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_refuse_what_could_escape_or_confuse() {
        for ok in [
            "data/x.json",
            "a b/ü",
            "..a/b..",
            "a/./b",
            &"k".repeat(1024),
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", "a/..", "a\0b", &"k".repeat(1025)] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        let key = ObjectKey::parse("data/my file+1 ü.json").unwrap();
        assert_eq!(encode_key_for_event(&key), "data/my+file%2B1+%C3%BC.json");
        assert_eq!(
            decode_key_from_event("data/my+file%2B1+%C3%BC.json").as_deref(),
            Some(key.as_str())
        );
        assert_eq!(decode_key_from_event("cut%4"), None);
        assert_eq!(decode_key_from_event("bad%FF"), None);
    }

    #[test]
    fn rules_match_event_prefix_and_suffix() {
        let parsed = rules(json!([{"events": ["s3:ObjectCreated:*"], "prefix": "data/",
                                    "suffix": ".json", "topic": "incoming"}]))
        .unwrap();
        let rule = &parsed[0];
        let key = |k: &str| ObjectKey::parse(k).unwrap();
        assert!(rule.matches(ObjectEvent::Put, &key("data/a.json")));
        assert!(!rule.matches(ObjectEvent::Delete, &key("data/a.json")));
        assert!(!rule.matches(ObjectEvent::Put, &key("data/a.txt")));
        assert!(!rule.matches(ObjectEvent::Put, &key("other/a.json")));
        assert_eq!(rule.id, "rule-0");
    }

    #[test]
    fn overlapping_rules_are_refused_as_s3_refuses_them() {
        let rule = |events: &[&str], prefix: &str, suffix: &str| json!({"events": events, "prefix": prefix, "suffix": suffix, "topic": "t"});
        let overlapping = [
            (
                rule(&["ObjectCreated:*"], "data/", ""),
                rule(&["ObjectCreated:Put"], "data/x", ""),
            ),
            (
                rule(&["ObjectCreated:Put"], "", ".json"),
                rule(&["ObjectCreated:Put"], "a", ""),
            ),
            (
                rule(&["ObjectCreated:Put"], "a", ".json"),
                rule(&["ObjectCreated:Put"], "a", "b.json"),
            ),
        ];
        for (a, b) in overlapping {
            let err = rules(json!([a, b])).unwrap_err();
            assert_eq!(err.pointer, "/1");
        }
        let apart = [
            (
                rule(&["ObjectCreated:*"], "data/", ""),
                rule(&["ObjectRemoved:*"], "data/", ""),
            ),
            (
                rule(&["ObjectCreated:Put"], "a/", ""),
                rule(&["ObjectCreated:Put"], "b/", ""),
            ),
            (
                rule(&["ObjectCreated:Put"], "", ".jpg"),
                rule(&["ObjectCreated:Put"], "", ".png"),
            ),
            (
                rule(&["ObjectCreated:Put"], "", ""),
                rule(&["ObjectCreated:Copy"], "", ""),
            ),
        ];
        for (a, b) in apart {
            assert!(rules(json!([a, b])).is_ok());
        }
    }

    #[test]
    fn bad_rules_name_the_bad_part() {
        let cases = [
            (json!({}), ""),
            (json!([{"events": [], "topic": "t"}]), "/0/events"),
            (
                json!([{"events": ["ObjectCreated:Nope"], "topic": "t"}]),
                "/0/events/0",
            ),
            (json!([{"events": ["ObjectCreated:*"]}]), "/0/topic"),
            (
                json!([{"events": ["ObjectCreated:*"], "topic": "t", "prefix": 3}]),
                "/0/prefix",
            ),
            (
                json!([{"events": ["ObjectCreated:*"], "topic": "t", "extra": 1}]),
                "/0/extra",
            ),
        ];
        for (value, pointer) in cases {
            assert_eq!(rules(value).unwrap_err().pointer, pointer);
        }
    }

    #[test]
    fn records_have_the_s3_shape() {
        let rule = &rules(json!([{"id": "imports", "events": ["ObjectCreated:*"], "topic": "t"}]))
            .unwrap()[0];
        let (bucket, key) = (
            BucketName::parse("logs").unwrap(),
            ObjectKey::parse("data/a b.json").unwrap(),
        );
        let object = EventObject {
            bucket: &bucket,
            key: &key,
            size_and_etag: Some((12, "abc")),
            sequencer: "0A".into(),
        };
        let record = event_record(
            rule,
            ObjectEvent::Put,
            &object,
            "local",
            "2026-01-02T03:04:05.006Z",
        );
        let r = &record["Records"][0];
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["s3"]["configurationId"], "imports");
        assert_eq!(r["s3"]["bucket"]["arn"], "arn:aws:s3:::logs");
        assert_eq!(r["s3"]["object"]["key"], "data/a+b.json");
        assert_eq!(r["s3"]["object"]["size"], 12);
        assert_eq!(r["s3"]["object"]["eTag"], "abc");
    }
}
