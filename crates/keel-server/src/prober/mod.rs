//! The prober role (SPEC §7, `--roles prober`): runs every monitor's check once
//! per interval, shared by any number of prober replicas.
//!
//! A scheduler loop claims, from the store, the checks due within the next
//! [`LOOKAHEAD`] — each under a lease held by this process until its slot, its
//! timeout and [`LEASE_MARGIN`] have passed — then starts each at its slot (a
//! per-monitor phase spreads them over the interval), at most
//! `probe_max_in_flight` at once. A recorder writes the results in batches; the
//! store drops a result for a slot that was recorded already, so a prober that
//! lost its lease (paused, partitioned) never double-counts. When a prober
//! dies, its leases lapse and the next claim of another prober takes its
//! monitors: within one interval, as long as the timeout and the margin fit in
//! it. On shutdown it stops claiming, finishes what it started and hands the
//! rest back at once.

mod checks;
pub mod maintenance;

use std::{sync::Arc, time::Duration};

use keel_core::{clock::Clock, uptime::next_slot};
use keel_store::{
    monitors::{CheckResult, DueCheck, IncidentChange, MonitorRetention},
    Store,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tokio::{
    sync::{mpsc, watch, Semaphore},
    task::JoinHandle,
};

pub use checks::{Outcome, Probes};
pub use maintenance::MaintenanceWindows;

/// How far ahead checks are claimed: a check starts at its slot, not when the
/// claim happened to run.
const LOOKAHEAD: Duration = Duration::from_secs(1);
/// How often the scheduler looks for due checks when the last claim was not full.
const CLAIM_EVERY: Duration = Duration::from_millis(200);
/// A lease lasts the slot, the check's timeout and this.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// Most checks claimed at once.
const CLAIM_LIMIT: u32 = 1_000;
/// Most results written in one store call.
const RECORD_BATCH: usize = 500;

/// Everything the prober role uses.
#[derive(Clone)]
pub struct ProberContext {
    pub store: Arc<dyn Store>,
    /// Told when incidents open or resolve (the store has queued their notices).
    pub notices: Arc<crate::notices::Notices>,
    /// Counts monitor SLI events on `/metrics`.
    pub slo_counters: Arc<crate::slo::requests::RequestSlis>,
    /// Checks inside one of these count as neither up nor down.
    pub maintenance: Arc<MaintenanceWindows>,
    pub clock: Arc<dyn Clock>,
    pub probes: Arc<Probes>,
    pub metrics: Arc<ProbeMetrics>,
    pub max_in_flight: usize,
    pub stop: watch::Receiver<bool>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: String,
    /// `up` or `down`.
    outcome: String,
}

/// The prober's share of `/metrics`.
pub struct ProbeMetrics {
    results: Family<ResultLabels, Counter>,
    lateness: Histogram,
    incidents: Family<ResultLabels, Counter>,
}

impl ProbeMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            results: Family::default(),
            lateness: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            incidents: Family::default(),
        };
        registry.register(
            "keel_probe_results",
            "Checks run by this prober, by monitor kind and outcome",
            metrics.results.clone(),
        );
        registry.register(
            "keel_probe_start_lateness_seconds",
            "How long after its slot each check started",
            metrics.lateness.clone(),
        );
        registry.register(
            "keel_incidents",
            "Incidents opened or resolved by results this process recorded (outcome = opened or resolved)",
            metrics.incidents.clone(),
        );
        metrics
    }

    fn count(&self, kind: &str, up: bool) {
        self.results
            .get_or_create(&ResultLabels {
                kind: kind.into(),
                outcome: if up { "up" } else { "down" }.into(),
            })
            .inc();
    }

    fn count_incidents(&self, changes: &[IncidentChange]) {
        for change in changes {
            let outcome = match change {
                IncidentChange::Opened { .. } => "opened",
                IncidentChange::Resolved { .. } => "resolved",
            };
            self.incidents
                .get_or_create(&ResultLabels {
                    kind: "monitor".into(),
                    outcome: outcome.into(),
                })
                .inc();
        }
    }
}

/// Starts the prober role; the task ends once `context.stop` turns true.
pub fn spawn(context: ProberContext) -> JoinHandle<()> {
    tokio::spawn(schedule(context))
}

/// Logs the incidents results opened or resolved and publishes a notice for
/// each (`crate::notices`), so the tenant's channels hear of them.
/// Logs incidents opened or resolved and has their notices (queued by the
/// store with the change) published.
pub fn announce(notices: &crate::notices::Notices, changes: &[IncidentChange]) {
    for change in changes {
        match change {
            IncidentChange::Opened { tenant, incident } => tracing::warn!(
                tenant = %tenant,
                monitor = %incident.monitor_id,
                incident = %incident.id,
                cause = incident.cause.as_deref().unwrap_or(""),
                "incident opened"
            ),
            IncidentChange::Resolved { tenant, incident } => tracing::info!(
                tenant = %tenant,
                monitor = %incident.monitor_id,
                incident = %incident.id,
                "incident resolved"
            ),
        }
    }
    if !changes.is_empty() {
        notices.wake();
    }
}

