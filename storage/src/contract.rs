//! The storage contract: the async traits every backend (memory, redb, Redis, raft) implements.
//!
//! Everything here is protocol-free: a relay is opaque bytes plus the keys the contract needs (supplier operator
//! address, session id, session end height, relay hash). See the crate docs for the semantics in one place; each
//! method below repeats what a caller may rely on. Every method returns [`StorageError`], whose
//! [`StorageError::is_retryable`] tells a caller whether to retry (`OutOfMemory`, `Unavailable`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::StorageError;
use crate::nodes::NodeStore;

/// One mined relay as the relay log stores it: opaque bytes plus the keys the log is indexed by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MinedRelay {
    /// Supplier operator address; the log is partitioned by it.
    pub supplier: String,
    /// Session id; [`RelayLog::trim_session`] removes a session's entries by it.
    pub session_id: String,
    /// Session end height (informational for the log, used by callers to order work).
    pub session_end_height: u64,
    /// Relay hash (the trie key); opaque to storage.
    pub relay_hash: Vec<u8>,
    /// The encoded relay as the caller wants it back; opaque to storage.
    pub payload: Vec<u8>,
}

/// Position of an entry in one supplier's relay log. Ordered; ids of later appends to the same supplier compare
/// greater. Shaped like a Redis stream id (`major-minor`); embedded backends use `(sequence, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// High part (Redis: milliseconds; embedded: sequence number).
    pub major: u64,
    /// Low part (Redis: sequence within the millisecond; embedded: 0).
    pub minor: u64,
}

impl EntryId {
    /// Builds an id from its two parts.
    pub const fn new(major: u64, minor: u64) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

impl FromStr for EntryId {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StorageError::Corrupt(format!("bad entry id {s:?}"));
        let (major, minor) = s.split_once('-').ok_or_else(bad)?;
        Ok(Self {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// One relay-log entry handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its id in the supplier's log (pass it to [`RelayLog::ack`]).
    pub id: EntryId,
    /// The relay as appended.
    pub relay: MinedRelay,
    /// How many times this entry has been delivered, this delivery included (1 on first delivery).
    pub deliveries: u64,
}

/// Counts of one supplier's log for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Entries appended and never delivered to any consumer. On Redis a lower bound
    /// (`storage::redis::BACKLOG_COUNT_CAP`) when the server cannot compute the consumer group's lag.
    pub undelivered: u64,
    /// Entries delivered and not yet acknowledged (or trimmed).
    pub pending: u64,
}

/// The durable relay log (write-ahead log between relayer and miner), partitioned by supplier.
///
/// Delivery is at-least-once with one consumer group per backend: [`RelayLog::read`] hands each new entry to one
/// named consumer and records it as pending for that consumer until [`RelayLog::ack`]; a consumer that restarts
/// under the same name gets its pending entries back with [`RelayLog::read_pending`]; another consumer takes over
/// the pending entries of a dead one with [`RelayLog::claim`]. Entries come back in id order per supplier.
#[async_trait]
pub trait RelayLog: Send + Sync {
    /// Appends a batch of relays (any suppliers) and returns their ids in input order. When this returns `Ok`,
    /// every relay of the batch is durable (survives kill -9 of this process). On `Err` none or some may have
    /// been stored; retrying may duplicate entries (consumers must tolerate duplicates: same relay hash). A store
    /// that keeps headroom for its miner refuses the whole batch with [`StorageError::RelayMemoryThreshold`]
    /// (Redis above `relay_max_memory_ratio` of `maxmemory`) while its other writes go on.
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError>;

    /// True when the backend itself group-commits concurrent [`RelayLog::append`] calls (everything queued while
    /// one durable write runs goes into the next), so a caller gains nothing by batching in front of it and
    /// only adds a hop. Remote backends (a round trip per call) return false.
    fn coalesces_appends(&self) -> bool {
        false
    }

