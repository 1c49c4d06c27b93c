//! The worker role: built-in targets that consume subscriptions inside
//! `keel serve` (SPEC §4).
//!
//! One supervisor wakes on every publish (and at least once a second, since
//! messages also become visible by time), drains `store` subscriptions in batches —
//! each batch one durable transaction that upserts records by message id and
//! removes the queue entries, so redelivery can never make a second row — and keeps
//! one task per `webhook` subscription running. On shutdown it stops taking new
//! work, lets in-flight webhook calls finish (their messages are acked, or return
//! to the queue when their visibility timeout lapses), and returns.

mod webhook;

pub use webhook::{signature, timestamped_signature};

use std::{collections::HashMap, time::Duration};

use keel_core::bus::Target;
use keel_store::{bus::Subscription, TenantId};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::state::AppState;

/// Records moved per store-target transaction.
const STORE_BATCH: u32 = 1000;
/// How stale the list of worker subscriptions may get.
const RELIST_EVERY: Duration = Duration::from_millis(500);

type SubscriptionKey = (TenantId, String, String);

/// Starts the worker role; the task ends after `state.start_draining()`.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(supervise(state))
}

/// A running webhook deliverer, with what it was started for and how to retire it.
struct RunningWebhook {
    task: JoinHandle<()>,
    retire: watch::Sender<bool>,
    target: serde_json::Value,
    delivery: keel_core::bus::DeliveryPolicy,
}

impl RunningWebhook {
    /// Asks the task to stop after its in-flight calls, and waits for it.
    async fn retire(self) {
        let _ = self.retire.send(true);
        let _ = self.task.await;
    }
}

async fn supervise(state: AppState) {
    let arrivals = state.store.arrivals();
    let mut stop = state.stop_signal();
    let mut webhooks: HashMap<SubscriptionKey, RunningWebhook> = HashMap::new();
    let mut subscriptions: Vec<(TenantId, Subscription)> = Vec::new();
    let mut listed_at: Option<Instant> = None;
    while !*stop.borrow() {
        // Register for the next publish before looking, so none slips between.
        let notified = arrivals.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        if listed_at.is_none_or(|at| at.elapsed() >= RELIST_EVERY) {
            match state.store.worker_subscriptions().await {
                Ok(list) => {
                    subscriptions = list;
                    listed_at = Some(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "worker: cannot list subscriptions"),
            }
        }
        // Retire deliverers whose subscription is gone or no longer a webhook; a
        // changed URL, secret or policy gets a fresh deliverer below.
        let current: std::collections::HashSet<SubscriptionKey> = subscriptions
            .iter()
            .filter(|(_, s)| matches!(Target::parse(&s.target), Ok(Target::Webhook { .. })))
            .map(|(tenant, s)| {
                (
                    tenant.clone(),
                    s.topic.as_str().to_owned(),
                    s.name.as_str().to_owned(),
                )
            })
            .collect();
        let gone: Vec<SubscriptionKey> = webhooks
            .keys()
            .filter(|k| !current.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(running) = webhooks.remove(&key) {
                // In the background: its in-flight calls must not hold up the others.
                tokio::spawn(running.retire());
            }
        }
        for (tenant, subscription) in &subscriptions {
            match Target::parse(&subscription.target) {
                Ok(Target::Store { collection }) => {
                    drain_store_target(&state, tenant, subscription, collection.as_str()).await;
                }
                Ok(Target::Webhook { url, secret }) => {
                    let key = (
                        tenant.clone(),
                        subscription.topic.as_str().to_owned(),
                        subscription.name.as_str().to_owned(),
                    );
                    let up_to_date = webhooks.get(&key).is_some_and(|r| {
                        !r.task.is_finished()
                            && r.target == subscription.target
                            && r.delivery == subscription.delivery
                    });
                    if !up_to_date {
                        if let Some(old) = webhooks.remove(&key) {
                            tokio::spawn(old.retire());
                        }
                        let task = webhook::Deliverer::new(
                            state.clone(),
                            tenant.clone(),
                            subscription.clone(),
                            url,
                            secret,
                        );
                        let (retire, retired) = watch::channel(false);
                        webhooks.insert(
                            key,
                            RunningWebhook {
                                task: tokio::spawn(task.run(retired)),
                                retire,
                                target: subscription.target.clone(),
                                delivery: subscription.delivery.clone(),
                            },
                        );
                    }
                }
                Ok(Target::Queue) | Err(_) => {}
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
    for (_, running) in webhooks {
        running.retire().await;
    }
    tracing::info!("workers stopped");
}

async fn drain_store_target(
    state: &AppState,
    tenant: &TenantId,
    subscription: &Subscription,
    collection: &str,
) {
    loop {
        let started = std::time::Instant::now();
        match state
            .store
            .store_deliveries(
                tenant,
                &subscription.topic,
                &subscription.name,
                collection,
                STORE_BATCH,
            )
            .await
        {
            Ok(0) => return,
            Ok(stored) => {
                state.collection_reads.invalidate(tenant, collection);
                state.telemetry.bus.worker_outcome(
                    "store",
                    "delivered",
                    stored as u64,
                    started.elapsed(),
                );
                if stored < STORE_BATCH as usize {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = subscription.topic.as_str(), "store target: will retry");
                state
                    .telemetry
                    .bus
                    .worker_outcome("store", "failed", 1, started.elapsed());
                return;
            }
        }
    }
}
