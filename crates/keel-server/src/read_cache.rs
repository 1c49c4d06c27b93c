//! A small in-process read cache with a time to live (SPEC §5: reads are cached in
//! process by default). A write through this process invalidates its key at once;
//! writes through other replicas are seen once the entry expires, so the TTL is
//! the bound on how stale a read served by another replica can be.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

pub struct ReadCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock();
        let (value, stored) = entries.get(key)?;
        (stored.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity {
            // Crude but bounded: drop what has expired, and everything if that is
            // not enough. A full cache only costs a round of misses.
            let ttl = self.ttl;
            entries.retain(|_, (_, stored)| stored.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_expire_and_invalidate() {
        let cache = ReadCache::new(Duration::from_millis(50), 10);
        cache.insert("a".to_string(), 1);
        assert_eq!(cache.get("a"), Some(1));
        cache.invalidate("a");
        assert_eq!(cache.get("a"), None);
        cache.insert("b".to_string(), 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("b"), None);
        let off = ReadCache::new(Duration::ZERO, 10);
        off.insert("c".to_string(), 3);
        assert_eq!(off.get("c"), None);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = ReadCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.insert(i, i);
        }
        assert!(cache.entries.lock().len() <= 3);
        assert_eq!(cache.get(&9), Some(9));
    }
}