    /// Whether this backend can hold `relay` at all. `false` means [`RelayLog::append`] refuses any append
    /// containing it with [`StorageError::TooLarge`]; callers check first so one oversized relay is refused on
    /// its own instead of failing the relays batched with it. Backends without a size limit keep the default.
    fn relay_fits(&self, relay: &MinedRelay) -> bool {
        let _ = relay;
        true
    }

    /// Delivers up to `max` entries of `supplier` never delivered to any consumer, in id order, and records them
    /// as pending for `consumer`.
    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError>;

    /// Redelivers up to `max` entries pending for `consumer` itself (e.g. after it restarted), in id order.
    async fn read_pending(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError>;

    /// Takes over up to `max` entries pending for *other* consumers whose last delivery is at least `min_idle`
    /// old, reassigns them to `consumer` and returns them (delivery count incremented), in id order.
    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<LogEntry>, StorageError>;

    /// Acknowledges entries: they are never delivered again and the backend may delete them. Unknown or already
    /// acknowledged ids are ignored. Returns how many entries were pending and are now acknowledged.
    async fn ack(&self, supplier: &str, ids: &[EntryId]) -> Result<u64, StorageError>;

    /// Removes every remaining entry (delivered or not, pending or not) of `(supplier, session_id)`, once the
    /// session is settled or abandoned. Returns how many entries were removed.
    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError>;

    /// The relay hashes ([`MinedRelay::relay_hash`]) of every remaining entry of `(supplier, session_id)`: what
    /// [`RelayLog::trim_session`] would remove now, delivered or not, pending or not, in id order (one per entry,
    /// duplicates kept). The miner reads them before it trims a session, to count the relays that leave the log
    /// without having been ingested. A pure read, not fenced; it reads no payload (Redis: the stream is scanned in
    /// pages as `trim_session` scans it, only the hashes of the session's entries come back).
    async fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError>;

    /// Undelivered and pending counts of `supplier`'s log.
    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError>;

    /// Every supplier whose log holds at least one entry (undelivered or pending: appended and neither
    /// acknowledged nor trimmed), sorted, each once. A supplier whose entries were all acknowledged or trimmed is
    /// not listed. Whoever appended them is irrelevant: this is how a miner finds the logs of suppliers it has no
    /// key for (a relayer with another keys file appends them; nothing else would ever read or trim them).
    /// Appends acknowledged before the call starts are seen (as [`RelayLog::backlog`] sees them). Not fenced (a
    /// pure read); its cost grows with the number of suppliers, not of entries (Redis: a `SCAN` of the keyspace,
    /// so once per block, not per relay).
    async fn suppliers(&self) -> Result<Vec<String>, StorageError>;
}

/// A [`NodeStore`] handed out by a backend, scoped to one (supplier, session) namespace.
///
/// The trait is synchronous: backends doing IO block the calling thread, so async callers must call it from
/// `tokio::task::spawn_blocking` or a dedicated thread, never directly on a runtime worker.
pub type BoxNodeStore = Box<dyn NodeStore + Send + Sync>;

/// Trie node stores namespaced per (supplier, session).
#[async_trait]
pub trait TrieStore: Send + Sync {
    /// A node store for the namespace `(supplier, session_id)`; reads are lazy (per key), writes are one atomic
    /// batch per [`NodeStore::write_batch`]. Opening a namespace that holds nothing yields an empty store.
    async fn open(&self, supplier: &str, session_id: &str) -> Result<BoxNodeStore, StorageError>;

