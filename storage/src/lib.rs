//! Storage contract and backends for relay-miner.
//!
//! The relayer and miner talk to storage only through the traits of [`contract`], bundled per backend in
//! [`Storage`]. Backends: [`memory`] (fault-injecting, for tests), [`redb`] (embedded default), Redis
//! (`redis` module) and raft (the `raft` crate). [`suite`] is the conformance suite all of them run. The crate has
//! no protocol logic: a relay is opaque bytes plus the keys below.
//!
//! # Contract
//! Every method returns [`StorageError`]; [`StorageError::is_retryable`] is true for `OutOfMemory` (a store
//! refusing writes, e.g. Redis OOM or a full disk) and `Unavailable`. `Conflict` (failed compare-and-set) and
//! the rest are not retryable as is.
//!
//! - [`RelayLog`]: `append(Vec<MinedRelay>) -> Vec<EntryId>` is durable when it returns `Ok`. Consumption is
//!   per supplier with one consumer group: `read` hands never-delivered entries to a named consumer (pending
//!   until `ack`), `read_pending` gives a restarted consumer its own pending entries back, `claim` moves pending
//!   entries of a consumer idle for `min_idle` (dead) to another one. Delivery is at-least-once and in
//!   [`EntryId`] order per supplier. `ack` ends redelivery (the backend may delete the entry);
//!   `trim_session` removes every remaining entry of a (supplier, session) once settled; `backlog` counts;
//!   `suppliers` lists the suppliers whose logs hold entries (whoever appended them).
//! - [`TrieStore`]: `open(supplier, session)` hands out a [`NodeStore`] namespaced to that pair (lazy reads,
//!   one atomic batch per `write_batch`; sync, so call it from blocking threads), `delete_namespace` drops it.
//! - [`SessionStore`]: opaque lifecycle records (bytes + state string) with compare-and-set on `version`
//!   (0 = create), listed by supplier and/or state.
//! - [`Leadership`]: per named election, `campaign` / `renew` / `resign` / `leader` / `watch`, with a fencing
//!   token that strictly increases for every new term.
//! - [`KvStore`]: get / set / set-if-absent / increment (ASCII decimal counters; `increment_once` applies a
//!   retried increment at most once) / delete, with TTLs.
//! - [`WriteSets`]: trie batches, session record compare-and-sets and relay-log acks applied as one, all or
//!   nothing (any record's version mismatch writes nothing): the miner's ingest batch and a step's records in
//!   one durable commit (on raft one log entry) instead of one per write.
//! - [`Fencing`]: [`Storage::fenced`] is a view whose state-changing calls succeed only while a [`Fence`]'s
//!   candidate holds its election with its token (checked atomically with the write), else
//!   [`StorageError::Fenced`] and nothing changes. The miner writes through it, so a deposed leader cannot ack
//!   relays, write tries or overwrite session records; the relayer appends through the unfenced view.
//!
//! Store and keys are always (supplier, session) scoped where data belongs to a session (lessons: suppliers
//! sharing a session must never overwrite each other).
#![forbid(unsafe_code)]

pub mod contract;
pub mod error;
mod group;
mod lease;
pub mod memory;
pub mod nodes;
pub mod redb;
pub mod redis;
pub mod suite;

use std::sync::Arc;

pub use contract::{
    Backlog, BoxNodeStore, EntryId, Fence, Fencing, IncrementOnce, KvStore, LeaderInfo, Leadership, LogAck, LogEntry,
    MinedRelay, RecordWrite, RelayLog, SessionRecord, SessionStore, SetDurability, TrieStore, TrieWrite, WriteSet,
    WriteSetOutcome, WriteSets,
};
pub use error::StorageError;
pub use memory::{Faults, MemoryBackend};
pub use nodes::{MemoryNodeStore, NodeBatch, NodeStore};
pub use redb::{RedbBackend, RedbConfig};

/// Every part of the contract served by one backend, as trait objects (cheap to clone).
#[derive(Clone)]
pub struct Storage {
    /// Backend name for logs and metrics (`"memory"`, `"redb"`, `"redis"`, `"raft"`).
    pub backend: &'static str,
    /// The durable relay log.
    pub relay_log: Arc<dyn RelayLog>,
    /// Trie node stores per (supplier, session).
    pub tries: Arc<dyn TrieStore>,
    /// Session lifecycle records.
    pub sessions: Arc<dyn SessionStore>,
    /// Leader election with fencing tokens.
    pub leadership: Arc<dyn Leadership>,
    /// Small TTL key-value store.
    pub kv: Arc<dyn KvStore>,
    /// Trie batches, records and acks written as one.
    pub write_sets: Arc<dyn WriteSets>,
    /// Makes fenced views of the same backend.
    fencing: Arc<dyn Fencing>,
    /// The fence this view's writes carry, if any.
    fence: Option<Fence>,
}

impl Storage {
    /// Bundles one backend value that implements every trait; `fence` is the fence that value's writes carry
    /// (`None` for a backend's plain view).
    pub fn from_backend<B>(backend: &'static str, b: Arc<B>, fence: Option<Fence>) -> Self
    where
        B: RelayLog + TrieStore + SessionStore + Leadership + KvStore + WriteSets + Fencing + 'static,
    {
        Self {
            backend,
            relay_log: b.clone(),
            tries: b.clone(),
            sessions: b.clone(),
            leadership: b.clone(),
            kv: b.clone(),
            write_sets: b.clone(),
            fencing: b,
            fence,
        }
    }

    /// A view of the same backend whose state-changing calls are fenced by `fence` (see [`Fencing`]).
    pub fn fenced(&self, fence: Fence) -> Self {
        self.fencing.fenced(fence)
    }

    /// The fence of this view (`None` = unfenced).
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}
