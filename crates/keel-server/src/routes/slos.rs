//! SLOs (SPEC §7): `POST|GET /v1/slos`, `GET|DELETE /v1/slos/{id}`. The figures
//! (`sli`, `error_budget`, `burn_rates`) are computed on each read from the
//! minute counts (`crate::slo::report`); alerts are what the evaluator opened.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use jiff::Timestamp;
use keel_core::{apikey::Scope, slo::SloSpec, FieldError};
use keel_store::slos::{SloAlert, StoredSlo};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::{Authed, KeyContext},
    extract::{JsonBody, PageQuery, PathParams, Query},
    problem::{ApiError, ApiResult, Problem},
    slo::report::SloFigures,
    state::AppState,
};

/// How many of an SLO's alerts, newest first, its view lists.
const ALERTS_SHOWN: u32 = 20;

/// An SLO with its figures now.
#[derive(Serialize, ToSchema)]
pub struct SloView {
    pub id: String,
    pub name: String,
    /// In percent, exactly as given (`99.9`).
    pub objective: f64,
    /// `30d`, `7d`, … (rolling) or `month`, `quarter` (calendar).
    pub window: String,
    /// Calendar windows' zone; none means the server's (`KEEL_TIME_ZONE`).
    pub time_zone: Option<String>,
    /// What is counted: `{"monitor": id}` or `{"requests": {"route", "good"}}`.
    #[schema(value_type = Object)]
    pub indicator: Value,
    pub channels: Vec<String>,
    pub created_at: String,
    /// The window the figures cover.
    pub window_start: String,
    pub window_end: String,
    /// Events in the window: `good`, `total`, `value` (percent good; null without events).
    #[schema(value_type = Object)]
    pub sli: Value,
    /// In events: `total` allowed bad, `consumed` bad so far, `remaining_percent`.
    #[schema(value_type = Object)]
    pub error_budget: Value,
    /// Burn rate over `5m`, `30m`, `1h`, `6h`, `1d`, `3d` (1 = the budget lasts
    /// exactly the window).
    #[schema(value_type = Object)]
    pub burn_rates: Value,
    /// Newest first: `severity` page|ticket, `windows`, `status` firing|resolved.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct SloList {
    pub slos: Vec<SloView>,
    pub next_cursor: Option<String>,
}

/// The body of `POST /v1/slos` (SPEC §7).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape; `SloSpec::parse` reads it
pub struct SloBody {
    pub name: String,
    /// Percent, strictly between 0 and 100, at most six decimal places.
    pub objective: f64,
    /// `30d` (default), `7d`, … up to `90d`, or `month` / `quarter`.
    pub window: Option<String>,
    /// IANA zone for calendar windows.
    pub time_zone: Option<String>,
    /// `{"monitor": "<id>"}` or `{"requests": {"route": "/hello/*", "good": "status < 500 and latency_ms < 300"}}`.
    #[schema(value_type = Object)]
    pub sli: Value,
    /// Channel ids to notify; default every channel of the tenant.
    pub channels: Option<Vec<String>>,
}

pub fn alert_json(alert: &SloAlert) -> Value {
    json!({
        "id": alert.id,
        "severity": alert.severity.as_str(),
        "windows": alert.windows,
        "status": if alert.resolved_at.is_some() { "resolved" } else { "firing" },
        "opened_at": alert.opened_at.to_string(),
        "resolved_at": alert.resolved_at.map(|t| t.to_string()),
    })
}

