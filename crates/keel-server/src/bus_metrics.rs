//! The bus's share of `/metrics` (SPEC §8): message counts, per-queue gauges, and
//! built-in worker outcomes and latency.
//!
//! Queue gauges come from a sample a background task takes every
//! `queue_stats_interval_ms` (see `AppState`), never from a scan per scrape. They
//! are rendered per queue — labelled with tenant, topic and subscription — only for
//! an operator key; an anonymous scrape sees the same gauges summed over every
//! queue, so public metrics name no tenant and no topic.

use prometheus_client::{
    encoding::{text::encode_registry, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::histograms::latency_histogram;

/// The bus's counters (SPEC §8): published, delivered, acked, dead-lettered, and
/// built-in worker outcomes and latency per target.
pub struct BusMetrics {
    queue_depth: Family<QueueLabels, Gauge>,
    queue_in_flight: Family<QueueLabels, Gauge>,
    queue_oldest_age: Family<QueueLabels, Gauge>,
    queue_dead_letters: Family<QueueLabels, Gauge>,
    /// The per-queue families above (operator scrapes).
    queue_detail: Registry,
    /// The same gauges summed over every queue (anonymous scrapes); the oldest
    /// age is the maximum.
    queue_totals: Registry,
    totals: [Gauge; 4],
    published: Counter,
    delivered: Counter,
    acked: Counter,
    dead_lettered: Counter,
    outcomes: Family<WorkerLabels, Counter>,
    latency: Family<TargetLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    target: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    topic: String,
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

impl BusMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let mut metrics = Self {
            queue_depth: Family::default(),
            queue_in_flight: Family::default(),
            queue_oldest_age: Family::default(),
            queue_dead_letters: Family::default(),
            queue_detail: Registry::default(),
            queue_totals: Registry::default(),
            totals: Default::default(),
            published: Counter::default(),
            delivered: Counter::default(),
            acked: Counter::default(),
            dead_lettered: Counter::default(),
            outcomes: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        for (i, (name, help, family)) in [
            (
                "keel_queue_depth",
                "Messages visible in a subscription's queue",
                metrics.queue_depth.clone(),
            ),
            (
                "keel_queue_in_flight",
                "Messages received and not yet acked",
                metrics.queue_in_flight.clone(),
            ),
            (
                "keel_queue_oldest_age_seconds",
                "Age of the oldest queued message",
                metrics.queue_oldest_age.clone(),
            ),
            (
                "keel_queue_dead_letters",
                "Messages in a subscription's dead-letter queue",
                metrics.queue_dead_letters.clone(),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            metrics.queue_detail.register(name, help, family);
            let total = metrics.totals[i].clone();
            metrics
                .queue_totals
                .register(name, format!("{help} (all queues)"), total);
        }
        registry.register(
            "keel_bus_published",
            "Messages accepted by publish",
            metrics.published.clone(),
        );
        registry.register(
            "keel_bus_delivered",
            "Messages handed to consumers and built-in targets",
            metrics.delivered.clone(),
        );
        registry.register(
            "keel_bus_acked",
            "Messages acknowledged",
            metrics.acked.clone(),
        );
        registry.register(
            "keel_bus_dead_lettered",
            "Messages moved to a dead-letter queue by a built-in target",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "keel_worker_outcomes",
            "Built-in target deliveries by target and outcome",
            metrics.outcomes.clone(),
        );
        registry.register(
            "keel_worker_duration_seconds",
            "Built-in target delivery latency by target",
            metrics.latency.clone(),
        );
        metrics
    }

    /// Replaces the per-queue gauges with a fresh reading (queues that emptied
    /// disappear rather than keep their last value).
    pub fn set_queues(
        &self,
        queues: &[(
            keel_store::TenantId,
            String,
            String,
            keel_store::bus::QueueStats,
        )],
    ) {
        for family in [
            &self.queue_depth,
            &self.queue_in_flight,
            &self.queue_oldest_age,
            &self.queue_dead_letters,
        ] {
            family.clear();
        }
        let sum = |f: fn(&keel_store::bus::QueueStats) -> u64| -> i64 {
            queues.iter().map(|(_, _, _, s)| f(s) as i64).sum()
        };
        self.totals[0].set(sum(|s| s.depth));
        self.totals[1].set(sum(|s| s.in_flight));
        self.totals[2].set(
            queues
                .iter()
                .map(|(_, _, _, s)| s.oldest_age_s as i64)
                .max()
                .unwrap_or(0),
        );
        self.totals[3].set(sum(|s| s.dlq_depth));
        for (tenant, topic, subscription, stats) in queues {
            let labels = QueueLabels {
                tenant: tenant.to_string(),
                topic: topic.clone(),
                subscription: subscription.clone(),
            };
            self.queue_depth
                .get_or_create(&labels)
                .set(stats.depth as i64);
            self.queue_in_flight
                .get_or_create(&labels)
                .set(stats.in_flight as i64);
            self.queue_oldest_age
                .get_or_create(&labels)
                .set(stats.oldest_age_s as i64);
            self.queue_dead_letters
                .get_or_create(&labels)
                .set(stats.dlq_depth as i64);
        }
    }

    /// Appends the queue gauges: per queue when `per_queue`, else summed.
    pub(crate) fn encode_queues(&self, out: &mut String, per_queue: bool) -> std::fmt::Result {
        let registry = if per_queue {
            &self.queue_detail
        } else {
            &self.queue_totals
        };
        encode_registry(out, registry)
    }

    /// Totals for `/v1/stats/overview`.
    pub fn totals(&self) -> BusTotals {
        BusTotals {
            published: self.published.get(),
            delivered: self.delivered.get(),
            acked: self.acked.get(),
            dead_lettered: self.dead_lettered.get(),
        }
    }

    pub fn published(&self, n: u64) {
        self.published.inc_by(n);
    }

    pub fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    pub fn acked(&self, n: u64) {
        self.acked.inc_by(n);
    }

    /// `n` deliveries to a built-in `target` ended in `outcome` after `elapsed`.
    pub fn worker_outcome(
        &self,
        target: &str,
        outcome: &str,
        n: u64,
        elapsed: std::time::Duration,
    ) {
        self.outcomes
            .get_or_create(&WorkerLabels {
                target: target.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
        self.latency
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.delivered.inc_by(n);
        match outcome {
            "delivered" => {
                self.acked.inc_by(n);
            }
            "dead-lettered" => {
                self.dead_lettered.inc_by(n);
            }
            _ => {}
        }
    }
}

/// Bus message counts since this process started.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusTotals {
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
}
