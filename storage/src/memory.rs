//! The in-memory backend with deterministic fault injection, for callers' tests.
//!
//! Implements every trait of the contract on plain maps behind one mutex (never held across an `.await`).
//! Nothing is persisted. [`MemoryBackend::faults`] exposes the fault plan ([`Faults`]): fail the Nth write,
//! refuse writes, stall writes until released, simulate a crash losing the stalled (unacknowledged) writes.
//! Time for leases, TTLs and consumer idleness is `tokio::time::Instant`, so `tokio::time::pause` works.
//! Fenced views ([`crate::Fencing`]) check their fence against the lease table under the same mutex as the
//! write, so the check and the write are one atomic step.

mod faults;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

pub use faults::Faults;

use crate::contract::{
    Backlog, BoxNodeStore, EntryId, Fence, Fencing, IncrementOnce, KvStore, LeaderInfo, Leadership, LogEntry,
    MinedRelay, RelayLog, SessionRecord, SessionStore, TrieStore, WriteSet, WriteSetOutcome, WriteSets,
};
use crate::group::GroupState;
use crate::lease::{CampaignPlan, LeaseTable};
use crate::nodes::{NodeBatch, NodeStore};
use crate::{Storage, StorageError};

#[derive(Debug, Default)]
struct SupplierLog {
    next: u64,
    entries: BTreeMap<u64, MinedRelay>,
    group: GroupState,
}

type Namespace = (String, String);

#[derive(Debug, Default)]
struct State {
    logs: HashMap<String, SupplierLog>,
    nodes: HashMap<Namespace, HashMap<Vec<u8>, Vec<u8>>>,
    sessions: BTreeMap<Namespace, SessionRecord>,
    kv: HashMap<String, (Vec<u8>, Option<Instant>)>,
    leases: LeaseTable,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    faults: Faults,
}

/// The in-memory backend (cheap to clone; clones share state).
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
    /// The fence of this view's writes (`None` = unfenced).
    fence: Option<Arc<Fence>>,
}

impl MemoryBackend {
    /// An empty backend with no faults planned.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fault plan of this backend.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The bundle of every contract trait served by this backend.
    pub fn storage(&self) -> Storage {
        Storage::from_backend("memory", Arc::new(self.clone()), self.fence.as_deref().cloned())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Locks the state and checks this view's fence (if any) under the same lock.
    fn lock_fenced(&self, now: Instant) -> Result<MutexGuard<'_, State>, StorageError> {
        let st = self.lock();
        check(&st, self.fence.as_deref(), now)?;
        Ok(st)
    }
}

fn check(st: &State, fence: Option<&Fence>, now: Instant) -> Result<(), StorageError> {
    match fence {
        Some(f) => st.leases.check(f, now),
        None => Ok(()),
    }
}

impl Fencing for MemoryBackend {
    fn fenced(&self, fence: Fence) -> Storage {
        Self {
            shared: Arc::clone(&self.shared),
            fence: Some(Arc::new(fence)),
        }
        .storage()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // Poisoning only follows a panic in a test; the maps stay usable.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The payload bytes of `entries` (what [`Faults::limit_read_bytes`] limits).
fn payload_bytes(entries: &[LogEntry]) -> usize {
    entries.iter().map(|e| e.relay.payload.len()).sum()
}

fn entry(log: &SupplierLog, seq: u64, deliveries: u64) -> Option<LogEntry> {
    log.entries.get(&seq).map(|relay| LogEntry {
        id: EntryId::new(seq, 0),
        relay: relay.clone(),
        deliveries,
    })
}

#[async_trait]
impl RelayLog for MemoryBackend {
    fn relay_fits(&self, relay: &MinedRelay) -> bool {
        self.shared.faults.relay_fits(relay.payload.len())
    }

    fn coalesces_appends(&self) -> bool {
        self.shared.faults.coalesces_appends()
    }

    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError> {
        if let Some(big) = relays.iter().find(|r| !self.relay_fits(r)) {
            return Err(StorageError::TooLarge(format!(
                "relay of {} bytes is over the injected limit",
                big.payload.len()
            )));
        }
        self.shared.faults.gate().await?;
        let mut st = self.lock_fenced(Instant::now())?;
        let mut ids = Vec::with_capacity(relays.len());
        for relay in relays {
            let log = st.logs.entry(relay.supplier.clone()).or_default();
            log.next += 1;
            let seq = log.next;
            log.entries.insert(seq, relay);
            ids.push(EntryId::new(seq, 0));
        }
        Ok(ids)
    }

    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        let now = Instant::now();
        let mut st = self.lock_fenced(now)?;
        let Some(log) = st.logs.get_mut(supplier) else {
            return Ok(Vec::new());
        };
        let seqs: Vec<u64> = log
            .entries
            .range(log.group.cursor + 1..)
            .take(max)
            .map(|(s, _)| *s)
            .collect();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let n = log.group.deliver_new(seq, consumer, now);
            out.extend(entry(log, seq, n));
        }
        self.shared.faults.check_read(payload_bytes(&out))?;
        Ok(out)
    }

