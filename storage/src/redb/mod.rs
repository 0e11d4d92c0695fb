//! The embedded redb backend (the default storage mode): one file, one table per concern, group commit.
//!
//! - Writes go through one dedicated writer thread (`writer` module) that batches concurrent requests into one
//!   `Durability::Immediate` transaction (one fsync) and acknowledges every caller after the commit, so an
//!   acknowledged write survives kill -9.
//! - Relay-log appends (with [`RedbConfig::relay_wal`], the default) go through a write-ahead log instead
//!   (`wal` module): one `pwrite` + `fdatasync` per group into a preallocated segment acknowledges them, and
//!   the writer thread applies them to redb afterwards without an fsync of its own; checkpoints and recovery
//!   at open keep the two consistent. Every other relay-log call first waits until the WAL's durable records
//!   are applied, so reads see every acknowledged append. The WAL is bound to its database by a random identity,
//!   so a WAL left next to a deleted or replaced database file refuses the open instead of being replayed.
//! - Write sets of [`crate::SetDurability::Eventual`] (the miner's ingest batches, which it can redo from the
//!   relay log) commit without an fsync; the writer makes them durable within
//!   [`RedbConfig::eventual_sync_within`] (1 s), with any durable commit before that, or at a clean close.
//! - Crash restarts: with the relay WAL on, durable commits use redb's quick-repair (`writer` module), so the
//!   open after a SIGKILL loads the allocator state instead of walking the whole file (a full repair, whose
//!   time grows with the database); each durable commit (off the append path) pays a second `fsync` for it.
//! - The relay log is indexed by session in the same transactions (`log` module), so `trim_session` reads and
//!   deletes only the session's entries instead of walking the supplier's log inside the writer transaction;
//!   a database written before the index existed is indexed at open.
//! - Reads run on `spawn_blocking` threads with short MVCC read transactions; redb's sync API never runs on a
//!   tokio worker.
//! - Consumer-group state (cursor, pending) lives in memory: after a restart every unacknowledged entry is
//!   delivered again (acknowledged entries are deleted from the log).
//! - Leadership is in-process (this process is the only contender, so it leads once it campaigns); the fencing
//!   token of each election is persisted and incremented per new term, so it increases across restarts.
//! - Fenced views ([`crate::Fencing`]): a fenced write checks its fence against the lease table inside its
//!   writer closure, and a new term is installed in the lease table inside the writer closure that persists its
//!   token, so checks and installs are ordered by the single writer thread: a write either commits no later
//!   than the campaign that deposed its leader, or is refused. Delivery bookkeeping (`read`, `read_pending`,
//!   `claim`) checks the fence under the lease-table lock.
//! - TTL key-value: expiry (wall-clock unix ms) is checked on read and swept periodically.
//! - Readiness (`health` module): a failed relay WAL or a writer that cannot commit makes
//!   [`RedbBackend::readiness`] fail, so `/ready` stops sending relays to a node that cannot record them.
//! - Reopening in place (`open` module): a failed relay WAL, or a redb that refuses every write after an I/O
//!   error (a full disk), is repaired by closing and opening the database under the same backend handle, as
//!   a restart would ([`RedbBackend::reopen`], tried by [`RedbBackend::readiness_recovering`]).
//! - Schema version (`schema` module): META `schema_version` is written with a new database and checked at every
//!   open; a database written by a newer binary (a rollback after an upgrade) is refused instead of mis-read.
//! - Read-only probes (`probe` module): what a database file nobody opens holds (live session records,
//!   relay-log entries), for the node's check that a new store does not abandon another one's data.

mod busy;
mod health;
mod log;
mod open;
mod probe;
mod rest;
mod schema;
mod tables;
mod wal;
mod write_set;
mod writer;

pub use busy::{BUSY_WAIT, create_when_free};
pub use health::NotReady;
pub use probe::{EmbeddedContents, FileState, probe_embedded, probe_file};
pub use schema::SCHEMA_VERSION;
pub use wal::WalStats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use redb::{Database, ReadableDatabase};