    /// Deletes every node of the namespace `(supplier, session_id)`. Deleting an empty namespace is not an error.
    async fn delete_namespace(&self, supplier: &str, session_id: &str) -> Result<(), StorageError>;
}

/// One session lifecycle record: opaque bytes plus a state string, versioned for compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Supplier operator address.
    pub supplier: String,
    /// Session id.
    pub session_id: String,
    /// Lifecycle state (opaque to storage; used for listing).
    pub state: String,
    /// Opaque record body.
    pub data: Vec<u8>,
    /// Version: 1 after creation, +1 per successful [`SessionStore::put`].
    pub version: u64,
}

/// Session lifecycle records, keyed by (supplier, session), with compare-and-set on a version.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The record of `(supplier, session_id)`, if any.
    async fn get(&self, supplier: &str, session_id: &str) -> Result<Option<SessionRecord>, StorageError>;

    /// Writes `state` and `data` for `(supplier, session_id)` if the stored version equals `expected_version`
    /// (`0` = the record must not exist). Returns the new version (`expected_version + 1`). A mismatch returns
    /// [`StorageError::Conflict`] and writes nothing.
    async fn put(
        &self,
        supplier: &str,
        session_id: &str,
        state: &str,
        data: Vec<u8>,
        expected_version: u64,
    ) -> Result<u64, StorageError>;

    /// Deletes the record; with `Some(v)` only if the stored version is `v` (else [`StorageError::Conflict`]).
    /// Returns whether a record was deleted.
    async fn delete(
        &self,
        supplier: &str,
        session_id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StorageError>;

    /// Records filtered by supplier and/or state (`None` = any), ordered by (supplier, session id).
    async fn list(&self, supplier: Option<&str>, state: Option<&str>) -> Result<Vec<SessionRecord>, StorageError>;
}

/// Who leads an election, and with which fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The candidate name that holds the lease.
    pub holder: String,
    /// Fencing token: strictly greater for every new leadership term of the election, never reused.
    pub token: u64,
}

/// A leadership fence: writes made under it succeed only while `candidate` is the live holder of `election` with
/// `token`, checked atomically with the write by the backend (see [`Fencing`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// Election whose lease guards the writes.
    pub election: String,
    /// The candidate that must hold the lease.
    pub candidate: String,
    /// The fencing token it must hold it with (from [`Leadership::campaign`]).
    pub token: u64,
}

impl Fence {
    /// A fence for `candidate` holding `election` with `token`.
    pub fn new(election: impl Into<String>, candidate: impl Into<String>, token: u64) -> Self {
        Self {
            election: election.into(),
            candidate: candidate.into(),
            token,
        }
    }

    /// Whether `holder` (the election's live holder, if any) admits writes under this fence.
    pub fn admits(&self, holder: Option<&LeaderInfo>) -> bool {
        holder.is_some_and(|h| h.holder == self.candidate && h.token == self.token)
    }

    /// Checks `holder` against this fence: `Ok` when it admits writes, else [`StorageError::Fenced`].
    pub fn check(&self, holder: Option<&LeaderInfo>) -> Result<(), StorageError> {
        if self.admits(holder) {
            return Ok(());
        }
        let now = match holder {
            Some(h) => format!("held by {:?} with token {}", h.holder, h.token),
            None => "not held".to_owned(),
        };
        Err(StorageError::Fenced(format!(
            "write fenced off: election {:?} is {now}, not by {:?} with token {}",
            self.election, self.candidate, self.token
        )))
    }
}

/// Fenced views of a backend.
///
/// [`Fencing::fenced`] returns the same backend (same data) whose calls that change shared state first check,
/// atomically with the change, that the fence's candidate is the live holder of its election with its token;
/// when it is not, the call fails with [`StorageError::Fenced`] and changes nothing. What counts as changing
/// shared state: relay-log `append`, `read`, `read_pending`, `claim` (they record deliveries), `ack`,
/// `trim_session`; trie `open`, [`NodeStore::write_batch`] of stores opened
/// through the view, `delete_namespace`; session `put` / `delete`; KV `set` / `set_if_absent` / `increment` /
/// `increment_once` / `delete`; [`WriteSets::write`]. Pure reads and [`Leadership`] calls are not fenced. A fenced call that has nothing to change (an
/// `ack` of ids not pending, a `trim_session` that matches nothing) may return `Ok` without checking. Backends
/// document any exception (Redis: stream deliveries and trie `open` are not fenced, see its `fence` module).
/// The unfenced view (what a backend's `storage()` returns) keeps working for writers without leadership (the
/// relayer).
pub trait Fencing: Send + Sync {
    /// The fenced view of this backend.
    fn fenced(&self, fence: Fence) -> crate::Storage;
}

