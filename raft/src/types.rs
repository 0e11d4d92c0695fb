//! The raft type configuration and the replicated command set.
//!
//! A raft entry carries a [`Request`]: a batch of storage writes ([`Op`]) plus the wall-clock time the leader
//! stamped on it. Everything `apply` needs is inside the entry (relay bytes, keys, TTLs, the leader's clock), so
//! every node applies it identically:
//! - TTLs travel as durations and become absolute expiries `now_ms + ttl` at apply, with `now_ms` stamped by the
//!   leader right before it proposes the entry (one clock for all replicas);
//! - relay sequence ids are assigned at apply from a per-supplier counter in the state machine;
//! - leases are checked against the entry's own term (std leader ids: one leader per term, so the term is the
//!   fencing epoch) and its `now_ms`;
//! - a fenced write ([`Op::Fenced`]) is checked against the replicated lease the same way, at apply, so every
//!   replica accepts or refuses it identically, and in log order with the campaigns that depose its leader.
//!
//! The response of an entry is one [`OpResult`] per op, in order.

use std::fmt;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The raft type configuration of relay-miner: u64 node ids, std leader ids (one leader per term).
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// Snapshot payload as handed between the state machine and the network: an open snapshot file, read from its
/// start (format header, the snapshot meta, the records, an end frame with count and checksum; see `sm::snapshot`).
pub type SnapshotData = std::fs::File;

/// Raft handle of this crate.
pub type Raft = openraft::Raft<TypeConfig, crate::sm::StateMachine>;
/// Log id of this crate's type config.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// Entry of this crate's type config.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// Vote of this crate's type config.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// Stored membership of this crate's type config.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata of this crate's type config.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot of this crate's type config.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// What the cluster knows about a node: where its raft port listens and, optionally, its API address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node's raft listener (raft RPCs and admin RPCs).
    pub raft_addr: String,
    /// Optional address of the node's relay/API listener, for operators.
    pub api_addr: Option<String>,
}

impl NodeInfo {
    /// A node reachable at `raft_addr`.
    pub fn new(raft_addr: impl Into<String>) -> Self {
        Self {
            raft_addr: raft_addr.into(),
            api_addr: None,
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.raft_addr)
    }
}

/// One mined relay as replicated: the storage contract's `MinedRelay` with serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    /// Supplier operator address.
    pub supplier: String,
    /// Session id.
    pub session_id: String,
    /// Session end height.
    pub session_end_height: u64,
    /// Relay hash.
    #[serde(with = "serde_bytes")]
    pub relay_hash: Vec<u8>,
    /// Encoded relay (postcard encodes it as one byte string, the same bytes as a sequence of `u8`, in one copy).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl RelayRecord {
    /// An upper bound of this relay's encoded size inside a raft entry (its bytes plus postcard's length and
    /// integer prefixes at their largest).
    pub fn encoded_len_bound(&self) -> usize {
        Self::len_bound(&self.supplier, &self.session_id, &self.relay_hash, &self.payload)
    }

    /// [`RelayRecord::encoded_len_bound`] of a record with these fields (without building it).
    pub fn len_bound(supplier: &str, session_id: &str, relay_hash: &[u8], payload: &[u8]) -> usize {
        [
            supplier.len(),
            session_id.len(),
            relay_hash.len(),
            payload.len(),
            5 * 10,
        ]
        .iter()
        .fold(0usize, |acc, n| acc.saturating_add(*n))
    }
}

impl From<storage::MinedRelay> for RelayRecord {
    fn from(r: storage::MinedRelay) -> Self {
        Self {
            supplier: r.supplier,
            session_id: r.session_id,
            session_end_height: r.session_end_height,
            relay_hash: r.relay_hash,
            payload: r.payload,
        }
    }
}

impl From<RelayRecord> for storage::MinedRelay {
    fn from(r: RelayRecord) -> Self {
        Self {
            supplier: r.supplier,
            session_id: r.session_id,
            session_end_height: r.session_end_height,
            relay_hash: r.relay_hash,
            payload: r.payload,
        }
    }
}

