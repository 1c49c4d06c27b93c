//! The in-process cache: exact for one process (an invalidation is a map update),
//! so it is the embedded default. With several replicas each has its own, and a
//! write through one is seen by the others only when their entries expire — use
//! Redis there.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{Cache, Limit, Lookup, Refused, Stamp, TokenBuckets, MAX_TTL, STAMP_LIFETIME};
use crate::StoreResult;

pub struct MemoryCache {
    capacity: usize,
    state: Mutex<State>,
    buckets: TokenBuckets,
}

#[derive(Default)]
struct State {
    /// Ticks once per invalidation; a lookup's stamp is its value then.
    clock: u64,
    /// Stamps older than this are refused: the record of which scopes were
    /// invalidated when was dropped (capacity) at this tick.
    floor: u64,
    scopes: HashMap<String, Scope>,
    values: usize,
}

#[derive(Default)]
struct Scope {
    invalidated_at: u64,
    values: HashMap<String, (Bytes, Instant)>,
}

impl MemoryCache {
    /// A cache of at most `capacity` values (and as many invalidated scopes).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            buckets: TokenBuckets::new(),
        }
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl State {
    fn stamp(&self, now: Instant) -> Stamp {
        Stamp {
            epoch: 0,
            generation: self.clock,
            taken: now,
        }
    }

    /// Crude but bounded: forget everything, and refuse every stamp handed out
    /// so far, since the invalidations they would be checked against are gone.
    fn forget_all(&mut self) {
        self.clock += 1;
        self.floor = self.clock;
        self.scopes.clear();
        self.values = 0;
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, scope: &str, key: &str) -> Lookup {
        let now = Instant::now();
        let mut state = self.state.lock();
        let stamp = Some(state.stamp(now));
        let Some(entries) = state.scopes.get_mut(scope) else {
            return Lookup { value: None, stamp };
        };
        let value = match entries.values.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                entries.values.remove(key);
                state.values -= 1;
                None
            }
            None => None,
        };
        Lookup { value, stamp }
    }

    async fn put(&self, scope: &str, key: &str, stamp: Stamp, value: Bytes, ttl: Duration) {
        let now = Instant::now();
        if ttl.is_zero() || now.duration_since(stamp.taken) > STAMP_LIFETIME {
            return;
        }
        let mut state = self.state.lock();
        if stamp.generation < state.floor {
            return;
        }
        if state.values >= self.capacity || state.scopes.len() >= self.capacity {
            state.forget_all();
            return;
        }
        let entries = state.scopes.entry(scope.to_owned()).or_default();
        if entries.invalidated_at > stamp.generation {
            return;
        }
        let expires = now + ttl.min(MAX_TTL);
        if entries
            .values
            .insert(key.to_owned(), (value, expires))
            .is_none()
        {
            state.values += 1;
        }
    }

    async fn invalidate(&self, scope: &str) {
        let mut state = self.state.lock();
        state.clock += 1;
        let clock = state.clock;
        if let Some(entries) = state.scopes.get_mut(scope) {
            let dropped = entries.values.len();
            entries.values.clear();
            entries.invalidated_at = clock;
            state.values -= dropped;
            return;
        }
        if state.scopes.len() >= self.capacity {
            state.forget_all();
            return;
        }
        state.scopes.insert(
            scope.to_owned(),
            Scope {
                invalidated_at: clock,
                values: HashMap::new(),
            },
        );
    }

    async fn take(&self, buckets: &[(&str, Limit)]) -> Result<(), Refused> {
        self.buckets.take_all(buckets)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
