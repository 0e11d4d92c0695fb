//! Binds the relay WAL to its database, so that a WAL is never replayed into a database it was not written
//! with (an operator deleted or replaced the `.redb` file but kept `<db file>.wal/`).
//!
//! Why: recovery applies every valid record newer than the database's META `wal_applied`. A fresh database
//! has `wal_applied = 0`, so without a binding an orphaned WAL would pour old relays into it; another
//! database's `wal_applied` is just as meaningless for this WAL. Dropping the WAL instead could lose
//! acknowledged relays. So the pair is checked and a mismatch refuses to open; the operator decides.
//!
//! On disk:
//! - META `db_id` (u64, never 0): a random identity written in the transaction that creates the database's
//!   tables (a database created before identities existed gets one on its first open, see below);
//! - `identity/wal-id` in the WAL directory: the text line `relay-miner relay WAL of database <16 hex digits>\n`,
//!   written as `identity/wal-id.new` (file and directories fsynced) and then renamed. It sits in a
//!   subdirectory because versions before identities skip directories in the WAL directory but delete every
//!   file that is not a segment they keep: running one of them in between (a downgrade) leaves the binding in
//!   place instead of turning the WAL into an unbound one that the next upgrade refuses.
//!
//! At open, with `d` the database's identity, `w` the WAL's, and "records" = the WAL holds any valid record:
//!
//! | database | WAL               | outcome                                                              |
//! |----------|-------------------|----------------------------------------------------------------------|
//! | `d`      | `w == d`          | recover as usual                                                     |
//! | `d`      | `w != d`          | refuse                                                               |
//! | `d`      | none, no records  | bind the WAL to `d` (a new or empty WAL directory)                   |
//! | `d`      | none, records     | refuse (a WAL of an older layout next to a database it did not see)  |
//! | none     | `w`               | refuse (a bound WAL next to a database without identity)             |
//! | none     | none              | upgrade: bind both to a new identity, then recover as usual           |
//!
//! The upgrade writes `wal-id.new`, then commits META `db_id` durably, then renames `wal-id.new` to
//! `wal-id`, so no crash can leave a pair that refuses to open: a `wal-id.new` matching the database's
//! identity is finished (renamed), one next to a database without identity was never adopted and is
//! discarded, one naming another identity counts as the WAL's (refuse). Binding a new WAL to an existing
//! identity goes the same way. A database and WAL that both predate identities are trusted to belong together
//! on that first open (there is nothing to compare); every later open checks.
//!
//! A refusal changes nothing in the WAL directory and replays nothing; its [`StorageError::Corrupt`] names
//! both paths and says what to do.

use std::fs::OpenOptions;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::Path;

use redb::{Database, Durability, TableHandle, WriteTransaction};

use super::io_err;
use super::segment::sync_dir;
use crate::StorageError;
use crate::redb::read_meta;
use crate::redb::tables::{META, db_err};

/// META key: the database's identity (0 or absent = none yet).
pub(crate) const DB_ID: &str = "db_id";
/// The subdirectory of the WAL directory holding the binding (recovery reads files only, not directories).
const ID_DIR: &str = "identity";
/// The WAL's binding to a database identity.
const ID_FILE: &str = "wal-id";
/// A binding being written (see the module docs for how a crash around it is settled).
const PENDING_FILE: &str = "wal-id.new";
const PREFIX: &str = "relay-miner relay WAL of database ";

/// A random non-zero identity (std's `RandomState` is seeded from the OS's randomness).
pub(crate) fn new_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut salt = 0u64;
    loop {
        let id = RandomState::new().hash_one((nanos, std::process::id(), salt));
        if id != 0 {
            return id;
        }
        salt += 1;
    }
}

/// Gives a database whose tables are being created in `txn` its identity. Call it before the tables are
/// opened: a database that already has the META table predates this open and is left alone (it has an
/// identity already, or it is upgraded by [`settle`]).
pub(crate) fn init_new_database(txn: &WriteTransaction) -> Result<(), StorageError> {
    let fresh = txn.list_tables().map_err(db_err)?.all(|t| t.name() != META.name());
    if fresh {
        txn.open_table(META)
            .map_err(db_err)?
            .insert(DB_ID, new_id())
            .map_err(db_err)?;
    }
    Ok(())
}

fn encode(id: u64) -> String {
    format!("{PREFIX}{id:016x}\n")
}

fn parse(text: &str) -> Option<u64> {
    let hex = text.strip_prefix(PREFIX)?.strip_suffix('\n')?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().filter(|id| *id != 0)
}

/// Reads an identity file; `None` when it does not exist.
fn read_id(path: &Path) -> Result<Option<u64>, StorageError> {
    match std::fs::read(path) {
        Ok(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(parse)
            .map(Some)
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "relay WAL identity file {} is not a line `{PREFIX}<16 hex digits>`; restore it, or move the WAL \
                 directory away if its relays are not needed",
                    path.display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&format!("read {}", path.display()), e)),
    }
}