/// One replicated storage write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Append relays; result [`OpResult::Seqs`] (sequence per relay, per supplier).
    Append(Vec<RelayRecord>),
    /// Delete acknowledged entries of a supplier's log; result [`OpResult::Count`] (entries that existed).
    Ack {
        /// Supplier.
        supplier: String,
        /// Sequences to delete.
        seqs: Vec<u64>,
    },
    /// Delete every entry of (supplier, session); result [`OpResult::Count`].
    TrimSession {
        /// Supplier.
        supplier: String,
        /// Session.
        session_id: String,
    },
    /// Compare-and-set a session record; result [`OpResult::Version`] or [`OpResult::Conflict`].
    SessionPut {
        /// Supplier.
        supplier: String,
        /// Session.
        session_id: String,
        /// Lifecycle state.
        state: String,
        /// Record body (one byte string: the same postcard bytes as a sequence of `u8`, encoded in one copy; a
        /// record can hold a signed tx of up to `transaction.max_tx_bytes`).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Expected stored version (0 = must not exist).
        expected_version: u64,
    },
    /// Delete a session record; result [`OpResult::Bool`] or [`OpResult::Conflict`].
    SessionDelete {
        /// Supplier.
        supplier: String,
        /// Session.
        session_id: String,
        /// Required stored version, if any.
        expected_version: Option<u64>,
    },
    /// Set a key; result [`OpResult::Done`].
    KvSet {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Time to live in ms from the entry's `now_ms` (`None` = forever).
        ttl_ms: Option<u64>,
    },
    /// Set a key only if it has no live value; result [`OpResult::Bool`].
    KvSetIfAbsent {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Time to live in ms.
        ttl_ms: Option<u64>,
    },
    /// Add to a decimal counter; result [`OpResult::Int`] or [`OpResult::Error`] for a non-integer value.
    KvIncrement {
        /// Key.
        key: String,
        /// Delta.
        delta: i64,
        /// TTL applied only when the key is created.
        ttl_ms: Option<u64>,
    },
    /// Delete a key; result [`OpResult::Bool`] (a live value existed).
    KvDelete {
        /// Key.
        key: String,
    },
    /// One trie node write-back for (supplier, session); result [`OpResult::Done`].
    TrieBatch {
        /// Supplier.
        supplier: String,
        /// Session.
        session_id: String,
        /// Nodes to put.
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        /// Node keys to delete.
        deletes: Vec<Vec<u8>>,
    },
    /// Drop every trie node of (supplier, session); result [`OpResult::Done`].
    TrieDeleteNamespace {
        /// Supplier.
        supplier: String,
        /// Session.
        session_id: String,
    },
    /// Take the lease of an election; result [`OpResult::Token`].
    Campaign {
        /// Election name.
        election: String,
        /// Candidate name.
        candidate: String,
        /// Lease length in ms.
        ttl_ms: u64,
    },
    /// Extend a held lease; result [`OpResult::Bool`].
    Renew {
        /// Election name.
        election: String,
        /// Candidate name.
        candidate: String,
        /// Token the candidate holds.
        token: u64,
        /// Lease length in ms.
        ttl_ms: u64,
    },
    /// Give a held lease up; result [`OpResult::Bool`].
    Resign {
        /// Election name.
        election: String,
        /// Candidate name.
        candidate: String,
        /// Token the candidate holds.
        token: u64,
    },
    /// The storage contract's write set (`storage::WriteSets`): `ops` (only [`Op::TrieBatch`],
    /// [`Op::SessionPut`] and [`Op::Ack`]) applied all or nothing in one entry. Every `SessionPut`'s version is
    /// checked first; one mismatch is [`OpResult::Conflict`] and nothing is written. Result
    /// [`OpResult::WriteSet`]; any other op inside is [`OpResult::Error`] (nothing written).
    ///
    /// Builds before write sets cannot decode this op: the leader proposes it only while every member
    /// advertised the `write-set` feature ([`crate::features`]).
    WriteSet(Vec<Op>),
    /// `op` applied only if `fence`'s candidate holds its election with its token, live in the entry's term at
    /// the entry's `now_ms`; else [`OpResult::Fenced`] and nothing written. Result: `op`'s.
    Fenced {
        /// The fence to check at apply.
        fence: FenceRecord,
        /// The write it guards.
        op: Box<Op>,
    },
    /// `storage::KvStore::increment_once`: add to a decimal counter unless `writer` already applied a sequence
    /// at least `seq` to it (kept in the KV key `{key}:once:{writer}`, written with the counter, TTL `ttl_ms`);
    /// result [`OpResult::Int`] (the counter either way) or [`OpResult::Error`] for a non-integer value.
    ///
    /// Last variant on purpose (postcard numbers variants in order). Builds before it cannot decode it: the
    /// leader proposes it only while every member advertised the `kv-once` feature ([`crate::features`]).
    KvIncrementOnce {
        /// Counter key.
        key: String,
        /// The operation's writer.
        writer: String,
        /// The writer's sequence number of the operation.
        seq: u64,
        /// Delta.
        delta: i64,
        /// TTL of the counter when created, and of the marker.
        ttl_ms: Option<u64>,
    },
}

