//! Middleware every request passes through, outermost first:
//!
//! 1. [`observe`] — request id (taken or made), timing, metrics, one JSON log line,
//!    and the guarantee that every error leaves as a problem document with
//!    `instance` set.
//! 2. [`access`] — establishes the [`Caller`] from the bearer key (401/429 here),
//!    then records the audit event for mutating requests and auth failures.

use std::{net::SocketAddr, time::Instant};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use keel_store::{AuditEvent, TenantId};

use crate::{
    audit::AuditNote,
    auth::Caller,
    problem::{problem_response, PROBLEM_JSON},
    state::AppState,
};

pub const REQUEST_ID: &str = "x-request-id";

/// The request's id, for handlers and the audit trail.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The tenant a request acted for, handed back up for the request log.
#[derive(Debug, Clone)]
struct LoggedTenant(TenantId);

/// A client-supplied id is kept when it is short, visible ASCII; otherwise Keel
/// makes one, so ids can always be logged and echoed safely.
fn accept_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(accept_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let path = req.uri().path().to_owned();

    let mut response = next.run(req).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = as_problem(response, &path).await;
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }

    let micros = started.elapsed().as_micros() as u64;
    let route = route.as_deref().unwrap_or("unmatched");
    state
        .telemetry
        .observe(method.as_str(), route, status.as_u16(), micros);
    let tenant = response
        .extensions()
        .get::<LoggedTenant>()
        .map(|t| t.0.to_string());
    tracing::info!(
        target: "keel::request",
        request_id = %request_id,
        method = %method,
        route,
        status = status.as_u16(),
        latency_ms = micros as f64 / 1000.0,
        tenant = tenant.as_deref().unwrap_or("-"),
    );
    response
}

/// Makes sure an error response is a problem document naming the request path —
/// whether a handler produced it or axum did (405, a rejected path, …).
async fn as_problem(response: Response, path: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut problem: serde_json::Value = if is_problem {
        serde_json::from_slice(&bytes).unwrap_or_default()
    } else {
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        let detail = if text.is_empty() {
            default_detail(parts.status)
        } else {
            text
        };
        let rebuilt = problem_response(parts.status, slug_for(parts.status), detail, vec![]);
        let bytes = axum::body::to_bytes(rebuilt.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    };
    if let Some(object) = problem.as_object_mut() {
        object.insert("instance".into(), path.into());
    }
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        Body::from(serde_json::to_vec(&problem).unwrap_or_default()),
    )
}

fn default_detail(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route or resource".into(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this route does not accept that method; see the Allow header".into()
        }
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    }
}

fn slug_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    }
}

/// Requests that change state: every non-safe method, plus the `GET …/next` routes,
/// which increment a counter despite their method.
fn is_mutating(method: &Method, route: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || route.ends_with("/next")
}

pub async fn access(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let event = |tenant_id: Option<TenantId>,
                 key_prefix: Option<String>,
                 resource_id,
                 status: StatusCode| AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        at: state.clock.now(),
        tenant_id,
        key_prefix,
        method: method.to_string(),
        route: route.clone(),
        resource_id,
        status: status.as_u16(),
        request_id: request_id.clone(),
        source: source.clone(),
    };

    let caller = match state.auth.authenticate(req.headers()).await {
        Ok(caller) => caller,
        Err(failure) => {
            let response = failure.error.into_response();
            let is_auth_failure = response.status() == StatusCode::UNAUTHORIZED;
            if is_auth_failure || is_mutating(&method, &route) {
                state.audit.record(event(
                    failure.tenant_id,
                    failure.key_prefix,
                    None,
                    response.status(),
                ));
            }
            return response;
        }
    };
    req.extensions_mut().insert(caller.clone());
    let mut response = next.run(req).await;

    let note = response
        .extensions_mut()
        .remove::<AuditNote>()
        .unwrap_or_default();
    let (tenant, prefix) = match caller {
        Caller::Key(key) => (Some(key.tenant_id), Some(key.prefix)),
        Caller::Anonymous => (note.tenant_id, None),
    };
    if let Some(tenant) = &tenant {
        response
            .extensions_mut()
            .insert(LoggedTenant(tenant.clone()));
    }
    if is_mutating(&method, &route) || response.status() == StatusCode::UNAUTHORIZED {
        state
            .audit
            .record(event(tenant, prefix, note.resource_id, response.status()));
    }
    response
}
