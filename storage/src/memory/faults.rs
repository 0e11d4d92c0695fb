//! Deterministic fault injection for the memory backend.
//!
//! Every mutating call of the memory backend passes through [`Faults`] first ("a write"), counted from 1 in
//! call order. Tests can fail the Nth write with a chosen error, refuse all writes (e.g. `OutOfMemory`), stall
//! async writes until released, and simulate a crash that loses every stalled (not yet acknowledged) write.
//! Node-store writes (sync) count and fail like the others but are never stalled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::StorageError;

#[derive(Debug, Default)]
struct Inner {
    writes: u64,
    fail_at: BTreeMap<u64, StorageError>,
    refuse: Option<StorageError>,
    stalled: bool,
    waiting: usize,
    crashes: u64,
    max_relay_bytes: Option<usize>,
    /// [`Faults::limit_read_bytes`].
    max_read_bytes: Option<usize>,
    /// [`Faults::fail_session_lists`].
    fail_session_lists: std::collections::VecDeque<StorageError>,
    /// [`Faults::fail_log_supplier_lists`].
    fail_log_supplier_lists: std::collections::VecDeque<StorageError>,
    /// [`Faults::coalesce_appends`].
    coalesces_appends: bool,
    /// The next write sets to fail (each with its error), before their write is counted.
    fail_write_sets: std::collections::VecDeque<StorageError>,
    /// [`Faults::refuse_trie_writes`].
    refuse_tries: Option<StorageError>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    changed: watch::Sender<()>,
}

