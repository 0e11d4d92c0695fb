//! The group-commit writer: one dedicated thread owns every redb write transaction.
//!
//! Callers (async or sync) send an [`Op`] (a closure applied to the open transaction) and wait for its reply.
//! The thread takes the first queued op, then every op already queued (and, with a `window` > 0, those arriving
//! within it) until `max_entries` relays are gathered, applies them all to one transaction, commits once and
//! only then replies to every caller. An op says whether it needs durability: a group with any durable op
//! commits with `Durability::Immediate` (one fsync; it also persists every earlier non-durable commit, redb's
//! documented semantics), a group of non-durable ops only (the relay WAL's applies, already durable in the WAL)
//! with `Durability::None`. So an `Ok` reply to a durable op means durable.
//! A relay-WAL apply may instead be *deferred* ([`Writer::submit_deferred`]): a group that starts with one
//! waits up to `defer` for company (so at 2,000 relays/s one commit carries ~20 records instead of one, which
//! cut the writer thread's CPU from ~65–75 µs to ~40 µs per relay), unless a non-deferred op or a
//! [`Writer::flush`] (a reader waiting for the applies) arrives first. While it defers, the thread parks instead
//! of waiting on the channel, so the applies that join the group do not wake it one by one; only what ends the
//! wait unparks it (0.68 → 0.11 context switches and ~55 → ~26 µs of CPU per relay at 2,000 relays/s).
//! With [`GroupCommit::quick_repair`] (set when the relay WAL is on) durable commits also use redb's
//! quick-repair: they record the allocator state and commit in two phases (two `fsync`s instead of one, plus
//! the state's pages: a quick check here measured about twice the time of a plain durable commit), and an open after a crash (SIGKILL, power loss) loads that state instead of walking
//! every tree of the database to rebuild it, which takes a time that grows with the file. Only the last durable
//! commit before the crash counts, and with the WAL on durable commits are off the append path (checkpoints,
//! leases, consumer-group and KV writes), so the extra `fsync` costs no relay latency; without the WAL every
//! relay-log append is a durable commit and the baseline keeps one `fsync` per group (a crash then costs a full
//! repair at the next open). Non-durable commits (the WAL's applies) never record it: a crash loses them anyway.
//! A third kind of op, [`Durable::Soon`] (the miner's ingest write sets: tries, records and relay-log acks that a
//! crash would make it redo from the relay log), replies after a non-durable commit; the thread then makes
//! sure a durable commit follows within [`GroupCommit::sync_within`]: the next group commits durably once that
//! much time has passed, and an idle thread commits an empty durable transaction when it runs out. A crash
//! therefore loses at most the last `sync_within` of such ops, always a suffix of the commit order (redb
//! commits are atomic and applied in order), and a clean close keeps them (redb's close makes pending
//! non-durable commits durable). Measured: the ingest's durable commits were ~1/4 of the device's syncs at
//! 2,000 relays/s, and the relay WAL's `fdatasync`s queued behind them (BENCHMARKS.md).
//! An op's logical failure (e.g. a version conflict) is its own reply and writes nothing; a redb failure while
//! applying aborts the whole transaction and fails every op of it. Every op's reply runs exactly once, also
//! when its apply fails or it is dropped unapplied (queued ops of a stopped writer fail with `Unavailable`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::tables::db_err;
use super::wal::fault::{FaultHook, Site};
use crate::StorageError;

/// Reply hook of an applied op, called with the commit outcome.
type Done = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
/// Applies an op; `Err` is fatal to the transaction.
type Apply = Box<dyn FnOnce(&WriteTransaction) -> Result<Done, StorageError> + Send>;

/// When the commit holding an op must reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// This commit is `Durability::Immediate`: the reply means durable.
    Now,
    /// The reply means applied; a durable commit follows within [`GroupCommit::sync_within`] (module docs).
    Soon,
    /// The reply means applied; the caller makes it durable itself (the relay WAL's checkpoints).
    Later,
}

/// One write request.
pub(crate) struct Op {
    weight: usize,
    /// When the commit holding this op must be durable.
    durable: Durable,
    /// Whether a group starting with this op may wait up to [`GroupCommit::defer`] for more.
    deferrable: bool,
    apply: Apply,
}

