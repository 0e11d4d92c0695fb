//! [`RaftBackend`]: the storage contract served by a raft node, so relayer and miner run unchanged.
//!
//! - Writes become [`Op`]s replicated through raft: proposed here on the leader, forwarded to the leader from a
//!   follower; every write returns once this node has applied it (read-your-writes on every node).
//! - Reads come from the local state machine. Session reads first pass a linearizable read barrier
//!   (`ensure_linearizable` on the leader, forwarded from followers), so a compare-and-set decision is never
//!   taken on stale data; KV, relay-log and trie-node reads are local (they only ever need this node's own
//!   writes, which the write path already waits for).
//! - Relay appends are group-committed in the app ([`log`]): concurrent appends are gathered into one raft entry
//!   (up to `max_batch_relays` relays and `max_batch_bytes` bytes, lingering up to `batch_linger` only while
//!   earlier entries are in flight). An append larger than `max_batch_bytes` is committed as several entries in
//!   order; a relay larger than [`crate::MAX_ENTRY_BYTES`] is refused (`StorageError::TooLarge`, and
//!   `RelayLog::relay_fits` says so beforehand).
//! - Leadership is raft leadership ([`leader`]).
//! - Fenced views ([`Fencing`]): every replicated write of a fenced view is an [`Op::Fenced`], checked against
//!   the replicated lease at apply (in the entry's term, at its `now_ms`), so a deposed leader's write that
//!   commits after the campaign or term change that deposed it is refused on every node alike, and a write
//!   the check admits is ordered before that campaign in the log. Delivery bookkeeping (`read`, `read_pending`,
//!   `claim`) and trie `open` touch only this node and check the fence against this node's applied lease
//!   view; a deposed leader can mark entries delivered only in its own node's memory, which no other node
//!   reads, and cannot `ack` or `trim` them.
//! - Consumer-group state (delivery cursor, pending entries) is local to each node, as in the embedded redb
//!   backend: only the leader's miner consumes, and after a failover the new leader's consumer starts with
//!   every unacknowledged entry undelivered (at-least-once; acknowledged entries are deleted on every node
//!   through raft).

mod leader;
mod log;
mod write_set;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use storage::{
    BoxNodeStore, Fencing, KvStore, NodeBatch, NodeStore, SessionRecord, SessionStore, Storage, StorageError, TrieStore,
};
use tokio::sync::{mpsc, watch};

use crate::core::Core;
use crate::sm::SmReader;
use crate::types::{FenceRecord, Op, OpResult, Request, Response, now_ms};

pub(crate) use log::AppendJob;

/// Group-commit knobs of the relay log.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most relays in one raft entry.
    pub max_batch_relays: usize,
    /// Most encoded relay bytes in one raft entry (a single larger relay, up to [`crate::MAX_ENTRY_BYTES`], goes
    /// alone). Keeps entries, append RPCs and forwarded writes well under the raft port's request limit.
    pub max_batch_bytes: usize,
    /// How long a batch waits for more relays while earlier entries are still in flight.
    pub batch_linger: Duration,
    /// Raft entries of relays proposed concurrently.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_relays: 1024,
            max_batch_bytes: 8 << 20,
            batch_linger: Duration::from_millis(1),
            max_in_flight: 4,
        }
    }
}

struct TrieWrite {
    req: Request,
    reply: std::sync::mpsc::Sender<Result<(), StorageError>>,
}

/// The storage contract on a raft node. Build it with [`crate::RaftNode::start`]; clones share everything but
/// the fence ([`Fencing`]).
#[derive(Clone)]
pub struct RaftBackend {
    core: Arc<Core>,
    reader: SmReader,
    groups: Arc<Mutex<HashMap<String, log::Group>>>,
    appends: mpsc::Sender<AppendJob>,
    trie_writes: mpsc::UnboundedSender<TrieWrite>,
    watches: Arc<Mutex<HashMap<String, watch::Sender<Option<storage::LeaderInfo>>>>>,
    /// Relay bytes per raft entry at most ([`BatchConfig::max_batch_bytes`], within the entry limit).
    max_batch_bytes: usize,
    /// The fence of this view's writes (`None` = unfenced).
    fence: Option<Arc<FenceRecord>>,
}

