//! The Redis cache, shared by every replica (`cache = "redis://host:port/db"`,
//! optional `?prefix=` for the key namespace, default `keel:`).
//!
//! Layout, all under the prefix:
//! - `clock`: a counter every invalidation takes its generation from, so a
//!   generation is never reused, even after its key expired;
//! - `gen:<scope>`: the scope's generation (absent = 0), kept a day;
//! - `epoch`: bumped when a replica could not deliver an invalidation;
//! - `val:<epoch>:<generation>:<scope>␟<key>`: a cached value, with its TTL.
//!
//! A lookup reads epoch, generation and value in one script, so the value it
//! returns was cached under the scope's current generation; a value is put under
//! the epoch and generation its lookup saw, so a put that raced an invalidation
//! lands where no lookup will look. An invalidation takes a fresh generation
//! before the write it follows is acknowledged. A value put under generation 0
//! (never invalidated) lives at most [`MAX_TTL`] + [`STAMP_LIFETIME`], far less
//! than the day a generation is kept, so a generation that expires back to 0
//! cannot revive it.
//!
//! When Redis does not answer within [`OP_TIMEOUT`], the adapter stops using it for
//! [`DOWN_FOR`]: lookups answer "not cached" (reads go to the store) and rate
//! limits fall back to this process's buckets. An invalidation that could not be
//! delivered leaves the adapter *poisoned*: before it serves anything from Redis
//! again it bumps the epoch, which makes everything cached before unreachable.
//! What no adapter can prevent: while one replica cannot reach Redis and another
//! can, the other may serve a value the first replica's writes have replaced, for
//! at most the value's TTL.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Script,
};

use super::{Cache, Limit, Lookup, Refused, Stamp, TokenBuckets, MAX_TTL, STAMP_LIFETIME};
use crate::{StoreError, StoreResult};

/// Longest any Redis call may take before the cache is bypassed.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is left alone after it failed to answer.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// How long a scope's generation is remembered after its last invalidation.
const GENERATION_TTL_S: u64 = 24 * 3600;

const LOOKUP: &str = r"
local p, scope = ARGV[1], ARGV[2]
local epoch = redis.call('GET', p .. 'epoch') or '0'
local generation = redis.call('GET', p .. 'gen:' .. scope) or '0'
local value = redis.call('GET', p .. 'val:' .. epoch .. ':' .. generation .. ':' .. scope .. '\31' .. ARGV[3])
return {epoch, generation, value}
";

const INVALIDATE: &str = r"
local generation = redis.call('INCR', ARGV[1] .. 'clock')
redis.call('SET', ARGV[1] .. 'gen:' .. ARGV[2], generation, 'EX', ARGV[3])
return generation
";

/// Token buckets on Redis's clock: takes one token from every bucket in KEYS
/// (ARGV: per second and burst for each) or from none; answers {0, 0} or the
/// 1-based index of the empty bucket and the seconds until it has a token.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local held = redis.call('HMGET', key, 'tokens', 'at')
  local have = tonumber(held[1]) or burst
  local at = tonumber(held[2]) or now
  have = math.min(burst, have + math.max(0, now - at) * rate)
  if have < 1 then
    return {i, math.max(1, math.ceil((1 - have) / rate))}
  end
  tokens[i] = have
end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'tokens', tostring(tokens[i] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return {0, 0}
";

pub struct RedisCache {
    client: redis::Client,
    prefix: String,
    connection: Mutex<Option<ConnectionManager>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    down_until: Mutex<Option<Instant>>,
    poisoned: AtomicBool,
    fallback: TokenBuckets,
    lookup: Script,
    invalidate: Script,
    take: Script,
}

impl RedisCache {
    /// Parses `url` and tries to connect; an unreachable Redis is not an error
    /// (the cache is bypassed until it answers), a malformed URL is.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let (url, prefix) = split_prefix(url)?;
        let client = redis::Client::open(url.as_str()).map_err(|e| StoreError::InvalidInput {
            field: "cache",
            why: format!("not a Redis URL: {e}"),
        })?;
        let cache = Self {
            client,
            prefix,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            down_until: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            fallback: TokenBuckets::new(),
            lookup: Script::new(LOOKUP),
            invalidate: Script::new(INVALIDATE),
            take: Script::new(TAKE),
        };
        if cache.connection().await.is_none() {
            tracing::warn!("Redis is unreachable; the cache is bypassed until it answers");
        }
        Ok(cache)
    }

    /// The key namespace (tests give each cache its own).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn is_down(&self) -> bool {
        let mut down = self.down_until.lock();
        match *down {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *down = None;
                false
            }
            None => false,
        }
    }

    fn mark_down(&self, why: &str) {
        let mut down = self.down_until.lock();
        if down.is_none() {
            tracing::warn!(error = why, "Redis unavailable; bypassing the cache");
        }
        *down = Some(Instant::now() + DOWN_FOR);
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if self.is_down() {
            return None;
        }
        if let Some(connection) = self.connection.lock().clone() {
            return Some(connection);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.connection.lock().clone() {
            return Some(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT)
            .set_number_of_retries(1);
        let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
        match tokio::time::timeout(OP_TIMEOUT * 2, connecting).await {
            Ok(Ok(connection)) => {
                *self.connection.lock() = Some(connection.clone());
                Some(connection)
            }
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                None
            }
            Err(_) => {
                self.mark_down("connection timed out");
                None
            }
        }
    }

    /// Runs one Redis call within [`OP_TIMEOUT`]; `None` (and Redis left alone
    /// for a while) when it fails.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(OP_TIMEOUT, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                None
            }
            Err(_) => {
                self.mark_down("timed out");
                None
            }
        }
    }

    /// A connection that may serve cached values: reachable, and not poisoned by
    /// an invalidation it could not deliver (bumping the epoch cures that).
    async fn ready(&self) -> Option<ConnectionManager> {
        let mut connection = self.connection().await?;
        if self.poisoned.load(Ordering::SeqCst) {
            let mut bump = redis::cmd("INCR");
            bump.arg(format!("{}epoch", self.prefix));
            self.call(bump.query_async::<u64>(&mut connection)).await?;
            self.poisoned.store(false, Ordering::SeqCst);
            tracing::info!("Redis is back; cached values from before the outage dropped");
        }
        Some(connection)
    }

    fn value_key(&self, scope: &str, key: &str, stamp: &Stamp) -> String {
        format!(
            "{}val:{}:{}:{scope}\u{1f}{key}",
            self.prefix, stamp.epoch, stamp.generation
        )
    }
}

