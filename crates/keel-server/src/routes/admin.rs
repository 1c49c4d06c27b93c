//! Operator routes (SPEC §1): manage tenants and issue keys for any tenant.
//! Every route here needs the `operator` scope.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    apikey::{Scope, Scopes},
    FieldError,
};
use keel_store::{Tenant, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::Authed,
    extract::{from_json, JsonBody, PageQuery, Query},
    problem::{ApiError, ApiResult, Problem},
    routes::accounts::{parse_scopes, IssuedKey, KeyView},
    services::issue_key,
    state::AppState,
};

#[derive(Deserialize, ToSchema)]
pub struct NewTenant {
    /// 1–200 characters.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            created_at: t.created_at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct AdminNewKey {
    pub tenant_id: String,
    /// Defaults to `["read", "write"]`; any of read, write, admin, operator.
    pub scopes: Option<Vec<String>>,
}

pub fn parse_tenant_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(FieldError::new("/name", "name must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

/// Creates a tenant.
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin", security(("bearer" = [])), request_body = NewTenant,
    responses((status = 201, body = TenantView), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Operator)?;
    let body: NewTenant = from_json(body)?;
    let name = parse_tenant_name(&body.name).map_err(ApiError::field)?;
    let tenant = state.store.create_tenant(&name).await?;
    let mut response = (StatusCode::CREATED, Json(TenantView::from(&tenant))).into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(tenant.id.to_string()));
    Ok(response)
}

/// Lists tenants.
#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = TenantList), (status = 403, body = Problem)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<TenantList>> {
    key.require(Scope::Operator)?;
    let paging = state.paging("operator/tenants".into()).await?;
    let page = state.store.list_tenants(paging.request(page)?).await?;
    Ok(Json(TenantList {
        tenants: page.items.iter().map(TenantView::from).collect(),
        next_cursor: paging.next(page.next_cursor),
    }))
}

/// Issues a key for any tenant.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])), request_body = AdminNewKey,
    responses((status = 201, body = IssuedKey), (status = 404, body = Problem), (status = 403, body = Problem)))]
pub async fn create_key(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Operator)?;
    let body: AdminNewKey = from_json(body)?;
    let scopes = parse_scopes(body.scopes, Scopes::parse_csv("read,write").expect("valid"))?;
    let tenant = TenantId(body.tenant_id);
    if state.store.tenant(&tenant).await?.is_none() {
        return Err(ApiError::NotFound("no such tenant".into()));
    }
    let (secret, stored) = issue_key(&*state.store, &tenant, scopes).await?;
    let mut response = (
        StatusCode::CREATED,
        Json(IssuedKey {
            api_key: secret.reveal(),
            key: KeyView::from(&stored),
        }),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(stored.prefix.clone()));
    Ok(response)
}
