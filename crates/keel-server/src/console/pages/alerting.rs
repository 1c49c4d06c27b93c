//! Where incidents and alerts go, and when checks do not count (SPEC §7):
//! notification channels and maintenance windows, as their API lists them.

use axum::{extract::State, response::Response, routing::get, Router};
use maud::html;

use super::{compact, text};
use crate::{
    auth::Authed,
    console::{
        answered,
        layout::{error_page, page},
        session::Signed,
    },
    routes::{channels, maintenance},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/channels", get(channel_list))
        .route("/console/maintenance", get(window_list))
}

async fn channel_list(State(state): State<AppState>, signed: Signed) -> Response {
    let listed =
        match answered(channels::list_channels(State(state), Authed(signed.key.clone())).await) {
            Ok(listed) => listed,
            Err(e) => return error_page(&signed, e),
        };
    let all = listed["channels"].as_array().cloned().unwrap_or_default();
    page(
        &signed,
        "Channels",
        html! {
            @if all.is_empty() { p { "No channels: incidents and alerts are recorded but sent nowhere." } } @else {
                table {
                    caption { "Notification channels" }
                    thead { tr { th scope="col" { "Channel" } th scope="col" { "Kind" } th scope="col" { "URL" }
                        th scope="col" { "Delivered by" } } }
                    tbody { @for c in &all { tr {
                        td { (text(c, "name")) }
                        td { (text(c, "kind")) }
                        td { code { (text(c, "url")) } }
                        td { (text(c, "subscription")) }
                    } } }
                }
            }
        },
    )
}

async fn window_list(State(state): State<AppState>, signed: Signed) -> Response {
    let listed =
        match answered(maintenance::list_windows(State(state), Authed(signed.key.clone())).await) {
            Ok(listed) => listed,
            Err(e) => return error_page(&signed, e),
        };
    let all = listed["windows"].as_array().cloned().unwrap_or_default();
    page(
        &signed,
        "Maintenance",
        html! {
            @if all.is_empty() { p { "No maintenance windows." } } @else {
                table {
                    caption { "Maintenance windows: checks inside count as neither up nor down" }
                    thead { tr { th scope="col" { "Window" } th scope="col" { "When" } th scope="col" { "Time zone" }
                        th scope="col" { "Monitors" } } }
                    tbody { @for w in &all { tr {
                        td { (text(w, "name")) }
                        td { @if w["recurring"].is_null() {
                                (compact(&w["starts_at"])) " to " (compact(&w["ends_at"]))
                            } @else { (compact(&w["recurring"])) } }
                        td { (compact(&w["time_zone"])) }
                        td { @if w["monitors"].as_array().is_none_or(Vec::is_empty) { "all" } @else { (compact(&w["monitors"])) } }
                    } } }
                }
            }
        },
    )
}
