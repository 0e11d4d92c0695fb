//! Recovery of the relay WAL at open, before the WAL thread (or anything else) writes.
//!
//! Every regular file of the WAL directory is read from offset 0: records are taken while they are valid and
//! each one's sequence follows the previous one; the first invalid record ends the file (zero fill = clean end;
//! bad magic, bad length, checksum mismatch or a sequence break = a torn tail or stale records of a reused
//! segment, logged at INFO). File names are not trusted (see [`super::segment`]).
//!
//! Where the records end early, recovery looks further for a valid record newer than both the last one taken
//! from the file and the durable `wal_applied`, and refuses the open (`Corrupt`, naming the file and both
//! offsets) if it finds one. Each record is `fdatasync`ed before the next is written, and a failed write
//! retires its segment, so the only invalid record that can legitimately end a file's records is the last one
//! written into it (torn by a crash; never acknowledged), and what follows it is zero fill, stale records of
//! the file's earlier use, all covered by `wal_applied`, or the rest of a failed write the new records were
//! written over (point 3 of the crash-safety argument in [`super`]). A newer valid record behind an invalid one
//! means that an acknowledged record (the invalid one) is corrupt on disk and that stopping there would also
//! silently drop the acknowledged ones after it: acknowledged relays are revenue, and an operator must see that
//! and decide (restore the file, or move it aside to open without it), so the open fails rather than log and
//! carry on. The look-ahead follows the records' own lengths (past a record whose header is intact but whose
//! checksum or payload is not) and never searches the bytes for something that looks like a record start:
//! relay payloads are arbitrary bytes, and one that mimicked a record must not be able to block the open. So a
//! corrupt length field hides what follows it; detection is best effort.
//!
//! Then the WAL's identity is checked against the database's ([`super::identity`]): a WAL of another database
//! refuses the open before anything is applied or removed. Records newer than the durable META `wal_applied`
//! are applied to redb in one durable commit, in sequence order. Afterwards every file is disposable: at most
//! two of the configured size are kept (the new active segment and a spare), the rest removed.

use std::path::{Path, PathBuf};

use redb::{Database, Durability};

use super::fault::{FaultHook, Site};
use super::record::{self, Invalid, Record};
use super::segment::{self, Segment, active_name, spare_name, sync_dir};
use super::{Recovered, WAL_APPLIED, WalConfig, apply_record, identity, io_err};
use crate::StorageError;
use crate::redb::read_meta;
use crate::redb::tables::db_err;

/// Why the records of a file end before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Invalid(Invalid),
    /// A valid record whose sequence does not follow the previous one (a stale record of a reused segment).
    SeqBreak {
        expected: u64,
        found: u64,
    },
}

/// The valid records at the start of one file.
struct Scan {
    records: Vec<Record>,
    /// Offset and reason where they end, unless the rest is zero fill (or nothing).
    stop: Option<(usize, Stop)>,
}

fn scan(buf: &[u8]) -> Scan {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0usize;
    let stop = loop {
        let rest = buf.get(at..).unwrap_or_default();
        match record::parse(rest) {
            Ok(rec) => {
                if let Some(prev) = records.last()
                    && rec.seq != prev.seq.wrapping_add(1)
                {
                    break Some((
                        at,
                        Stop::SeqBreak {
                            expected: prev.seq.wrapping_add(1),
                            found: rec.seq,
                        },
                    ));
                }
                at += rec.len;
                records.push(rec);
            }
            Err(Invalid::Zero) => break None,
            Err(why) => break Some((at, Stop::Invalid(why))),
        }
    };
    Scan { records, stop }
}

/// Past the end (`from`) of a file's valid records, follows records by their own lengths (also past a corrupt
/// record whose header is intact) looking for a valid one with a sequence above `floor`; returns its offset and
/// sequence. Stops at zero fill, a bad header, or the end of the file.
fn newer_record_after(buf: &[u8], from: usize, floor: u64) -> Option<(usize, u64)> {
    let mut at = from;
    loop {
        let rest = buf.get(at..)?;
        let len = match record::parse(rest) {
            Ok(rec) if rec.seq > floor => return Some((at, rec.seq)),
            Ok(rec) => rec.len,
            Err(Invalid::BadChecksum | Invalid::BadPayload) => record::claimed_len(rest)?,
            Err(Invalid::Zero | Invalid::Truncated | Invalid::BadMagic) => return None,
        };
        at = at.checked_add(len)?;
    }
}

/// One file found in the WAL directory.
struct Found {
    path: PathBuf,
    size: u64,
}

