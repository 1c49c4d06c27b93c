//! What every handler shares: the store, the clock, the configuration and the
//! edge services (authentication, audit, telemetry, lifecycle).

use std::{
    ops::Deref,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use keel_core::{clock::Clock, cursor::CursorCodec};
use keel_store::{bus::Bus, cache::Cache, Backends, Store};

pub use crate::server_config::ServerConfig;
use crate::{
    audit::AuditSink, auth::Authenticator, cached_reads::CachedReads, extract::Paging,
    logins::LoginGuard, outbound::Outbound, request_log::RequestLog, telemetry::Telemetry,
};

pub struct Inner {
    pub store: Arc<dyn Store>,
    /// Uploads, deletes and their events (`crate::objects`).
    pub objects: Arc<crate::objects::Objects>,
    pub bus: Arc<dyn Bus>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    pub auth: Authenticator,
    pub audit: AuditSink,
    pub telemetry: Telemetry,
    pub request_log: RequestLog,
    pub cache: Arc<dyn Cache>,
    /// Collections, birthdays and keys read through the cache.
    pub reads: Arc<CachedReads>,
    /// Woken when this process's store target has written records.
    pub stored: Arc<tokio::sync::Notify>,
    pub outbound: Arc<Outbound>,
    pub logins: LoginGuard,
    /// Maintenance windows of every tenant, for marking checks.
    pub maintenance: Arc<crate::prober::MaintenanceWindows>,
    /// Publishes the incident and alert notices the store queues.
    pub notices: Arc<crate::notices::Notices>,
    /// Requests counted for request SLIs, flushed to the store by the api role.
    pub request_slis: Arc<crate::slo::requests::RequestSlis>,
    /// Seals pagination cursors; its key comes from the store on first use.
    cursors: tokio::sync::OnceCell<CursorCodec>,
    draining: AtomicBool,
    /// Turns true when draining starts; background roles watch it.
    stop: tokio::sync::watch::Sender<bool>,
}

/// Cheap to clone; handed to every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state and starts its background flushers (audit, key use) on the
    /// current tokio runtime.
    pub fn new(backends: Backends, clock: Arc<dyn Clock>, config: ServerConfig) -> Self {
        Self::with_request_log(backends, clock, config, RequestLog::off())
    }

    /// As [`AppState::new`], logging one line per request to `request_log`.
    pub fn with_request_log(
        Backends {
            store,
            bus,
            cache,
            blobs,
        }: Backends,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
        request_log: RequestLog,
    ) -> Self {
        let audit = AuditSink::start(store.clone());
        let telemetry = Telemetry::new(store.write_stats(), clock.clone());
        let reads = Arc::new(CachedReads::new(cache.clone(), telemetry.cache.clone()));
        let auth = Authenticator::new(store.clone(), reads.clone(), clock.clone(), &config);
        let outbound = Arc::new(Outbound::new(&config.limits));
        let logins = LoginGuard::new(&config.limits);
        let objects = Arc::new(crate::objects::Objects::new(
            store.clone(),
            blobs,
            clock.clone(),
        ));
        let request_slis = Arc::new(crate::slo::requests::RequestSlis::new(
            store.clone(),
            telemetry.slos.clone(),
        ));
        let maintenance = Arc::new(crate::prober::MaintenanceWindows::new(
            store.clone(),
            config.time_zone.clone(),
        ));
        let notices = crate::notices::Notices::new(store.clone(), bus.clone());
        let state = Self(Arc::new(Inner {
            notices,
            store,
            maintenance,
            objects,
            bus,
            clock,
            config,
            auth,
            audit,
            telemetry,
            request_log,
            cache,
            reads,
            stored: Arc::default(),
            outbound,
            logins,
            request_slis,
            cursors: tokio::sync::OnceCell::new(),
            draining: AtomicBool::new(false),
            stop: tokio::sync::watch::channel(false).0,
        }));
        state.auth.start_use_flusher();
        state.start_queue_sampler();
        state
    }

    /// Samples every queue's statistics for `/metrics` on a blocking thread every
    /// `queue_stats_interval_ms`, until the state is dropped: a scrape reads the
    /// last sample and never scans the queue table itself.
    fn start_queue_sampler(&self) {
        let weak = Arc::downgrade(&self.0);
        let every = Duration::from_millis(self.config.limits.queue_stats_interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let bus = inner.bus.clone();
                let runtime = tokio::runtime::Handle::current();
                let sample =
                    tokio::task::spawn_blocking(move || runtime.block_on(bus.all_queue_stats()))
                        .await;
                match sample {
                    Ok(Ok(queues)) => inner.telemetry.bus.set_queues(&queues),
                    Ok(Err(e)) => tracing::warn!(error = %e, "queue statistics unavailable"),
                    Err(e) => tracing::warn!(error = %e, "queue sampler failed"),
                }
            }
        });
    }

    /// Pagination for a listing in `scope` (the tenant and the listing): cursors
    /// in requests are opened, cursors in answers sealed.
    pub async fn paging(&self, scope: String) -> Result<Paging<'_>, crate::problem::ApiError> {
        let codec = self
            .cursors
            .get_or_try_init(|| async {
                self.store
                    .server_secret("pagination-cursors")
                    .await
                    .map(CursorCodec::new)
            })
            .await?;
        Ok(Paging { codec, scope })
    }

    /// What the worker role needs from this process: the ports, the outbound
    /// client, metrics and the stop signal — not the HTTP state.
    pub fn worker_context(&self) -> crate::workers::WorkerContext {
        crate::workers::WorkerContext {
            store: self.store.clone(),
            bus: self.bus.clone(),
            clock: self.clock.clone(),
            outbound: self.outbound.clone(),
            metrics: self.telemetry.bus.clone(),
            reads: self.reads.clone(),
            stored: self.stored.clone(),
            blobs: self.objects.blobs.clone(),
            ingest: self.telemetry.ingest.clone(),
            import_max_bytes: self.config.limits.telemetry_import_max_bytes,
            stop: self.stop_signal(),
        }
    }

    /// What the prober role needs from this process.
    pub fn prober_context(&self) -> crate::prober::ProberContext {
        crate::prober::ProberContext {
            store: self.store.clone(),
            notices: self.notices.clone(),
            slo_counters: self.request_slis.clone(),
            maintenance: self.maintenance.clone(),
            clock: self.clock.clone(),
            probes: Arc::new(crate::prober::Probes::new(&self.config.limits.probe_allow)),
            metrics: self.telemetry.probes.clone(),
            max_in_flight: self.config.limits.probe_max_in_flight,
            stop: self.stop_signal(),
        }
    }

    /// From now on `/readyz` answers 503 so load balancers stop sending traffic.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }

    /// Becomes true when draining starts.
    pub fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Writes out what is buffered (audit events, key last-use times); call after the
    /// server has stopped taking requests and before exit.
    pub async fn flush(&self) {
        self.audit.flush().await;
        self.auth.flush_uses().await;
        self.request_log.flush();
        self.request_slis.flush().await;
    }

    pub fn evaluator_context(&self) -> crate::slo::evaluate::EvaluatorContext {
        crate::slo::evaluate::EvaluatorContext {
            store: self.store.clone(),
            notices: self.notices.clone(),
            clock: self.clock.clone(),
            time_zone: self.config.time_zone.clone(),
            metrics: self.telemetry.slos.clone(),
            every: self.config.slo_evaluate_every,
            stop: self.stop_signal(),
        }
    }
}
