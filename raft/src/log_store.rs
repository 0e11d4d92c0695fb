//! The raft log on its own redb file, with group commit.
//!
//! One dedicated thread owns the log `Database` and drains a channel of commands in order. Queued appends, votes,
//! commits, truncations and purges are applied in one write transaction committed with
//! `Durability::Immediate` (one fsync for everything queued: group commit); then every waiter is answered and
//! every append's `IOFlushed` callback fires. Appended entries are readable as soon as `append` returns: they sit
//! in an in-memory tail until the writer has committed them. `save_vote`, `truncate_after` and `purge` wait for
//! their commit; `save_committed` does not (a stale committed id only costs a little re-apply after a crash).
//! The log and the state machine use separate redb files so log fsyncs never queue behind applies.
//!
//! Replication reads entries through `limited_get_log_entries`, which stops once the entries read reach
//! [`LogStore::with_max_payload_bytes`] (always at least one entry): with relays of several MiB per entry, an append
//! RPC of `max_payload_entries` entries would otherwise exceed the raft port's request limit and never get through.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::types::{Entry, LogId, TypeConfig, Vote, decode, encode};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const K_VOTE: &str = "vote";
const K_COMMITTED: &str = "committed";
const K_PURGED: &str = "purged";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

enum Cmd {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        gen_: u64,
        cb: IOFlushed<TypeConfig>,
    },
    Vote(Vec<u8>, oneshot::Sender<io::Result<()>>),
    Committed(Option<Vec<u8>>),
    Truncate(Option<u64>, oneshot::Sender<io::Result<()>>),
    Purge(LogId, oneshot::Sender<io::Result<()>>),
}

/// The in-memory tail: index -> (append generation, entry, encoded size), plus the next generation.
#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, (u64, Entry, usize)>,
    next_gen: u64,
}

struct Shared {
    db: Arc<Database>,
    /// Entries appended but not yet committed by the writer, by index, with the generation of their append.
    tail: Mutex<Tail>,
    /// Last purged log id (purges are rare; cached to answer `get_log_state`).
    purged: Mutex<Option<LogId>>,
}

impl Shared {
    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn purged(&self) -> MutexGuard<'_, Option<LogId>> {
        self.purged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The redb-backed raft log store (cheap to clone; every clone shares the writer thread).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Cmd>,
    /// Encoded bytes of entries one replication read returns at most (beyond its first entry).
    max_payload_bytes: usize,
}

/// Page cache of each of the node's redb files (the log here, the state machine in [`crate::sm`]). redb's default
/// is 1 GiB per file, which a long-running node fills with pages of entries it will not read again: two files
/// would let the process grow towards 2 GiB. Appends and applies read recent pages; a follower catching up
/// from older entries reads them from disk.
pub const REDB_CACHE_BYTES: usize = 64 << 20;

/// Default of [`LogStore::with_max_payload_bytes`].
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 << 20;

impl LogStore {
    /// Opens (or creates) the log at `path` and starts its writer thread. A log of a newer schema version than
    /// this binary's is refused (`InvalidData`, [`crate::SCHEMA_VERSION`]).
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Arc::new(
            storage::redb::create_when_free(
                redb::Builder::new().set_cache_size(REDB_CACHE_BYTES),
                path,
                storage::redb::BUSY_WAIT,
                |_| {},
            )
            .map_err(io_err)?,
        );
        {
            let txn = db.begin_write().map_err(io_err)?;
            txn.open_table(LOG).map_err(io_err)?;
            txn.open_table(META).map_err(io_err)?;
            // Before anything reads the log: a newer binary's log is refused, writing nothing (`crate::schema`).
            crate::schema::check_and_record(&txn, META, path)?;
            txn.commit().map_err(io_err)?;
        }
        let purged = {
            let txn = db.begin_read().map_err(io_err)?;
            let meta = txn.open_table(META).map_err(io_err)?;
            match meta.get(K_PURGED).map_err(io_err)? {
                Some(v) => Some(decode::<LogId>(v.value())?),
                None => None,
            }
        };
        let shared = Arc::new(Shared {
            db: db.clone(),
            tail: Mutex::new(Tail::default()),
            purged: Mutex::new(purged),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer(s, rx))
            .map_err(io_err)?;
        Ok(Self {
            shared,
            tx,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        })
    }

    /// Caps the encoded bytes of the entries of one replication read (one append RPC): entries are added while
    /// the total stays within `bytes`; the first entry is always returned, whatever its size.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes.max(1);
        self
    }

    fn send(&self, cmd: Cmd) -> io::Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| io::Error::other("raft log writer stopped"))
    }

    async fn call(&self, f: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Cmd) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(f(tx))?;
        rx.await.map_err(|_| io::Error::other("raft log writer stopped"))?
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.shared.db.begin_read().map_err(io_err)?;
        let meta = txn.open_table(META).map_err(io_err)?;
        match meta.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(decode::<T>(v.value())?)),
            None => Ok(None),
        }
    }

    fn last_in_db(&self) -> io::Result<Option<LogId>> {
        let txn = self.shared.db.begin_read().map_err(io_err)?;
        let log = txn.open_table(LOG).map_err(io_err)?;
        match log.last().map_err(io_err)? {
            Some((_, v)) => Ok(Some(decode::<Entry>(v.value())?.log_id())),
            None => Ok(None),
        }
    }
}

