//! Objects behind the HTTP routes (SPEC §6): uploads and deletes that commit their
//! S3-format events with them, the relay that publishes those events from the
//! outbox to the bus, and the collector of blobs no key points at any more.
//!
//! Why an upload and its events are atomic (see `keel_store::objects`): the bytes
//! go to a fresh blob first, then one store transaction makes the key point at it
//! and queues the events. Before that commit nothing is visible and no event
//! exists; after it both do, and the relay publishes the events (with dedup ids,
//! so a relay that dies between publishing and forgetting them is delivered once).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures::stream::BoxStream;
use jiff::{SignedDuration, Timestamp};
use keel_core::{
    bus::BusName,
    clock::Clock,
    objects::{event_record, parse_rules, BucketName, EventObject, ObjectEvent, ObjectKey},
};
use keel_store::{
    bus::{Bus, OutgoingMessage},
    objects::{
        BlobStore, ObjectMeta, OutboxMessage, PutError, REPLACED_BLOB_GRACE, UNCOMMITTED_BLOB_TTL,
    },
    Store, StoreError, TenantId,
};
use tokio::sync::{watch, Notify};

use crate::problem::{ApiError, ApiResult};

/// How many outbox entries or blobs one round takes.
const BATCH: u32 = 100;
/// How long a relay or collector holds what it claimed before another may take it
/// (so also how long the events a killed relay had claimed wait to be published
/// again); far shorter than the bus's dedup window, so a relay that died
/// mid-publish is deduplicated when another publishes again.
const LEASE: Duration = Duration::from_secs(10);
/// Outbox entries of other replicas (or of a crash) are looked for this often.
const RELAY_EVERY: Duration = Duration::from_secs(1);
const COLLECT_EVERY: Duration = Duration::from_secs(10);

/// Orders the events of one key: each change takes a greater value than the last
/// one made here (time in nanoseconds, bumped past any clash).
#[derive(Default)]
pub struct Sequencer(AtomicU64);

impl Sequencer {
    fn next(&self, now: Timestamp) -> String {
        let nanos = now.as_nanosecond().max(0) as u64;
        let mut last = self.0.load(Ordering::Relaxed);
        loop {
            let value = nanos.max(last + 1);
            match self
                .0
                .compare_exchange(last, value, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return format!("{value:016X}"),
                Err(seen) => last = seen,
            }
        }
    }
}

/// The objects capability as the routes and the import worker use it.
pub struct Objects {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub clock: Arc<dyn Clock>,
    /// Woken after a commit queued events, so the relay publishes at once.
    pub queued: Arc<Notify>,
    sequencer: Sequencer,
}

fn later(at: Timestamp, by: Duration) -> Timestamp {
    at.saturating_add(SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX))
        .unwrap_or(at)
}

fn event_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Objects {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            blobs,
            clock,
            queued: Arc::default(),
            sequencer: Sequencer::default(),
        }
    }

    /// The bucket's rules, or 404 when the tenant has no such bucket.
    async fn rules(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
    ) -> ApiResult<Vec<keel_core::objects::NotificationRule>> {
        let found = self
            .store
            .bucket(tenant, bucket.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound("no such bucket".into()))?;
        parse_rules(&found.rules)
            .map_err(|e| ApiError::Internal(format!("stored notification rules: {e}")))
    }

    fn events(
        &self,
        rules: &[keel_core::objects::NotificationRule],
        event: ObjectEvent,
        object: &EventObject<'_>,
        at: Timestamp,
    ) -> Vec<OutboxMessage> {
        rules
            .iter()
            .filter(|rule| rule.matches(event, object.key))
            .map(|rule| OutboxMessage {
                topic: rule.topic.as_str().to_owned(),
                body: event_record(rule, event, object, self.blobs.region(), &event_time(at)),
                dedup_id: format!("s3-{}-{}", object.sequencer, rule.id),
            })
            .collect()
    }

    /// Streams `body` into a new blob and commits it as `key` with its events.
    pub async fn upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        content_type: String,
        body: BoxStream<'static, Result<Bytes, String>>,
        max_bytes: u64,
    ) -> Result<ObjectMeta, UploadError> {
        // Read before the upload, so a missing bucket costs no bytes. A change of
        // rules while the bytes arrive applies from the next upload.
        let rules = self.rules(tenant, bucket).await?;
        let blob = format!(
            "{}/{}/{}",
            tenant.as_str(),
            bucket.as_str(),
            uuid::Uuid::now_v7().simple()
        );
        let now = self.clock.now();
        self.store
            .reserve_blob(tenant, &blob, later(now, UNCOMMITTED_BLOB_TTL))
            .await?;
        let put = self.blobs.put(&blob, body, max_bytes).await?;
        let at = self.clock.now();
        let sequencer = self.sequencer.next(at);
        let events = self.events(
            &rules,
            ObjectEvent::Put,
            &EventObject {
                bucket,
                key,
                size_and_etag: Some((put.size, &put.md5_hex)),
                sequencer,
            },
            at,
        );
        let meta = ObjectMeta {
            key: key.as_str().to_owned(),
            blob,
            size: put.size,
            etag: put.md5_hex,
            content_type,
            modified_at: at,
        };
        let queued = !events.is_empty();
        let committed = self
            .store
            .commit_object(
                tenant,
                bucket.as_str(),
                meta.clone(),
                events,
                later(at, REPLACED_BLOB_GRACE),
            )
            .await?;
        if !committed {
            return Err(ApiError::NotFound("no such bucket".into()).into());
        }
        if queued {
            self.queued.notify_one();
        }
        Ok(meta)
    }

    /// Removes `key` and commits its events; `false` when there was no such object.
    pub async fn remove(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> ApiResult<bool> {
        let rules = self.rules(tenant, bucket).await?;
        let at = self.clock.now();
        let events = self.events(
            &rules,
            ObjectEvent::Delete,
            &EventObject {
                bucket,
                key,
                size_and_etag: None,
                sequencer: self.sequencer.next(at),
            },
            at,
        );
        let queued = !events.is_empty();
        let removed = self
            .store
            .remove_object(
                tenant,
                bucket.as_str(),
                key.as_str(),
                events,
                later(at, REPLACED_BLOB_GRACE),
            )
            .await?;
        if removed && queued {
            self.queued.notify_one();
        }
        Ok(removed)
    }
}

