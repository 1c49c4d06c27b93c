//! The console (SPEC §12): server-rendered pages at `/console`, served by the
//! api role from templates compiled into the binary ([`maud`]) and one vendored
//! stylesheet; no script, so every page works without JavaScript and the
//! Content-Security-Policy forbids any.
//!
//! Pages call the same handlers as the API routes behind them, with the
//! session's key as the caller: what a page shows and allows is decided where
//! the API decides it, so the two cannot disagree (scopes, tenant, validation,
//! audit). Browsers asking for `/` are sent here; API clients keep their
//! problem documents.

mod document;
mod layout;
mod pages;
pub mod session;
mod sign_in;

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::map_response,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};
use keel_core::apikey::Scope;
use serde::Serialize;
use serde_json::Value;

use crate::{
    problem::{ApiError, ApiResult},
    state::AppState,
};
use session::Signed;

const STYLESHEET: &str = include_str!("static/console.css");

/// The console's routes; the edge resolves their session cookie into a caller.
pub fn router() -> Router<AppState> {
    let console = Router::new()
        .route("/console", get(home))
        .route(
            "/console/sign-in",
            get(sign_in::sign_in_page).post(sign_in::sign_in),
        )
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/static/console.css", get(stylesheet))
        .merge(pages::routes())
        .layer(map_response(|mut response: Response| async move {
            document::secure_headers(&mut response);
            response
        }));
    Router::new().route("/", get(root)).merge(console)
}

/// `GET /`: browsers go to the console; anything else gets the API's 404.
async fn root(req: Request) -> Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        Redirect::to("/console").into_response()
    } else {
        ApiError::NotFound("no such route; the API is under /v1 and the console at /console".into())
            .into_response()
    }
}

async fn home(signed: Signed) -> Redirect {
    if signed.can(Scope::Operator) {
        Redirect::to("/console/overview")
    } else {
        Redirect::to("/console/queues")
    }
}

async fn stylesheet() -> Response {
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        STYLESHEET,
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// What an API handler answered, as JSON for a page to show.
pub(crate) fn answered<T: Serialize>(result: ApiResult<Json<T>>) -> Result<Value, ApiError> {
    let Json(value) = result?;
    serde_json::to_value(value).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The JSON body of a handler's `Response` (handlers that set headers of their own).
pub(crate) async fn answered_body(result: ApiResult<Response>) -> Result<Value, ApiError> {
    let response = result?;
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))
}
