//! Signing in and out of the console, with an API key or, for an account
//! owner, with email and password (the session then acts as an owner key issued
//! for it alone, revoked when the session ends). The sign-in forms are
//! guarded against login CSRF by a double-submit nonce (a `SameSite=Strict`
//! cookie matched by a hidden field); failed attempts count against the client
//! address (and, for passwords, the email) as the API's password logins do, and
//! every attempt is audited by the edge (a 401 or a 303 on `POST
//! /console/sign-in`).

use axum::{
    extract::{Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use keel_core::apikey::{random_token, ApiKey, Scopes};
use maud::{html, Markup};
use serde::Deserialize;

use super::{
    document::{public_page, refusal},
    session::{self, cookie, read_fields, set_cookie, CheckedForm, SESSION_COOKIE},
};
use crate::{
    audit::AuditNote, auth::KeyContext, logins::ClientAddress, problem::ApiError, routes::accounts,
    services::issue_key, state::AppState,
};

const NONCE_COOKIE: &str = "keel_sign_in";

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a console path may be returned to (never another site).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("/console//") => n,
        _ => "/console",
    }
}

fn form(nonce: &str, next: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.stack method="post" action="/console/sign-in" {
            input type="hidden" name="nonce" value=(nonce);
            input type="hidden" name="next" value=(next);
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="current-password" required
                placeholder="keel_…" autofocus;
            button type="submit" { "Sign in" }
        }
        p.hint { "Any key works; what you see and may do follows its tenant and scopes." }
        h2 { "Or, as an account's owner" }
        form.stack method="post" action="/console/sign-in" {
            input type="hidden" name="nonce" value=(nonce);
            input type="hidden" name="next" value=(next);
            label for="email" { "Email" }
            input #email type="email" name="email" autocomplete="username" required;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password"
                required;
            button type="submit" { "Sign in" }
        }
    }
}

fn sign_in_form(
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> Response {
    let nonce = random_token(32);
    let mut response = public_page(status, "Sign in", form(&nonce, next, error));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, NONCE_COOKIE, &nonce, 600),
    );
    response
}

pub async fn sign_in_page(headers: HeaderMap, Query(next): Query<Next>) -> Response {
    sign_in_form(
        &headers,
        StatusCode::OK,
        safe_next(next.next.as_deref()),
        None,
    )
}

pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let fields = match read_fields(body).await {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let next = safe_next(fields.get("next")).to_owned();
    let nonce_ok = matches!(
        (cookie(&headers, NONCE_COOKIE), fields.get("nonce")),
        (Some(a), Some(b)) if !a.is_empty() && a == b
    );
    if !nonce_ok {
        return refusal(
            StatusCode::FORBIDDEN,
            "This sign-in form has expired or came from another site: open the sign-in page again.",
        );
    }
    if let Err(e) = state.logins.check_address(address) {
        return sign_in_form(
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some(&e.to_string()),
        );
    }
    if let Some(email) = fields.text("email") {
        let credentials = serde_json::json!({
            "email": email,
            "password": fields.get("password").unwrap_or_default(),
        });
        return with_password(&state, address, &headers, &next, credentials).await;
    }
    let failed = |why: &str| {
        state.logins.failed_address(address);
        sign_in_form(&headers, StatusCode::UNAUTHORIZED, &next, Some(why))
    };
    let Some(presented) = fields.text("key").and_then(ApiKey::parse) else {
        return failed("That is not an API key: keys look like keel_<prefix>_<secret>.");
    };
    let key = match state.auth.verify(&presented).await {
        Ok(key) => key,
        Err(failure) => {
            let status = failure.error.status();
            if status == StatusCode::UNAUTHORIZED {
                let mut response = failed("That key is unknown or revoked.");
                response.extensions_mut().insert(AuditNote {
                    tenant_id: failure.tenant_id,
                    resource_id: failure.key_prefix,
                });
                return response;
            }
            return sign_in_form(&headers, status, &next, Some(&failure.error.to_string()));
        }
    };
    signed_in(&state, &headers, &next, &key, false).await
}

/// An account owner's sign-in: their credentials checked as `POST /v1/keys`
/// checks them, then a session acting as an owner key issued for it alone
/// (its secret is never shown; the key ends with the session).
async fn with_password(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    next: &str,
    credentials: serde_json::Value,
) -> Response {
    let refused = |e: ApiError| sign_in_form(headers, e.status(), next, Some(&e.to_string()));
    let tenant = match accounts::owner_by_password(state, address, credentials).await {
        Ok(Ok(tenant)) => tenant,
        Ok(Err(wrong)) => {
            let mut response = sign_in_form(
                headers,
                StatusCode::UNAUTHORIZED,
                next,
                Some("That email and password do not match an account."),
            );
            if let Some(note) = wrong.extensions().get::<AuditNote>() {
                response.extensions_mut().insert(note.clone());
            }
            return response;
        }
        Err(e) => return refused(e),
    };
    let issued = issue_key(&*state.store, &tenant, Scopes::account_owner()).await;
    let key = match issued {
        Ok((key, _)) => state.auth.verify(&key).await.map_err(|f| f.error),
        Err(e) => Err(e.into()),
    };
    match key {
        Ok(key) => signed_in(state, headers, next, &key, true).await,
        Err(e) => refused(e),
    }
}

/// Starts the session and sends the browser on, with its cookie.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    key: &KeyContext,
    owns_key: bool,
) -> Response {
    let token = match session::start(state, key, owns_key).await {
        Ok(token) => token,
        Err(e) => return sign_in_form(headers, e.status(), next, Some(&e.to_string())),
    };
    let mut response = Redirect::to(next).into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        set_cookie(
            headers,
            SESSION_COOKIE,
            &token,
            session::SESSION_HOURS * 3600,
        ),
    );
    cookies.append(header::SET_COOKIE, set_cookie(headers, NONCE_COOKIE, "", 0));
    response.extensions_mut().insert(AuditNote {
        tenant_id: Some(key.tenant_id.clone()),
        resource_id: Some(key.prefix.clone()),
    });
    response
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let session = &form.signed.session;
    let ended = state
        .store
        .delete_session(&session.tenant_id, &session.token_hash)
        .await
        .map_err(ApiError::from);
    if let Err(e) = ended {
        return super::layout::error_page(&form.signed, e);
    }
    if session.owns_key {
        session::end_owned_key(&state, &session.tenant_id, &form.signed.key.prefix).await;
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    response.extensions_mut().insert(AuditNote {
        tenant_id: Some(form.signed.key.tenant_id.clone()),
        resource_id: Some(form.signed.key.prefix.clone()),
    });
    response
}
