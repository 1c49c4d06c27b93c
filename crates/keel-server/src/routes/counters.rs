//! Auto-incrementing integers as a service (SPEC §3): the default counter at
//! `/v1/next` and `/v1/current`, named ones under `/v1/counters/{name}/…`. Every
//! answer is a JSON:API document.

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    apikey::Scope,
    counter::{CounterName, CounterValue},
    FieldError,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::Authed,
    extract::{JsonBody, PathParams},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

pub const JSON_API: &str = "application/vnd.api+json";

#[derive(Serialize, ToSchema)]
pub struct IntegerDocument {
    pub data: IntegerResource,
}

#[derive(Serialize, ToSchema)]
pub struct IntegerResource {
    /// Always `integer`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The value, as a string (JSON:API ids are strings).
    pub id: String,
    pub attributes: IntegerAttributes,
}

#[derive(Serialize, ToSchema)]
pub struct IntegerAttributes {
    pub value: i64,
}

/// Either `{"current": N}` or `{"data": {"type": "integer", "attributes": {"value": N}}}`.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the request for OpenAPI; parsed by hand below
pub struct SetCurrentBody {
    pub current: Option<i64>,
    pub data: Option<serde_json::Value>,
}

fn integer_response(counter: &CounterName, value: i64) -> Response {
    let mut response = Json(IntegerDocument {
        data: IntegerResource {
            kind: "integer",
            id: value.to_string(),
            attributes: IntegerAttributes { value },
        },
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response
        .extensions_mut()
        .insert(AuditNote::resource(counter.as_str()));
    response
}

async fn next_value(
    state: &AppState,
    key: &crate::auth::KeyContext,
    counter: CounterName,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let value = state.store.next(&key.tenant_id, &counter).await?;
    Ok(integer_response(&counter, value))
}

async fn current_value(
    state: &AppState,
    key: &crate::auth::KeyContext,
    counter: CounterName,
) -> ApiResult<Response> {
    key.require(Scope::Read)?;
    let value = state.store.current(&key.tenant_id, &counter).await?;
    Ok(integer_response(&counter, value))
}

async fn set_value(
    state: &AppState,
    key: &crate::auth::KeyContext,
    counter: CounterName,
    body: serde_json::Value,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let value = parse_set_body(&body).map_err(ApiError::field)?;
    let value = state
        .store
        .set_current(&key.tenant_id, &counter, value)
        .await?;
    Ok(integer_response(&counter, value))
}

/// Reads the new value from either accepted body shape.
fn parse_set_body(body: &serde_json::Value) -> Result<CounterValue, FieldError> {
    let object = body
        .as_object()
        .ok_or_else(|| FieldError::new("", "the body must be a JSON object"))?;
    if let Some(current) = object.get("current") {
        return CounterValue::from_json(current, "/current");
    }
    if let Some(data) = object.get("data") {
        if let Some(kind) = data.get("type") {
            if kind != "integer" {
                return Err(FieldError::new("/data/type", "type must be \"integer\""));
            }
        }
        let value = data
            .get("attributes")
            .and_then(|a| a.get("value"))
            .ok_or_else(|| FieldError::new("/data/attributes/value", "value is required"))?;
        return CounterValue::from_json(value, "/data/attributes/value");
    }
    Err(FieldError::new(
        "/current",
        "send {\"current\": N} or {\"data\": {\"type\": \"integer\", \"attributes\": {\"value\": N}}}",
    ))
}

fn named(raw: &str) -> ApiResult<CounterName> {
    CounterName::parse(raw).map_err(ApiError::field)
}

/// Increments the default counter and returns the new value (1 on first call).
#[utoipa::path(get, path = "/v1/next", tag = "counters", security(("bearer" = [])),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json"),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn get_next(State(state): State<AppState>, Authed(key): Authed) -> ApiResult<Response> {
    next_value(&state, &key, CounterName::default_counter()).await
}

/// Same as `GET /v1/next`.
#[utoipa::path(post, path = "/v1/next", tag = "counters", security(("bearer" = [])),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json"),
              (status = 401, body = Problem)))]
pub async fn post_next(State(state): State<AppState>, Authed(key): Authed) -> ApiResult<Response> {
    next_value(&state, &key, CounterName::default_counter()).await
}

/// The default counter's value, unchanged (0 before the first `next`).
#[utoipa::path(get, path = "/v1/current", tag = "counters", security(("bearer" = [])),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json"),
              (status = 401, body = Problem)))]
pub async fn get_current(
    State(state): State<AppState>,
    Authed(key): Authed,
) -> ApiResult<Response> {
    current_value(&state, &key, CounterName::default_counter()).await
}

/// Sets the default counter (0 ≤ N ≤ 2^63−1).
#[utoipa::path(put, path = "/v1/current", tag = "counters", security(("bearer" = [])),
    request_body(content = SetCurrentBody, content_type = "application/json"),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json"),
              (status = 400, body = Problem), (status = 415, body = Problem)))]
pub async fn put_current(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    set_value(&state, &key, CounterName::default_counter(), body).await
}

/// Increments a named counter.
#[utoipa::path(get, path = "/v1/counters/{name}/next", tag = "counters", security(("bearer" = [])),
    params(("name" = String, Path, description = "1–64 of A–Z a–z 0–9 _ - .")),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json"),
              (status = 400, body = Problem)))]
pub async fn get_named_next(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(name): PathParams<String>,
) -> ApiResult<Response> {
    next_value(&state, &key, named(&name)?).await
}

/// Same as `GET /v1/counters/{name}/next`.
#[utoipa::path(post, path = "/v1/counters/{name}/next", tag = "counters", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json")))]
pub async fn post_named_next(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(name): PathParams<String>,
) -> ApiResult<Response> {
    next_value(&state, &key, named(&name)?).await
}

/// A named counter's value, unchanged.
#[utoipa::path(get, path = "/v1/counters/{name}/current", tag = "counters", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json")))]
pub async fn get_named_current(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(name): PathParams<String>,
) -> ApiResult<Response> {
    current_value(&state, &key, named(&name)?).await
}

/// Sets a named counter.
#[utoipa::path(put, path = "/v1/counters/{name}/current", tag = "counters", security(("bearer" = [])),
    params(("name" = String, Path)),
    request_body(content = SetCurrentBody, content_type = "application/json"),
    responses((status = 200, body = IntegerDocument, content_type = "application/vnd.api+json"),
              (status = 400, body = Problem)))]
pub async fn put_named_current(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    set_value(&state, &key, named(&name)?, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_bodies() {
        let ok = |v| parse_set_body(&v).map(CounterValue::get);
        assert_eq!(ok(json!({"current": 7})), Ok(7));
        assert_eq!(
            ok(json!({"data": {"type": "integer", "attributes": {"value": 9}}})),
            Ok(9)
        );
        assert_eq!(ok(json!({"current": 9223372036854775807u64})), Ok(i64::MAX));
        for (bad, pointer) in [
            (json!({"current": -1}), "/current"),
            (json!({"current": 1.5}), "/current"),
            (json!({"current": 5.0}), "/current"),
            (json!({"current": "5"}), "/current"),
            (json!({"current": 9223372036854775808u64}), "/current"),
            (json!({"current": null}), "/current"),
            (json!({}), "/current"),
            (json!([1]), ""),
            (
                json!({"data": {"type": "users", "attributes": {"value": 1}}}),
                "/data/type",
            ),
            (
                json!({"data": {"type": "integer"}}),
                "/data/attributes/value",
            ),
        ] {
            assert_eq!(parse_set_body(&bad).unwrap_err().pointer, pointer, "{bad}");
        }
    }
}
