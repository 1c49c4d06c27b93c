//! Publishing, receiving and settling messages on JetStream.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::AckKind};
use bytes::Bytes;
use futures::{future::join_all, StreamExt};
use keel_core::{bus::BusName, filter::FilterPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{token, unavailable, NatsBus, QueueConsumer, API_TIMEOUT};
use crate::{
    bus::{Delivery, FilterScope, OutgoingMessage, QueueStats, ReceiveRequest},
    from_micros,
    routing::{json_text, matching_routes},
    StoreError, StoreResult, TenantId,
};

/// A message as stored in a stream: Keel's clock's publish time, body and
/// attributes; an id once it has been redriven (a redrive is a new stream message
/// carrying the first one's id); receive count and last error in the dead letters.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub t: i64,
    pub b: Value,
    pub a: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// A subscription's receive-side view: its filter and delivery limits.
pub(super) struct Reader<'a> {
    pub tenant: &'a TenantId,
    pub topic: &'a BusName,
    pub name: &'a BusName,
    filter: Option<(FilterScope, FilterPolicy)>,
    max_receives: u32,
    pub queue: QueueConsumer,
    pub created_ms: u64,
}

pub(super) const NOT_ACKED: &str = "not acknowledged within its visibility timeout";

impl NatsBus {
    pub(super) async fn publish_messages(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        messages: Vec<OutgoingMessage>,
    ) -> StoreResult<Vec<String>> {
        self.registry
            .ensure_topic(tenant, topic, &self.quotas)
            .await?;
        let known = self.registry.read(tenant).await?;
        let routes = known.routes(topic);
        // Interest retention keeps a message only for consumers that exist when it
        // is stored: every subscription this publish knows of gets its consumer
        // first (known to this process after the first time, so usually free).
        for subscription in known.subscriptions().filter(|s| &s.topic == topic) {
            self.queue_consumer(
                tenant,
                topic,
                &subscription.name,
                subscription.delivery.visibility_timeout_s,
            )
            .await?;
        }
        let published_at = self.clock.now().as_microsecond();
        let limit = self.quotas.fanout_bytes_per_publish;
        let mut fanout_bytes: u64 = 0;
        let mut outgoing = Vec::with_capacity(messages.len());
        for message in messages {
            let attributes = Value::Object(message.attributes);
            let copies = matching_routes(&routes, &message.body, &attributes).count() as u64;
            let (body, attributes) = (json_text(&message.body)?, json_text(&attributes)?);
            fanout_bytes =
                fanout_bytes.saturating_add((body.len() + attributes.len()) as u64 * copies);
            if fanout_bytes > limit {
                return Err(StoreError::QuotaExceeded {
                    quota: "fanout_bytes_per_publish",
                    limit,
                });
            }
            // Every message is published, even one no subscription wants now: a
            // subscription another replica added a moment ago must not miss it.
            let payload = format!(r#"{{"t":{published_at},"b":{body},"a":{attributes}}}"#);
            outgoing.push((message.dedup_id, payload));
        }
        self.fanout_budget.charge(tenant.as_str(), fanout_bytes)?;
        let stream = self.tenant_stream(tenant).await?;
        let subject = self.topic_subject(tenant, topic);
        // All sent before any ack is awaited: one round trip for the batch.
        let mut acks = Vec::with_capacity(outgoing.len());
        for (dedup_id, payload) in outgoing {
            let mut publish =
                jetstream::message::PublishMessage::build().payload(Bytes::from(payload));
            if let Some(dedup_id) = dedup_id {
                publish = publish.message_id(dedup_header(topic, &dedup_id));
            }
            let ack = self
                .js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| self.publish_failed(tenant, e))?;
            acks.push(ack);
        }
        let mut ids = Vec::with_capacity(acks.len());
        for ack in acks {
            let ack = ack.await.map_err(|e| self.publish_failed(tenant, e))?;
            ids.push(Self::message_id(stream.created_ms, ack.sequence));
        }
        Ok(ids)
    }

    fn publish_failed(&self, tenant: &TenantId, error: impl std::fmt::Display) -> StoreError {
        // The stream may have been deleted under us: look it up again next time.
        self.streams.lock().remove(tenant.as_str());
        unavailable("publishing", error)
    }

