//! Console sessions (SPEC §12). Signing in with an API key stores a session: the
//! browser holds a random token in an `HttpOnly`, `SameSite=Strict` cookie
//! scoped to `/console` (`Secure` behind TLS); the store keeps the token's
//! SHA-256, the key it acts as, a CSRF token and its end. On every console
//! request the edge turns the cookie back into the key's [`KeyContext`] through
//! the [`Authenticator`](crate::auth::Authenticator), so a session authorises
//! exactly as its key does, and a revoked key ends its sessions.
//!
//! Forms that change something carry the session's CSRF token
//! ([`CheckedForm`]); the `SameSite=Strict` cookie already keeps cross-site
//! posts from arriving signed in, and the token is the second lock.

use std::sync::Arc;

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use keel_core::apikey::{random_token, Scope};
use keel_store::{sessions::ConsoleSession, TenantId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    auth::{AuthFailure, Caller, KeyContext},
    state::AppState,
};

pub const SESSION_COOKIE: &str = "keel_session";
/// How long a session lasts from sign-in; signing in again starts a new one.
pub const SESSION_HOURS: i64 = 12;
const TOKEN_CHARS: usize = 48;
/// The most a console form may carry.
const FORM_LIMIT_BYTES: usize = 256 * 1024;

/// What a console handler knows about the signed-in session.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub token_hash: String,
    pub csrf: String,
    pub tenant_id: TenantId,
    /// The session's key was issued for it alone (see [`start`]).
    pub owns_key: bool,
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `Secure` when the browser reached Keel over TLS (Keel itself speaks plain
/// HTTP, so TLS means a proxy that says so).
fn secure(headers: &HeaderMap) -> &'static str {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok());
    if forwarded.is_some_and(|p| p.eq_ignore_ascii_case("https")) {
        "; Secure"
    } else {
        ""
    }
}

/// A `Set-Cookie` value for a console cookie (`max_age_s` 0 removes it).
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        secure(headers)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The edge's step for a console request without an `Authorization` header: the
/// key behind its session cookie, or `None` when there is no live session.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Arc<KeyContext>, SessionView)>, AuthFailure> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let token_hash = token_hash(&token);
    let found = state
        .store
        .session(&token_hash, state.clock.now())
        .await
        .map_err(|e| AuthFailure {
            tenant_id: None,
            key_prefix: None,
            error: e.into(),
        })?;
    let Some(session) = found else {
        return Ok(None);
    };
    let Some(key) = state.auth.authenticate_prefix(&session.key_prefix).await? else {
        return Ok(None);
    };
    if key.tenant_id != session.tenant_id {
        return Ok(None);
    }
    Ok(Some((
        key,
        SessionView {
            token_hash,
            csrf: session.csrf_token,
            tenant_id: session.tenant_id,
            owns_key: session.owns_key,
        },
    )))
}

/// Starts a session for `key`; the cookie's value. `owns_key`: the key was
/// issued for this session (an email and password sign-in) and is revoked when
/// the session ends.
pub async fn start(
    state: &AppState,
    key: &KeyContext,
    owns_key: bool,
) -> Result<String, crate::problem::ApiError> {
    let token = random_token(TOKEN_CHARS);
    let now = state.clock.now();
    state
        .store
        .create_session(
            &token_hash(&token),
            ConsoleSession {
                tenant_id: key.tenant_id.clone(),
                key_prefix: key.prefix.clone(),
                csrf_token: random_token(TOKEN_CHARS),
                created_at: now,
                expires_at: now + jiff::SignedDuration::from_hours(SESSION_HOURS),
                owns_key,
            },
        )
        .await?;
    Ok(token)
}

/// Expired sessions are deleted hourly by every api replica (a delete of none
/// is cheap; the lookup ignores expired rows either way), and the keys issued
/// for them revoked.
pub async fn prune(state: AppState) {
    let mut stop = state.stop_signal();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match state.store.prune_sessions(state.clock.now()).await {
            Ok(ended) => {
                for session in ended.iter().filter(|s| s.owns_key) {
                    end_owned_key(&state, &session.tenant_id, &session.key_prefix).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not prune console sessions"),
        }
    }
}

/// Revokes the key a session owned, now that the session has ended. Already
/// revoked (by its owner on the keys page) is fine.
pub async fn end_owned_key(state: &AppState, tenant: &TenantId, prefix: &str) {
    match crate::routes::accounts::revoke(state, tenant, prefix).await {
        Ok(_) | Err(crate::problem::ApiError::NotFound(_)) => {}
        Err(e) => tracing::warn!(error = %e, prefix, "could not revoke a console session's key"),
    }
}

/// A signed-in console request; without a session, a redirect to sign-in that
/// comes back to the page asked for.
#[derive(Debug, Clone)]
pub struct Signed {
    pub key: Arc<KeyContext>,
    pub session: SessionView,
}

impl Signed {
    pub fn can(&self, scope: Scope) -> bool {
        self.key.scopes.contains(scope)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let key = match parts.extensions.get::<Caller>() {
            Some(Caller::Key(key)) => key.clone(),
            _ => return Err(to_sign_in(parts)),
        };
        // A bearer key alone does not open the console: pages are for sessions.
        let session = parts
            .extensions
            .get::<SessionView>()
            .cloned()
            .ok_or_else(|| to_sign_in(parts))?;
        Ok(Self { key, session })
    }
}

fn to_sign_in(parts: &Parts) -> Response {
    let back = parts
        .uri
        .path_and_query()
        .map_or("/console", |p| p.as_str());
    let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    Redirect::to(&format!("/console/sign-in?next={next}")).into_response()
}

/// The fields of a submitted form, in order (a field may repeat: the selected
/// rows of a bulk action).
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field's value with surrounding space removed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Reads a form body of at most [`FORM_LIMIT_BYTES`].
pub async fn read_fields(body: axum::body::Body) -> Result<Fields, Response> {
    axum::body::to_bytes(body, FORM_LIMIT_BYTES)
        .await
        .map(|bytes| Fields::parse(&bytes))
        .map_err(|_| {
            super::document::refusal(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
        })
}

/// A state-changing form from a signed-in session, its CSRF token checked.
pub struct CheckedForm {
    pub signed: Signed,
    pub fields: Fields,
}

impl<S: Send + Sync> FromRequest<S> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let fields = read_fields(body).await?;
        let sent = fields.get("csrf").unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(signed.session.csrf.as_bytes())) {
            return Err(super::document::refusal(
                StatusCode::FORBIDDEN,
                "This form's CSRF token is missing or wrong: reload the page and try again.",
            ));
        }
        Ok(Self { signed, fields })
    }
}
