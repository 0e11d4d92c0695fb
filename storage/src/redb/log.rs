//! The relay log on redb: entries keyed `(supplier id, sequence)`, consumer-group state in memory.
//!
//! With the relay WAL on, `append` goes through it (`super::wal`); every other call first waits until the
//! appends acknowledged before it started are applied to redb.
//!
//! Every entry is also indexed by session in [`LOG_SESSIONS`] (`(supplier id, session id, sequence)`), in the
//! same transaction that inserts or deletes it ([`insert_entry`], [`remove_entry`]), so `trim_session` costs
//! the session's own entries: it used to walk the supplier's whole log inside the single writer transaction,
//! which also applies the relayer's durable appends, so a backlog of other sessions stalled the relayer for as
//! long as the walk took. A database written before the index existed (or by an older binary since) gets it
//! at open: [`ensure_session_index`] rebuilds it unless META holds the current index version
//! ([`SESSION_INDEX_VERSION`]) and the index provably covers the log (same length, every supplier's newest
//! entry indexed).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use tokio::time::Instant;

use super::tables::{LOG, LOG_SESSIONS, LogValue, META, SUPPLIERS, db_err};
use super::{Inner, RedbBackend};
use crate::StorageError;
use crate::contract::{Backlog, EntryId, LogEntry, MinedRelay, RelayLog};

/// The supplier id of `supplier`, allocating one in `txn` if new.
pub(super) fn supplier_id(txn: &WriteTransaction, supplier: &str) -> Result<u32, StorageError> {
    let mut suppliers = txn.open_table(SUPPLIERS).map_err(db_err)?;
    if let Some(id) = suppliers.get(supplier).map_err(db_err)? {
        return Ok(id.value());
    }
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let next = meta.get("next_supplier").map_err(db_err)?.map_or(0, |g| g.value());
    let id = u32::try_from(next).map_err(|_| StorageError::Backend("too many suppliers".into()))?;
    meta.insert("next_supplier", next + 1).map_err(db_err)?;
    suppliers.insert(supplier, id).map_err(db_err)?;
    Ok(id)
}

pub(super) fn seq_key(id: u32) -> String {
    format!("seq:{id}")
}

/// The session an encoded log value is indexed under. A value whose session cannot be read (never written by
/// this crate) is indexed under the empty session, so index and log always hold the same number of entries.
fn indexed_session(value: &[u8]) -> &[u8] {
    LogValue::session_of(value).unwrap_or(&[])
}

/// Inserts `(sid, seq) → value` into the relay log and its session index.
pub(super) fn insert_entry(
    log: &mut Table<(u32, u64), &[u8]>,
    index: &mut Table<(u32, &[u8], u64), ()>,
    sid: u32,
    seq: u64,
    value: &[u8],
) -> Result<(), StorageError> {
    log.insert((sid, seq), value).map_err(db_err)?;
    index.insert((sid, indexed_session(value), seq), ()).map_err(db_err)?;
    Ok(())
}

/// Deletes `(sid, seq)` from the relay log and its session index; whether it was there.
pub(super) fn remove_entry(
    log: &mut Table<(u32, u64), &[u8]>,
    index: &mut Table<(u32, &[u8], u64), ()>,
    sid: u32,
    seq: u64,
) -> Result<bool, StorageError> {
    let Some(old) = log.remove((sid, seq)).map_err(db_err)? else {
        return Ok(false);
    };
    index.remove((sid, indexed_session(old.value()), seq)).map_err(db_err)?;
    Ok(true)
}

/// META key of the session index's format version, written in the transaction that (re)builds the index.
pub(super) const SESSION_INDEX_VERSION_KEY: &str = "log_sessions_index_version";
/// Format of [`LOG_SESSIONS`] this binary reads and writes; raise it when the key or what is indexed changes,
/// so databases indexed the old way are rebuilt at open.
pub(super) const SESSION_INDEX_VERSION: u64 = 1;

