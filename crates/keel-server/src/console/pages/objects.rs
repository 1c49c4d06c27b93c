//! Buckets and objects (SPEC §6): buckets by name, a bucket's objects by prefix
//! and cursor, its notification rules, and downloads streamed from the same
//! handler as `GET /v1/buckets/{bucket}/objects/{key}`.

use axum::{
    body::Body,
    extract::{FromRequestParts, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
    routing::{get, post},
    Router,
};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{compact, done, number, outcome, page_query, text};
use crate::{
    auth::Authed,
    console::{
        answered,
        document::refusal,
        layout::{csrf_field, error_page, link, page, pager, seg},
        session::Signed,
    },
    extract::PathParams,
    routes::objects,
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/buckets", get(buckets))
        .route("/console/buckets/{bucket}", get(bucket))
        .route("/console/buckets/{bucket}/download/{*key}", get(download))
        .route("/console/buckets/{bucket}/upload", post(upload))
}

#[derive(Deserialize, Default)]
pub struct Listing {
    prefix: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

async fn buckets(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<Listing>,
) -> Response {
    let listed = answered(
        objects::list_buckets(
            State(state),
            Authed(signed.key.clone()),
            page_query(q.cursor),
        )
        .await,
    );
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => return error_page(&signed, e),
    };
    let all = listed["buckets"].as_array().cloned().unwrap_or_default();
    page(
        &signed,
        "Buckets",
        html! {
            @if all.is_empty() { p { "No buckets yet." } } @else {
                table {
                    caption { "Buckets by name" }
                    thead { tr { th scope="col" { "Bucket" } th scope="col" { "Created" } } }
                    tbody { @for b in &all { tr {
                        td { a href=(format!("/console/buckets/{}", seg(text(b, "name")))) { (text(b, "name")) } }
                        td { (text(b, "created_at")) }
                    } } }
                }
            }
            (pager("/console/buckets", &[], listed["next_cursor"].as_str()))
        },
    )
}

async fn bucket(
    State(state): State<AppState>,
    signed: Signed,
    PathParams(name): PathParams<String>,
    Query(q): Query<Listing>,
) -> Response {
    let prefix = q.prefix.unwrap_or_default();
    let key = || Authed(signed.key.clone());
    let loaded = async {
        let rules = answered(
            objects::get_notifications(State(state.clone()), key(), PathParams(name.clone())).await,
        )?;
        let listed = answered(
            objects::list_objects(
                State(state.clone()),
                key(),
                PathParams(name.clone()),
                crate::extract::Query(objects::ListQuery {
                    prefix: Some(prefix.clone()),
                    limit: Some(50),
                    cursor: q.cursor.clone(),
                }),
            )
            .await,
        )?;
        Ok::<_, crate::problem::ApiError>((rules, listed))
    }
    .await;
    let (rules, listed) = match loaded {
        Ok(found) => found,
        Err(e) => return error_page(&signed, e),
    };
    let objects = listed["objects"].as_array().cloned().unwrap_or_default();
    let rules = rules.as_array().cloned().unwrap_or_default();
    let here = format!("/console/buckets/{}", seg(&name));
    page(
        &signed,
        &format!("Bucket {name}"),
        html! {
            (outcome(q.done.as_deref()))
            form.inline method="get" action=(here) {
                label for="prefix" { "Key prefix" }
                input #prefix name="prefix" value=(prefix);
                button type="submit" { "Browse" }
            }
            @if objects.is_empty() { p { "No objects under this prefix." } } @else {
                table {
                    caption { "Objects in key order" }
                    thead { tr { th scope="col" { "Key" } th scope="col".num { "Bytes" } th scope="col" { "Type" }
                        th scope="col" { "ETag" } th scope="col" { "Modified" } } }
                    tbody { @for o in &objects { tr {
                        td { a href=(format!("{here}/download/{}", text(o, "key").split('/').map(seg).collect::<Vec<_>>().join("/"))) {
                            (text(o, "key")) } }
                        td.num { (number(o, "size")) }
                        td { (text(o, "content_type")) }
                        td { code { (text(o, "etag")) } }
                        td { (text(o, "last_modified")) }
                    } } }
                }
            }
            (pager(&here, &[("prefix", &prefix)], listed["next_cursor"].as_str()))
            @if signed.can(keel_core::apikey::Scope::Write) {
                h2 { "Upload" }
                // The CSRF token and the key come before the file: the form is read
                // in order and the file streamed straight into the object store.
                form.stack method="post" enctype="multipart/form-data" action=(format!("{here}/upload")) {
                    (csrf_field(&signed))
                    label for="key" { "Key (ending in / or empty: the file's name is added)" }
                    input #key name="key" value=(prefix);
                    label for="file" { "File" }
                    input #file name="file" type="file" required;
                    button type="submit" { "Upload" }
                }
            }
            h2 { "Notification rules" }
            @if rules.is_empty() { p { "None: changes here publish nothing." } } @else {
                table {
                    caption { "Each matching change publishes an S3-format event to the topic" }
                    thead { tr { th scope="col" { "Rule" } th scope="col" { "Events" } th scope="col" { "Prefix" }
                        th scope="col" { "Suffix" } th scope="col" { "Topic" } } }
                    tbody { @for r in &rules { tr {
                        td { (compact(&r["id"])) }
                        td { (compact(&r["events"])) }
                        td { (compact(&r["prefix"])) }
                        td { (compact(&r["suffix"])) }
                        td { a href=(link("/console/topics", &[], None)) { (text(r, "topic")) } }
                    } } }
                }
            }
        },
    )
}

async fn download(
    State(state): State<AppState>,
    signed: Signed,
    PathParams((bucket, key)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let file_name = key
        .rsplit('/')
        .next()
        .unwrap_or("object")
        .replace(['"', '\\'], "_");
    match objects::get_object(
        State(state),
        Authed(signed.key.clone()),
        PathParams((bucket, key)),
        headers,
    )
    .await
    {
        Ok(mut response) => {
            if let Ok(value) =
                HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(e) => error_page(&signed, e),
    }
}

/// A file from the upload form, streamed into `PUT /v1/buckets/{bucket}/objects/{key}`'s
/// handler (its limits, its events, its audit); fields after the file are ignored.
async fn upload(
    State(state): State<AppState>,
    PathParams(bucket): PathParams<String>,
    req: Request,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let signed = match Signed::from_request_parts(&mut parts, &state).await {
        Ok(signed) => signed,
        Err(to_sign_in) => return to_sign_in,
    };
    let boundary = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else {
        return refusal(StatusCode::BAD_REQUEST, "An upload is a multipart form.");
    };
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let (mut csrf, mut key) = (String::new(), String::new());
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return refusal(StatusCode::BAD_REQUEST, "The form holds no file."),
            Err(e) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("The form could not be read: {e}"),
                )
            }
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.unwrap_or_default(),
            Some("key") => key = field.text().await.unwrap_or_default().trim().to_owned(),
            Some("file") => {
                if !bool::from(csrf.as_bytes().ct_eq(signed.session.csrf.as_bytes())) {
                    return refusal(
                        StatusCode::FORBIDDEN,
                        "This form's CSRF token is missing or wrong: reload the page and try again.",
                    );
                }
                let file_name = field
                    .file_name()
                    .unwrap_or("upload")
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or("upload")
                    .to_owned();
                if key.is_empty() || key.ends_with('/') {
                    key.push_str(&file_name);
                }
                let mut headers = HeaderMap::new();
                let content_type = field
                    .content_type()
                    .map_or("application/octet-stream".to_owned(), ToString::to_string);
                if let Ok(value) = HeaderValue::from_str(&content_type) {
                    headers.insert(header::CONTENT_TYPE, value);
                }
                let stored = objects::put_object(
                    State(state.clone()),
                    Authed(signed.key.clone()),
                    PathParams((bucket.clone(), key.clone())),
                    headers,
                    Body::from_stream(field),
                )
                .await;
                return match stored {
                    Ok(_) => {
                        let folder = key
                            .rsplit_once('/')
                            .map_or(String::new(), |(p, _)| format!("{p}/"));
                        done(
                            &link(
                                &format!("/console/buckets/{}", seg(&bucket)),
                                &[("prefix", &folder)],
                                None,
                            ),
                            &format!("Uploaded {key}."),
                        )
                    }
                    Err(e) => error_page(&signed, e),
                };
            }
            _ => {}
        }
    }
}
