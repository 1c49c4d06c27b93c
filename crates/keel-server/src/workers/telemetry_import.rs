//! The `telemetry-import` target (SPEC §6): each message is an S3-format event; for
//! every `ObjectCreated` record, read the object it names and import its NDJSON,
//! JSON array or OTLP/JSON content as telemetry.
//!
//! - **Idempotent.** The import id is `bucket/key@sequencer` (one version of one
//!   object), committed in the same transaction as the rows: a redelivered event —
//!   after a crash between the import and the ack — finds it and imports nothing.
//! - **Partial content.** Bad lines are counted and reported; good lines land.
//!   The report (`imported`, `rejected`, `errors`) is the delivery attempt's
//!   `report` in `GET …/attempts`.
//! - **Failures.** Content that cannot be read or parsed at all (not an event, the
//!   object gone, over `telemetry_import_max_bytes`, no line readable) is final:
//!   the message returns at once and is dead-lettered with the reason when its
//!   receives run out. A store or blob store that does not answer is retried with
//!   the subscription's backoff.
//! - An object whose ETag no longer matches the event was replaced; the newer
//!   version's own event imports it, so this one is skipped (and says so).
//! - Lines that name no account take the bucket's name (per-account buckets, as
//!   the seed's stack has them).

use std::time::Instant;

use futures::StreamExt;
use keel_core::{objects::decode_key_from_event, telemetry::simple::parse_import};
use keel_store::{
    bus::{Delivery, ReceiveRequest, Subscription},
    collections::DeliveryAttempt,
    TenantId,
};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{stopping, WorkerContext, RECEIVE_WAIT};

/// Messages taken per receive; imported one after another.
const BATCH: u32 = 8;

pub struct Importer {
    context: WorkerContext,
    tenant: TenantId,
    subscription: Subscription,
}

/// Why one delivery did not import.
enum Failure {
    /// Will not get better by retrying: dead-letter with this reason.
    Final(String),
    /// The store or blob store did not answer: retry later.
    Transient(String),
}

/// One object named by an event.
struct Named {
    bucket: String,
    key: String,
    etag: Option<String>,
    sequencer: String,
}

impl Importer {
    pub fn new(context: WorkerContext, tenant: TenantId, subscription: Subscription) -> Self {
        Self {
            context,
            tenant,
            subscription,
        }
    }

