//! The `store` target: receive a batch, upsert it into the collection by message
//! id, then ack. A crash between the upsert and the ack redelivers the batch after
//! its visibility timeout, and the upsert rewrites the same rows: stored exactly
//! once without a transaction spanning bus and store.

use std::time::Instant;

use keel_store::{bus::ReceiveRequest, bus::Subscription, TenantId};
use tokio::sync::watch;

use super::{stopping, WorkerContext, RECEIVE_WAIT};
use crate::cached_reads::CachedReads;

/// Messages taken per receive (and written per upsert).
const STORE_BATCH: u32 = 1000;
/// How long a batch stays hidden while it is written. A batch takes milliseconds;
/// this bounds how long a crash between receive and ack delays its messages
/// (the subscription's own, longer timeout is for consumers that do real work).
/// Redelivering a batch that was only slow is harmless: the upsert rewrites.
const STORE_VISIBILITY_S: u32 = 5;

pub async fn run(
    context: WorkerContext,
    tenant: TenantId,
    subscription: Subscription,
    collection: String,
    retired: watch::Receiver<bool>,
) {
    let (topic, name) = (&subscription.topic, &subscription.name);
    while !stopping(&context, &retired) {
        let batch = context
            .bus
            .receive(
                &tenant,
                topic,
                name,
                ReceiveRequest {
                    max: STORE_BATCH,
                    visibility_s: subscription
                        .delivery
                        .visibility_timeout_s
                        .min(STORE_VISIBILITY_S),
                    wait: RECEIVE_WAIT,
                },
            )
            .await;
        let batch = match batch {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, topic = topic.as_str(), "store target: receive failed; retrying");
                tokio::time::sleep(RECEIVE_WAIT).await;
                continue;
            }
        };
        let started = Instant::now();
        let count = batch.len() as u64;
        let (records, receipts): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|d| ((d.id, d.body), d.receipt))
            .unzip();
        if let Err(e) = context
            .store
            .upsert_records(&tenant, &collection, records)
            .await
        {
            // The batch returns to the queue when its visibility timeout lapses.
            tracing::warn!(error = %e, topic = topic.as_str(), "store target: will retry");
            context
                .metrics
                .worker_outcome("store", "failed", count, started.elapsed());
            tokio::time::sleep(RECEIVE_WAIT).await;
            continue;
        }
        context
            .reads
            .invalidate(&CachedReads::collection_scope(&tenant, &collection))
            .await;
        context.stored.notify_waiters();
        if let Err(e) = context.bus.ack(&tenant, topic, name, receipts).await {
            // Stored already; the redelivery will rewrite the same rows.
            tracing::warn!(error = %e, topic = topic.as_str(), "store target: ack failed");
        }
        context
            .metrics
            .worker_outcome("store", "delivered", count, started.elapsed());
    }
}