/// What the writer thread receives.
enum Msg {
    Op(Op),
    /// Commit what is gathered now (and do not defer the next group).
    Flush,
    /// Commit what is gathered, then end the thread (ops queued behind it fail with `Unavailable`).
    Stop,
}

/// Gathering limits.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    pub window: Duration,
    pub max_entries: usize,
    /// How long a group that starts with a deferrable op waits for more.
    pub defer: Duration,
    /// Durable commits record redb's allocator state with 2-phase commit (`set_quick_repair`), so an open
    /// after a crash loads it instead of walking the whole database (module docs).
    pub quick_repair: bool,
    /// A [`Durable::Soon`] op is durable at the latest this long after its commit (module docs).
    pub sync_within: Duration,
    /// Fault injection at durable commits (tests; zero-sized otherwise).
    pub faults: FaultHook,
}

/// Handle to the writer thread (cheap to clone; the thread stops when every handle is dropped).
#[derive(Clone)]
pub(crate) struct Writer {
    tx: Sender<Msg>,
    /// The writer thread, unparked by every message that ends a deferred wait (see `run`).
    thread: std::thread::Thread,
    /// Its handle, taken by [`Writer::stop`].
    handle: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Why the last group could not start a transaction (redb refuses every write after an I/O error in a
    /// commit, `PreviousIo`, until the database is closed and opened again); cleared by a commit.
    broken: Arc<Mutex<Option<String>>>,
    /// Set by the thread after a [`Durable::Soon`] op's non-durable commit, cleared by a durable commit.
    unsynced: Arc<AtomicBool>,
}

fn writer_gone() -> StorageError {
    StorageError::Unavailable("redb writer thread stopped".into())
}

/// An op's reply hook, called exactly once: with the op's outcome, or with an error when the op is dropped
/// without one (its own apply failed, `begin_write` failed, the thread stopped). A caller waiting on a channel
/// would notice the drop anyway; a hook like the relay WAL's record of applied records would not, and its
/// readers would wait forever.
struct Reply<T, R: FnOnce(Result<T, StorageError>)> {
    hook: Option<R>,
    _result: PhantomData<fn(T)>,
}

impl<T, R: FnOnce(Result<T, StorageError>)> Reply<T, R> {
    fn send(mut self, r: Result<T, StorageError>) {
        if let Some(hook) = self.hook.take() {
            hook(r);
        }
    }
}

impl<T, R: FnOnce(Result<T, StorageError>)> Drop for Reply<T, R> {
    fn drop(&mut self) {
        if let Some(hook) = self.hook.take() {
            hook(Err(StorageError::Unavailable(
                "redb write dropped before its commit (no transaction could be started, or the writer stopped)".into(),
            )));
        }
    }
}

fn make_op<T, F, R>(weight: usize, durable: Durable, f: F, reply: R) -> Msg
where
    T: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    R: FnOnce(Result<T, StorageError>) + Send + 'static,
{
    let reply = Reply {
        hook: Some(reply),
        _result: PhantomData,
    };
    Msg::Op(Op {
        weight,
        durable,
        deferrable: false,
        apply: Box::new(move |txn| {
            let outcome = match f(txn) {
                Ok(outcome) => outcome,
                Err(e) => {
                    // The transaction is aborted: this op fails with its own error.
                    reply.send(Err(e.clone()));
                    return Err(e);
                }
            };
            Ok(Box::new(move |committed: Result<(), StorageError>| {
                reply.send(committed.and(outcome));
            }) as Done)
        }),
    })
}

impl Writer {
    /// Starts the writer thread on `db`.
    pub fn spawn(db: Arc<Database>, limits: GroupCommit) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel();
        let broken = Arc::new(Mutex::new(None));
        let unsynced = Arc::new(AtomicBool::new(false));
        let (flag, unsynced_flag) = (broken.clone(), unsynced.clone());
        let handle = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || run(&db, &rx, limits, &flag, &unsynced_flag))
            .map_err(|e| StorageError::Backend(format!("cannot start redb writer thread: {e}")))?;
        Ok(Self {
            tx,
            thread: handle.thread().clone(),
            handle: Arc::new(Mutex::new(Some(handle))),
            broken,
            unsynced,
        })
    }

    /// Whether a [`Durable::Soon`] op was committed and no durable commit followed yet: a crash now, or closing a
    /// database whose commits fail (redb then cannot make pending commits durable), loses those ops.
    pub fn holds_unsynced(&self) -> bool {
        self.unsynced.load(Ordering::SeqCst)
    }

    /// Ends the thread after the ops queued before this call and waits for it (blocking; idempotent). Ops sent
    /// afterwards fail with `Unavailable`.
    pub fn stop(&self) {
        let _ = self.send_waking(Msg::Stop);
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("the redb writer thread panicked");
        }
    }

    /// Why the writer could not start its last transaction, if it could not: the database refuses writes
    /// until it is opened again.
    pub fn broken(&self) -> Option<String> {
        self.broken.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends a message that must end a deferred wait: the writer parks (does not wait on the channel) while
    /// it defers, so the send alone would not wake it.
    fn send_waking(&self, msg: Msg) -> Result<(), StorageError> {
        self.tx.send(msg).map_err(|_| writer_gone())?;
        self.thread.unpark();
        Ok(())
    }

    /// Runs `f` in the next group commit and returns its result once the commit is durable.
    /// `f` returns `Err` for redb failures (fatal to the transaction), `Ok(Err)` for logical failures.
    pub async fn call<T, F>(&self, weight: usize, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    {
        self.call_with(weight, Durable::Now, f).await
    }

    /// [`Writer::call`] with the op's [`Durable`]: with `Durable::Soon` the result comes once the commit is applied
    /// (visible to readers), and the commit is durable at the latest [`GroupCommit::sync_within`] later.
    pub async fn call_with<T, F>(&self, weight: usize, durable: Durable, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op = make_op(weight, durable, f, move |r| {
            let _ = tx.send(r);
        });
        self.send_waking(op)?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Blocking variant of [`Writer::call`] for sync callers (never call it on an async runtime worker).
    pub fn call_blocking<T, F>(&self, weight: usize, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let op = make_op(weight, Durable::Now, f, move |r| {
            let _ = tx.send(r);
        });
        self.send_waking(op)?;
        rx.recv().map_err(|_| writer_gone())?
    }

    /// Queues `f` without waiting; `reply` runs on the writer thread with its result after the commit. Unless
    /// `durable` is [`Durable::Now`] the commit may be `Durability::None` (lost on a crash unless a durable commit
    /// follows), so `reply(Ok)` then means applied and visible to readers, not durable.
    pub fn submit<T, F, R>(&self, weight: usize, durable: Durable, f: F, reply: R) -> Result<(), StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
        R: FnOnce(Result<T, StorageError>) + Send + 'static,
    {
        self.send_waking(make_op(weight, durable, f, reply))
    }

    /// [`Writer::submit`] of a non-durable op that may wait up to [`GroupCommit::defer`] for more ops to share
    /// its commit (the relay WAL's applies: already durable, read rarely, and each commit has a fixed cost).
    pub fn submit_deferred<T, F, R>(&self, weight: usize, f: F, reply: R) -> Result<(), StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, StorageError>, StorageError> + Send + 'static,
        R: FnOnce(Result<T, StorageError>) + Send + 'static,
    {
        let mut msg = make_op(weight, Durable::Later, f, reply);
        if let Msg::Op(op) = &mut msg {
            op.deferrable = true;
        }
        // No unpark: a deferred group waits for its deadline, not for each op that joins it (at 2,000 relays/s
        // that was a wake-up of the writer thread per WAL record).
        self.tx.send(msg).map_err(|_| writer_gone())
    }

    /// Ends the wait of a deferred group now (or, if none is gathering, keeps the next one from waiting):
    /// for callers about to wait for deferred ops to be applied.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.send_waking(Msg::Flush)
    }
}

fn run(db: &Database, rx: &Receiver<Msg>, limits: GroupCommit, broken: &Mutex<Option<String>>, flag: &AtomicBool) {
    // A flush also keeps the next group from deferring: the op a reader waits for may be queued just after
    // its flush (at worst a rare race leaves one read waiting up to `defer`).
    let mut flushed = false;
    let mut stop = false;
    // When the oldest `Durable::Soon` commit not yet made durable was committed.
    let mut unsynced: Option<Instant> = None;
    while !stop {
        let received = match unsynced {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout((at + limits.sync_within).saturating_duration_since(Instant::now())),
        };
        let msg = match received {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                // Idle with `Soon` commits still not durable: an empty durable commit persists them. A failed one
                // is tried again a `sync_within` later, not at once: redb refuses every transaction after an I/O
                // error in a commit, and retrying at once spun a core (and logged an ERROR per try) until the
                // readiness loop reopened the database.
                if commit(db, Vec::new(), true, &limits, broken) {
                    unsynced = None;
                    flag.store(false, Ordering::SeqCst);
                } else {
                    unsynced = Some(Instant::now());
                }
                continue;
            }
        };
        let first = match msg {
            Msg::Op(op) => op,
            Msg::Flush => {
                flushed = true;
                continue;
            }
            Msg::Stop => break,
        };
        let mut deferring = first.deferrable && !flushed;
        flushed = false;
        let mut deadline = Instant::now() + if deferring { limits.defer } else { limits.window };
        let undefer = |deadline: Instant| deadline.min(Instant::now() + limits.window);
        let mut weight = first.weight;
        let mut ops = vec![first];
        while weight < limits.max_entries {
            let next = match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if deferring {
                        // Parked, not blocked on the channel: deferrable ops join without waking this thread;
                        // a flush or any other op unparks it (`Writer::send_waking`). An unpark that came before
                        // this park makes it return at once, so none is missed.
                        std::thread::park_timeout(left);
                        continue;
                    }
                    match rx.recv_timeout(left) {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            match next {
                Msg::Stop => {
                    stop = true;
                    break;
                }
                Msg::Flush => {
                    flushed = true;
                    if deferring {
                        deferring = false;
                        deadline = undefer(deadline);
                    }
                }
                Msg::Op(op) => {
                    if deferring && !op.deferrable {
                        deferring = false;
                        deadline = undefer(deadline);
                    }
                    weight += op.weight;
                    ops.push(op);
                }
            }
        }
        let soon = ops.iter().any(|op| op.durable == Durable::Soon);
        let sync_due = unsynced.is_some_and(|at| at.elapsed() >= limits.sync_within);
        let durable = sync_due || ops.iter().any(|op| op.durable == Durable::Now);
        if commit(db, ops, durable, &limits, broken) {
            if durable {
                unsynced = None;
                flag.store(false, Ordering::SeqCst);
            } else if soon {
                unsynced.get_or_insert_with(Instant::now);
                flag.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Applies `ops` in one transaction and commits it (`Durability::Immediate` when `durable`), then replies to
/// every op; true when the commit succeeded.
fn commit(db: &Database, ops: Vec<Op>, durable: bool, limits: &GroupCommit, broken: &Mutex<Option<String>>) -> bool {
    let mut txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "redb begin_write failed");
            *broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            return false; // dropping the ops fails their callers with Unavailable (see `Reply`)
        }
    };
    let durability = if durable {
        Durability::Immediate
    } else {
        Durability::None
    };
    if let Err(e) = txn.set_durability(durability) {
        tracing::error!(error = %e, "redb set_durability failed");
        return false;
    }
    if limits.quick_repair && durable {
        txn.set_quick_repair(true);
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
                return false;
            }
        }
    }
    let outcome = if durable {
        limits.faults.run(
            Site::DurableCommit,
            || txn.commit().map_err(db_err),
            StorageError::Backend,
        )
    } else {
        txn.commit().map_err(db_err)
    };
    match &outcome {
        Ok(()) => *broken.lock().unwrap_or_else(|e| e.into_inner()) = None,
        Err(e) => tracing::error!(error = %e, "redb commit failed"),
    }
    let committed = outcome.is_ok();
    for done in dones {
        done(outcome.clone());
    }
    committed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::mpsc::Receiver;

    use super::*;
    use redb::ReadableTable as _;

    use crate::redb::tables::META;

    /// A writer whose deferred groups wait an hour, on a fresh database.
    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("w.redb")).unwrap());
        let limits = GroupCommit {
            window: Duration::ZERO,
            max_entries: 512,
            defer: Duration::from_secs(3600),
            quick_repair: false,
            sync_within: Duration::from_secs(3600),
            faults: FaultHook::none(),
        };
        (Writer::spawn(db, limits).unwrap(), dir)
    }

    /// Submits a deferred op writing META `key`; the receiver gets its commit outcome.
    fn deferred(w: &Writer, key: &'static str) -> Receiver<Result<(), StorageError>> {
        let (tx, rx) = mpsc::channel();
        w.submit_deferred(
            1,
            move |txn| {
                txn.open_table(META)
                    .map_err(db_err)?
                    .insert(key, 1u64)
                    .map_err(db_err)?;
                Ok(Ok(()))
            },
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
        rx
    }

    const PATIENCE: Duration = Duration::from_secs(30);

    /// An op whose apply fails gets its own error, and the other ops of its group (aborted with it) get it too:
    /// no reply hook is dropped uncalled (the relay WAL's applies report through such hooks).
    #[test]
    fn an_op_whose_apply_fails_still_replies() {
        let (w, _dir) = writer();
        let ok = deferred(&w, "a");
        let (tx, failed) = mpsc::channel();
        w.submit(
            1,
            Durable::Later,
            |_txn| Err::<Result<(), StorageError>, _>(StorageError::Backend("apply failed".into())),
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
        let failed = failed.recv_timeout(PATIENCE).unwrap();
        assert_eq!(failed, Err(StorageError::Backend("apply failed".into())));
        assert_eq!(
            ok.recv_timeout(PATIENCE).unwrap(),
            Err(StorageError::Backend("apply failed".into()))
        );
    }

    #[test]
    fn a_deferred_group_commits_on_flush() {
        let (w, _dir) = writer();
        let a = deferred(&w, "a");
        let b = deferred(&w, "b");
        w.flush().unwrap();
        a.recv_timeout(PATIENCE).unwrap().unwrap();
        b.recv_timeout(PATIENCE).unwrap().unwrap();
    }

    #[test]
    fn a_flush_before_the_deferred_op_keeps_it_from_waiting() {
        let (w, _dir) = writer();
        w.flush().unwrap();
        deferred(&w, "a").recv_timeout(PATIENCE).unwrap().unwrap();
    }

    #[test]
    fn any_other_write_ends_the_wait() {
        let (w, _dir) = writer();
        let a = deferred(&w, "a");
        let (tx, b) = mpsc::channel();
        w.submit(
            1,
            Durable::Later,
            |txn| {
                txn.open_table(META)
                    .map_err(db_err)?
                    .insert("b", 2u64)
                    .map_err(db_err)?;
                Ok(Ok(()))
            },
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
        a.recv_timeout(PATIENCE).unwrap().unwrap();
        b.recv_timeout(PATIENCE).unwrap().unwrap();
        // A blocking durable call after them sees both.
        let seen = w
            .call_blocking(1, |txn| {
                let meta = txn.open_table(META).map_err(db_err)?;
                let get = |k: &str| meta.get(k).map(|v| v.map(|g| g.value()));
                Ok(Ok((get("a").map_err(db_err)?, get("b").map_err(db_err)?)))
            })
            .unwrap();
        assert_eq!(seen, (Some(1), Some(2)));
    }

    /// An idle sync that fails (after an I/O error in a commit redb refuses every transaction) is tried again a
    /// `sync_within` later, not at once in a loop that spins a core until the database is reopened.
    #[test]
    fn a_failing_idle_sync_is_retried_at_the_bound_not_in_a_loop() {
        use crate::redb::wal::fault::Fault;
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("w.redb")).unwrap());
        let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let seen = attempts.clone();
        let bound = Duration::from_millis(50);
        let limits = GroupCommit {
            window: Duration::ZERO,
            max_entries: 512,
            defer: Duration::from_secs(3600),
            quick_repair: false,
            sync_within: bound,
            faults: FaultHook::new(move |site| {
                (site == Site::DurableCommit).then(|| {
                    seen.lock().unwrap().push(Instant::now());
                    Fault::Instead
                })
            }),
        };
        let w = Writer::spawn(db, limits).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(w.call_with(1, Durable::Soon, |txn| {
            txn.open_table(META)
                .map_err(db_err)?
                .insert("soon", 1u64)
                .map_err(db_err)?;
            Ok(Ok(()))
        }))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while attempts.lock().unwrap().len() < 4 {
            assert!(Instant::now() < deadline, "the idle sync is not tried again");
            std::thread::sleep(Duration::from_millis(5));
        }
        w.stop();
        let attempts = attempts.lock().unwrap();
        for pair in attempts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= bound - Duration::from_millis(5),
                "retried {gap:?} after a failed sync: {attempts:?}"
            );
        }
    }
}
