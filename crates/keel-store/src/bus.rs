//! The bus port (SPEC §4): SNS topics and filtered subscriptions feeding SQS-like
//! queues with visibility timeouts, receive counts, dead letters and redrive.
//!
//! The trait speaks in terms a NATS JetStream adapter can honour too (a stream per
//! tenant topic, a durable pull consumer per subscription: ack-wait = visibility,
//! max-deliver = max receives, nak with delay), so callers never learn which one
//! they have.

use async_trait::async_trait;
use jiff::Timestamp;
use keel_core::bus::{BusName, DeliveryPolicy};
use serde_json::{Map, Value};

use crate::{StoreResult, TenantId};

/// A message as a publisher hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub body: Value,
    /// String or number values.
    pub attributes: Map<String, Value>,
    /// Publishing the same id again within the dedup window is accepted but
    /// delivered once.
    pub dedup_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterScope {
    Attributes,
    Body,
}

impl FilterScope {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterScope::Attributes => "attributes",
            FilterScope::Body => "body",
        }
    }
}

/// A subscription as stored: its policy (as the client wrote it), its target
/// (opaque JSON here; the worker reads it) and its delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub topic: BusName,
    pub name: BusName,
    pub filter: Option<Value>,
    pub filter_scope: FilterScope,
    pub target: Value,
    pub delivery: DeliveryPolicy,
    pub created_at: Timestamp,
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Names this delivery for ack/nack; a redelivery gets a new one.
    pub receipt: String,
    pub receive_count: u32,
    pub id: String,
    pub body: Value,
    pub attributes: Map<String, Value>,
    pub published_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: String,
    pub body: Value,
    pub attributes: Map<String, Value>,
    pub published_at: Timestamp,
    pub receive_count: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Visible now.
    pub depth: u64,
    /// Received and not yet acked, nor visible again.
    pub in_flight: u64,
    /// Age of the oldest queued (not dead) message, in seconds.
    pub oldest_age_s: u64,
    pub dlq_depth: u64,
}

#[async_trait]
pub trait Bus: Send + Sync {
    /// Creates the topic if needed (idempotent).
    async fn ensure_topic(&self, tenant: &TenantId, topic: &BusName) -> StoreResult<()>;
    /// Durably accepts `messages`, fanning each out to the subscriptions whose
    /// filter it passes; returns their ids (a duplicate gets its first id back).
    async fn publish(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        messages: Vec<OutgoingMessage>,
    ) -> StoreResult<Vec<String>>;
    /// Creates or replaces a subscription (creating the topic too).
    async fn put_subscription(
        &self,
        tenant: &TenantId,
        subscription: Subscription,
    ) -> StoreResult<Subscription>;
    async fn subscription(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<Option<Subscription>>;
    /// Takes up to `max` visible messages, hiding each for `visibility_s`. Messages
    /// already delivered `max_receives` times move to the dead-letter queue instead.
    /// With nothing visible, waits up to `wait` for a message to arrive (each
    /// adapter in its own way: an in-process signal, `LISTEN/NOTIFY`, a pull
    /// request's expiry) and answers as soon as one does; empty when none did.
    /// Every subscription of the tenant, ordered by topic then name (a tenant
    /// has at most its `subscriptions_per_tenant` quota of them).
    async fn list_subscriptions(&self, tenant: &TenantId) -> StoreResult<Vec<Subscription>>;
    async fn receive(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        request: ReceiveRequest,
    ) -> StoreResult<Vec<Delivery>>;
    /// Acks by receipt; returns the receipts that were not current (unknown,
    /// already acked, or superseded by a redelivery).
    async fn ack(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipts: Vec<String>,
    ) -> StoreResult<Vec<String>>;
    /// Makes a received message visible again after `delay_s`, recording `error`.
    /// `false` when the receipt is not current.
    async fn nack(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        receipt: &str,
        delay_s: u32,
        error: Option<String>,
    ) -> StoreResult<bool>;
    async fn stats(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<QueueStats>;
    async fn dead_letters(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>>;
    /// Moves dead letters (all, or those with the given message ids) back to the
    /// queue with a fresh receive count; returns how many moved.
    async fn redrive(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        ids: Option<Vec<String>>,
    ) -> StoreResult<u64>;
    /// Every subscription whose target is a built-in worker (anything but
    /// `queue`), across tenants: what the worker role serves.
    async fn worker_subscriptions(&self) -> StoreResult<Vec<(TenantId, Subscription)>>;
    /// Statistics of every queue that holds anything, across tenants (for
    /// `/metrics`): (tenant, topic, subscription, stats).
    async fn all_queue_stats(&self) -> StoreResult<Vec<(TenantId, String, String, QueueStats)>>;
    /// Cheap round trip proving the bus can be reached (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// Which adapter this is, for logs and `keel config`.
    fn backend_name(&self) -> &'static str;
}

/// What one receive asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// At most this many messages.
    pub max: u32,
    /// Each is hidden this long (seconds) unless acked.
    pub visibility_s: u32,
    /// How long to wait for the first message when none is visible.
    pub wait: std::time::Duration,
}
