//! Buckets, objects and notification rules over HTTP (SPEC §6). Bodies stream:
//! an upload goes from the socket to the blob store part by part, a download from
//! the blob store to the socket. The work behind them is in `crate::objects`.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures::{StreamExt, TryStreamExt};
use keel_core::{
    apikey::Scope,
    objects::{parse_range, parse_rules, BucketName, ObjectKey, RangeError},
};
use keel_store::objects::{ObjectMeta, PutError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::{
    audit::AuditNote,
    auth::Authed,
    extract::{JsonBody, PageQuery, PathParams, Query},
    objects::UploadError,
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

/// Longest `Content-Type` kept with an object.
const MAX_CONTENT_TYPE: usize = 255;

fn bucket_name(raw: &str) -> ApiResult<BucketName> {
    BucketName::parse(raw).map_err(ApiError::field)
}

#[derive(Serialize, ToSchema)]
pub struct BucketView {
    pub name: String,
    pub created_at: String,
}

/// Creates a bucket: 201 when new, 200 when it exists.
#[utoipa::path(put, path = "/v1/buckets/{bucket}", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path)),
    responses((status = 201, body = BucketView), (status = 200, body = BucketView)))]
pub async fn put_bucket(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(bucket): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let bucket = bucket_name(&bucket)?;
    let (found, created) = state
        .store
        .create_bucket(&key.tenant_id, bucket.as_str())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        Json(BucketView {
            name: found.name,
            created_at: found.created_at.to_string(),
        }),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(bucket.as_str()));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct BucketList {
    /// By name.
    pub buckets: Vec<BucketView>,
    pub next_cursor: Option<String>,
}

/// The tenant's buckets, by name.
#[utoipa::path(get, path = "/v1/buckets", tag = "objects", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = BucketList), (status = 400, body = Problem)))]
pub async fn list_buckets(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<BucketList>> {
    key.require(Scope::Read)?;
    let paging = state.paging(format!("{}/buckets", key.tenant_id)).await?;
    let page = paging.request(query)?;
    let found = state.store.list_buckets(&key.tenant_id, page).await?;
    Ok(Json(BucketList {
        buckets: found
            .items
            .into_iter()
            .map(|b| BucketView {
                name: b.name,
                created_at: b.created_at.to_string(),
            })
            .collect(),
        next_cursor: paging.next(found.next_cursor),
    }))
}

/// One notification rule (SPEC §6).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    /// `configurationId` of the records it publishes (default `rule-<n>`).
    pub id: Option<String>,
    /// S3 event names: `ObjectCreated:*`, `ObjectCreated:Put`, `ObjectRemoved:*`,
    /// `ObjectRemoved:Delete`, … (with or without `s3:`).
    pub events: Vec<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub topic: String,
}

/// Replaces the bucket's notification rules; answers them as stored.
#[utoipa::path(put, path = "/v1/buckets/{bucket}/notifications", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path)), request_body = Vec<RuleView>,
    responses((status = 200, body = Vec<RuleView>)))]
pub async fn put_notifications(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(bucket): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let bucket = bucket_name(&bucket)?;
    let rules = parse_rules(&body).map_err(ApiError::field)?;
    let stored = Value::Array(rules.iter().map(|r| r.to_json()).collect());
    if !state
        .store
        .set_notification_rules(&key.tenant_id, bucket.as_str(), stored.clone())
        .await?
    {
        return Err(ApiError::NotFound("no such bucket".into()));
    }
    let mut response = Json(stored).into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(bucket.as_str()));
    Ok(response)
}

/// The bucket's notification rules.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/notifications", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path)),
    responses((status = 200, body = Vec<RuleView>)))]
pub async fn get_notifications(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(bucket): PathParams<String>,
) -> ApiResult<Json<Value>> {
    key.require(Scope::Read)?;
    let bucket = bucket_name(&bucket)?;
    let found = state
        .store
        .bucket(&key.tenant_id, bucket.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound("no such bucket".into()))?;
    Ok(Json(found.rules))
}

