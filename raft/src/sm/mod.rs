//! The raft state machine on its own redb file (separate from the log, so applies never delay log fsyncs).
//!
//! `apply` writes a whole batch of entries in one `Durability::Immediate` transaction (ops in `apply.rs`); the
//! applied log id and last membership live in the same transaction, so the file is always consistent with what
//! it reports. Snapshots are files in the node's snapshot directory (`snapshot.rs`). Reads for the storage
//! contract go through [`SmReader`] ([`read`]), straight from redb read transactions.

pub(crate) mod apply;
pub mod read;
pub(crate) mod snapshot;
mod sweep;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use redb::{Database, Durability, ReadableDatabase};

use crate::types::{
    Entry, LogId, Response, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig, decode, encode,
};
pub use read::SmReader;

pub(crate) const K_APPLIED: &str = "applied";
pub(crate) const K_MEMBERSHIP: &str = "membership";

pub(crate) fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

struct Inner {
    db: Arc<Database>,
    dir: PathBuf,
    /// The newest snapshot file and its meta.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    next_unique: AtomicU64,
}

impl Inner {
    fn current(&self) -> MutexGuard<'_, Option<(SnapshotMeta, PathBuf)>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `(meta, path)` the current snapshot if it is newer, and deletes older snapshot files.
    fn set_current(&self, meta: SnapshotMeta, path: PathBuf) {
        let mut cur = self.current();
        let newer = cur.as_ref().is_none_or(|(m, _)| m.last_log_id <= meta.last_log_id);
        if !newer {
            let _ = std::fs::remove_file(&path);
            return;
        }
        if let Some((_, old)) = cur.replace((meta, path))
            && cur.as_ref().is_some_and(|(_, p)| *p != old)
        {
            // Open handles (a transfer in flight) keep the old file's data alive.
            let _ = std::fs::remove_file(old);
        }
    }
}

/// The redb-backed raft state machine (cheap to clone).
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
    stats: Option<crate::RaftStats>,
}

impl StateMachine {
    /// Opens (or creates) the state machine file `dir/state.redb` and the snapshot directory `dir/snapshots`. A
    /// file of a newer schema version than this binary's is refused (`InvalidData`, [`crate::SCHEMA_VERSION`]).
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let snap_dir = dir.join("snapshots");
        std::fs::create_dir_all(&snap_dir)?;
        let path = dir.join("state.redb");
        let db = Arc::new(
            storage::redb::create_when_free(
                redb::Builder::new().set_cache_size(crate::log_store::REDB_CACHE_BYTES),
                &path,
                storage::redb::BUSY_WAIT,
                |_| {},
            )
            .map_err(io_err)?,
        );
        {
            let txn = db.begin_write().map_err(io_err)?;
            // Before anything reads the state: a newer binary's file is refused, writing nothing
            // (`crate::schema`).
            crate::schema::check_and_record(&txn, apply::META, &path)?;
            txn.open_table(apply::META).map_err(io_err)?;
            txn.open_table(apply::RELAYS).map_err(io_err)?;
            txn.open_table(apply::RELAY_SESSIONS).map_err(io_err)?;
            txn.open_table(apply::SEQS).map_err(io_err)?;
            txn.open_table(apply::SESSIONS).map_err(io_err)?;
            txn.open_table(apply::KV).map_err(io_err)?;
            txn.open_table(apply::NODES).map_err(io_err)?;
            txn.open_table(apply::LEASES).map_err(io_err)?;
            txn.commit().map_err(io_err)?;
        }
        // Find the newest complete snapshot file; drop leftovers.
        let mut newest: Option<(u64, PathBuf)> = None;
        for e in std::fs::read_dir(&snap_dir)? {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(n) = name
                .strip_prefix("snapshot-")
                .and_then(|r| r.strip_suffix(".snap"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                if let Some((_, old)) = newest.replace((n, path)) {
                    let _ = std::fs::remove_file(old);
                }
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        let (current, next) = match newest {
            Some((n, path)) => (Some((snapshot::open_current(&path)?, path)), n + 1),
            None => (None, 1),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                dir: snap_dir,
                current: Mutex::new(current),
                next_unique: AtomicU64::new(next),
            }),
            stats: None,
        })
    }

    /// Counts snapshots built and installed in `stats`.
    pub fn with_stats(mut self, stats: crate::RaftStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// A reader over the applied state, for the storage contract.
    pub fn reader(&self) -> SmReader {
        SmReader::new(self.inner.db.clone())
    }

    fn unique(&self) -> u64 {
        self.inner.next_unique.fetch_add(1, Ordering::Relaxed)
    }
}

