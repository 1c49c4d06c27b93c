//! The birthday greeter (SPEC §2): `PUT|GET /hello/{username}`. Public; with a key,
//! the key's tenant is used, else the default tenant.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use keel_core::{
    apikey::Scope,
    greeter::{greeting, DateOfBirth, Username},
    FieldError,
};
use keel_store::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::Caller,
    cached_reads::{Cached, CachedReads},
    extract::{JsonBody, PathParams},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

#[derive(Deserialize, ToSchema)]
pub struct HelloBody {
    /// `YYYY-MM-DD`, a real date before today.
    #[serde(rename = "dateOfBirth")]
    #[schema(example = "1990-07-14")]
    pub date_of_birth: String,
}

#[derive(Serialize, ToSchema)]
pub struct HelloMessage {
    #[schema(example = "Hello, Ana! Your birthday is in 5 day(s)")]
    pub message: String,
}

fn tenant_for(caller: &Caller, scope: Scope) -> ApiResult<TenantId> {
    match caller {
        Caller::Anonymous => Ok(TenantId::default_tenant()),
        Caller::Key(key) => {
            key.require(scope)?;
            Ok(key.tenant_id.clone())
        }
    }
}

/// Saves or replaces a user's date of birth.
#[utoipa::path(put, path = "/hello/{username}", tag = "greeter",
    params(("username" = String, Path, description = "1–64 letters")),
    request_body = HelloBody,
    responses((status = 204, description = "Saved"), (status = 400, body = Problem)))]
pub async fn put_hello(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw_username): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let tenant = tenant_for(&caller, Scope::Write)?;
    let today = state.clock.today(&state.config.time_zone);
    let username = Username::parse(&raw_username);
    let born = date_of_birth_field(&body).and_then(|raw| DateOfBirth::parse(raw, today));
    let (username, born) = ApiError::both(username, born)?;
    state
        .store
        .save_birthday(&tenant, &username, born.date())
        .await?;
    state
        .reads
        .invalidate(&CachedReads::greeter_scope(&tenant, username.as_str()))
        .await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(AuditNote::tenant_resource(tenant, username.as_str()));
    Ok(response)
}

fn date_of_birth_field(body: &serde_json::Value) -> Result<&str, FieldError> {
    let Some(object) = body.as_object() else {
        return Err(FieldError::new(
            "",
            "the body must be a JSON object with dateOfBirth",
        ));
    };
    match object.get("dateOfBirth") {
        None => Err(FieldError::new("/dateOfBirth", "dateOfBirth is required")),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(
            "/dateOfBirth",
            "dateOfBirth must be a string YYYY-MM-DD",
        )),
    }
}

/// Greets the user with the days left until their birthday.
#[utoipa::path(get, path = "/hello/{username}", tag = "greeter",
    params(("username" = String, Path, description = "1–64 letters")),
    responses((status = 200, body = HelloMessage), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get_hello(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw_username): PathParams<String>,
) -> ApiResult<Json<HelloMessage>> {
    let tenant = tenant_for(&caller, Scope::Read)?;
    let username = Username::parse(&raw_username).map_err(ApiError::field)?;
    // Cached as the date's text, or empty for "no such user".
    let scope = CachedReads::greeter_scope(&tenant, username.as_str());
    let cached = state
        .reads
        .read(
            Cached::greeter,
            &scope,
            "",
            state.config.read_cache_ttl,
            || async {
                let stored = state.store.birthday(&tenant, &username).await?;
                Ok::<_, ApiError>(
                    stored.map_or_else(Bytes::new, |date| Bytes::from(date.to_string())),
                )
            },
        )
        .await?;
    let born = std::str::from_utf8(&cached)
        .ok()
        .and_then(|text| text.parse::<jiff::civil::Date>().ok());
    let born = born.ok_or_else(|| {
        ApiError::NotFound(format!("no date of birth saved for {}", username.as_str()))
    })?;
    let today = state.clock.today(&state.config.time_zone);
    Ok(Json(HelloMessage {
        message: greeting(&username, DateOfBirth::from_stored(born), today),
    }))
}
