//! The `notify` target: a notice from `keel.notifications` (`crate::notices`)
//! in the format its channel speaks. Delivery, retries with backoff, dead
//! letters and the recorded attempts are the webhook deliverer's
//! (`super::webhook`, `Shape::Channel`).
//!
//! - `webhook`: the notice as JSON (`kind`, `event`, `key`, `summary`,
//!   `severity`, `detail`).
//! - `slack`: an incoming-webhook message, `{"text": …}`.
//! - `pagerduty`: an Events v2 `trigger` or `resolve` under the notice's key as
//!   `dedup_key`, so the resolve closes the incident the trigger opened.

use keel_core::channel::{ChannelKind, ChannelSpec};
use serde_json::{json, Value};

use crate::notices::Notice;

/// The request body for `channel`, or `None` when the notice is not for it
/// (the monitor or SLO lists other channels) or is no notice at all.
pub fn channel_body(channel_id: &str, spec: &ChannelSpec, body: &Value) -> Option<Vec<u8>> {
    let notice = Notice::from_json(body)?;
    if !notice.channels.is_empty() && !notice.channels.iter().any(|c| c == channel_id) {
        return None;
    }
    let value = match spec.kind {
        ChannelKind::Webhook => notice.to_json(),
        ChannelKind::Slack => {
            let mark = if notice.event == "resolved" {
                "✅"
            } else {
                "🔴"
            };
            json!({ "text": format!("{mark} {}", notice.summary) })
        }
        ChannelKind::Pagerduty => pagerduty(&notice, spec.routing_key.as_deref().unwrap_or("")),
    };
    serde_json::to_vec(&value).ok()
}

fn pagerduty(notice: &Notice, routing_key: &str) -> Value {
    match notice.event {
        "resolved" => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": notice.key,
        }),
        _ => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": notice.key,
            "payload": {
                "summary": notice.summary,
                "source": "keel",
                "severity": notice.severity,
                "component": notice.kind,
                "custom_details": notice.detail,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: &'static str, channels: Vec<String>) -> Value {
        Notice {
            kind: "incident",
            event,
            key: "keel-incident-1".into(),
            summary: "site is down".into(),
            severity: "critical",
            channels,
            detail: json!({}),
        }
        .to_json()
    }

    fn spec(kind: &str) -> ChannelSpec {
        let mut raw = json!({"name": "c", "kind": kind, "url": "https://h/x"});
        if kind == "pagerduty" {
            raw["routing_key"] = json!("rk");
        }
        ChannelSpec::parse(&raw).unwrap()
    }

    fn sent(kind: &str, event: &'static str) -> Value {
        serde_json::from_slice(&channel_body("c1", &spec(kind), &notice(event, vec![])).unwrap())
            .unwrap()
    }

    #[test]
    fn each_kind_speaks_its_format() {
        assert_eq!(sent("webhook", "opened")["summary"], "site is down");
        assert_eq!(sent("slack", "opened")["text"], "🔴 site is down");
        let trigger = sent("pagerduty", "opened");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "rk");
        assert_eq!(trigger["payload"]["severity"], "critical");
        let resolve = sent("pagerduty", "resolved");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    }

    #[test]
    fn a_notice_for_other_channels_is_not_sent() {
        let only_c2 = notice("opened", vec!["c2".into()]);
        assert!(channel_body("c1", &spec("webhook"), &only_c2).is_none());
        assert!(channel_body("c2", &spec("webhook"), &only_c2).is_some());
        assert!(channel_body("c1", &spec("webhook"), &json!({"x": 1})).is_none());
    }
}
