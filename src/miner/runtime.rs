//! The miner's own tokio runtime: one worker thread named `miner`, so trie work (decoding relay-log batches,
//! inserting into the session's trie, hashing the changed paths, building proofs) never occupies one of the
//! relayer's workers while relays wait behind it.
//!
//! Measured in the relayer bench at 2,000 relays/s on 2 vCPUs (BENCHMARKS.md, Relayer), after the ingest fix in
//! the driver (`INGEST_BATCH`), this made no difference within the noise of that host: an ingest tick there is
//! ~200 relays. It is kept for the cases the bench does not cover: ingest catching up a backlog (512-entry
//! batches), root and proof computation over a large trie at claim and proof time. It runs at the process's
//! priority: a lower one did not measurably help the relayer and could starve claims on a saturated host.
//!
//! The runtime is multi-threaded with one worker (not current-thread) because the driver runs blocking trie
//! calls in `block_in_place`, which moves the worker role to another thread of this runtime for the duration;
//! storage calls that spawn onto the current runtime (the Redis trie store) keep working meanwhile.
//!
//! How the miner's future ended is published as soon as it ends ([`MinerRuntime::ended`]), not only when the
//! process joins it at shutdown: a miner that panicked while the rest of the process runs on (relays accepted,
//! a raft leader heartbeating, so the miner lease never moves to another node) must stop the process
//! (`crate::node`), so that its supervisor restarts it and, on raft, its leadership is handed off.
//!
//! A miner that does not end once told to stop (hung: an await that never returns) must not keep the process
//! from exiting: [`MinerRuntime::join_within`] gives up after a limit and shuts the runtime down, which drops the
//! future where it awaits. That is as safe as a crash of the miner: relay-log entries are acknowledged only once
//! the tries holding them are stored, so what it had not stored is delivered again to the next leader. It is an
//! error all the same ([`MinerStopError`]), as is a miner that panicked after its stop signal (its final ingest
//! and persist did not complete): the node's process then exits non-zero.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the miner's future ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinerEnd {
    /// It returned (after its stop signal, or on its own).
    Returned,
    /// It panicked, with the panic's message.
    Panicked(String),
    /// It was cancelled (its runtime shut down first).
    Cancelled,
}

impl std::fmt::Display for MinerEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Returned => write!(f, "the miner task returned"),
            Self::Panicked(why) => write!(f, "the miner task panicked: {why}"),
            Self::Cancelled => write!(f, "the miner task was cancelled"),
        }
    }
}

/// The running miner runtime; [`MinerRuntime::join`] waits for the spawned future and stops the runtime.
pub struct MinerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    /// Awaits the miner's future and publishes how it ended on `ended` (it never panics itself).
    task: JoinHandle<()>,
    ended: watch::Receiver<Option<MinerEnd>>,
}

impl MinerRuntime {
    /// Starts the runtime and spawns `future` on it.
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("miner")
            .enable_all()
            .build()?;
        let inner = runtime.spawn(future);
        let (tx, ended) = watch::channel(None);
        let task = runtime.spawn(async move {
            let end = match inner.await {
                Ok(()) => MinerEnd::Returned,
                Err(e) if e.is_panic() => {
                    let payload = e.into_panic();
                    let why = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".to_string());
                    MinerEnd::Panicked(why)
                }
                Err(_) => MinerEnd::Cancelled,
            };
            let _ = tx.send(Some(end));
        });
        Ok(Self {
            runtime: Some(runtime),
            task,
            ended,
        })
    }

    /// How the miner's future ended, as soon as it has (`None` while it runs).
    pub fn ended(&self) -> watch::Receiver<Option<MinerEnd>> {
        self.ended.clone()
    }

    /// Waits until the spawned future returned (or panicked), then stops the runtime's threads.
    pub async fn join(mut self) {
        let joined = (&mut self.task).await;
        // Logged there; the caller that needs the outcome uses `join_within`.
        let _ = self.report(joined);
    }

    /// [`MinerRuntime::join`], for at most `limit`. A future that has not ended by then is abandoned: the runtime
    /// shuts down, which drops the future where it awaits (with the storage handles it holds, so the caller can
    /// close the storage after it); a thread of it blocked outside an await is waited for at most
    /// [`ABANDON_WAIT`], then left to end with the process. An error unless the future returned normally in time.
    pub async fn join_within(mut self, limit: Duration) -> Result<(), MinerStopError> {
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(joined) => self.report(joined).map_err(MinerStopError::Abnormal),
            Err(_) => {
                if let Some(runtime) = self.runtime.take() {
                    // Not on this runtime's worker: a runtime's shutdown blocks (tokio forbids it in async code).
                    let shut = tokio::task::spawn_blocking(move || runtime.shutdown_timeout(ABANDON_WAIT)).await;
                    if let Err(e) = shut {
                        tracing::warn!(error = %e, "the miner runtime's shutdown did not complete");
                    }
                }
                Err(MinerStopError::Stuck { limit })
            }
        }
    }

    /// Logs a join that did not end as a normal return, and returns how it ended then.
    fn report(&self, joined: Result<(), tokio::task::JoinError>) -> Result<(), MinerEnd> {
        if let Err(e) = joined {
            tracing::error!(error = %e, "miner task ended abnormally");
        }
        match &*self.ended.borrow() {
            Some(MinerEnd::Returned) => Ok(()),
            Some(end) => {
                tracing::error!(%end, "miner task ended abnormally");
                Err(end.clone())
            }
            None => {
                // Only a shutdown of the runtime ends the reporting task before it reports.
                tracing::error!("miner task ended without a report");
                Err(MinerEnd::Cancelled)
            }
        }
    }
}

