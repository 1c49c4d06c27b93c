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

use jiff::tz::TimeZone;
use keel_core::{clock::Clock, cursor::CursorCodec};
use keel_store::Store;

use crate::{
    audit::AuditSink, auth::Authenticator, collection_reads::CollectionReads, extract::Paging,
    limits::Limits, logins::LoginGuard, outbound::Outbound, read_cache::ReadCache,
    request_log::RequestLog, telemetry::Telemetry,
};

/// Settings of the HTTP edge; the binary builds this from `keel.toml` / `KEEL_*`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// "Today" for the greeter is the date in this zone (SPEC §2).
    pub time_zone: TimeZone,
    /// Largest JSON request body accepted; larger → 413.
    pub body_limit_bytes: usize,
    /// Token bucket per key: sustained requests per second and burst size.
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: f64,
    /// `GET /metrics` without a key (otherwise it needs an `operator` key).
    pub metrics_public: bool,
    /// How long a cached read may be served (0 disables caching); bounds how stale
    /// a read can be after a write through another replica.
    pub read_cache_ttl: Duration,
    /// How long a verified key is trusted before it is read again; bounds how long
    /// a revocation on another replica takes to bite.
    pub key_cache_ttl: Duration,
    /// Timeouts, caps and quotas against slow, abusive and greedy clients.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            time_zone: TimeZone::UTC,
            body_limit_bytes: 1024 * 1024,
            rate_limit_per_second: 1000.0,
            rate_limit_burst: 2000.0,
            metrics_public: true,
            read_cache_ttl: Duration::from_secs(1),
            key_cache_ttl: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }
}

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    pub auth: Authenticator,
    pub audit: AuditSink,
    pub telemetry: Telemetry,
    pub request_log: RequestLog,
    /// `"<tenant>/<username>"` → date of birth (or `None`: no such user).
    pub greeter_cache: ReadCache<String, Option<jiff::civil::Date>>,
    pub collection_reads: CollectionReads,
    pub outbound: Outbound,
    pub logins: LoginGuard,
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
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ServerConfig) -> Self {
        Self::with_request_log(store, clock, config, RequestLog::off())
    }

    /// As [`AppState::new`], logging one line per request to `request_log`.
    pub fn with_request_log(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
        request_log: RequestLog,
    ) -> Self {
        let auth = Authenticator::new(store.clone(), clock.clone(), &config);
        let audit = AuditSink::start(store.clone());
        let telemetry = Telemetry::new(store.write_stats(), clock.clone());
        let greeter_cache = ReadCache::new(config.read_cache_ttl, 100_000);
        let collection_reads = CollectionReads::new(ReadCache::new(config.read_cache_ttl, 10_000));
        let outbound = Outbound::new(&config.limits);
        let logins = LoginGuard::new(&config.limits);
        let state = Self(Arc::new(Inner {
            store,
            clock,
            config,
            auth,
            audit,
            telemetry,
            request_log,
            greeter_cache,
            collection_reads,
            outbound,
            logins,
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
                let store = inner.store.clone();
                let runtime = tokio::runtime::Handle::current();
                let sample =
                    tokio::task::spawn_blocking(move || runtime.block_on(store.all_queue_stats()))
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
    }
}
