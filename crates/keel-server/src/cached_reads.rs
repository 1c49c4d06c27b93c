//! Reads through the cache port (SPEC §5): collection pages and records, greeter
//! birthdays and API keys are cached as the bytes the store's answer serialises
//! to, in the process (`cache = "memory"`) or in Redis for every replica.
//!
//! A write invalidates its scope before it is acknowledged, and a miss puts what it
//! read under the stamp it looked up with, so no read served after a write was
//! acknowledged — on this replica or another sharing the cache — returns what the
//! write replaced. Hits, misses and bypasses (cache unreachable) are counted for
//! `/metrics`.

use std::{
    future::Future,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use bytes::Bytes;
use keel_store::{cache::Cache, TenantId};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

/// What is being read, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Cached {
    collections,
    greeter,
    keys,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    hit,
    miss,
    /// The cache could not be used (Redis unreachable): read from the store.
    bypass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    cache: Cached,
    result: Outcome,
}

/// `keel_cache_lookups_total{cache, result}`.
pub struct CacheMetrics {
    lookups: Family<CacheLabels, Counter<u64, AtomicU64>>,
}

impl CacheMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let lookups = Family::default();
        registry.register(
            "keel_cache_lookups",
            "Cached reads by what was read and whether the cache had it (hit, miss, bypass: cache unreachable)",
            lookups.clone(),
        );
        Self { lookups }
    }

    fn count(&self, cache: Cached, result: Outcome) {
        self.lookups
            .get_or_create(&CacheLabels { cache, result })
            .inc();
    }
}

pub struct CachedReads {
    cache: Arc<dyn Cache>,
    metrics: Arc<CacheMetrics>,
}

impl CachedReads {
    pub fn new(cache: Arc<dyn Cache>, metrics: Arc<CacheMetrics>) -> Self {
        Self { cache, metrics }
    }

    pub fn cache(&self) -> &dyn Cache {
        &*self.cache
    }

    /// The cached bytes for `key` in `scope`, or what `load` reads (cached for
    /// `ttl`; a zero `ttl` caches nothing).
    pub async fn read<E, F, Fut>(
        &self,
        what: Cached,
        scope: &str,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        if ttl.is_zero() {
            return load().await;
        }
        let lookup = self.cache.get(scope, key).await;
        if let Some(hit) = lookup.value {
            self.metrics.count(what, Outcome::hit);
            return Ok(hit);
        }
        let Some(stamp) = lookup.stamp else {
            self.metrics.count(what, Outcome::bypass);
            return load().await;
        };
        self.metrics.count(what, Outcome::miss);
        let loaded = load().await?;
        self.cache.put(scope, key, stamp, loaded.clone(), ttl).await;
        Ok(loaded)
    }

    /// Called after every write to `scope`, before the write is acknowledged.
    pub async fn invalidate(&self, scope: &str) {
        self.cache.invalidate(scope).await;
    }

    pub fn collection_scope(tenant: &TenantId, collection: &str) -> String {
        format!("collection/{}/{collection}", tenant.as_str())
    }

    pub fn greeter_scope(tenant: &TenantId, username: &str) -> String {
        format!("greeter/{}/{username}", tenant.as_str())
    }

    pub fn key_scope(prefix: &str) -> String {
        format!("key/{prefix}")
    }
}
