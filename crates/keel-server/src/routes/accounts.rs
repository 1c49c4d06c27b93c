//! Accounts and their keys (SPEC §1, §3): `POST /v1/users` registers an account (a
//! tenant); `POST /v1/keys` issues a key — to a tenant admin (bearer key, chosen
//! scopes) or to the account owner who lost theirs (email and password);
//! `GET /v1/keys` lists and `DELETE /v1/keys/{prefix}` revokes.

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    account::{Email, Password},
    apikey::{ApiKey, Scope, Scopes},
    FieldError,
};
use keel_store::{StoreError, StoredKey, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::{Authed, Caller},
    extract::{from_json, JsonBody, PageQuery, PathParams, Query},
    logins::ClientAddress,
    problem::{ApiError, ApiResult, Problem},
    routes::counters::JSON_API,
    services::{hash_password, issue_key, verify_password},
    state::AppState,
};

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserDocument {
    pub data: UserResource,
}

#[derive(Serialize, ToSchema)]
pub struct UserResource {
    /// Always `users`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub attributes: UserAttributes,
}

#[derive(Serialize, ToSchema)]
pub struct UserAttributes {
    pub email: String,
    /// Shown once; only its hash is stored.
    pub api_key: String,
}

/// A key as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub prefix: String,
    pub tenant_id: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&StoredKey> for KeyView {
    fn from(k: &StoredKey) -> Self {
        Self {
            prefix: k.prefix.clone(),
            tenant_id: k.tenant_id.to_string(),
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: k.created_at.to_string(),
            last_used_at: k.last_used_at.map(|t| t.to_string()),
            revoked_at: k.revoked_at.map(|t| t.to_string()),
        }
    }
}

