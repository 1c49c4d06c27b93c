//! Topics and subscriptions, queues and their dead letters (SPEC §4): list,
//! create a subscription, peek at dead letters with their last error, redrive
//! the selected ones or all.

use axum::{
    extract::{Query, State},
    response::Response,
    routing::{get, post},
    Router,
};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{compact, done, number, outcome, text};
use crate::{
    auth::Authed,
    console::{
        answered, answered_body,
        layout::{csrf_field, error_notice, error_page, page, page_with_status, seg},
        session::{CheckedForm, Signed},
    },
    extract::{JsonBody, PathParams},
    problem::ApiError,
    routes::{bus as api, queues},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/topics", get(topics))
        .route("/console/subscriptions", post(create_subscription))
        .route("/console/queues", get(queue_list))
        .route("/console/queues/{topic}/{name}", get(queue))
        .route("/console/queues/{topic}/{name}/redrive", post(redrive))
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

async fn subscriptions(state: &AppState, signed: &Signed) -> Result<Vec<Value>, ApiError> {
    let listed =
        answered(api::list_subscriptions(State(state.clone()), Authed(signed.key.clone())).await)?;
    Ok(listed["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn target_text(target: &Value) -> String {
    match text(target, "type") {
        "store" => format!("store → {}", text(target, "collection")),
        "webhook" => format!("webhook → {}", text(target, "url")),
        other => other.to_owned(),
    }
}

async fn topics(State(state): State<AppState>, signed: Signed, Query(q): Query<Done>) -> Response {
    match subscriptions(&state, &signed).await {
        Ok(all) => page(
            &signed,
            "Topics",
            topics_view(&signed, &all, q.done.as_deref(), None),
        ),
        Err(e) => error_page(&signed, e),
    }
}

fn topics_view(
    signed: &Signed,
    all: &[Value],
    done: Option<&str>,
    error: Option<&ApiError>,
) -> Markup {
    html! {
        (outcome(done))
        @if all.is_empty() {
            p { "No subscriptions yet." }
        } @else {
            table {
                caption { "Subscriptions by topic" }
                thead { tr { th scope="col" { "Topic" } th scope="col" { "Subscription" } th scope="col" { "Filter" }
                    th scope="col" { "Target" } th scope="col" { "Policy" } } }
                tbody {
                    @for s in all {
                        tr {
                            td { (text(s, "topic")) }
                            td { a href=(format!("/console/queues/{}/{}", seg(text(s, "topic")), seg(text(s, "name")))) { (text(s, "name")) } }
                            td { code { (compact(&s["filter"])) } " (" (text(s, "filter_scope")) ")" }
                            td { (target_text(&s["target"])) }
                            td { (number(s, "max_receives")) " receives, " (number(s, "visibility_timeout_s")) " s visibility" }
                        }
                    }
                }
            }
        }
        @if signed.can(keel_core::apikey::Scope::Admin) {
            h2 { "Create or replace a subscription" }
            @if let Some(e) = error { (error_notice(e)) }
            form.stack method="post" action="/console/subscriptions" {
                (csrf_field(signed))
                label for="topic" { "Topic" }
                input #topic name="topic" required;
                label for="name" { "Subscription name" }
                input #name name="name" required;
                label for="target" { "Target" }
                select #target name="target" {
                    option value="queue" { "queue (receive through the API)" }
                    option value="store" { "store into a collection" }
                    option value="webhook" { "webhook" }
                }
                label for="collection" { "Collection (store target)" }
                input #collection name="collection";
                label for="url" { "URL (webhook target)" }
                input #url name="url" type="url";
                label for="filter" { "Filter policy (JSON, optional)" }
                textarea #filter name="filter" rows="3" {}
                label for="max_receives" { "Receives before dead-lettering" }
                input #max_receives name="max_receives" type="number" min="1" value="5";
                label for="visibility" { "Visibility timeout (s)" }
                input #visibility name="visibility_timeout_s" type="number" min="1" value="30";
                button type="submit" { "Save subscription" }
            }
        }
    }
}

async fn create_subscription(State(state): State<AppState>, form: CheckedForm) -> Response {
    let CheckedForm { signed, fields } = form;
    let topic = fields.text("topic").unwrap_or_default().to_owned();
    let name = fields.text("name").unwrap_or_default().to_owned();
    let body = (|| -> Result<Value, ApiError> {
        let mut target = Map::new();
        let kind = fields.text("target").unwrap_or("queue");
        target.insert("type".into(), kind.into());
        match kind {
            "store" => {
                target.insert(
                    "collection".into(),
                    fields.text("collection").unwrap_or_default().into(),
                );
            }
            "webhook" => {
                target.insert("url".into(), fields.text("url").unwrap_or_default().into());
            }
            _ => {}
        }
        let mut body = json!({"target": target});
        if let Some(filter) = fields.text("filter") {
            let parsed: Value = serde_json::from_str(filter).map_err(|e| {
                ApiError::field(keel_core::FieldError::new(
                    "/filter",
                    format!("the filter is not JSON: {e}"),
                ))
            })?;
            body["filter"] = parsed;
        }
        for field in ["max_receives", "visibility_timeout_s"] {
            if let Some(v) = fields.text(field) {
                let n: u32 = v.parse().map_err(|_| {
                    ApiError::field(keel_core::FieldError::new(
                        format!("/{field}"),
                        "a whole number",
                    ))
                })?;
                body[field] = n.into();
            }
        }
        Ok(body)
    })();
    let saved = match body {
        Ok(body) => {
            answered_body(
                api::put_subscription(
                    State(state.clone()),
                    Authed(signed.key.clone()),
                    PathParams((topic.clone(), name.clone())),
                    JsonBody(body),
                )
                .await,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => done(
            "/console/topics",
            &format!("Saved subscription {name} on {topic}."),
        ),
        Err(e) => {
            let all = subscriptions(&state, &signed).await.unwrap_or_default();
            page_with_status(
                e.status(),
                &signed,
                "Topics",
                topics_view(&signed, &all, None, Some(&e)),
            )
        }
    }
}

async fn queue_list(State(state): State<AppState>, signed: Signed) -> Response {
    let all = match subscriptions(&state, &signed).await {
        Ok(all) => all,
        Err(e) => return error_page(&signed, e),
    };
    let mut rows = Vec::with_capacity(all.len());
    for s in &all {
        let (topic, name) = (text(s, "topic").to_owned(), text(s, "name").to_owned());
        let stats = answered(
            queues::stats(
                State(state.clone()),
                Authed(signed.key.clone()),
                PathParams((topic, name)),
            )
            .await,
        );
        match stats {
            Ok(stats) => rows.push((s, stats)),
            Err(e) => return error_page(&signed, e),
        }
    }
    page(
        &signed,
        "Queues",
        html! {
            @if rows.is_empty() {
                p { "No queues yet: every subscription has one. " a href="/console/topics" { "Create a subscription" } "." }
            } @else {
                table {
                    caption { "Every subscription's queue" }
                    thead { tr { th scope="col" { "Queue" } th scope="col" { "Target" } th scope="col".num { "Depth" }
                        th scope="col".num { "In flight" } th scope="col".num { "Oldest (s)" } th scope="col".num { "Dead letters" } } }
                    tbody {
                        @for (s, stats) in &rows {
                            tr {
                                td { a href=(format!("/console/queues/{}/{}", seg(text(s, "topic")), seg(text(s, "name")))) {
                                    (text(s, "topic")) " / " (text(s, "name")) } }
                                td { (target_text(&s["target"])) }
                                td.num data-field="depth" { (number(stats, "depth")) }
                                td.num { (number(stats, "in_flight")) }
                                td.num { (number(stats, "oldest_age_s")) }
                                td.num data-field="dlq_depth" { (number(stats, "dlq_depth")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn queue(
    State(state): State<AppState>,
    signed: Signed,
    PathParams((topic, name)): PathParams<(String, String)>,
    Query(q): Query<Done>,
) -> Response {
    let key = || Authed(signed.key.clone());
    let path = || PathParams((topic.clone(), name.clone()));
    let loaded = async {
        let sub = answered(api::get_subscription(State(state.clone()), key(), path()).await)?;
        let stats = answered(queues::stats(State(state.clone()), key(), path()).await)?;
        let dead = answered(queues::dead_letters(State(state.clone()), key(), path()).await)?;
        Ok::<_, ApiError>((sub, stats, dead))
    }
    .await;
    let (sub, stats, dead) = match loaded {
        Ok(found) => found,
        Err(e) => return error_page(&signed, e),
    };
    let dead = dead["messages"].as_array().cloned().unwrap_or_default();
    let can_redrive = signed.can(keel_core::apikey::Scope::Write);
    let action = format!("/console/queues/{}/{}/redrive", seg(&topic), seg(&name));
    page(
        &signed,
        &format!("Queue {topic} / {name}"),
        html! {
            (outcome(q.done.as_deref()))
            dl.stats {
                dt { "Target" } dd { (target_text(&sub["target"])) }
                dt { "Depth" } dd data-field="depth" { (number(&stats, "depth")) }
                dt { "In flight" } dd { (number(&stats, "in_flight")) }
                dt { "Oldest message (s)" } dd { (number(&stats, "oldest_age_s")) }
                dt { "Dead letters" } dd data-field="dlq_depth" { (number(&stats, "dlq_depth")) }
            }
            h2 { "Dead letters" }
            @if dead.is_empty() {
                p { "None." }
            } @else {
                form method="post" action=(action) {
                    (csrf_field(&signed))
                    table {
                        caption { "Dead letters, oldest first (peek: open a row's body)" }
                        thead { tr { th scope="col" { "Select" } th scope="col" { "Message" } th scope="col" { "Receives" }
                            th scope="col" { "Last error" } th scope="col" { "Body" } } }
                        tbody {
                            @for m in &dead {
                                @let id = text(m, "id");
                                tr {
                                    td { input type="checkbox" name="id" value=(id) id=(format!("dl-{id}"))
                                        aria-label=(format!("Select {id}")) disabled[!can_redrive]; }
                                    td { label for=(format!("dl-{id}")) { code { (id) } } br; small { (text(m, "published_at")) } }
                                    td.num { (number(m, "receive_count")) }
                                    td.last-error { (compact(&m["last_error"])) }
                                    td { details { summary { "Peek" } pre { (serde_json::to_string_pretty(&m["body"]).unwrap_or_default()) } } }
                                }
                            }
                        }
                    }
                    @if can_redrive {
                        div.actions {
                            button type="submit" name="scope" value="selected" { "Redrive selected" }
                            button type="submit" name="scope" value="all" { "Redrive all" }
                        }
                    }
                }
            }
        },
    )
}

async fn redrive(
    State(state): State<AppState>,
    PathParams((topic, name)): PathParams<(String, String)>,
    form: CheckedForm,
) -> Response {
    let CheckedForm { signed, fields } = form;
    let body = if fields.get("scope") == Some("all") {
        json!({})
    } else {
        let ids = fields.all("id");
        if ids.is_empty() {
            let back = format!("/console/queues/{}/{}", seg(&topic), seg(&name));
            return done(&back, "Nothing selected: tick the dead letters to redrive.");
        }
        json!({ "ids": ids })
    };
    let moved = answered(
        queues::redrive(
            State(state),
            Authed(signed.key.clone()),
            PathParams((topic.clone(), name.clone())),
            JsonBody(body),
        )
        .await,
    );
    match moved {
        Ok(moved) => done(
            &format!("/console/queues/{}/{}", seg(&topic), seg(&name)),
            &format!("Redrove {} message(s).", number(&moved, "moved")),
        ),
        Err(e) => error_page(&signed, e),
    }
}
