//! The OpenAPI document: every route's own annotation (its 2xx schema and the
//! statuses only it answers), completed with the statuses every route of a kind
//! can answer because of the edge it runs behind — so a new route cannot forget
//! them and a generated client has a type for every answer (SPEC §0).
//!
//! The kinds, and why each status belongs to them:
//! - every route: 401 (an `Authorization` header that is not a live key is refused
//!   on any route, public ones included), 414 and 431 (request line and headers
//!   over the limits), 429 (key, tenant and login rate limits), 503 (a backend
//!   down, or draining);
//! - a route that takes a body: 400 (malformed or invalid), 408 (a body that did
//!   not arrive in time), 413 (over the size limit), 415 (not JSON);
//! - a route with path or query parameters: 400;
//! - a route with path parameters: 404 (no such resource, or another tenant's);
//! - a route that needs a key: 403 (the key lacks a scope, or a quota is reached).
//!
//! Every error answer is documented as `application/problem+json` with the
//! `Problem` schema, which is what the edge sends — except the statuses a route
//! documents with a body of its own (the OTLP receivers' `google.rpc.Status`).

use utoipa::openapi::{
    header::HeaderBuilder,
    path::{Operation, ParameterIn},
    ContentBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder, Type,
};

use crate::problem::PROBLEM_JSON;

/// The statuses the edge gives `operation`, by its kind (see the module docs).
pub fn statuses_for(operation: &Operation) -> Vec<u16> {
    let mut statuses = vec![401, 414, 429, 431, 503];
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_path = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    if operation.request_body.is_some() {
        statuses.extend([400, 408, 413, 415]);
    }
    if !parameters.is_empty() {
        statuses.push(400);
    }
    if has_path {
        statuses.push(404);
    }
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.push(403);
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// Adds each operation's kind statuses and makes every error answer a problem.
pub fn complete(doc: &mut OpenApi) {
    // Axum writes a catch-all parameter (an object key with '/') as `{*key}`;
    // OpenAPI knows only `{key}`.
    let catch_all: Vec<String> = doc
        .paths
        .paths
        .keys()
        .filter(|path| path.contains("{*"))
        .cloned()
        .collect();
    for path in catch_all {
        if let Some(item) = doc.paths.paths.remove(&path) {
            doc.paths.paths.insert(path.replace("{*", "{"), item);
        }
    }
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            for status in statuses_for(operation) {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(problem_response(status, "")));
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let Ok(code) = status.parse::<u16>() else {
                    continue;
                };
                // A route whose protocol prescribes its own error body (OTLP's
                // `google.rpc.Status`) keeps the statuses it documents itself.
                let own_body = matches!(response, RefOr::T(r)
                    if r.content.values().any(|content| !matches!(&content.schema,
                        Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))));
                if code >= 400 && !own_body {
                    let description = match response {
                        RefOr::T(r) => r.description.clone(),
                        RefOr::Ref(_) => String::new(),
                    };
                    *response = RefOr::T(problem_response(code, &description));
                }
            }
        }
    }
}

fn problem_response(status: u16, description: &str) -> Response {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let description = if description.is_empty() {
        reason
    } else {
        description
    };
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if status == 429 || status == 503 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .build(),
        );
    }
    response.build()
}
