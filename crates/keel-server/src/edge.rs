//! The middleware every request passes through, [`edge`]: request id (taken or
//! made); the [`Caller`] from the bearer key (401/429 answered here); the handler;
//! every error turned into a problem document with `instance` set; the audit event
//! for mutating requests and authentication failures; metrics; one log line.

use std::{net::SocketAddr, time::Instant};

use axum::{
    body::Body,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use keel_store::AuditEvent;

use crate::{
    audit::AuditNote,
    auth::{AuthFailure, Caller},
    limits::Limits,
    problem::{ApiError, OwnErrorBody, Problem, PROBLEM_JSON},
    request_log::RequestLine,
    state::AppState,
};

pub const REQUEST_ID: &str = "x-request-id";

/// A client-supplied id is kept when it is short, visible ASCII; otherwise Keel
/// makes one, so ids can always be logged and echoed safely.
fn accept_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// The one middleware every request passes through (one layer rather than two
/// keeps per-request work and allocations down on the hottest path).
pub async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(accept_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().clone();
    // An unknown method is never a metric label or an audit row: any string can
    // be one, so it could grow both without bound.
    let unknown_method = !is_known_method(&method);
    let method_label = if unknown_method {
        "OTHER"
    } else {
        method.as_str()
    };
    let route = req.extensions().get::<MatchedPath>().cloned();
    // Cloning a Uri shares its bytes; request SLIs match on the path.
    let uri = req.uri().clone();
    let route_str = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let mutating = is_mutating(&method, route_str);
    let early = refuse_early(&req, &state.config.limits);
    // An unknown method skips authentication and is never audited; no route has a
    // handler for it, so the router answers 405 with `Allow`.
    let refused_early = early.is_some() || unknown_method;

    // Authentication: 401 and 429 are answered here, before any handler runs.
    let authenticated = match early {
        Some(error) => Err(AuthFailure {
            tenant_id: None,
            key_prefix: None,
            error,
        }),
        None if unknown_method => Ok(Caller::Anonymous),
        // A console page without a bearer key: the session cookie names the key.
        None if is_console(uri.path()) && !req.headers().contains_key(header::AUTHORIZATION) => {
            match crate::console::session::resolve(&state, req.headers()).await {
                Ok(Some((key, session))) => {
                    req.extensions_mut().insert(session);
                    Ok(Caller::Key(key))
                }
                Ok(None) => Ok(Caller::Anonymous),
                Err(failure) => Err(failure),
            }
        }
        None => state.auth.authenticate(req.headers()).await,
    };
    let (caller, mut response) = match authenticated {
        Ok(caller) => {
            // Handlers read an absent caller as anonymous; skip the insert then.
            if let Caller::Key(_) = &caller {
                req.extensions_mut().insert(caller.clone());
            }
            let source = source_of(&req);
            let response = next.run(req).await;
            (
                Ok((caller, source)),
                finish_errors(response, uri.path()).await,
            )
        }
        Err(failure) => {
            let path = short_path(req.uri().path());
            let source = source_of(&req);
            let response = finish_errors(failure.error.into_response(), &path).await;
            (
                Err((failure.tenant_id, failure.key_prefix, source)),
                response,
            )
        }
    };
    let status = response.status();
    let now = state.clock.now();

    // Audit: mutating requests and authentication failures.
    let note = response
        .extensions_mut()
        .remove::<AuditNote>()
        .unwrap_or_default();
    // Request SLIs count a key's requests for its tenant and keyless ones for
    // every tenant; a refused key's requests are nobody's.
    let sli_caller = match &caller {
        Ok((Caller::Key(key), _)) => Some(Some(key.tenant_id.clone())),
        Ok((Caller::Anonymous, _)) => Some(None),
        Err(_) => None,
    };
    let (tenant, key_prefix, source) = match caller {
        Ok((Caller::Key(key), source)) => (
            Some(key.tenant_id.clone()),
            Some(key.prefix.clone()),
            source,
        ),
        Ok((Caller::Anonymous, source)) => (note.tenant_id, None, source),
        Err(who) => who,
    };
    if !refused_early && (mutating || status == StatusCode::UNAUTHORIZED) {
        state.audit.record(AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            at: now,
            tenant_id: tenant.clone(),
            key_prefix,
            method: method.to_string(),
            route: route_str.to_owned(),
            resource_id: note.resource_id,
            status: status.as_u16(),
            request_id: request_id.clone(),
            source: source.map(|addr| addr.ip().to_string()),
        });
    }

    let micros = started.elapsed().as_micros() as u64;
    state
        .telemetry
        .observe(now, method_label, route_str, status.as_u16(), micros);
    if let Some(caller) = &sli_caller {
        state
            .request_slis
            .observe(uri.path(), caller.as_ref(), status.as_u16(), micros, now);
    }
    state.request_log.record(&RequestLine {
        at: now,
        request_id: &request_id,
        method: method_label,
        route: route_str,
        status: status.as_u16(),
        latency_micros: micros,
        tenant: tenant.as_ref().map_or("-", |t| t.as_str()),
    });
    // The id moves into the header without a copy (it is ASCII-checked on the way).
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(request_id)) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

fn is_known_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::PATCH
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Answers that need no route, key or body: a request target or header section
/// over the configured limits (414, 431). Hyper's own limits are set above these,
/// so these are what clients meet, as problem documents.
fn refuse_early(req: &Request, limits: &Limits) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_uri_bytes {
        return Some(ApiError::UriTooLong(format!(
            "the request target is {target} bytes; at most {} are accepted",
            limits.max_uri_bytes
        )));
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
        return Some(ApiError::HeadersTooLarge(format!(
            "at most {} header fields and {} header bytes are accepted",
            limits.max_headers, limits.max_header_bytes
        )));
    }
    None
}

/// A path short enough to echo in a problem's `instance`.
fn short_path(path: &str) -> String {
    let mut end = path.len().min(256);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
}

/// The peer address; turned into text only when an audit event needs it.
fn source_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Every error leaves as a problem document naming the request path.
async fn finish_errors(response: Response, path: &str) -> Response {
    let status = response.status();
    if response.extensions().get::<OwnErrorBody>().is_some() {
        response
    } else if status.is_client_error() || status.is_server_error() {
        as_problem(response, path).await
    } else {
        response
    }
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
        serde_json::to_value(Problem::new(
            parts.status,
            slug_for(parts.status),
            detail,
            vec![],
        ))
        .unwrap_or_default()
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
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    }
}

/// Requests that change state: every non-safe method, plus the `GET …/next` routes,
/// which increment a counter despite their method.
fn is_mutating(method: &Method, route: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || route.ends_with("/next")
}
