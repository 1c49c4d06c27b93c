//! Request SLIs (SPEC §7): every request the edge finishes is matched against
//! the request SLOs (route pattern, owning tenant) and counted good or bad in
//! memory; a flusher adds the counts to the store every [`FLUSH_EVERY`], where
//! replicas' counts for the same minute add up.
//!
//! Which requests count for an SLO of tenant T: those made with T's keys to a
//! matching path, and those made with no key at all (public routes such as
//! `/hello/*`, whoever calls them). Counts still in memory when the process is
//! killed with SIGKILL are lost (at most one flush interval of them; a graceful
//! stop flushes); they are measurements, not accepted data.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use jiff::Timestamp;
use keel_core::slo::{
    budget::Counts,
    expr::{GoodExpr, RequestOutcome, RoutePattern},
};
use keel_store::{
    slos::{SloCount, MINUTE_US},
    Store, TenantId,
};
use tokio::sync::watch;

use super::evaluate::SloMetrics;

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How stale the list of request SLOs may get on a replica that did not make
/// the change.
pub const RELIST_EVERY: Duration = Duration::from_secs(5);

struct RequestSli {
    tenant: TenantId,
    id: String,
    name: String,
    route: RoutePattern,
    good: GoodExpr,
}

type Pending = HashMap<(TenantId, String, i64), Counts>;
/// (tenant, monitor id) → the names of the SLOs on that monitor.
type MonitorSlos = HashMap<(TenantId, String), Vec<String>>;

pub struct RequestSlis {
    store: Arc<dyn Store>,
    metrics: Arc<SloMetrics>,
    slis: RwLock<Arc<Vec<RequestSli>>>,
    /// (tenant, monitor id) → names of the SLOs on that monitor, for the event
    /// counters on `/metrics` (the store counts the events themselves).
    monitor_slos: RwLock<Arc<MonitorSlos>>,
    pending: Mutex<Pending>,
}

impl RequestSlis {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<SloMetrics>) -> Self {
        Self {
            store,
            metrics,
            slis: RwLock::new(Arc::new(Vec::new())),
            monitor_slos: RwLock::new(Arc::new(HashMap::new())),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one finished request; nearly free when no request SLO exists.
    pub fn observe(
        &self,
        path: &str,
        caller: Option<&TenantId>,
        status: u16,
        latency_micros: u64,
        now: Timestamp,
    ) {
        let slis = self.slis.read().unwrap_or_else(|e| e.into_inner()).clone();
        if slis.is_empty() {
            return;
        }
        let outcome = RequestOutcome {
            status,
            latency_ms: latency_micros as f64 / 1000.0,
        };
        let minute = now.as_microsecond().div_euclid(MINUTE_US) * MINUTE_US;
        for sli in slis.iter() {
            let counted = caller.is_none_or(|t| *t == sli.tenant) && sli.route.matches(path);
            if !counted {
                continue;
            }
            let good = sli.good.is_good(outcome);
            self.metrics
                .count_event(sli.tenant.as_str(), &sli.name, good);
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let entry = pending
                .entry((sli.tenant.clone(), sli.id.clone(), minute))
                .or_default();
            entry.total += 1;
            entry.good += u64::from(good);
        }
    }

    /// Counts a recorded check on `/metrics` for the SLOs on its monitor.
    pub fn count_check(&self, tenant: &TenantId, monitor_id: &str, up: bool) {
        let map = self
            .monitor_slos
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for name in map
            .get(&(tenant.clone(), monitor_id.to_owned()))
            .into_iter()
            .flatten()
        {
            self.metrics.count_event(tenant.as_str(), name, up);
        }
    }

    /// Reloads the SLOs from the store.
    pub async fn relist(&self) {
        match self.store.all_slos().await {
            Ok(all) => {
                let mut on_monitors = MonitorSlos::new();
                for slo in &all {
                    if let Some(monitor) = slo.spec.monitor() {
                        on_monitors
                            .entry((slo.tenant.clone(), monitor.to_owned()))
                            .or_default()
                            .push(slo.spec.name.clone());
                    }
                }
                let slis: Vec<RequestSli> = all
                    .into_iter()
                    .filter_map(|slo| {
                        let (route, good) = slo.spec.request_sli()?;
                        Some(RequestSli {
                            tenant: slo.tenant,
                            id: slo.id,
                            name: slo.spec.name,
                            route,
                            good,
                        })
                    })
                    .collect();
                *self.slis.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(slis);
                *self.monitor_slos.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(on_monitors);
            }
            Err(e) => tracing::debug!(error = %e, "request SLOs: cannot list them"),
        }
    }

    /// Writes the counts taken so far; on failure they are kept for the next try.
    pub async fn flush(&self) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        let counts: Vec<SloCount> = taken
            .iter()
            .map(|((tenant, slo_id, minute), counts)| SloCount {
                tenant: tenant.clone(),
                slo_id: slo_id.clone(),
                minute: *minute,
                counts: *counts,
            })
            .collect();
        if let Err(e) = self.store.add_slo_counts(counts).await {
            tracing::warn!(error = %e, "request SLOs: counts not written; kept for the next flush");
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (key, counts) in taken {
                pending.entry(key).or_default().add(counts);
            }
        }
    }
}

/// Keeps the list fresh and flushes counts until `stop`, then flushes once more.
pub async fn run(slis: Arc<RequestSlis>, mut stop: watch::Receiver<bool>) {
    slis.relist().await;
    let mut relist = tokio::time::interval(RELIST_EVERY);
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            _ = relist.tick() => slis.relist().await,
            _ = flush.tick() => slis.flush().await,
            _ = stop.changed() => break,
        }
    }
    slis.flush().await;
}