    async fn read_pending(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        let now = Instant::now();
        let mut st = self.lock_fenced(now)?;
        let Some(log) = st.logs.get_mut(supplier) else {
            return Ok(Vec::new());
        };
        let picked = log.group.redeliver_own(consumer, max, now);
        let out: Vec<LogEntry> = picked.into_iter().filter_map(|(seq, n)| entry(log, seq, n)).collect();
        self.shared.faults.check_read(payload_bytes(&out))?;
        Ok(out)
    }

    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let now = Instant::now();
        let mut st = self.lock_fenced(now)?;
        let Some(log) = st.logs.get_mut(supplier) else {
            return Ok(Vec::new());
        };
        let picked = log.group.claim(consumer, min_idle, max, now);
        Ok(picked.into_iter().filter_map(|(seq, n)| entry(log, seq, n)).collect())
    }

    async fn ack(&self, supplier: &str, ids: &[EntryId]) -> Result<u64, StorageError> {
        self.shared.faults.gate().await?;
        let mut st = self.lock_fenced(Instant::now())?;
        let Some(log) = st.logs.get_mut(supplier) else {
            return Ok(0);
        };
        let mut acked = 0;
        for id in ids {
            if id.minor == 0 && log.group.remove(id.major) {
                log.entries.remove(&id.major);
                acked += 1;
            }
        }
        Ok(acked)
    }

    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        self.shared.faults.gate().await?;
        let mut st = self.lock_fenced(Instant::now())?;
        let Some(log) = st.logs.get_mut(supplier) else {
            return Ok(0);
        };
        let doomed: Vec<u64> = log
            .entries
            .iter()
            .filter(|(_, r)| r.session_id == session_id)
            .map(|(s, _)| *s)
            .collect();
        for seq in &doomed {
            log.entries.remove(seq);
            log.group.remove(*seq);
        }
        Ok(doomed.len() as u64)
    }

    async fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        let st = self.lock();
        Ok(st.logs.get(supplier).map_or_else(Vec::new, |log| {
            log.entries
                .values()
                .filter(|r| r.session_id == session_id)
                .map(|r| r.relay_hash.clone())
                .collect()
        }))
    }

    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        let st = self.lock();
        let Some(log) = st.logs.get(supplier) else {
            return Ok(Backlog::default());
        };
        Ok(Backlog {
            undelivered: log.entries.range(log.group.cursor + 1..).count() as u64,
            pending: log.group.pending.len() as u64,
        })
    }

    /// The suppliers whose map of entries is not empty (acknowledged and trimmed entries leave it).
    async fn suppliers(&self) -> Result<Vec<String>, StorageError> {
        self.shared.faults.check_log_supplier_list()?;
        let st = self.lock();
        let mut out: Vec<String> = st
            .logs
            .iter()
            .filter(|(_, log)| !log.entries.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        out.sort();
        Ok(out)
    }
}

/// A memory node store scoped to one namespace.
struct MemoryNamespace {
    shared: Arc<Shared>,
    ns: Namespace,
    fence: Option<Arc<Fence>>,
}

impl NodeStore for MemoryNamespace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(lock(&self.shared).nodes.get(&self.ns).and_then(|m| m.get(key).cloned()))
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        self.shared.faults.check_trie_write()?;
        self.shared.faults.gate_sync()?;
        let mut st = lock(&self.shared);
        check(&st, self.fence.as_deref(), Instant::now())?;
        let map = st.nodes.entry(self.ns.clone()).or_default();
        for key in batch.deletes {
            map.remove(&key);
        }
        map.extend(batch.puts);
        Ok(())
    }
}

#[async_trait]
impl TrieStore for MemoryBackend {
    async fn open(&self, supplier: &str, session_id: &str) -> Result<BoxNodeStore, StorageError> {
        drop(self.lock_fenced(Instant::now())?);
        Ok(Box::new(MemoryNamespace {
            shared: Arc::clone(&self.shared),
            ns: (supplier.to_owned(), session_id.to_owned()),
            fence: self.fence.clone(),
        }))
    }

