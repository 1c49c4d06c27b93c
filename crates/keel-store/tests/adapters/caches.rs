//! The cache adapters the cache conformance suite runs against. A "replica" is
//! what another process would open: for Redis a second adapter on the same key
//! prefix, for memory the same cache (it is one process's by definition).

use std::sync::Arc;

use keel_store::{
    cache::{memory::MemoryCache, redis::RedisCache, Cache},
    testing::TestRedis,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Memory,
    Redis,
}

pub struct Caches {
    pub kind: CacheKind,
    pub one: Arc<dyn Cache>,
    /// Another replica's view of the same cache.
    pub other: Arc<dyn Cache>,
    _redis: Option<TestRedis>,
}

impl Caches {
    pub async fn open(kind: CacheKind) -> Option<Self> {
        match kind {
            CacheKind::Memory => {
                let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(1_000));
                Some(Self {
                    kind,
                    one: cache.clone(),
                    other: cache,
                    _redis: None,
                })
            }
            CacheKind::Redis => {
                let redis = TestRedis::create("the Redis half")?;
                let one = RedisCache::connect(&redis.url).await.unwrap();
                let other = RedisCache::connect(&redis.url).await.unwrap();
                one.ping()
                    .await
                    .unwrap_or_else(|e| panic!("KEEL_TEST_REDIS_URL: {e}"));
                Some(Self {
                    kind,
                    one: Arc::new(one),
                    other: Arc::new(other),
                    _redis: Some(redis),
                })
            }
        }
    }
}

/// Runs each named check (an `async fn(CacheKind)`) once per cache adapter, as
/// `memory::<check>` and `redis::<check>`.
#[macro_export]
macro_rules! on_every_cache {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check($crate::adapters::caches::CacheKind::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check($crate::adapters::caches::CacheKind::Redis).await
                }
            )*
        }
    };
}
