//! Every limit that protects Keel from slow, abusive or greedy clients, in one
//! place (see `SECURITY.md` for the threat each one answers).
//!
//! Each field is a flat option: `keel.toml` key = field name, environment variable
//! = `KEEL_` + the name in capitals. The binary layers them generically, so adding a
//! field here is all it takes to make it configurable and listed by `keel config`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    // --- connections (SPEC §11: slow or abusive clients cannot hold the server) ---
    /// A connection must deliver a complete request head within this time of the
    /// server starting to wait for one (its first byte counts as the start).
    pub header_read_timeout_ms: u64,
    /// A request body must arrive whole within this time of its head (408 after).
    pub body_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest request target (path and query) accepted; longer → 414.
    pub max_uri_bytes: usize,
    /// Most request header bytes (names and values) accepted; more → 431.
    pub max_header_bytes: usize,
    /// Most request header fields accepted; more → 431.
    pub max_headers: usize,

    // --- logins (password hashing is memory-hard by design) ---
    /// Password hashes computed at once (0: one per CPU core); more → 429.
    pub password_hashes_in_flight: usize,
    /// Failed logins allowed per client address per minute (the bucket's size too).
    pub login_failures_per_minute_per_address: u32,
    /// Failed logins allowed per account email per minute.
    pub login_failures_per_minute_per_email: u32,

    // --- tenants (one tenant cannot starve another) ---
    /// Requests per second per tenant, over all its keys (token bucket).
    pub tenant_rate_limit_per_second: f64,
    pub tenant_rate_limit_burst: f64,
    /// Live keys per tenant.
    pub max_keys_per_tenant: u64,
    /// Topics per tenant.
    pub max_topics_per_tenant: u64,
    /// Subscriptions per tenant, over all its topics.
    pub max_subscriptions_per_tenant: u64,
    /// Subscriptions with a webhook target per tenant.
    pub max_webhooks_per_tenant: u64,
    /// Bytes one publish call may write in all: each message's size times the
    /// number of subscriptions it is copied to.
    pub max_fanout_bytes_per_publish: u64,
    /// Such bytes per second per tenant, over all its publishes (429 past it).
    pub fanout_bytes_per_second_per_tenant: u64,

    // --- outbound calls (webhooks) ---
    /// Addresses webhooks may reach although they are internal: CIDRs
    /// (`10.0.0.0/8`, `::1/128`) or host names. Empty: only public addresses.
    pub webhook_allow: Vec<String>,
    /// Allow `http://` webhook URLs (default: `https://` only).
    pub webhook_allow_http: bool,
    /// Outbound webhook calls in flight at once, over all tenants.
    pub outbound_max_in_flight: usize,
    /// Outbound webhook calls in flight at once for one tenant.
    pub outbound_max_in_flight_per_tenant: usize,

    // --- probes (monitors) ---
    /// Addresses monitors may check although they are internal, as for
    /// `webhook_allow`. Empty: only public addresses, so a tenant's monitor
    /// cannot map the network Keel runs in.
    pub probe_allow: Vec<String>,
    /// Checks running at once in one prober process.
    pub probe_max_in_flight: usize,

    // --- objects ---
    /// Largest object an upload may store; larger → 413 (SPEC §6: 5 GiB).
    pub object_max_bytes: u64,

    // --- telemetry ---
    /// Largest telemetry request body, counted after gzip decompression (413 past it).
    pub telemetry_max_bytes: u64,
    /// Largest object `telemetry-import` reads (a larger one is dead-lettered).
    pub telemetry_import_max_bytes: u64,
    /// Days a tenant's log lines and metric points are kept before pruning.
    pub telemetry_retention_days: u64,
    /// Most points one metric query may aggregate (400 past it: narrow the query).
    pub telemetry_query_max_points: u64,

    // --- observability ---
    /// How often per-queue gauges for `/metrics` are sampled (a scrape never scans).
    pub queue_stats_interval_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            password_hashes_in_flight: 0,
            login_failures_per_minute_per_address: 20,
            login_failures_per_minute_per_email: 10,
            tenant_rate_limit_per_second: 5_000.0,
            tenant_rate_limit_burst: 10_000.0,
            max_keys_per_tenant: 100,
            max_topics_per_tenant: 1_000,
            max_subscriptions_per_tenant: 1_000,
            max_webhooks_per_tenant: 50,
            max_fanout_bytes_per_publish: 1024 * 1024,
            fanout_bytes_per_second_per_tenant: 4 * 1024 * 1024,
            webhook_allow: Vec::new(),
            webhook_allow_http: false,
            outbound_max_in_flight: 256,
            outbound_max_in_flight_per_tenant: 32,
            probe_allow: Vec::new(),
            probe_max_in_flight: 512,
            object_max_bytes: 5 * 1024 * 1024 * 1024,
            telemetry_max_bytes: 16 * 1024 * 1024,
            telemetry_import_max_bytes: 64 * 1024 * 1024,
            telemetry_retention_days: 7,
            telemetry_query_max_points: 1_000_000,
            queue_stats_interval_ms: 10_000,
        }
    }
}

impl Limits {
    /// Checks the values make sense together; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_uri_bytes", self.max_uri_bytes as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("max_headers", self.max_headers as u64),
            (
                "login_failures_per_minute_per_address",
                u64::from(self.login_failures_per_minute_per_address),
            ),
            (
                "login_failures_per_minute_per_email",
                u64::from(self.login_failures_per_minute_per_email),
            ),
            ("outbound_max_in_flight", self.outbound_max_in_flight as u64),
            (
                "outbound_max_in_flight_per_tenant",
                self.outbound_max_in_flight_per_tenant as u64,
            ),
            ("queue_stats_interval_ms", self.queue_stats_interval_ms),
            ("object_max_bytes", self.object_max_bytes),
            ("telemetry_max_bytes", self.telemetry_max_bytes),
            (
                "telemetry_import_max_bytes",
                self.telemetry_import_max_bytes,
            ),
            ("telemetry_retention_days", self.telemetry_retention_days),
            (
                "telemetry_query_max_points",
                self.telemetry_query_max_points,
            ),
            (
                "fanout_bytes_per_second_per_tenant",
                self.fanout_bytes_per_second_per_tenant,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be greater than 0"));
        }
        if !(self.tenant_rate_limit_per_second > 0.0 && self.tenant_rate_limit_burst >= 1.0) {
            return Err(
                "tenant_rate_limit_per_second must be > 0 and tenant_rate_limit_burst ≥ 1".into(),
            );
        }
        keel_core::outbound::AddressPolicy::parse(&self.webhook_allow)?;
        keel_core::outbound::AddressPolicy::parse(&self.probe_allow)?;
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// Concurrent password hashes: the configured number, or one per core.
    pub fn hashing_permits(&self) -> usize {
        match self.password_hashes_in_flight {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The store's share: counts it enforces atomically with the writes they limit.
    pub fn store_quotas(&self) -> keel_store::Quotas {
        keel_store::Quotas {
            keys_per_tenant: self.max_keys_per_tenant,
            topics_per_tenant: self.max_topics_per_tenant,
            subscriptions_per_tenant: self.max_subscriptions_per_tenant,
            webhooks_per_tenant: self.max_webhooks_per_tenant,
            fanout_bytes_per_publish: self.max_fanout_bytes_per_publish,
            fanout_bytes_per_second: self.fanout_bytes_per_second_per_tenant,
        }
    }
}