    pub async fn run(self, retired: watch::Receiver<bool>) {
        let (topic, name) = (&self.subscription.topic, &self.subscription.name);
        while !stopping(&self.context, &retired) {
            let batch = self
                .context
                .bus
                .receive(
                    &self.tenant,
                    topic,
                    name,
                    ReceiveRequest {
                        max: BATCH,
                        visibility_s: self.subscription.delivery.visibility_timeout_s,
                        wait: RECEIVE_WAIT,
                    },
                )
                .await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry-import: receive failed; retrying");
                    tokio::time::sleep(RECEIVE_WAIT).await;
                    continue;
                }
            };
            let mut attempts = Vec::new();
            for delivery in batch {
                let attempt = self.deliver(delivery).await;
                attempts.push((self.tenant.clone(), topic.clone(), name.clone(), attempt));
            }
            if let Err(e) = self.context.store.record_attempts(attempts).await {
                tracing::warn!(error = %e, "telemetry-import: could not record attempts");
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) -> DeliveryAttempt {
        let started = Instant::now();
        let result = self.import_event(&delivery.body).await;
        let (topic, name) = (&self.subscription.topic, &self.subscription.name);
        let (outcome, error, report) = match result {
            Ok(report) => {
                if let Err(e) = self
                    .context
                    .bus
                    .ack(&self.tenant, topic, name, vec![delivery.receipt.clone()])
                    .await
                {
                    tracing::warn!(error = %e, "telemetry-import: ack failed; the redelivery will find the import done");
                }
                ("delivered", None, Some(report))
            }
            Err(failure) => {
                let (why, delay) = match failure {
                    Failure::Final(why) => (why, 0),
                    Failure::Transient(why) => {
                        let delay = self
                            .subscription
                            .delivery
                            .backoff_after(delivery.receive_count);
                        (why, delay)
                    }
                };
                let last = delivery.receive_count >= self.subscription.delivery.max_receives;
                if let Err(e) = self
                    .context
                    .bus
                    .nack(
                        &self.tenant,
                        topic,
                        name,
                        &delivery.receipt,
                        if last { 0 } else { delay },
                        Some(why.clone()),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "telemetry-import: nack failed; the visibility timeout will return it");
                }
                let outcome = if last { "dead-lettered" } else { "failed" };
                (outcome, Some(why), None)
            }
        };
        self.context
            .ingest
            .import_outcome(match (outcome, &report) {
                ("delivered", Some(r)) if r["duplicate"] == json!(true) => "duplicate",
                ("delivered", _) => "imported",
                (other, _) => other,
            });
        self.context
            .metrics
            .worker_outcome("telemetry-import", outcome, 1, started.elapsed());
        DeliveryAttempt {
            message_id: delivery.id,
            attempt: delivery.receive_count,
            at: self.context.clock.now(),
            outcome: outcome.to_owned(),
            status: None,
            error,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            report,
        }
    }

    /// Imports every object-created record of one event; the report sums them.
    async fn import_event(&self, body: &Value) -> Result<Value, Failure> {
        let records = body
            .get("Records")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Failure::Final("the message is not an S3 event record (no `Records`)".into())
            })?;
        let (mut imported, mut rejected, mut errors) = (0u64, 0u64, Vec::<String>::new());
        let (mut duplicate, mut skipped) = (false, Vec::<String>::new());
        for record in records {
            let event = record
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !event.starts_with("ObjectCreated:") {
                skipped.push(format!("{event}: not an object-created event"));
                continue;
            }
            let named = named(record).ok_or_else(|| {
                Failure::Final("an S3 event record lacks its bucket, key or sequencer".into())
            })?;
            match self.import_object(&named).await? {
                Imported::Rows { lines, rejections } => {
                    imported += lines;
                    rejected += rejections.count;
                    errors.extend(rejections.errors);
                }
                Imported::AlreadyDone => duplicate = true,
                Imported::Superseded => skipped.push(format!(
                    "{}/{}: replaced since the event; its newer version is imported by its own event",
                    named.bucket, named.key
                )),
            }
        }
        errors.truncate(keel_core::telemetry::KEPT_ERRORS);
        Ok(json!({
            "imported": imported,
            "rejected": rejected,
            "errors": errors,
            "duplicate": duplicate,
            "skipped": skipped,
        }))
    }

    async fn import_object(&self, named: &Named) -> Result<Imported, Failure> {
        let store = &self.context.store;
        let meta = store
            .object(&self.tenant, &named.bucket, &named.key)
            .await
            .map_err(|e| Failure::Transient(format!("the object index is unavailable: {e}")))?
            .ok_or_else(|| {
                Failure::Final(format!("{}/{} no longer exists", named.bucket, named.key))
            })?;
        if named.etag.as_deref().is_some_and(|etag| etag != meta.etag) {
            return Ok(Imported::Superseded);
        }
        let max = self.context.import_max_bytes;
        if meta.size > max {
            return Err(Failure::Final(format!(
                "{}/{} is {} bytes; imports read at most {max} (telemetry_import_max_bytes)",
                named.bucket, named.key, meta.size
            )));
        }
        let mut stream = self
            .context
            .blobs
            .get(&meta.blob, None)
            .await
            .map_err(|e| Failure::Transient(format!("the object cannot be read: {e}")))?;
        let mut content = Vec::with_capacity(meta.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| Failure::Transient(format!("the object cannot be read: {e}")))?;
            content.extend_from_slice(&chunk);
        }
        let now = self.context.clock.now();
        let mut parsed = tokio::task::spawn_blocking(move || parse_import(&content, now))
            .await
            .map_err(|e| Failure::Transient(format!("the import stopped: {e}")))?;
        if parsed.batch.is_empty() && parsed.rejected.count > 0 {
            return Err(Failure::Final(format!(
                "{}/{} holds no readable telemetry: {}",
                named.bucket,
                named.key,
                parsed.rejected.errors.join("; ")
            )));
        }
        parsed.batch.default_account(&named.bucket);
        let import_id = format!("{}/{}@{}", named.bucket, named.key, named.sequencer);
        let counts = crate::ingest::Counts::of(&parsed);
        let stored = store
            .append_telemetry(&self.tenant, parsed.batch, Some(import_id))
            .await
            .map_err(|e| Failure::Transient(format!("the telemetry store is unavailable: {e}")))?;
        if !stored {
            return Ok(Imported::AlreadyDone);
        }
        self.context
            .ingest
            .accepted("import", meta.size as usize, counts, "logs");
        Ok(Imported::Rows {
            lines: counts.accepted(),
            rejections: parsed.rejected,
        })
    }
}

enum Imported {
    Rows {
        lines: u64,
        rejections: keel_core::telemetry::Rejections,
    },
    AlreadyDone,
    Superseded,
}

fn named(record: &Value) -> Option<Named> {
    let s3 = record.get("s3")?;
    let object = s3.get("object")?;
    Some(Named {
        bucket: s3.get("bucket")?.get("name")?.as_str()?.to_owned(),
        key: decode_key_from_event(object.get("key")?.as_str()?)?,
        etag: object
            .get("eTag")
            .and_then(Value::as_str)
            .map(str::to_owned),
        sequencer: object.get("sequencer")?.as_str()?.to_owned(),
    })
}