/// Why the session index cannot be trusted as it is, if it cannot.
///
/// Equal lengths alone were the old test, and they lie after a downgrade and upgrade: a binary from before
/// the index appends and deletes log entries without touching it (and without touching the version in META,
/// which it does not know), and k appends plus k deletions leave both tables the same length while the index
/// misses the new entries and still lists the deleted ones (a later `trim_session` then leaves the new
/// entries in the log). Such a binary's appends always take sequences above everything indexed, so if any of
/// them is still in the log, some supplier's newest log entry is one of them and is missing from the index;
/// if none is left, its deletions alone would make the lengths differ. One lookup per supplier, no log scan.
fn stale_index_reason(
    log: &Table<(u32, u64), &[u8]>,
    index: &Table<(u32, &[u8], u64), ()>,
    meta: &Table<&str, u64>,
) -> Result<Option<String>, StorageError> {
    match meta.get(SESSION_INDEX_VERSION_KEY).map_err(db_err)?.map(|g| g.value()) {
        None => return Ok(Some("no index version recorded".into())),
        Some(v) if v != SESSION_INDEX_VERSION => {
            return Ok(Some(format!(
                "index version {v}, this binary uses {SESSION_INDEX_VERSION}"
            )));
        }
        Some(_) => {}
    }
    let (log_len, index_len) = (log.len().map_err(db_err)?, index.len().map_err(db_err)?);
    if log_len != index_len {
        return Ok(Some(format!("{log_len} log entries, {index_len} indexed")));
    }
    let mut sid = 0u32;
    loop {
        // The newest entry of the first supplier id at or above `sid`; ids without entries are skipped.
        let Some(item) = log.range((sid, 0)..=(u32::MAX, u64::MAX)).map_err(db_err)?.next() else {
            return Ok(None);
        };
        let first = item.map_err(db_err)?.0.value().0;
        let Some(newest) = log.range((first, 0)..=(first, u64::MAX)).map_err(db_err)?.next_back() else {
            return Ok(None);
        };
        let (k, v) = newest.map_err(db_err)?;
        let seq = k.value().1;
        if index
            .get((first, indexed_session(v.value()), seq))
            .map_err(db_err)?
            .is_none()
        {
            return Ok(Some(format!("entry {seq} of supplier id {first} is not indexed")));
        }
        let Some(next) = first.checked_add(1) else {
            return Ok(None);
        };
        sid = next;
    }
}

/// Rebuilds the session index from the relay log unless it is known to be complete ([`stale_index_reason`]):
/// a database written before the index existed, by an older binary since (which appended and deleted
/// entries without it), or with another index version. Writes the current version to META in the same
/// transaction, so a crash mid-rebuild leaves the old state and the next open rebuilds again. Runs inside the
/// open-time transaction, before WAL recovery applies anything; one pass over the log. Returns why and how
/// many entries were indexed, `None` when the index was complete.
pub(super) fn ensure_session_index(txn: &WriteTransaction) -> Result<Option<(String, u64)>, StorageError> {
    let log = txn.open_table(LOG).map_err(db_err)?;
    let mut index = txn.open_table(LOG_SESSIONS).map_err(db_err)?;
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let Some(reason) = stale_index_reason(&log, &index, &meta)? else {
        return Ok(None);
    };
    index.retain(|_, _| false).map_err(db_err)?;
    let mut n = 0u64;
    for item in log.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        let (sid, seq) = k.value();
        index
            .insert((sid, indexed_session(v.value()), seq), ())
            .map_err(db_err)?;
        n += 1;
    }
    meta.insert(SESSION_INDEX_VERSION_KEY, SESSION_INDEX_VERSION)
        .map_err(db_err)?;
    Ok(Some((reason, n)))
}

