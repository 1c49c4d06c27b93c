//! The worker role: built-in targets that consume subscriptions inside
//! `keel serve` (SPEC §4).
//!
//! A supervisor lists the subscriptions whose target is built in (every half
//! second) and keeps one task per subscription running: a `store` task receives
//! batches, upserts them as records by message id and then acks them — so a
//! redelivery (after a crash between the two) rewrites the same rows and never
//! makes a second one, and no transaction has to span the bus and the store — a
//! `webhook` task posts each message, and a `telemetry-import` task imports the
//! objects that object-created events name. Any number of worker replicas may run
//! against the same bus: they compete for deliveries like any consumers. On
//! shutdown the tasks stop taking new work, finish what they hold (acked, or back
//! to the queue when its visibility timeout lapses), and the supervisor returns.
//!
//! Workers get a [`WorkerContext`], not the HTTP state: the ports, the clock, the
//! outbound client and the bus metrics.

mod notify;
mod store_target;
mod telemetry_import;
mod webhook;

pub use webhook::{signature, timestamped_signature};

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use keel_core::{bus::Target, clock::Clock};
use keel_store::{bus::Bus, bus::Subscription, Store, TenantId};
use tokio::{
    sync::{watch, Notify},
    task::JoinHandle,
    time::Instant,
};

use crate::{bus_metrics::BusMetrics, cached_reads::CachedReads, outbound::Outbound};

/// How stale the list of worker subscriptions may get.
const RELIST_EVERY: Duration = Duration::from_millis(500);
/// How long one receive waits for a message: also how long a task takes to notice
/// that it should stop.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// Everything a worker task uses.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub clock: Arc<dyn Clock>,
    pub outbound: Arc<Outbound>,
    pub metrics: Arc<BusMetrics>,
    /// Cached reads, invalidated after each write to a collection.
    pub reads: Arc<CachedReads>,
    /// Woken after records are stored (for `?wait=true` in this process).
    pub stored: Arc<Notify>,
    /// Object bytes, for `telemetry-import`.
    pub blobs: Arc<dyn keel_store::objects::BlobStore>,
    pub ingest: Arc<crate::ingest::IngestMetrics>,
    /// Largest object `telemetry-import` reads.
    pub import_max_bytes: u64,
    /// Turns true when the process starts draining.
    pub stop: watch::Receiver<bool>,
}

type SubscriptionKey = (TenantId, String, String);

/// Starts the worker role; the task ends once `context.stop` turns true.
pub fn spawn(context: WorkerContext) -> JoinHandle<()> {
    tokio::spawn(supervise(context))
}

/// A running task for one subscription, with what it was started for.
struct Running {
    task: JoinHandle<()>,
    retire: watch::Sender<bool>,
    target: serde_json::Value,
    delivery: keel_core::bus::DeliveryPolicy,
}

impl Running {
    /// Asks the task to stop after the work it holds, and waits for it.
    async fn retire(self) {
        let _ = self.retire.send(true);
        let _ = self.task.await;
    }

    fn serves(&self, subscription: &Subscription) -> bool {
        !self.task.is_finished()
            && self.target == subscription.target
            && self.delivery == subscription.delivery
    }
}

fn key_of(tenant: &TenantId, subscription: &Subscription) -> SubscriptionKey {
    (
        tenant.clone(),
        subscription.topic.as_str().to_owned(),
        subscription.name.as_str().to_owned(),
    )
}

async fn supervise(context: WorkerContext) {
    let mut stop = context.stop.clone();
    let mut running: HashMap<SubscriptionKey, Running> = HashMap::new();
    let mut listed_at: Option<Instant> = None;
    while !*stop.borrow() {
        if listed_at.is_none_or(|at| at.elapsed() >= RELIST_EVERY) {
            match context.bus.worker_subscriptions().await {
                Ok(list) => {
                    listed_at = Some(Instant::now());
                    reconcile(&context, &mut running, list).await;
                }
                Err(e) => tracing::warn!(error = %e, "worker: cannot list subscriptions"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RELIST_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
    for (_, task) in running {
        task.retire().await;
    }
    tracing::info!("workers stopped");
}

/// Starts a task for each new or changed subscription and retires the tasks of
/// subscriptions that are gone (in the background: their in-flight work must not
/// hold up the others).
async fn reconcile(
    context: &WorkerContext,
    running: &mut HashMap<SubscriptionKey, Running>,
    subscriptions: Vec<(TenantId, Subscription)>,
) {
    let current: HashSet<SubscriptionKey> = subscriptions
        .iter()
        .map(|(tenant, s)| key_of(tenant, s))
        .collect();
    let gone: Vec<SubscriptionKey> = running
        .keys()
        .filter(|k| !current.contains(*k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(task) = running.remove(&key) {
            tokio::spawn(task.retire());
        }
    }
    for (tenant, subscription) in subscriptions {
        let key = key_of(&tenant, &subscription);
        if running.get(&key).is_some_and(|r| r.serves(&subscription)) {
            continue;
        }
        let (retire, retired) = watch::channel(false);
        let task = match Target::parse(&subscription.target) {
            Ok(Target::Store { collection }) => tokio::spawn(store_target::run(
                context.clone(),
                tenant,
                subscription.clone(),
                collection.as_str().to_owned(),
                retired,
            )),
            Ok(Target::Webhook { url, secret }) => tokio::spawn(
                webhook::Deliverer::new(
                    context.clone(),
                    tenant,
                    subscription.clone(),
                    url,
                    webhook::Shape::Signed { secret },
                )
                .run(retired),
            ),
            Ok(Target::Notify { channel }) => {
                let Ok(Some(found)) = context.store.channel(&tenant, &channel).await else {
                    continue; // deleted (its subscription goes with it) or unreadable now
                };
                tokio::spawn(
                    webhook::Deliverer::new(
                        context.clone(),
                        tenant,
                        subscription.clone(),
                        found.spec.url.clone(),
                        webhook::Shape::Channel {
                            id: found.id,
                            spec: found.spec,
                        },
                    )
                    .run(retired),
                )
            }
            Ok(Target::TelemetryImport) => tokio::spawn(
                telemetry_import::Importer::new(context.clone(), tenant, subscription.clone())
                    .run(retired),
            ),
            Ok(Target::Queue) | Err(_) => continue,
        };
        if let Some(old) = running.insert(
            key,
            Running {
                task,
                retire,
                target: subscription.target,
                delivery: subscription.delivery,
            },
        ) {
            tokio::spawn(old.retire());
        }
    }
}

/// Whether a task should stop: the process is draining or its subscription is gone.
fn stopping(context: &WorkerContext, retired: &watch::Receiver<bool>) -> bool {
    *context.stop.borrow() || *retired.borrow()
}