/// The single result of a one-op response, with op failures mapped to storage errors.
pub(crate) fn one(resp: Response) -> Result<OpResult, StorageError> {
    match resp.results.into_iter().next() {
        Some(OpResult::Conflict(s)) => Err(StorageError::Conflict(s)),
        Some(OpResult::Error(s)) => Err(StorageError::Backend(s)),
        Some(OpResult::Fenced(s)) => Err(StorageError::Fenced(s)),
        Some(r) => Ok(r),
        None => Err(StorageError::Corrupt("raft response without result".into())),
    }
}

fn unexpected(r: OpResult) -> StorageError {
    StorageError::Corrupt(format!("unexpected raft op result {r:?}"))
}

impl RaftBackend {
    /// Starts the backend's tasks (relay batcher, trie writer, leadership watcher) on the current runtime.
    pub(crate) fn start(
        core: Arc<Core>,
        reader: SmReader,
        batch: BatchConfig,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (appends, append_rx) = mpsc::channel(4096);
        let (trie_writes, mut trie_rx) = mpsc::unbounded_channel::<TrieWrite>();
        let watches = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(log::batcher(core.clone(), append_rx, batch, stop.clone()));
        let c = core.clone();
        tokio::spawn(async move {
            while let Some(w) = trie_rx.recv().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let r = c.write(w.req).await.and_then(one).map(|_| ());
                    let _ = w.reply.send(r);
                });
            }
        });
        tokio::spawn(leader::watcher(core.clone(), reader.clone(), watches.clone(), stop));
        Arc::new(Self {
            core,
            reader,
            groups: Arc::new(Mutex::new(HashMap::new())),
            appends,
            trie_writes,
            watches,
            max_batch_bytes: batch.max_batch_bytes.clamp(1, log::MAX_RELAY_BYTES),
            fence: None,
        })
    }

    /// `op` wrapped in this view's fence, if any.
    fn fenced_op(&self, op: Op) -> Op {
        fenced_op(self.fence.as_deref(), op)
    }

    /// Replicates one op (fenced when this view is) and returns its result once applied here.
    async fn write1(&self, op: Op) -> Result<OpResult, StorageError> {
        let resp = self
            .core
            .write(Request {
                now_ms: 0,
                ops: vec![self.fenced_op(op)],
            })
            .await?;
        one(resp)
    }

    /// This node's local (non-linearizable) view of the fence, for calls that change only node-local state
    /// (relay-log delivery bookkeeping): refuses early once this node sees the lease gone, a new term or
    /// another holder. The authoritative check is the one at apply of every replicated write.
    fn check_local_fence(&self) -> Result<(), StorageError> {
        let Some(f) = self.fence.as_deref() else {
            return Ok(());
        };
        let holder = self
            .reader
            .lease_holder(&f.election, self.core.view().term, now_ms())?
            .map(|h| storage::LeaderInfo {
                holder: h.candidate,
                token: h.token,
            });
        storage::Fence::new(f.election.clone(), f.candidate.clone(), f.token).check(holder.as_ref())
    }

    /// The plain storage view of this backend (what [`crate::RaftNode::storage`] hands out).
    pub fn storage(&self) -> Storage {
        let fence = self
            .fence
            .as_deref()
            .map(|f| storage::Fence::new(f.election.clone(), f.candidate.clone(), f.token));
        Storage::from_backend("raft", Arc::new(self.clone()), fence)
    }
}

fn fenced_op(fence: Option<&FenceRecord>, op: Op) -> Op {
    match fence {
        Some(f) => Op::Fenced {
            fence: f.clone(),
            op: Box::new(op),
        },
        None => op,
    }
}

impl Fencing for RaftBackend {
    fn fenced(&self, fence: storage::Fence) -> Storage {
        Self {
            fence: Some(Arc::new(FenceRecord::from(&fence))),
            ..self.clone()
        }
        .storage()
    }
}

