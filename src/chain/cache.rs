//! Small bounded caches for chain reads (lessons.md: never cache a value built from a failed read; not-found
//! entries expire quickly; every cache is bounded).
//!
//! [`TtlCache`] forgets an entry at its expiry. [`RefreshCache`] is for values read on the relay hot path that
//! go stale often (applications: every new block may change delegations): a stale entry is refreshed by exactly
//! one caller while every other caller keeps the previous value, so a new block or a TTL does not send every
//! relay in flight to the chain at once (a thundering herd that stalled the relayer for milliseconds).
//!
//! Both hold what is live, not what was ever read (`Housekeeping` below): expired entries are swept once the map has
//! doubled since the last sweep, so a long-running relayer keeps the sessions and applications of the last
//! minutes, not every one up to the capacity (in a long run of thousands of sessions, these caches were most of
//! the heap's growth). The capacity is for overload: at it the oldest half is dropped, never all at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// No sweep below this many entries (sweeping a tiny map on every insert would be pointless work).
const MIN_SWEEP: usize = 64;

/// The amortized bookkeeping both caches share. Before an insert of a new key: once the map holds `sweep_at`
/// entries, expired ones are dropped and the next sweep is set at twice what is left (so a sweep costs O(1)
/// per insert, and the map is at most about twice its live entries); if it is still at `capacity`, the older
/// half by insertion order goes, so the rest stays warm instead of every entry being read again at once.
#[derive(Debug)]
struct Housekeeping {
    capacity: usize,
    sweep_at: usize,
    /// Insertion counter: the age of an entry (deterministic, unlike clock readings that can be equal).
    tick: u64,
}

impl Housekeeping {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            sweep_at: MIN_SWEEP.min(capacity),
            tick: 0,
        }
    }

    /// Makes room for `key` if it is new; returns the insertion tick of its entry.
    fn admit<K: Eq + Hash, S>(
        &mut self,
        map: &mut HashMap<K, S>,
        key: &K,
        live: impl Fn(&S) -> bool,
        inserted: impl Fn(&S) -> u64,
    ) -> u64 {
        if map.len() >= self.sweep_at && !map.contains_key(key) {
            map.retain(|_, s| live(s));
            if map.len() >= self.capacity {
                // Ticks are unique: this drops exactly the `older` oldest entries.
                let mut ticks: Vec<u64> = map.values().map(&inserted).collect();
                let older = (ticks.len() / 2).max(1);
                let (_, cut, _) = ticks.select_nth_unstable(older - 1);
                let cut = *cut;
                map.retain(|_, s| inserted(s) > cut);
            }
            self.sweep_at = map
                .len()
                .saturating_mul(2)
                .clamp(MIN_SWEEP.min(self.capacity), self.capacity);
        }
        self.tick += 1;
        self.tick
    }
}

struct Entry<V> {
    value: V,
    expiry: Option<Instant>,
    inserted: u64,
}

struct TtlEntries<K, V> {
    map: HashMap<K, Entry<V>>,
    housekeeping: Housekeeping,
}

/// A bounded map whose entries expire after a per-entry TTL (`None` = until evicted).
pub struct TtlCache<K, V> {
    entries: Mutex<TtlEntries<K, V>>,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache").finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache holding at most `capacity` entries (expired ones swept as the map doubles, the older half dropped
    /// when full).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(TtlEntries {
                map: HashMap::new(),
                housekeeping: Housekeeping::new(capacity),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TtlEntries<K, V>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live value of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.map.get(key) {
            Some(e) if e.expiry.is_none_or(|x| x > now) => Some(e.value.clone()),
            Some(_) => {
                entries.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `ttl` (`None` = until evicted).
    pub fn insert(&self, key: K, value: V, ttl: Option<Duration>) {
        let now = Instant::now();
        let mut entries = self.lock();
        let TtlEntries { map, housekeeping } = &mut *entries;
        let inserted = housekeeping.admit(map, &key, |e| e.expiry.is_none_or(|x| x > now), |e| e.inserted);
        map.insert(
            key,
            Entry {
                value,
                expiry: ttl.map(|t| now + t),
                inserted,
            },
        );
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().map.clear();
    }

    /// Number of entries (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.lock().map.len()
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
    inserted: u64,
}

type Slots<K, V> = Arc<Mutex<HashMap<K, Slot<V>>>>;

/// A bounded cache whose entries are fresh for a TTL and then refreshed by one caller at a time while the others
/// keep using the stale value, up to a hard limit ([`RefreshCache::new`]'s `stale_for`).
pub struct RefreshCache<K, V> {
    slots: Slots<K, V>,
    housekeeping: Mutex<Housekeeping>,
    stale_for: Duration,
}

impl<K, V> std::fmt::Debug for RefreshCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshCache")
            .field("stale_for", &self.stale_for)
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
            housekeeping: Mutex::new(Housekeeping::new(capacity)),
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
        // Lock order: slots, then housekeeping (only ever taken here).
        let mut housekeeping = self.housekeeping.lock().unwrap_or_else(|p| p.into_inner());
        let inserted = housekeeping.admit(&mut slots, &key, |s| s.usable_until > now, |s| s.inserted);
        slots.insert(
            key,
            Slot {
                value,
                fresh_until: now + ttl,
                usable_until: now + ttl + self.stale_for,
                refreshing: false,
                inserted,
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
    fn expired_entries_are_swept_long_before_the_capacity() {
        let cache = TtlCache::new(1 << 20);
        for k in 0..50 {
            cache.insert(k, k, None);
        }
        let mut most = 0;
        for k in 1_000..11_000 {
            cache.insert(k, k, Some(Duration::ZERO));
            most = most.max(cache.len());
        }
        // Swept whenever the map doubled since the last sweep: at most twice the live entries (at least 64).
        assert!(most <= 100, "held {most} entries for 50 live ones");
        for k in 0..50 {
            assert_eq!(cache.get(&k), Some(k), "live entry {k} kept");
        }
    }

    #[test]
    fn a_full_cache_drops_its_older_half_not_everything() {
        let cache = TtlCache::new(8);
        for k in 0..8 {
            cache.insert(k, k, None);
        }
        cache.insert(0, 0, None); // written again: the youngest now
        cache.insert(8, 8, None);
        assert_eq!(cache.len(), 5);
        for k in 1..5 {
            assert_eq!(cache.get(&k), None, "old entry {k} dropped");
        }
        for k in [0, 5, 6, 7, 8] {
            assert_eq!(cache.get(&k), Some(k), "young entry {k} kept");
        }
    }

    #[test]
    fn refresh_cache_sweeps_entries_past_their_usable_time() {
        let cache = RefreshCache::new(1 << 20, Duration::ZERO);
        cache.insert(u32::MAX, 0, Duration::from_secs(60));
        for k in 0..10_000 {
            cache.insert(k, k, Duration::ZERO);
            assert!(cache.len() <= 64, "unusable entries held: {}", cache.len());
        }
        assert!(matches!(cache.lookup(&u32::MAX), Lookup::Fresh(0)));
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
