//! Incident and SLO-alert notifications (SPEC §7) enter the bus here: each is
//! published to the tenant's `keel.notifications` topic, where every
//! notification channel has a subscription with a `notify` target
//! (`workers::notify`), so a notice survives restarts, is retried with backoff
//! and dead-lettered like any message, and each delivery attempt is recorded.
//!
//! None is lost between the change and the bus: the store queues a notice in
//! the transaction that opens or resolves the incident or alert
//! (`keel_store::notice_outbox`), and [`Notices::relay`], running in every
//! process, publishes what is queued and then removes it. The dedup id
//! (`keel-incident-<id>:opened`, …) makes a second publication after a crash
//! between the two harmless.

use std::{sync::Arc, time::Duration};

use keel_core::bus::BusName;
use keel_store::{
    bus::{Bus, OutgoingMessage},
    monitors::{Incident, IncidentChange},
    notice_outbox::{NoticeEvent, NoticeSubject, PendingNotice},
    slos::SloAlert,
    Store, StoreResult, TenantId,
};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

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
    pub fn slo_alert(
        alert: &SloAlert,
        event: NoticeEvent,
        slo_name: &str,
        channels: &[String],
    ) -> Self {
        let (event, summary) = match event {
            NoticeEvent::Opened => (
                "opened",
                format!(
                    "SLO {slo_name}: error budget burning too fast ({} over {})",
                    alert.severity.as_str(),
                    alert.windows
                ),
            ),
            NoticeEvent::Resolved => (
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
async fn publish(bus: &dyn Bus, tenant: &TenantId, notice: &Notice) -> StoreResult<()> {
    let mut attributes = Map::new();
    attributes.insert("kind".into(), notice.kind.into());
    attributes.insert("event".into(), notice.event.into());
    let message = OutgoingMessage {
        body: notice.to_json(),
        attributes,
        dedup_id: Some(format!("{}:{}", notice.key, notice.event)),
    };
    let topic = topic();
    bus.ensure_topic(tenant, &topic).await?;
    bus.publish(tenant, &topic, vec![message]).await.map(drop)
}

/// Notices claimed at a time.
const BATCH: u32 = 100;
/// A claimed notice another relay may take once this runs out.
const LEASE: Duration = Duration::from_secs(30);
/// How often a relay looks for notices queued by other processes.
const RELAY_EVERY: Duration = Duration::from_secs(2);

/// Publishes the notices the store has queued.
pub struct Notices {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    queued: Notify,
}

impl Notices {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new(Self {
            store,
            bus,
            queued: Notify::new(),
        })
    }

    /// A change that queued a notice has committed in this process: publish
    /// now rather than at the next look.
    pub fn wake(&self) {
        self.queued.notify_one();
    }

    /// Publishes queued notices until `stop` turns true.
    pub async fn relay(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.relay_round().await {
                tracing::warn!(error = %e, "notices: publishing failed; retrying");
            }
            tokio::select! {
                _ = self.queued.notified() => {}
                _ = tokio::time::sleep(RELAY_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Publishes what is queued, a batch at a time, until nothing is left or
    /// nothing could be published.
    pub async fn relay_round(&self) -> StoreResult<()> {
        // A subject whose notice failed keeps its later ones back too, so an
        // incident's resolution is not told before its opening.
        let mut held = std::collections::HashSet::new();
        loop {
            let pending = self.store.claim_notices(BATCH, LEASE).await?;
            if pending.is_empty() {
                return Ok(());
            }
            let mut done = Vec::with_capacity(pending.len());
            for entry in &pending {
                if held.contains(&entry.subject_id) {
                    continue;
                }
                match self.publish_pending(entry).await {
                    Ok(()) => done.push(entry.id),
                    // It stays leased and is tried again once the lease ends.
                    Err(e) => {
                        tracing::warn!(error = %e, tenant = %entry.tenant,
                            subject = %entry.subject_id, "notice not published yet");
                        held.insert(entry.subject_id.clone());
                    }
                }
            }
            let progressed = !done.is_empty();
            self.store.finish_notices(done).await?;
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Builds the notice from the incident or alert as stored now (its monitor
    /// or SLO gives the name and channels) and publishes it. A subject deleted
    /// since (with its monitor or SLO) has nobody left to tell.
    async fn publish_pending(&self, entry: &PendingNotice) -> StoreResult<()> {
        let tenant = &entry.tenant;
        let notice = match entry.subject {
            NoticeSubject::Incident => {
                let Some(incident) = self.store.incident(tenant, &entry.subject_id).await? else {
                    return Ok(());
                };
                let monitor = self.store.monitor(tenant, &incident.monitor_id).await?;
                let name = monitor
                    .as_ref()
                    .map_or(incident.monitor_id.clone(), |m| m.spec.name.clone());
                let channels = monitor.map(|m| m.spec.channels).unwrap_or_default();
                let change = match entry.event {
                    NoticeEvent::Opened => IncidentChange::Opened {
                        tenant: tenant.clone(),
                        incident,
                    },
                    NoticeEvent::Resolved => IncidentChange::Resolved {
                        tenant: tenant.clone(),
                        incident,
                    },
                };
                let (_, mut notice) = Notice::incident(&change, &name);
                notice.channels = channels;
                notice
            }
            NoticeSubject::SloAlert => {
                let Some(alert) = self.store.slo_alert(tenant, &entry.subject_id).await? else {
                    return Ok(());
                };
                let slo = self.store.slo(tenant, &alert.slo_id).await?;
                let (name, channels) = slo.map_or((alert.slo_id.clone(), Vec::new()), |s| {
                    (s.spec.name, s.spec.channels)
                });
                Notice::slo_alert(&alert, entry.event, &name, &channels)
            }
        };
        publish(&*self.bus, tenant, &notice).await
    }
}