/// Takes Keel's `prefix` query parameter out of a Redis URL.
fn split_prefix(raw: &str) -> StoreResult<(String, String)> {
    let invalid = |why: String| StoreError::InvalidInput {
        field: "cache",
        why,
    };
    let mut url = url::Url::parse(raw).map_err(|e| invalid(format!("not a URL: {e}")))?;
    let mut prefix = "keel:".to_owned();
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(name, value)| {
            if name == "prefix" {
                prefix = value.into_owned();
                None
            } else {
                Some((name.into_owned(), value.into_owned()))
            }
        })
        .collect();
    if others.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(others);
    }
    Ok((url.to_string(), prefix))
}

#[async_trait]
impl Cache for RedisCache {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, scope: &str, key: &str) -> Lookup {
        let Some(mut connection) = self.ready().await else {
            return Lookup::bypass();
        };
        let taken = Instant::now();
        let mut invocation = self.lookup.prepare_invoke();
        invocation.arg(&self.prefix).arg(scope).arg(key);
        let found = self
            .call(invocation.invoke_async::<(u64, u64, Option<Vec<u8>>)>(&mut connection))
            .await;
        match found {
            Some((epoch, generation, value)) => Lookup {
                value: value.map(Bytes::from),
                stamp: Some(Stamp {
                    epoch,
                    generation,
                    taken,
                }),
            },
            None => Lookup::bypass(),
        }
    }

    async fn put(&self, scope: &str, key: &str, stamp: Stamp, value: Bytes, ttl: Duration) {
        if ttl.is_zero() || stamp.taken.elapsed() > STAMP_LIFETIME {
            return;
        }
        let Some(mut connection) = self.ready().await else {
            return;
        };
        let ttl_ms = ttl.min(MAX_TTL).as_millis().max(1) as u64;
        let mut set = redis::cmd("SET");
        set.arg(self.value_key(scope, key, &stamp))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl_ms);
        self.call(set.query_async::<()>(&mut connection)).await;
    }

    async fn invalidate(&self, scope: &str) {
        // `connection`, not `ready`: an invalidation is delivered even while the
        // adapter is poisoned (the epoch bump comes on the next lookup).
        let delivered = match self.connection().await {
            Some(mut connection) => {
                let mut invocation = self.invalidate.prepare_invoke();
                invocation
                    .arg(&self.prefix)
                    .arg(scope)
                    .arg(GENERATION_TTL_S);
                self.call(invocation.invoke_async::<u64>(&mut connection))
                    .await
                    .is_some()
            }
            None => false,
        };
        if !delivered {
            self.poisoned.store(true, Ordering::SeqCst);
        }
    }

    async fn take(&self, buckets: &[(&str, Limit)]) -> Result<(), Refused> {
        let Some(mut connection) = self.connection().await else {
            return self.fallback.take_all(buckets);
        };
        let mut invocation = self.take.prepare_invoke();
        for (name, limit) in buckets {
            invocation
                .key(format!("{}rate:{name}", self.prefix))
                .arg(limit.per_second())
                .arg(limit.burst());
        }
        match self
            .call(invocation.invoke_async::<(usize, u64)>(&mut connection))
            .await
        {
            Some((0, _)) => Ok(()),
            Some((index, retry_after_s)) => Err(Refused {
                bucket: index - 1,
                retry_after_s,
            }),
            None => self.fallback.take_all(buckets),
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        let unavailable = || StoreError::Unavailable("Redis does not answer".into());
        let mut connection = self.connection().await.ok_or_else(unavailable)?;
        let ping = redis::cmd("PING");
        self.call(ping.query_async::<String>(&mut connection))
            .await
            .map(drop)
            .ok_or_else(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_taken_out_of_the_url() {
        let (url, prefix) = split_prefix("redis://127.0.0.1:6379/2?prefix=t1:").unwrap();
        assert_eq!(url, "redis://127.0.0.1:6379/2");
        assert_eq!(prefix, "t1:");
        let (url, prefix) = split_prefix("redis://h:1/?protocol=resp3").unwrap();
        assert_eq!(url, "redis://h:1/?protocol=resp3");
        assert_eq!(prefix, "keel:");
        assert!(split_prefix("not a url").is_err());
    }
}
