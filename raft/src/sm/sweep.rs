//! Removal of expired KV entries from the state machine, as part of the deterministic apply.
//!
//! A KV entry with a TTL is invisible once expired (every read checks the expiry), but the table keeps it until
//! it is deleted. The relay meter writes one key per (application, session), so without deletion the KV table
//! (and every snapshot) grows by every session the cluster ever served. Redis expires keys itself and the
//! embedded backend sweeps on a timer; a replica cannot delete on its own clock, so here each KV write also
//! sweeps: it examines the [`SWEEP_SCAN`] keys that follow the written one in key order (wrapping around to the
//! first key) and deletes those expired at the entry's leader-stamped `now_ms` minus a grace. The outcome depends
//! only on the table and the entry, so every replica deletes the same keys. Every live key is written again and
//! again (a meter syncs its count every few seconds), so the expired keys after it are eaten [`SWEEP_SCAN`] at
//! a time and, while any key is written, the whole table is covered. The cost is bounded per write.

use std::ops::Bound;

use redb::{ReadableTable, Table};

/// Keys examined after each written key.
pub(crate) const SWEEP_SCAN: usize = 32;

/// Deletes, among the [`SWEEP_SCAN`] keys following `key` (wrapping around), those whose expiry (from
/// `expiry_of(value)`, unix ms; `None` = never expires) is at or before `now_ms - grace_ms`. Returns how many
/// were deleted. `grace_ms` keeps entries that a node whose clock lags the leader's may still read as live.
pub(crate) fn sweep_expired_after(
    table: &mut Table<&str, &[u8]>,
    key: &str,
    now_ms: u64,
    grace_ms: u64,
    expiry_of: impl Fn(&[u8]) -> Option<u64>,
) -> Result<usize, redb::StorageError> {
    let cutoff = now_ms.saturating_sub(grace_ms);
    let mut dead: Vec<String> = Vec::new();
    let after = table.range::<&str>((Bound::Excluded(key), Bound::Unbounded))?;
    let before = table.range::<&str>((Bound::Unbounded, Bound::Excluded(key)))?;
    for item in after.chain(before).take(SWEEP_SCAN) {
        let (k, v) = item?;
        if expiry_of(v.value()).is_some_and(|at| at <= cutoff) {
            dead.push(k.value().to_owned());
        }
    }
    for k in &dead {
        table.remove(k.as_str())?;
    }
    Ok(dead.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use redb::{Database, ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

    /// Values are the expiry as 8 big-endian bytes, 0 = none.
    fn expiry(v: &[u8]) -> Option<u64> {
        let at = u64::from_be_bytes(v.try_into().unwrap());
        (at != 0).then_some(at)
    }

    fn keys(db: &Database) -> Vec<String> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(T).unwrap();
        t.iter().unwrap().map(|i| i.unwrap().0.value().to_owned()).collect()
    }

    fn db_with(entries: &[(&str, u64)]) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("kv.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for (k, at) in entries {
                t.insert(*k, at.to_be_bytes().as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        (dir, db)
    }

    fn sweep(db: &Database, key: &str, now: u64, grace: u64) -> usize {
        let txn = db.begin_write().unwrap();
        let n = {
            let mut t = txn.open_table(T).unwrap();
            sweep_expired_after(&mut t, key, now, grace, expiry).unwrap()
        };
        txn.commit().unwrap();
        n
    }

    #[test]
    fn deletes_expired_keys_after_the_written_one_wrapping_around_and_keeps_the_rest() {
        // Expiry 0 = none; now = 100.
        let (_dir, db) = db_with(&[("a", 50), ("b", 0), ("c", 100), ("d", 101), ("e", 99), ("m", 500)]);
        assert_eq!(sweep(&db, "d", 100, 0), 3, "e, then a and c after wrapping");
        assert_eq!(keys(&db), vec!["b", "d", "m"], "the written key and live ones stay");
    }

    #[test]
    fn the_grace_keeps_recently_expired_keys() {
        let (_dir, db) = db_with(&[("a", 40), ("b", 90), ("k", 0)]);
        assert_eq!(sweep(&db, "k", 100, 30), 1);
        assert_eq!(keys(&db), vec!["b", "k"]);
    }

    #[test]
    fn examines_at_most_sweep_scan_keys_per_write_and_repeated_writes_cover_everything() {
        let expired: Vec<String> = (0..3 * SWEEP_SCAN).map(|i| format!("x{i:03}")).collect();
        let mut entries: Vec<(&str, u64)> = expired.iter().map(|k| (k.as_str(), 10)).collect();
        entries.push(("live", 0));
        let (_dir, db) = db_with(&entries);
        assert_eq!(sweep(&db, "live", 100, 0), SWEEP_SCAN);
        assert_eq!(keys(&db).len(), 2 * SWEEP_SCAN + 1);
        assert_eq!(sweep(&db, "live", 100, 0), SWEEP_SCAN);
        assert_eq!(sweep(&db, "live", 100, 0), SWEEP_SCAN);
        assert_eq!(keys(&db), vec!["live"]);
        assert_eq!(sweep(&db, "live", 100, 0), 0);
    }
}
