//! The two sides of every comparison: Keel as `keel serve` runs it (real store on
//! disk, fsync, auth, audit, metrics, one JSON log line per request), and a bare axum
//! handler returning the same JSON.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use axum::{routing::get, Json, Router};
use keel_core::clock::SystemClock;
use keel_server::{
    app::{App, AppOptions, Roles},
    request_log::{RequestLog, RequestLogFormat},
    services, ServerConfig,
};
use keel_store::{BackendSettings, WriteStats};
use serde_json::json;

pub struct KeelUnderTest {
    pub addr: SocketAddr,
    pub operator_key: String,
    pub write_stats: Arc<WriteStats>,
    /// The ports themselves, for suites that fill a store faster than HTTP could.
    pub store: Arc<dyn keel_store::Store>,
    pub bus: Arc<dyn keel_store::bus::Bus>,
}

/// Keel in this process on SQLite under `data_dir`, every role. `lifted`: rate
/// limits and the fan-out budget raised far past what one benchmark client drives
/// (the throughput suites measure Keel, not its limits); otherwise every limit is
/// the default (the noisy-neighbour suite).
pub async fn start_keel(data_dir: &Path, lifted: bool) -> anyhow::Result<KeelUnderTest> {
    std::fs::create_dir_all(data_dir)?;
    let store = format!("sqlite://{}", data_dir.join("keel.db").display());
    start_keel_on(&store, lifted, Roles::ALL).await
}

fn config(lifted: bool) -> ServerConfig {
    let mut config = ServerConfig::default();
    if lifted {
        config.rate_limit_per_second = 1e9;
        config.rate_limit_burst = 1e9;
        config.limits.tenant_rate_limit_per_second = 1e9;
        config.limits.tenant_rate_limit_burst = 1e9;
        config.limits.fanout_bytes_per_second_per_tenant = 1 << 40;
    }
    config
}

/// Keel in this process on the (fresh) store at `store`, serving HTTP, running
/// `roles`.
pub async fn start_keel_on(
    store: &str,
    lifted: bool,
    roles: Roles,
) -> anyhow::Result<KeelUnderTest> {
    start_keel_on_bus(store, "embedded", lifted, roles).await
}

/// The same with the bus at `bus` (`embedded` or `nats://…`).
pub async fn start_keel_on_bus(
    store: &str,
    bus: &str,
    lifted: bool,
    roles: Roles,
) -> anyhow::Result<KeelUnderTest> {
    let config = config(lifted);
    let mut settings = BackendSettings::new(store);
    settings.bus = bus.to_owned();
    settings.quotas = config.limits.store_quotas();
    let backends = keel_store::connect(&settings).await?;
    let operator_key = match services::bootstrap(&*backends.store, None)
        .await
        .map_err(anyhow::Error::msg)?
    {
        services::Bootstrap::Created(key) => key.reveal(),
        other => anyhow::bail!("expected a fresh store, got {other:?}"),
    };
    let write_stats = backends.store.write_stats();
    let (store, bus) = (backends.store.clone(), backends.bus.clone());
    // Keel logs one JSON line per request in production; so does it here (into a
    // sink), so formatting them is part of what is measured.
    let request_log = RequestLog::new(RequestLogFormat::Json, Box::new(std::io::sink()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Runs until the benchmark process exits.
    std::mem::forget(App::start(
        backends,
        AppOptions {
            clock: Arc::new(SystemClock),
            config,
            roles,
            request_log,
        },
        Some(listener),
    ));
    Ok(KeelUnderTest {
        addr,
        operator_key,
        write_stats,
        store,
        bus,
    })
}

/// A worker replica in this process on the store at `store` (its own connection
/// pool, no HTTP), as `keel serve --roles worker` runs; stop it with
/// [`App::shutdown`].
pub async fn start_worker_replica(store: &str, bus: &str, pool_size: u32) -> anyhow::Result<App> {
    let mut settings = BackendSettings::new(store);
    settings.bus = bus.to_owned();
    settings.postgres.pool_size = pool_size;
    let backends = keel_store::connect(&settings).await?;
    let roles = Roles::parse("worker").map_err(anyhow::Error::msg)?;
    Ok(App::start(
        backends,
        AppOptions {
            clock: Arc::new(SystemClock),
            config: config(true),
            roles,
            request_log: RequestLog::off(),
        },
        None,
    ))
}

/// The baseline: axum alone, answering the same bodies from memory.
pub async fn start_bare_axum(hello_message: String) -> anyhow::Result<SocketAddr> {
    let counter = Arc::new(AtomicI64::new(0));
    let app = Router::new()
        .route(
            "/hello/{username}",
            get(move || {
                let message = hello_message.clone();
                async move { Json(json!({"message": message})) }
            }),
        )
        .route(
            "/v1/collections/{collection}/records",
            axum::routing::post(|Json(body): Json<serde_json::Value>| async move {
                // Parse, mint ids, answer 202: the same shape as Keel, without the
                // durability, auth or pipeline.
                let n = body.get("records").and_then(|r| r.as_array()).map_or(1, Vec::len);
                let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect();
                (axum::http::StatusCode::ACCEPTED, Json(json!({"ids": ids})))
            }),
        )
        .route(
            "/v1/next",
            get(move || {
                let value = counter.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    Json(json!({"data": {"type": "integer", "id": value.to_string(), "attributes": {"value": value}}}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
