//! The group-commit writer: one dedicated thread owns every redb write transaction.
//!
//! Callers (async or sync) send an [`Op`] (a closure applied to the open transaction) and wait for its reply.
//! The thread takes the first queued op, then every op already queued (and, with a `window` > 0, those arriving
//! within it) until `max_entries` relays are gathered, applies them all to one transaction, commits once and
//! only then replies to every caller. An op says whether it needs durability: a group with any durable op
//! commits with `Durability::Immediate` (one fsync; it also persists every earlier non-durable commit, redb's
//! documented semantics), a group of non-durable ops only (the relay WAL's applies, already durable in the WAL)
//! with `Durability::None`. So an `Ok` reply to a durable op means durable.
//! An op's logical failure (e.g. a version conflict) is its own reply and writes nothing; a redb failure while
//! applying aborts the whole transaction and fails every op of it.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::tables::db_err;
use crate::StorageError;

/// Reply hook of an applied op, called with the commit outcome.
type Done = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
/// Applies an op; `Err` is fatal to the transaction.
type Apply = Box<dyn FnOnce(&WriteTransaction) -> Result<Done, StorageError> + Send>;

/// One write request.
pub(crate) struct Op {
    weight: usize,
    /// Whether the commit holding this op must be `Durability::Immediate`.
    durable: bool,
    apply: Apply,
}

/// Gathering limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupCommit {
    pub window: Duration,
    pub max_entries: usize,
}

/// Handle to the writer thread (cheap to clone; the thread stops when every handle is dropped).
#[derive(Clone)]
pub(crate) struct Writer {
    tx: Sender<Op>,
}

fn writer_gone() -> StorageError {
    StorageError::Unavailable("redb writer thread stopped".into())
}

fn make_op<T, F, R>(weight: usize, durable: bool, f: F, reply: R) -> Op
where
    T: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    R: FnOnce(Result<T, StorageError>) + Send + 'static,
{
    Op {
        weight,
        durable,
        apply: Box::new(move |txn| {
            let outcome = f(txn)?;
            Ok(Box::new(move |committed: Result<(), StorageError>| {
                reply(committed.and(outcome));
            }) as Done)
        }),
    }
}

impl Writer {
    /// Starts the writer thread on `db`.
    pub fn spawn(db: Arc<Database>, limits: GroupCommit) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || run(&db, &rx, limits))
            .map_err(|e| StorageError::Backend(format!("cannot start redb writer thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` in the next group commit and returns its result once the commit is durable.
    /// `f` returns `Err` for redb failures (fatal to the transaction), `Ok(Err)` for logical failures.
    pub async fn call<T, F>(&self, weight: usize, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op = make_op(weight, true, f, move |r| {
            let _ = tx.send(r);
        });
        self.tx.send(op).map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Blocking variant of [`Writer::call`] for sync callers (never call it on an async runtime worker).
    pub fn call_blocking<T, F>(&self, weight: usize, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let op = make_op(weight, true, f, move |r| {
            let _ = tx.send(r);
        });
        self.tx.send(op).map_err(|_| writer_gone())?;
        rx.recv().map_err(|_| writer_gone())?
    }

    /// Queues `f` without waiting; `reply` runs on the writer thread with its result after the commit. With
    /// `durable = false` the commit may be `Durability::None` (lost on a crash unless a durable commit follows),
    /// so `reply(Ok)` then means applied and visible to readers, not durable.
    pub fn submit<T, F, R>(&self, weight: usize, durable: bool, f: F, reply: R) -> Result<(), StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
        R: FnOnce(Result<T, StorageError>) + Send + 'static,
    {
        self.tx
            .send(make_op(weight, durable, f, reply))
            .map_err(|_| writer_gone())
    }
}

fn run(db: &Database, rx: &Receiver<Op>, limits: GroupCommit) {
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + limits.window;
        let mut weight = first.weight;
        let mut ops = vec![first];
        while weight < limits.max_entries {
            let next = match rx.try_recv() {
                Ok(op) => op,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(op) => op,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            weight += next.weight;
            ops.push(next);
        }
        commit(db, ops);
    }
}

fn commit(db: &Database, ops: Vec<Op>) {
    let mut txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "redb begin_write failed");
            return; // dropping the ops fails their callers with Unavailable
        }
    };
    let durability = if ops.iter().any(|op| op.durable) {
        Durability::Immediate
    } else {
        Durability::None
    };
    if let Err(e) = txn.set_durability(durability) {
        tracing::error!(error = %e, "redb set_durability failed");
        return;
    }
    let mut dones = Vec::with_capacity(ops.len());
    for op in ops {
        match (op.apply)(&txn) {
            Ok(done) => dones.push(done),
            Err(e) => {
                tracing::error!(error = %e, "redb write failed; aborting the group commit");
                drop(txn);
                for done in dones {
                    done(Err(e.clone()));
                }
                return;
            }
        }
    }
    let outcome = txn.commit().map_err(db_err);
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "redb commit failed");
    }
    for done in dones {
        done(outcome.clone());
    }
}