/// Leader election with fencing tokens, per named election (e.g. `"global"`).
///
/// A lease lasts `ttl` from the last successful campaign/renew. A new holder always gets a token strictly
/// greater than every token handed out before for that election (across restarts, for persistent backends), so
/// downstream writes can reject a stale leader. Backends without real contention (embedded redb) still follow
/// these rules in-process; raft backends may map every election to the raft leader and its term.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Tries to take the lease for `candidate`. Returns `Some(token)` when `candidate` now holds it (a holder
    /// campaigning again keeps its token and extends its lease), `None` when another live holder has it.
    async fn campaign(&self, election: &str, candidate: &str, ttl: Duration) -> Result<Option<u64>, StorageError>;

    /// Extends the lease if `candidate` still holds it with `token`. `false` means leadership is lost.
    async fn renew(&self, election: &str, candidate: &str, token: u64, ttl: Duration) -> Result<bool, StorageError>;

    /// Gives the lease up if `candidate` holds it with `token`. Returns whether it did.
    async fn resign(&self, election: &str, candidate: &str, token: u64) -> Result<bool, StorageError>;

    /// The current live holder, if any.
    async fn leader(&self, election: &str) -> Result<Option<LeaderInfo>, StorageError>;

    /// A receiver that sees leadership changes of `election` (holder or token). Backends observe expiry lazily
    /// or by polling, so a change may show up late by up to the backend's check interval; use
    /// [`Leadership::leader`] or [`Leadership::renew`] before a side effect that needs certainty.
    async fn watch(&self, election: &str) -> Result<watch::Receiver<Option<LeaderInfo>>, StorageError>;
}

/// A small key-value store with TTLs, for caches, meters and dedup.
///
/// Values are bytes; counters are stored as ASCII decimal (so [`KvStore::get`] of a counter reads e.g. `b"42"`).
/// A key with a TTL is invisible once expired.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The live value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Sets `key` to `value`, with `ttl` (`None` = no expiry; replaces any previous TTL).
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StorageError>;

    /// Sets `key` only if it has no live value. Returns whether it was set.
    async fn set_if_absent(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StorageError>;

    /// Adds `delta` to the counter at `key` (missing = 0) and returns the new value. `ttl` applies only when this
    /// call creates the key (a fixed window); an existing key keeps its expiry. A non-integer value is
    /// [`StorageError::Backend`].
    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StorageError>;

    /// [`KvStore::increment`] applied at most once per operation: adds `delta` to the counter at `key` unless
    /// `op`'s writer already applied an operation with a sequence at least `op.seq` to `key`, and returns the
    /// counter's value either way. A caller that lost the answer of an increment (a timeout, a reset
    /// connection: the write may have been applied) retries it with the same `op` and `delta` and counts it once.
    ///
    /// - The writer's last applied sequence is kept in the KV key [`IncrementOnce::marker_key`]`(key)` (ASCII
    ///   decimal), written atomically with the counter, with `ttl` from each applied operation (`None`: no
    ///   expiry); it must outlive the retries. Counter `ttl` as [`KvStore::increment`].
    /// - One writer must send its operations on one key one at a time, in increasing `seq`, and retry an
    ///   operation whose answer it lost before it sends the next one on that key: an operation with a sequence
    ///   not above the last applied one is taken as applied (this is what makes a late copy of an old
    ///   operation, delivered after its retry, harmless).
    /// - A non-integer counter is [`StorageError::Backend`] and changes nothing (nor the marker).
    /// - A backend that cannot apply it at most once right now answers [`StorageError::Conflict`], having
    ///   written nothing: raft while a member runs a build without the `kv-once` feature (a rolling upgrade) or
    ///   is not heard from in the current term (the raft crate's `features` module). The caller may then send
    ///   a delta never sent before with [`KvStore::increment`] (at least once) and must keep retrying an
    ///   operation whose answer it lost with this method.
    async fn increment_once(
        &self,
        key: &str,
        op: &IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StorageError>;

    /// Deletes `key`; returns whether a live value existed.
    async fn delete(&self, key: &str) -> Result<bool, StorageError>;
}

/// Identifies one [`KvStore::increment_once`] operation: its writer and the writer's sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IncrementOnce {
    /// Who sends the operation (unique per process lifetime, e.g. a random id per relay meter): operations of
    /// different writers never dedupe each other. Non-empty, without `:`.
    pub writer: String,
    /// Increasing per writer and key (from 1); at most 2^53 (a Lua number on Redis).
    pub seq: u64,
}