    pub(super) async fn reader<'a>(
        &self,
        tenant: &'a TenantId,
        topic: &'a BusName,
        name: &'a BusName,
    ) -> StoreResult<Option<Reader<'a>>> {
        let known = self.registry.read(tenant).await?;
        let Some(subscription) = known.subscription(topic, name) else {
            return Ok(None);
        };
        let filter = known
            .routes(topic)
            .iter()
            .find(|(route, _, _)| route == name.as_str())
            .map(|(_, scope, policy)| (*scope, policy.clone()));
        let queue = self
            .queue_consumer(
                tenant,
                topic,
                name,
                subscription.delivery.visibility_timeout_s,
            )
            .await?;
        let created_ms = self.tenant_stream(tenant).await?.created_ms;
        Ok(Some(Reader {
            tenant,
            topic,
            name,
            filter,
            max_receives: subscription.delivery.max_receives,
            queue,
            created_ms,
        }))
    }

    pub(super) async fn receive_messages(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
        request: ReceiveRequest,
    ) -> StoreResult<Vec<Delivery>> {
        let Some(reader) = self.reader(tenant, topic, name).await? else {
            return Err(StoreError::InvalidInput {
                field: "subscription",
                why: format!("{}/{} does not exist", topic.as_str(), name.as_str()),
            });
        };
        let max = request.max.max(1) as usize;
        let started = Instant::now();
        let mut taken = Vec::new();
        loop {
            let want = max - taken.len();
            let batch = fetch_visible(&reader.queue, want).await?;
            let fetched = batch.len();
            taken.extend(self.take_all(&reader, batch, request.visibility_s).await?);
            if taken.len() >= max || (fetched < want && !taken.is_empty()) {
                break;
            }
            if fetched == want {
                continue;
            }
            // Nothing visible: wait (a pull request with an expiry) for the first
            // arrival, then take what else is visible without waiting.
            let left = request.wait.saturating_sub(started.elapsed());
            if left < Duration::from_millis(10) {
                break;
            }
            let first = wait_for_one(&reader.queue, left).await?;
            if first.is_empty() {
                break;
            }
            taken.extend(self.take_all(&reader, first, request.visibility_s).await?);
        }
        Ok(taken)
    }

    async fn take_all(
        &self,
        reader: &Reader<'_>,
        batch: Vec<jetstream::Message>,
        visibility_s: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let results = join_all(
            batch
                .into_iter()
                .map(|message| self.take(reader, message, visibility_s)),
        )
        .await;
        // JetStream has counted every one of these deliveries: hand out those that
        // were taken, rather than fail them all for one. A message that failed
        // stays pending and is redelivered after the ack wait.
        let mut taken = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(delivery) => taken.extend(delivery),
                Err(e) => {
                    tracing::warn!(error = %e, "taking a JetStream delivery failed; it will be redelivered");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if taken.is_empty() => Err(e),
            _ => Ok(taken),
        }
    }

    /// Turns one fetched message into a delivery, or settles it unseen: a message
    /// the filter refuses, a redrive for a sibling subscription, or one past its
    /// receives (dead-lettered).
    async fn take(
        &self,
        reader: &Reader<'_>,
        message: jetstream::Message,
        visibility_s: u32,
    ) -> StoreResult<Option<Delivery>> {
        let (sequence, delivery_sequence, delivered) = {
            let info = message
                .info()
                .map_err(|e| StoreError::Internal(format!("JetStream delivery: {e}")))?;
            (
                info.stream_sequence,
                info.consumer_sequence,
                info.delivered.max(1) as u32,
            )
        };
        let message = &message;
        let settle = |kind: AckKind| async move {
            message
                .ack_with(kind)
                .await
                .map_err(|e| unavailable("settling a message", e))
        };
        let destination = message.subject.rsplit('.').next().unwrap_or_default();
        if destination != "=" && destination != token(reader.name.as_str()) {
            settle(AckKind::Ack).await?;
            return Ok(None);
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&message.payload) else {
            tracing::warn!(
                sequence,
                "a message that is not Keel's on a Keel subject; dropped"
            );
            settle(AckKind::Term).await?;
            return Ok(None);
        };
        if let Some((scope, policy)) = &reader.filter {
            let scoped = match scope {
                FilterScope::Attributes => &envelope.a,
                FilterScope::Body => &envelope.b,
            };
            if !policy.matches(scoped) {
                settle(AckKind::Ack).await?;
                return Ok(None);
            }
        }
        let lease = lease_key(reader, sequence);
        if delivered > reader.max_receives {
            self.dead_letter(reader, sequence, envelope, delivered - 1)
                .await?;
            settle(AckKind::Ack).await?;
            let _ = self.leases.delete(&lease).await;
            let _ = self.leases.delete(&format!("{lease}.e")).await;
            return Ok(None);
        }
        let ack_tail = message
            .reply
            .as_ref()
            .and_then(|reply| reply.as_str().strip_prefix(&reader.queue.ack_prefix))
            .ok_or_else(|| {
                StoreError::Internal("JetStream delivery without its ack subject".into())
            })?;
        // The nonce ties the receipt to this queue's lease: the ack subject's tail
        // alone is the same for two subscriptions receiving in step.
        let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
        let receipt = format!("{ack_tail}.{nonce}");
        // Acks are honoured until a little before the visibility runs out: an
        // ack arriving after JetStream redelivered would ack the new delivery.
        // The margin covers the ack's way to NATS.
        let visibility_ms = u64::from(visibility_s) * 1000;
        let ack_by_ms = now_ms() + visibility_ms - (visibility_ms / 4).min(1000);
        // JetStream has one ack wait per consumer; another visibility for this
        // receive is a negative ack with that delay, which keeps the message
        // pending (and ackable) until then.
        if visibility_s != reader.queue.ack_wait_s {
            let delay = Duration::from_secs(visibility_s as u64);
            settle(AckKind::Nak(Some(delay))).await?;
        }
        let value = format!("{delivery_sequence}.{nonce}.{ack_by_ms}");
        self.leases.put(&lease, value.into()).await?;
        let attributes = match envelope.a {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Ok(Some(Delivery {
            receipt,
            receive_count: delivered,
            id: envelope
                .id
                .unwrap_or_else(|| Self::message_id(reader.created_ms, sequence)),
            body: envelope.b,
            attributes,
            published_at: from_micros(envelope.t)?,
        }))
    }

    pub(super) async fn queue_stats(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        name: &BusName,
    ) -> StoreResult<QueueStats> {
        let Some(reader) = self.reader(tenant, topic, name).await? else {
            return Ok(QueueStats::default());
        };
        let info = reader
            .queue
            .consumer
            .get_info()
            .await
            .map_err(|e| unavailable("reading a consumer", e))?;
        let mut stats = QueueStats {
            depth: info.num_pending,
            in_flight: info.num_ack_pending as u64,
            ..QueueStats::default()
        };
        if stats.depth + stats.in_flight > 0 {
            let stream = self.tenant_stream(tenant).await?;
            let oldest = stream
                .messages
                .raw_message_builder()
                .sequence(info.ack_floor.stream_sequence + 1)
                .next_by_subject(info.config.filter_subject.clone())
                .send()
                .await;
            if let Ok(oldest) = oldest {
                if let Ok(envelope) = serde_json::from_slice::<Envelope>(&oldest.payload) {
                    let age = self.clock.now().as_microsecond() - envelope.t;
                    stats.oldest_age_s = (age.max(0) / 1_000_000) as u64;
                }
            }
        }
        let Some(dead) = self.existing_dead_letter_stream(tenant).await? else {
            return Ok(stats);
        };
        let subject = self.dead_letter_subject(tenant, topic, name);
        let mut subjects = dead
            .info_with_subjects(&subject)
            .await
            .map_err(|e| unavailable("counting dead letters", e))?;
        while let Some(entry) = subjects.next().await {
            let (found, count) = entry.map_err(|e| unavailable("counting dead letters", e))?;
            if found == subject {
                stats.dlq_depth += count as u64;
            }
        }
        Ok(stats)
    }
}

