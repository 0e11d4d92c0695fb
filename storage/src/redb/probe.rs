//! A read-only look at a redb file that this process is not going to open: whether it exists, whether another
//! process holds it, and, for an embedded database, whether it holds live data.
//!
//! Why: `relay-miner run` starting on a new, empty store (a changed `storage.mode`, `data_dir` or working
//! directory) while the old store still holds sessions pending claim or proof abandons them (proofs never sent:
//! slashed). The node checks the data directory before it opens its store (`src/node/storage_mode/guard.rs`),
//! and needs to know what the other stores hold without changing them: [`ReadOnlyDatabase`] opens take a shared
//! lock and write nothing (no repair, no tables created).
//!
//! Relays only in the relay WAL (`<file>.wal/`, the `wal` module) count as relay-log entries too: an
//! acknowledged relay is durable in a WAL record before redb holds it, and redb's copy is durable only at the
//! next checkpoint, so after a crash (or a failed apply) the WAL's records newer than META `wal_applied` are the
//! only copy of those relays, and redb (whose last durable commit saved its allocator state, so it opens
//! read-only without a repair) shows none of them. The WAL is read only while the database is open here (its
//! shared lock keeps a writable open, whose recovery rewrites the WAL, out). A WAL without its database (the
//! file deleted) is not read: without `wal_applied`, its already applied records cannot be told from the others.
//!
//! Cost: one read transaction; the relay log's length is redb's stored count, the session records are walked
//! (one decode each; their number is bounded by the sessions of the last hours, tombstones included); the WAL
//! segments are read whole (two of `wal_segment_bytes` after a clean close, more after a crash).

use std::path::Path;

use redb::{DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableError};

use super::tables::{LOG, META, SESSIONS, decode_session};
use super::wal::{WAL_APPLIED, pending_relays, wal_dir};

/// What [`probe_file`] found at a path.
#[derive(Debug)]
pub enum FileState {
    /// No file there.
    Absent,
    /// Another process (or another handle in this one) has the database open.
    InUse,
    /// A database nobody holds, readable.
    Present,
    /// A file that cannot be opened read-only: not closed cleanly (redb would repair it at a writable open),
    /// not a redb file, or unreadable; says why.
    Unreadable(String),
}

/// What [`probe_embedded`] found in an embedded database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedContents {
    /// Session records whose state is not the tombstone state.
    pub live_sessions: u64,
    /// Relay-log entries (acknowledged relays not yet trimmed).
    pub relay_log_entries: u64,
    /// Acknowledged relays only in the relay WAL: in its records newer than META `wal_applied`, not yet in the
    /// database's relay log.
    pub wal_relays: u64,
}

impl EmbeddedContents {
    /// Any live session record or relay-log entry.
    pub fn is_live(&self) -> bool {
        self.live_sessions > 0 || self.relay_log_entries > 0 || self.wal_relays > 0
    }
}

fn open(path: &Path) -> Result<ReadOnlyDatabase, FileState> {
    if !path.exists() {
        return Err(FileState::Absent);
    }
    match ReadOnlyDatabase::open(path) {
        Ok(db) => Ok(db),
        Err(DatabaseError::DatabaseAlreadyOpen) => Err(FileState::InUse),
        Err(DatabaseError::RepairAborted) => Err(FileState::Unreadable(
            "it was not closed cleanly (a crash): it can only be read after a repair, which a writable open does"
                .into(),
        )),
        Err(e) => Err(FileState::Unreadable(e.to_string())),
    }
}

/// Whether a redb file exists at `path` and can be opened (read-only, changing nothing).
pub fn probe_file(path: &Path) -> FileState {
    match open(path) {
        Ok(_) => FileState::Present,
        Err(state) => state,
    }
}

