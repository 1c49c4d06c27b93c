//! The caller's own view: `GET /v1/me` and the tenant's audit trail.

use axum::{extract::State, Json};
use keel_core::apikey::Scope;
use keel_store::AuditEvent;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Authed,
    extract::{PageQuery, Query},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub tenant: MeTenant,
    pub key: MeKey,
}

#[derive(Serialize, ToSchema)]
pub struct MeTenant {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeKey {
    pub prefix: String,
    pub scopes: Vec<String>,
}

/// The caller's tenant and key.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
pub async fn me(State(state): State<AppState>, Authed(key): Authed) -> ApiResult<Json<Me>> {
    let tenant = state
        .store
        .tenant(&key.tenant_id)
        .await?
        .ok_or_else(|| ApiError::Internal("a live key names a missing tenant".into()))?;
    Ok(Json(Me {
        tenant: MeTenant {
            id: tenant.id.to_string(),
            name: tenant.name,
        },
        key: MeKey {
            prefix: key.prefix.clone(),
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        },
    }))
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: String,
    pub at: String,
    pub tenant_id: Option<String>,
    pub key_prefix: Option<String>,
    pub method: String,
    /// The route template, e.g. `/v1/counters/{name}/next`.
    pub route: String,
    pub resource_id: Option<String>,
    pub status: u16,
    pub request_id: String,
    pub source: Option<String>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at.to_string(),
            tenant_id: e.tenant_id.map(|t| t.to_string()),
            key_prefix: e.key_prefix,
            method: e.method,
            route: e.route,
            resource_id: e.resource_id,
            status: e.status,
            request_id: e.request_id,
            source: e.source,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub events: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

/// The tenant's audit trail, newest first: every mutating request and every
/// authentication failure against its keys.
#[utoipa::path(get, path = "/v1/audit", tag = "accounts", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = AuditList), (status = 403, body = Problem)))]
pub async fn audit(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<AuditList>> {
    key.require(Scope::Admin)?;
    // Show what is still buffered too, so a client reads its own writes' events.
    state.audit.flush().await;
    let paging = state.paging(format!("{}/audit", key.tenant_id)).await?;
    let page = state
        .store
        .list_audit(&key.tenant_id, paging.request(page)?)
        .await?;
    Ok(Json(AuditList {
        events: page.items.into_iter().map(AuditEventView::from).collect(),
        next_cursor: paging.next(page.next_cursor),
    }))
}
