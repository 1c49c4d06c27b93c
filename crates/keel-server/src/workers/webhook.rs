//! The `webhook` target: POST each message, signed, to the subscriber's URL.
//!
//! The body is an envelope `{"id", "topic", "subscription", "published_at",
//! "receive_count", "attributes", "body"}`; `x-keel-signature: sha256=<hex>` is the
//! HMAC-SHA256 of exactly those bytes under the subscription's secret, and
//! `x-keel-message-id` carries the id so receivers can drop duplicates. A 2xx acks;
//! anything else, or no answer within the timeout, retries after the
//! subscription's backoff, and after `max_receives` tries the message is dead-lettered
//! with the last error. Every attempt is recorded (`GET …/attempts`).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use keel_store::{
    bus::{Delivery, Subscription},
    collections::DeliveryAttempt,
    TenantId,
};
use serde_json::json;
use sha2::Sha256;
use tokio::{sync::watch, task::JoinSet};

use crate::state::AppState;

/// Messages taken per receive; they are posted concurrently.
const BATCH: u32 = 16;
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Deliverer {
    state: AppState,
    tenant: TenantId,
    subscription: Subscription,
    url: String,
    secret: String,
    client: reqwest::Client,
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Deliverer {
    pub fn new(
        state: AppState,
        tenant: TenantId,
        subscription: Subscription,
        url: String,
        secret: String,
    ) -> Self {
        let timeout = Duration::from_secs(u64::from(subscription.delivery.visibility_timeout_s))
            .min(MAX_TIMEOUT);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("keel-webhook/1")
            .build()
            .expect("an HTTP client with a timeout builds");
        Self {
            state,
            tenant,
            subscription,
            url,
            secret,
            client,
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let arrivals = self.state.store.arrivals();
        let this = std::sync::Arc::new(self);
        while !*stop.borrow() {
            let notified = arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = this
                .state
                .store
                .receive(
                    &this.tenant,
                    &this.subscription.topic,
                    &this.subscription.name,
                    BATCH,
                    this.subscription.delivery.visibility_timeout_s,
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
                    if let Err(e) = this.state.store.record_attempts(attempts).await {
                        tracing::warn!(error = %e, "webhook: could not record attempts");
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: receive failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) -> DeliveryAttempt {
        let envelope = json!({
            "id": delivery.id,
            "topic": self.subscription.topic.as_str(),
            "subscription": self.subscription.name.as_str(),
            "published_at": delivery.published_at.to_string(),
            "receive_count": delivery.receive_count,
            "attributes": delivery.attributes,
            "body": delivery.body,
        });
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let started = Instant::now();
        let result = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-keel-signature", signature(&self.secret, &body))
            .header("x-keel-message-id", &delivery.id)
            .header(
                "x-keel-delivery-attempt",
                delivery.receive_count.to_string(),
            )
            .body(body)
            .send()
            .await;
        let elapsed = started.elapsed();
        let (status, error) = match result {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => (
                Some(response.status().as_u16()),
                Some(format!("HTTP {}", response.status())),
            ),
            Err(e) if e.is_timeout() => (None, Some("timed out".to_owned())),
            Err(e) => (None, Some(format!("request failed: {e}"))),
        };
        let (topic, name) = (&self.subscription.topic, &self.subscription.name);
        let outcome = match &error {
            None => {
                if let Err(e) = self
                    .state
                    .store
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
                    .state
                    .store
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
        self.state
            .telemetry
            .bus
            .worker_outcome("webhook", outcome, 1, elapsed);
        DeliveryAttempt {
            message_id: delivery.id,
            attempt: delivery.receive_count,
            at: self.state.clock.now(),
            outcome: outcome.to_owned(),
            status,
            error,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
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
}
