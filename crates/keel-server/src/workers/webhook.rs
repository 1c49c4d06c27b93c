//! The `webhook` target: POST each message, signed, to the subscriber's URL.
//!
//! The body is an envelope `{"id", "topic", "subscription", "published_at",
//! "receive_count", "attributes", "body"}`; `x-keel-signature: sha256=<hex>` is the
//! HMAC-SHA256 of exactly those bytes under the subscription's secret (SPEC §4), and
//! `x-keel-signature-v1: t=<unix seconds>,v1=<hex>` the HMAC of `"<t>.<body>"`, which
//! a receiver checks together with the age of `t` to refuse replays (SECURITY.md has
//! an example receiver). `x-keel-message-id` carries the id so receivers can drop
//! duplicates. Calls go through `crate::outbound` (no internal addresses, no
//! redirects, capped concurrency). A 2xx acks;
//! anything else, or no answer within the timeout, retries after the
//! subscription's backoff, and after `max_receives` tries the message is dead-lettered
//! with the last error. Every attempt is recorded (`GET …/attempts`).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use keel_store::{
    bus::{Delivery, ReceiveRequest, Subscription},
    collections::DeliveryAttempt,
    TenantId,
};
use serde_json::json;
use sha2::Sha256;
use tokio::{sync::watch, task::JoinSet};

use super::{stopping, WorkerContext, RECEIVE_WAIT};

/// Messages taken per receive; they are posted concurrently.
const BATCH: u32 = 16;
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Deliverer {
    context: WorkerContext,
    tenant: TenantId,
    subscription: Subscription,
    url: String,
    shape: Shape,
    timeout: Duration,
}