impl IncrementOnce {
    /// The KV key holding the last sequence `self.writer` applied to counter `key`: `{key}:once:{writer}`
    /// (on Redis `{base}:cache:{key}:once:{writer}`, a key the Go fleet never writes).
    pub fn marker_key(&self, key: &str) -> String {
        format!("{key}:once:{}", self.writer)
    }
}

/// One trie namespace's batch in a [`WriteSet`]: what [`NodeStore::write_batch`] of the store
/// [`TrieStore::open`]`(supplier, namespace)` hands out would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrieWrite {
    /// Supplier operator address.
    pub supplier: String,
    /// The namespace as passed to [`TrieStore::open`] (a session id, or a session's derived namespace).
    pub namespace: String,
    /// The nodes to put and delete.
    pub batch: crate::nodes::NodeBatch,
}

/// One session record compare-and-set in a [`WriteSet`], as [`SessionStore::put`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    /// Supplier operator address.
    pub supplier: String,
    /// Session id.
    pub session_id: String,
    /// Lifecycle state.
    pub state: String,
    /// Opaque record body.
    pub data: Vec<u8>,
    /// The version the stored record must have (`0` = must not exist).
    pub expected_version: u64,
}

/// Relay-log entries of one supplier to acknowledge in a [`WriteSet`], as [`RelayLog::ack`] takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAck {
    /// Supplier operator address.
    pub supplier: String,
    /// Entry ids; unknown or already acknowledged ones are ignored.
    pub ids: Vec<EntryId>,
}

/// How soon a [`WriteSet`] must be on disk once [`WriteSets::write`] returned `Ok`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetDurability {
    /// Durable when `write` returns (the default).
    #[default]
    Immediate,
    /// Applied and visible to every reader when `write` returns, durable a little later: redb makes it durable
    /// within `RedbConfig::eventual_sync_within` (1 s), with any later durable write, or at a clean close;
    /// backends that persist every write the same way (Redis, raft, memory) treat it as `Immediate`.
    ///
    /// Only for a set the caller can redo after a crash from what is already durable, and on which nothing
    /// outside storage depended meanwhile: the miner's ingest batch (the relays' trie inserts, their sessions'
    /// totals and the relay-log acks), which a crash leaves unacknowledged, so the relays are delivered and
    /// inserted again. A crash loses only a suffix of the commit order, never part of a set, and never a set
    /// that a later durable write follows (the miner writes its claim and proof records durably before it
    /// sends them).
    Eventual,
}

/// Writes of several parts of the contract applied as one: trie batches, session record compare-and-sets and
/// relay-log acks. See [`WriteSets::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    /// Trie batches, at most one per (supplier, namespace).
    pub tries: Vec<TrieWrite>,
    /// Record writes, at most one per (supplier, session).
    pub records: Vec<RecordWrite>,
    /// Acks, at most one per supplier.
    pub acks: Vec<LogAck>,
    /// How soon the set must be durable ([`SetDurability::Immediate`] unless set).
    pub durability: SetDurability,
}