    async fn delete_namespace(&self, supplier: &str, session_id: &str) -> Result<(), StorageError> {
        self.shared.faults.gate().await?;
        self.lock_fenced(Instant::now())?
            .nodes
            .remove(&(supplier.to_owned(), session_id.to_owned()));
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryBackend {
    async fn get(&self, supplier: &str, session_id: &str) -> Result<Option<SessionRecord>, StorageError> {
        Ok(self
            .lock()
            .sessions
            .get(&(supplier.to_owned(), session_id.to_owned()))
            .cloned())
    }

    async fn put(
        &self,
        supplier: &str,
        session_id: &str,
        state: &str,
        data: Vec<u8>,
        expected_version: u64,
    ) -> Result<u64, StorageError> {
        self.shared.faults.gate().await?;
        let mut st = self.lock_fenced(Instant::now())?;
        let key = (supplier.to_owned(), session_id.to_owned());
        let current = st.sessions.get(&key).map_or(0, |r| r.version);
        if current != expected_version {
            return Err(version_conflict(supplier, session_id, expected_version, current));
        }
        let version = current + 1;
        let record = SessionRecord {
            supplier: supplier.to_owned(),
            session_id: session_id.to_owned(),
            state: state.to_owned(),
            data,
            version,
        };
        st.sessions.insert(key, record);
        Ok(version)
    }

    async fn delete(
        &self,
        supplier: &str,
        session_id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StorageError> {
        self.shared.faults.gate().await?;
        let mut st = self.lock_fenced(Instant::now())?;
        let key = (supplier.to_owned(), session_id.to_owned());
        let current = st.sessions.get(&key).map_or(0, |r| r.version);
        if let Some(v) = expected_version
            && v != current
        {
            return Err(version_conflict(supplier, session_id, v, current));
        }
        Ok(st.sessions.remove(&key).is_some())
    }

    async fn list(&self, supplier: Option<&str>, state: Option<&str>) -> Result<Vec<SessionRecord>, StorageError> {
        self.shared.faults.check_session_list()?;
        let st = self.lock();
        Ok(st
            .sessions
            .values()
            .filter(|r| supplier.is_none_or(|s| r.supplier == s) && state.is_none_or(|s| r.state == s))
            .cloned()
            .collect())
    }
}

/// The conflict error of a failed session compare-and-set (shared wording across in-process backends).
#[async_trait]
impl WriteSets for MemoryBackend {
    /// One write for the fault plan, one lock: checks the fence and every record's version, then applies all.
    async fn write(&self, set: WriteSet) -> Result<WriteSetOutcome, StorageError> {
        set.validate()?;
        if set.is_empty() {
            return Ok(WriteSetOutcome::default());
        }
        self.shared.faults.gate_write_set(!set.tries.is_empty()).await?;
        let mut st = self.lock_fenced(Instant::now())?;
        for r in &set.records {
            let current = st
                .sessions
                .get(&(r.supplier.clone(), r.session_id.clone()))
                .map_or(0, |rec| rec.version);
            if current != r.expected_version {
                return Err(version_conflict(
                    &r.supplier,
                    &r.session_id,
                    r.expected_version,
                    current,
                ));
            }
        }
        for t in set.tries {
            let map = st.nodes.entry((t.supplier, t.namespace)).or_default();
            for key in t.batch.deletes {
                map.remove(&key);
            }
            map.extend(t.batch.puts);
        }
        let mut outcome = WriteSetOutcome::default();
        for r in set.records {
            let version = r.expected_version + 1;
            let key = (r.supplier.clone(), r.session_id.clone());
            let record = SessionRecord {
                supplier: r.supplier,
                session_id: r.session_id,
                state: r.state,
                data: r.data,
                version,
            };
            st.sessions.insert(key, record);
            outcome.versions.push(version);
        }
        for a in set.acks {
            let Some(log) = st.logs.get_mut(&a.supplier) else {
                continue;
            };
            for id in a.ids {
                if id.minor == 0 && log.group.remove(id.major) {
                    log.entries.remove(&id.major);
                    outcome.acked += 1;
                }
            }
        }
        Ok(outcome)
    }
}

pub(crate) fn version_conflict(supplier: &str, session_id: &str, expected: u64, current: u64) -> StorageError {
    StorageError::Conflict(format!(
        "session record {supplier}/{session_id}: expected version {expected}, stored version {current}"
    ))
}

#[async_trait]
impl Leadership for MemoryBackend {
    async fn campaign(&self, election: &str, candidate: &str, ttl: Duration) -> Result<Option<u64>, StorageError> {
        self.shared.faults.gate().await?;
        let now = Instant::now();
        let mut st = self.lock();
        match st.leases.plan(election, candidate, ttl, now, 0) {
            CampaignPlan::Holder(token) => Ok(Some(token)),
            CampaignPlan::Busy => Ok(None),
            CampaignPlan::NewTerm(token) => {
                st.leases.install(election, candidate, token, ttl, now);
                Ok(Some(token))
            }
        }
    }

    async fn renew(&self, election: &str, candidate: &str, token: u64, ttl: Duration) -> Result<bool, StorageError> {
        self.shared.faults.gate().await?;
        Ok(self
            .lock()
            .leases
            .renew(election, candidate, token, ttl, Instant::now()))
    }

    async fn resign(&self, election: &str, candidate: &str, token: u64) -> Result<bool, StorageError> {
        self.shared.faults.gate().await?;
        Ok(self.lock().leases.resign(election, candidate, token, Instant::now()))
    }

    async fn leader(&self, election: &str) -> Result<Option<LeaderInfo>, StorageError> {
        Ok(self.lock().leases.leader(election, Instant::now()))
    }

    async fn watch(&self, election: &str) -> Result<watch::Receiver<Option<LeaderInfo>>, StorageError> {
        Ok(self.lock().leases.watch(election, Instant::now()))
    }
}

fn live(v: &(Vec<u8>, Option<Instant>), now: Instant) -> bool {
    v.1.is_none_or(|exp| exp > now)
}

/// Parses a stored counter (ASCII decimal).
pub(crate) fn parse_counter(key: &str, raw: &[u8]) -> Result<i64, StorageError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StorageError::Backend(format!("kv key {key:?} does not hold an integer")))
}

#[async_trait]
impl KvStore for MemoryBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let now = Instant::now();
        Ok(self.lock().kv.get(key).filter(|v| live(v, now)).map(|v| v.0.clone()))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.shared.faults.gate().await?;
        let now = Instant::now();
        self.lock_fenced(now)?
            .kv
            .insert(key.to_owned(), (value, ttl.map(|t| now + t)));
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.shared.faults.gate().await?;
        let now = Instant::now();
        let mut st = self.lock_fenced(now)?;
        if st.kv.get(key).is_some_and(|v| live(v, now)) {
            return Ok(false);
        }
        st.kv.insert(key.to_owned(), (value, ttl.map(|t| now + t)));
        Ok(true)
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StorageError> {
        self.shared.faults.gate().await?;
        let now = Instant::now();
        let mut st = self.lock_fenced(now)?;
        let (current, expiry) = match st.kv.get(key).filter(|v| live(v, now)) {
            Some((raw, exp)) => (parse_counter(key, raw)?, *exp),
            None => (0, ttl.map(|t| now + t)),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StorageError::Backend(format!("kv counter {key:?} overflows")))?;
        st.kv.insert(key.to_owned(), (next.to_string().into_bytes(), expiry));
        Ok(next)
    }

    async fn increment_once(
        &self,
        key: &str,
        op: &IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StorageError> {
        self.shared.faults.gate().await?;
        let now = Instant::now();
        let mut st = self.lock_fenced(now)?;
        let marker = op.marker_key(key);
        let last = match st.kv.get(&marker).filter(|v| live(v, now)) {
            Some((raw, _)) => parse_counter(&marker, raw)?,
            None => 0,
        };
        let (current, expiry) = match st.kv.get(key).filter(|v| live(v, now)) {
            Some((raw, exp)) => (parse_counter(key, raw)?, *exp),
            None => (0, ttl.map(|t| now + t)),
        };
        if u64::try_from(last).is_ok_and(|last| last >= op.seq) {
            return Ok(current);
        }
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StorageError::Backend(format!("kv counter {key:?} overflows")))?;
        st.kv.insert(key.to_owned(), (next.to_string().into_bytes(), expiry));
        st.kv
            .insert(marker, (op.seq.to_string().into_bytes(), ttl.map(|t| now + t)));
        Ok(next)
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        self.shared.faults.gate().await?;
        let now = Instant::now();
        Ok(self.lock_fenced(now)?.kv.remove(key).is_some_and(|v| live(&v, now)))
    }
}
