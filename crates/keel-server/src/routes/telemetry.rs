//! Telemetry in (SPEC §6): `POST /v1/telemetry` takes the simple JSON / NDJSON
//! shape; `POST /v1/logs` and `POST /v1/metrics` are OTLP/HTTP receivers that
//! answer as the OTLP specification says — 200 with `partial_success` when some
//! records were rejected (unset when none were), the response in the request's
//! encoding, and bad data (400, 413, 415) answered with a `google.rpc.Status` in
//! that encoding; 429 and 503 carry `Retry-After` so exporters back off and retry.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    apikey::Scope,
    telemetry::{
        otlp::{self, Encoding},
        simple::{self, Framing},
        Parsed,
    },
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    auth::Authed,
    extract::{from_json, JsonBody},
    ingest::{media_type, read_body, Counts},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

/// Most days a tenant may keep telemetry (ten years).
const MAX_RETENTION_DAYS: u64 = 3650;

#[derive(Serialize, ToSchema)]
pub struct Retention {
    /// Days lines and points are kept before they are pruned.
    pub days: u64,
    /// `true` when this is the server's default (`telemetry_retention_days`), not
    /// a value the tenant set.
    pub default: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct RetentionBody {
    /// 1 to 3650; `null` returns to the server's default.
    pub days: Option<u64>,
}

async fn retention_of(state: &AppState, tenant: &keel_store::TenantId) -> ApiResult<Retention> {
    Ok(match state.store.telemetry_retention(tenant).await? {
        Some(days) => Retention {
            days: u64::from(days),
            default: false,
        },
        None => Retention {
            days: state.config.limits.telemetry_retention_days,
            default: true,
        },
    })
}

/// How long this tenant's telemetry is kept.
#[utoipa::path(get, path = "/v1/telemetry/retention", tag = "telemetry", security(("bearer" = [])),
    responses((status = 200, body = Retention)))]
pub async fn get_retention(
    State(state): State<AppState>,
    Authed(key): Authed,
) -> ApiResult<Json<Retention>> {
    key.require(Scope::Read)?;
    Ok(Json(retention_of(&state, &key.tenant_id).await?))
}

/// Sets how long this tenant's telemetry is kept (pruned in the background
/// within about a minute); `{"days": null}` returns to the server's default.
#[utoipa::path(put, path = "/v1/telemetry/retention", tag = "telemetry", security(("bearer" = [])),
    request_body = RetentionBody,
    responses((status = 200, body = Retention), (status = 400, body = Problem)))]
pub async fn put_retention(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Retention>> {
    key.require(Scope::Admin)?;
    let body: RetentionBody = from_json(body)?;
    let days = match body.days {
        Some(days @ 1..=MAX_RETENTION_DAYS) => Some(days as u32),
        Some(_) => {
            return Err(ApiError::field(keel_core::FieldError::new(
                "/days",
                format!("days is from 1 to {MAX_RETENTION_DAYS}, or null for the default"),
            )))
        }
        None => None,
    };
    state
        .store
        .set_telemetry_retention(&key.tenant_id, days)
        .await?;
    Ok(Json(retention_of(&state, &key.tenant_id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct IngestReport {
    /// Log lines and metric points stored.
    pub accepted: u64,
    /// Items refused (each alone; the others were stored).
    pub rejected: u64,
    /// The first reasons, `where: why` (`/3: …` in an array, `line 7: …` in NDJSON).
    pub errors: Vec<String>,
}

/// Stores the parsed rows; returns what they counted and why items were rejected.
async fn store(
    state: &AppState,
    key: &keel_store::TenantId,
    parsed: Parsed,
    format: &str,
    bytes: usize,
    rejected_signal: &str,
) -> ApiResult<(Counts, Vec<String>)> {
    let counts = Counts::of(&parsed);
    if !parsed.batch.is_empty() {
        state
            .store
            .append_telemetry(key, parsed.batch, None)
            .await?;
    }
    state
        .telemetry
        .ingest
        .accepted(format, bytes, counts, rejected_signal);
    Ok((counts, parsed.rejected.errors))
}

/// Logs and metrics in the simple shape: one JSON object, an array of them, or
/// NDJSON (`application/x-ndjson`), optionally gzipped. Bad items are rejected
/// alone and reported; the rest are stored.
#[utoipa::path(post, path = "/v1/telemetry", tag = "telemetry", security(("bearer" = [])),
    request_body(content = Object, description = "`{\"log\", \"level\"?, \"ts\"?, \"attributes\"?, \"account\"?}` and/or `{\"metric\", \"value\"?, \"ts\"?, \"labels\"?, \"account\"?}`: one, an array, or NDJSON",
        content_type = "application/json"),
    responses((status = 202, body = IngestReport), (status = 400, body = Problem),
              (status = 413, body = Problem), (status = 415, body = Problem)))]
pub async fn post_telemetry(
    State(state): State<AppState>,
    Authed(key): Authed,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let framing = match media_type(&headers).as_str() {
        "application/json" => Framing::Json,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Framing::Ndjson,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send application/json or application/x-ndjson, not {other:?}"
            )))
        }
    };
    let body = read_body(body, &headers, state.config.limits.telemetry_max_bytes).await?;
    let parsed =
        simple::parse(&body, framing, state.clock.now()).map_err(ApiError::MalformedBody)?;
    let (counts, errors) =
        store(&state, &key.tenant_id, parsed, "simple", body.len(), "logs").await?;
    let report = IngestReport {
        accepted: counts.accepted(),
        rejected: counts.rejected,
        errors,
    };
    Ok((StatusCode::ACCEPTED, Json(report)).into_response())
}