use crate::contract::{Fence, Fencing};
use crate::group::GroupState;
use crate::lease::LeaseTable;
use crate::{Storage, StorageError};
use tables::{KV, META, db_err, decode_kv, kv_live, now_ms};

/// Settings of the redb backend.
#[derive(Debug, Clone)]
pub struct RedbConfig {
    /// Database file (created if missing). The relay WAL in `<file name>.wal/` next to it belongs to this file:
    /// if the file is deleted or replaced while that directory is kept, `open` refuses with
    /// [`StorageError::Corrupt`] naming both paths (restore the file, or move the WAL directory away).
    pub path: PathBuf,
    /// redb page cache size in bytes (redb's own default is 1 GiB; ours is 64 MiB).
    pub cache_size_bytes: usize,
    /// How long the writer waits for more requests before committing a group. 0 (the default) commits at once
    /// whatever is queued: requests that arrive while a commit (fsync) runs form the next group, so batches
    /// grow with load and an idle writer adds no latency. A window > 0 trades latency for fewer fsyncs.
    pub group_commit_window: Duration,
    /// Relays (or other writes) gathered into one commit at most.
    pub group_commit_max_entries: usize,
    /// Interval of the TTL sweep (expired KV keys, lapsed leases).
    pub sweep_interval: Duration,
    /// Acknowledge relay-log appends through the write-ahead log in `<db file name>.wal/` (default `true`).
    /// `false` appends with a durable redb commit per group (the slower baseline); a WAL left by an earlier run
    /// is still applied at open, then removed.
    pub relay_wal: bool,
    /// Size of each preallocated WAL segment file (default 16 MiB). A record larger than this gets a segment of
    /// its own size.
    pub wal_segment_bytes: u64,
    /// Checkpoint (one durable redb commit, after which old segments are reused) once this many WAL bytes were
    /// written since the last one (default 256 KiB). Small on purpose: the checkpoint writes out and fsyncs every
    /// redb page dirtied since the last one, and WAL `fdatasync`s issued meanwhile wait for that device flush
    /// (measured here: an 8 MiB checkpoint took 25–35 ms, a 256 KiB one 1.5–2.5 ms).
    pub wal_checkpoint_bytes: u64,
    /// Checkpoint at the latest this long after the first record not yet covered by one (default 1 s).
    pub wal_checkpoint_interval: Duration,
    /// How long applying acknowledged WAL records to redb may wait to batch more records into one
    /// (non-durable) commit (default 10 ms). Relay-log reads, checkpoints and every other write end the wait at
    /// once, so it costs no visible latency; it saves a redb commit per WAL group (at 2,000 relays/s measured
    /// here the writer thread went from 13–15 % to 8 % of a core, ~30 µs of CPU per relay).
    pub wal_apply_delay: Duration,
    /// A write set of [`crate::SetDurability::Eventual`] (the miner's ingest batches) is durable at the latest
    /// this long after `write` returned (default 1 s): the next commit after that is durable, or an empty one
    /// when nothing else comes. A crash loses at most this much of such writes, which the miner then redoes from
    /// the relay log.
    pub eventual_sync_within: Duration,
}

impl RedbConfig {
    /// Defaults for `path`: 64 MiB cache, group commit without a window and at most 512 entries, 30 s sweep,
    /// relay WAL on with 16 MiB segments, a checkpoint every 256 KiB or 1 s, applies batched for 10 ms, and
    /// eventual write sets durable within 1 s.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_size_bytes: 64 << 20,
            group_commit_window: Duration::ZERO,
            group_commit_max_entries: 512,
            sweep_interval: Duration::from_secs(30),
            relay_wal: true,
            wal_segment_bytes: 16 << 20,
            wal_checkpoint_bytes: 256 << 10,
            wal_checkpoint_interval: Duration::from_secs(1),
            wal_apply_delay: Duration::from_millis(10),
            eventual_sync_within: Duration::from_secs(1),
        }
    }
}

