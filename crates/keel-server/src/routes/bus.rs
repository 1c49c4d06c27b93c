//! The event bus over HTTP (SPEC §4): topics, publishing and subscriptions (the
//! queue API is in `routes::queues`). `queue` targets are pulled by consumers;
//! `store` and `webhook` targets are served by the built-in workers
//! (`crate::workers`).

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    apikey::Scope,
    bus::{BusName, DeliveryPolicy, Target},
    filter::FilterPolicy,
    FieldError,
};
use keel_store::bus::{FilterScope, OutgoingMessage, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::{Authed, KeyContext},
    extract::{from_json, JsonBody, PathParams},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

/// At most this many messages per publish call (SPEC §4).
pub const MAX_BATCH: usize = 1000;

fn topic_name(raw: &str) -> ApiResult<BusName> {
    BusName::parse(raw, "/topic").map_err(ApiError::field)
}

fn subscription_name(raw: &str) -> ApiResult<BusName> {
    BusName::parse(raw, "/subscription").map_err(ApiError::field)
}

#[derive(Serialize, ToSchema)]
pub struct TopicView {
    pub topic: String,
}

/// Creates a topic (publishing also creates it).
#[utoipa::path(put, path = "/v1/topics/{topic}", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path)), responses((status = 200, body = TopicView), (status = 400, body = Problem)))]
pub async fn put_topic(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(topic): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let topic = topic_name(&topic)?;
    state.bus.ensure_topic(&key.tenant_id, &topic).await?;
    let mut response = Json(TopicView {
        topic: topic.as_str().to_owned(),
    })
    .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(topic.as_str()));
    Ok(response)
}

/// One message as published (SPEC §4). Documentation of the body: the handler
/// reads the JSON itself, so that every error points at the field.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct MessageIn {
    /// Any JSON.
    pub body: Value,
    /// String or number values.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// Dedup id, 1–128 characters: the same id within 5 minutes is delivered once.
    pub id: Option<String>,
}

/// Up to 1,000 messages in one call.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct MessageBatch {
    pub messages: Vec<MessageIn>,
}

/// One message, or `{"messages": [...]}`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PublishBody {
    Batch(MessageBatch),
    One(MessageIn),
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    pub ids: Vec<String>,
}

/// Parses the items of a batch (`{"<field>": [...]}`): 1 to [`MAX_BATCH`] of them
/// (more is 413), each with `parse` and its pointer.
pub fn parse_batch<T>(
    items: &[Value],
    field: &str,
    parse: impl Fn(&Value, &str) -> Result<T, FieldError>,
) -> ApiResult<Vec<T>> {
    if items.len() > MAX_BATCH {
        return Err(ApiError::PayloadTooLarge(format!(
            "at most {MAX_BATCH} {field} per call"
        )));
    }
    if items.is_empty() {
        return Err(ApiError::field(FieldError::new(
            format!("/{field}"),
            format!("{field} is empty"),
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse(item, &format!("/{field}/{i}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::field)
}

/// Parses one message: `{"body": any, "attributes"?: {k: string | number}, "id"?: string}`.
pub fn parse_message(value: &Value, pointer: &str) -> Result<OutgoingMessage, FieldError> {
    let object = value
        .as_object()
        .ok_or_else(|| FieldError::new(pointer, "a message is an object with a body"))?;
    let body = object
        .get("body")
        .cloned()
        .ok_or_else(|| FieldError::new(format!("{pointer}/body"), "body is required"))?;
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => {
            for (k, v) in map {
                if !(v.is_string() || v.is_number()) {
                    return Err(FieldError::new(
                        format!(
                            "{pointer}/attributes/{}",
                            k.replace('~', "~0").replace('/', "~1")
                        ),
                        "attribute values are strings or numbers",
                    ));
                }
            }
            map.clone()
        }
        Some(_) => {
            return Err(FieldError::new(
                format!("{pointer}/attributes"),
                "attributes is an object",
            ))
        }
    };
    let dedup_id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if (1..=128).contains(&id.len()) => Some(id.clone()),
        Some(_) => {
            return Err(FieldError::new(
                format!("{pointer}/id"),
                "id is a string of 1 to 128 characters",
            ))
        }
    };
    Ok(OutgoingMessage {
        body,
        attributes,
        dedup_id,
    })
}

/// Publishes one message or `{"messages": [...]}` (up to 1,000 / 1 MiB). Answers 202
/// once every message is durable.
#[utoipa::path(post, path = "/v1/topics/{topic}/messages", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path)), request_body = PublishBody,
    responses((status = 202, body = Published), (status = 400, body = Problem), (status = 413, body = Problem)))]
pub async fn publish(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(topic): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Write)?;
    let topic = topic_name(&topic)?;
    let messages = match body.get("messages") {
        Some(Value::Array(list)) => parse_batch(list, "messages", parse_message)?,
        Some(_) => {
            return Err(ApiError::field(FieldError::new(
                "/messages",
                "messages is a list",
            )))
        }
        None => vec![parse_message(&body, "").map_err(ApiError::field)?],
    };
    let ids = state.bus.publish(&key.tenant_id, &topic, messages).await?;
    state.telemetry.bus.published(ids.len() as u64);
    let mut response = (StatusCode::ACCEPTED, Json(Published { ids })).into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(topic.as_str()));
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
pub struct SubscriptionBody {
    pub filter: Option<Value>,
    /// `attributes` (default) or `body`.
    pub filter_scope: Option<String>,
    /// `{"type": "queue"}`.
    pub target: Value,
    pub max_receives: Option<u32>,
    pub visibility_timeout_s: Option<u32>,
    pub retry_backoff_s: Option<Vec<u32>>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    pub topic: String,
    pub name: String,
    pub filter: Option<Value>,
    pub filter_scope: &'static str,
    pub target: Value,
    pub max_receives: u32,
    pub visibility_timeout_s: u32,
    pub retry_backoff_s: Vec<u32>,
    pub created_at: String,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> Self {
        Self {
            topic: s.topic.as_str().to_owned(),
            name: s.name.as_str().to_owned(),
            filter: s.filter,
            filter_scope: s.filter_scope.as_str(),
            // Shown without the webhook secret.
            target: Target::parse(&s.target)
                .map(|t| t.to_json(false))
                .unwrap_or(s.target),
            max_receives: s.delivery.max_receives,
            visibility_timeout_s: s.delivery.visibility_timeout_s,
            retry_backoff_s: s.delivery.retry_backoff_s,
            created_at: s.created_at.to_string(),
        }
    }
}

fn parse_subscription(
    topic: BusName,
    name: BusName,
    body: SubscriptionBody,
) -> ApiResult<Subscription> {
    let filter_scope = match body.filter_scope.as_deref() {
        None | Some("attributes") => FilterScope::Attributes,
        Some("body") => FilterScope::Body,
        Some(_) => {
            return Err(ApiError::field(FieldError::new(
                "/filter_scope",
                "filter_scope is attributes or body",
            )))
        }
    };
    let filter = match body.filter {
        None | Some(Value::Null) => None,
        Some(policy) => {
            FilterPolicy::parse(&policy, "/filter").map_err(ApiError::field)?;
            Some(policy)
        }
    };
    let target = Target::parse(&body.target).map_err(ApiError::field)?;
    if let Target::Notify { .. } = target {
        return Err(ApiError::field(keel_core::FieldError::new(
            "/target/type",
            "notify targets are made by POST /v1/channels",
        )));
    }
    let defaults = DeliveryPolicy::default();
    let delivery = DeliveryPolicy::new(
        body.max_receives.unwrap_or(defaults.max_receives),
        body.visibility_timeout_s
            .unwrap_or(defaults.visibility_timeout_s),
        body.retry_backoff_s.unwrap_or(defaults.retry_backoff_s),
    )
    .map_err(ApiError::field)?;
    Ok(Subscription {
        topic,
        name,
        filter,
        filter_scope,
        target: target.to_json(true),
        delivery,
        created_at: jiff::Timestamp::UNIX_EPOCH,
    })
}

/// Creates or replaces a subscription; a malformed filter is a 400 pointing at it.
#[utoipa::path(put, path = "/v1/topics/{topic}/subscriptions/{name}", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("name" = String, Path)), request_body = SubscriptionBody,
    responses((status = 200, body = SubscriptionView), (status = 400, body = Problem)))]
