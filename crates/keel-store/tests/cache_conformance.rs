//! The cache port's contract, run unchanged on every cache adapter (memory, Redis).
//! Adapter-only behaviour (Redis unreachable, paused, restarted) is in
//! `cache_redis_only.rs`.

mod adapters;

use std::time::Duration;

use adapters::caches::{CacheKind, Caches};
use bytes::Bytes;
use keel_store::cache::Limit;

const TTL: Duration = Duration::from_secs(30);

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

async fn a_miss_then_a_hit(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let cache = &caches.one;
    let miss = cache.get("tenant/users", "ada").await;
    assert_eq!(miss.value, None);
    let stamp = miss.stamp.expect("a reachable cache hands out a stamp");
    cache
        .put("tenant/users", "ada", stamp, bytes("1815-12-10"), TTL)
        .await;
    assert_eq!(
        cache.get("tenant/users", "ada").await.value,
        Some(bytes("1815-12-10"))
    );
    assert_eq!(cache.get("tenant/users", "bob").await.value, None);
}

async fn invalidation_hides_every_value_of_its_scope_and_only_those(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let cache = &caches.one;
    for (scope, key) in [("s", "a"), ("s", "b"), ("t", "a")] {
        let stamp = cache.get(scope, key).await.stamp.unwrap();
        cache.put(scope, key, stamp, bytes("v"), TTL).await;
    }
    cache.invalidate("s").await;
    assert_eq!(cache.get("s", "a").await.value, None);
    assert_eq!(cache.get("s", "b").await.value, None);
    assert_eq!(cache.get("t", "a").await.value, Some(bytes("v")));
    // After the invalidation the scope caches again.
    let stamp = cache.get("s", "a").await.stamp.unwrap();
    cache.put("s", "a", stamp, bytes("new"), TTL).await;
    assert_eq!(cache.get("s", "a").await.value, Some(bytes("new")));
}

/// A reader that looked up before a write and puts what it read after the write
/// was acknowledged must not have its (stale) value served.
async fn a_put_that_raced_an_invalidation_is_never_served(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let before = caches.one.get("s", "k").await.stamp.unwrap();
    caches.other.invalidate("s").await;
    caches.one.put("s", "k", before, bytes("stale"), TTL).await;
    assert_eq!(caches.one.get("s", "k").await.value, None);
    assert_eq!(caches.other.get("s", "k").await.value, None);
    // Also when the scope had values and was invalidated twice.
    let stamp = caches.one.get("s", "k").await.stamp.unwrap();
    caches.one.put("s", "k", stamp, bytes("v1"), TTL).await;
    let racing = caches.one.get("s", "other").await.stamp.unwrap();
    caches.other.invalidate("s").await;
    caches.other.invalidate("s").await;
    caches
        .one
        .put("s", "other", racing, bytes("stale"), TTL)
        .await;
    assert_eq!(caches.one.get("s", "k").await.value, None);
    assert_eq!(caches.one.get("s", "other").await.value, None);
}

async fn replicas_share_values_and_invalidations(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let stamp = caches.one.get("c", "list").await.stamp.unwrap();
    caches.one.put("c", "list", stamp, bytes("[1]"), TTL).await;
    assert_eq!(
        caches.other.get("c", "list").await.value,
        Some(bytes("[1]"))
    );
    caches.other.invalidate("c").await;
    assert_eq!(caches.one.get("c", "list").await.value, None);
}

async fn values_expire_and_a_zero_ttl_caches_nothing(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let cache = &caches.one;
    let stamp = cache.get("s", "short").await.stamp.unwrap();
    cache
        .put("s", "short", stamp, bytes("v"), Duration::from_millis(100))
        .await;
    let stamp = cache.get("s", "none").await.stamp.unwrap();
    cache
        .put("s", "none", stamp, bytes("v"), Duration::ZERO)
        .await;
    assert_eq!(cache.get("s", "short").await.value, Some(bytes("v")));
    assert_eq!(cache.get("s", "none").await.value, None);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(cache.get("s", "short").await.value, None);
}

async fn scopes_and_keys_never_collide(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let cache = &caches.one;
    let stamp = cache.get("a:b", "c").await.stamp.unwrap();
    cache.put("a:b", "c", stamp, bytes("first"), TTL).await;
    let stamp = cache.get("a", "b:c").await.stamp.unwrap();
    cache.put("a", "b:c", stamp, bytes("second"), TTL).await;
    assert_eq!(cache.get("a:b", "c").await.value, Some(bytes("first")));
    assert_eq!(cache.get("a", "b:c").await.value, Some(bytes("second")));
    cache.invalidate("a").await;
    assert_eq!(cache.get("a:b", "c").await.value, Some(bytes("first")));
    assert_eq!(cache.get("a", "b:c").await.value, None);
}

async fn rate_limits_are_token_buckets_shared_by_replicas(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    // Slow refill, so the test's own duration cannot add a token.
    let limit = Limit::new(0.01, 4.0);
    for cache in [&caches.one, &caches.other, &caches.one, &caches.other] {
        cache.take(&[("key", limit)]).await.unwrap();
    }
    let refused = caches.one.take(&[("key", limit)]).await.unwrap_err();
    assert_eq!(refused.bucket, 0);
    assert!((90..=100).contains(&refused.retry_after_s), "{refused:?}");
    assert!(caches.other.take(&[("key", limit)]).await.is_err());
    assert!(caches.other.take(&[("another key", limit)]).await.is_ok());
}

async fn several_buckets_are_taken_all_or_nothing(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    let (roomy, tight) = (Limit::new(0.01, 3.0), Limit::new(0.01, 1.0));
    let cache = &caches.one;
    cache
        .take(&[("key", roomy), ("tenant", tight)])
        .await
        .unwrap();
    let refused = cache
        .take(&[("key", roomy), ("tenant", tight)])
        .await
        .unwrap_err();
    assert_eq!(refused.bucket, 1);
    // The refused call took nothing from "key": two tokens are left.
    cache.take(&[("key", roomy)]).await.unwrap();
    cache.take(&[("key", roomy)]).await.unwrap();
    assert!(cache.take(&[("key", roomy)]).await.is_err());
}

async fn a_reachable_cache_answers_ping(kind: CacheKind) {
    let Some(caches) = Caches::open(kind).await else {
        return;
    };
    caches.one.ping().await.unwrap();
    assert!(["memory", "redis"].contains(&caches.one.backend_name()));
}

on_every_cache!(
    a_miss_then_a_hit,
    invalidation_hides_every_value_of_its_scope_and_only_those,
    a_put_that_raced_an_invalidation_is_never_served,
    replicas_share_values_and_invalidations,
    values_expire_and_a_zero_ttl_caches_nothing,
    scopes_and_keys_never_collide,
    rate_limits_are_token_buckets_shared_by_replicas,
    several_buckets_are_taken_all_or_nothing,
    a_reachable_cache_answers_ping,
);
