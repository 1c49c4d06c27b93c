//! Notification channels (SPEC §7): `POST|GET /v1/channels`,
//! `GET|DELETE /v1/channels/{id}`. A channel is delivered to through a
//! subscription `channel-<id>` on the tenant's `keel.notifications` topic with
//! a `notify` target, so its deliveries are retried, dead-lettered, redriven and
//! listed like any subscription's (`GET /v1/queues/keel.notifications/channel-<id>/attempts`).

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{
    apikey::Scope,
    bus::{BusName, DeliveryPolicy, Target},
    channel::ChannelSpec,
    FieldError,
};
use keel_store::{
    bus::{FilterScope, Subscription},
    channels::{StoredChannel, MAX_CHANNELS},
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::{
    audit::AuditNote,
    auth::{Authed, KeyContext},
    extract::{JsonBody, PathParams},
    notices,
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

/// Retries of a notice: 10 tries over about 20 minutes.
const RECEIVES: u32 = 10;
const BACKOFF_S: [u32; 6] = [5, 15, 30, 60, 180, 300];

#[derive(Serialize, ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    /// `webhook`, `slack` or `pagerduty`.
    pub kind: String,
    pub url: String,
    /// PagerDuty's routing key, masked.
    pub routing_key: Option<String>,
    pub created_at: String,
    /// The subscription that delivers to it and where its attempts are listed.
    pub subscription: String,
    pub deliveries: String,
}

impl From<StoredChannel> for ChannelView {
    fn from(c: StoredChannel) -> Self {
        let subscription = subscription_name(&c.id);
        Self {
            deliveries: format!("/v1/queues/{}/{subscription}/attempts", notices::TOPIC),
            subscription,
            id: c.id,
            name: c.spec.name,
            kind: c.spec.kind.as_str().into(),
            url: c.spec.url,
            routing_key: c.spec.routing_key.map(|_| "********".into()),
            created_at: c.created_at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelView>,
}

/// The body of `POST /v1/channels` (SPEC §7).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the shape; `ChannelSpec::parse` reads it
pub struct ChannelBody {
    pub name: String,
    /// `webhook`, `slack` or `pagerduty`.
    pub kind: String,
    /// Where to post; PagerDuty defaults to its Events v2 endpoint.
    pub url: Option<String>,
    /// PagerDuty: the integration's routing key.
    pub routing_key: Option<String>,
}

fn subscription_name(channel_id: &str) -> String {
    format!("channel-{channel_id}")
}

fn subscription_for(channel_id: &str, live: bool, created_at: jiff::Timestamp) -> Subscription {
    Subscription {
        topic: notices::topic(),
        name: BusName::parse(&subscription_name(channel_id), "/name").expect("a valid name"),
        // A deleted channel's subscription takes nothing more (the bus has no
        // subscription deletion): no notice has this kind.
        filter: (!live).then(|| json!({"kind": ["channel-deleted"]})),
        filter_scope: FilterScope::Attributes,
        target: Target::Notify {
            channel: channel_id.to_owned(),
        }
        .to_json(true),
        delivery: DeliveryPolicy::new(RECEIVES, 30, BACKOFF_S.to_vec())
            .expect("a valid delivery policy"),
        created_at,
    }
}

/// The listed channel ids the tenant does not have, as field errors.
pub(crate) async fn unknown_channels(
    state: &AppState,
    key: &KeyContext,
    ids: &[String],
) -> ApiResult<Vec<FieldError>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let known: Vec<String> = state
        .store
        .list_channels(&key.tenant_id)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    Ok(ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !known.contains(id))
        .map(|(i, id)| FieldError::new(format!("/channels/{i}"), format!("no channel {id:?}")))
        .collect())
}

/// Creates a channel; incidents and SLO alerts go to it from now on.
#[utoipa::path(post, path = "/v1/channels", tag = "uptime", security(("bearer" = [])),
    request_body = ChannelBody,
    responses((status = 201, body = ChannelView), (status = 400, body = Problem),
              (status = 409, body = Problem)))]
pub async fn create_channel(
    State(state): State<AppState>,
    Authed(key): Authed,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let spec = ChannelSpec::parse(&body).map_err(ApiError::fields)?;
    if state.store.list_channels(&key.tenant_id).await?.len() >= MAX_CHANNELS {
        return Err(ApiError::Conflict(format!(
            "a tenant has at most {MAX_CHANNELS} channels"
        )));
    }
    let stored = state
        .store
        .create_channel(&key.tenant_id, spec)
        .await
        .map_err(|e| match e {
            keel_store::StoreError::Conflict(_) => {
                ApiError::Conflict("this tenant already has a channel of that name".into())
            }
            other => other.into(),
        })?;
    state
        .bus
        .put_subscription(
            &key.tenant_id,
            subscription_for(&stored.id, true, stored.created_at),
        )
        .await?;
    let id = stored.id.clone();
    let mut response = (StatusCode::CREATED, Json(ChannelView::from(stored))).into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}

/// The tenant's channels, oldest first.
#[utoipa::path(get, path = "/v1/channels", tag = "uptime", security(("bearer" = [])),
    responses((status = 200, body = ChannelList)))]
pub async fn list_channels(
    State(state): State<AppState>,
    Authed(key): Authed,
) -> ApiResult<Json<ChannelList>> {
    key.require(Scope::Read)?;
    let channels = state.store.list_channels(&key.tenant_id).await?;
    Ok(Json(ChannelList {
        channels: channels.into_iter().map(ChannelView::from).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/channels/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = Problem)))]
pub async fn get_channel(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<ChannelView>> {
    key.require(Scope::Read)?;
    let channel = state
        .store
        .channel(&key.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such channel".into()))?;
    Ok(Json(channel.into()))
}

/// Removes a channel; notices queued for it and not yet sent are not sent.
#[utoipa::path(delete, path = "/v1/channels/{id}", tag = "uptime", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    key.require(Scope::Admin)?;
    let Some(channel) = state.store.channel(&key.tenant_id, &id).await? else {
        return Err(ApiError::NotFound("no such channel".into()));
    };
    state
        .bus
        .put_subscription(
            &key.tenant_id,
            subscription_for(&id, false, channel.created_at),
        )
        .await?;
    state.store.delete_channel(&key.tenant_id, &id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote::resource(id));
    Ok(response)
}
