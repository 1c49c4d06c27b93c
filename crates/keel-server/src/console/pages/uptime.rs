//! Monitors with their state, 90-day uptime bars and incidents (cause and notes
//! editable), and SLOs with budget, burn rates and alerts (SPEC §7).

use axum::{
    extract::{Query, State},
    response::Response,
    routing::{get, post},
    Router,
};
use maud::{html, PreEscaped};
use serde_json::{json, Value};

use super::{compact, done, number, outcome, page_query, text, ListQuery};
use crate::{
    auth::Authed,
    console::{
        answered,
        layout::{csrf_field, error_page, page, pager, seg},
        session::{CheckedForm, Signed},
    },
    extract::{JsonBody, PathParams},
    routes::{monitors, slos, status, uptime},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/monitors", get(monitor_list))
        .route("/console/monitors/{id}", get(monitor))
        .route("/console/incidents/{id}", post(edit_incident))
        .route("/console/slos", get(slo_list))
}

fn bars_svg(name: &str, bars: &str) -> PreEscaped<String> {
    PreEscaped(format!(
        "<svg class=\"bars\" role=\"img\" aria-label=\"90 days of uptime for {}\" viewBox=\"0 0 {} 28\" preserveAspectRatio=\"none\">{bars}</svg>",
        status::escape(name),
        status::BARS_WIDTH
    ))
}

async fn monitor_list(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = answered(
        monitors::list_monitors(
            State(state.clone()),
            Authed(signed.key.clone()),
            page_query(q.cursor.clone()),
        )
        .await,
    );
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => return error_page(&signed, e),
    };
    let now = state.clock.now();
    let mut rows = Vec::new();
    for m in listed["monitors"].as_array().into_iter().flatten() {
        match status::ninety_day_bars(&state, &signed.key.tenant_id, text(m, "id"), now).await {
            Ok((bars, total)) => rows.push((m, bars, status::uptime_text(total.uptime_percent()))),
            Err(e) => return error_page(&signed, e.into()),
        }
    }
    page(
        &signed,
        "Monitors",
        html! {
            @if rows.is_empty() { p { "No monitors yet." } } @else {
                table {
                    caption { "Monitors with 90 days of uptime" }
                    thead { tr { th scope="col" { "Monitor" } th scope="col" { "State" } th scope="col" { "90 days" }
                        th scope="col" { "Uptime" } th scope="col" { "Last check" } } }
                    tbody { @for (m, bars, up) in &rows { tr {
                        td { a href=(format!("/console/monitors/{}", seg(text(m, "id")))) { (text(m, "name")) }
                            br; small { (text(m, "kind")) " " (compact(&m["target"])) } }
                        td { span class=(format!("state {}", text(m, "status"))) { (text(m, "status")) } }
                        td.bars { (bars_svg(text(m, "name"), bars)) }
                        td { (up) }
                        td { (compact(&m["last_check_at"])) }
                    } } }
                }
            }
            (pager("/console/monitors", &[], listed["next_cursor"].as_str()))
        },
    )
}