pub(crate) struct Inner {
    /// The open database with its writer thread and relay WAL; `None` while it is being reopened, or when
    /// reopening it failed (see `open.rs`).
    files: RwLock<Option<Arc<open::Files>>>,
    /// What reopening needs, the retry schedule and the reopen metrics.
    reopen: open::Reopen,
    groups: Mutex<HashMap<String, GroupState>>,
    /// Leases; locked briefly (never across an await), also from the writer thread.
    leases: Arc<Mutex<LeaseTable>>,
    /// Serialises campaign / renew / resign (a campaign spans a writer round trip).
    lease_ops: tokio::sync::Mutex<()>,
}

impl Inner {
    /// The open database (`Unavailable` while it is being reopened).
    fn files(&self) -> Result<Arc<open::Files>, StorageError> {
        self.files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| self.reopen.closed())
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, GroupState>> {
        // Poisoning follows a panic elsewhere; the bookkeeping is still usable (worst case: redelivery).
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leases(&self) -> MutexGuard<'_, LeaseTable> {
        lock_leases(&self.leases)
    }
}

fn lock_leases(leases: &Mutex<LeaseTable>) -> MutexGuard<'_, LeaseTable> {
    leases.lock().unwrap_or_else(|e| e.into_inner())
}

/// A view's fence plus the lease table to check it against; moved into writer closures.
#[derive(Clone)]
pub(crate) struct FenceCheck {
    leases: Arc<Mutex<LeaseTable>>,
    fence: Option<Arc<Fence>>,
    now: tokio::time::Instant,
}

impl FenceCheck {
    /// `Ok` for an unfenced view or a fence whose candidate holds its election with its token.
    pub(crate) fn check(&self) -> Result<(), StorageError> {
        self.hold().map(drop)
    }

    /// Checks like [`FenceCheck::check`] and keeps the lease table locked (no campaign can install a new term)
    /// while the guard lives; `None` for an unfenced view.
    pub(crate) fn hold(&self) -> Result<Option<MutexGuard<'_, LeaseTable>>, StorageError> {
        let Some(f) = &self.fence else {
            return Ok(None);
        };
        let leases = lock_leases(&self.leases);
        leases.check(f, self.now)?;
        Ok(Some(leases))
    }

    /// Whether this check carries a fence (an unfenced view needs no lease lock).
    pub(crate) fn is_fenced(&self) -> bool {
        self.fence.is_some()
    }

    /// Checks like [`FenceCheck::check`] against a lease table the caller already locked.
    pub(crate) fn check_locked(&self, leases: &LeaseTable) -> Result<(), StorageError> {
        match &self.fence {
            Some(f) => leases.check(f, self.now),
            None => Ok(()),
        }
    }
}

/// The redb backend (cheap to clone; clones share the database and writer).
#[derive(Clone)]
pub struct RedbBackend {
    inner: Arc<Inner>,
    /// The fence of this view's writes (`None` = unfenced).
    fence: Option<Arc<Fence>>,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend").finish_non_exhaustive()
    }
}

impl RedbBackend {
    /// Opens (or creates) the database, creates every table, starts the writer thread and the sweep task.
    /// Must be called inside a tokio runtime.
    pub async fn open(config: RedbConfig) -> Result<Self, StorageError> {
        Self::open_inner(config, wal::fault::FaultHook::none()).await
    }

    /// [`RedbBackend::open`] with a relay WAL whose writes, syncs and applies fail as `faults` says.
    #[cfg(test)]
    pub(crate) async fn open_with_faults(
        config: RedbConfig,
        faults: wal::fault::FaultHook,
    ) -> Result<Self, StorageError> {
        Self::open_inner(config, faults).await
    }

