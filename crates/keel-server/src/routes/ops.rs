//! Operating Keel: liveness, readiness, metrics, the request overview, and the
//! OpenAPI document.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use keel_core::apikey::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::{Authed, Caller},
    extract::Query,
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
    telemetry::{parse_window, BusTotals, Overview},
};

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The store answers and the process is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    if state.is_draining() {
        return Err(ApiError::Unavailable(
            "draining: this process is shutting down".into(),
        ));
    }
    // SPEC §8: ready when the store and the bus answer. The cache is left out on
    // purpose: without Redis, Keel bypasses it and stays correct.
    state.store.ping().await?;
    state.bus.ping().await?;
    Ok(Json(Health { status: "ready" }))
}

/// Prometheus metrics (OpenMetrics text). Public unless `metrics_public = false`,
/// in which case an `operator` key is needed. Queue gauges are labelled per tenant,
/// topic and subscription only for an `operator` key; otherwise they are summed.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let operator = match &caller {
        Caller::Key(key) => key.scopes.contains(Scope::Operator),
        Caller::Anonymous => false,
    };
    if !state.config.metrics_public && !operator {
        return Err(match caller {
            Caller::Key(_) => ApiError::Forbidden("metrics need an operator key".into()),
            Caller::Anonymous => ApiError::Unauthorized("metrics need an operator key".into()),
        });
    }
    let mut response = state.telemetry.render(operator).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

/// The request overview plus the bus's message counts.
#[derive(Serialize, ToSchema)]
pub struct OverviewWithBus {
    #[serde(flatten)]
    pub overview: Overview,
    /// Since this process started.
    pub bus: BusTotals,
}

#[derive(Deserialize, IntoParams)]
pub struct WindowQuery {
    /// `5m` … `24h` (default `1h`).
    pub window: Option<String>,
}

/// Latency percentiles, error rates and throughput per minute, overall and per
/// route, for this process. Needs an `operator` key: it spans every tenant.
#[utoipa::path(get, path = "/v1/stats/overview", tag = "operations", security(("bearer" = [])), params(WindowQuery),
    responses((status = 200, body = OverviewWithBus), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn stats_overview(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(query): Query<WindowQuery>,
) -> ApiResult<Json<OverviewWithBus>> {
    key.require(Scope::Operator)?;
    let raw = query.window.as_deref().unwrap_or("1h");
    let minutes = parse_window(raw).ok_or_else(|| {
        ApiError::field(keel_core::FieldError::new(
            "/window",
            "window must be like 5m, 1h or 24h, at most 24h",
        ))
    })?;
    Ok(Json(OverviewWithBus {
        overview: state.telemetry.stats.overview(minutes),
        bus: state.telemetry.bus.totals(),
    }))
}