#[derive(Serialize, ToSchema)]
pub struct ObjectView {
    pub key: String,
    pub size: u64,
    /// MD5 of the body, lowercase hex.
    pub etag: String,
    pub content_type: String,
    pub last_modified: String,
}

impl From<ObjectMeta> for ObjectView {
    fn from(m: ObjectMeta) -> Self {
        Self {
            key: m.key,
            size: m.size,
            etag: m.etag,
            content_type: m.content_type,
            last_modified: m.modified_at.to_string(),
        }
    }
}

fn quoted_etag(etag: &str) -> HeaderValue {
    HeaderValue::try_from(format!("\"{etag}\"")).expect("hex is a valid header value")
}

/// Stores the body as the object `key` (any content type, streamed); 200 with its
/// ETag. Events of matching notification rules are committed with it.
#[utoipa::path(put, path = "/v1/buckets/{bucket}/objects/{*key}", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path), ("key" = String, Path, description = "The object's key; may contain '/'")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The object's bytes, of any content type"),
    responses((status = 200, body = ObjectView, headers(("ETag" = String, description = "MD5 of the body, quoted")))))]
pub async fn put_object(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((bucket, object)): PathParams<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let (bucket, object) = ApiError::both(BucketName::parse(&bucket), ObjectKey::parse(&object))?;
    let max_bytes = state.config.limits.object_max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(too_large(max_bytes));
    }
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => "application/octet-stream".to_owned(),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= MAX_CONTENT_TYPE)
            .ok_or_else(|| {
                ApiError::field(keel_core::FieldError::new(
                    "/content-type",
                    "Content-Type is visible ASCII of at most 255 bytes",
                ))
            })?
            .to_owned(),
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let seen = timed_out.clone();
    let stream = body
        .into_data_stream()
        .map_err(move |e| {
            if crate::connections::is_body_timeout(&e) {
                seen.store(true, Ordering::Relaxed);
            }
            e.to_string()
        })
        .boxed();
    let stored = state
        .objects
        .upload(
            &key.tenant_id,
            &bucket,
            &object,
            content_type,
            stream,
            max_bytes,
        )
        .await
        .map_err(|e| match e {
            UploadError::Api(e) => e,
            UploadError::Put(PutError::TooLarge(max)) => too_large(max),
            UploadError::Put(PutError::Body(_)) if timed_out.load(Ordering::Relaxed) => {
                ApiError::RequestTimeout("the request body stopped arriving".into())
            }
            UploadError::Put(PutError::Body(why)) => {
                ApiError::MalformedBody(format!("the request body could not be read: {why}"))
            }
            UploadError::Put(PutError::Store(e)) => e.into(),
        })?;
    let etag = quoted_etag(&stored.etag);
    let mut response = Json(ObjectView::from(stored)).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response
        .extensions_mut()
        .insert(AuditNote::resource(format!(
            "{}/{}",
            bucket.as_str(),
            object.as_str()
        )));
    Ok(response)
}

fn too_large(max: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "objects are at most {max} bytes (object_max_bytes)"
    ))
}

/// The object's bytes (or a `Range` of them: 206), streamed, with its
/// `Content-Type`, `ETag` and `Last-Modified`.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects/{*key}", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path), ("key" = String, Path, description = "The object's key; may contain '/'"),
           ("Range" = Option<String>, Header, description = "bytes=a-b, bytes=a- or bytes=-n")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "The object's bytes, as the content type it was stored with"),
              (status = 206, content_type = "application/octet-stream", body = Vec<u8>, description = "The requested range"),
              (status = 304, description = "If-None-Match named the current ETag"),
              (status = 416, body = Problem, description = "The range is outside the object")))]
