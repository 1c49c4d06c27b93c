//! Token-bucket rate limiting per key (SPEC §1: default 1,000 requests/s, burst
//! 2,000). In memory and per replica: N replicas allow up to N times the rate.

use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

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

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock();
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
            bucket.tokens -= 1.0;
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
}