fn micros_text(micros: i64) -> String {
    Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(crate) async fn slo_view(state: &AppState, slo: StoredSlo) -> ApiResult<SloView> {
    let now = state.clock.now();
    let figures = SloFigures::compute(&*state.store, &slo, now, &state.config.time_zone).await?;
    let alerts = state
        .store
        .slo_alerts(&slo.tenant, &slo.id, ALERTS_SHOWN)
        .await?;
    let objective = slo.spec.objective();
    let counts = figures.window;
    let burn_rates: Map<String, Value> = figures
        .burn_rates
        .iter()
        .map(|(w, rate)| ((*w).to_owned(), json!(rate.to_f64())))
        .collect();
    Ok(SloView {
        id: slo.id.clone(),
        name: slo.spec.name.clone(),
        objective: objective.percent().to_f64(),
        window: slo.spec.window.clone(),
        time_zone: slo.spec.time_zone.clone(),
        indicator: slo.spec.sli_json(),
        channels: slo.spec.channels.clone(),
        created_at: slo.created_at.to_string(),
        window_start: micros_text(figures.window_start),
        window_end: micros_text(figures.window_end),
        sli: json!({
            "good": counts.good,
            "total": counts.total,
            "value": figures.value_percent().map(|v| v.to_f64()),
        }),
        error_budget: json!({
            "total": objective.budget_events(counts.total).to_f64(),
            "consumed": counts.bad(),
            "remaining_percent": objective.remaining_percent(counts).to_f64(),
        }),
        burn_rates: Value::Object(burn_rates),
        alerts: alerts.iter().map(alert_json).collect(),
    })
}

async fn tenant_slo(state: &AppState, key: &KeyContext, id: &str) -> ApiResult<StoredSlo> {
    state
        .store
        .slo(&key.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such SLO".into()))
}

/// A monitor SLI's monitor must be the tenant's; listed channels too.
async fn check_references(state: &AppState, key: &KeyContext, spec: &SloSpec) -> ApiResult<()> {
    let mut errors = Vec::new();
    if let Some(monitor) = spec.monitor() {
        if state
            .store
            .monitor(&key.tenant_id, monitor)
            .await?
            .is_none()
        {
            errors.push(FieldError::new(
                "/sli/monitor",
                format!("this tenant has no monitor {monitor:?}"),
            ));
        }
    }
    errors.extend(crate::routes::channels::unknown_channels(state, key, &spec.channels).await?);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::fields(errors))
    }
}

/// Creates an SLO; it counts events from now on.
#[utoipa::path(post, path = "/v1/slos", tag = "uptime", security(("bearer" = [])),
    request_body = SloBody,
    responses((status = 201, body = SloView), (status = 400, body = Problem),
              (status = 409, body = Problem)))]
pub async fn create_slo(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let spec = SloSpec::parse(&body).map_err(ApiError::fields)?;
    check_references(&state, &key, &spec).await?;
    let stored = state
        .store
        .create_slo(&key.tenant_id, spec)
        .await
        .map_err(|e| match e {
            keel_store::StoreError::Conflict(_) => {
                ApiError::Conflict("this tenant already has an SLO of that name".into())
            }
            other => other.into(),
        })?;
    state.request_slis.relist().await;
    let id = stored.id.clone();
    let mut response = (StatusCode::CREATED, Json(slo_view(&state, stored).await?)).into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}

/// The tenant's SLOs with their figures, oldest first.
#[utoipa::path(get, path = "/v1/slos", tag = "uptime", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = SloList), (status = 400, body = Problem)))]
pub async fn list_slos(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<SloList>> {
    key.require(Scope::Read)?;
    let paging = state.paging(format!("{}/slos", key.tenant_id)).await?;
    let page = paging.request(query)?;
    let found = state.store.list_slos(&key.tenant_id, page).await?;
    let mut slos = Vec::with_capacity(found.items.len());
    for slo in found.items {
        slos.push(slo_view(&state, slo).await?);
    }
    Ok(Json(SloList {
        slos,
        next_cursor: paging.next(found.next_cursor),
    }))
}

/// One SLO: events, error budget, burn rates and alerts.
#[utoipa::path(get, path = "/v1/slos/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SloView), (status = 404, body = Problem)))]
pub async fn get_slo(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<SloView>> {
    key.require(Scope::Read)?;
    let slo = tenant_slo(&state, &key, &id).await?;
    Ok(Json(slo_view(&state, slo).await?))
}

/// Removes an SLO with its counts and alerts.
#[utoipa::path(delete, path = "/v1/slos/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)))]
pub async fn delete_slo(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    if !state.store.delete_slo(&key.tenant_id, &id).await? {
        return Err(ApiError::NotFound("no such SLO".into()));
    }
    state.request_slis.relist().await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}

/// Recording and alerting rules for the same SLO, for teams that keep
/// Prometheus (valid for `promtool check rules`).
#[utoipa::path(get, path = "/v1/slos/{id}/prometheus-rules", tag = "uptime",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "A Prometheus rule file", content_type = "application/yaml"),
              (status = 404, body = Problem)))]
pub async fn prometheus_rules(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Read)?;
    let slo = tenant_slo(&state, &key, &id).await?;
    let yaml = crate::slo::rules::rule_file(&slo);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        yaml,
    )
        .into_response())
}
