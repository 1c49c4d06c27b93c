//! Settings of the HTTP edge and the worker role, built by the binary from
//! `keel.toml` / `KEEL_*`.

use std::time::Duration;

use jiff::tz::TimeZone;

use crate::limits::Limits;

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
    /// How often the prober role evaluates SLOs and their burn-rate alerts.
    pub slo_evaluate_every: Duration,
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
            slo_evaluate_every: Duration::from_secs(30),
        }
    }
}