impl WriteSet {
    /// True when the set writes nothing.
    pub fn is_empty(&self) -> bool {
        self.tries.iter().all(|t| t.batch.is_empty())
            && self.records.is_empty()
            && self.acks.iter().all(|a| a.ids.is_empty())
    }

    /// Refuses a set naming one trie namespace, record or supplier's acks twice ([`StorageError::Backend`]):
    /// every backend applies the parts of a set in its own order, so two writes of one key would be ambiguous.
    pub fn validate(&self) -> Result<(), StorageError> {
        let mut tries = std::collections::HashSet::new();
        let mut records = std::collections::HashSet::new();
        let mut acks = std::collections::HashSet::new();
        let dup = |what: &str, a: &str, b: &str| StorageError::Backend(format!("write set names {what} {a}/{b} twice"));
        for t in &self.tries {
            if !tries.insert((t.supplier.as_str(), t.namespace.as_str())) {
                return Err(dup("trie namespace", &t.supplier, &t.namespace));
            }
        }
        for r in &self.records {
            if !records.insert((r.supplier.as_str(), r.session_id.as_str())) {
                return Err(dup("session record", &r.supplier, &r.session_id));
            }
        }
        for a in &self.acks {
            if !acks.insert(a.supplier.as_str()) {
                return Err(dup("relay log acks of", &a.supplier, ""));
            }
        }
        Ok(())
    }
}

/// What [`WriteSets::write`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSetOutcome {
    /// The new version of each record write, in [`WriteSet::records`] order.
    pub versions: Vec<u64>,
    /// How many entries the acks acknowledged (as the sum of [`RelayLog::ack`]'s results).
    pub acked: u64,
}

/// Several writes in one: the miner's ingest batch (its sessions' trie commits, their records and the relay-log
/// ack) and a step's records, which written one by one cost a durable commit each (on raft, a replicated entry
/// each: a quorum round trip plus an fsync).
#[async_trait]
pub trait WriteSets: Send + Sync {
    /// Applies `set` all or nothing: every trie batch, every record and every ack, or none of them.
    ///
    /// - Each record is a compare-and-set as [`SessionStore::put`]; when any record's stored version differs
    ///   from its expected one, the call fails with [`StorageError::Conflict`] and writes nothing (a caller
    ///   falls back to writing one by one, where it can resolve the conflict).
    /// - A backend that cannot apply the set as one write right now answers [`StorageError::Conflict`] too,
    ///   having written nothing, so the caller writes its parts one by one the same way: raft while a member of
    ///   the cluster runs a build that cannot apply a write-set entry (a rolling upgrade; see the raft crate's
    ///   `features` module). A backend never splits a set itself: a failure half way would leave it in part.
    /// - On a fenced view the fence is checked once, atomically with the whole set ([`Fencing`]).
    /// - A set naming a key twice is refused ([`WriteSet::validate`]). An empty set returns at once.
    /// - On `Err` other than `Conflict` / `Fenced` / a refused set, a crash or a lost connection may leave the
    ///   set applied or not, never in part (Redis: a write command failing inside its script, e.g. on a key of
    ///   the wrong type, keeps the writes before it, which come in the order tries, records, acks, so never an
    ///   ack ahead of its trie; see its `write_set` module).
    ///
    /// A trie namespace must have been opened with [`TrieStore::open`] (through any view) and not deleted since:
    /// a backend that allocates namespaces there (redb) refuses the set otherwise ([`StorageError::Conflict`]).
    /// The tries written here must not have a [`NodeStore`] handle writing the same namespace concurrently
    /// (the miner writes each trie from one task); a backend that mirrors open namespaces (Redis) updates the
    /// mirror once the set is applied.
    async fn write(&self, set: WriteSet) -> Result<WriteSetOutcome, StorageError>;
}
