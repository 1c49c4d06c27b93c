//! The console's pages, one file per area of SPEC §12.

mod access;
mod alerting;
mod bus;
mod collections;
mod objects;
mod overview;
mod telemetry;
mod uptime;

use axum::{
    response::{IntoResponse, Redirect, Response},
    Router,
};
use maud::{html, Markup};
use serde_json::Value;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(overview::routes())
        .merge(bus::routes())
        .merge(collections::routes())
        .merge(access::routes())
        .merge(uptime::routes())
        .merge(objects::routes())
        .merge(telemetry::routes())
        .merge(alerting::routes())
}

/// A listing's page in the URL (the cursor) and the outcome of the form that
/// led here (see [`done`]).
#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

/// Console lists show 50 rows a page. An empty `cursor=` (a hand-edited or
/// truncated link) is the first page rather than an error page.
fn page_query(cursor: Option<String>) -> crate::extract::Query<crate::extract::PageQuery> {
    crate::extract::Query(crate::extract::PageQuery {
        limit: Some(50),
        cursor: cursor.filter(|c| !c.is_empty()),
    })
}

/// After a form: back to `to` with a one-line outcome in the URL (`?done=…`),
/// shown by the page (POST, redirect, GET: a reload does not repeat the action).
fn done(to: &str, message: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    let message: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    Redirect::to(&format!("{to}{sep}done={message}")).into_response()
}

/// The outcome line a form left (see [`done`]).
fn outcome(done: Option<&str>) -> Markup {
    html! { @if let Some(text) = done { p.done role="status" { (text) } } }
}

/// A JSON value shown as compact text (attributes, filters, targets).
fn compact(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

fn number(value: &Value, field: &str) -> u64 {
    value.get(field).and_then(Value::as_u64).unwrap_or(0)
}