/// What is posted: the signed envelope of a `webhook` target, or a notice in
/// a notification channel's format (`super::notify`).
pub enum Shape {
    Signed {
        secret: String,
    },
    Channel {
        id: String,
        spec: keel_core::channel::ChannelSpec,
    },
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    let digest = mac.finalize().into_bytes();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret` (SPEC §4).
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, &[body]))
}

/// `t=<unix seconds>,v1=<hex>`: the HMAC-SHA256 of `"<t>.<body>"`, so a captured
/// delivery cannot be replayed later without the receiver noticing its age.
pub fn timestamped_signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let t = unix_seconds.to_string();
    let v1 = hmac_hex(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={v1}")
}

impl Deliverer {
    pub fn new(
        context: WorkerContext,
        tenant: TenantId,
        subscription: Subscription,
        url: String,
        shape: Shape,
    ) -> Self {
        let timeout = Duration::from_secs(u64::from(subscription.delivery.visibility_timeout_s))
            .min(MAX_TIMEOUT);
        Self {
            context,
            tenant,
            subscription,
            url,
            shape,
            timeout,
        }
    }

    pub async fn run(self, retired: watch::Receiver<bool>) {
        let this = std::sync::Arc::new(self);
        while !stopping(&this.context, &retired) {
            let batch = this
                .context
                .bus
                .receive(
                    &this.tenant,
                    &this.subscription.topic,
                    &this.subscription.name,
                    ReceiveRequest {
                        max: BATCH,
                        visibility_s: this.subscription.delivery.visibility_timeout_s,
                        wait: RECEIVE_WAIT,
                    },
                )
                .await;
            match batch {
                Ok(batch) if !batch.is_empty() => {
                    // In flight: finished even if shutdown starts meanwhile.
                    let mut calls = JoinSet::new();
                    for delivery in batch {
                        let this = this.clone();
                        calls.spawn(async move { this.deliver(delivery).await });
                    }
                    let mut attempts = Vec::new();
                    while let Some(Ok(attempt)) = calls.join_next().await {
                        attempts.push((
                            this.tenant.clone(),
                            this.subscription.topic.clone(),
                            this.subscription.name.clone(),
                            attempt,
                        ));
                    }
                    if let Err(e) = this.context.store.record_attempts(attempts).await {
                        tracing::warn!(error = %e, "webhook: could not record attempts");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: receive failed; retrying");
                    tokio::time::sleep(RECEIVE_WAIT).await;
                }
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) -> DeliveryAttempt {
        let body = match &self.shape {
            Shape::Signed { .. } => {
                let envelope = json!({
                    "id": delivery.id,
                    "topic": self.subscription.topic.as_str(),
                    "subscription": self.subscription.name.as_str(),
                    "published_at": delivery.published_at.to_string(),
                    "receive_count": delivery.receive_count,
                    "attributes": delivery.attributes,
                    "body": delivery.body,
                });
                serde_json::to_vec(&envelope).unwrap_or_default()
            }
            Shape::Channel { id, spec } => {
                match super::notify::channel_body(id, spec, &delivery.body) {
                    Some(body) => body,
                    // Not for this channel (or not a notice): done with, unsent.
                    None => return self.skip(delivery).await,
                }
            }
        };
        let outbound = &self.context.outbound;
        let _permit = outbound.permit(&self.tenant).await;
        let started = Instant::now();
        let (status, error) = match outbound.check_url(&self.url) {
            Err(refused) => (None, Some(format!("refused: {refused}"))),
            Ok(url) => {
                let sent_at = self.context.clock.now().as_second();
                let mut request = outbound
                    .client()
                    .post(url)
                    .timeout(self.timeout)
                    .header("content-type", "application/json");
                if let Shape::Signed { secret } = &self.shape {
                    request = request
                        .header("x-keel-signature", signature(secret, &body))
                        .header(
                            "x-keel-signature-v1",
                            timestamped_signature(secret, sent_at, &body),
                        );
                }
                let result = request
                    .header("x-keel-message-id", &delivery.id)
                    .header(
                        "x-keel-delivery-attempt",
                        delivery.receive_count.to_string(),
                    )
                    .body(body)
                    .send()
                    .await;
                match result {
                    Ok(response) if response.status().is_success() => {
                        (Some(response.status().as_u16()), None)
                    }
                    Ok(response) => (
                        Some(response.status().as_u16()),
                        Some(format!("HTTP {}", response.status().as_u16())),
                    ),
                    Err(e) => (None, Some(crate::outbound::describe_failure(&e))),
                }
            }
        };
        let elapsed = started.elapsed();
        let (topic, name) = (&self.subscription.topic, &self.subscription.name);
        let outcome = match &error {
            None => {
                if let Err(e) = self
                    .context
                    .bus
                    .ack(&self.tenant, topic, name, vec![delivery.receipt.clone()])
                    .await
                {
                    tracing::warn!(error = %e, "webhook: ack failed; the message will be redelivered");
                }
                "delivered"
            }
            Some(error) => {
                let last = delivery.receive_count >= self.subscription.delivery.max_receives;
                // The last failure returns at once, so the next receive dead-letters it.
                let delay = if last {
                    0
                } else {
                    self.subscription
                        .delivery
                        .backoff_after(delivery.receive_count)
                };
                if let Err(e) = self
                    .context
                    .bus
                    .nack(
                        &self.tenant,
                        topic,
                        name,
                        &delivery.receipt,
                        delay,
                        Some(error.clone()),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "webhook: nack failed; the visibility timeout will return it");
                }
                if last {
                    "dead-lettered"
                } else {
                    "failed"
                }
            }
        };
        self.context
            .metrics
            .worker_outcome(self.worker_name(), outcome, 1, elapsed);
        DeliveryAttempt {
            message_id: delivery.id,
            attempt: delivery.receive_count,
            at: self.context.clock.now(),
            outcome: outcome.to_owned(),
            status,
            error,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            report: None,
        }
    }
}

impl Deliverer {
    fn worker_name(&self) -> &'static str {
        match self.shape {
            Shape::Signed { .. } => "webhook",
            Shape::Channel { .. } => "notify",
        }
    }

    /// Acks a message this deliverer has nothing to send for.
    async fn skip(&self, delivery: Delivery) -> DeliveryAttempt {
        let (topic, name) = (&self.subscription.topic, &self.subscription.name);
        if let Err(e) = self
            .context
            .bus
            .ack(&self.tenant, topic, name, vec![delivery.receipt.clone()])
            .await
        {
            tracing::warn!(error = %e, "notify: ack failed; the message will come again");
        }
        DeliveryAttempt {
            message_id: delivery.id,
            attempt: delivery.receive_count,
            at: self.context.clock.now(),
            outcome: "skipped".to_owned(),
            status: None,
            error: None,
            latency_ms: 0.0,
            report: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn timestamped_signatures_cover_the_time_and_the_body() {
        let body = b"{\"id\":\"m1\"}";
        let signed = timestamped_signature("a-long-enough-secret", 1_700_000_000, body);
        assert!(signed.starts_with("t=1700000000,v1="), "{signed}");
        // The same as signing "<t>.<body>" directly.
        let mut expected = b"1700000000.".to_vec();
        expected.extend_from_slice(body);
        assert_eq!(
            signed.split_once(",v1=").unwrap().1,
            &signature("a-long-enough-secret", &expected)["sha256=".len()..]
        );
        assert_ne!(
            signed,
            timestamped_signature("a-long-enough-secret", 1_700_000_001, body)
        );
    }
}
