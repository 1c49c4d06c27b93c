//! Token buckets in process memory: the memory cache's rate limits, the Redis
//! cache's fallback while Redis is unreachable, and the failed-login buckets (per
//! client address and per email). Per replica: N replicas allow up to N times the
//! rate. The map is bounded: past [`MAX_BUCKETS`] it forgets the buckets that have
//! refilled (they hold no state a fresh bucket would not), so many distinct keys
//! cannot grow it forever.

use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;

use super::{Limit, Refused};

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

const MAX_BUCKETS: usize = 50_000;

/// Buckets by name, each refilled at the limit it is taken with.
#[derive(Default)]
pub struct TokenBuckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one token from every bucket in `buckets`, or from none: the first
    /// that is empty is refused with the seconds until it has a token again.
    pub fn take_all(&self, buckets: &[(&str, Limit)]) -> Result<(), Refused> {
        self.take_all_at(buckets, Instant::now())
    }

    fn take_all_at(&self, buckets: &[(&str, Limit)], now: Instant) -> Result<(), Refused> {
        let mut map = self.buckets.lock();
        for (index, (name, limit)) in buckets.iter().enumerate() {
            refill(&mut map, name, *limit, now)
                .has_token(*limit)
                .map_err(|retry_after_s| Refused {
                    bucket: index,
                    retry_after_s,
                })?;
        }
        for (name, _) in buckets {
            if let Some(bucket) = map.get_mut(*name) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Whether `name` has a token, without taking it (`Err(seconds)` until it has).
    pub fn peek(&self, name: &str, limit: Limit) -> Result<(), u64> {
        refill(&mut self.buckets.lock(), name, limit, Instant::now()).has_token(limit)
    }

    /// Takes a token from `name` if it has one.
    pub fn take(&self, name: &str, limit: Limit) {
        let mut map = self.buckets.lock();
        let bucket = refill(&mut map, name, limit, Instant::now());
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
        }
    }
}

fn refill<'m>(
    map: &'m mut HashMap<String, Bucket>,
    name: &str,
    limit: Limit,
    now: Instant,
) -> &'m mut Bucket {
    if map.len() >= MAX_BUCKETS && !map.contains_key(name) {
        // A bucket as full as this limit's burst holds nothing a fresh one would not.
        map.retain(|_, b| b.tokens < limit.burst());
    }
    if !map.contains_key(name) {
        map.insert(
            name.to_owned(),
            Bucket {
                tokens: limit.burst(),
                refilled: now,
            },
        );
    }
    let bucket = map.get_mut(name).expect("inserted above");
    let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * limit.per_second()).min(limit.burst());
    bucket.refilled = now;
    bucket
}

impl Bucket {
    fn has_token(&self, limit: Limit) -> Result<(), u64> {
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(limit.seconds_until_token(self.tokens))
        }
    }
}

/// One limit applied to many keys (failed logins per address, per email).
pub struct RateLimiter {
    limit: Limit,
    buckets: TokenBuckets,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            limit: Limit::new(per_second, burst),
            buckets: TokenBuckets::new(),
        }
    }

    /// Takes one token for `key`; `Err(seconds)` says how long until one is back.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.buckets
            .take_all(&[(key, self.limit)])
            .map_err(|r| r.retry_after_s)
    }

    /// Whether `key` has a token, without taking it. With [`RateLimiter::take`],
    /// this counts only some events (failed logins) while refusing every attempt
    /// once they ran out.
    pub fn peek(&self, key: &str) -> Result<(), u64> {
        self.buckets.peek(key, self.limit)
    }

    /// Takes a token for `key` if there is one.
    pub fn take(&self, key: &str) {
        self.buckets.take(key, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let buckets = TokenBuckets::new();
        let limit = Limit::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(buckets.take_all_at(&[("k", limit)], t0).is_ok());
        }
        assert_eq!(
            buckets.take_all_at(&[("k", limit)], t0),
            Err(Refused {
                bucket: 0,
                retry_after_s: 1
            })
        );
        assert!(
            buckets.take_all_at(&[("other", limit)], t0).is_ok(),
            "buckets are per name"
        );
        let t1 = t0 + Duration::from_millis(100);
        assert!(buckets.take_all_at(&[("k", limit)], t1).is_ok());
        assert!(buckets.take_all_at(&[("k", limit)], t1).is_err());
        // Never more than the burst, however long the key was idle.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(buckets.take_all_at(&[("k", limit)], later).is_ok());
        }
        assert!(buckets.take_all_at(&[("k", limit)], later).is_err());
    }

    #[test]
    fn all_or_nothing() {
        let buckets = TokenBuckets::new();
        let (roomy, tight) = (Limit::new(1.0, 10.0), Limit::new(1.0, 1.0));
        let t0 = Instant::now();
        assert!(buckets
            .take_all_at(&[("a", roomy), ("b", tight)], t0)
            .is_ok());
        let refused = buckets
            .take_all_at(&[("a", roomy), ("b", tight)], t0)
            .unwrap_err();
        assert_eq!(refused.bucket, 1);
        // "a" lost only the one token the successful call took.
        for _ in 0..9 {
            assert!(buckets.take_all_at(&[("a", roomy)], t0).is_ok());
        }
        assert!(buckets.take_all_at(&[("a", roomy)], t0).is_err());
    }

    #[test]
    fn peek_does_not_take() {
        let limiter = RateLimiter::new(1.0 / 60.0, 2.0);
        assert!(limiter.peek("a").is_ok());
        assert!(limiter.peek("a").is_ok());
        limiter.take("a");
        limiter.take("a");
        assert!(limiter.peek("a").unwrap_err() >= 59);
    }
}
