//! Cached collection reads (SPEC §5). Each (tenant, collection) has a generation
//! number that every write through this process bumps; cached pages carry the
//! generation they were read at, so a write makes every cached read of that
//! collection unreachable at once. Another replica's writes are seen once entries
//! expire (the read-cache TTL); a Redis-backed cache will carry the bumps across
//! replicas.

use std::collections::{HashMap, HashSet};

use keel_store::TenantId;
use parking_lot::Mutex;
use serde_json::Value;

use crate::read_cache::ReadCache;

pub struct CollectionReads {
    cache: ReadCache<String, Value>,
    generations: Mutex<HashMap<String, u64>>,
    /// Collections whose feeding subscription this process has seen exist.
    fed: Mutex<HashSet<String>>,
}

impl CollectionReads {
    pub fn new(cache: ReadCache<String, Value>) -> Self {
        Self {
            cache,
            generations: Mutex::new(HashMap::new()),
            fed: Mutex::new(HashSet::new()),
        }
    }

    fn scope(tenant: &TenantId, collection: &str) -> String {
        format!("{}/{}", tenant.as_str(), collection)
    }

    /// The cache key for `query` against the collection as it is now.
    pub fn key(&self, tenant: &TenantId, collection: &str, query: &str) -> String {
        let scope = Self::scope(tenant, collection);
        let generation = self.generations.lock().get(&scope).copied().unwrap_or(0);
        format!("{scope}/{generation}/{query}")
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: String, value: Value) {
        self.cache.insert(key, value);
    }

    pub fn is_fed(&self, tenant: &TenantId, collection: &str) -> bool {
        self.fed.lock().contains(&Self::scope(tenant, collection))
    }

    pub fn mark_fed(&self, tenant: &TenantId, collection: &str) {
        self.fed.lock().insert(Self::scope(tenant, collection));
    }

    /// Called after every write to the collection through this process.
    pub fn invalidate(&self, tenant: &TenantId, collection: &str) {
        *self
            .generations
            .lock()
            .entry(Self::scope(tenant, collection))
            .or_default() += 1;
    }
}
