//! Keel's storage ports and adapters.
//!
//! Each capability is its own trait ([`TenantStore`], [`KeyStore`], [`AccountStore`],
//! [`GreeterStore`], [`CounterStore`], [`AuditStore`]), so a handler depends only on
//! what it uses; [`Store`] combines them for wiring. Adapters live in submodules —
//! [`sqlite`] now, PostgreSQL next — and only they know SQL.
//!
//! Every write an adapter acknowledges is durable (fsync'd) before the call returns.

pub mod bus;
pub mod cache;
pub mod channels;
pub mod collections;
pub mod connect;
pub mod fanout_budget;
pub mod maintenance;
pub mod monitors;
pub mod nats;
pub mod notice_outbox;
pub mod objects;
pub mod postgres;
mod routing;
pub mod sessions;
pub mod slos;
mod spec_record;
pub mod sqlite;
pub mod telemetry;
pub mod testing;
mod types;
pub mod wait;

pub use spec_record::SpecRecord;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use jiff::{civil::Date, Timestamp};
use keel_core::{
    apikey::SecretHash,
    counter::{CounterName, CounterValue},
    greeter::Username,
};

pub use connect::{connect, BackendSettings, PostgresOptions, StoreKind};
pub use types::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or cannot write right now (disk full, locked,
    /// connection refused). Callers answer 503 and retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write (e.g. an email already registered).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value the caller passed through from a client is unusable (e.g. a
    /// pagination cursor that this store never issued). Callers answer 400.
    #[error("invalid {field}: {why}")]
    InvalidInput { field: &'static str, why: String },
    /// The counter is at 2^63−1 and cannot hand out another value.
    #[error("counter exhausted")]
    CounterExhausted,
    /// The write would take the tenant past one of its [`Quotas`]; `quota` names
    /// it as the configuration does (without `max_`). Callers answer 403.
    #[error("quota {quota} ({limit}) reached")]
    QuotaExceeded { quota: &'static str, limit: u64 },
    /// The tenant is writing faster than `what` allows; callers answer 429.
    #[error("{what} exceeded; retry in {retry_after_s} s")]
    RateLimited {
        what: &'static str,
        retry_after_s: u64,
    },
    /// A bug or corrupt data: never caused by a client.
    #[error("store failure: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant>;
    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn create_key(&self, key: NewKey) -> StoreResult<StoredKey>;
    async fn key_by_prefix(&self, prefix: &str) -> StoreResult<Option<StoredKey>>;
    async fn list_keys(&self, tenant: &TenantId, page: PageRequest)
        -> StoreResult<Page<StoredKey>>;
    /// Revokes one of `tenant`'s keys; `false` when the tenant has no such live key.
    async fn revoke_key(&self, tenant: &TenantId, prefix: &str, at: Timestamp)
        -> StoreResult<bool>;
    /// Records when keys were last used; batched by the caller, so this is cheap.
    async fn record_key_use(&self, uses: Vec<(String, Timestamp)>) -> StoreResult<()>;
    /// Whether any live key has the `operator` scope (decides bootstrapping).
    async fn has_operator_key(&self) -> StoreResult<bool>;
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the account's tenant, the account and its first key in one durable
    /// write. [`StoreError::Conflict`] when the email is taken.
    async fn register_account(
        &self,
        email: &str,
        password_hash: &str,
        prefix: &str,
        secret_hash: SecretHash,
    ) -> StoreResult<(Account, StoredKey)>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
}

#[async_trait]
pub trait GreeterStore: Send + Sync {
    async fn save_birthday(
        &self,
        tenant: &TenantId,
        user: &Username,
        born: Date,
    ) -> StoreResult<()>;
    async fn birthday(&self, tenant: &TenantId, user: &Username) -> StoreResult<Option<Date>>;
}

#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Increments and returns the new value, durable before it returns. The first
    /// call on a counter returns 1.
    async fn next(&self, tenant: &TenantId, counter: &CounterName) -> StoreResult<i64>;
    /// The value without change; 0 before the first `next`.
    async fn current(&self, tenant: &TenantId, counter: &CounterName) -> StoreResult<i64>;
    async fn set_current(
        &self,
        tenant: &TenantId,
        counter: &CounterName,
        value: CounterValue,
    ) -> StoreResult<i64>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()>;
    /// Newest first.
    async fn list_audit(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>>;
}

/// Every capability of a store, as the binary wires it.
#[async_trait]
pub trait Store:
    TenantStore
    + KeyStore
    + AccountStore
    + GreeterStore
    + CounterStore
    + AuditStore
    + collections::CollectionStore
    + objects::ObjectIndex
    + telemetry::TelemetryStore
    + monitors::MonitorStore
    + slos::SloStore
    + channels::ChannelStore
    + maintenance::MaintenanceStore
    + notice_outbox::NoticeOutbox
    + sessions::SessionStore
{
    /// Cheap round trip proving the store can be read (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// A random 32-byte secret named `name`, made on first use and the same for
    /// every replica of this store from then on.
    async fn server_secret(&self, name: &str) -> StoreResult<[u8; 32]>;
    /// Which adapter this is, for logs and `keel config`.
    fn backend_name(&self) -> &'static str;
    /// How writes are being committed, for `/metrics`.
    fn write_stats(&self) -> std::sync::Arc<WriteStats>;
}

/// The backends one Keel process talks to: where state lives and where messages
/// travel. With `bus = "embedded"` both are the same adapter (the bus lives in the
/// store's tables); otherwise the bus is its own system.
#[derive(Clone)]
pub struct Backends {
    pub store: std::sync::Arc<dyn Store>,
    pub bus: std::sync::Arc<dyn bus::Bus>,
    pub cache: std::sync::Arc<dyn cache::Cache>,
    /// Where object bytes live (the index is in `store`).
    pub blobs: std::sync::Arc<dyn objects::BlobStore>,
}

impl Backends {
    /// One adapter serving as both store and embedded bus, with an in-process cache.
    pub fn embedded<S: Store + bus::Bus + 'static>(
        adapter: S,
        blobs: std::sync::Arc<dyn objects::BlobStore>,
    ) -> Self {
        let adapter = std::sync::Arc::new(adapter);
        Self {
            store: adapter.clone(),
            bus: adapter,
            cache: std::sync::Arc::new(cache::memory::MemoryCache::default()),
            blobs,
        }
    }

    /// The same backends with another cache.
    pub fn with_cache(self, cache: std::sync::Arc<dyn cache::Cache>) -> Self {
        Self { cache, ..self }
    }
}

/// What one tenant may hold, enforced by the adapter inside the write that would
/// exceed it (so concurrent requests cannot overshoot a quota together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Live (unrevoked) keys.
    pub keys_per_tenant: u64,
    pub topics_per_tenant: u64,
    pub subscriptions_per_tenant: u64,
    /// Subscriptions whose target is a webhook.
    pub webhooks_per_tenant: u64,
    /// Bytes one publish may write: each message's size times the subscriptions
    /// it is copied to.
    pub fanout_bytes_per_publish: u64,
    /// Such bytes per second, per tenant (see [`fanout_budget`]).
    pub fanout_bytes_per_second: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            keys_per_tenant: 100,
            topics_per_tenant: 1_000,
            subscriptions_per_tenant: 1_000,
            webhooks_per_tenant: 50,
            fanout_bytes_per_publish: 1024 * 1024,
            fanout_bytes_per_second: 4 * 1024 * 1024,
        }
    }
}

/// How well durable writes share their commits: `writes / commits` is the mean
/// batch size; a rising ratio under load is group commit doing its job.
#[derive(Debug, Default)]
pub struct WriteStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    pub largest_batch: AtomicU64,
}

impl WriteStats {
    pub fn record_commit(&self, batch_size: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(batch_size, Ordering::Relaxed);
        self.largest_batch.fetch_max(batch_size, Ordering::Relaxed);
    }
}
