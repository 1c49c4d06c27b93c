//! Token buckets: per key (SPEC §1: default 1,000 requests/s, burst 2,000), per
//! tenant, and per client address or email for failed logins. In memory and per
//! replica: N replicas allow up to N times the rate. The map of buckets is bounded:
//! past [`MAX_BUCKETS`] it forgets the buckets that have refilled (they hold no
//! state a fresh bucket would not), so many distinct keys cannot grow it forever.

use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

const MAX_BUCKETS: usize = 50_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `Err(seconds)` says how long until one is back.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    /// Whether `key` has a token, without taking it; `Err(seconds)` as for
    /// [`RateLimiter::check`]. With [`RateLimiter::take`], this counts only some
    /// events (failed logins) while refusing every attempt once they ran out.
    pub fn peek(&self, key: &str) -> Result<(), u64> {
        self.at(key, Instant::now(), false)
    }

    /// Takes a token for `key` if there is one.
    pub fn take(&self, key: &str) {
        let _ = self.at(key, Instant::now(), true);
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        self.at(key, now, true)
    }

    fn at(&self, key: &str, now: Instant, take: bool) -> Result<(), u64> {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.refilled).as_secs_f64() * per_second
                    < burst
            });
        }
        let bucket = match buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => buckets.entry(key.to_owned()).or_insert(Bucket {
                tokens: self.burst,
                refilled: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("k", t0).is_ok());
        }
        assert_eq!(limiter.check_at("k", t0), Err(1));
        assert!(limiter.check_at("other", t0).is_ok(), "buckets are per key");
        assert!(limiter
            .check_at("k", t0 + Duration::from_millis(100))
            .is_ok());
        assert!(limiter
            .check_at("k", t0 + Duration::from_millis(100))
            .is_err());
        // Never more than the burst, however long the key was idle.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limiter.check_at("k", later).is_ok());
        }
        assert!(limiter.check_at("k", later).is_err());
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
