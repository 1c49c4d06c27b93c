//! The one error type at the HTTP edge. Every failure a handler or extractor can
//! meet becomes an [`ApiError`], and every `ApiError` renders as an RFC 9457 problem
//! document (`application/problem+json`). Nothing a client sends can make a 5xx
//! except a backend that is down (503) or a bug (500, logged with its cause).

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use keel_core::FieldError;
use keel_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// How long a client should wait before retrying when a backend is down.
const UNAVAILABLE_RETRY_AFTER_S: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    TooManyRequests { retry_after_s: u64, detail: String },
    /// A tenant reached one of its quotas (named as in the configuration).
    #[error("the {quota} quota ({limit}) is reached")]
    QuotaExceeded { quota: &'static str, limit: u64 },
    #[error("{0}")]
    RequestTimeout(String),
    /// A `Range` outside the object (of `size` bytes).
    #[error("the range is outside the object's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),

    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn field(error: FieldError) -> Self {
        Self::fields(vec![error])
    }

    /// Several fields wrong at once; the detail lists every reason.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| e.detail.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Self::Validation { detail, errors }
    }

    /// Both parsed values, or a 400 naming every field that failed.
    pub fn both<A, B>(a: Result<A, FieldError>, b: Result<B, FieldError>) -> Result<(A, B), Self> {
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (a, b) => Err(Self::fields(
                [a.err(), b.err()].into_iter().flatten().collect(),
            )),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } | Self::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QuotaExceeded { .. } => StatusCode::FORBIDDEN,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation",
            Self::MalformedBody(_) => "malformed-body",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::TooManyRequests { .. } => "rate-limited",
            Self::QuotaExceeded { .. } => "quota-exceeded",
            Self::RequestTimeout(_) => "request-timeout",
            Self::RangeNotSatisfiable { .. } => "range-not-satisfiable",
            Self::UriTooLong(_) => "uri-too-long",
            Self::HeadersTooLarge(_) => "headers-too-large",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "store unavailable");
                Self::Unavailable("the store is unavailable; retry shortly".into())
            }
            StoreError::Conflict(why) => Self::Conflict(why),
            StoreError::InvalidInput { field, why } => {
                Self::field(FieldError::new(format!("/{field}"), why))
            }
            StoreError::CounterExhausted => {
                Self::Conflict("the counter is at 9223372036854775807 and cannot go higher".into())
            }
            StoreError::QuotaExceeded { quota, limit } => Self::QuotaExceeded { quota, limit },
            StoreError::RateLimited {
                what,
                retry_after_s,
            } => Self::TooManyRequests {
                retry_after_s,
                detail: format!("{what} is used up for now; retry after the given seconds"),
            },
            StoreError::Internal(why) => Self::Internal(why),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path; filled in by the edge middleware.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// With `quota-exceeded`: which quota (its configuration name, without the
    /// `max_` prefix) and its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// JSON pointer (RFC 6901) into the request.
    pub pointer: String,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: String, errors: Vec<ProblemField>) -> Self {
        Self {
            kind: format!("urn:keel:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            instance: None,
            errors,
            quota: None,
            limit: None,
        }
    }
}

pub fn problem_response(
    status: StatusCode,
    slug: &str,
    detail: String,
    errors: Vec<ProblemField>,
) -> Response {
    render_problem(Problem::new(status, slug, detail, errors))
}

fn render_problem(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(why) = &self {
            tracing::error!(error = %why, "internal error");
        }
        let slug = self.slug();
        if let Self::QuotaExceeded { quota, limit } = &self {
            let mut problem = Problem::new(status, slug, self.to_string(), vec![]);
            problem.quota = Some((*quota).to_owned());
            problem.limit = Some(*limit);
            return render_problem(problem);
        }
        let content_range = match &self {
            Self::RangeNotSatisfiable { size } => Some(format!("bytes */{size}")),
            _ => None,
        };
        let (detail, errors, retry_after) = match self {
            Self::Validation { detail, errors } => (
                detail,
                errors
                    .into_iter()
                    .map(|e| ProblemField {
                        pointer: e.pointer,
                        detail: e.detail,
                    })
                    .collect(),
                None,
            ),
            Self::TooManyRequests {
                retry_after_s,
                detail,
            } => (detail, vec![], Some(retry_after_s)),
            Self::Unavailable(detail) => (detail, vec![], Some(UNAVAILABLE_RETRY_AFTER_S)),
            Self::Internal(_) => ("an internal error occurred".into(), vec![], None),
            other => (other.to_string(), vec![], None),
        };
        let mut response = problem_response(status, slug, detail, errors);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(range) = content_range.and_then(|r| HeaderValue::try_from(r).ok()) {
            response.headers_mut().insert(header::CONTENT_RANGE, range);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Marks an error response whose body is not a problem document on purpose —
/// one a protocol prescribes (OTLP's `google.rpc.Status`) or a console HTML
/// page — which the edge must leave as it is.
#[derive(Clone, Copy, Debug)]
pub struct OwnErrorBody;
