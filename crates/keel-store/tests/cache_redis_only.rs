//! What only the Redis cache does: keep answering, correctly, while Redis is
//! unreachable, frozen or restarted. Each test runs a `redis-server` of its own
//! (so stopping it disturbs nobody); like every Redis test they run when
//! `KEEL_TEST_REDIS_URL` is set (CI), and skip with a printed reason otherwise.

use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_store::{
    cache::{redis::RedisCache, Cache, Limit},
    testing::{free_port, PrivateRedis, REDIS_URL_VAR},
};

const TTL: Duration = Duration::from_secs(30);

fn redis_tests_enabled(test: &str) -> bool {
    let enabled = std::env::var(REDIS_URL_VAR).is_ok_and(|v| !v.is_empty());
    if !enabled {
        eprintln!("skipping {test}: {REDIS_URL_VAR} is not set");
    }
    enabled
}

async fn cache_value(cache: &RedisCache, scope: &str, key: &str, value: &'static str) {
    let stamp = cache.get(scope, key).await.stamp.expect("Redis answers");
    cache
        .put(scope, key, stamp, Bytes::from_static(value.as_bytes()), TTL)
        .await;
}

/// Polls until the cache hands out stamps again (it leaves Redis alone for a
/// second after a failure).
async fn until_reachable(cache: &RedisCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get("probe", "probe").await.stamp.is_none() {
        assert!(Instant::now() < deadline, "the cache did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_bypassed() {
    if !redis_tests_enabled("an_unreachable_redis_is_bypassed") {
        return;
    }
    let port = free_port();
    let started = Instant::now();
    let cache = RedisCache::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .expect("an unreachable Redis is not a startup error");
    let lookup = cache.get("s", "k").await;
    assert!(lookup.value.is_none() && lookup.stamp.is_none());
    cache.invalidate("s").await;
    assert!(cache.ping().await.is_err());
    // Rate limits still hold, in this process.
    let limit = Limit::new(0.01, 2.0);
    cache.take(&[("key", limit)]).await.unwrap();
    cache.take(&[("key", limit)]).await.unwrap();
    assert!(cache.take(&[("key", limit)]).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a refused connection must not stall callers"
    );
}

/// An invalidation that cannot be delivered must not leave a stale value
/// reachable once Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_invalidation_drops_everything_cached_before_it() {
    if !redis_tests_enabled("an_undelivered_invalidation_drops_everything_cached_before_it") {
        return;
    }
    let redis = PrivateRedis::start();
    let writer = RedisCache::connect(&redis.url()).await.unwrap();
    let reader = RedisCache::connect(&redis.url()).await.unwrap();
    cache_value(&reader, "users", "ada", "old birthday").await;
    cache_value(&reader, "other scope", "k", "old too").await;

    redis.pause();
    let started = Instant::now();
    writer.invalidate("users").await; // the write it follows was acknowledged
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a frozen Redis must not stall writes"
    );
    assert!(writer.get("users", "ada").await.stamp.is_none());
    redis.resume();

    until_reachable(&writer).await;
    assert_eq!(writer.get("users", "ada").await.value, None);
    assert_eq!(reader.get("users", "ada").await.value, None);
    assert_eq!(reader.get("other scope", "k").await.value, None);
    // And the cache works as before.
    cache_value(&reader, "users", "ada", "new birthday").await;
    assert_eq!(
        writer.get("users", "ada").await.value.as_deref(),
        Some(&b"new birthday"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_used_again_without_a_restart_of_keel() {
    if !redis_tests_enabled("a_restarted_redis_is_used_again_without_a_restart_of_keel") {
        return;
    }
    let mut redis = PrivateRedis::start();
    let cache = RedisCache::connect(&redis.url()).await.unwrap();
    cache_value(&cache, "s", "k", "v").await;
    redis.stop();
    assert!(cache.get("s", "k").await.value.is_none());
    assert!(cache.ping().await.is_err());
    redis.restart();
    until_reachable(&cache).await;
    cache.ping().await.unwrap();
    cache_value(&cache, "s", "k", "v2").await;
    assert_eq!(cache.get("s", "k").await.value.as_deref(), Some(&b"v2"[..]));
}