pub async fn put_subscription(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let (topic, name) = (topic_name(&topic)?, subscription_name(&name)?);
    let subscription = parse_subscription(topic, name, from_json(body)?)?;
    if let Ok(Target::Webhook { url, .. }) = Target::parse(&subscription.target) {
        // What can be refused without resolving the name is refused now; the rest
        // is checked against every address at each call.
        state.outbound.check_url(&url).map_err(|refused| {
            ApiError::field(FieldError::new("/target/url", refused.to_string()))
        })?;
    }
    let stored = state
        .bus
        .put_subscription(&key.tenant_id, subscription)
        .await?;
    let note = AuditNote::resource(format!(
        "{}/{}",
        stored.topic.as_str(),
        stored.name.as_str()
    ));
    let mut response = Json(SubscriptionView::from(stored)).into_response();
    response.extensions_mut().insert(note);
    Ok(response)
}

pub(crate) async fn find_subscription(
    state: &AppState,
    key: &KeyContext,
    topic: &str,
    name: &str,
) -> ApiResult<Subscription> {
    let (topic, name) = (topic_name(topic)?, subscription_name(name)?);
    state
        .bus
        .subscription(&key.tenant_id, &topic, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such subscription".into()))
}

/// One subscription.
#[utoipa::path(get, path = "/v1/topics/{topic}/subscriptions/{name}", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)))]
pub async fn get_subscription(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
) -> ApiResult<Json<SubscriptionView>> {
    key.require(Scope::Read)?;
    Ok(Json(
        find_subscription(&state, &key, &topic, &name).await?.into(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    /// By topic, then name: every subscription of the tenant (at most its
    /// `subscriptions_per_tenant` quota).
    pub subscriptions: Vec<SubscriptionView>,
}

/// Every subscription of the caller's tenant, across its topics.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "bus", security(("bearer" = [])),
    responses((status = 200, body = SubscriptionList), (status = 403, body = Problem)))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Authed(key): Authed,
) -> ApiResult<Json<SubscriptionList>> {
    key.require(Scope::Read)?;
    let all = state.bus.list_subscriptions(&key.tenant_id).await?;
    Ok(Json(SubscriptionList {
        subscriptions: all.into_iter().map(SubscriptionView::from).collect(),
    }))
}