/// Writes `identity/wal-id.new` naming `id`, fsyncs it and its directory (and the WAL directory if the
/// subdirectory is new).
fn write_pending(dir: &Path, id: u64) -> Result<(), StorageError> {
    let id_dir = dir.join(ID_DIR);
    if !id_dir.is_dir() {
        std::fs::create_dir(&id_dir).map_err(|e| io_err("create the WAL identity directory", e))?;
        sync_dir(dir).map_err(|e| io_err("sync the WAL directory", e))?;
    }
    let path = id_dir.join(PENDING_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_err("create the WAL identity file", e))?;
    f.write_all(encode(id).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("write the WAL identity file", e))?;
    sync_dir(&id_dir).map_err(|e| io_err("sync the WAL identity directory", e))
}

/// Renames `identity/wal-id.new` to `identity/wal-id` and fsyncs the directory.
fn promote(dir: &Path) -> Result<(), StorageError> {
    let id_dir = dir.join(ID_DIR);
    std::fs::rename(id_dir.join(PENDING_FILE), id_dir.join(ID_FILE)).map_err(|e| io_err("bind the WAL", e))?;
    sync_dir(&id_dir).map_err(|e| io_err("sync the WAL identity directory", e))
}

/// Removes the identity files and their directory (the WAL-off path, which removes the whole WAL).
pub(super) fn remove_files(dir: &Path) -> Result<(), StorageError> {
    let id_dir = dir.join(ID_DIR);
    let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    for name in [PENDING_FILE, ID_FILE] {
        match std::fs::remove_file(id_dir.join(name)) {
            Err(e) if !not_found(&e) => return Err(io_err("remove the WAL identity file", e)),
            _ => {}
        }
    }
    match std::fs::remove_dir(&id_dir) {
        Err(e) if !not_found(&e) => Err(io_err("remove the WAL identity directory", e)),
        _ => Ok(()),
    }
}

/// Durably records `id` as the database's identity.
fn commit_db_id(db: &Database, id: u64) -> Result<(), StorageError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StorageError::Backend(format!("redb: {e}")))?;
    // Like every open-time commit (see `open.rs`).
    txn.set_quick_repair(true);
    txn.open_table(META)
        .map_err(db_err)?
        .insert(DB_ID, id)
        .map_err(db_err)?;
    txn.commit().map_err(db_err)
}

/// Why a WAL does not belong to its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mismatch {
    /// The WAL is bound to another identity.
    Foreign { db: u64, wal: u64 },
    /// The WAL has records but no binding, the database an identity: the database was created (or first
    /// opened by a version with identities) without this WAL.
    Unbound { db: u64, records: usize },
    /// The WAL is bound, the database has no identity (it predates identities).
    DatabaseWithout { wal: u64 },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Foreign { db, wal } => write!(
                f,
                "the WAL was written for database identity {wal:016x}, the database's identity is {db:016x}"
            ),
            Self::Unbound { db, records } => write!(
                f,
                "the WAL holds {records} valid record(s) but is bound to no database, while the database \
                 (identity {db:016x}) was created or first opened without it (was the database file deleted \
                 or replaced?)"
            ),
            Self::DatabaseWithout { wal } => write!(
                f,
                "the WAL was written for database identity {wal:016x}, the database has no identity (it is older \
                 than the WAL, so not the database the WAL was written with)"
            ),
        }
    }
}

/// What to do with the pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Binding {
    /// The WAL belongs to the database (`promote`: finish an interrupted binding first).
    Same {
        promote: bool,
    },
    /// A WAL without records and binding: bind it to the database's identity.
    Bind(u64),
    /// Neither has an identity: give both a new one (`discard`: remove an unfinished `wal-id.new` first).
    Upgrade {
        discard: bool,
    },
    Refuse(Mismatch),
}

/// Decides from the database's identity, the WAL's identity files and whether it holds any valid record.
pub(super) fn decide(db: Option<u64>, bound: Option<u64>, pending: Option<u64>, records: usize) -> Binding {
    let (wal, promote, discard) = match (bound, pending) {
        (Some(w), _) => (Some(w), false, false),
        // A finished binding of this database (crash before the rename), or another database's.
        (None, Some(p)) if db.is_some() => (Some(p), db == Some(p), false),
        // Written by an upgrade that crashed before the database took the identity.
        (None, Some(_)) => (None, false, true),
        (None, None) => (None, false, false),
    };
    match (db, wal) {
        (Some(d), Some(w)) if d == w => Binding::Same { promote },
        (Some(d), Some(w)) => Binding::Refuse(Mismatch::Foreign { db: d, wal: w }),
        (Some(d), None) if records == 0 => Binding::Bind(d),
        (Some(d), None) => Binding::Refuse(Mismatch::Unbound { db: d, records }),
        (None, Some(w)) => Binding::Refuse(Mismatch::DatabaseWithout { wal: w }),
        (None, None) => Binding::Upgrade { discard },
    }
}