    async fn open_inner(config: RedbConfig, faults: wal::fault::FaultHook) -> Result<Self, StorageError> {
        let leases = Arc::new(Mutex::new(LeaseTable::default()));
        let wal_stats = if config.relay_wal {
            Some(WalStats::new().map_err(|e| StorageError::Backend(format!("relay WAL metrics: {e}")))?)
        } else {
            None
        };
        let files = open::open_files(&config, &faults, wal_stats.as_ref(), &leases).await?;
        let inner = Arc::new(Inner {
            files: RwLock::new(Some(Arc::new(files))),
            reopen: open::Reopen::new(config.clone(), faults, wal_stats)?,
            groups: Mutex::new(HashMap::new()),
            leases,
            lease_ops: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(sweep_loop(Arc::downgrade(&inner), config.sweep_interval));
        Ok(Self { inner, fence: None })
    }

    /// The bundle of every contract trait served by this backend.
    pub fn storage(&self) -> Storage {
        Storage::from_backend("redb", Arc::new(self.clone()), self.fence.as_deref().cloned())
    }

    /// This view's fence check as of now (run it inside the writer closure).
    pub(crate) fn fence_check(&self) -> FenceCheck {
        FenceCheck {
            leases: self.inner.leases.clone(),
            fence: self.fence.clone(),
            now: tokio::time::Instant::now(),
        }
    }

    /// A fence check that always passes (for the backend's own writes, such as readiness probes).
    pub(crate) fn unfenced_check(&self) -> FenceCheck {
        FenceCheck {
            leases: self.inner.leases.clone(),
            fence: None,
            now: tokio::time::Instant::now(),
        }
    }

    /// The relay WAL's metrics (`None` with `relay_wal = false`), for the process's Prometheus registry.
    pub fn wal_stats(&self) -> Option<WalStats> {
        self.inner.reopen.wal_stats().cloned()
    }

    /// Every metric of the backend, for the process's Prometheus registry: the relay WAL's
    /// ([`RedbBackend::wal_stats`]) and `ha_storage_redb_reopens_total{result}` (in-place reopens).
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.inner.reopen.collectors()
    }

    /// In-place reopens so far that succeeded (`ok = true`) or failed.
    pub fn reopens(&self, ok: bool) -> u64 {
        self.inner.reopen.reopens(ok)
    }

    /// Deletes expired KV keys now and expires lapsed leases (the sweep task does this periodically).
    /// Returns how many keys were deleted.
    pub async fn sweep(&self) -> Result<u64, StorageError> {
        sweep_once(&self.inner).await
    }

    /// Waits until every relay-log append acknowledged before this call is applied to redb (a no-op without
    /// the WAL). Every relay-log call but `append` starts with it.
    async fn wal_caught_up(&self) -> Result<(), StorageError> {
        match &self.inner.files()?.wal {
            Some(wal) => wal.caught_up().await,
            None => Ok(()),
        }
    }

    /// Runs `f` with the database on a blocking thread (for reads).
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(join_err)?
    }
}

fn join_err(e: tokio::task::JoinError) -> StorageError {
    StorageError::Backend(format!("blocking storage task failed: {e}"))
}

/// Reads a META counter in a fresh read transaction (0 when absent).
fn read_meta(db: &Database, key: &str) -> Result<u64, StorageError> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(META).map_err(db_err)?;
    Ok(table.get(key).map_err(db_err)?.map_or(0, |g| g.value()))
}

async fn sweep_once(inner: &Arc<Inner>) -> Result<u64, StorageError> {
    inner.leases().expire_all(tokio::time::Instant::now());
    let now = now_ms();
    inner
        .files()?
        .writer
        .call(1, move |txn| {
            let mut table = txn.open_table(KV).map_err(db_err)?;
            let mut removed = 0u64;
            table
                .retain(|_, v| {
                    let live = decode_kv(v).map_or(true, |(exp, _)| kv_live(exp, now));
                    if !live {
                        removed += 1;
                    }
                    live
                })
                .map_err(db_err)?;
            Ok(Ok(removed))
        })
        .await
}

async fn sweep_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = sweep_once(&inner).await {
            tracing::warn!(error = %e, "redb TTL sweep failed");
        }
    }
}

impl Fencing for RedbBackend {
    fn fenced(&self, fence: Fence) -> Storage {
        Self {
            inner: self.inner.clone(),
            fence: Some(Arc::new(fence)),
        }
        .storage()
    }
}
