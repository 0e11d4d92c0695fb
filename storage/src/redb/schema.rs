//! The store-wide schema version of the embedded database: META `schema_version`.
//!
//! Why: the tables (`tables.rs`) and the relay WAL's records (`wal/record.rs`) carry no version of their own, so
//! a binary rolled back after an upgrade that changed a table's encoding would read the newer data as its own and
//! mis-read it silently (records decoded wrong, entries skipped), at worst without a single error. So every open
//! checks the version the database was written with before anything else reads or writes it:
//! - a new database gets [`SCHEMA_VERSION`] in the transaction that creates its tables;
//! - a database without the key (written before it existed) is taken as the current version and gets it written;
//! - a database with a newer version than [`SCHEMA_VERSION`] is refused ([`StorageError::Backend`] naming the
//!   file, both versions and what to do), and nothing is written to it (the open's transaction is dropped).
//!
//! Raise [`SCHEMA_VERSION`] when a change makes the file unreadable to the binaries before it (a table's key or
//! value encoding, a table's meaning); an additive change that older binaries read correctly keeps it.

use std::path::Path;

use redb::{ReadableTable, WriteTransaction};

use super::tables::{META, db_err};
use crate::StorageError;

/// META key of the schema version the database was written with.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The newest schema version this binary reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Checks the schema version of the database being opened in `txn` (at `path`, for the error), writing
/// [`SCHEMA_VERSION`] when it has none. Run it first in the open's transaction, after the identity of a new
/// database is written (`wal::identity::init_new_database` tells a new database by its missing META table).
pub(crate) fn check_and_record(txn: &WriteTransaction, path: &Path) -> Result<(), StorageError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let stored = meta.get(SCHEMA_VERSION_KEY).map_err(db_err)?.map(|g| g.value());
    match stored {
        Some(v) if v > SCHEMA_VERSION => Err(StorageError::Backend(format!(
            "the database {} has schema version {v}, newer than the {SCHEMA_VERSION} this relay-miner supports: it \
             was written by a newer relay-miner and would be mis-read; run that version (or a newer one) on it, or \
             move the file away to start empty (its sessions pending claim or proof are then abandoned)",
            path.display()
        ))),
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        // None: written before the key existed, taken as this version. Older versions: none exist yet; a later
        // raise migrates them here before recording the new version.
        _ => {
            meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION).map_err(db_err)?;
            Ok(())
        }
    }
}
