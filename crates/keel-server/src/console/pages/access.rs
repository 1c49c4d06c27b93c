//! Keys (create, revoke one or many), the audit trail and counters (SPEC §1, §3).

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
    Router,
};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{compact, done, number, outcome, page_query, text, ListQuery};
use crate::{
    auth::{Authed, Caller},
    console::{
        answered, answered_body,
        layout::{csrf_field, error_page, page, page_with_status, pager},
        session::{CheckedForm, Signed},
    },
    extract::{JsonBody, PathParams},
    logins::ClientAddress,
    problem::ApiError,
    routes::{accounts, counters, me},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/keys", get(keys).post(create_key))
        .route("/console/keys/revoke", post(revoke_keys))
        .route("/console/audit", get(audit))
        .route("/console/counters", get(counter_page).post(counter_action))
}

async fn keys(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = answered(
        accounts::list_keys(
            State(state),
            Authed(signed.key.clone()),
            page_query(q.cursor.clone()),
        )
        .await,
    );
    match listed {
        Ok(listed) => page(
            &signed,
            "Keys",
            keys_view(&signed, &listed, q.done.as_deref(), None),
        ),
        Err(e) => error_page(&signed, e),
    }
}

fn keys_view(signed: &Signed, listed: &Value, done: Option<&str>, issued: Option<&str>) -> Markup {
    let keys = listed["keys"].as_array().cloned().unwrap_or_default();
    html! {
        (outcome(done))
        @if let Some(secret) = issued {
            div.done role="status" {
                p { "New key — copy it now, it is not shown again:" }
                p { code.secret { (secret) } }
            }
        }
        form method="post" action="/console/keys/revoke" {
            (csrf_field(signed))
            table {
                caption { "Keys of this tenant" }
                thead { tr { th scope="col" { "Select" } th scope="col" { "Prefix" } th scope="col" { "Scopes" }
                    th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Revoked" } } }
                tbody {
                    @for k in &keys {
                        @let prefix = text(k, "prefix");
                        @let revoked = !k["revoked_at"].is_null();
                        tr {
                            td { input type="checkbox" name="prefix" value=(prefix) id=(format!("key-{prefix}"))
                                aria-label=(format!("Select key {prefix}")) disabled[revoked || prefix == signed.key.prefix]; }
                            td { label for=(format!("key-{prefix}")) { code { (prefix) } } }
                            td { (compact(&k["scopes"])) }
                            td { (text(k, "created_at")) }
                            td { (compact(&k["last_used_at"])) }
                            td { (compact(&k["revoked_at"])) }
                        }
                    }
                }
            }
            div.actions { button type="submit" { "Revoke selected" } }
        }
        (pager("/console/keys", &[], listed["next_cursor"].as_str()))
        h2 { "Create a key" }
        form.stack method="post" action="/console/keys" {
            (csrf_field(signed))
            fieldset {
                legend { "Scopes" }
                @for scope in ["read", "write", "admin"] {
                    label.inline { input type="checkbox" name="scope" value=(scope) checked[scope != "admin"]; " " (scope) }
                }
            }
            button type="submit" { "Create key" }
        }
    }
}

async fn create_key(State(state): State<AppState>, form: CheckedForm) -> Response {
    let CheckedForm { signed, fields } = form;
    let made = answered_body(
        accounts::create_key(
            State(state.clone()),
            Caller::Key(signed.key.clone()),
            ClientAddress(None),
            JsonBody(json!({"scopes": fields.all("scope")})),
        )
        .await,
    )
    .await;
    let listed = answered(
        accounts::list_keys(State(state), Authed(signed.key.clone()), page_query(None)).await,
    );
    match (made, listed) {
        (Ok(made), Ok(listed)) => {
            let secret = made["data"]["attributes"]["api_key"]
                .as_str()
                .unwrap_or_default();
            page_with_status(
                StatusCode::CREATED,
                &signed,
                "Keys",
                keys_view(&signed, &listed, None, Some(secret)),
            )
        }
        (Err(e), _) | (_, Err(e)) => error_page(&signed, e),
    }
}

async fn revoke_keys(State(state): State<AppState>, form: CheckedForm) -> Response {
    let CheckedForm { signed, fields } = form;
    let chosen = fields.all("prefix");
    if chosen.is_empty() {
        return done(
            "/console/keys",
            "Nothing selected: tick the keys to revoke.",
        );
    }
    for prefix in &chosen {
        let revoked = answered_body(
            accounts::revoke_key(
                State(state.clone()),
                Authed(signed.key.clone()),
                PathParams(prefix.clone()),
            )
            .await,
        )
        .await;
        if let Err(e) = revoked {
            return error_page(&signed, e);
        }
    }
    done(
        "/console/keys",
        &format!("Revoked {} key(s).", chosen.len()),
    )
}

async fn audit(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = answered(
        me::audit(
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
    let events = listed["events"].as_array().cloned().unwrap_or_default();
    page(
        &signed,
        "Audit",
        html! {
            table {
                caption { "Audit trail, newest first" }
                thead { tr { th scope="col" { "At" } th scope="col" { "Key" } th scope="col" { "Request" }
                    th scope="col" { "Resource" } th scope="col".num { "Status" } th scope="col" { "Source" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (text(e, "at")) }
                            td { code { (compact(&e["key_prefix"])) } }
                            td { (text(e, "method")) " " code { (text(e, "route")) } }
                            td { (compact(&e["resource_id"])) }
                            td.num { (number(e, "status")) }
                            td { (compact(&e["source"])) }
                        }
                    }
                }
            }
            (pager("/console/audit", &[], listed["next_cursor"].as_str()))
        },
    )
}

#[derive(Deserialize, Default)]
pub struct CounterQuery {
    name: Option<String>,
    done: Option<String>,
}

async fn counter_value(
    state: &AppState,
    signed: &Signed,
    name: Option<&str>,
) -> Result<i64, ApiError> {
    let key = Authed(signed.key.clone());
    let doc = match name {
        None => answered_body(counters::get_current(State(state.clone()), key).await).await?,
        Some(name) => {
            answered_body(
                counters::get_named_current(State(state.clone()), key, PathParams(name.to_owned()))
                    .await,
            )
            .await?
        }
    };
    Ok(doc["data"]["attributes"]["value"].as_i64().unwrap_or(0))
}

async fn counter_page(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<CounterQuery>,
) -> Response {
    let name = q.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    match counter_value(&state, &signed, name).await {
        Ok(value) => page(
            &signed,
            "Counters",
            counter_view(&signed, name, value, q.done.as_deref()),
        ),
        Err(e) => error_page(&signed, e),
    }
}

fn counter_view(signed: &Signed, name: Option<&str>, value: i64, done: Option<&str>) -> Markup {
    html! {
        (outcome(done))
        form.inline method="get" action="/console/counters" {
            label for="name" { "Counter name (empty: the default counter)" }
            input #name name="name" value=(name.unwrap_or(""));
            button type="submit" { "Show" }
        }
        dl.stats {
            dt { "Counter" } dd { (name.unwrap_or("default")) }
            dt { "Current value" } dd data-field="value" { (value) }
        }
        @if signed.can(keel_core::apikey::Scope::Write) {
            form.inline method="post" action="/console/counters" {
                (csrf_field(signed))
                input type="hidden" name="name" value=(name.unwrap_or(""));
                button type="submit" name="action" value="next" { "Increment" }
                label for="set" { "Set to" }
                input #set name="value" type="number" min="0";
                button type="submit" name="action" value="set" { "Set" }
            }
        }
    }
}

async fn counter_action(State(state): State<AppState>, form: CheckedForm) -> Response {
    let CheckedForm { signed, fields } = form;
    let name = fields.text("name").map(str::to_owned);
    let key = || Authed(signed.key.clone());
    let result = match (fields.get("action"), name.clone()) {
        (Some("set"), name) => {
            let body = match fields.text("value").map(str::parse::<i64>) {
                Some(Ok(v)) => json!({"current": v}),
                _ => {
                    return error_page(
                        &signed,
                        ApiError::field(keel_core::FieldError::new(
                            "/current",
                            "a whole number from 0",
                        )),
                    )
                }
            };
            match name {
                None => counters::put_current(State(state.clone()), key(), JsonBody(body)).await,
                Some(n) => {
                    counters::put_named_current(
                        State(state.clone()),
                        key(),
                        PathParams(n),
                        JsonBody(body),
                    )
                    .await
                }
            }
        }
        (_, None) => counters::post_next(State(state.clone()), key()).await,
        (_, Some(n)) => counters::post_named_next(State(state.clone()), key(), PathParams(n)).await,
    };
    let back = crate::console::layout::link(
        "/console/counters",
        &[("name", name.as_deref().unwrap_or(""))],
        None,
    );
    match answered_body(result).await {
        Ok(doc) => done(
            &back,
            &format!("The counter is now {}.", doc["data"]["attributes"]["value"]),
        ),
        Err(e) => error_page(&signed, e),
    }
}