/// A newly issued key: the listing view plus the secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedKey {
    pub api_key: String,
    #[serde(flatten)]
    pub key: KeyView,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedKeyDocument {
    pub data: IssuedKeyResource,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedKeyResource {
    /// Always `keys`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The key's prefix.
    pub id: String,
    pub attributes: IssuedKey,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/keys` when called with an admin key.
#[derive(Deserialize, ToSchema)]
pub struct NewKeyBody {
    /// Defaults to `["read", "write"]`; `admin` allowed, `operator` not.
    pub scopes: Option<Vec<String>>,
}

pub fn parse_scopes(raw: Option<Vec<String>>, default: Scopes) -> ApiResult<Scopes> {
    let Some(raw) = raw else { return Ok(default) };
    let mut scopes = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let scope = s
            .parse::<Scope>()
            .map_err(|why| ApiError::field(FieldError::new(format!("/scopes/{i}"), why)))?;
        scopes.push(scope);
    }
    Scopes::new(scopes).ok_or_else(|| {
        ApiError::field(FieldError::new("/scopes", "at least one scope is required"))
    })
}

fn parse_credentials(body: serde_json::Value) -> ApiResult<(Email, Password)> {
    let creds: Credentials = from_json(body)?;
    ApiError::both(Email::parse(&creds.email), Password::parse(&creds.password))
}

fn json_api(status: StatusCode, body: impl Serialize, note: AuditNote) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response.extensions_mut().insert(note);
    response
}

fn issued(key: &ApiKey, stored: &StoredKey) -> IssuedKeyDocument {
    IssuedKeyDocument {
        data: IssuedKeyResource {
            kind: "keys",
            id: stored.prefix.clone(),
            attributes: IssuedKey {
                api_key: key.reveal(),
                key: KeyView::from(stored),
            },
        },
    }
}

/// Registers an account: a new tenant with a key that has `read`, `write` and `admin`.
#[utoipa::path(post, path = "/v1/users", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = UserDocument, content_type = "application/vnd.api+json"),
              (status = 400, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem)))]
pub async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let (email, password) = parse_credentials(body)?;
    let slot = state.logins.hashing_permit()?;
    let password_hash = hash_password(password.expose().to_owned(), slot).await?;
    let key = ApiKey::generate();
    let (account, _) = state
        .store
        .register_account(
            email.as_str(),
            &password_hash,
            key.prefix(),
            key.secret_hash(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("an account with this email already exists".into())
            }
            other => other.into(),
        })?;
    let document = UserDocument {
        data: UserResource {
            kind: "users",
            id: account.id.clone(),
            attributes: UserAttributes {
                email: account.email,
                api_key: key.reveal(),
            },
        },
    };
    Ok(json_api(
        StatusCode::CREATED,
        document,
        AuditNote::tenant_resource(account.tenant_id, account.id),
    ))
}

/// Issues a key. With an `admin` key: a new key for the caller's tenant with the
/// given scopes. Without a key: `{"email", "password"}` of an account → a fresh
/// owner key (for a lost key).
#[utoipa::path(post, path = "/v1/keys", tag = "accounts",
    request_body(content = Credentials, description = "Credentials without a key; {\"scopes\": [...]} with an admin key"),
    responses((status = 201, body = IssuedKeyDocument, content_type = "application/vnd.api+json"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let (tenant, scopes) = match caller {
        Caller::Key(key) => {
            key.require(Scope::Admin)?;
            let body: NewKeyBody = from_json(body)?;
            let scopes =
                parse_scopes(body.scopes, Scopes::parse_csv("read,write").expect("valid"))?;
            if scopes.contains(Scope::Operator) {
                return Err(ApiError::Forbidden(
                    "a tenant admin cannot grant the operator scope".into(),
                ));
            }
            (key.tenant_id.clone(), scopes)
        }
        Caller::Anonymous => match owner_by_password(&state, address, body).await? {
            Ok(tenant) => (tenant, Scopes::account_owner()),
            Err(refused) => return Ok(refused),
        },
    };
    let (key, stored) = issue_key(&*state.store, &tenant, scopes).await?;
    let note = AuditNote::tenant_resource(tenant, stored.prefix.clone());
    Ok(json_api(StatusCode::CREATED, issued(&key, &stored), note))
}

/// The tenant of the account whose `{"email", "password"}` these are, or the
/// 401 to answer (audited under the account's tenant when the email is known,
/// so its owner sees the guessing in `GET /v1/audit`). Attempts are throttled
/// per address and email. Also the console's password sign-in.
pub async fn owner_by_password(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    credentials: serde_json::Value,
) -> ApiResult<Result<TenantId, Response>> {
    let (email, password) = parse_credentials(credentials)?;
    state.logins.check(address, email.as_str())?;
    let slot = state.logins.hashing_permit()?;
    let account = state.store.account_by_email(email.as_str()).await?;
    let ok = verify_password(
        password.expose().to_owned(),
        account.as_ref().map(|a| a.password_hash.clone()),
        slot,
    )
    .await?;
    match account {
        Some(account) if ok => Ok(Ok(account.tenant_id)),
        account => {
            state.logins.failed(address, email.as_str());
            let mut response =
                ApiError::Unauthorized("email or password is wrong".into()).into_response();
            if let Some(account) = account {
                response.extensions_mut().insert(AuditNote::tenant_resource(
                    account.tenant_id,
                    "login-failed",
                ));
            }
            Ok(Err(response))
        }
    }
}

/// Lists the tenant's keys (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "accounts", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = KeyList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<KeyList>> {
    key.require(Scope::Admin)?;
    let paging = state.paging(format!("{}/keys", key.tenant_id)).await?;
    let page = state
        .store
        .list_keys(&key.tenant_id, paging.request(page)?)
        .await?;
    Ok(Json(KeyList {
        keys: page.items.iter().map(KeyView::from).collect(),
        next_cursor: paging.next(page.next_cursor),
    }))
}

/// Revokes one of the tenant's keys; it stops working at once on this replica, and
/// on every other replica that shares the cache (Redis).
#[utoipa::path(delete, path = "/v1/keys/{prefix}", tag = "accounts", security(("bearer" = [])),
    params(("prefix" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 403, body = Problem)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(prefix): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    revoke(&state, &key.tenant_id, &prefix).await
}

pub async fn revoke(state: &AppState, tenant: &TenantId, prefix: &str) -> ApiResult<Response> {
    if !state
        .store
        .revoke_key(tenant, prefix, state.clock.now())
        .await?
    {
        return Err(ApiError::NotFound("no such live key".into()));
    }
    state.auth.forget(prefix).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(prefix));
    Ok(response)
}