/// Appends inside the writer's transaction; returns the ids in input order.
/// The outer `Err` is a redb failure (fatal to the transaction); the inner one a logical failure of this call.
fn append_in(
    txn: &WriteTransaction,
    relays: &[MinedRelay],
) -> Result<Result<Vec<EntryId>, StorageError>, StorageError> {
    // Encode first: an oversized field is a logical error of this call only, nothing is written.
    let values: Result<Vec<Vec<u8>>, StorageError> = relays
        .iter()
        .map(|r| LogValue::encode(&r.session_id, r.session_end_height, &r.relay_hash, &r.payload))
        .collect();
    let values = match values {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let mut ids = Vec::with_capacity(relays.len());
    let mut by_supplier: HashMap<&str, (u32, u64)> = HashMap::new();
    let mut log = txn.open_table(LOG).map_err(db_err)?;
    let mut index = txn.open_table(LOG_SESSIONS).map_err(db_err)?;
    for (r, value) in relays.iter().zip(values) {
        let slot = match by_supplier.get_mut(r.supplier.as_str()) {
            Some(slot) => slot,
            None => {
                let id = supplier_id(txn, &r.supplier)?;
                let meta = txn.open_table(META).map_err(db_err)?;
                let last = meta.get(seq_key(id).as_str()).map_err(db_err)?.map_or(0, |g| g.value());
                by_supplier.entry(r.supplier.as_str()).or_insert((id, last))
            }
        };
        slot.1 += 1;
        insert_entry(&mut log, &mut index, slot.0, slot.1, &value)?;
        ids.push(EntryId::new(slot.1, 0));
    }
    let mut meta = txn.open_table(META).map_err(db_err)?;
    for (id, last) in by_supplier.values() {
        meta.insert(seq_key(*id).as_str(), *last).map_err(db_err)?;
    }
    Ok(Ok(ids))
}

/// The supplier id of `supplier` as committed (`None` if it never appended).
fn lookup_supplier(txn: &redb::ReadTransaction, supplier: &str) -> Result<Option<u32>, StorageError> {
    let table = txn.open_table(SUPPLIERS).map_err(db_err)?;
    Ok(table.get(supplier).map_err(db_err)?.map(|g| g.value()))
}

fn to_entry(supplier: &str, seq: u64, raw: &[u8], deliveries: u64) -> Result<LogEntry, StorageError> {
    let v = LogValue::decode(raw)?;
    Ok(LogEntry {
        id: EntryId::new(seq, 0),
        relay: MinedRelay {
            supplier: supplier.to_owned(),
            session_id: v.session_id,
            session_end_height: v.session_end_height,
            relay_hash: v.relay_hash,
            payload: v.payload,
        },
        deliveries,
    })
}

/// Loads already-picked `(seq, deliveries)` entries; entries gone from the table are dropped from pending.
fn load_picked(
    inner: &Inner,
    supplier: &str,
    picked: Vec<(u64, u64)>,
    group: &mut crate::group::GroupState,
) -> Result<Vec<LogEntry>, StorageError> {
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let txn = inner.files()?.db.begin_read().map_err(db_err)?;
    let Some(sid) = lookup_supplier(&txn, supplier)? else {
        return Ok(Vec::new());
    };
    let table = txn.open_table(LOG).map_err(db_err)?;
    let mut out = Vec::with_capacity(picked.len());
    for (seq, n) in picked {
        match table.get((sid, seq)).map_err(db_err)? {
            Some(raw) => out.push(to_entry(supplier, seq, raw.value(), n)?),
            None => {
                group.remove(seq);
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl RelayLog for RedbBackend {
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError> {
        if relays.is_empty() {
            return Ok(Vec::new());
        }
        let fence = self.fence_check();
        let files = self.inner.files()?;
        if let Some(wal) = &files.wal {
            return wal.append(relays, fence).await;
        }
        let weight = relays.len();
        files
            .writer
            .call(weight, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                append_in(txn, &relays)
            })
            .await
    }

    /// Both paths group-commit: the WAL thread writes everything queued in one record + fdatasync, the writer
    /// thread everything queued in one transaction.
    fn coalesces_appends(&self) -> bool {
        true
    }

    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        self.wal_caught_up().await?;
        let (supplier, consumer) = (supplier.to_owned(), consumer.to_owned());
        let fence = self.fence_check();
        self.blocking(move |inner| {
            let now = Instant::now();
            let _leases = fence.hold()?;
            let mut groups = inner.groups();
            let group = groups.entry(supplier.clone()).or_default();
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let Some(sid) = lookup_supplier(&txn, &supplier)? else {
                return Ok(Vec::new());
            };
            let table = txn.open_table(LOG).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table
                .range((sid, group.cursor.saturating_add(1))..=(sid, u64::MAX))
                .map_err(db_err)?
            {
                if out.len() >= max {
                    break;
                }
                let (k, v) = item.map_err(db_err)?;
                let seq = k.value().1;
                let entry = to_entry(&supplier, seq, v.value(), 1)?;
                group.deliver_new(seq, &consumer, now);
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }

    async fn read_pending(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        self.wal_caught_up().await?;
        let (supplier, consumer) = (supplier.to_owned(), consumer.to_owned());
        let fence = self.fence_check();
        self.blocking(move |inner| {
            let _leases = fence.hold()?;
            let mut groups = inner.groups();
            let Some(group) = groups.get_mut(&supplier) else {
                return Ok(Vec::new());
            };
            let picked = group.redeliver_own(&consumer, max, Instant::now());
            load_picked(inner, &supplier, picked, group)
        })
        .await
    }

    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.wal_caught_up().await?;
        let (supplier, consumer) = (supplier.to_owned(), consumer.to_owned());
        let fence = self.fence_check();
        self.blocking(move |inner| {
            let _leases = fence.hold()?;
            let mut groups = inner.groups();
            let Some(group) = groups.get_mut(&supplier) else {
                return Ok(Vec::new());
            };
            let picked = group.claim(&consumer, min_idle, max, Instant::now());
            load_picked(inner, &supplier, picked, group)
        })
        .await
    }

    async fn ack(&self, supplier: &str, ids: &[EntryId]) -> Result<u64, StorageError> {
        self.wal_caught_up().await?;
        let seqs: Vec<u64> = {
            let groups = self.inner.groups();
            let Some(group) = groups.get(supplier) else {
                return Ok(0);
            };
            ids.iter()
                .filter(|id| id.minor == 0 && group.pending.contains_key(&id.major))
                .map(|id| id.major)
                .collect()
        };
        if seqs.is_empty() {
            return Ok(0);
        }
        let name = supplier.to_owned();
        let to_delete = seqs.clone();
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let Some(sid) = txn
                    .open_table(SUPPLIERS)
                    .map_err(db_err)?
                    .get(name.as_str())
                    .map_err(db_err)?
                    .map(|g| g.value())
                else {
                    return Ok(Ok(()));
                };
                let mut log = txn.open_table(LOG).map_err(db_err)?;
                let mut index = txn.open_table(LOG_SESSIONS).map_err(db_err)?;
                for seq in to_delete {
                    remove_entry(&mut log, &mut index, sid, seq)?;
                }
                Ok(Ok(()))
            })
            .await?;
        let mut groups = self.inner.groups();
        let Some(group) = groups.get_mut(supplier) else {
            return Ok(0);
        };
        Ok(seqs.into_iter().filter(|s| group.remove(*s)).count() as u64)
    }

    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        self.wal_caught_up().await?;
        let (name, session) = (supplier.to_owned(), session_id.to_owned());
        let fence = self.fence_check();
        let removed: Vec<u64> = self
            .inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let Some(sid) = txn
                    .open_table(SUPPLIERS)
                    .map_err(db_err)?
                    .get(name.as_str())
                    .map_err(db_err)?
                    .map(|g| g.value())
                else {
                    return Ok(Ok(Vec::new()));
                };
                // The session's own entries, from the index: the rest of the log is not read.
                let mut index = txn.open_table(LOG_SESSIONS).map_err(db_err)?;
                let range = (sid, session.as_bytes(), 0)..=(sid, session.as_bytes(), u64::MAX);
                let mut doomed = Vec::new();
                for item in index.range(range.clone()).map_err(db_err)? {
                    doomed.push(item.map_err(db_err)?.0.value().2);
                }
                index.retain_in(range, |_, _| false).map_err(db_err)?;
                let mut log = txn.open_table(LOG).map_err(db_err)?;
                let mut removed = Vec::with_capacity(doomed.len());
                for seq in doomed {
                    if log.remove((sid, seq)).map_err(db_err)?.is_some() {
                        removed.push(seq);
                    }
                }
                Ok(Ok(removed))
            })
            .await?;
        if let Some(group) = self.inner.groups().get_mut(supplier) {
            for seq in &removed {
                group.remove(*seq);
            }
        }
        Ok(removed.len() as u64)
    }

    /// From the session index: only the session's own entries are read.
    async fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        self.wal_caught_up().await?;
        let (supplier, session) = (supplier.to_owned(), session_id.to_owned());
        self.blocking(move |inner| {
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let Some(sid) = lookup_supplier(&txn, &supplier)? else {
                return Ok(Vec::new());
            };
            let index = txn.open_table(LOG_SESSIONS).map_err(db_err)?;
            let log = txn.open_table(LOG).map_err(db_err)?;
            let mut hashes = Vec::new();
            for item in index
                .range((sid, session.as_bytes(), 0)..=(sid, session.as_bytes(), u64::MAX))
                .map_err(db_err)?
            {
                let seq = item.map_err(db_err)?.0.value().2;
                if let Some(raw) = log.get((sid, seq)).map_err(db_err)? {
                    hashes.push(LogValue::relay_hash_of(raw.value())?.to_vec());
                }
            }
            Ok(hashes)
        })
        .await
    }

    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        self.wal_caught_up().await?;
        let supplier = supplier.to_owned();
        self.blocking(move |inner| {
            let groups = inner.groups();
            let (cursor, pending) = groups
                .get(&supplier)
                .map_or((0, 0), |g| (g.cursor, g.pending.len() as u64));
            drop(groups);
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let Some(sid) = lookup_supplier(&txn, &supplier)? else {
                return Ok(Backlog::default());
            };
            let table = txn.open_table(LOG).map_err(db_err)?;
            let mut undelivered = 0u64;
            for item in table
                .range((sid, cursor.saturating_add(1))..=(sid, u64::MAX))
                .map_err(db_err)?
            {
                item.map_err(db_err)?;
                undelivered += 1;
            }
            Ok(Backlog { undelivered, pending })
        })
        .await
    }

    /// Every supplier ever seen (SUPPLIERS) whose range of the log holds an entry: one lookup each. Waits for the
    /// WAL like the other reads, so relays still only in the WAL count.
    async fn suppliers(&self) -> Result<Vec<String>, StorageError> {
        self.wal_caught_up().await?;
        self.blocking(|inner| {
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let suppliers = txn.open_table(SUPPLIERS).map_err(db_err)?;
            let log = txn.open_table(LOG).map_err(db_err)?;
            let mut out = Vec::new();
            for item in suppliers.iter().map_err(db_err)? {
                let (name, sid) = item.map_err(db_err)?;
                let sid = sid.value();
                if let Some(first) = log.range((sid, 0)..=(sid, u64::MAX)).map_err(db_err)?.next() {
                    first.map_err(db_err)?;
                    out.push(name.value().to_owned());
                }
            }
            // SUPPLIERS is keyed by name, so `out` is sorted already.
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use redb::{Database, ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::redb::RedbConfig;
    use crate::suite;

    async fn open(config: &RedbConfig) -> RedbBackend {
        suite::poll_until("the database can be opened", || async {
            match RedbBackend::open(config.clone()).await {
                Ok(b) => Some(b),
                Err(StorageError::Backend(msg)) if msg.contains("already open") => None,
                Err(e) => panic!("open failed: {e}"),
            }
        })
        .await
    }

    /// (log entries, index entries) of the closed database at `path`.
    fn lengths(path: &std::path::Path) -> (u64, u64) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let log = txn.open_table(LOG).unwrap().len().unwrap();
        let index = txn.open_table(LOG_SESSIONS).map_or(0, |t| t.len().unwrap());
        (log, index)
    }

    /// A database written before the session index existed (as the previous release leaves it: the same
    /// tables, no index) is indexed at open and trims exactly the session's entries; appends, acks and trims
    /// afterwards keep index and log the same length, with the relay WAL on and off.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_without_the_session_index_is_indexed_at_open_and_trims_only_its_session() {
        for wal in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = RedbConfig::new(dir.path().join("old.redb"));
            config.relay_wal = wal;
            let b = open(&config).await;
            let log = b.storage().relay_log;
            // "s" is a prefix of "s1": the index must not mix them up.
            let relays = (0..30)
                .map(|n| suite::relay("pokt1a", ["s", "s1", "s2"][(n % 3) as usize], n))
                .chain((0..5).map(|n| suite::relay("pokt1b", "s1", 100 + n)))
                .collect();
            log.append(relays).await.unwrap();
            drop(log);
            drop(b);
            // What the previous release leaves: no index table.
            {
                let db =
                    suite::poll_until("the database is closed", || async { Database::open(&config.path).ok() }).await;
                let txn = db.begin_write().unwrap();
                assert!(txn.delete_table(LOG_SESSIONS).unwrap(), "the index existed");
                txn.commit().unwrap();
            }
            assert_eq!(lengths(&config.path), (35, 0));

            let b = open(&config).await;
            let log = b.storage().relay_log;
            assert_eq!(log.trim_session("pokt1a", "s1").await.unwrap(), 10);
            assert_eq!(log.trim_session("pokt1a", "s1").await.unwrap(), 0);
            let left = log.read("pokt1a", "c", 100).await.unwrap();
            assert_eq!(left.len(), 20);
            assert!(left.iter().all(|e| e.relay.session_id != "s1"));
            assert_eq!(
                log.read("pokt1b", "c", 100).await.unwrap().len(),
                5,
                "other supplier untouched"
            );
            // Acks and appends keep the index in step.
            let acked: Vec<EntryId> = left
                .iter()
                .filter(|e| e.relay.session_id == "s")
                .map(|e| e.id)
                .collect();
            assert_eq!(log.ack("pokt1a", &acked).await.unwrap(), 10);
            log.append(vec![suite::relay("pokt1a", "s2", 200)]).await.unwrap();
            assert_eq!(
                log.trim_session("pokt1a", "s").await.unwrap(),
                0,
                "acked entries left the index"
            );
            assert_eq!(log.trim_session("pokt1a", "s2").await.unwrap(), 11);
            drop(log);
            drop(b);
            let closed = suite::poll_until("the database is closed", || async {
                Database::open(&config.path).ok().map(drop)
            });
            closed.await;
            assert_eq!(lengths(&config.path), (5, 5), "wal {wal}");
        }
    }

    /// What a binary from before the session index does to a database it opens: appends and deletes log
    /// entries (and raises the supplier's sequence) without touching the index or the index version.
    fn as_an_older_binary(path: &std::path::Path, supplier: &str, delete: &[u64], append: &[(&str, u64)]) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let sid = txn
                .open_table(SUPPLIERS)
                .unwrap()
                .get(supplier)
                .unwrap()
                .unwrap()
                .value();
            let mut log = txn.open_table(LOG).unwrap();
            for seq in delete {
                assert!(log.remove((sid, *seq)).unwrap().is_some(), "entry {seq} existed");
            }
            let mut meta = txn.open_table(META).unwrap();
            let mut last = meta.get(seq_key(sid).as_str()).unwrap().unwrap().value();
            for (session, n) in append {
                last += 1;
                let value = LogValue::encode(session, 100, &n.to_be_bytes(), b"older binary").unwrap();
                log.insert((sid, last), value.as_slice()).unwrap();
            }
            meta.insert(seq_key(sid).as_str(), last).unwrap();
        }
        txn.commit().unwrap();
    }

    /// Downgrade then upgrade: the older binary deleted as many entries as it appended, so log and index are
    /// the same length but the index misses the new session and still lists the deleted entries. The open
    /// rebuilds it (the index version alone would not tell: the older binary left it as it was), and trims
    /// find every entry of their session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_made_stale_by_an_older_binary_is_rebuilt_at_open_even_with_equal_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let config = RedbConfig::new(dir.path().join("downgraded.redb"));
        let b = open(&config).await;
        let log = b.storage().relay_log;
        log.append(
            (0..10)
                .map(|n| suite::relay("pokt1a", ["s1", "s2"][(n % 2) as usize], n))
                .collect(),
        )
        .await
        .unwrap();
        log.append((0..4).map(|n| suite::relay("pokt1b", "s1", 50 + n)).collect())
            .await
            .unwrap();
        drop(log);
        drop(b);
        suite::poll_until("the database is closed", || async {
            Database::open(&config.path).ok().map(drop)
        })
        .await;
        assert_eq!(lengths(&config.path), (14, 14));
        // Sequences 1..=10 of pokt1a: odd ones are s1. The older binary deletes three of s1 and appends three
        // of s3.
        as_an_older_binary(&config.path, "pokt1a", &[1, 3, 5], &[("s3", 1), ("s3", 2), ("s3", 3)]);
        assert_eq!(lengths(&config.path), (14, 14), "equal lengths, stale index");

        let b = open(&config).await;
        let log = b.storage().relay_log;
        assert_eq!(
            log.trim_session("pokt1a", "s3").await.unwrap(),
            3,
            "the older binary's entries are indexed"
        );
        assert_eq!(
            log.trim_session("pokt1a", "s1").await.unwrap(),
            2,
            "only the entries still in the log"
        );
        assert_eq!(log.trim_session("pokt1a", "s2").await.unwrap(), 5);
        assert_eq!(log.trim_session("pokt1b", "s1").await.unwrap(), 4);
        assert!(log.read("pokt1a", "c", 100).await.unwrap().is_empty());
        drop(log);
        drop(b);
        suite::poll_until("the database is closed", || async {
            Database::open(&config.path).ok().map(drop)
        })
        .await;
        assert_eq!(lengths(&config.path), (0, 0));
    }

    /// An index with the right length and every supplier's newest entry indexed is still rebuilt when META
    /// has no index version (written before the version existed) or another one, and the open records the
    /// current version in the same transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_without_the_current_version_is_rebuilt_at_open() {
        for recorded in [None, Some(SESSION_INDEX_VERSION + 1)] {
            let dir = tempfile::tempdir().unwrap();
            let config = RedbConfig::new(dir.path().join("versioned.redb"));
            let b = open(&config).await;
            let log = b.storage().relay_log;
            log.append(
                (0..6)
                    .map(|n| suite::relay("pokt1a", ["s1", "s2"][(n % 2) as usize], n))
                    .collect(),
            )
            .await
            .unwrap();
            drop(log);
            drop(b);
            let db = suite::poll_until("the database is closed", || async { Database::open(&config.path).ok() }).await;
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                assert_eq!(
                    meta.get(SESSION_INDEX_VERSION_KEY).unwrap().map(|g| g.value()),
                    Some(SESSION_INDEX_VERSION),
                    "recorded at the first open"
                );
                match recorded {
                    None => meta.remove(SESSION_INDEX_VERSION_KEY).unwrap(),
                    Some(v) => meta.insert(SESSION_INDEX_VERSION_KEY, v).unwrap(),
                };
                // Entry 1 (s1) indexed under the wrong session: same length, newest entry (6) still indexed.
                let mut index = txn.open_table(LOG_SESSIONS).unwrap();
                assert!(index.remove((0, b"s1".as_slice(), 1)).unwrap().is_some());
                index.insert((0, b"elsewhere".as_slice(), 1), ()).unwrap();
            }
            txn.commit().unwrap();
            drop(db);

            let b = open(&config).await;
            let log = b.storage().relay_log;
            assert_eq!(
                log.trim_session("pokt1a", "s1").await.unwrap(),
                3,
                "recorded {recorded:?}"
            );
            assert_eq!(log.trim_session("pokt1a", "elsewhere").await.unwrap(), 0);
            drop(log);
            drop(b);
            let db = suite::poll_until("the database is closed", || async { Database::open(&config.path).ok() }).await;
            let txn = db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            assert_eq!(
                meta.get(SESSION_INDEX_VERSION_KEY).unwrap().map(|g| g.value()),
                Some(SESSION_INDEX_VERSION)
            );
        }
    }
}