/// Builds snapshots from a read transaction of the state machine.
pub struct SnapshotBuilder {
    sm: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let inner = self.sm.inner.clone();
        let unique = self.sm.unique();
        let (meta, path) = tokio::task::spawn_blocking(move || snapshot::build(&inner.db, &inner.dir, unique))
            .await
            .map_err(io_err)??;
        let file = File::open(&path)?;
        self.sm.inner.set_current(meta.clone(), path);
        if let Some(stats) = &self.sm.stats {
            stats.snapshot("built");
        }
        Ok(Snapshot { meta, snapshot: file })
    }
}

fn apply_batch(db: &Database, entries: &[Entry]) -> io::Result<Vec<Response>> {
    let mut txn = db.begin_write().map_err(io_err)?;
    txn.set_durability(Durability::Immediate).map_err(io_err)?;
    let mut out = Vec::with_capacity(entries.len());
    let mut last_membership: Option<StoredMembership> = None;
    for e in entries {
        let log_id = e.log_id();
        match &e.payload {
            EntryPayload::Blank => out.push(Response::default()),
            EntryPayload::Normal(req) => {
                let term = log_id.leader_id.term;
                let mut results = Vec::with_capacity(req.ops.len());
                for op in &req.ops {
                    results.push(apply::apply_op(&txn, term, req.now_ms, op).map_err(io_err)?);
                }
                out.push(Response { results });
            }
            EntryPayload::Membership(m) => {
                last_membership = Some(StoredMembership::new(Some(log_id), m.clone()));
                out.push(Response::default());
            }
        }
    }
    {
        let mut meta = txn.open_table(apply::META).map_err(io_err)?;
        if let Some(last) = entries.last() {
            meta.insert(K_APPLIED, encode(&Some(last.log_id()))?.as_slice())
                .map_err(io_err)?;
        }
        if let Some(m) = last_membership {
            meta.insert(K_MEMBERSHIP, encode(&m)?.as_slice()).map_err(io_err)?;
        }
    }
    txn.commit().map_err(io_err)?;
    Ok(out)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let txn = self.inner.db.begin_read().map_err(io_err)?;
        let meta = txn.open_table(apply::META).map_err(io_err)?;
        let applied: Option<LogId> = match meta.get(K_APPLIED).map_err(io_err)? {
            Some(v) => decode(v.value())?,
            None => None,
        };
        let membership: StoredMembership = match meta.get(K_MEMBERSHIP).map_err(io_err)? {
            Some(v) => decode(v.value())?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch.push(entry);
            responders.push(responder);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let db = self.inner.db.clone();
        let responses = tokio::task::spawn_blocking(move || apply_batch(&db, &batch))
            .await
            .map_err(io_err)??;
        for (resp, responder) in responses.into_iter().zip(responders) {
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    async fn install_snapshot(&mut self, _meta: &SnapshotMeta, mut snapshot: SnapshotData) -> Result<(), io::Error> {
        let inner = self.inner.clone();
        let unique = self.unique();
        let (meta, path) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            use std::io::Seek;
            // Keep our own copy: it becomes the current snapshot served to others.
            let tmp = inner.dir.join(format!("snapshot-{unique}.tmp"));
            let path = inner.dir.join(format!("snapshot-{unique}.snap"));
            snapshot.seek(io::SeekFrom::Start(0))?;
            {
                let mut out = File::create(&tmp)?;
                io::copy(&mut snapshot, &mut out)?;
                out.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            let mut file = File::open(&path)?;
            let meta = snapshot::install(&inner.db, &mut file)?;
            Ok((meta, path))
        })
        .await
        .map_err(io_err)??;
        self.inner.set_current(meta, path);
        if let Some(stats) = &self.stats {
            stats.snapshot("installed");
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // Opened under the lock: a build finishing meanwhile (`set_current`, openraft runs builds on their own
        // task) deletes the file it replaces; opened after, the path could be gone, and the `NotFound` stopped the
        // state-machine worker and with it the raft core (the node out until restarted). An open handle keeps a
        // replaced file's data for the transfer.
        let cur = self.inner.current();
        match cur.as_ref() {
            Some((meta, path)) => Ok(Some(Snapshot {
                meta: meta.clone(),
                snapshot: File::open(path)?,
            })),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
