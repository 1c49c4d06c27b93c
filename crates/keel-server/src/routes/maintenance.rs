//! Maintenance windows (SPEC §7): `POST|GET /v1/maintenance`,
//! `DELETE /v1/maintenance/{id}`. Checks of the monitors a window covers, while
//! it is on, count as neither up nor down, open no incident and burn no budget.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{apikey::Scope, uptime::maintenance::MaintenanceSpec, FieldError};
use keel_store::maintenance::{StoredWindow, MAX_WINDOWS};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::Authed,
    extract::{JsonBody, PathParams},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct WindowView {
    pub id: String,
    pub name: String,
    /// Monitor ids; empty: every monitor of the tenant.
    pub monitors: Vec<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// `{"weekdays": ["sat"], "start": "02:00", "duration_minutes": 120}`.
    #[schema(value_type = Option<Object>)]
    pub recurring: Option<Value>,
    pub time_zone: Option<String>,
    /// Whether the window is on now.
    pub active: bool,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct WindowList {
    pub windows: Vec<WindowView>,
}

/// The body of `POST /v1/maintenance`: one-off (`starts_at`, `ends_at`) or
/// recurring (`recurring` with a `time_zone`).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape; `MaintenanceSpec::parse` reads it
pub struct WindowBody {
    pub name: String,
    pub monitors: Option<Vec<String>>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub recurring: Option<Value>,
    pub time_zone: Option<String>,
}

pub(crate) fn window_view(state: &AppState, w: StoredWindow) -> WindowView {
    let active = w.spec.covers(state.clock.now(), &state.config.time_zone);
    WindowView {
        id: w.id,
        name: w.spec.name,
        monitors: w.spec.monitors,
        starts_at: w.spec.starts_at.map(|t| t.to_string()),
        ends_at: w.spec.ends_at.map(|t| t.to_string()),
        recurring: w
            .spec
            .recurring
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null)),
        time_zone: w.spec.time_zone,
        active,
        created_at: w.created_at.to_string(),
    }
}

/// Creates a maintenance window; it applies from its start (checks already
/// recorded keep what they counted).
#[utoipa::path(post, path = "/v1/maintenance", tag = "uptime", security(("bearer" = [])),
    request_body = WindowBody,
    responses((status = 201, body = WindowView), (status = 400, body = Problem),
              (status = 409, body = Problem)))]
pub async fn create_window(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let spec = MaintenanceSpec::parse(&body).map_err(ApiError::fields)?;
    let mut unknown = Vec::new();
    for (i, id) in spec.monitors.iter().enumerate() {
        if state.store.monitor(&key.tenant_id, id).await?.is_none() {
            unknown.push(FieldError::new(
                format!("/monitors/{i}"),
                format!("no monitor {id:?}"),
            ));
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::fields(unknown));
    }
    if state.store.list_windows(&key.tenant_id).await?.len() >= MAX_WINDOWS {
        return Err(ApiError::Conflict(format!(
            "a tenant has at most {MAX_WINDOWS} maintenance windows"
        )));
    }
    let stored = state.store.create_window(&key.tenant_id, spec).await?;
    state.maintenance.relist().await;
    let id = stored.id.clone();
    let mut response = (StatusCode::CREATED, Json(window_view(&state, stored))).into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}

/// The tenant's maintenance windows, oldest first.
#[utoipa::path(get, path = "/v1/maintenance", tag = "uptime", security(("bearer" = [])),
    responses((status = 200, body = WindowList)))]
pub async fn list_windows(
    State(state): State<AppState>,
    Authed(key): Authed,
) -> ApiResult<Json<WindowList>> {
    key.require(Scope::Read)?;
    let windows = state.store.list_windows(&key.tenant_id).await?;
    Ok(Json(WindowList {
        windows: windows
            .into_iter()
            .map(|w| window_view(&state, w))
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/maintenance/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)))]
pub async fn delete_window(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    if !state.store.delete_window(&key.tenant_id, &id).await? {
        return Err(ApiError::NotFound("no such maintenance window".into()));
    }
    state.maintenance.relist().await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}
