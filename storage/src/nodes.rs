//! The trie node store contract.
//!
//! The sparse Merkle sum trie (`relay_miner::smst`) is written against [`NodeStore`], so the same trie runs on the
//! in-memory store, on redb, on raft and on Redis. The trie keeps digests and structure in RAM and loads node bodies
//! lazily by key; it writes every change back as **one** [`NodeBatch`] per commit (new nodes put, orphaned nodes
//! deleted), so a backend can make a commit one transaction / one pipeline / one raft entry.
//!
//! The trait is synchronous on purpose: the trie is pure code (no tokio). Backends that talk to the network
//! implement it by blocking on their own runtime handle or by serving reads from a prefetched namespace.
//! Keys are opaque to the store (the trie uses node digests); a store instance is already scoped to one
//! (supplier, session) namespace.

use crate::StorageError;

/// One write-back of trie changes, applied atomically by the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeBatch {
    /// Nodes to insert or overwrite, `(key, encoded node)`.
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys of nodes orphaned by this commit; deleting a missing key is not an error.
    pub deletes: Vec<Vec<u8>>,
}

impl NodeBatch {
    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// A namespaced key-value store of trie nodes: lazy reads, batched writes.
pub trait NodeStore {
    /// Loads one node by key; `Ok(None)` when absent.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Applies a whole batch atomically (all puts and deletes, or none).
    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError>;
}

/// The in-memory node store: a `HashMap`, used by tests, benches and pure callers.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodeStore {
    nodes: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

impl MemoryNodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of stored nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// True when no node is stored.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// Total bytes of keys and values held (for memory accounting in benches).
    pub fn stored_bytes(&self) -> usize {
        self.nodes.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl NodeStore for MemoryNodeStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.nodes.get(key).cloned())
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        for key in batch.deletes {
            self.nodes.remove(&key);
        }
        for (key, value) in batch.puts {
            self.nodes.insert(key, value);
        }
        Ok(())
    }
}

/// A boxed store (e.g. [`crate::BoxNodeStore`] handed out by a backend) is a store.
impl<T: NodeStore + ?Sized> NodeStore for Box<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(key)
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        (**self).write_batch(batch)
    }
}
