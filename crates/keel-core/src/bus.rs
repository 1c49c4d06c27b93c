//! Names and settings of the event bus (SPEC §4), parsed once at the edge.

use serde_json::{json, Value};

use crate::FieldError;

/// Where a subscription's messages go (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Consumers pull over HTTP.
    Queue,
    /// A built-in worker upserts each message into a collection, keyed by message id.
    Store { collection: BusName },
    /// A built-in worker POSTs each message, signed with HMAC-SHA256 of `secret`.
    Webhook { url: String, secret: String },
    /// A built-in worker imports the objects named by object-created events as
    /// telemetry (SPEC §6).
    TelemetryImport,
    /// A built-in worker sends each notice to a notification channel (SPEC §7).
    /// Made by `POST /v1/channels` on the `keel.notifications` topic, never by
    /// a client's subscription.
    Notify { channel: String },
}

impl Target {
    /// A shorter webhook secret could be guessed from signed deliveries.
    pub const MIN_SECRET_LEN: usize = 16;

    pub fn parse(value: &Value) -> Result<Self, FieldError> {
        let kind = value.get("type").and_then(Value::as_str).ok_or_else(|| {
            FieldError::new(
                "/target/type",
                "target.type is queue, store, webhook or telemetry-import",
            )
        })?;
        match kind {
            "queue" => Ok(Target::Queue),
            "store" => {
                let collection =
                    value
                        .get("collection")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            FieldError::new(
                                "/target/collection",
                                "a store target names its collection",
                            )
                        })?;
                Ok(Target::Store {
                    collection: BusName::parse(collection, "/target/collection")?,
                })
            }
            "webhook" => {
                let url = value
                    .get("url")
                    .and_then(Value::as_str)
                    .filter(|u| {
                        (u.starts_with("http://") || u.starts_with("https://"))
                            && u.len() <= 2048
                            && u.split("://").nth(1).is_some_and(|rest| !rest.is_empty())
                            && !u.chars().any(char::is_whitespace)
                    })
                    .ok_or_else(|| {
                        FieldError::new("/target/url", "a webhook target needs an http(s) url")
                    })?;
                let secret = value
                    .get("secret")
                    .and_then(Value::as_str)
                    .filter(|s| (Self::MIN_SECRET_LEN..=256).contains(&s.chars().count()))
                    .ok_or_else(|| {
                        FieldError::new(
                            "/target/secret",
                            format!(
                                "a webhook target needs a secret of {} to 256 characters",
                                Self::MIN_SECRET_LEN
                            ),
                        )
                    })?;
                Ok(Target::Webhook {
                    url: url.to_owned(),
                    secret: secret.to_owned(),
                })
            }
            "telemetry-import" => Ok(Target::TelemetryImport),
            "notify" => value
                .get("channel")
                .and_then(Value::as_str)
                .map(|c| Target::Notify {
                    channel: c.to_owned(),
                })
                .ok_or_else(|| {
                    FieldError::new("/target/channel", "a notify target names its channel")
                }),
            other => Err(FieldError::new(
                "/target/type",
                format!("unknown target type {other:?}"),
            )),
        }
    }

    /// The target as stored and shown; `reveal_secret: false` masks a webhook secret.
    pub fn to_json(&self, reveal_secret: bool) -> Value {
        match self {
            Target::Queue => json!({"type": "queue"}),
            Target::Store { collection } => {
                json!({"type": "store", "collection": collection.as_str()})
            }
            Target::Webhook { url, secret } => json!({
                "type": "webhook",
                "url": url,
                "secret": if reveal_secret { secret.as_str() } else { "********" },
            }),
            Target::TelemetryImport => json!({"type": "telemetry-import"}),
            Target::Notify { channel } => json!({"type": "notify", "channel": channel}),
        }
    }
}

/// Topic and subscription names: 1–128 ASCII letters, digits, `_`, `-` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusName(String);

impl BusName {
    pub fn parse(raw: &str, pointer: &str) -> Result<Self, FieldError> {
        let ok = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                pointer,
                "names are 1 to 128 letters, digits, '_', '-' or '.'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a subscription redelivers: after `max_receives` deliveries a message goes to
/// the dead-letter queue; a receive hides it for `visibility_timeout_s`; the n-th
/// retry of a built-in target waits `retry_backoff_s[n]` (the last entry repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub max_receives: u32,
    pub visibility_timeout_s: u32,
    pub retry_backoff_s: Vec<u32>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_receives: 5,
            visibility_timeout_s: 30,
            retry_backoff_s: vec![1, 5, 30],
        }
    }
}