/// What the WAL directory holds.
struct Scanned {
    /// Every file (segments, or junk to remove).
    found: Vec<Found>,
    /// Valid records of every file (also those already applied).
    valid: usize,
    /// The valid records newer than `applied`, in no particular order.
    pending: Vec<Record>,
}

/// Reads every file of `dir` (read-only).
fn scan_dir(dir: &Path, applied: u64) -> Result<Scanned, StorageError> {
    let mut out = Scanned {
        found: Vec::new(),
        valid: 0,
        pending: Vec::new(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("list the WAL directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list the WAL directory", e))?;
        // Not a file: the identity directory (or something else no segment is in).
        if !entry.file_type().map_err(|e| io_err("stat a WAL file", e))?.is_file() {
            continue;
        }
        let path = entry.path();
        let buf = std::fs::read(&path).map_err(|e| io_err("read a WAL segment", e))?;
        let s = scan(&buf);
        if let Some((offset, why)) = s.stop {
            let reason = match why {
                Stop::Invalid(i) => i.describe().to_owned(),
                Stop::SeqBreak { expected, found } => format!("record {found} where {expected} would follow"),
            };
            let last = s.records.last().map_or(0, |r| r.seq);
            if let Some((newer_at, newer)) = newer_record_after(&buf, offset, last.max(applied)) {
                let msg = format!(
                    "relay WAL segment {} is corrupt: its records end at offset {offset} ({reason}; the last valid \
                     one before is record {last}), but the valid record {newer}, newer than it and than the \
                     durable wal_applied {applied}, follows at offset {newer_at}. The records from offset {offset} \
                     on were acknowledged and are not in the database; opening would lose them. Restore the \
                     file, or move it out of {} to open without them",
                    path.display(),
                    dir.display()
                );
                tracing::error!(segment = %path.display(), offset, newer_at, newer, "{msg}");
                return Err(StorageError::Corrupt(msg));
            }
            tracing::info!(
                segment = %path.display(),
                offset,
                %reason,
                "relay WAL: records end before the segment does (a torn tail after a crash, or stale records of \
                 a reused segment; neither was acknowledged as new)"
            );
        }
        out.valid += s.records.len();
        out.pending.extend(s.records.into_iter().filter(|r| r.seq > applied));
        out.found.push(Found {
            path,
            size: buf.len() as u64,
        });
    }
    Ok(out)
}

/// The relays of the WAL directory `dir` that redb does not hold: those of the valid records newer than
/// `applied` (the database's META `wal_applied`; 0 for a WAL whose database is missing), each record counted once.
/// Reads only (for the data-directory probe, `super::super::probe`); a missing directory holds none. `Err` as
/// at recovery: the directory cannot be read, or an acknowledged record is corrupt.
pub(crate) fn pending_relays(dir: &Path, applied: u64) -> Result<u64, StorageError> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut pending = scan_dir(dir, applied)?.pending;
    pending.sort_by_key(|r| r.seq);
    pending.dedup_by_key(|r| r.seq);
    Ok(pending.iter().map(|r| r.entries.len() as u64).sum())
}

/// Applies `pending` (the valid records newer than `applied`) in one durable commit; returns the last record
/// applied.
fn replay(
    db: &Database,
    dir: &Path,
    applied: u64,
    mut pending: Vec<Record>,
    faults: &FaultHook,
) -> Result<u64, StorageError> {
    pending.sort_by_key(|r| r.seq);
    for pair in pending.windows(2) {
        if pair[0].seq == pair[1].seq && pair[0] != pair[1] {
            return Err(StorageError::Corrupt(format!(
                "relay WAL: two different valid records with sequence {} in {}",
                pair[0].seq,
                dir.display()
            )));
        }
    }
    pending.dedup_by_key(|r| r.seq);
    let mut expect = applied + 1;
    for r in &pending {
        if r.seq != expect {
            // Only a write that failed (and whose sequence was skipped) leaves a gap.
            tracing::warn!(expected = expect, found = r.seq, "relay WAL: gap in record sequences");
        }
        expect = r.seq + 1;
    }
    let Some(last) = pending.last().map(|r| r.seq) else {
        return Ok(applied);
    };
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StorageError::Backend(format!("redb: {e}")))?;
    // Like every open-time commit (see `open.rs`).
    txn.set_quick_repair(true);
    let mut relays = 0usize;
    for r in &pending {
        // A failure leaves the transaction uncommitted (nothing applied, the WAL files untouched): the open
        // fails and the next one replays the same records.
        faults.run(
            Site::Recover(r.seq),
            || apply_record(&txn, r.seq, &r.entries),
            StorageError::Backend,
        )?;
        relays += r.entries.len();
    }
    txn.commit().map_err(db_err)?;
    tracing::info!(
        records = pending.len(),
        relays,
        from = applied,
        to = last,
        "relay WAL: recovery applied records to redb"
    );
    Ok(last)
}

