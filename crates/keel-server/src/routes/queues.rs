//! The SQS-like queue API (SPEC §4): receive with long poll, ack, nack, stats,
//! dead letters, redrive, and the built-in workers' delivery attempts.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use keel_core::{apikey::Scope, bus::DeliveryPolicy, FieldError};
use keel_store::bus::{DeadLetter, Delivery, ReceiveRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{
    auth::Authed,
    extract::{from_json, JsonBody, PathParams},
    problem::{ApiError, ApiResult, Problem},
    routes::bus::find_subscription,
    state::AppState,
};

const MAX_WAIT_S: u32 = 20;

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
    let got = state
        .bus
        .receive(
            &key.tenant_id,
            &subscription.topic,
            &subscription.name,
            ReceiveRequest {
                max,
                visibility_s: visibility,
                wait: Duration::from_secs(u64::from(wait_s)),
            },
        )
        .await?;
    state.telemetry.bus.delivered(got.len() as u64);
    Ok(Json(Received {
        messages: got.into_iter().map(DeliveryView::from).collect(),
    }))
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
        .bus
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
        .bus
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
        .bus
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
        .bus
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
        .bus
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
    /// What the delivery did, for workers that say more than an outcome
    /// (`telemetry-import`: `imported`, `rejected`, `errors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
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
                report: a.report,
            })
            .collect(),
    }))
}
