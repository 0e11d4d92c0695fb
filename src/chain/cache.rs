//! Small bounded caches for chain reads (lessons.md: never cache a value built from a failed read; not-found
//! entries expire quickly; every cache is bounded).
//!
//! [`TtlCache`] forgets an entry at its expiry. [`RefreshCache`] is for values read on the relay hot path that
//! go stale often (applications: every new block may change delegations): a stale entry is refreshed by exactly
//! one caller while every other caller keeps the previous value, so a new block or a TTL does not send every
//! relay in flight to the chain at once (a thundering herd that stalled the relayer for milliseconds).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
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

/// What [`RefreshCache::lookup`] found.
#[derive(Debug)]
pub enum Lookup<V> {
    /// A fresh value.
    Fresh(V),
    /// A stale value another caller is refreshing: use it.
    Stale(V),
    /// A stale value this caller must refresh ([`RefreshCache::insert`] or [`RefreshGuard`] drop ends the
    /// refresh); the value may be used if the refresh fails.
    Refresh(V, RefreshGuard),
    /// Nothing usable: read it.
    Miss,
}

struct Slot<V> {
    value: V,
    fresh_until: Instant,
    usable_until: Instant,
    refreshing: bool,
}

type Slots<K, V> = Arc<Mutex<HashMap<K, Slot<V>>>>;

/// A bounded cache whose entries are fresh for a TTL and then refreshed by one caller at a time while the others
/// keep using the stale value, up to a hard limit ([`RefreshCache::new`]'s `stale_for`).
pub struct RefreshCache<K, V> {
    slots: Slots<K, V>,
    capacity: usize,
    stale_for: Duration,
}

impl<K, V> std::fmt::Debug for RefreshCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Held by the caller refreshing an entry; dropping it without [`RefreshCache::insert`] (a failed or cancelled
/// read) lets the next caller try.
pub struct RefreshGuard {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for RefreshGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshGuard")
    }
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

fn lock<K, V>(slots: &Mutex<HashMap<K, Slot<V>>>) -> MutexGuard<'_, HashMap<K, Slot<V>>> {
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K, V> RefreshCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    /// At most `capacity` entries; an entry past its TTL stays usable (stale) for `stale_for` more.
    pub fn new(capacity: usize, stale_for: Duration) -> Self {
        Self {
            slots: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(1),
            stale_for,
        }
    }

    /// The entry of `key` and what to do with it.
    pub fn lookup(&self, key: &K) -> Lookup<V> {
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        let Some(slot) = slots.get_mut(key) else {
            return Lookup::Miss;
        };
        if now < slot.fresh_until {
            return Lookup::Fresh(slot.value.clone());
        }
        if now >= slot.usable_until {
            slots.remove(key);
            return Lookup::Miss;
        }
        if slot.refreshing {
            return Lookup::Stale(slot.value.clone());
        }
        slot.refreshing = true;
        let (weak, key) = (Arc::downgrade(&self.slots), key.clone());
        let guard = RefreshGuard {
            release: Some(Box::new(move || {
                if let Some(slots) = weak.upgrade()
                    && let Some(slot) = lock(&slots).get_mut(&key)
                {
                    slot.refreshing = false;
                }
            })),
        };
        Lookup::Refresh(slot.value.clone(), guard)
    }

    /// Stores `value`, fresh for `ttl`.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        if slots.len() >= self.capacity && !slots.contains_key(&key) {
            slots.retain(|_, s| s.usable_until > now);
            if slots.len() >= self.capacity {
                slots.clear();
            }
        }
        slots.insert(
            key,
            Slot {
                value,
                fresh_until: now + ttl,
                usable_until: now + ttl + self.stale_for,
                refreshing: false,
            },
        );
    }

    /// Makes every entry stale: each is refreshed at its next lookup and stays usable for at most `stale_for`.
    pub fn mark_stale(&self) {
        let now = Instant::now();
        for slot in lock(&self.slots).values_mut() {
            slot.fresh_until = slot.fresh_until.min(now);
            slot.usable_until = slot.usable_until.min(now + self.stale_for);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
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
    fn one_caller_refreshes_a_stale_entry_the_others_keep_the_old_value() {
        let cache = RefreshCache::new(8, Duration::from_secs(60));
        assert!(matches!(cache.lookup(&1), Lookup::Miss));
        cache.insert(1, "old", Duration::from_secs(60));
        assert!(matches!(cache.lookup(&1), Lookup::Fresh("old")));
        cache.mark_stale();
        let Lookup::Refresh("old", guard) = cache.lookup(&1) else {
            panic!("the first caller after the block refreshes");
        };
        assert!(
            matches!(cache.lookup(&1), Lookup::Stale("old")),
            "others keep the old value"
        );
        assert!(matches!(cache.lookup(&1), Lookup::Stale("old")));
        cache.insert(1, "new", Duration::from_secs(60));
        drop(guard);
        assert!(matches!(cache.lookup(&1), Lookup::Fresh("new")));
    }

    #[test]
    fn a_failed_refresh_lets_the_next_caller_try_and_stale_values_end() {
        let cache = RefreshCache::new(8, Duration::ZERO);
        cache.insert(1, "a", Duration::from_secs(60));
        cache.mark_stale();
        // stale_for = 0: a stale entry is not usable at all.
        assert!(matches!(cache.lookup(&1), Lookup::Miss));
        let cache = RefreshCache::new(8, Duration::from_secs(60));
        cache.insert(1, "a", Duration::ZERO);
        let Lookup::Refresh(_, guard) = cache.lookup(&1) else {
            panic!("expired TTL → refresh");
        };
        drop(guard); // the read failed or was cancelled
        assert!(
            matches!(cache.lookup(&1), Lookup::Refresh("a", _)),
            "the next caller tries again"
        );
    }

    #[test]
    fn refresh_cache_is_bounded() {
        let cache = RefreshCache::new(2, Duration::from_secs(1));
        for k in 0..10 {
            cache.insert(k, k, Duration::from_secs(60));
            assert!(cache.len() <= 2);
        }
        assert!(matches!(cache.lookup(&9), Lookup::Fresh(9)));
    }

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