/// Wall-clock milliseconds: JetStream's timers run in real time, whatever clock
/// Keel is given.
pub(super) fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

pub(super) async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    doing: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|e| unavailable(doing, e)),
        Err(_) => Err(unavailable(doing, "timed out")),
    }
}

pub(super) fn lease_key(reader: &Reader<'_>, sequence: u64) -> String {
    format!(
        "{}.{}.{sequence}",
        reader.tenant.as_str(),
        reader.queue.name
    )
}

/// `Nats-Msg-Id` of a publish with a dedup id: per topic (the stream is per
/// tenant), hashed so any id the API accepts is a valid header value.
fn dedup_header(topic: &BusName, dedup_id: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{dedup_id}", topic.as_str()));
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

async fn fetch_visible(queue: &QueueConsumer, want: usize) -> StoreResult<Vec<jetstream::Message>> {
    // A no-wait pull sets no expiry, so nothing would end it if NATS never
    // answered: the call is bounded here.
    within(API_TIMEOUT, "receiving", async {
        let batch = queue.consumer.fetch().max_messages(want).messages().await?;
        collect(batch).await
    })
    .await
}

async fn wait_for_one(
    queue: &QueueConsumer,
    wait: Duration,
) -> StoreResult<Vec<jetstream::Message>> {
    within(wait + API_TIMEOUT, "receiving", async {
        let batch = queue
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await?;
        collect(batch).await
    })
    .await
}

async fn collect(
    mut batch: jetstream::consumer::pull::Batch,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message?);
    }
    Ok(messages)
}
