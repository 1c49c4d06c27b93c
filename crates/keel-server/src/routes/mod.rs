//! Every route, assembled with its OpenAPI description: each handler carries a
//! `#[utoipa::path]` beside it, and `OpenApiRouter` collects both the axum routes and
//! the document from the same list, so the document cannot drift from the code.

pub mod accounts;
pub mod admin;
pub mod bus;
pub mod channels;
pub mod collections;
pub mod counters;
pub mod hello;
pub mod maintenance;
pub mod me;
pub mod monitors;
pub mod objects;
pub mod openapi;
pub mod ops;
pub mod queues;
pub mod reports;
pub mod slos;
pub mod status;
pub mod telemetry;
pub mod telemetry_queries;
pub mod uptime;

use std::sync::OnceLock;

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    Router,
};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    edge,
    problem::{ApiError, Problem, ProblemField},
    state::AppState,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Keel", description = "One binary for an event-driven backend: APIs, bus, storage, telemetry and uptime."),
    modifiers(&BearerKeys),
    components(schemas(Problem, ProblemField))
)]
struct ApiDoc;

struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("keel_<prefix>_<secret>")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, serialised once, on first request.
static OPENAPI_JSON: OnceLock<String> = OnceLock::new();

/// This document: every route Keel serves.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    let doc = OPENAPI_JSON.get_or_init(|| {
        document()
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    let mut response = doc.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(hello::put_hello, hello::get_hello))
        .routes(routes!(counters::get_next, counters::post_next))
        .routes(routes!(counters::get_current, counters::put_current))
        .routes(routes!(counters::get_named_next, counters::post_named_next))
        .routes(routes!(
            counters::get_named_current,
            counters::put_named_current
        ))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::create_key, accounts::list_keys))
        .routes(routes!(accounts::revoke_key))
        .routes(routes!(me::me))
        .routes(routes!(me::audit))
        .routes(routes!(admin::create_tenant, admin::list_tenants))
        .routes(routes!(admin::create_key))
        .routes(routes!(bus::put_topic))
        .routes(routes!(bus::publish))
        .routes(routes!(bus::put_subscription, bus::get_subscription))
        .routes(routes!(bus::list_subscriptions))
        .routes(routes!(queues::receive))
        .routes(routes!(queues::ack))
        .routes(routes!(queues::nack))
        .routes(routes!(queues::stats))
        .routes(routes!(queues::dead_letters))
        .routes(routes!(queues::redrive))
        .routes(routes!(queues::attempts))
        .routes(routes!(
            collections::post_records,
            collections::list_records
        ))
        .routes(routes!(collections::get_record, collections::delete_record))
        .routes(routes!(objects::list_buckets))
        .routes(routes!(objects::put_bucket))
        .routes(routes!(
            objects::put_notifications,
            objects::get_notifications
        ))
        .routes(routes!(objects::list_objects))
        .routes(routes!(
            objects::put_object,
            objects::get_object,
            objects::head_object,
            objects::delete_object
        ))
        .routes(routes!(telemetry::post_telemetry))
        .routes(routes!(telemetry::get_retention, telemetry::put_retention))
        .routes(routes!(telemetry::otlp_logs, telemetry_queries::get_logs))
        .routes(routes!(telemetry::otlp_metrics))
        .routes(routes!(telemetry_queries::get_metric))
        .routes(routes!(monitors::create_monitor, monitors::list_monitors))
        .routes(routes!(
            monitors::get_monitor,
            monitors::put_monitor,
            monitors::delete_monitor
        ))
        .routes(routes!(monitors::push))
        .routes(routes!(uptime::get_uptime))
        .routes(routes!(uptime::list_incidents))
        .routes(routes!(uptime::patch_incident))
        .routes(routes!(slos::create_slo, slos::list_slos))
        .routes(routes!(slos::get_slo, slos::delete_slo))
        .routes(routes!(slos::prometheus_rules))
        .routes(routes!(channels::create_channel, channels::list_channels))
        .routes(routes!(channels::get_channel, channels::delete_channel))
        .routes(routes!(
            maintenance::create_window,
            maintenance::list_windows
        ))
        .routes(routes!(maintenance::delete_window))
        .routes(routes!(reports::uptime_report))
        .routes(routes!(status::status_page))
        .routes(routes!(status::badge))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::stats_overview))
        .routes(routes!(openapi_json))
}

/// The whole document: the routes' annotations completed per kind of route.
fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api().split_for_parts();
    openapi::complete(&mut doc);
    doc
}

/// The OpenAPI document as JSON (also served at `/openapi.json`).
pub fn openapi_document() -> String {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .merge(crate::console::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(from_fn_with_state(state.clone(), edge::edge))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .with_state(state)
}
