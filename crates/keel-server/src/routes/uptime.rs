//! What monitors add up to (SPEC §7): `GET /v1/monitors/{id}/uptime`,
//! `GET /v1/monitors/{id}/incidents` and `PATCH /v1/incidents/{id}`.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    Json,
};
use jiff::Timestamp;
use keel_core::{
    apikey::Scope,
    uptime::{Grain, Tally},
    FieldError,
};
use keel_store::monitors::Incident;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::monitors::tenant_monitor;
use crate::{
    audit::AuditNote,
    auth::Authed,
    extract::{JsonBody, PageQuery, PathParams, Query},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct IncidentView {
    pub id: String,
    pub monitor_id: String,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
    /// The failure that opened it, until someone records the cause.
    pub cause: Option<String>,
    pub notes: Option<String>,
}

impl From<Incident> for IncidentView {
    fn from(i: Incident) -> Self {
        Self {
            status: if i.resolved_at.is_some() {
                "resolved"
            } else {
                "open"
            }
            .into(),
            id: i.id,
            monitor_id: i.monitor_id,
            opened_at: i.opened_at.to_string(),
            resolved_at: i.resolved_at.map(|t| t.to_string()),
            cause: i.cause,
            notes: i.notes,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<IncidentView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct UptimeQuery {
    /// `1h`, `24h`, `7d`, `30d`, `90d` — any number of minutes (`m`), hours
    /// (`h`) or days (`d`) up to 400 days; default `24h`.
    pub window: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Uptime {
    pub window: String,
    /// The start of the first rollup bucket counted (the window is aligned to
    /// minutes up to a day, hours up to 31 days, days beyond).
    pub from: String,
    pub to: String,
    /// Up checks over counted checks; `null` before the first check.
    pub uptime_percent: Option<f64>,
    /// Each failed check stands for its interval.
    pub downtime_minutes: f64,
    /// Checks counted as up or down.
    pub checks: u64,
    /// Checks inside maintenance windows (counted as neither).
    pub maintenance_checks: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Incidents open at some time in the window, newest first (at most 100).
    pub incidents: Vec<IncidentView>,
}

/// `30d` → microseconds; at most 400 days.
pub(crate) fn parse_window(raw: &str) -> Result<i64, FieldError> {
    let bad = || {
        FieldError::new(
            "/window",
            "a window is a number of minutes, hours or days (30m, 24h, 7d) up to 400d",
        )
    };
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: i64 = number.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let unit_us = match unit {
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    let span = n.checked_mul(unit_us).ok_or_else(bad)?;
    if span > 400 * 86_400_000_000 {
        return Err(bad());
    }
    Ok(span)
}

/// A monitor's rollups over the `span` (µs) ending at `now`, in the coarsest
/// grain that fits, merged; with where the first bucket starts.
pub(crate) async fn window_tally(
    state: &AppState,
    tenant: &keel_store::TenantId,
    monitor_id: &str,
    span: i64,
    now: i64,
) -> keel_store::StoreResult<(i64, Tally)> {
    let grain = Grain::for_span(span);
    let from = grain.bucket(now - span + grain.micros() - 1);
    let mut all = Tally::default();
    for (_, tally) in state
        .store
        .monitor_tallies(tenant, monitor_id, grain, from, now + 1)
        .await?
    {
        all.merge(&tally);
    }
    Ok((from, all))
}

/// Uptime %, downtime, check count, latency percentiles and incidents over a
/// window ending now.
#[utoipa::path(get, path = "/v1/monitors/{id}/uptime", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path), UptimeQuery),
    responses((status = 200, body = Uptime), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn get_uptime(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
    Query(query): Query<UptimeQuery>,
) -> ApiResult<Json<Uptime>> {
    key.require(Scope::Read)?;
    let window = query.window.unwrap_or_else(|| "24h".into());
    let span = parse_window(&window).map_err(ApiError::field)?;
    let monitor = tenant_monitor(&state, &key, &id).await?;
    let now = state.clock.now().as_microsecond();
    let (from, all) = window_tally(&state, &key.tenant_id, &monitor.id, span, now).await?;
    let incidents = state
        .store
        .list_incidents(
            &key.tenant_id,
            &monitor.id,
            Some((now - span, now + 1)),
            keel_store::PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await?;
    let time = |us: i64| {
        Timestamp::from_microsecond(us)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    Ok(Json(Uptime {
        window,
        from: time(from),
        to: time(now),
        uptime_percent: all.uptime_percent(),
        downtime_minutes: all.down_ms as f64 / 60_000.0,
        checks: all.counted(),
        maintenance_checks: all.maintenance,
        p50_ms: all.latency_ms(0.5),
        p95_ms: all.latency_ms(0.95),
        p99_ms: all.latency_ms(0.99),
        incidents: incidents
            .items
            .into_iter()
            .map(IncidentView::from)
            .collect(),
    }))
}

/// A monitor's incidents, newest first.
#[utoipa::path(get, path = "/v1/monitors/{id}/incidents", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = IncidentList), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn list_incidents(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<IncidentList>> {
    key.require(Scope::Read)?;
    let monitor = tenant_monitor(&state, &key, &id).await?;
    let paging = state
        .paging(format!("{}/incidents/{}", key.tenant_id, monitor.id))
        .await?;
    let page = paging.request(query)?;
    let found = state
        .store
        .list_incidents(&key.tenant_id, &monitor.id, None, page)
        .await?;
    Ok(Json(IncidentList {
        incidents: found.items.into_iter().map(IncidentView::from).collect(),
        next_cursor: paging.next(found.next_cursor),
    }))
}

#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape; read field by field below
pub struct IncidentPatch {
    /// What caused it (replaces the failure recorded when it opened).
    pub cause: Option<String>,
    pub notes: Option<String>,
}

const MAX_NOTE: usize = 10_000;

fn note_field(body: &serde_json::Value, field: &str) -> Result<Option<String>, FieldError> {
    match body.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.len() <= MAX_NOTE && !s.contains('\0') => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(FieldError::new(
            format!("/{field}"),
            format!("a string of at most {MAX_NOTE} bytes, without NUL"),
        )),
    }
}

/// Records an incident's cause and notes.
#[utoipa::path(patch, path = "/v1/incidents/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = IncidentPatch,
    responses((status = 200, body = IncidentView), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn patch_incident(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let Some(object) = body.as_object() else {
        return Err(ApiError::field(FieldError::new(
            "",
            "expected an object with cause and/or notes",
        )));
    };
    let mut errors: Vec<FieldError> = object
        .keys()
        .filter(|k| !matches!(k.as_str(), "cause" | "notes"))
        .map(|k| FieldError::new(format!("/{k}"), "unknown field"))
        .collect();
    let cause = note_field(&body, "cause")
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let notes = note_field(&body, "notes")
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let incident = state
        .store
        .update_incident(&key.tenant_id, &id, cause, notes)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such incident".into()))?;
    let mut response = Json(IncidentView::from(incident)).into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_minutes_hours_or_days_up_to_400_days() {
        assert_eq!(parse_window("1h").unwrap(), 3_600_000_000);
        assert_eq!(parse_window("90d").unwrap(), 90 * 86_400_000_000);
        assert_eq!(parse_window("30m").unwrap(), 1_800_000_000);
        for bad in [
            "",
            "h",
            "0d",
            "-1d",
            "401d",
            "1w",
            "99999999999999999d",
            "1.5h",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}
