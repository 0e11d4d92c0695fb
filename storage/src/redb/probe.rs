//! A read-only look at a redb file that this process is not going to open: whether it exists, whether another
//! process holds it, and, for an embedded database, whether it holds live data.
//!
//! Why: `relay-miner run` starting on a new, empty store (a changed `storage.mode`, `data_dir` or working
//! directory) while the old store still holds sessions pending claim or proof abandons them (proofs never sent:
//! slashed). The node checks the data directory before it opens its store (`src/node/storage_mode/guard.rs`),
//! and needs to know what the other stores hold without changing them: [`ReadOnlyDatabase`] opens take a shared
//! lock and write nothing (no repair, no tables created).
//!
//! Cost: one read transaction; the relay log's length is redb's stored count, the session records are walked
//! (one decode each; their number is bounded by the sessions of the last hours, tombstones included).

use std::path::Path;

use redb::{DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableError};

use super::tables::{LOG, SESSIONS, decode_session};

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
}

impl EmbeddedContents {
    /// Any live session record or relay-log entry.
    pub fn is_live(&self) -> bool {
        self.live_sessions > 0 || self.relay_log_entries > 0
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
/// not `tombstone_state` (the miner's "pruned" record of a settled session) and relay-log entries. `Err` is
/// the file's state when it cannot be read (absent, in use, unreadable); a missing table counts as empty.
pub fn probe_embedded(path: &Path, tombstone_state: &str) -> Result<EmbeddedContents, FileState> {
    let unreadable = |e: &dyn std::fmt::Display| FileState::Unreadable(e.to_string());
    let db = open(path)?;
    let txn = db.begin_read().map_err(|e| unreadable(&e))?;
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
    Ok(EmbeddedContents {
        live_sessions,
        relay_log_entries,
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
                relay_log_entries: 3
            }
        );
        assert!(contents.is_live());
        assert!(matches!(probe_file(&path), FileState::Present));
    }
}
