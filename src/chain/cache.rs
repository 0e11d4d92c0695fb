//! A small bounded TTL cache for chain reads (lessons.md: never cache a value built from a failed read; not-found
//! entries expire quickly; every cache is bounded).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded map whose entries expire after a per-entry TTL (`None` = until evicted).
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Option<Instant>)>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache holding at most `capacity` entries (expired entries are dropped first, then all when full).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The live value of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((value, expiry)) if expiry.is_none_or(|e| e > now) => Some(value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `ttl` (`None` = no expiry).
    pub fn insert(&self, key: K, value: V, ttl: Option<Duration>) {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.retain(|_, (_, expiry)| expiry.is_none_or(|e| e > now));
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, ttl.map(|t| now + t)));
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Number of entries (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_bound() {
        let cache = TtlCache::new(2);
        cache.insert(1, "a", None);
        cache.insert(2, "b", Some(Duration::ZERO));
        assert_eq!(cache.get(&1), Some("a"));
        assert_eq!(cache.get(&2), None, "expired");
        cache.insert(3, "c", None);
        cache.insert(4, "d", None);
        assert!(cache.len() <= 2);
        assert_eq!(cache.get(&4), Some("d"));
    }
}