impl Op {
    /// True for an [`Op::WriteSet`], fenced or not: an entry a build without write sets cannot apply
    /// ([`crate::features`]).
    pub fn is_write_set(&self) -> bool {
        match self {
            Op::WriteSet(_) => true,
            Op::Fenced { op, .. } => op.is_write_set(),
            _ => false,
        }
    }

    /// True for an [`Op::KvIncrementOnce`], fenced or not: an entry a build without `kv-once` cannot apply
    /// ([`crate::features`]).
    pub fn is_kv_once(&self) -> bool {
        match self {
            Op::KvIncrementOnce { .. } => true,
            Op::Fenced { op, .. } => op.is_kv_once(),
            _ => false,
        }
    }
}

/// The storage contract's `Fence` as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// Election name.
    pub election: String,
    /// Candidate that must hold it.
    pub candidate: String,
    /// Token it must hold it with.
    pub token: u64,
}

impl From<&storage::Fence> for FenceRecord {
    fn from(f: &storage::Fence) -> Self {
        Self {
            election: f.election.clone(),
            candidate: f.candidate.clone(),
            token: f.token,
        }
    }
}

/// A batch of writes replicated as one raft entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Leader wall clock (ms since the Unix epoch) when it proposed the entry; the only clock apply uses.
    pub now_ms: u64,
    /// The writes, applied in order.
    pub ops: Vec<Op>,
}

impl Request {
    /// An upper bound of the bytes of the relays this request appends (the bulk of a large entry).
    pub fn relay_bytes(&self) -> usize {
        fn op_bytes(op: &Op) -> usize {
            match op {
                Op::Append(relays) => relays
                    .iter()
                    .fold(0usize, |acc, r| acc.saturating_add(r.encoded_len_bound())),
                Op::Fenced { op, .. } => op_bytes(op),
                _ => 0,
            }
        }
        self.ops.iter().fold(0usize, |acc, op| acc.saturating_add(op_bytes(op)))
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request(now_ms={}, ops={})", self.now_ms, self.ops.len())
    }
}

/// The result of one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// Nothing to report.
    Done,
    /// Sequence ids of appended relays, in input order.
    Seqs(Vec<u64>),
    /// A count.
    Count(u64),
    /// A new session-record version.
    Version(u64),
    /// A yes/no answer.
    Bool(bool),
    /// A counter value.
    Int(i64),
    /// A campaign answer: `Some(token)` when the candidate holds the lease.
    Token(Option<u64>),
    /// Compare-and-set failure (nothing written by this op).
    Conflict(String),
    /// Any other failure of this op (nothing written by this op).
    Error(String),
    /// What an [`Op::WriteSet`] did: the new versions of its `SessionPut`s in order, and the entries its `Ack`s
    /// deleted.
    WriteSet {
        /// New record versions, in op order.
        versions: Vec<u64>,
        /// Relay-log entries deleted.
        acked: u64,
    },
    /// A fenced op refused because its fence's candidate no longer held the lease (nothing written).
    Fenced(String),
}

/// The results of one entry, one per op, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// One result per op.
    pub results: Vec<OpResult>,
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response(results={})", self.results.len())
    }
}

/// Wall clock in ms since the Unix epoch (0 if the clock is before the epoch).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Encodes a value with the crate's binary codec (postcard).
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, std::io::Error> {
    postcard::to_stdvec(v).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Decodes a value encoded by [`encode`].
pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, std::io::Error> {
    postcard::from_bytes(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The fencing token of the `n`-th lease grant (`n` from 1) within raft term `term`: the term in the high 32 bits.
/// A later term always yields a greater token, and so does a later grant within one term.
pub const fn lease_token(term: u64, n: u64) -> u64 {
    (term << 32) | (n & 0xffff_ffff)
}

/// The raft term a lease token was granted in.
pub const fn token_term(token: u64) -> u64 {
    token >> 32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A session record's body as one byte string encodes to the same postcard bytes as the sequence of `u8` that
    /// logs, snapshots and peers of earlier releases hold, both ways.
    #[test]
    fn a_record_body_as_bytes_is_the_same_postcard_as_a_sequence_of_u8() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct AsSequence {
            state: String,
            data: Vec<u8>,
            version: u64,
        }
        let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let old = AsSequence {
            state: "claiming".into(),
            data: data.clone(),
            version: 7,
        };
        let new = crate::sm::apply::SessionValue {
            state: "claiming".into(),
            data,
            version: 7,
        };
        let old_bytes = encode(&old).unwrap();
        assert_eq!(encode(&new).unwrap(), old_bytes);
        assert_eq!(decode::<crate::sm::apply::SessionValue>(&old_bytes).unwrap(), new);
        assert_eq!(decode::<AsSequence>(&encode(&new).unwrap()).unwrap(), old);
    }
}
