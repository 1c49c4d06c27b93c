//! Collections (SPEC §5): the flow "POST publishes, a subscriber writes to the
//! database, GET reads the rows". A POST publishes to topic `{c}`, which gets a
//! `store` subscription named `_collection` into collection `{c}` on first use;
//! the worker role upserts each message as a record keyed by its message id.

use std::time::Duration;

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use keel_core::{
    apikey::Scope,
    bus::{BusName, DeliveryPolicy, Target},
    FieldError,
};
use keel_store::{
    bus::{FilterScope, OutgoingMessage, Subscription},
    collections::Record,
    TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::{
    audit::AuditNote,
    auth::Authed,
    cached_reads::{Cached, CachedReads},
    extract::{JsonBody, PageQuery, PathParams, Query},
    problem::{ApiError, ApiResult, Problem},
    routes::bus::{parse_batch, Published},
    state::AppState,
};

/// The subscription that feeds a collection from its topic.
pub const COLLECTION_SUBSCRIPTION: &str = "_collection";
/// How long `?wait=true` waits for the rows before answering 202 instead.
/// How often `?wait=true` counts again without a wake-up from this process.
const STORED_RECHECK: Duration = Duration::from_millis(20);
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// A JSON answer already serialised (as the cache keeps it).
pub struct JsonBytes(Bytes);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

fn json_bytes(value: &impl Serialize) -> ApiResult<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn collection_name(raw: &str) -> ApiResult<BusName> {
    BusName::parse(raw, "/collection").map_err(ApiError::field)
}

#[derive(Serialize, ToSchema)]
pub struct RecordView {
    pub id: String,
    pub data: Value,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Record> for RecordView {
    fn from(r: Record) -> Self {
        Self {
            id: r.id,
            data: r.data,
            created_at: r.created_at.to_string(),
            updated_at: r.updated_at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RecordList {
    /// Newest first.
    pub records: Vec<RecordView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct WaitQuery {
    /// Answer 201 once the records are stored (up to 5 s; 202 if not yet).
    pub wait: Option<bool>,
}

/// Makes sure the collection's topic feeds it. The subscription is created once;
/// later calls only read it.
async fn ensure_feed(state: &AppState, tenant: &TenantId, collection: &BusName) -> ApiResult<()> {
    let name = BusName::parse(COLLECTION_SUBSCRIPTION, "/subscription").expect("a valid name");
    if state
        .bus
        .subscription(tenant, collection, &name)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let target = Target::Store {
        collection: collection.clone(),
    };
    state
        .bus
        .put_subscription(
            tenant,
            Subscription {
                topic: collection.clone(),
                name,
                filter: None,
                filter_scope: FilterScope::Attributes,
                target: target.to_json(true),
                delivery: DeliveryPolicy::default(),
                created_at: jiff::Timestamp::UNIX_EPOCH,
            },
        )
        .await?;
    Ok(())
}

fn parse_records(body: Value) -> ApiResult<Vec<Map<String, Value>>> {
    let Value::Object(object) = body else {
        return Err(ApiError::field(FieldError::new(
            "",
            "a record is a JSON object",
        )));
    };
    let batch = object.len() == 1 && object.get("records").is_some_and(Value::is_array);
    if !batch {
        return Ok(vec![object]);
    }
    let Some(Value::Array(records)) = object.into_iter().next().map(|(_, v)| v) else {
        unreachable!("checked to be {{\"records\": [...]}} above")
    };
    parse_batch(&records, "records", |record, pointer| match record {
        Value::Object(map) => Ok(map.clone()),
        _ => Err(FieldError::new(pointer, "a record is a JSON object")),
    })
}

/// Publishes records to the collection's topic (202 with their ids), or with
/// `?wait=true` answers 201 once they are stored.
#[utoipa::path(post, path = "/v1/collections/{collection}/records", tag = "collections", security(("bearer" = [])),
    params(("collection" = String, Path), WaitQuery), request_body = RecordsBody,
    responses((status = 202, body = Published), (status = 201, body = Published),
              (status = 400, body = Problem), (status = 413, body = Problem)))]
pub async fn post_records(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(collection): PathParams<String>,
    Query(query): Query<WaitQuery>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let collection = collection_name(&collection)?;
    let records = parse_records(body)?;
    ensure_feed(&state, &key.tenant_id, &collection).await?;
    let messages = records
        .into_iter()
        .map(|data| OutgoingMessage {
            body: Value::Object(data),
            attributes: Map::new(),
            dedup_id: None,
        })
        .collect();
    let ids = state
        .bus
        .publish(&key.tenant_id, &collection, messages)
        .await?;
    state.telemetry.bus.published(ids.len() as u64);
    let mut status = StatusCode::ACCEPTED;
    if query.wait.unwrap_or(false) {
        // This process's store target wakes the wait at once; one on another
        // replica is seen by the re-check.
        let stored = keel_store::wait::until(&state.stored, WAIT_LIMIT, STORED_RECHECK, || async {
            let count = state
                .store
                .stored_count(&key.tenant_id, collection.as_str(), &ids)
                .await?;
            Ok((count == ids.len()).then_some(()))
        })
        .await?;
        if stored.is_some() {
            // Reads after this answer must see the rows (read-your-writes), on
            // every replica: the worker that stored them (perhaps on another
            // replica) may not have invalidated the cache yet.
            state
                .reads
                .invalidate(&CachedReads::collection_scope(
                    &key.tenant_id,
                    collection.as_str(),
                ))
                .await;
            status = StatusCode::CREATED;
        }
    }
    let mut response = (status, Json(Published { ids })).into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(collection.as_str()));
    Ok(response)
}

/// One record (a JSON object), or `{"records": [...]}` with up to 1,000. Documentation
/// of the body: the handler reads the JSON itself.
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RecordsBody {
    Batch {
        #[schema(value_type = Vec<Object>)]
        records: Vec<Value>,
    },
    #[schema(value_type = Object)]
    One(serde_json::Map<String, Value>),
}

/// Lists records, newest first.
#[utoipa::path(get, path = "/v1/collections/{collection}/records", tag = "collections", security(("bearer" = [])),
    params(("collection" = String, Path), PageQuery),
    responses((status = 200, body = RecordList), (status = 400, body = Problem)))]
pub async fn list_records(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(collection): PathParams<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<JsonBytes> {
    key.require(Scope::Read)?;
    let collection = collection_name(&collection)?;
    let paging = state
        .paging(format!("{}/records/{}", key.tenant_id, collection.as_str()))
        .await?;
    let page = paging.request(page)?;
    let scope = CachedReads::collection_scope(&key.tenant_id, collection.as_str());
    let query = format!(
        "list/{}/{}",
        page.limit,
        page.cursor.as_deref().unwrap_or("")
    );
    let body = state
        .reads
        .read(
            Cached::collections,
            &scope,
            &query,
            state.config.read_cache_ttl,
            || async {
                let found = state
                    .store
                    .records(&key.tenant_id, collection.as_str(), page)
                    .await?;
                json_bytes(&RecordList {
                    records: found.items.into_iter().map(RecordView::from).collect(),
                    next_cursor: paging.next(found.next_cursor),
                })
            },
        )
        .await?;
    Ok(JsonBytes(body))
}

/// One record.
#[utoipa::path(get, path = "/v1/collections/{collection}/records/{id}", tag = "collections", security(("bearer" = [])),
    params(("collection" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = RecordView), (status = 404, body = Problem)))]
