//! The schema version of a raft node's redb files: META `schema_version` in the raft log (`log.redb`) and in
//! the state machine (`sm/state.redb`).
//!
//! Why: the log's entries (postcard-encoded [`crate::types::Entry`], holding the replicated ops) and the state
//! machine's tables carry no version of their own, so a binary rolled back after an upgrade that changed an
//! encoding would read the newer files as its own and mis-read them (entries that fail to decode stop the
//! node; values that decode wrong go unnoticed). So every open checks the version each file was written with
//! before anything else reads or writes it, as the embedded store does (`storage::redb`, `schema` module):
//! - a new file gets [`SCHEMA_VERSION`] in the transaction that creates its tables;
//! - a file without the key (written before it existed) is taken as the current version and gets it written;
//! - a file with a newer version than [`SCHEMA_VERSION`] is refused (an `InvalidData` error naming the file,
//!   both versions and what to do), and nothing is written to it (the open's transaction is dropped).
//!
//! One version covers both files (they are one store: the state machine is the log applied). Raise it when a
//! change makes either file unreadable to the binaries before it (an entry's, a table's key or value encoding,
//! a table's meaning); an additive change that older binaries read correctly keeps it. What peers send each
//! other (entries, snapshots) is a separate question, settled by [`crate::features`].

use std::io;
use std::path::Path;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::types::{decode, encode};

/// META key of the schema version a file was written with (a postcard-encoded `u64`).
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The newest schema version of the raft files this binary reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Checks the schema version of the file at `path` (named in the error) being opened in `txn`, whose META
/// table is `meta`, writing [`SCHEMA_VERSION`] when it has none. Run it in the open's transaction, before it
/// commits; on `Err` the caller drops the transaction.
pub(crate) fn check_and_record(
    txn: &WriteTransaction,
    meta: TableDefinition<&str, &[u8]>,
    path: &Path,
) -> io::Result<()> {
    let mut table = txn.open_table(meta).map_err(io::Error::other)?;
    let stored = match table.get(SCHEMA_VERSION_KEY).map_err(io::Error::other)? {
        Some(v) => Some(decode::<u64>(v.value()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: META {SCHEMA_VERSION_KEY} cannot be read: {e}", path.display()),
            )
        })?),
        None => None,
    };
    match stored {
        Some(v) if v > SCHEMA_VERSION => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the raft file {} has schema version {v}, newer than the {SCHEMA_VERSION} this relay-miner \
                 supports: it was written by a newer relay-miner and would be mis-read; run that version (or a \
                 newer one) on this node, or remove this node from its cluster and start it under a new node id \
                 on an empty directory",
                path.display()
            ),
        )),
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        // None: written before the key existed, taken as this version. Older versions: none exist yet; a later
        // raise migrates them here before recording the new version.
        _ => {
            table
                .insert(SCHEMA_VERSION_KEY, encode(&SCHEMA_VERSION)?.as_slice())
                .map_err(io::Error::other)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::{Path, PathBuf};

    use redb::{Database, ReadableDatabase};

    use super::*;
    use crate::{LogStore, StateMachine};

    const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

    /// Opens `path` writable once this process released it (a store's threads end after its last handle).
    async fn reopen(path: &Path) -> Database {
        storage::suite::poll_until("the raft file is released", || async {
            match Database::create(path) {
                Ok(db) => Some(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => None,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        })
        .await
    }

    /// The schema version stored in `path`'s META (`None`: no key).
    async fn stored(path: &Path) -> Option<u64> {
        let db = reopen(path).await;
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(LOG_META).unwrap();
        meta.get(SCHEMA_VERSION_KEY)
            .unwrap()
            .map(|v| decode::<u64>(v.value()).unwrap())
    }

    /// Sets (`Some`) or removes (`None`) the schema version of `path`.
    async fn set(path: &Path, version: Option<u64>) {
        let db = reopen(path).await;
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(LOG_META).unwrap();
            match version {
                Some(v) => meta.insert(SCHEMA_VERSION_KEY, encode(&v).unwrap().as_slice()).unwrap(),
                None => meta.remove(SCHEMA_VERSION_KEY).unwrap(),
            };
        }
        txn.commit().unwrap();
    }

    /// Runs the version rules against one of the node's files: `open` opens the store (dropped at once),
    /// `file` is its redb file.
    async fn version_rules(file: PathBuf, open: impl Fn() -> std::io::Result<()>) {
        open().unwrap();
        assert_eq!(
            stored(&file).await,
            Some(SCHEMA_VERSION),
            "a new file records the version"
        );
        set(&file, None).await;
        open().unwrap();
        assert_eq!(
            stored(&file).await,
            Some(SCHEMA_VERSION),
            "a file from before the key is taken as current and gets it"
        );
        set(&file, Some(SCHEMA_VERSION + 1)).await;
        let err = match open() {
            Ok(()) => panic!("a file of schema version {} was opened", SCHEMA_VERSION + 1),
            Err(e) => e,
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let msg = err.to_string();
        for part in [
            file.display().to_string(),
            format!("schema version {}", SCHEMA_VERSION + 1),
            format!("the {SCHEMA_VERSION} this relay-miner supports"),
        ] {
            assert!(msg.contains(&part), "`{part}` missing from: {msg}");
        }
        assert_eq!(
            stored(&file).await,
            Some(SCHEMA_VERSION + 1),
            "the refused file is left as it was"
        );
    }

    /// The raft log: a new log records the schema version, one without it gets it, a newer one is refused
    /// naming the file and both versions, and is left unchanged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_raft_log_records_its_schema_version_and_refuses_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log.redb");
        let path = file.clone();
        version_rules(file, move || LogStore::open(&path).map(drop)).await;
    }

    /// The state machine: the same rules for `sm/state.redb`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_state_machine_records_its_schema_version_and_refuses_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let sm = dir.path().join("sm");
        let file = sm.join("state.redb");
        version_rules(file, move || StateMachine::open(&sm).map(drop)).await;
    }
}
