//! Collections (SPEC §5): the ones this tenant's store subscriptions fill, any
//! other by name, records by cursor, one record as JSON.

use axum::{
    extract::{Query, State},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use maud::html;
use serde::Deserialize;

use super::{compact, page_query, text, ListQuery};
use crate::{
    auth::Authed,
    console::{
        answered, answered_body,
        layout::{error_page, page, pager, seg},
        session::Signed,
    },
    extract::PathParams,
    routes::{bus, collections},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/collections", get(list))
        .route("/console/collections/{collection}", get(records))
        .route("/console/collections/{collection}/{id}", get(record))
}

#[derive(Deserialize, Default)]
pub struct Open {
    name: Option<String>,
}

async fn list(State(state): State<AppState>, signed: Signed, Query(open): Query<Open>) -> Response {
    if let Some(name) = open
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return axum::response::Redirect::to(&format!("/console/collections/{}", seg(name)))
            .into_response();
    }
    let subs =
        match answered(bus::list_subscriptions(State(state), Authed(signed.key.clone())).await) {
            Ok(subs) => subs,
            Err(e) => return error_page(&signed, e),
        };
    let mut fed: Vec<(String, String)> = subs["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| text(&s["target"], "type") == "store")
        .map(|s| {
            (
                text(&s["target"], "collection").to_owned(),
                format!("{} / {}", text(s, "topic"), text(s, "name")),
            )
        })
        .collect();
    fed.sort();
    page(
        &signed,
        "Collections",
        html! {
            form.inline method="get" action="/console/collections" {
                label for="name" { "Open a collection" }
                input #name name="name" required;
                button type="submit" { "Open" }
            }
            @if fed.is_empty() {
                p { "No store subscription fills a collection yet." }
            } @else {
                table {
                    caption { "Collections filled by store subscriptions" }
                    thead { tr { th scope="col" { "Collection" } th scope="col" { "Filled by" } } }
                    tbody { @for (c, by) in &fed { tr {
                        td { a href=(format!("/console/collections/{}", seg(c))) { (c) } }
                        td { (by) }
                    } } }
                }
            }
        },
    )
}

async fn records(
    State(state): State<AppState>,
    signed: Signed,
    PathParams(collection): PathParams<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = collections::list_records(
        State(state),
        Authed(signed.key.clone()),
        PathParams(collection.clone()),
        page_query(q.cursor.clone()),
    )
    .await
    .map(IntoResponse::into_response);
    let listed = match answered_body(listed).await {
        Ok(listed) => listed,
        Err(e) => return error_page(&signed, e),
    };
    let rows = listed["records"].as_array().cloned().unwrap_or_default();
    page(
        &signed,
        &format!("Collection {collection}"),
        html! {
            @if rows.is_empty() { p { "No records." } } @else {
                table {
                    caption { "Records, 50 a page" }
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Updated" } th scope="col" { "Data" } } }
                    tbody { @for r in &rows { tr {
                        td { a href=(format!("/console/collections/{}/{}", seg(&collection), seg(text(r, "id")))) { code { (text(r, "id")) } } }
                        td { (text(r, "updated_at")) }
                        td.data { code { (truncate(&compact(&r["data"]), 160)) } }
                    } } }
                }
            }
            (pager(&format!("/console/collections/{}", seg(&collection)), &[], listed["next_cursor"].as_str()))
        },
    )
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

async fn record(
    State(state): State<AppState>,
    signed: Signed,
    PathParams((collection, id)): PathParams<(String, String)>,
) -> Response {
    let found = collections::get_record(
        State(state),
        Authed(signed.key.clone()),
        PathParams((collection.clone(), id.clone())),
    )
    .await
    .map(IntoResponse::into_response);
    match answered_body(found).await {
        Ok(found) => page(
            &signed,
            &format!("Record {id}"),
            html! {
                p { a href=(format!("/console/collections/{}", seg(&collection))) { "← " (collection) } }
                pre.json { (serde_json::to_string_pretty(&found).unwrap_or_default()) }
            },
        ),
        Err(e) => error_page(&signed, e),
    }
}
