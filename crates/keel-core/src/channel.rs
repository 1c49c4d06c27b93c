//! Notification channels (SPEC §7): where incident and SLO-alert notices go —
//! a generic JSON webhook, a Slack-compatible incoming webhook, or PagerDuty
//! Events v2 (trigger and resolve under one dedup key).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const FIELDS: [&str; 4] = ["name", "kind", "url", "routing_key"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
    Slack,
    Pagerduty,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Pagerduty => "pagerduty",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: ChannelKind,
    pub url: String,
    /// PagerDuty's integration key.
    pub routing_key: Option<String>,
}

fn http_url(raw: &str) -> bool {
    url::Url::parse(raw)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        && raw.len() <= 2_048
}

impl ChannelSpec {
    pub fn parse(raw: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(object) = raw.as_object() else {
            return Err(vec![FieldError::new("", "a channel is a JSON object")]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(format!("/{k}"), "unknown field"))
            .collect();
        let text = |k: &str| object.get(k).and_then(Value::as_str);
        let name = text("name").map(str::trim).unwrap_or_default().to_owned();
        if name.is_empty() || name.len() > 200 {
            errors.push(FieldError::new(
                "/name",
                "a channel needs a name of 1 to 200 bytes",
            ));
        }
        let kind = match text("kind") {
            Some("webhook") => Some(ChannelKind::Webhook),
            Some("slack") => Some(ChannelKind::Slack),
            Some("pagerduty") => Some(ChannelKind::Pagerduty),
            _ => {
                errors.push(FieldError::new(
                    "/kind",
                    "expected \"webhook\", \"slack\" or \"pagerduty\"",
                ));
                None
            }
        };
        let url = match (text("url"), kind) {
            (Some(u), _) if http_url(u) => u.to_owned(),
            (None, Some(ChannelKind::Pagerduty)) => PAGERDUTY_EVENTS_URL.to_owned(),
            _ => {
                errors.push(FieldError::new("/url", "expected an http(s) URL"));
                String::new()
            }
        };
        let routing_key = text("routing_key").map(str::to_owned);
        match (kind, &routing_key) {
            (Some(ChannelKind::Pagerduty), None) => errors.push(FieldError::new(
                "/routing_key",
                "a pagerduty channel needs its integration's routing key",
            )),
            (Some(ChannelKind::Pagerduty), Some(k)) if k.is_empty() || k.len() > 128 => {
                errors.push(FieldError::new("/routing_key", "1 to 128 characters"))
            }
            (Some(ChannelKind::Webhook | ChannelKind::Slack), Some(_)) => errors.push(
                FieldError::new("/routing_key", "only pagerduty channels take a routing key"),
            ),
            _ => {}
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name,
            kind: kind.expect("checked"),
            url,
            routing_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn channels_parse_with_their_kind_rules() {
        let pd = ChannelSpec::parse(
            &json!({"name": "oncall", "kind": "pagerduty", "routing_key": "abc"}),
        )
        .unwrap();
        assert_eq!(pd.url, PAGERDUTY_EVENTS_URL);
        let hook = ChannelSpec::parse(
            &json!({"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/x"}),
        )
        .unwrap();
        assert_eq!(hook.kind, ChannelKind::Webhook);
        let errors =
            ChannelSpec::parse(&json!({"kind": "pagerduty", "url": "ftp://x", "extra": 1}))
                .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/extra", "/name", "/url", "/routing_key"]);
        assert!(ChannelSpec::parse(
            &json!({"name": "s", "kind": "slack", "url": "https://h/x", "routing_key": "k"})
        )
        .is_err());
    }
}
