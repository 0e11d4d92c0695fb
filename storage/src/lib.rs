//! Storage contract and backends for relay-miner (docs being written).
#![forbid(unsafe_code)]

pub mod contract;
pub mod error;
mod group;
mod lease;
pub mod memory;
pub mod nodes;
pub mod redb;
pub mod suite;

use std::sync::Arc;

pub use contract::{
    Backlog, BoxNodeStore, EntryId, KvStore, LeaderInfo, Leadership, LogEntry, MinedRelay,
    RelayLog, SessionRecord, SessionStore, TrieStore,
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
}

impl Storage {
    /// Bundles one backend value that implements every trait.
    pub fn from_backend<B>(backend: &'static str, b: Arc<B>) -> Self
    where
        B: RelayLog + TrieStore + SessionStore + Leadership + KvStore + 'static,
    {
        Self {
            backend,
            relay_log: b.clone(),
            tries: b.clone(),
            sessions: b.clone(),
            leadership: b.clone(),
            kv: b,
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}