/// A node store namespaced to one (supplier, session): reads from the local state machine, writes through raft.
struct RaftNodeStore {
    reader: SmReader,
    supplier: String,
    session_id: String,
    writes: mpsc::UnboundedSender<TrieWrite>,
    fence: Option<Arc<FenceRecord>>,
}

impl NodeStore for RaftNodeStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader.node(&self.supplier, &self.session_id, key)
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let req = Request {
            now_ms: 0,
            ops: vec![fenced_op(
                self.fence.as_deref(),
                Op::TrieBatch {
                    supplier: self.supplier.clone(),
                    session_id: self.session_id.clone(),
                    puts: batch.puts,
                    deletes: batch.deletes,
                },
            )],
        };
        self.writes
            .send(TrieWrite { req, reply: tx })
            .map_err(|_| StorageError::Unavailable("raft node stopped".into()))?;
        rx.recv()
            .map_err(|_| StorageError::Unavailable("raft node stopped".into()))?
    }
}

#[async_trait]
impl TrieStore for RaftBackend {
    async fn open(&self, supplier: &str, session_id: &str) -> Result<BoxNodeStore, StorageError> {
        self.check_local_fence()?;
        Ok(Box::new(RaftNodeStore {
            reader: self.reader.clone(),
            supplier: supplier.to_owned(),
            session_id: session_id.to_owned(),
            writes: self.trie_writes.clone(),
            fence: self.fence.clone(),
        }))
    }

    async fn delete_namespace(&self, supplier: &str, session_id: &str) -> Result<(), StorageError> {
        self.write1(Op::TrieDeleteNamespace {
            supplier: supplier.to_owned(),
            session_id: session_id.to_owned(),
        })
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl SessionStore for RaftBackend {
    async fn get(&self, supplier: &str, session_id: &str) -> Result<Option<SessionRecord>, StorageError> {
        self.core.linearize().await?;
        self.reader.session(supplier, session_id)
    }

    async fn put(
        &self,
        supplier: &str,
        session_id: &str,
        state: &str,
        data: Vec<u8>,
        expected_version: u64,
    ) -> Result<u64, StorageError> {
        match self
            .write1(Op::SessionPut {
                supplier: supplier.to_owned(),
                session_id: session_id.to_owned(),
                state: state.to_owned(),
                data,
                expected_version,
            })
            .await?
        {
            OpResult::Version(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(
        &self,
        supplier: &str,
        session_id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StorageError> {
        match self
            .write1(Op::SessionDelete {
                supplier: supplier.to_owned(),
                session_id: session_id.to_owned(),
                expected_version,
            })
            .await?
        {
            OpResult::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    async fn list(&self, supplier: Option<&str>, state: Option<&str>) -> Result<Vec<SessionRecord>, StorageError> {
        self.core.linearize().await?;
        self.reader.sessions(supplier, state)
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait]
impl KvStore for RaftBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader.kv(key, now_ms())
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.write1(Op::KvSet {
            key: key.to_owned(),
            value,
            ttl_ms: ttl_ms(ttl),
        })
        .await
        .map(|_| ())
    }

    async fn set_if_absent(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StorageError> {
        match self
            .write1(Op::KvSetIfAbsent {
                key: key.to_owned(),
                value,
                ttl_ms: ttl_ms(ttl),
            })
            .await?
        {
            OpResult::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StorageError> {
        match self
            .write1(Op::KvIncrement {
                key: key.to_owned(),
                delta,
                ttl_ms: ttl_ms(ttl),
            })
            .await?
        {
            OpResult::Int(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn increment_once(
        &self,
        key: &str,
        op: &storage::IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StorageError> {
        // The `kv-once` gate ([`crate::features`]): checked here before forwarding (a leader of an older build
        // could not decode the op) and again by the leader at proposal.
        self.core.check_kv_once().map_err(StorageError::Conflict)?;
        match self
            .write1(Op::KvIncrementOnce {
                key: key.to_owned(),
                writer: op.writer.clone(),
                seq: op.seq,
                delta,
                ttl_ms: ttl_ms(ttl),
            })
            .await?
        {
            OpResult::Int(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        match self.write1(Op::KvDelete { key: key.to_owned() }).await? {
            OpResult::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
}
