//! Monitors (SPEC §7): `POST|GET /v1/monitors`, `GET|PUT|DELETE
//! /v1/monitors/{id}` and the heartbeat of push monitors,
//! `POST /v1/monitors/{id}/push`. Definitions are parsed by
//! `keel_core::uptime::monitor::MonitorSpec`; the prober role runs the checks.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    apikey::Scope,
    uptime::{
        condition::Observation,
        monitor::{MonitorKind, MonitorSpec},
    },
};
use keel_store::monitors::{CheckResult, StoredMonitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::{
    audit::AuditNote,
    auth::Authed,
    extract::{JsonBody, PageQuery, PathParams, Query},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

/// A monitor as the API shows it: its definition, then its state.
#[derive(Serialize, ToSchema)]
pub struct MonitorView {
    pub id: String,
    pub name: String,
    /// `http`, `tcp` or `push`.
    pub kind: String,
    pub target: Option<String>,
    pub interval_s: u32,
    pub timeout_ms: u32,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub third_party: bool,
    pub public: bool,
    pub conditions: Vec<String>,
    /// Consecutive failed checks that open an incident (default 2).
    pub incident_after: u32,
    /// Push monitors: how late a heartbeat may be past `interval_s`.
    pub grace_s: u32,
    /// Channel ids its incidents go to; empty: every channel of the tenant.
    pub channels: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `pending` (not checked yet), `up`, `down` or `maintenance`.
    pub status: String,
    pub consecutive_failures: u32,
    pub last_check_at: Option<String>,
    /// Why the last check failed, when it did.
    pub last_failure: Option<String>,
    pub next_check_at: String,
    /// The incident open now, if any.
    pub open_incident: Option<String>,
    /// Push monitors: where the job reports (carries the monitor's token).
    pub push_url: Option<String>,
}

impl From<StoredMonitor> for MonitorView {
    fn from(m: StoredMonitor) -> Self {
        let push_url = m
            .push_token
            .as_ref()
            .map(|token| format!("/v1/monitors/{}/push?token={token}", m.id));
        let spec = m.spec;
        Self {
            id: m.id,
            name: spec.name,
            kind: spec.kind.as_str().into(),
            target: spec.target,
            interval_s: spec.interval_s,
            timeout_ms: spec.timeout_ms,
            method: spec.method,
            headers: spec.headers,
            body: spec.body,
            third_party: spec.third_party,
            public: spec.public,
            conditions: spec.conditions,
            incident_after: spec.incident_after,
            grace_s: spec.grace_s,
            channels: spec.channels,
            created_at: m.created_at.to_string(),
            updated_at: m.updated_at.to_string(),
            status: m.state.status.as_str().into(),
            consecutive_failures: m.state.consecutive_failures,
            last_check_at: m.state.last_check_at.map(|t| t.to_string()),
            last_failure: m.state.last_failure,
            next_check_at: m.state.next_check_at.to_string(),
            open_incident: m.state.open_incident,
            push_url,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MonitorList {
    pub monitors: Vec<MonitorView>,
    pub next_cursor: Option<String>,
}

/// The body of `POST /v1/monitors` and `PUT /v1/monitors/{id}` (SPEC §7).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape; `MonitorSpec::parse` reads it
pub struct MonitorBody {
    pub name: String,
    /// `http`, `tcp` or `push`.
    pub kind: String,
    /// `https://…` (http) or `host:port` (tcp); none for push.
    pub target: Option<String>,
    /// 1 to 86,400; default 60.
    pub interval_s: Option<u32>,
    /// 1 to 60,000 and at most the interval; default 5,000.
    pub timeout_ms: Option<u32>,
    /// http: GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub third_party: Option<bool>,
    pub public: Option<bool>,
    /// `status == 200`, `response_time_ms < 500`, `body.status == "ok"`,
    /// `header.content-type == application/json`, `cert_expires_in_days > 14`.
    pub conditions: Option<Vec<String>>,
    /// 1 to 100; default 2.
    pub incident_after: Option<u32>,
    /// Push monitors; default the interval, at most 60.
    pub grace_s: Option<u32>,
    /// Channel ids its incidents go to; default every channel of the tenant.
    pub channels: Option<Vec<String>>,
}

pub(crate) fn parse_spec(body: &serde_json::Value) -> ApiResult<MonitorSpec> {
    MonitorSpec::parse(body).map_err(ApiError::fields)
}

pub(crate) async fn tenant_monitor(
    state: &AppState,
    key: &crate::auth::KeyContext,
    id: &str,
) -> ApiResult<StoredMonitor> {
    state
        .store
        .monitor(&key.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such monitor".into()))
}

fn with_note(mut response: Response, id: &str) -> Response {
    response
        .extensions_mut()
        .insert(AuditNote::resource(id.to_owned()));
    response
}

fn conflict(e: keel_store::StoreError) -> ApiError {
    match e {
        keel_store::StoreError::Conflict(_) => {
            ApiError::Conflict("this tenant already has a monitor of that name".into())
        }
        other => other.into(),
    }
}

/// Creates a monitor; its first check is due within one interval.
#[utoipa::path(post, path = "/v1/monitors", tag = "uptime", security(("bearer" = [])),
    request_body = MonitorBody,
    responses((status = 201, body = MonitorView), (status = 400, body = Problem),
              (status = 409, body = Problem)))]
pub async fn create_monitor(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let spec = parse_spec(&body)?;
    let stored = state
        .store
        .create_monitor(&key.tenant_id, spec)
        .await
        .map_err(conflict)?;
    let id = stored.id.clone();
    Ok(with_note(
        (StatusCode::CREATED, Json(MonitorView::from(stored))).into_response(),
        &id,
    ))
}

/// The tenant's monitors, oldest first.
#[utoipa::path(get, path = "/v1/monitors", tag = "uptime", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = MonitorList), (status = 400, body = Problem)))]
pub async fn list_monitors(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<MonitorList>> {
    key.require(Scope::Read)?;
    let paging = state.paging(format!("{}/monitors", key.tenant_id)).await?;
    let page = paging.request(query)?;
    let found = state.store.list_monitors(&key.tenant_id, page).await?;
    Ok(Json(MonitorList {
        monitors: found.items.into_iter().map(MonitorView::from).collect(),
        next_cursor: paging.next(found.next_cursor),
    }))
}

/// One monitor with its current state.
#[utoipa::path(get, path = "/v1/monitors/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = MonitorView), (status = 404, body = Problem)))]
pub async fn get_monitor(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<MonitorView>> {
    key.require(Scope::Read)?;
    Ok(Json(tenant_monitor(&state, &key, &id).await?.into()))
}

/// Replaces a monitor's definition; it is rescheduled, its history kept.
#[utoipa::path(put, path = "/v1/monitors/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = MonitorBody,
    responses((status = 200, body = MonitorView), (status = 400, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn put_monitor(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let spec = parse_spec(&body)?;
    let stored = state
        .store
        .replace_monitor(&key.tenant_id, &id, spec)
        .await
        .map_err(conflict)?
        .ok_or_else(|| ApiError::NotFound("no such monitor".into()))?;
    Ok(with_note(
        Json(MonitorView::from(stored)).into_response(),
        &id,
    ))
}

/// Removes a monitor with its results and incidents.
#[utoipa::path(delete, path = "/v1/monitors/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)))]
pub async fn delete_monitor(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    if !state.store.delete_monitor(&key.tenant_id, &id).await? {
        return Err(ApiError::NotFound("no such monitor".into()));
    }
    Ok(with_note(StatusCode::NO_CONTENT.into_response(), &id))
}

#[derive(Deserialize, IntoParams)]
pub struct PushQuery {
    /// The monitor's token (in its `push_url`).
    pub token: String,
    /// `up` (default) or `down`.
    pub status: Option<String>,
    /// How long the job took; judged by `response_time_ms` conditions.
    pub duration_ms: Option<u64>,
    /// Why the job failed, recorded with a `down` heartbeat.
    pub msg: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PushAnswer {
    /// `up` or `down`, as recorded.
    pub status: String,
    /// When the next heartbeat is due at the latest.
    pub next_due_at: String,
}

/// A push monitor's heartbeat: the job reports with the monitor's token (no key
/// needed). A wrong token answers 404, as an unknown monitor does.
#[utoipa::path(post, path = "/v1/monitors/{id}/push", tag = "uptime",
    params(("id" = String, Path), PushQuery),
    responses((status = 200, body = PushAnswer), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
pub async fn push(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    Query(query): Query<PushQuery>,
) -> ApiResult<Response> {
    let up = match query.status.as_deref() {
        None | Some("up") => true,
        Some("down") => false,
        Some(_) => {
            return Err(ApiError::field(keel_core::FieldError::new(
                "/status",
                "expected up or down",
            )))
        }
    };
    let not_found = || ApiError::NotFound("no such push monitor".into());
    let monitor = state.store.push_monitor(&id).await?.ok_or_else(not_found)?;
    let same = monitor.push_token.as_deref().is_some_and(|token| {
        Sha256::digest(token.as_bytes()) == Sha256::digest(query.token.as_bytes())
    });
    if !same || monitor.spec.kind != MonitorKind::Push {
        return Err(not_found());
    }
    let now = state.clock.now();
    let duration_ms = query.duration_ms.unwrap_or(0).min(u64::from(u32::MAX));
    let seen = Observation {
        response_time_ms: duration_ms,
        ..Observation::default()
    };
    let failure = if up {
        monitor
            .spec
            .parsed_conditions()
            .iter()
            .find_map(|c| c.check(&seen).err())
    } else {
        Some(match query.msg.as_deref() {
            Some(msg) if !msg.trim().is_empty() => {
                format!(
                    "the job reported down: {}",
                    msg.chars().take(500).collect::<String>()
                )
            }
            _ => "the job reported down".to_string(),
        })
    };
    let next = now.as_microsecond() + monitor.spec.period_micros();
    let changes = state
        .store
        .record_checks(vec![CheckResult {
            tenant: monitor.tenant.clone(),
            monitor_id: monitor.id.clone(),
            scheduled_at: None,
            at: now,
            up: failure.is_none(),
            maintenance: state.maintenance.covers(&monitor.tenant, &monitor.id, now),
            latency_us: query.duration_ms.map(|ms| ms.saturating_mul(1000)),
            status: None,
            failure: failure.clone(),
            next_check_at: next,
        }])
        .await?;
    crate::prober::announce(&state.notices, &changes);
    let mut response = Json(PushAnswer {
        status: if failure.is_none() { "up" } else { "down" }.into(),
        next_due_at: jiff::Timestamp::from_microsecond(next)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    })
    .into_response();
    response.extensions_mut().insert(AuditNote::tenant_resource(
        monitor.tenant.clone(),
        monitor.id.clone(),
    ));
    Ok(response)
}
