//! Opening the backends a configuration names (SPEC §9): `store` is
//! `sqlite://PATH` or `postgres://…`, `bus` is `embedded` (the bus lives in the
//! store's tables) or `nats://…` (JetStream), `cache` is `memory` or
//! `redis://…` — the one place that turns URLs into adapters.

use std::{sync::Arc, time::Duration};

use keel_core::clock::{Clock, SystemClock};

use crate::{
    cache::{memory::MemoryCache, redis::RedisCache, Cache, CacheKind},
    nats::{NatsBus, NatsSettings},
    Backends, Quotas, StoreError, StoreResult,
};

/// Settings of the PostgreSQL adapter beyond its URL (TLS is set in the URL:
/// `sslmode=verify-full&sslrootcert=/path/ca.pem`).
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections per process.
    pub pool_size: u32,
    /// Longest any statement may run before PostgreSQL cancels it (503).
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection before answering 503.
    pub acquire_timeout: Duration,
    /// The role every pooled session switches to (`SET ROLE`): not the tables'
    /// owner and not a superuser, so row-level security binds it. Empty: use
    /// the URL's user as it is (it must then be such a role itself).
    pub app_role: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            statement_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(5),
            app_role: "keel_app".into(),
        }
    }
}

/// Everything needed to open the backends.
#[derive(Clone)]
pub struct BackendSettings {
    pub store: String,
    pub bus: String,
    pub cache: String,
    /// `file://DIR` or `s3://BUCKET?endpoint=…&region=…&prefix=…`.
    pub objects: String,
    pub quotas: Quotas,
    pub clock: Arc<dyn Clock>,
    pub postgres: PostgresOptions,
}

impl BackendSettings {
    /// Objects default to `objects/` beside a SQLite database (`keel-data/objects`
    /// for other stores).
    pub fn new(store: impl Into<String>) -> Self {
        let store = store.into();
        let objects = match StoreKind::parse(&store) {
            Ok(StoreKind::Sqlite(path)) => path
                .parent()
                .map(|dir| format!("file://{}", dir.join("objects").display()))
                .unwrap_or_else(|| "file://objects".into()),
            _ => "file://keel-data/objects".into(),
        };
        Self {
            store,
            bus: "embedded".into(),
            cache: "memory".into(),
            objects,
            quotas: Quotas::default(),
            clock: Arc::new(SystemClock),
            postgres: PostgresOptions::default(),
        }
    }
}

/// Which store a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl StoreKind {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(format!(
                    "store {raw:?}: sqlite:// needs a file path, e.g. sqlite://keel-data/keel.db"
                ));
            }
            return Ok(Self::Sqlite(path.into()));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        Err(format!(
            "store {raw:?}: expected sqlite://PATH or postgres://…"
        ))
    }
}

/// Opens the store (applying pending migrations), the bus and the cache.
pub async fn connect(settings: &BackendSettings) -> StoreResult<Backends> {
    let cache: Arc<dyn Cache> =
        match CacheKind::parse(&settings.cache).map_err(|why| StoreError::InvalidInput {
            field: "cache",
            why,
        })? {
            CacheKind::Memory => Arc::new(MemoryCache::default()),
            CacheKind::Redis(url) => Arc::new(RedisCache::connect(&url).await?),
        };
    Ok(open_store_and_bus(settings).await?.with_cache(cache))
}

async fn open_store_and_bus(settings: &BackendSettings) -> StoreResult<Backends> {
    let nats = match settings.bus.as_str() {
        "embedded" => None,
        other if other.starts_with("nats://") || other.starts_with("tls://") => Some(
            NatsSettings::parse(other)
                .map_err(|why| StoreError::InvalidInput { field: "bus", why })?,
        ),
        other => {
            return Err(StoreError::InvalidInput {
                field: "bus",
                why: format!("{other:?}: expected \"embedded\" or nats://host:port"),
            })
        }
    };
    let blobs: Arc<dyn crate::objects::BlobStore> = Arc::new(
        crate::objects::blobs::ObjectStoreBlobs::open(&settings.objects)?,
    );
    let backends = open_store(settings, blobs).await?;
    match nats {
        None => Ok(backends),
        Some(nats) => {
            let bus = NatsBus::connect(&nats, settings.clock.clone(), settings.quotas).await?;
            Ok(Backends {
                bus: Arc::new(bus),
                ..backends
            })
        }
    }
}

async fn open_store(
    settings: &BackendSettings,
    blobs: Arc<dyn crate::objects::BlobStore>,
) -> StoreResult<Backends> {
    let kind = StoreKind::parse(&settings.store).map_err(|why| StoreError::InvalidInput {
        field: "store",
        why,
    })?;
    match kind {
        StoreKind::Sqlite(path) => {
            let store = crate::sqlite::SqliteStore::open_with_clock(&path, settings.clock.clone())?
                .with_quotas(settings.quotas);
            Ok(Backends::embedded(store, blobs))
        }
        StoreKind::Postgres(url) => {
            let store = crate::postgres::PgStore::connect(
                &url,
                &settings.postgres,
                settings.clock.clone(),
                settings.quotas,
            )
            .await?;
            Ok(Backends::embedded(store, blobs))
        }
    }
}