/// The writer thread: drains queued commands, applies them in order in one transaction, fsyncs once.
fn writer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    while let Some(first) = rx.blocking_recv() {
        let mut cmds = vec![first];
        while let Ok(c) = rx.try_recv() {
            cmds.push(c);
            if cmds.len() >= 4096 {
                break;
            }
        }
        let result = commit_batch(&shared, &cmds);
        let max_gen = cmds
            .iter()
            .filter_map(|c| match c {
                Cmd::Append { gen_, .. } => Some(*gen_),
                _ => None,
            })
            .max();
        if result.is_ok()
            && let Some(g) = max_gen
        {
            // Entries of committed appends are now readable from the file; drop them from the tail (entries of
            // later appends, e.g. after a truncation, stay).
            shared.tail().entries.retain(|_, (eg, _, _)| *eg > g);
        }
        for c in cmds {
            let r = result.as_ref().map(|_| ()).map_err(io_err);
            match c {
                Cmd::Append { cb, .. } => cb.io_completed(r),
                Cmd::Vote(_, reply) | Cmd::Purge(_, reply) | Cmd::Truncate(_, reply) => {
                    let _ = reply.send(r);
                }
                Cmd::Committed(_) => {}
            }
        }
    }
}

fn commit_batch(shared: &Shared, cmds: &[Cmd]) -> Result<(), io::Error> {
    let mut txn = shared.db.begin_write().map_err(io_err)?;
    txn.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut log = txn.open_table(LOG).map_err(io_err)?;
        let mut meta = txn.open_table(META).map_err(io_err)?;
        for c in cmds {
            match c {
                Cmd::Append { entries, .. } => {
                    for (i, bytes) in entries {
                        log.insert(*i, bytes.as_slice()).map_err(io_err)?;
                    }
                }
                Cmd::Vote(v, _) => {
                    meta.insert(K_VOTE, v.as_slice()).map_err(io_err)?;
                }
                Cmd::Committed(Some(c)) => {
                    meta.insert(K_COMMITTED, c.as_slice()).map_err(io_err)?;
                }
                Cmd::Committed(None) => {
                    meta.remove(K_COMMITTED).map_err(io_err)?;
                }
                Cmd::Truncate(since, _) => {
                    let from = since.unwrap_or(0);
                    log.retain_in(from.., |_, _| false).map_err(io_err)?;
                }
                Cmd::Purge(upto, _) => {
                    log.retain_in(..=upto.index(), |_, _| false).map_err(io_err)?;
                    meta.insert(K_PURGED, encode(upto)?.as_slice()).map_err(io_err)?;
                }
            }
        }
    }
    txn.commit().map_err(io_err)
}