async fn monitor(
    State(state): State<AppState>,
    signed: Signed,
    PathParams(id): PathParams<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let key = || Authed(signed.key.clone());
    let loaded = async {
        let m = answered(
            monitors::get_monitor(State(state.clone()), key(), PathParams(id.clone())).await,
        )?;
        let incidents = answered(
            uptime::list_incidents(
                State(state.clone()),
                key(),
                PathParams(id.clone()),
                page_query(q.cursor.clone()),
            )
            .await,
        )?;
        let (bars, total) =
            status::ninety_day_bars(&state, &signed.key.tenant_id, &id, state.clock.now()).await?;
        Ok::<_, crate::problem::ApiError>((m, incidents, bars, total))
    }
    .await;
    let (m, incidents, bars, total) = match loaded {
        Ok(found) => found,
        Err(e) => return error_page(&signed, e),
    };
    let can_edit = signed.can(keel_core::apikey::Scope::Write);
    page(
        &signed,
        &format!("Monitor {}", text(&m, "name")),
        html! {
            (outcome(q.done.as_deref()))
            dl.stats {
                dt { "State" } dd { span class=(format!("state {}", text(&m, "status"))) { (text(&m, "status")) } }
                dt { "Kind" } dd { (text(&m, "kind")) " " (compact(&m["target"])) }
                dt { "Every" } dd { (number(&m, "interval_s")) " s" }
                dt { "90-day uptime" } dd { (status::uptime_text(total.uptime_percent())) }
                dt { "Conditions" } dd { (compact(&m["conditions"])) }
            }
            (bars_svg(text(&m, "name"), &bars))
            h2 { "Incidents" }
            @let list = incidents["incidents"].as_array().cloned().unwrap_or_default();
            @if list.is_empty() { p { "None." } }
            @for i in &list {
                section.incident {
                    h3 { (text(i, "status")) " — opened " (text(i, "opened_at"))
                        @if let Some(r) = i["resolved_at"].as_str() { ", resolved " (r) } }
                    @if can_edit {
                        form.stack method="post" action=(format!("/console/incidents/{}", seg(text(i, "id")))) {
                            (csrf_field(&signed))
                            input type="hidden" name="monitor" value=(id);
                            label for=(format!("cause-{}", text(i, "id"))) { "Cause" }
                            input id=(format!("cause-{}", text(i, "id"))) name="cause" value=(text(i, "cause"));
                            label for=(format!("notes-{}", text(i, "id"))) { "Notes" }
                            textarea id=(format!("notes-{}", text(i, "id"))) name="notes" rows="2" { (text(i, "notes")) }
                            button type="submit" { "Save" }
                        }
                    } @else {
                        p { "Cause: " (compact(&i["cause"])) } p { "Notes: " (compact(&i["notes"])) }
                    }
                }
            }
            (pager(&format!("/console/monitors/{}", seg(&id)), &[], incidents["next_cursor"].as_str()))
        },
    )
}

async fn edit_incident(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    form: CheckedForm,
) -> Response {
    let CheckedForm { signed, fields } = form;
    let body = json!({
        "cause": fields.get("cause").unwrap_or_default(),
        "notes": fields.get("notes").unwrap_or_default(),
    });
    let saved = uptime::patch_incident(
        State(state),
        Authed(signed.key.clone()),
        PathParams(id),
        JsonBody(body),
    )
    .await;
    match saved {
        Ok(_) => {
            let monitor = fields.get("monitor").unwrap_or_default();
            done(
                &format!("/console/monitors/{}", seg(monitor)),
                "Saved the incident.",
            )
        }
        Err(e) => error_page(&signed, e),
    }
}

async fn slo_list(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = answered(
        slos::list_slos(
            State(state),
            Authed(signed.key.clone()),
            page_query(q.cursor.clone()),
        )
        .await,
    );
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => return error_page(&signed, e),
    };
    let all = listed["slos"].as_array().cloned().unwrap_or_default();
    let rate = |s: &Value, w: &str| {
        s["burn_rates"][w]
            .as_f64()
            .map_or("—".into(), |r| format!("{r:.2}×"))
    };
    page(
        &signed,
        "SLOs",
        html! {
            @if all.is_empty() { p { "No SLOs yet." } } @else {
                table {
                    caption { "SLOs: budget and burn rates" }
                    thead { tr { th scope="col" { "SLO" } th scope="col".num { "Objective" } th scope="col".num { "SLI" }
                        th scope="col".num { "Budget left" } th scope="col".num { "Burn 1h" } th scope="col".num { "Burn 6h" }
                        th scope="col".num { "Burn 3d" } th scope="col" { "Alerts firing" } } }
                    tbody { @for s in &all { tr {
                        td { (text(s, "name")) br; small { (text(s, "window")) } }
                        td.num { (s["objective"]) "%" }
                        td.num { (s["sli"]["value"].as_f64().map_or("—".into(), |v| format!("{v:.3}%"))) }
                        td.num { (s["error_budget"]["remaining_percent"].as_f64().map_or("—".into(), |v| format!("{v:.1}%"))) }
                        td.num { (rate(s, "1h")) } td.num { (rate(s, "6h")) } td.num { (rate(s, "3d")) }
                        td { @for a in s["alerts"].as_array().into_iter().flatten().filter(|a| text(a, "status") == "firing") {
                            span.state.down { (text(a, "severity")) } " " } }
                    } } }
                }
            }
            (pager("/console/slos", &[], listed["next_cursor"].as_str()))
        },
    )
}
