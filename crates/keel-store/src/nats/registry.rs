//! Each tenant's topics and subscriptions on the NATS bus: one key per tenant in
//! the `<prefix>_registry` bucket, changed only by compare-and-set on its revision,
//! so two replicas creating subscriptions at once cannot overshoot a quota together.
//! Reads are cached for a second (a process sees its own writes at once; another
//! replica's filter change reaches it within that second).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use bytes::Bytes;
use keel_core::{
    bus::{BusName, DeliveryPolicy},
    filter::FilterPolicy,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bucket::Bucket;
use crate::{
    bus::{FilterScope, Subscription},
    from_micros,
    routing::{parse_scope, route_from, Routes},
    Quotas, StoreError, StoreResult, TenantId,
};

/// One tenant's registry as stored (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Entries {
    topics: BTreeSet<String>,
    /// By `topic/subscription` ('/' is not in a name's alphabet).
    subscriptions: BTreeMap<String, StoredSubscription>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSubscription {
    topic: String,
    name: String,
    filter: Option<Value>,
    filter_scope: String,
    target: Value,
    max_receives: u32,
    visibility_timeout_s: u32,
    retry_backoff_s: Vec<u32>,
    created_at_us: i64,
}

/// A tenant's registry as read, with each topic's routes parsed once.
pub(super) struct Known {
    revision: u64,
    entries: Entries,
    routes: HashMap<String, Routes>,
    read_at: Instant,
}

impl Known {
    pub(super) fn has_topic(&self, topic: &BusName) -> bool {
        self.entries.topics.contains(topic.as_str())
    }

    pub(super) fn subscription(&self, topic: &BusName, name: &BusName) -> Option<Subscription> {
        self.entries
            .subscriptions
            .get(&key(topic, name))
            .map(StoredSubscription::to_subscription)
            .transpose()
            .ok()
            .flatten()
    }

    pub(super) fn subscriptions(&self) -> impl Iterator<Item = Subscription> + '_ {
        self.entries
            .subscriptions
            .values()
            .filter_map(|s| s.to_subscription().ok())
    }

    /// Where a publish to `topic` fans out (empty for an unknown topic).
    pub(super) fn routes(&self, topic: &BusName) -> Routes {
        self.routes.get(topic.as_str()).cloned().unwrap_or_default()
    }
}

const FRESH_FOR: Duration = Duration::from_secs(1);

pub struct Registry {
    bucket: Bucket,
    cache: Mutex<HashMap<String, Arc<Known>>>,
}