pub async fn get_record(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((collection, id)): PathParams<(String, String)>,
) -> ApiResult<JsonBytes> {
    key.require(Scope::Read)?;
    let collection = collection_name(&collection)?;
    let scope = CachedReads::collection_scope(&key.tenant_id, collection.as_str());
    let body = state
        .reads
        .read(
            Cached::collections,
            &scope,
            &format!("id/{id}"),
            state.config.read_cache_ttl,
            || async {
                // A missing record is cached too, as JSON null.
                match state
                    .store
                    .record(&key.tenant_id, collection.as_str(), &id)
                    .await?
                {
                    Some(record) => json_bytes(&RecordView::from(record)),
                    None => Ok(Bytes::from_static(b"null")),
                }
            },
        )
        .await?;
    if body.as_ref() == b"null" {
        return Err(ApiError::NotFound("no such record".into()));
    }
    Ok(JsonBytes(body))
}

/// Deletes a record.
#[utoipa::path(delete, path = "/v1/collections/{collection}/records/{id}", tag = "collections", security(("bearer" = [])),
    params(("collection" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_record(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((collection, id)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let collection = collection_name(&collection)?;
    let deleted = state
        .store
        .delete_record(&key.tenant_id, collection.as_str(), &id)
        .await?;
    state
        .reads
        .invalidate(&CachedReads::collection_scope(
            &key.tenant_id,
            collection.as_str(),
        ))
        .await;
    if !deleted {
        return Err(ApiError::NotFound("no such record".into()));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}