impl DeliveryPolicy {
    pub const MAX_RECEIVES: u32 = 1000;
    pub const MAX_VISIBILITY_S: u32 = 12 * 3600;

    pub fn new(
        max_receives: u32,
        visibility_timeout_s: u32,
        retry_backoff_s: Vec<u32>,
    ) -> Result<Self, FieldError> {
        if !(1..=Self::MAX_RECEIVES).contains(&max_receives) {
            return Err(FieldError::new(
                "/max_receives",
                format!("max_receives must be 1 to {}", Self::MAX_RECEIVES),
            ));
        }
        if !(1..=Self::MAX_VISIBILITY_S).contains(&visibility_timeout_s) {
            return Err(FieldError::new(
                "/visibility_timeout_s",
                format!(
                    "visibility_timeout_s must be 1 to {}",
                    Self::MAX_VISIBILITY_S
                ),
            ));
        }
        if retry_backoff_s.len() > 32 || retry_backoff_s.iter().any(|s| *s > Self::MAX_VISIBILITY_S)
        {
            return Err(FieldError::new(
                "/retry_backoff_s",
                "retry_backoff_s is up to 32 delays of at most 12 h each",
            ));
        }
        Ok(Self {
            max_receives,
            visibility_timeout_s,
            retry_backoff_s,
        })
    }

    /// The delay before the retry that follows delivery number `receive_count`.
    pub fn backoff_after(&self, receive_count: u32) -> u32 {
        let index = receive_count.saturating_sub(1) as usize;
        self.retry_backoff_s
            .get(index)
            .or(self.retry_backoff_s.last())
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(BusName::parse("orders.created-v2_x", "/t").is_ok());
        for bad in ["", "a b", "a/b", "ü", &"a".repeat(129)] {
            assert!(BusName::parse(bad, "/t").is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse(&json!({"type": "queue"})).unwrap(),
            Target::Queue
        );
        let store = Target::parse(&json!({"type": "store", "collection": "users"})).unwrap();
        assert_eq!(
            store.to_json(false),
            json!({"type": "store", "collection": "users"})
        );
        let hook = Target::parse(
            &json!({"type": "webhook", "url": "https://x.io/h", "secret": "s3cret-s3cret-s3cret"}),
        )
        .unwrap();
        assert_eq!(hook.to_json(false)["secret"], "********");
        assert_eq!(Target::parse(&hook.to_json(true)).unwrap(), hook);
        for (bad, pointer) in [
            (json!({}), "/target/type"),
            (json!({"type": "carrier-pigeon"}), "/target/type"),
            (json!({"type": "store"}), "/target/collection"),
            (
                json!({"type": "store", "collection": "a b"}),
                "/target/collection",
            ),
            (
                json!({"type": "webhook", "url": "ftp://x", "secret": "s"}),
                "/target/url",
            ),
            (
                json!({"type": "webhook", "url": "https://", "secret": "s"}),
                "/target/url",
            ),
            (
                json!({"type": "webhook", "url": "https://x.io"}),
                "/target/secret",
            ),
            (
                json!({"type": "webhook", "url": "https://x.io", "secret": "short"}),
                "/target/secret",
            ),
        ] {
            assert_eq!(Target::parse(&bad).unwrap_err().pointer, pointer, "{bad}");
        }
    }

    #[test]
    fn policies_and_backoff() {
        let p = DeliveryPolicy::new(5, 30, vec![1, 5, 30]).unwrap();
        assert_eq!(
            [1, 2, 3, 4, 9].map(|n| p.backoff_after(n)),
            [1, 5, 30, 30, 30]
        );
        assert_eq!(
            DeliveryPolicy::new(5, 30, vec![]).unwrap().backoff_after(3),
            0
        );
        assert_eq!(
            DeliveryPolicy::new(0, 30, vec![]).unwrap_err().pointer,
            "/max_receives"
        );
        assert_eq!(
            DeliveryPolicy::new(5, 0, vec![]).unwrap_err().pointer,
            "/visibility_timeout_s"
        );
    }
}
