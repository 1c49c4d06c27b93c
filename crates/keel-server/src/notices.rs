//! Incident and SLO-alert notifications (SPEC §7) enter the bus here: each is
//! published to the tenant's `keel.notifications` topic, where every
//! notification channel has a subscription with a `notify` target
//! (`workers::notify`), so a notice survives restarts, is retried with backoff
//! and dead-lettered like any message, and each delivery attempt is recorded.
//!
//! The notice is published right after the store commits the change that
//! causes it; a process killed between the two (a window of milliseconds) loses
//! that notice. The dedup id (`incident:<id>:opened`, …) makes a repeated
//! publication harmless.

use keel_core::bus::BusName;
use keel_store::{
    bus::{Bus, OutgoingMessage},
    monitors::{Incident, IncidentChange},
    slos::SloAlert,
    TenantId,
};
use serde_json::{json, Map, Value};

pub const TOPIC: &str = "keel.notifications";

pub fn topic() -> BusName {
    BusName::parse(TOPIC, "/topic").expect("a valid topic name")
}

/// What a notice is about, for the channel formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `incident` or `slo_alert`.
    pub kind: &'static str,
    /// `opened` or `resolved`.
    pub event: &'static str,
    /// Names the incident or alert across its opening and resolution (the
    /// PagerDuty dedup key).
    pub key: String,
    pub summary: String,
    /// `critical` (incidents, pages) or `warning` (tickets).
    pub severity: &'static str,
    /// The channels the monitor or SLO lists; empty means all of the tenant's.
    pub channels: Vec<String>,
    pub detail: Value,
}

impl Notice {
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "event": self.event,
            "key": self.key,
            "summary": self.summary,
            "severity": self.severity,
            "channels": self.channels,
            "detail": self.detail,
        })
    }

    pub fn from_json(value: &Value) -> Option<Self> {
        let text = |k: &str| value.get(k).and_then(Value::as_str);
        let pick = |k: &str, options: &[&'static str]| {
            let v = text(k)?;
            options.iter().copied().find(|o| *o == v)
        };
        Some(Self {
            kind: pick("kind", &["incident", "slo_alert"])?,
            event: pick("event", &["opened", "resolved"])?,
            key: text("key")?.to_owned(),
            summary: text("summary")?.to_owned(),
            severity: pick("severity", &["critical", "error", "warning", "info"])?,
            channels: value
                .get("channels")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            detail: value.get("detail").cloned().unwrap_or(Value::Null),
        })
    }

    /// An incident opened or resolved on `monitor_name`.
    pub fn incident(change: &IncidentChange, monitor_name: &str) -> (TenantId, Self) {
        let (tenant, incident, event) = match change {
            IncidentChange::Opened { tenant, incident } => (tenant, incident, "opened"),
            IncidentChange::Resolved { tenant, incident } => (tenant, incident, "resolved"),
        };
        let summary = match event {
            "opened" => format!(
                "{monitor_name} is down: {}",
                incident.cause.as_deref().unwrap_or("checks failing")
            ),
            _ => format!("{monitor_name} is up again"),
        };
        (
            tenant.clone(),
            Self {
                kind: "incident",
                event,
                key: format!("keel-incident-{}", incident.id),
                summary,
                severity: "critical",
                channels: Vec::new(),
                detail: incident_json(incident, monitor_name),
            },
        )
    }

    /// An SLO alert opened or resolved.
    pub fn slo_alert(alert: &SloAlert, slo_name: &str, channels: &[String]) -> Self {
        let (event, summary) = match alert.resolved_at {
            None => (
                "opened",
                format!(
                    "SLO {slo_name}: error budget burning too fast ({} over {})",
                    alert.severity.as_str(),
                    alert.windows
                ),
            ),
            Some(_) => (
                "resolved",
                format!("SLO {slo_name}: burn rate back to normal"),
            ),
        };
        Self {
            kind: "slo_alert",
            event,
            key: format!("keel-slo-alert-{}", alert.id),
            summary,
            severity: match alert.severity {
                keel_core::slo::budget::Severity::Page => "critical",
                keel_core::slo::budget::Severity::Ticket => "warning",
            },
            channels: channels.to_vec(),
            detail: json!({
                "alert": alert,
                "slo": {"id": alert.slo_id, "name": slo_name},
            }),
        }
    }
}

fn incident_json(incident: &Incident, monitor_name: &str) -> Value {
    json!({
        "incident": incident,
        "monitor": {"id": incident.monitor_id, "name": monitor_name},
    })
}

/// Publishes a notice to the tenant's notification topic.
pub async fn publish(bus: &dyn Bus, tenant: &TenantId, notice: &Notice) {
    let mut attributes = Map::new();
    attributes.insert("kind".into(), notice.kind.into());
    attributes.insert("event".into(), notice.event.into());
    let message = OutgoingMessage {
        body: notice.to_json(),
        attributes,
        dedup_id: Some(format!("{}:{}", notice.key, notice.event)),
    };
    let topic = topic();
    let published = async {
        bus.ensure_topic(tenant, &topic).await?;
        bus.publish(tenant, &topic, vec![message]).await
    };
    if let Err(e) = published.await {
        tracing::error!(error = %e, tenant = %tenant.as_str(), notice = %notice.key,
            "notification could not be published");
    }
}