async fn schedule(context: ProberContext) {
    let prober = format!("prober-{}", uuid::Uuid::new_v4());
    let (results, results_rx) = mpsc::channel::<CheckResult>(RECORD_BATCH * 4);
    let recorder = tokio::spawn(record(
        context.store.clone(),
        context.notices.clone(),
        context.slo_counters.clone(),
        context.metrics.clone(),
        results_rx,
    ));
    let in_flight = Arc::new(Semaphore::new(context.max_in_flight.max(1)));
    let mut checks = tokio::task::JoinSet::new();
    let mut stop = context.stop.clone();
    while !*stop.borrow() {
        let horizon = context.clock.now().as_microsecond() + LOOKAHEAD.as_micros() as i64;
        let claimed = match context
            .store
            .claim_checks(
                &prober,
                horizon,
                LEASE_MARGIN.as_micros() as i64,
                CLAIM_LIMIT,
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "prober: cannot claim checks; retrying");
                Vec::new()
            }
        };
        let full = claimed.len() == CLAIM_LIMIT as usize;
        for due in claimed {
            checks.spawn(run_at_slot(
                context.clone(),
                due,
                in_flight.clone(),
                results.clone(),
            ));
        }
        while checks.try_join_next().is_some() {}
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(CLAIM_EVERY) => {}
                _ = stop.changed() => {}
            }
        }
    }
    // Finish what started; the recorder ends when the last sender is gone.
    while checks.join_next().await.is_some() {}
    drop(results);
    let _ = recorder.await;
    if let Err(e) = context.store.release_checks(&prober).await {
        tracing::warn!(error = %e, "prober: could not hand back its checks; their leases lapse");
    }
}

/// Waits for the check's slot, runs it and sends its result on.
async fn run_at_slot(
    context: ProberContext,
    due: DueCheck,
    in_flight: Arc<Semaphore>,
    results: mpsc::Sender<CheckResult>,
) {
    let wait_us = due.scheduled_at - context.clock.now().as_microsecond();
    if wait_us > 0 {
        tokio::time::sleep(Duration::from_micros(wait_us as u64)).await;
    }
    let Ok(_permit) = in_flight.acquire().await else {
        return;
    };
    let started = context.clock.now();
    let late_us = (started.as_microsecond() - due.scheduled_at).max(0);
    context.metrics.lateness.observe(late_us as f64 / 1e6);
    let outcome = context.probes.run(&due.spec, started).await;
    context.metrics.count(due.spec.kind.as_str(), outcome.up);
    let now = context.clock.now().as_microsecond();
    let maintenance = context
        .maintenance
        .covers(&due.tenant, &due.monitor_id, started);
    let result = CheckResult {
        tenant: due.tenant,
        monitor_id: due.monitor_id,
        scheduled_at: Some(due.scheduled_at),
        at: started,
        up: outcome.up,
        maintenance,
        latency_us: outcome.latency_us,
        status: outcome.status,
        failure: outcome.failure,
        // A check that started late (a dead prober's slot, taken over) leaves at
        // least half an interval before the next one, so takeovers never check
        // a monitor twice in quick succession.
        next_check_at: next_slot(
            due.scheduled_at,
            due.spec.interval_micros(),
            now.max(started.as_microsecond() + due.spec.interval_micros() / 2),
        ),
    };
    let _ = results.send(result).await;
}

/// Writes results in batches; a batch the store refuses is retried a few times,
/// then dropped (its slots' leases lapse and the checks run again).
async fn record(
    store: Arc<dyn Store>,
    notices: Arc<crate::notices::Notices>,
    slo_counters: Arc<crate::slo::requests::RequestSlis>,
    metrics: Arc<ProbeMetrics>,
    mut results: mpsc::Receiver<CheckResult>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while results.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut tries = 0;
        loop {
            match store.record_checks(batch.clone()).await {
                Ok(changes) => {
                    for r in batch.iter().filter(|r| !r.maintenance) {
                        slo_counters.count_check(&r.tenant, &r.monitor_id, r.up);
                    }
                    metrics.count_incidents(&changes);
                    announce(&notices, &changes);
                    break;
                }
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, "prober: cannot record results; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, dropped = batch.len(), "prober: results dropped");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Prunes monitor results and rollups past their retention, in small steps, once
/// a minute; replicas share the work.
pub async fn prune(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    retention: MonitorRetention,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match store
                .prune_monitor_data(clock.now(), retention, 1_000)
                .await
            {
                Ok(0) => break,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => {
                    tracing::debug!(error = %e, "monitor pruning: store unavailable");
                    break;
                }
            }
            if *stop.borrow() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}
