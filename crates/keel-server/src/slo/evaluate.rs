//! The SLO evaluator (prober role): every [`EvaluatorContext::every`] it
//! computes each SLO's figures, sets the SLO gauges on `/metrics`, and opens or
//! resolves its burn-rate alerts — publishing a notice for each change. Any
//! number of replicas may evaluate: the store lets exactly one of them open (or
//! resolve) an alert, and only that one notifies.

use std::{sync::Arc, time::Duration};

use jiff::tz::TimeZone;
use keel_core::{clock::Clock, slo::budget::Severity};
use keel_store::{slos::StoredSlo, Store, StoreResult};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;
use tokio::sync::watch;

use super::report::SloFigures;
use keel_store::notice_outbox::NoticeEvent;

use crate::notices::Notices;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SloLabels {
    tenant: String,
    slo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BurnLabels {
    tenant: String,
    slo: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    tenant: String,
    slo: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    severity: String,
    event: String,
}

/// The SLOs' share of `/metrics` (SPEC §8: SLO budget remaining).
pub struct SloMetrics {
    /// Good and bad events counted by this process (`outcome` good|bad): what
    /// the Prometheus rules of `GET /v1/slos/{id}/prometheus-rules` read.
    events: Family<EventLabels, Counter>,
    remaining: Family<SloLabels, Gauge<f64, AtomicU64>>,
    burn: Family<BurnLabels, Gauge<f64, AtomicU64>>,
    alerts: Family<AlertLabels, Counter>,
}

impl SloMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            events: Family::default(),
            remaining: Family::default(),
            burn: Family::default(),
            alerts: Family::default(),
        };
        registry.register(
            "keel_slo_events",
            "SLI events counted by this process, by tenant, SLO name and outcome (good or bad)",
            metrics.events.clone(),
        );
        registry.register(
            "keel_slo_error_budget_remaining_percent",
            "Error budget left in each SLO's window, in percent (as last evaluated here)",
            metrics.remaining.clone(),
        );
        registry.register(
            "keel_slo_burn_rate",
            "Burn rate of each SLO's error budget over 5m, 30m, 1h, 6h, 1d and 3d",
            metrics.burn.clone(),
        );
        registry.register(
            "keel_slo_alerts",
            "Burn-rate alerts this process opened or resolved (severity page or ticket)",
            metrics.alerts.clone(),
        );
        metrics
    }

    /// One SLI event of `slo` (name) of `tenant`.
    pub fn count_event(&self, tenant: &str, slo: &str, good: bool) {
        self.events
            .get_or_create(&EventLabels {
                tenant: tenant.into(),
                slo: slo.into(),
                outcome: if good { "good" } else { "bad" },
            })
            .inc();
    }

    fn set(&self, slo: &StoredSlo, figures: &SloFigures) {
        let remaining = slo.spec.objective().remaining_percent(figures.window);
        self.remaining
            .get_or_create(&SloLabels {
                tenant: slo.tenant.as_str().into(),
                slo: slo.spec.name.clone(),
            })
            .set(remaining.to_f64());
        for (window, rate) in &figures.burn_rates {
            self.burn
                .get_or_create(&BurnLabels {
                    tenant: slo.tenant.as_str().into(),
                    slo: slo.spec.name.clone(),
                    window: (*window).into(),
                })
                .set(rate.to_f64());
        }
    }

    fn count(&self, severity: Severity, event: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                severity: severity.as_str().into(),
                event: event.into(),
            })
            .inc();
    }
}

#[derive(Clone)]
pub struct EvaluatorContext {
    pub store: Arc<dyn Store>,
    /// Told when an alert opens or resolves (the store has queued its notice).
    pub notices: Arc<Notices>,
    pub clock: Arc<dyn Clock>,
    pub time_zone: TimeZone,
    pub metrics: Arc<SloMetrics>,
    pub every: Duration,
    pub stop: watch::Receiver<bool>,
}

pub async fn run(mut context: EvaluatorContext) {
    let mut tick = tokio::time::interval(context.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = context.stop.changed() => return,
        }
        if let Err(e) = evaluate_all(&context).await {
            tracing::warn!(error = %e, "SLO evaluation: store unavailable; trying again");
        }
    }
}

/// One pass over every SLO.
pub async fn evaluate_all(context: &EvaluatorContext) -> StoreResult<()> {
    for slo in context.store.all_slos().await? {
        evaluate(context, &slo).await?;
    }
    Ok(())
}

async fn evaluate(context: &EvaluatorContext, slo: &StoredSlo) -> StoreResult<()> {
    let now = context.clock.now();
    let store = &*context.store;
    let figures = SloFigures::compute(store, slo, now, &context.time_zone).await?;
    context.metrics.set(slo, &figures);
    // Only a change is written: most passes find the alerts as they were.
    let open: Vec<Severity> = store
        .slo_alerts(&slo.tenant, &slo.id, 4)
        .await?
        .into_iter()
        .filter(|a| a.resolved_at.is_none())
        .map(|a| a.severity)
        .collect();
    for severity in [Severity::Page, Severity::Ticket] {
        let firing = figures.firing.iter().find(|(s, _)| *s == severity);
        let changed = match (firing, open.contains(&severity)) {
            (Some((_, rule)), false) => {
                store
                    .open_slo_alert(&slo.tenant, &slo.id, severity, &rule.windows(), now)
                    .await?
            }
            (None, true) => {
                store
                    .resolve_slo_alert(&slo.tenant, &slo.id, severity, now)
                    .await?
            }
            _ => None,
        };
        if let Some(alert) = changed {
            let event = match alert.resolved_at {
                None => NoticeEvent::Opened,
                Some(_) => NoticeEvent::Resolved,
            };
            context.metrics.count(severity, event.as_str());
            tracing::info!(slo = %slo.spec.name, severity = severity.as_str(),
                event = event.as_str(), windows = %alert.windows, "SLO alert");
            context.notices.wake();
        }
    }
    Ok(())
}
