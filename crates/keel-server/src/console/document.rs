//! The HTML document every console answer is — its head, its security headers —
//! and the pages that need no session (sign-in, refusals before a page could be
//! built). The signed-in shell is `layout`'s.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use maud::{html, Markup, DOCTYPE};

use crate::problem::OwnErrorBody;

/// Headers every console answer carries: nothing inline may run, nothing loads
/// from elsewhere, no framing, and nothing is cached (pages show live state).
pub fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

pub(super) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response();
    if status.is_client_error() || status.is_server_error() {
        // An HTML page, not a problem document: the edge leaves it as it is.
        response.extensions_mut().insert(OwnErrorBody);
    }
    response
}

pub(super) fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Keel" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body { (body) }
        }
    }
}

/// A page for someone not signed in (the sign-in form).
pub fn public_page(status: StatusCode, title: &str, content: Markup) -> Response {
    html_response(
        status,
        document(
            title,
            html! {
                main #main.narrow {
                    h1 { (title) }
                    (content)
                }
            },
        ),
    )
}

/// A refusal before any page could be built (a bad CSRF token, a huge form).
pub fn refusal(status: StatusCode, detail: &str) -> Response {
    public_page(
        status,
        status.canonical_reason().unwrap_or("Refused"),
        html! { p.error role="alert" { (detail) } p { a href="/console" { "Back to the console" } } },
    )
}
