//! The raft log on its own redb file, with group commit.
//!
//! One dedicated thread owns the log `Database` and drains a channel of commands in order. Queued appends, votes,
//! commits, truncations and purges are applied in one write transaction committed with
//! `Durability::Immediate` (one fsync for everything queued: group commit); then every waiter is answered and
//! every append's `IOFlushed` callback fires. Appended entries are readable as soon as `append` returns: they sit
//! in an in-memory tail until the writer has committed them. `save_vote`, `truncate_after` and `purge` wait for
//! their commit; `save_committed` does not (a stale committed id only costs a little re-apply after a crash).
//! The log and the state machine use separate redb files so log fsyncs never queue behind applies.

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

/// The in-memory tail: index -> (append generation, entry), plus the next generation.
#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, (u64, Entry)>,
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
}

impl LogStore {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Arc::new(Database::create(path).map_err(io_err)?);
        {
            let txn = db.begin_write().map_err(io_err)?;
            txn.open_table(LOG).map_err(io_err)?;
            txn.open_table(META).map_err(io_err)?;
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
        Ok(Self { shared, tx })
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
            shared.tail().entries.retain(|_, (eg, _)| *eg > g);
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
                Some(e) => t.entries.range(start..e).map(|(_, (_, v))| v.clone()).collect(),
                None => t.entries.range(start..).map(|(_, (_, v))| v.clone()).collect(),
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
            .map(|(_, (_, e))| e.log_id());
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
                encoded.push((i, encode(&e)?));
                tail.entries.insert(i, (g, e));
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