impl Registry {
    pub(super) async fn open(js: &jetstream::Context, prefix: &str) -> StoreResult<Self> {
        let bucket = Bucket::open(
            js,
            format!("{prefix}_registry"),
            format!("{prefix}.registry"),
            Duration::ZERO,
        )
        .await?;
        Ok(Self {
            bucket,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The tenant's registry, from the cache if it is fresh.
    pub(super) async fn read(&self, tenant: &TenantId) -> StoreResult<Arc<Known>> {
        if let Some(known) = self.cache.lock().get(tenant.as_str()) {
            if known.read_at.elapsed() < FRESH_FOR {
                return Ok(known.clone());
            }
        }
        self.read_fresh(tenant).await
    }

    pub(super) async fn read_fresh(&self, tenant: &TenantId) -> StoreResult<Arc<Known>> {
        let entry = self.bucket.get(tenant.as_str()).await?;
        let known = parse(entry.revision, entry.value.as_deref().unwrap_or(b"{}"))?;
        let known = Arc::new(known);
        self.cache
            .lock()
            .insert(tenant.as_str().to_owned(), known.clone());
        Ok(known)
    }

    /// Changes the tenant's registry with `change` (which may refuse), retrying on
    /// a concurrent change by another replica.
    async fn change<T>(
        &self,
        tenant: &TenantId,
        mut change: impl FnMut(&mut Entries) -> StoreResult<T>,
    ) -> StoreResult<T> {
        for _ in 0..32 {
            let read = self.read_fresh(tenant).await?;
            let mut entries = read.entries.clone();
            let answer = change(&mut entries)?;
            let bytes = Bytes::from(serde_json::to_vec(&entries).map_err(internal)?);
            let written = self
                .bucket
                .put_if(tenant.as_str(), bytes, read.revision)
                .await?;
            if let Some(revision) = written {
                let written = Arc::new(known(revision, entries)?);
                self.cache
                    .lock()
                    .insert(tenant.as_str().to_owned(), written);
                return Ok(answer);
            }
        }
        Err(StoreError::Unavailable(
            "NATS: the registry kept changing under this write".into(),
        ))
    }

    pub(super) async fn ensure_topic(
        &self,
        tenant: &TenantId,
        topic: &BusName,
        quotas: &Quotas,
    ) -> StoreResult<()> {
        if self.read(tenant).await?.has_topic(topic) {
            return Ok(());
        }
        self.change(tenant, |entries| add_topic(entries, topic, quotas))
            .await
    }

    pub(super) async fn put_subscription(
        &self,
        tenant: &TenantId,
        subscription: &Subscription,
        quotas: &Quotas,
    ) -> StoreResult<Subscription> {
        let stored = StoredSubscription::from_subscription(subscription);
        self.change(tenant, |entries| {
            add_topic(entries, &subscription.topic, quotas)?;
            let key = key(&subscription.topic, &subscription.name);
            let mut stored = stored.clone();
            if let Some(old) = entries.subscriptions.get(&key) {
                stored.created_at_us = old.created_at_us;
            }
            entries.subscriptions.insert(key, stored.clone());
            let count = entries.subscriptions.len() as u64;
            if count > quotas.subscriptions_per_tenant {
                return Err(StoreError::QuotaExceeded {
                    quota: "subscriptions_per_tenant",
                    limit: quotas.subscriptions_per_tenant,
                });
            }
            let webhooks = entries
                .subscriptions
                .values()
                .filter(|s| target_type(&s.target) == "webhook")
                .count() as u64;
            if target_type(&stored.target) == "webhook" && webhooks > quotas.webhooks_per_tenant {
                return Err(StoreError::QuotaExceeded {
                    quota: "webhooks_per_tenant",
                    limit: quotas.webhooks_per_tenant,
                });
            }
            stored.to_subscription()
        })
        .await
    }

    /// Every tenant with a registry (for the worker role and `/metrics`).
    pub(super) async fn tenants(&self) -> StoreResult<Vec<TenantId>> {
        Ok(self
            .bucket
            .keys()
            .await?
            .into_iter()
            .map(TenantId)
            .collect())
    }
}

fn add_topic(entries: &mut Entries, topic: &BusName, quotas: &Quotas) -> StoreResult<()> {
    if entries.topics.insert(topic.as_str().to_owned())
        && entries.topics.len() as u64 > quotas.topics_per_tenant
    {
        return Err(StoreError::QuotaExceeded {
            quota: "topics_per_tenant",
            limit: quotas.topics_per_tenant,
        });
    }
    Ok(())
}

fn parse(revision: u64, bytes: &[u8]) -> StoreResult<Known> {
    known(revision, serde_json::from_slice(bytes).map_err(internal)?)
}

/// A registry as read or written, with each topic's routes parsed once.
fn known(revision: u64, entries: Entries) -> StoreResult<Known> {
    let mut routes: HashMap<String, Vec<(String, FilterScope, FilterPolicy)>> = HashMap::new();
    for stored in entries.subscriptions.values() {
        let route = route_from(
            stored.name.clone(),
            stored.filter.as_ref(),
            &stored.filter_scope,
        )?;
        routes.entry(stored.topic.clone()).or_default().push(route);
    }
    Ok(Known {
        revision,
        entries,
        routes: routes
            .into_iter()
            .map(|(topic, routes)| (topic, Arc::new(routes)))
            .collect(),
        read_at: Instant::now(),
    })
}

fn key(topic: &BusName, name: &BusName) -> String {
    format!("{}/{}", topic.as_str(), name.as_str())
}

fn target_type(target: &Value) -> &str {
    target.get("type").and_then(Value::as_str).unwrap_or("")
}

impl StoredSubscription {
    fn from_subscription(s: &Subscription) -> Self {
        Self {
            topic: s.topic.as_str().to_owned(),
            name: s.name.as_str().to_owned(),
            filter: s.filter.clone(),
            filter_scope: s.filter_scope.as_str().to_owned(),
            target: s.target.clone(),
            max_receives: s.delivery.max_receives,
            visibility_timeout_s: s.delivery.visibility_timeout_s,
            retry_backoff_s: s.delivery.retry_backoff_s.clone(),
            created_at_us: s.created_at.as_microsecond(),
        }
    }

    fn to_subscription(&self) -> StoreResult<Subscription> {
        let name = |raw: &str| BusName::parse(raw, "/name").map_err(internal);
        Ok(Subscription {
            topic: name(&self.topic)?,
            name: name(&self.name)?,
            filter: self.filter.clone(),
            filter_scope: parse_scope(&self.filter_scope),
            target: self.target.clone(),
            delivery: DeliveryPolicy {
                max_receives: self.max_receives,
                visibility_timeout_s: self.visibility_timeout_s,
                retry_backoff_s: self.retry_backoff_s.clone(),
            },
            created_at: from_micros(self.created_at_us)?,
        })
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("NATS registry: {e}"))
}

impl Registry {
    pub(super) async fn ping(&self) -> StoreResult<()> {
        self.bucket.ping().await
    }
}
