//! Keel's HTTP edge: routes, authentication, problem errors, audit, metrics and the
//! OpenAPI document. Handlers stay thin — extract, parse into `keel-core` types, call
//! the store through its traits, map to a response. See `ARCHITECTURE.md`.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bus_metrics;
pub mod cached_reads;
pub mod connections;
pub mod console;
pub mod edge;
pub mod extract;
mod histograms;
pub mod ingest;
pub mod limits;
pub mod logins;
pub mod notices;
pub mod objects;
pub mod outbound;
pub mod prober;
pub mod problem;
pub mod reports;
pub mod request_log;
pub mod routes;
pub mod server_config;
pub mod services;
pub mod slo;
pub mod state;
pub mod telemetry;
pub mod workers;

use std::future::Future;

pub use routes::{openapi_document, router};
pub use state::{AppState, ServerConfig};

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish, and returns. Connections are held to the configured limits (timeouts,
/// connection cap; see [`connections`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits.clone();
    connections::serve(listener, router(state), limits, shutdown).await
}
