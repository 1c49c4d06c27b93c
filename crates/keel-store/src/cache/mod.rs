//! The cache port (SPEC §5, §9: `cache = "memory" | "redis://..."`): cached reads
//! whose invalidation reaches every replica, and rate limits shared by them.
//!
//! Values live in *scopes* (a collection, a user's birthday, an API key). A write
//! calls [`Cache::invalidate`] on its scope before it is acknowledged, and every
//! value cached in the scope becomes unreachable on every replica that shares the
//! cache. A read that misses gets a [`Stamp`] with the miss, reads the store, and
//! puts what it read under that stamp: had the scope been invalidated in between,
//! the value would be unreachable, so a slow reader can never cache what a write
//! has already replaced.
//!
//! Adapters: [`memory::MemoryCache`] (one process; the embedded default) and
//! [`redis::RedisCache`] (shared by every replica). When Redis cannot be reached
//! the Redis adapter answers every lookup with "not cached" and keeps rate limits
//! in process: reads go to the store, never to a value that might be stale.

pub mod memory;
pub mod redis;
pub mod token_buckets;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::StoreResult;

pub use token_buckets::{RateLimiter, TokenBuckets};

/// The version of a scope a lookup saw: put a value read after the lookup under
/// it. Opaque to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Bumped (Redis) when some replica could not deliver an invalidation: every
    /// value cached before the bump is unreachable.
    pub(crate) epoch: u64,
    /// The scope's generation (Redis) or the cache's write clock (memory).
    pub(crate) generation: u64,
    pub(crate) taken: Instant,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The cached value, if any.
    pub value: Option<Bytes>,
    /// Under which to put a value read now; `None` when the cache cannot take one
    /// (Redis unreachable): the caller reads the store and caches nothing.
    pub stamp: Option<Stamp>,
}

impl Lookup {
    pub fn bypass() -> Self {
        Self {
            value: None,
            stamp: None,
        }
    }
}

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    per_second: f64,
    burst: f64,
}

impl Limit {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Whole seconds (at least one) until a bucket holding `tokens` has one.
    pub(crate) fn seconds_until_token(&self, tokens: f64) -> u64 {
        ((1.0 - tokens) / self.per_second).ceil().max(1.0) as u64
    }
}

/// Which bucket of a [`Cache::take`] call was empty, and when it has a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub bucket: usize,
    pub retry_after_s: u64,
}

#[async_trait]
pub trait Cache: Send + Sync {
    /// `"memory"` or `"redis"`.
    fn backend_name(&self) -> &'static str;

    /// The value cached for `key` in `scope`, and the stamp to put one under.
    async fn get(&self, scope: &str, key: &str) -> Lookup;

    /// Caches `value` for `key` in `scope` for `ttl`, unless `scope` was
    /// invalidated after `stamp` was taken.
    async fn put(&self, scope: &str, key: &str, stamp: Stamp, value: Bytes, ttl: Duration);

    /// Makes every value cached in `scope` unreachable, for every replica, before
    /// it returns. It cannot fail: an adapter that cannot deliver it stops serving
    /// cached values until it has made everything cached before unreachable.
    async fn invalidate(&self, scope: &str);

    /// Takes one token from each of `buckets`, or none if one of them is empty.
    async fn take(&self, buckets: &[(&str, Limit)]) -> Result<(), Refused>;

    /// Whether the cache is reachable now (a memory cache always is).
    async fn ping(&self) -> StoreResult<()>;
}

/// Which cache a `cache` setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKind {
    Memory,
    Redis(String),
}

impl CacheKind {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "" | "memory" => Ok(Self::Memory),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(Self::Redis(url.to_owned()))
            }
            other => Err(format!(
                "cache {other:?}: expected \"memory\" or redis://host:port[/db][?prefix=...]"
            )),
        }
    }
}

/// Longest a stamp stays usable: a reader that took longer than this between its
/// lookup and its put caches nothing. Scope generations live much longer in Redis
/// (see [`redis`]), so a stamp never outlives the record of an invalidation.
pub(crate) const STAMP_LIFETIME: Duration = Duration::from_secs(60);

/// Longest any value stays cached, whatever the caller asks.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);
