//! Per-tenant budget of bytes a tenant's publishes may copy into queues per second.
//!
//! Every adapter writes each copy of a message, so one tenant publishing big
//! messages to many subscriptions can keep the shared write path busy for everyone
//! (the per-publish quota bounds one call, not a stream of them). The budget is a
//! token bucket in bytes, charged after routing: a tenant may go into debt by one
//! publish, and while in debt its publishes are refused with a retry time. Per
//! process, like the HTTP rate limits.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use crate::{StoreError, StoreResult};

pub struct FanoutBudget {
    bytes_per_second: f64,
    /// The bucket's size: how far ahead of the rate a tenant may write at once.
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl FanoutBudget {
    pub fn new(bytes_per_second: u64, burst: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1) as f64,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses a tenant in debt; otherwise charges `bytes` (which may put it in debt).
    pub fn charge(&self, tenant: &str, bytes: u64) -> StoreResult<()> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget full buckets: they hold nothing a fresh one would not.
            let (rate, burst) = (self.bytes_per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets
            .entry(tenant.to_owned())
            .or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.bytes_per_second)
            .min(self.burst);
        *at = now;
        if *tokens < 0.0 {
            return Err(StoreError::RateLimited {
                what: "fanout_bytes_per_second_per_tenant",
                retry_after_s: (-*tokens / self.bytes_per_second).ceil().max(1.0) as u64,
            });
        }
        *tokens -= bytes as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_in_debt_waits_and_others_do_not() {
        let budget = FanoutBudget::new(1000, 1000);
        budget.charge("a", 1500).unwrap(); // into debt by one publish
        assert!(matches!(
            budget.charge("a", 1),
            Err(StoreError::RateLimited {
                retry_after_s: 1,
                ..
            })
        ));
        budget.charge("b", 900).unwrap();
        budget.charge("b", 90).unwrap();
    }
}