/// The error of a refusal: names both paths and the way out.
fn refusal(db_path: &Path, dir: &Path, why: &Mismatch) -> StorageError {
    let (db, wal) = (db_path.display(), dir.display());
    StorageError::Corrupt(format!(
        "relay WAL {wal} does not belong to database {db}: {why}. Refusing to open: replaying it could put another \
         database's relays into this one, and dropping it could lose acknowledged relays. Restore the database \
         file this WAL was written with, or, to open {db} without these relays, move the WAL directory away \
         (e.g. `mv {wal} {wal}.orphaned`). Nothing was replayed, and the WAL directory is unchanged."
    ))
}

/// How the caller uses the WAL after the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// `relay_wal = true`: the WAL stays, bound to the database.
    Keep,
    /// `relay_wal = false`: the WAL is replayed and removed; a database without identity gets its identity
    /// from [`finish_upgrade`] after the removal.
    Remove,
}

/// Checks that the WAL in `dir` (which exists) belongs to the database and binds it where the module docs
/// say so, before anything is replayed. `records` = how many valid records the WAL holds.
pub(super) fn settle(db: &Database, db_path: &Path, dir: &Path, records: usize, how: Use) -> Result<(), StorageError> {
    let db_id = Some(read_meta(db, DB_ID)?).filter(|id| *id != 0);
    let id_dir = dir.join(ID_DIR);
    let bound = read_id(&id_dir.join(ID_FILE))?;
    let pending = read_id(&id_dir.join(PENDING_FILE))?;
    match decide(db_id, bound, pending, records) {
        Binding::Refuse(why) => {
            tracing::error!(db = %db_path.display(), wal = %dir.display(), %why, "relay WAL belongs to another database");
            Err(refusal(db_path, dir, &why))
        }
        Binding::Same { promote: true } if how == Use::Keep => promote(dir),
        Binding::Same { .. } => Ok(()),
        Binding::Bind(id) => match how {
            Use::Keep => write_pending(dir, id).and_then(|()| promote(dir)),
            Use::Remove => Ok(()),
        },
        Binding::Upgrade { discard } => {
            if discard {
                std::fs::remove_file(id_dir.join(PENDING_FILE))
                    .map_err(|e| io_err("remove the WAL identity file", e))?;
            }
            if how == Use::Remove {
                return Ok(());
            }
            let id = new_id();
            write_pending(dir, id)?;
            commit_db_id(db, id)?;
            promote(dir)?;
            tracing::info!(
                db = %db_path.display(),
                wal = %dir.display(),
                id = format_args!("{id:016x}"),
                "relay WAL and database bound to a new identity (first open since WAL identities)"
            );
            Ok(())
        }
    }
}

/// Gives a database without identity (and without a WAL now) its identity; a no-op for one that has it.
pub(super) fn finish_upgrade(db: &Database) -> Result<(), StorageError> {
    if read_meta(db, DB_ID)? == 0 {
        commit_db_id(db, new_id())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn identity_file_round_trip_and_golden() {
        assert_eq!(
            encode(0x0123_4567_89ab_cdef),
            "relay-miner relay WAL of database 0123456789abcdef\n"
        );
        assert_eq!(parse(&encode(42)), Some(42));
        assert_eq!(
            parse("relay-miner relay WAL of database 0000000000000000\n"),
            None,
            "0 is no id"
        );
        assert_eq!(
            parse("relay-miner relay WAL of database 0123456789abcdef"),
            None,
            "torn"
        );
        assert_eq!(parse("relay-miner relay WAL of database 123\n"), None);
        assert_eq!(parse(""), None);
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn decisions() {
        use Binding::*;
        let none = None;
        assert_eq!(decide(Some(1), Some(1), none, 5), Same { promote: false });
        assert_eq!(
            decide(Some(1), none, Some(1), 5),
            Same { promote: true },
            "interrupted binding is finished"
        );
        assert_eq!(
            decide(Some(1), Some(2), none, 0),
            Refuse(Mismatch::Foreign { db: 1, wal: 2 })
        );
        assert_eq!(
            decide(Some(1), none, Some(2), 0),
            Refuse(Mismatch::Foreign { db: 1, wal: 2 })
        );
        assert_eq!(decide(Some(1), none, none, 0), Bind(1));
        assert_eq!(
            decide(Some(1), none, none, 3),
            Refuse(Mismatch::Unbound { db: 1, records: 3 })
        );
        assert_eq!(
            decide(None, Some(2), none, 0),
            Refuse(Mismatch::DatabaseWithout { wal: 2 })
        );
        assert_eq!(decide(None, none, none, 3), Upgrade { discard: false });
        assert_eq!(
            decide(None, none, Some(2), 3),
            Upgrade { discard: true },
            "upgrade crashed before the db took it"
        );
    }
}