fn range_start_end<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(e.saturating_add(1)),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_start_end(&range);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        // Snapshot the tail first: the writer drops tail entries only after they are in the file, so an entry
        // missing from this tail copy is in the read transaction opened below.
        let tail: Vec<Entry> = {
            let t = self.shared.tail();
            match end {
                Some(e) => t.entries.range(start..e).map(|(_, (_, v, _))| v.clone()).collect(),
                None => t.entries.range(start..).map(|(_, (_, v, _))| v.clone()).collect(),
            }
        };
        let mut out: BTreeMap<u64, Entry> = BTreeMap::new();
        {
            let txn = self.shared.db.begin_read().map_err(io_err)?;
            let log = txn.open_table(LOG).map_err(io_err)?;
            let iter = match end {
                Some(e) => log.range(start..e).map_err(io_err)?,
                None => log.range(start..).map_err(io_err)?,
            };
            for item in iter {
                let (k, v) = item.map_err(io_err)?;
                out.insert(k.value(), decode::<Entry>(v.value())?);
            }
        }
        for e in tail {
            out.insert(e.index(), e);
        }
        Ok(out.into_values().collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(K_VOTE)
    }

    /// Entries from `start` on, below `end`, while their encoded size stays within the payload limit (at least
    /// one entry when the range is not empty).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        if end <= start {
            return Ok(Vec::new());
        }
        // As in `try_get_log_entries`: the tail copy first, then the file; the tail wins for an index in both.
        let tail: BTreeMap<u64, (Entry, usize)> = {
            let t = self.shared.tail();
            t.entries
                .range(start..end)
                .map(|(i, (_, e, n))| (*i, (e.clone(), *n)))
                .collect()
        };
        let txn = self.shared.db.begin_read().map_err(io_err)?;
        let log = txn.open_table(LOG).map_err(io_err)?;
        let mut file = log.range(start..end).map_err(io_err)?.peekable();
        let mut tail = tail.into_iter().peekable();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            let next_file = match file.peek() {
                Some(Ok((k, _))) => Some(k.value()),
                Some(Err(_)) => match file.next() {
                    Some(Err(e)) => return Err(io_err(e)),
                    _ => None,
                },
                None => None,
            };
            let next_tail = tail.peek().map(|(i, _)| *i);
            let from_tail = match (next_file, next_tail) {
                (None, None) => break,
                (Some(f), Some(t)) => t <= f,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let (entry, size) = if from_tail {
                if next_file == next_tail {
                    file.next();
                }
                match tail.next() {
                    Some((_, entry_and_size)) => entry_and_size,
                    None => break,
                }
            } else {
                match file.next() {
                    Some(item) => {
                        let (_, v) = item.map_err(io_err)?;
                        let raw = v.value();
                        (decode::<Entry>(raw)?, raw.len())
                    }
                    None => break,
                }
            };
            if !out.is_empty() && bytes.saturating_add(size) > self.max_payload_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged = *self.shared.purged();
        let tail_last = self
            .shared
            .tail()
            .entries
            .last_key_value()
            .map(|(_, (_, e, _))| e.log_id());
        let last = match tail_last {
            Some(l) => Some(l),
            None => self.last_in_db()?,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = encode(vote)?;
        self.call(|tx| Cmd::Vote(bytes, tx)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let bytes = committed.as_ref().map(encode).transpose()?;
        self.send(Cmd::Committed(bytes))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.read_meta(K_COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        let gen_ = {
            let mut tail = self.shared.tail();
            let g = tail.next_gen;
            tail.next_gen += 1;
            for e in entries {
                let i = e.index();
                let bytes = encode(&e)?;
                tail.entries.insert(i, (g, e, bytes.len()));
                encoded.push((i, bytes));
            }
            g
        };
        self.send(Cmd::Append {
            entries: encoded,
            gen_,
            cb: callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let since = last_log_id.as_ref().map(|l| l.index() + 1);
        {
            let mut tail = self.shared.tail();
            let _removed = tail.entries.split_off(&since.unwrap_or(0));
        }
        self.call(|tx| Cmd::Truncate(since, tx)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        {
            let mut tail = self.shared.tail();
            let keep = tail.entries.split_off(&(log_id.index() + 1));
            tail.entries = keep;
        }
        self.call(|tx| Cmd::Purge(log_id, tx)).await?;
        *self.shared.purged() = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use openraft::entry::RaftEntry;
    use openraft::type_config::TypeConfigExt;

    use super::*;
    use crate::types::{Op, Request};

    fn entry(index: u64, bytes: usize) -> Entry {
        let id = LogId::new(openraft::vote::leader_id_std::CommittedLeaderId::new(1), index);
        let op = Op::KvSet {
            key: format!("k{index}"),
            value: vec![7; bytes],
            ttl_ms: None,
        };
        Entry::new_normal(
            id,
            Request {
                now_ms: 1,
                ops: vec![op],
            },
        )
    }

    async fn append(log: &mut LogStore, entries: Vec<Entry>) {
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index()).collect()
    }

    /// Replication reads stop at the byte budget (always at least one entry), whether the entries are in the
    /// file or still in the in-memory tail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replication_reads_stop_at_the_byte_budget_and_always_return_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(&entry(1, 1000)).unwrap().len();
        let mut log = LogStore::open(&dir.path().join("log.redb"))
            .unwrap()
            .with_max_payload_bytes(2 * one + one / 2);
        append(&mut log, (1..=6).map(|i| entry(i, 1000)).collect()).await;
        assert_eq!(indexes(&log.limited_get_log_entries(1, 7).await.unwrap()), vec![1, 2]);
        assert_eq!(indexes(&log.limited_get_log_entries(5, 7).await.unwrap()), vec![5, 6]);
        assert_eq!(indexes(&log.limited_get_log_entries(6, 7).await.unwrap()), vec![6]);
        assert!(log.limited_get_log_entries(7, 7).await.unwrap().is_empty());
        // An entry over the budget goes alone.
        let mut small = log.clone().with_max_payload_bytes(10);
        assert_eq!(indexes(&small.limited_get_log_entries(1, 7).await.unwrap()), vec![1]);
        // Entries still in the tail (not yet committed by the writer) or replaced after a truncation.
        log.truncate_after(Some(entry(3, 0).log_id())).await.unwrap();
        let (tx, _rx) = TypeConfig::oneshot();
        log.append(vec![entry(4, 10), entry(5, 10), entry(6, 10)], IOFlushed::signal(tx))
            .await
            .unwrap();
        let got = log.limited_get_log_entries(3, 10).await.unwrap();
        assert_eq!(indexes(&got), vec![3, 4, 5, 6]);
        assert_eq!(got[1], entry(4, 10), "the new entry 4, not the truncated one");
    }
}