pub async fn get_object(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((bucket, object)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let meta = find_object(&state, &key, &bucket, &object).await?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim().trim_matches('"') == meta.etag)
        })
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, quoted_etag(&meta.etag));
        return Ok(response);
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(raw) => match parse_range(raw, meta.size) {
            Ok(range) => Some(range),
            Err(RangeError::Ignored) => None,
            Err(RangeError::Unsatisfiable) => {
                return Err(ApiError::RangeNotSatisfiable { size: meta.size })
            }
        },
    };
    let bytes = state
        .objects
        .blobs
        .get(&meta.blob, range.map(|r| r.start..r.end))
        .await?;
    let body = Body::from_stream(bytes.map_err(std::io::Error::other));
    let mut response = Response::new(body);
    set_object_headers(&mut response, &meta);
    if let Some(r) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::try_from(format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size))
                .expect("digits are a valid header value"),
        );
    }
    Ok(response)
}

/// The object's headers without its bytes.
#[utoipa::path(head, path = "/v1/buckets/{bucket}/objects/{*key}", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path), ("key" = String, Path, description = "The object's key; may contain '/'")),
    responses((status = 200, description = "Content-Type, Content-Length, ETag and Last-Modified of the object")))]
pub async fn head_object(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((bucket, object)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    let meta = find_object(&state, &key, &bucket, &object).await?;
    let mut response = Response::new(Body::empty());
    set_object_headers(&mut response, &meta);
    Ok(response)
}

async fn find_object(
    state: &AppState,
    key: &crate::auth::KeyContext,
    bucket: &str,
    object: &str,
) -> ApiResult<ObjectMeta> {
    key.require(Scope::Read)?;
    let (bucket, object) = ApiError::both(BucketName::parse(bucket), ObjectKey::parse(object))?;
    state
        .store
        .object(&key.tenant_id, bucket.as_str(), object.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound("no such object".into()))
}

fn set_object_headers(response: &mut Response, meta: &ObjectMeta) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::try_from(meta.content_type.as_str())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    headers.insert(header::ETAG, quoted_etag(&meta.etag));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(date) = HeaderValue::try_from(
        meta.modified_at
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ) {
        headers.insert(header::LAST_MODIFIED, date);
    }
}

/// Deletes the object (204 whether or not it existed, as S3 answers); a removal
/// publishes the events of matching `ObjectRemoved` rules.
#[utoipa::path(delete, path = "/v1/buckets/{bucket}/objects/{*key}", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path), ("key" = String, Path, description = "The object's key; may contain '/'")),
    responses((status = 204, description = "Gone")))]
pub async fn delete_object(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((bucket, object)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let (bucket, object) = ApiError::both(BucketName::parse(&bucket), ObjectKey::parse(&object))?;
    state
        .objects
        .remove(&key.tenant_id, &bucket, &object)
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(format!(
            "{}/{}",
            bucket.as_str(),
            object.as_str()
        )));
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ObjectList {
    /// In key order (bytes of UTF-8, as S3 orders them).
    pub objects: Vec<ObjectView>,
    pub next_cursor: Option<String>,
}

/// Lists objects by key, optionally under a prefix.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects", tag = "objects", security(("bearer" = [])),
    params(("bucket" = String, Path), ListQuery),
    responses((status = 200, body = ObjectList)))]
pub async fn list_objects(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(bucket): PathParams<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ObjectList>> {
    key.require(Scope::Read)?;
    let bucket = bucket_name(&bucket)?;
    let prefix = query.prefix.unwrap_or_default();
    if prefix.len() > ObjectKey::MAX_BYTES || prefix.contains('\0') {
        return Err(ApiError::field(keel_core::FieldError::new(
            "/prefix",
            "a prefix is at most 1,024 bytes, without NUL",
        )));
    }
    if state
        .store
        .bucket(&key.tenant_id, bucket.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("no such bucket".into()));
    }
    let paging = state
        .paging(format!("{}/objects/{}", key.tenant_id, bucket.as_str()))
        .await?;
    let page = paging.request(PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    })?;
    let found = state
        .store
        .list_objects(&key.tenant_id, bucket.as_str(), &prefix, page)
        .await?;
    Ok(Json(ObjectList {
        objects: found.items.into_iter().map(ObjectView::from).collect(),
        next_cursor: paging.next(found.next_cursor),
    }))
}