/// Why an upload failed, for the route to answer.
pub enum UploadError {
    Api(ApiError),
    Put(PutError),
}

impl From<ApiError> for UploadError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<PutError> for UploadError {
    fn from(e: PutError) -> Self {
        Self::Put(e)
    }
}

/// Publishes committed object events from the outbox until `stop` turns true.
pub async fn relay(objects: Arc<Objects>, bus: Arc<dyn Bus>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = relay_round(&objects, &*bus).await {
            tracing::warn!(error = %e, "object events: publishing failed; retrying");
        }
        tokio::select! {
            _ = objects.queued.notified() => {}
            _ = tokio::time::sleep(RELAY_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Publishes what the outbox holds, a batch at a time, until it is empty.
async fn relay_round(objects: &Objects, bus: &dyn Bus) -> Result<(), StoreError> {
    loop {
        let entries = objects.store.claim_outbox(BATCH, LEASE).await?;
        if entries.is_empty() {
            return Ok(());
        }
        // One publish per run of entries to the same tenant and topic, in order.
        let mut done = Vec::with_capacity(entries.len());
        let mut start = 0;
        while start < entries.len() {
            let (tenant, topic) = (&entries[start].tenant, &entries[start].message.topic);
            let end = entries[start..]
                .iter()
                .position(|e| &e.tenant != tenant || &e.message.topic != topic)
                .map_or(entries.len(), |n| start + n);
            let run = &entries[start..end];
            let messages = run
                .iter()
                .map(|e| OutgoingMessage {
                    body: e.message.body.clone(),
                    attributes: serde_json::Map::new(),
                    dedup_id: Some(e.message.dedup_id.clone()),
                })
                .collect();
            let published = match BusName::parse(topic, "/topic") {
                Ok(topic) => bus.publish(tenant, &topic, messages).await.map(drop),
                Err(e) => Err(StoreError::Internal(format!("outbox topic: {e}"))),
            };
            match published {
                Ok(()) => done.extend(run.iter().map(|e| e.id)),
                Err(e) => {
                    // The rest stays leased and is tried again once the lease ends.
                    tracing::warn!(error = %e, tenant = %tenant, topic, "object events not published yet");
                }
            }
            start = end;
        }
        let progressed = !done.is_empty();
        objects.store.finish_outbox(done).await?;
        if !progressed {
            return Ok(());
        }
    }
}

/// Deletes blobs that no key points at any more (replaced, removed, or never
/// committed) until `stop` turns true.
pub async fn collect(objects: Arc<Objects>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = collect_round(&objects).await {
            tracing::warn!(error = %e, "collecting unused blobs failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(COLLECT_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn collect_round(objects: &Objects) -> Result<(), StoreError> {
    loop {
        let due = objects.store.claim_garbage(BATCH, LEASE).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut gone = Vec::with_capacity(due.len());
        for name in due {
            objects.blobs.delete(&name).await?;
            gone.push(name);
        }
        objects.store.forget_garbage(gone).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequencers_grow_even_within_one_instant() {
        let sequencer = Sequencer::default();
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let (a, b) = (sequencer.next(now), sequencer.next(now));
        assert!(b > a, "{a} then {b}");
        assert_eq!(a.len(), 16);
    }
}
