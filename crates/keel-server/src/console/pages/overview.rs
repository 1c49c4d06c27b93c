//! The overview (SPEC §12, §8): requests per minute, latency percentiles and
//! error rates, overall and per route, from `GET /v1/stats/overview` (so, as
//! that route, for operator keys), drawn as SVG on the server.

use axum::{
    extract::{Query, State},
    response::Response,
    routing::get,
    Router,
};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::{number, text};
use crate::{
    auth::Authed,
    console::{
        answered,
        layout::{error_page, labelled_bars, link, minute_chart, page},
        session::Signed,
    },
    routes::ops::{self, WindowQuery},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/overview", get(overview))
}

#[derive(Deserialize, Default)]
pub struct Window {
    window: Option<String>,
}

fn float(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(0.0)
}

async fn overview(
    State(state): State<AppState>,
    signed: Signed,
    Query(w): Query<Window>,
) -> Response {
    let window = w.window.unwrap_or_else(|| "1h".into());
    let stats = answered(
        ops::stats_overview(
            State(state),
            Authed(signed.key.clone()),
            crate::extract::Query(WindowQuery {
                window: Some(window.clone()),
            }),
        )
        .await,
    );
    let stats = match stats {
        Ok(stats) => stats,
        Err(e) => return error_page(&signed, e),
    };
    let minute_of = |text: &str| {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_second().div_euclid(60))
    };
    let per_minute: Vec<(i64, f64)> = stats["throughput_per_minute"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((minute_of(text(m, "minute"))?, number(m, "requests") as f64)))
        .collect();
    let first_minute = minute_of(text(&stats, "from")).unwrap_or(0);
    let minutes = number(&stats, "window_minutes") as i64;
    let routes = stats["routes"].as_array().cloned().unwrap_or_default();
    let p = |name: &str| float(&stats, &["overall", "latency_ms", name]);
    let by_route = |field: &[&str]| -> Vec<(String, f64)> {
        routes
            .iter()
            .take(12)
            .map(|r| (text(r, "route").to_owned(), float(r, field)))
            .collect()
    };
    page(
        &signed,
        "Overview",
        html! {
            nav.windows aria-label="Window" {
                @for option in ["15m", "1h", "6h", "24h"] {
                    @if option == window { strong { (option) } } @else {
                        a href=(link("/console/overview", &[("window", option)], None)) { (option) }
                    }
                    " "
                }
            }
            dl.stats {
                dt { "Requests" } dd data-field="requests" { (number(&stats["overall"], "requests")) }
                dt { "Per minute" } dd { (format!("{:.1}", float(&stats, &["overall", "requests_per_minute"]))) }
                dt { "p50 / p95 / p99 (ms)" } dd { (format!("{:.2} / {:.2} / {:.2}", p("p50"), p("p95"), p("p99"))) }
                dt { "Errors" } dd { (format!("{:.2}%", float(&stats, &["overall", "error_rate_percent"]))) }
                dt { "Messages published" } dd { (number(&stats["bus"], "published")) }
            }
            (minute_chart("Requests per minute", first_minute, minutes, &per_minute))
            (labelled_bars("p99 latency by route (ms)", &by_route(&["latency_ms", "p99"]), " ms"))
            (labelled_bars("Errors by route (%)", &by_route(&["error_rate_percent"]), "%"))
            table {
                caption { "Routes, busiest first" }
                thead { tr { th scope="col" { "Route" } th scope="col".num { "Requests" } th scope="col".num { "p50 ms" }
                    th scope="col".num { "p95 ms" } th scope="col".num { "p99 ms" } th scope="col".num { "Errors %" } } }
                tbody { @for r in &routes { tr {
                    td { code { (text(r, "route")) } }
                    td.num { (number(r, "requests")) }
                    td.num { (format!("{:.2}", float(r, &["latency_ms", "p50"]))) }
                    td.num { (format!("{:.2}", float(r, &["latency_ms", "p95"]))) }
                    td.num { (format!("{:.2}", float(r, &["latency_ms", "p99"]))) }
                    td.num { (format!("{:.2}", float(r, &["error_rate_percent"]))) }
                } } }
            }
        },
    )
}
