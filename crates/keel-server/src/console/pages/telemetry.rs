//! Logs (full-text search by account, level and time) and metric charts
//! (SPEC §6), from `GET /v1/logs` and `GET /v1/metrics/{name}`; every filter
//! is in the URL, so a search can be shared.

use axum::{
    extract::{Query, State},
    response::Response,
    routing::get,
    Router,
};
use maud::{html, Markup};
use serde::Deserialize;

use super::{compact, text};
use crate::{
    auth::Authed,
    console::{
        answered,
        layout::{error_notice, page, pager, series_chart},
        session::Signed,
    },
    extract::PathParams,
    routes::telemetry_queries::{self as queries, LogsQuery},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/logs", get(logs))
        .route("/console/metrics", get(metrics))
}

#[derive(Deserialize, Default)]
pub struct LogSearch {
    account: Option<String>,
    level: Option<String>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

fn field(id: &str, label: &str, value: &str, kind: &str) -> Markup {
    html! {
        label for=(id) { (label) }
        input id=(id) name=(id) value=(value) type=(kind);
    }
}

async fn logs(
    State(state): State<AppState>,
    signed: Signed,
    Query(s): Query<LogSearch>,
) -> Response {
    let get = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let found = answered(
        queries::get_logs(
            State(state),
            Authed(signed.key.clone()),
            crate::extract::Query(LogsQuery {
                account: get(&s.account),
                level: get(&s.level),
                q: get(&s.q),
                from: get(&s.from),
                to: get(&s.to),
                limit: Some(100),
                cursor: get(&s.cursor),
            }),
        )
        .await,
    );
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let (account, level, q, from, to) = (v(&s.account), v(&s.level), v(&s.q), v(&s.from), v(&s.to));
    let filters = [
        ("account", account.as_str()),
        ("level", level.as_str()),
        ("q", q.as_str()),
        ("from", from.as_str()),
        ("to", to.as_str()),
    ];
    page(
        &signed,
        "Logs",
        html! {
            form.inline method="get" action="/console/logs" {
                (field("q", "Words", &q, "search"))
                (field("account", "Account", &account, "text"))
                (field("level", "Level", &level, "text"))
                (field("from", "From (RFC 3339)", &from, "text"))
                (field("to", "To (RFC 3339)", &to, "text"))
                button type="submit" { "Search" }
            }
            @match &found {
                Err(e) => (error_notice(e)),
                Ok(found) => {
                    @let lines = found["logs"].as_array().cloned().unwrap_or_default();
                    @if lines.is_empty() { p { "No lines match (the default range is the last hour)." } } @else {
                        table {
                            caption { "Newest first" }
                            thead { tr { th scope="col" { "Time" } th scope="col" { "Level" } th scope="col" { "Account" } th scope="col" { "Line" } } }
                            tbody { @for l in &lines { tr {
                                td { (text(l, "ts")) } td { (text(l, "level")) } td { (compact(&l["account"])) }
                                td.data { (text(l, "log")) }
                            } } }
                        }
                    }
                    (pager("/console/logs", &filters, found["next_cursor"].as_str()))
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
pub struct MetricView {
    name: Option<String>,
    account: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    agg: Option<String>,
}

async fn metrics(
    State(state): State<AppState>,
    signed: Signed,
    Query(m): Query<MetricView>,
) -> Response {
    let v = |o: &Option<String>| o.clone().unwrap_or_default().trim().to_owned();
    let (name, account, from, to) = (v(&m.name), v(&m.account), v(&m.from), v(&m.to));
    let step = m
        .step
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "1m".into());
    let agg = m
        .agg
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "avg".into());
    let series = if name.is_empty() {
        None
    } else {
        let mut params = vec![
            ("step".to_owned(), step.clone()),
            ("agg".to_owned(), agg.clone()),
        ];
        for (k, val) in [("account", &account), ("from", &from), ("to", &to)] {
            if !val.is_empty() {
                params.push((k.to_owned(), val.clone()));
            }
        }
        Some(answered(
            queries::get_metric(
                State(state),
                Authed(signed.key.clone()),
                PathParams(name.clone()),
                crate::extract::Query(params),
            )
            .await,
        ))
    };
    page(
        &signed,
        "Metrics",
        html! {
            form.inline method="get" action="/console/metrics" {
                (field("name", "Metric", &name, "text"))
                (field("account", "Account", &account, "text"))
                (field("from", "From", &from, "text"))
                (field("to", "To", &to, "text"))
                (field("step", "Step", &step, "text"))
                label for="agg" { "Aggregate" }
                select #agg name="agg" {
                    @for a in ["avg", "sum", "min", "max", "count", "p50", "p95", "p99"] {
                        option value=(a) selected[a == agg] { (a) }
                    }
                }
                button type="submit" { "Chart" }
            }
            @match &series {
                None => p { "Name a metric to chart it." },
                Some(Err(e)) => (error_notice(e)),
                Some(Ok(series)) => {
                    @let points: Vec<(String, f64)> = series["points"].as_array().into_iter().flatten()
                        .map(|p| (text(p, "ts").to_owned(), p["value"].as_f64().unwrap_or(0.0))).collect();
                    @if points.is_empty() { p { "No points in this range (the default is the last hour)." } } @else {
                        (series_chart(&format!("{agg} of {name} per {step}"), &points))
                        table {
                            caption { "Points" }
                            thead { tr { th scope="col" { "Step" } th scope="col".num { (agg) } } }
                            tbody { @for (ts, value) in &points { tr { td { (ts) } td.num { (value) } } } }
                        }
                    }
                }
            }
        },
    )
}