/// Handle to the fault plan of one memory backend (cheap to clone).
#[derive(Debug, Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                changed: watch::Sender::new(()),
            }),
        }
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a test panicked while holding it; the data is still consistent.
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.shared.changed.send_replace(());
    }

    /// Makes the `n`-th write from now (1 = the next one) fail with `err` (the write is not applied).
    pub fn fail_nth_write(&self, n: u64, err: StorageError) {
        let mut g = self.lock();
        let at = g.writes.saturating_add(n.max(1));
        g.fail_at.insert(at, err);
    }

    /// Makes the next `n` [`crate::WriteSets::write`] calls fail with `err` (nothing of them is applied), whatever
    /// other writes come between them; the failed calls are not counted as writes.
    pub fn fail_write_sets(&self, n: u64, err: StorageError) {
        let mut g = self.lock();
        for _ in 0..n {
            g.fail_write_sets.push_back(err.clone());
        }
    }

    /// Makes the memory relay log claim it group-commits concurrent appends itself
    /// ([`crate::RelayLog::coalesces_appends`], as the redb log does), so callers append to it directly instead of
    /// batching in front of it: lets tests stall or fail the direct append path. Off by default.
    pub fn coalesce_appends(&self, on: bool) {
        self.lock().coalesces_appends = on;
    }

    /// Whether [`Faults::coalesce_appends`] is on.
    pub fn coalesces_appends(&self) -> bool {
        self.lock().coalesces_appends
    }

    /// Limits the relays the relay log holds to `max` payload bytes (like the raft backend's entry limit): a
    /// larger relay does not [`crate::RelayLog::relay_fits`] and an append containing it is refused with
    /// [`StorageError::TooLarge`]. `None` lifts the limit.
    pub fn limit_relay_bytes(&self, max: Option<usize>) {
        self.lock().max_relay_bytes = max;
    }

    /// Whether a relay payload of `bytes` is within [`Faults::limit_relay_bytes`].
    pub fn relay_fits(&self, bytes: usize) -> bool {
        self.lock().max_relay_bytes.is_none_or(|max| bytes <= max)
    }

    /// Makes a relay log read (`read`, `read_pending`) whose entries' payloads add up to more than `max` bytes
    /// fail with [`StorageError::Unavailable`] after it delivered them, as a Redis `XREADGROUP` whose reply takes
    /// longer than the client's response timeout does (the server ran it: the entries are pending). `None` lifts
    /// the limit.
    pub fn limit_read_bytes(&self, max: Option<usize>) {
        self.lock().max_read_bytes = max;
    }

    /// Makes the next `n` session-record listings (`SessionStore::list`, what a new leader restores from) fail with
    /// `err`, as a store in trouble right after a failed lease renewal does.
    pub fn fail_session_lists(&self, n: u64, err: StorageError) {
        let mut g = self.lock();
        for _ in 0..n {
            g.fail_session_lists.push_back(err.clone());
        }
    }

    /// Makes the next `n` listings of the relay log's suppliers (`RelayLog::suppliers`) fail with `err`.
    pub fn fail_log_supplier_lists(&self, n: u64, err: StorageError) {
        let mut g = self.lock();
        for _ in 0..n {
            g.fail_log_supplier_lists.push_back(err.clone());
        }
    }

    /// The failure [`Faults::fail_log_supplier_lists`] planned for this listing, if any.
    pub(crate) fn check_log_supplier_list(&self) -> Result<(), StorageError> {
        self.lock().fail_log_supplier_lists.pop_front().map_or(Ok(()), Err)
    }

    /// The failure [`Faults::fail_session_lists`] planned for this listing, if any.
    pub(crate) fn check_session_list(&self) -> Result<(), StorageError> {
        self.lock().fail_session_lists.pop_front().map_or(Ok(()), Err)
    }

    /// Fails a read of `bytes` payload bytes over [`Faults::limit_read_bytes`].
    pub(crate) fn check_read(&self, bytes: usize) -> Result<(), StorageError> {
        match self.lock().max_read_bytes {
            Some(max) if bytes > max => Err(StorageError::Unavailable(format!(
                "test: a read of {bytes} payload bytes took longer than the response timeout (limit {max})"
            ))),
            _ => Ok(()),
        }
    }

    /// Makes every write fail with `err` until called with `None` (e.g. a store refusing writes when full).
    pub fn refuse_writes(&self, err: Option<StorageError>) {
        self.lock().refuse = err;
        self.bump();
    }

    /// Makes every trie write (a node-store batch, or a write set carrying trie batches) fail with `err` until
    /// called with `None`, while every other write goes on: Redis at `maxmemory`, which refuses trie writes but
    /// still takes session records and acks (their `allow-oom` scripts, Redis ≥ 7). A refused write is not
    /// counted.
    pub fn refuse_trie_writes(&self, err: Option<StorageError>) {
        self.lock().refuse_tries = err;
    }

    /// The failure [`Faults::refuse_trie_writes`] sets for a trie write, if any.
    pub(crate) fn check_trie_write(&self) -> Result<(), StorageError> {
        self.lock().refuse_tries.clone().map_or(Ok(()), Err)
    }

    /// Holds every following async write (before it is applied) until [`Faults::release_writes`] or
    /// [`Faults::crash`].
    pub fn stall_writes(&self) {
        self.lock().stalled = true;
        self.bump();
    }

    /// Lets stalled writes proceed (in no guaranteed order) and stops stalling.
    pub fn release_writes(&self) {
        self.lock().stalled = false;
        self.bump();
    }

    /// Simulated crash: every stalled write is lost (its caller gets `Unavailable`, nothing is applied) and
    /// stalling stops. Writes already acknowledged stay.
    pub fn crash(&self) {
        let mut g = self.lock();
        g.crashes += 1;
        g.stalled = false;
        drop(g);
        self.bump();
    }

    /// Writes attempted so far (failed ones included).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Writes currently held by a stall.
    pub fn stalled_writers(&self) -> usize {
        self.lock().waiting
    }

    /// Waits until at least `n` writes are held by a stall (for tests to synchronise without sleeping).
    pub async fn wait_stalled(&self, n: usize) {
        let mut rx = self.shared.changed.subscribe();
        while self.stalled_writers() < n {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn count(&self, g: &mut Inner) -> Result<(), StorageError> {
        g.writes += 1;
        let n = g.writes;
        if let Some(err) = g.fail_at.remove(&n) {
            return Err(err);
        }
        if let Some(err) = &g.refuse {
            return Err(err.clone());
        }
        Ok(())
    }

    /// Gate for a write set (`tries`: it carries trie batches): fails when [`Faults::fail_write_sets`] says so,
    /// then when [`Faults::refuse_trie_writes`] does, else as [`Faults::gate`].
    pub(crate) async fn gate_write_set(&self, tries: bool) -> Result<(), StorageError> {
        if let Some(err) = self.lock().fail_write_sets.pop_front() {
            return Err(err);
        }
        if tries {
            self.check_trie_write()?;
        }
        self.gate().await
    }

    /// Gate for a sync write: counts and may fail, never stalls.
    pub(crate) fn gate_sync(&self) -> Result<(), StorageError> {
        let mut g = self.lock();
        self.count(&mut g)
    }

    /// Gate for an async write: counts, may fail, and waits while stalled.
    pub(crate) async fn gate(&self) -> Result<(), StorageError> {
        let mut rx = self.shared.changed.subscribe();
        let crashes = {
            let mut g = self.lock();
            self.count(&mut g)?;
            if !g.stalled {
                return Ok(());
            }
            g.waiting += 1;
            g.crashes
        };
        self.bump();
        loop {
            let closed = rx.changed().await.is_err();
            let mut g = self.lock();
            if closed || g.crashes != crashes {
                g.waiting -= 1;
                drop(g);
                self.bump();
                return Err(StorageError::Unavailable("simulated crash lost this write".into()));
            }
            if !g.stalled {
                g.waiting -= 1;
                drop(g);
                self.bump();
                return Ok(());
            }
        }
    }
}
