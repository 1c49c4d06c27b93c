//! The event bus over HTTP (SPEC §4): topics, publishing, subscriptions, and the
//! SQS-like queue API. `queue` targets are pulled by consumers here; `store` and
//! `webhook` targets are served by the built-in workers (`crate::workers`).

use std::time::Duration;

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
use keel_store::bus::{DeadLetter, Delivery, FilterScope, OutgoingMessage, Subscription};
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
const MAX_WAIT_S: u32 = 20;

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
    state.store.ensure_topic(&key.tenant_id, &topic).await?;
    let mut response = Json(TopicView {
        topic: topic.as_str().to_owned(),
    })
    .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::resource(topic.as_str()));
    Ok(response)
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
fn parse_message(value: &Value, pointer: &str) -> Result<OutgoingMessage, FieldError> {
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
                        format!("{pointer}/attributes/{k}"),
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
    params(("topic" = String, Path)),
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
    let ids = state
        .store
        .publish(&key.tenant_id, &topic, messages)
        .await?;
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
    let stored = state
        .store
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

async fn find_subscription(
    state: &AppState,
    key: &KeyContext,
    topic: &str,
    name: &str,
) -> ApiResult<Subscription> {
    let (topic, name) = (topic_name(topic)?, subscription_name(name)?);
    state
        .store
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

#[derive(Deserialize, ToSchema)]
pub struct ReceiveBody {
    /// 1–100 (default 1).
    pub max: Option<u32>,
    /// 0–20 seconds of long polling (default 0).
    pub wait_s: Option<u32>,
    /// Overrides the subscription's visibility timeout for these messages.
    pub visibility_timeout_s: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub receipt: String,
    pub receive_count: u32,
    pub id: String,
    pub body: Value,
    pub attributes: Map<String, Value>,
    pub published_at: String,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            receipt: d.receipt,
            receive_count: d.receive_count,
            id: d.id,
            body: d.body,
            attributes: d.attributes,
            published_at: d.published_at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Received {
    pub messages: Vec<DeliveryView>,
}

/// Receives up to `max` messages, waiting up to `wait_s` for the first to arrive.
#[utoipa::path(post, path = "/v1/queues/{topic}/{subscription}/receive", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)), request_body = ReceiveBody,
    responses((status = 200, body = Received), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn receive(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Received>> {
    key.require(Scope::Write)?;
    let body: ReceiveBody = from_json(body)?;
    let max = body.max.unwrap_or(1);
    if !(1..=100).contains(&max) {
        return Err(ApiError::field(FieldError::new(
            "/max",
            "max must be 1 to 100",
        )));
    }
    let wait_s = body.wait_s.unwrap_or(0);
    if wait_s > MAX_WAIT_S {
        return Err(ApiError::field(FieldError::new(
            "/wait_s",
            "wait_s must be 0 to 20",
        )));
    }
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let visibility = body
        .visibility_timeout_s
        .unwrap_or(subscription.delivery.visibility_timeout_s);
    if !(1..=DeliveryPolicy::MAX_VISIBILITY_S).contains(&visibility) {
        return Err(ApiError::field(FieldError::new(
            "/visibility_timeout_s",
            "visibility_timeout_s must be 1 to 43200",
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait_s));
    let arrivals = state.store.arrivals();
    loop {
        // Register interest before looking, so a publish between the look and the
        // wait still wakes us.
        let notified = arrivals.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let got = state
            .store
            .receive(
                &key.tenant_id,
                &subscription.topic,
                &subscription.name,
                max,
                visibility,
            )
            .await?;
        if !got.is_empty() || tokio::time::Instant::now() >= deadline {
            state.telemetry.bus.delivered(got.len() as u64);
            return Ok(Json(Received {
                messages: got.into_iter().map(DeliveryView::from).collect(),
            }));
        }
        // Also look again each second: messages become visible by time, too.
        let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(tick) => {}
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct AckBody {
    pub receipts: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Acked {
    pub acked: usize,
    /// Receipts that were unknown, already acked or superseded by a redelivery.
    pub not_current: Vec<String>,
}

/// Acknowledges received messages by receipt. When no receipt is current: 404.
#[utoipa::path(post, path = "/v1/queues/{topic}/{subscription}/ack", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)), request_body = AckBody,
    responses((status = 200, body = Acked), (status = 404, body = Problem)))]
pub async fn ack(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Acked>> {
    key.require(Scope::Write)?;
    let body: AckBody = from_json(body)?;
    if body.receipts.is_empty() || body.receipts.len() > 1000 {
        return Err(ApiError::field(FieldError::new(
            "/receipts",
            "receipts holds 1 to 1,000 receipts",
        )));
    }
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let total = body.receipts.len();
    let not_current = state
        .store
        .ack(
            &key.tenant_id,
            &subscription.topic,
            &subscription.name,
            body.receipts,
        )
        .await?;
    if not_current.len() == total {
        return Err(ApiError::NotFound(
            "no receipt was current: unknown, already acked, or redelivered since".into(),
        ));
    }
    state
        .telemetry
        .bus
        .acked((total - not_current.len()) as u64);
    Ok(Json(Acked {
        acked: total - not_current.len(),
        not_current,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NackBody {
    pub receipt: String,
    /// Seconds until the message is visible again (default 0).
    pub delay_s: Option<u32>,
}

/// Returns a received message to the queue, visible again after `delay_s`.
#[utoipa::path(post, path = "/v1/queues/{topic}/{subscription}/nack", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)), request_body = NackBody,
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn nack(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    key.require(Scope::Write)?;
    let body: NackBody = from_json(body)?;
    let delay = body.delay_s.unwrap_or(0);
    if delay > DeliveryPolicy::MAX_VISIBILITY_S {
        return Err(ApiError::field(FieldError::new(
            "/delay_s",
            "delay_s must be 0 to 43200",
        )));
    }
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let found = state
        .store
        .nack(
            &key.tenant_id,
            &subscription.topic,
            &subscription.name,
            &body.receipt,
            delay,
            Some("nacked by consumer".into()),
        )
        .await?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("the receipt is not current".into()))
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueStatsView {
    pub depth: u64,
    pub in_flight: u64,
    pub oldest_age_s: u64,
    pub dlq_depth: u64,
}

/// Queue statistics.
#[utoipa::path(get, path = "/v1/queues/{topic}/{subscription}", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)),
    responses((status = 200, body = QueueStatsView), (status = 404, body = Problem)))]
pub async fn stats(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
) -> ApiResult<Json<QueueStatsView>> {
    key.require(Scope::Read)?;
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let s = state
        .store
        .stats(&key.tenant_id, &subscription.topic, &subscription.name)
        .await?;
    Ok(Json(QueueStatsView {
        depth: s.depth,
        in_flight: s.in_flight,
        oldest_age_s: s.oldest_age_s,
        dlq_depth: s.dlq_depth,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: String,
    pub body: Value,
    pub attributes: Map<String, Value>,
    pub published_at: String,
    pub receive_count: u32,
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetters {
    pub messages: Vec<DeadLetterView>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            id: d.id,
            body: d.body,
            attributes: d.attributes,
            published_at: d.published_at.to_string(),
            receive_count: d.receive_count,
            last_error: d.last_error,
        }
    }
}

/// The dead-letter queue, oldest first (up to 1,000).
#[utoipa::path(get, path = "/v1/queues/{topic}/{subscription}/dlq", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)),
    responses((status = 200, body = DeadLetters), (status = 404, body = Problem)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
) -> ApiResult<Json<DeadLetters>> {
    key.require(Scope::Read)?;
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let dead = state
        .store
        .dead_letters(
            &key.tenant_id,
            &subscription.topic,
            &subscription.name,
            1000,
        )
        .await?;
    Ok(Json(DeadLetters {
        messages: dead.into_iter().map(DeadLetterView::from).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct RedriveBody {
    /// Message ids to move back; all dead letters when absent.
    pub ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Redriven {
    pub moved: u64,
}

/// Moves dead letters back to the queue (all, or by id) and says how many moved.
#[utoipa::path(post, path = "/v1/queues/{topic}/{subscription}/dlq/redrive", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)), request_body = RedriveBody,
    responses((status = 200, body = Redriven), (status = 404, body = Problem)))]
pub async fn redrive(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Redriven>> {
    key.require(Scope::Write)?;
    let body: RedriveBody = from_json(body)?;
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let moved = state
        .store
        .redrive(
            &key.tenant_id,
            &subscription.topic,
            &subscription.name,
            body.ids,
        )
        .await?;
    Ok(Json(Redriven { moved }))
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub message_id: String,
    pub attempt: u32,
    pub at: String,
    /// `delivered`, `failed` or `dead-lettered`.
    pub outcome: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: f64,
}

#[derive(Serialize, ToSchema)]
pub struct Attempts {
    /// Newest first (up to 1,000).
    pub attempts: Vec<AttemptView>,
}

/// Every delivery attempt a built-in worker made for this subscription.
#[utoipa::path(get, path = "/v1/queues/{topic}/{subscription}/attempts", tag = "bus", security(("bearer" = [])),
    params(("topic" = String, Path), ("subscription" = String, Path)),
    responses((status = 200, body = Attempts), (status = 404, body = Problem)))]
pub async fn attempts(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams((topic, name)): PathParams<(String, String)>,
) -> ApiResult<Json<Attempts>> {
    key.require(Scope::Read)?;
    let subscription = find_subscription(&state, &key, &topic, &name).await?;
    let attempts = state
        .store
        .attempts(
            &key.tenant_id,
            &subscription.topic,
            &subscription.name,
            1000,
        )
        .await?;
    Ok(Json(Attempts {
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                message_id: a.message_id,
                attempt: a.attempt,
                at: a.at.to_string(),
                outcome: a.outcome,
                status: a.status,
                error: a.error,
                latency_ms: (a.latency_ms * 1000.0).round() / 1000.0,
            })
            .collect(),
    }))
}