/// `google.rpc.Status`, the body of an OTLP receiver's error answers (in the
/// request's encoding; this is its JSON form).
#[derive(Serialize, ToSchema)]
pub struct OtlpStatus {
    /// gRPC status code: 3 (invalid argument).
    pub code: i32,
    pub message: String,
}

#[derive(Clone, Copy)]
enum Signal {
    Logs,
    Metrics,
}

/// OTLP/HTTP log export (`ExportLogsServiceRequest`), protobuf or JSON.
#[utoipa::path(post, path = "/v1/logs", tag = "telemetry", security(("bearer" = [])),
    request_body(content = Object, description = "An OTLP `ExportLogsServiceRequest` (application/x-protobuf or application/json)",
        content_type = "application/json"),
    responses((status = 200, content_type = "application/json", body = Object, description = "`ExportLogsServiceResponse`, in the request's encoding"),
              (status = 400, content_type = "application/json", body = OtlpStatus, description = "`google.rpc.Status`"),
              (status = 413, content_type = "application/json", body = OtlpStatus, description = "`google.rpc.Status`"),
              (status = 415, content_type = "application/json", body = OtlpStatus, description = "`google.rpc.Status`")))]
pub async fn otlp_logs(
    State(state): State<AppState>,
    Authed(key): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    otlp_export(state, key, headers, body, Signal::Logs).await
}

/// OTLP/HTTP metric export (`ExportMetricsServiceRequest`), protobuf or JSON.
#[utoipa::path(post, path = "/v1/metrics", tag = "telemetry", security(("bearer" = [])),
    request_body(content = Object, description = "An OTLP `ExportMetricsServiceRequest` (application/x-protobuf or application/json)",
        content_type = "application/json"),
    responses((status = 200, content_type = "application/json", body = Object, description = "`ExportMetricsServiceResponse`, in the request's encoding"),
              (status = 400, content_type = "application/json", body = OtlpStatus, description = "`google.rpc.Status`"),
              (status = 413, content_type = "application/json", body = OtlpStatus, description = "`google.rpc.Status`"),
              (status = 415, content_type = "application/json", body = OtlpStatus, description = "`google.rpc.Status`")))]
pub async fn otlp_metrics(
    State(state): State<AppState>,
    Authed(key): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    otlp_export(state, key, headers, body, Signal::Metrics).await
}

async fn otlp_export(
    state: AppState,
    key: std::sync::Arc<crate::auth::KeyContext>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let encoding = match media_type(&headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            let error = ApiError::UnsupportedMediaType(format!(
                "send application/x-protobuf or application/json, not {other:?}"
            ));
            return otlp_error(error, Encoding::Json);
        }
    };
    match otlp_store(&state, &key, &headers, body, signal, encoding).await {
        Ok((counts, errors)) => {
            let message = errors.join("; ");
            let body = match signal {
                Signal::Logs => otlp::logs_response(counts.rejected, &message, encoding),
                Signal::Metrics => otlp::metrics_response(counts.rejected, &message, encoding),
            };
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(encoding.content_type()),
                )],
                body,
            )
                .into_response()
        }
        Err(error) => otlp_error(error, encoding),
    }
}

async fn otlp_store(
    state: &AppState,
    key: &std::sync::Arc<crate::auth::KeyContext>,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
    encoding: Encoding,
) -> ApiResult<(Counts, Vec<String>)> {
    key.require(Scope::Write)?;
    let body = read_body(body, headers, state.config.limits.telemetry_max_bytes).await?;
    let now = state.clock.now();
    let (parsed, name) = match signal {
        Signal::Logs => (otlp::decode_logs(&body, encoding, now), "logs"),
        Signal::Metrics => (otlp::decode_metrics(&body, encoding, now), "metrics"),
    };
    let parsed = parsed.map_err(ApiError::MalformedBody)?;
    store(state, &key.tenant_id, parsed, "otlp", body.len(), name).await
}

/// The error as OTLP/HTTP wants it for bad data (400, 413, 415): a
/// `google.rpc.Status` body in the request's encoding. Refusals that any route
/// may give (403, 408, 429, 503) stay problem documents like everywhere else in
/// Keel; exporters act on their status and `Retry-After`, not their body.
fn otlp_error(error: ApiError, encoding: Encoding) -> Response {
    if !matches!(
        error.status(),
        StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
    ) {
        return error.into_response();
    }
    let code = match error.status() {
        StatusCode::TOO_MANY_REQUESTS => 8,       // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,    // UNAVAILABLE
        StatusCode::UNAUTHORIZED => 16,           // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,               // PERMISSION_DENIED
        status if status.is_server_error() => 13, // INTERNAL
        _ => 3,                                   // INVALID_ARGUMENT
    };
    let message = error.to_string();
    let mut response = error.into_response();
    *response.body_mut() = Body::from(otlp::status_body(code, &message, encoding));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
        .extensions_mut()
        .insert(crate::problem::OwnErrorBody);
    response
}
