//! Extractors that turn a request into domain input or a problem response — never
//! axum's plain-text rejections.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use keel_core::FieldError;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Media types a JSON body may arrive as. Counter routes speak JSON:API, and every
/// route accepts both, so a client need not remember which is which.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "application/vnd.api+json"
}

/// A request body parsed as JSON into a `serde_json::Value`. Handlers then read it
/// into a typed request with [`from_json`], which reports *where* it went wrong.
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json_media_type(content_type) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json (or application/vnd.api+json)".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if crate::connections::is_body_timeout(&rejection) {
                ApiError::RequestTimeout("the request body did not arrive in time".into())
            } else if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is over the size limit".into())
            } else {
                ApiError::MalformedBody(format!("could not read the request body: {rejection}"))
            }
        })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
        Ok(Self(value))
    }
}

/// Reads a JSON value into `T`; a missing field or a wrong type becomes a 400 whose
/// pointer names the field.
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let pointer = json_pointer(&e.path().to_string());
        let detail = e.inner().to_string();
        ApiError::field(FieldError::new(pointer, detail))
    })
}

/// serde_path_to_error writes `a.b[0]`; problem documents want `/a/b/0`.
fn json_pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for part in path.split('.') {
        for piece in part.split('[') {
            let piece = piece.trim_end_matches(']');
            if !piece.is_empty() {
                out.push('/');
                out.push_str(&piece.replace('~', "~0").replace('/', "~1"));
            }
        }
    }
    out
}

/// Query string parsed into `T`, as a 400 problem on failure.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::field(FieldError::new("/query", e.body_text())))
    }
}

/// Path parameters parsed into `T`, as a 400 problem on failure.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::MalformedBody(format!("bad path parameter: {}", e.body_text())))
    }
}

/// `?limit=&cursor=` as SPEC §0 defines them: limit 1–1000, default 100.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::field(FieldError::new(
                "/limit",
                format!("limit must be from 1 to {}", Self::MAX_LIMIT),
            )));
        }
        Ok(limit)
    }
}

/// Cursors as clients see them: sealed positions (`keel_core::cursor`), valid only
/// in the listing (`scope`) that issued them. Made by `AppState::paging`.
pub struct Paging<'a> {
    pub(crate) codec: &'a keel_core::cursor::CursorCodec,
    pub(crate) scope: String,
}

impl Paging<'_> {
    /// The store's page request: the limit checked, the cursor opened.
    pub fn request(&self, query: PageQuery) -> Result<keel_store::PageRequest, ApiError> {
        let limit = query.limit()?;
        let cursor = match query.cursor {
            None => None,
            Some(sealed) => Some(self.codec.decode(&self.scope, &sealed).ok_or_else(|| {
                ApiError::field(FieldError::new(
                    "/cursor",
                    "not a cursor this listing issued",
                ))
            })?),
        };
        Ok(keel_store::PageRequest { limit, cursor })
    }

    /// The `next_cursor` to hand out for the store's position.
    pub fn next(&self, position: Option<String>) -> Option<String> {
        position.map(|p| self.codec.encode(&self.scope, &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        assert_eq!(json_pointer("."), "");
        assert_eq!(json_pointer("dateOfBirth"), "/dateOfBirth");
        assert_eq!(
            json_pointer("data.attributes.value"),
            "/data/attributes/value"
        );
        assert_eq!(json_pointer("records[3].a/b"), "/records/3/a~1b");
    }

    #[test]
    fn media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(is_json_media_type("application/vnd.api+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type(""));
    }
}