/// How long an abandoned miner's runtime waits for a thread of it blocked outside an await
/// ([`MinerRuntime::join_within`]).
pub const ABANDON_WAIT: Duration = Duration::from_secs(2);

/// The miner's future did not end normally within the limit of [`MinerRuntime::join_within`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MinerStopError {
    /// It had not ended at the limit and was abandoned.
    #[error("the miner task did not end within {limit:?} of its stop signal and was abandoned")]
    Stuck {
        /// The limit it was given.
        limit: Duration,
    },
    /// It ended in time, but not by returning (a panic).
    #[error("{0}")]
    Abnormal(MinerEnd),
}

impl Drop for MinerRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads stopped, which tokio forbids inside another runtime;
        // `shutdown_background` does not wait (the task is done or is being abandoned with the process).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_future_runs_on_the_miner_thread_and_join_waits_for_it() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = MinerRuntime::spawn(async move {
            // A blocking section must work here (the driver uses it for trie commits).
            let inner = tokio::task::block_in_place(|| std::thread::current().name().map(str::to_owned));
            let name = std::thread::current().name().map(str::to_owned);
            tx.send((name, inner)).unwrap();
        })
        .unwrap();
        runtime.join().await;
        let (name, inner) = rx.await.unwrap();
        assert_eq!(name.as_deref(), Some("miner"));
        assert_eq!(
            inner.as_deref(),
            Some("miner"),
            "block_in_place keeps running on this runtime's thread"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn join_returns_when_the_future_panicked() {
        let runtime = MinerRuntime::spawn(async { panic!("miner bug") }).unwrap();
        runtime.join().await;
    }

    /// A future that never ends is abandoned at the limit, and dropped: what it held (here an `Arc`, in the node
    /// the storage) is released before `join_within` returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_future_that_never_ends_is_abandoned_at_the_limit_and_dropped() {
        let held = std::sync::Arc::new(());
        let in_future = std::sync::Arc::clone(&held);
        let runtime = MinerRuntime::spawn(async move {
            let _held = in_future;
            std::future::pending::<()>().await;
        })
        .unwrap();
        let started = std::time::Instant::now();
        let limit = Duration::from_millis(300);
        assert_eq!(runtime.join_within(limit).await, Err(MinerStopError::Stuck { limit }));
        assert!(started.elapsed() >= limit);
        assert!(
            started.elapsed() < limit + ABANDON_WAIT,
            "{:?}: a future parked at an await is dropped at once",
            started.elapsed()
        );
        assert_eq!(
            std::sync::Arc::strong_count(&held),
            1,
            "the abandoned future was dropped"
        );
        // One that ends in time is joined as `join` does.
        let runtime = MinerRuntime::spawn(async {}).unwrap();
        assert_eq!(runtime.join_within(Duration::from_secs(10)).await, Ok(()));
    }

    /// A future that panics once told to stop (its final ingest and persist did not complete) is an error of
    /// `join_within`, naming the panic: the node exits non-zero on it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_after_the_stop_signal_is_an_error_of_join_within() {
        let (stop, mut stopped) = watch::channel(false);
        let runtime = MinerRuntime::spawn(async move {
            let _ = stopped.wait_for(|s| *s).await;
            panic!("final persist bug");
        })
        .unwrap();
        stop.send(true).unwrap();
        assert_eq!(
            runtime.join_within(Duration::from_secs(10)).await,
            Err(MinerStopError::Abnormal(MinerEnd::Panicked("final persist bug".into())))
        );
    }

    /// The end is published when it happens, before anyone joins: the node stops the process on it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_is_reported_at_once_with_its_message() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let runtime = MinerRuntime::spawn(async move {
            let _ = wait.await;
            panic!("miner bug {}", 7);
        })
        .unwrap();
        let mut ended = runtime.ended();
        assert_eq!(*ended.borrow(), None, "still running");
        go.send(()).unwrap();
        let end = ended.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(end, Some(MinerEnd::Panicked("miner bug 7".into())));
        let runtime = MinerRuntime::spawn(async {}).unwrap();
        let end = runtime.ended().wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(end, Some(MinerEnd::Returned));
        runtime.join().await;
    }
}