/// Checks the WAL's identity (refusing a WAL of another database before anything is replayed), then applies
/// every valid record newer than `wal_applied`; returns the last applied record and the segment files found.
fn check_and_replay(
    db: &Database,
    db_path: &Path,
    dir: &Path,
    how: identity::Use,
    faults: &FaultHook,
) -> Result<(u64, Vec<Found>), StorageError> {
    let applied = read_meta(db, WAL_APPLIED)?;
    let scanned = scan_dir(dir, applied)?;
    identity::settle(db, db_path, dir, scanned.valid, how)?;
    let last = replay(db, dir, applied, scanned.pending, faults)?;
    Ok((last, scanned.found))
}

fn parent_of(dir: &Path) -> &Path {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Recovery for `relay_wal = true`: replays, then sets up the active segment (and a spare when a reusable file
/// is left). Creates the directory on first use.
pub(crate) fn recover(db: &Database, cfg: &WalConfig) -> Result<Recovered, StorageError> {
    let dir = &cfg.dir;
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create the WAL directory", e))?;
        sync_dir(parent_of(dir)).map_err(|e| io_err("sync the WAL directory's parent", e))?;
    }
    let (last, found) = check_and_replay(db, &cfg.db, dir, identity::Use::Keep, &cfg.faults)?;
    // Every file is disposable now: its records are durable in redb, or were never acknowledged.
    let mut keep = Vec::new();
    for f in found {
        if f.size == cfg.segment_bytes && keep.len() < 2 {
            keep.push(f.path);
        } else {
            std::fs::remove_file(&f.path).map_err(|e| io_err("remove a WAL file", e))?;
        }
    }
    // Files already named as their new role come first, so no rename below can replace a kept file.
    let (to_active, to_spare) = (dir.join(active_name(last + 1)), dir.join(spare_name(0)));
    let take = |keep: &mut Vec<PathBuf>, name: &PathBuf| keep.iter().position(|p| p == name).map(|i| keep.remove(i));
    let mut active_path = take(&mut keep, &to_active);
    let mut spare_path = take(&mut keep, &to_spare);
    if active_path.is_none() {
        active_path = keep.pop();
    }
    if spare_path.is_none() {
        spare_path = keep.pop();
    }
    let reuse = |path: &Path, name: &str| -> Result<Segment, StorageError> {
        let mut seg = segment::open_existing(path).map_err(|e| io_err("open a WAL segment", e))?;
        seg.rename(dir, name).map_err(|e| io_err("rename a WAL segment", e))?;
        Ok(seg)
    };
    let active = match active_path {
        Some(p) => reuse(&p, &active_name(last + 1))?,
        None => segment::create(dir, &active_name(last + 1), cfg.segment_bytes)
            .map_err(|e| io_err("create a WAL segment", e))?,
    };
    let spare = spare_path.map(|p| reuse(&p, &spare_name(0))).transpose()?;
    sync_dir(dir).map_err(|e| io_err("sync the WAL directory", e))?;
    Ok(Recovered {
        last,
        active,
        spare,
        spares_named: 1,
    })
}

/// Recovery for `relay_wal = false`: applies what a previous run with the WAL left (if it belongs to the
/// database at `db_path`), then removes the WAL files and directory (none: nothing to do), and gives a
/// database without identity its identity.
pub(crate) fn recover_and_remove(
    db: &Database,
    db_path: &Path,
    dir: &Path,
    faults: &FaultHook,
) -> Result<(), StorageError> {
    if dir.exists() {
        let (_, found) = check_and_replay(db, db_path, dir, identity::Use::Remove, faults)?;
        for f in found {
            std::fs::remove_file(&f.path).map_err(|e| io_err("remove a WAL file", e))?;
        }
        identity::remove_files(dir)?;
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::warn!(error = %e, dir = %dir.display(), "relay WAL: cannot remove the WAL directory");
        }
    }
    // After the removal: a crash before it leaves a database without identity, which trusts its WAL again.
    identity::finish_upgrade(db)
}

#[cfg(test)]
mod tests;