/// Opens the embedded database at `path` read-only and counts its live data: session records whose state is
/// not `tombstone_state` (the miner's "pruned" record of a settled session), relay-log entries, and relays
/// only in its relay WAL (module docs). `Err` is the file's state when it cannot be read (absent, in use,
/// unreadable; a WAL that cannot be read or holds a corrupt acknowledged record makes it unreadable); a missing
/// table counts as empty.
pub fn probe_embedded(path: &Path, tombstone_state: &str) -> Result<EmbeddedContents, FileState> {
    let unreadable = |e: &dyn std::fmt::Display| FileState::Unreadable(e.to_string());
    let db = open(path)?;
    let txn = db.begin_read().map_err(|e| unreadable(&e))?;
    let wal_applied = match txn.open_table(META) {
        Ok(table) => table
            .get(WAL_APPLIED)
            .map_err(|e| unreadable(&e))?
            .map_or(0, |g| g.value()),
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(unreadable(&e)),
    };
    let wal = wal_dir(path).map_err(|e| unreadable(&e))?;
    // `db` stays open (its shared lock) until the WAL is read.
    let wal_relays = pending_relays(&wal, wal_applied)
        .map_err(|e| FileState::Unreadable(format!("its relay WAL {}: {e}", wal.display())))?;
    let relay_log_entries = match txn.open_table(LOG) {
        Ok(table) => table.len().map_err(|e| unreadable(&e))?,
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(unreadable(&e)),
    };
    let mut live_sessions = 0;
    match txn.open_table(SESSIONS) {
        Ok(table) => {
            for item in table.iter().map_err(|e| unreadable(&e))? {
                let (_, value) = item.map_err(|e| unreadable(&e))?;
                let (_, state, _) = decode_session(value.value()).map_err(|e| unreadable(&e))?;
                if state != tombstone_state {
                    live_sessions += 1;
                }
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(unreadable(&e)),
    }
    drop(txn);
    drop(db);
    Ok(EmbeddedContents {
        live_sessions,
        relay_log_entries,
        wal_relays,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::suite;
    use crate::{RedbBackend, RedbConfig};

    /// Counts what the backend wrote: live records apart from tombstones, relay-log entries; absent and in-use
    /// files are told apart from readable ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_live_records_and_relay_log_entries_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        assert!(matches!(probe_file(&path), FileState::Absent));
        let b = RedbBackend::open(RedbConfig::new(&path)).await.unwrap();
        assert!(matches!(probe_file(&path), FileState::InUse));
        let s = b.storage();
        s.sessions
            .put("pokt1a", "s1", "active", b"x".to_vec(), 0)
            .await
            .unwrap();
        s.sessions
            .put("pokt1a", "s2", "pruned", b"x".to_vec(), 0)
            .await
            .unwrap();
        s.sessions
            .put("pokt1b", "s3", "claimed", b"x".to_vec(), 0)
            .await
            .unwrap();
        s.relay_log
            .append((0..3).map(|n| suite::relay("pokt1a", "s1", n)).collect())
            .await
            .unwrap();
        drop(s);
        drop(b);
        let contents = suite::poll_until("the database is released", || async {
            probe_embedded(&path, "pruned").ok()
        })
        .await;
        assert_eq!(
            contents,
            EmbeddedContents {
                live_sessions: 2,
                relay_log_entries: 3,
                wal_relays: 0,
            }
        );
        assert!(contents.is_live());
        assert!(matches!(probe_file(&path), FileState::Present));
    }

    /// Relays acknowledged through the relay WAL whose apply to redb failed (like those of a crash before a
    /// checkpoint made redb's copy durable) are live data: redb's relay log holds none of them, the WAL's
    /// records newer than META `wal_applied` do. Once a writable open recovered them into redb they are counted
    /// once, as relay-log entries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_only_in_the_relay_wal_are_live_data() {
        use super::super::wal::fault::{Fault, FaultHook, Site};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.redb");
        let hook = FaultHook::new(|site| (site == Site::Apply(2)).then_some(Fault::Instead));
        let b = RedbBackend::open_with_faults(RedbConfig::new(&path), hook)
            .await
            .unwrap();
        let s = b.storage();
        s.relay_log.append(vec![suite::relay("pokt1a", "s1", 0)]).await.unwrap();
        assert_eq!(
            s.relay_log.backlog("pokt1a").await.unwrap().undelivered,
            1,
            "record 1 applied"
        );
        s.relay_log
            .append((1..4).map(|n| suite::relay("pokt1a", "s1", n)).collect())
            .await
            .unwrap();
        drop(s);
        drop(b);
        let probe = || async { probe_embedded(&path, "pruned").ok() };
        let contents = suite::poll_until("the database is released", probe).await;
        assert_eq!(
            contents,
            EmbeddedContents {
                live_sessions: 0,
                relay_log_entries: 1,
                wal_relays: 3,
            }
        );
        drop(RedbBackend::open(RedbConfig::new(&path)).await.unwrap());
        let contents = suite::poll_until("the database is released", probe).await;
        assert_eq!(
            contents,
            EmbeddedContents {
                live_sessions: 0,
                relay_log_entries: 4,
                wal_relays: 0,
            },
            "recovered into redb, counted once"
        );
    }
}
