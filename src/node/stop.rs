//! How the node stops: what ends its run, the graceful stop in reverse order of the start, and the bounds that
//! keep a hung part from holding the process.
//!
//! The graceful stop: a raft leader hands its role off first; the relay server stops accepting and drains
//! in-flight relays, then waits (bounded: `Relayer::drain_settlements`) for the optimistic relays still settling
//! in the background (answered, not yet validated and appended) and the relays queued without `durable_ack`;
//! only then is the miner
//! told to stop, so its final ingest sees them, and it persists its tries and records; then storage closes (raft
//! leaves cleanly; redb flushes).
//!
//! The miner gets [`MINER_STOP_LIMIT`] to stop. One that has not stopped by then (hung: an await that never
//! returns) is abandoned (`MinerRuntime::join_within`, which drops its future), logged at ERROR, storage is closed
//! as after a clean stop, and the process exits with code 1: waiting on would only end in the supervisor's SIGKILL
//! at the end of its grace period, with no line saying why. Nothing acknowledged is lost by it: the relays were
//! drained before the miner was told to stop (with `relay_log.durable_ack`, the default, each is durable in the
//! relay log before its gateway gets the answer; optimistic ones are appended before the drain ends unless its
//! bound abandoned them), and the miner acknowledges relay-log entries only once the tries holding them are
//! stored, so whatever it had not stored is delivered again to the next leader (this node after its restart), as
//! after a crash of the process.
//!
//! A stop is not clean, and the process exits with code 1, also when the relay drain abandoned anything (relays
//! answered that may never be in the relay log: logged at ERROR and counted in
//! `ha_relayer_shutdown_abandoned_total`, which nobody scrapes once the process is gone) and when the miner
//! panicked after its stop signal (its final ingest and persist did not complete).
//!
//! A miner task that ends while the node runs (a panic: nothing else ends it) stops the node, and the process
//! exits with code 1 for its supervisor to restart it: the relayer would otherwise keep accepting relays nobody
//! claims and, on raft, the leader would keep the miner lease (module `miner_watchdog` hands off a leader whose
//! miner cannot read the chain). So does storage failing for good (module `raft_stopped`); that stop is bounded
//! by [`FATAL_STOP_LIMIT`].

use std::time::Duration;

use tokio::sync::watch;

use super::Node;
use crate::miner::runtime::{MinerEnd, MinerStopError};
use crate::relayer::{Abandoned, FLUSH_LIMIT, SETTLEMENT_DRAIN_LIMIT};

/// How long a node stopping after a fatal failure (storage failed for good, the miner task ended) may take to
/// stop before the process exits anyway: the relay drain's bounds ([`SETTLEMENT_DRAIN_LIMIT`] + [`FLUSH_LIMIT`],
/// 15 s: after a miner panic the storage works and the relays answered still reach the relay log) plus 10 s for
/// the raft hand-off, the relay server's drain of its connections and the storage close, 25 s in all. A miner
/// stuck in a failed storage (up to [`MINER_STOP_LIMIT`]) is cut short by it, storage close included: that storage
/// failed for good already, and the supervisor's restart should not wait on it.
pub const FATAL_STOP_LIMIT: Duration =
    Duration::from_secs(SETTLEMENT_DRAIN_LIMIT.as_secs() + FLUSH_LIMIT.as_secs() + 10);

/// How long the miner may take to stop once told to (the iteration in progress, then its final ingest and
/// persist) before it is abandoned as hung (module docs). A healthy miner stops well within it; an orchestrator's
/// grace period (Kubernetes `terminationGracePeriodSeconds`, systemd `TimeoutStopSec`) should exceed the relay
/// drain plus this.
pub const MINER_STOP_LIMIT: Duration = Duration::from_secs(30);

/// Why a graceful stop was not clean (the process then exits with code 1): every way it was not, each logged
/// at ERROR where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stop was not clean: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct StopError(pub Vec<StopFailure>);

/// One way a graceful stop was not clean ([`StopError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopFailure {
    /// The relay drain gave up on relays answered that may never be in the relay log.
    #[error("the relay drain abandoned {0}")]
    RelaysAbandoned(Abandoned),
    /// The relay server's task (its serve and drain) did not end normally (a panic): its drain may not have run.
    #[error("the relay server task did not end normally: {0}")]
    RelayServer(String),
    /// The miner did not stop within [`MINER_STOP_LIMIT`] and was abandoned, or panicked after its stop signal.
    #[error(transparent)]
    Miner(#[from] MinerStopError),
}

impl Node {
    /// Runs until `shutdown` resolves, then stops gracefully; returns the process exit code: 0, or 1 when the
    /// storage failed for good first (a raft node whose core stopped on a storage error, see `raft_stopped`) or
    /// the miner task ended (a panic), so that its supervisor restarts it. That stop is bounded by
    /// [`FATAL_STOP_LIMIT`]; a raft leader hands its leadership off first. Also 1 when the stop was not clean
    /// ([`StopError`]: relays abandoned by the drain, a miner hung past [`MINER_STOP_LIMIT`] or panicked).
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> i32 {
        let failed = first_failure(shutdown, self.fatal.clone(), self.miner_ended.clone()).await;
        let Some(why) = failed else {
            return match self.shutdown().await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "graceful stop not clean: exit code 1");
                    1
                }
            };
        };
        tracing::error!(reason = %why, "stopping after a fatal failure, exit code 1 (a supervisor restarts the node)");
        if tokio::time::timeout(FATAL_STOP_LIMIT, self.shutdown()).await.is_err() {
            tracing::error!(limit = ?FATAL_STOP_LIMIT, "graceful stop after the storage failure took too long; exiting");
        }
        1
    }

    /// Graceful stop: a raft leader first hands its role to another voter (whose miner then ingests and submits
    /// from the replicated log), then drain relays (connections, then optimistic settlements), final miner ingest
    /// and persist, close storage. The miner stops only after every relay is appended, so its final ingest (on a
    /// leader) includes them. A miner that has not stopped within [`MINER_STOP_LIMIT`] is abandoned with an
    /// ERROR (module docs); storage is closed all the same. Every way the stop was not clean is returned.
    pub async fn shutdown(self) -> Result<(), StopError> {
        let started = std::time::Instant::now();
        let mut failures = Vec::new();
        self.storage.hand_off().await;
        tracing::info!("shutting down: draining relays");
        let _ = self.stop.send(true);
        if let Some(server) = self.relay_server {
            match server.await {
                // Logged at ERROR by the drain.
                Ok(abandoned) if !abandoned.is_empty() => failures.push(StopFailure::RelaysAbandoned(abandoned)),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "the relay server task did not end normally: relays answered may not be in the relay log"
                    );
                    failures.push(StopFailure::RelayServer(e.to_string()));
                }
            }
        }
        // Relays answered may be missing from the relay log (the drain gave up or did not run).
        let drain_incomplete = !failures.is_empty();
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "relays drained; stopping the miner"
        );
        let _ = self.miner_stop.send(true);
        if let Some(miner) = self.miner {
            let told = std::time::Instant::now();
            let joined = miner.join_within(MINER_STOP_LIMIT).await;
            // A panic is logged at ERROR by `join_within`.
            if let Err(MinerStopError::Stuck { .. }) = &joined {
                // The miner's heartbeat beats at the start of each iteration: an old one means the loop hung
                // before the stop, a recent one that its last iteration or its final ingest and persist did.
                let last = self.telemetry.heartbeat("miner").last();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                tracing::error!(
                    limit_s = MINER_STOP_LIMIT.as_secs(),
                    waited_ms = told.elapsed().as_millis() as u64,
                    last_iteration_s_ago = (last > 0.0).then(|| (now - last).max(0.0) as u64),
                    drain_incomplete,
                    "the miner did not stop within the limit after its stop signal (hung: its iteration in progress or \
                     its final ingest and persist never returned); abandoned, closing storage without it, exit code \
                     1. Nothing acknowledged is lost: every answered relay is in the relay log except those the relay \
                     drain reported abandoned, and the entries it had not stored in its tries are delivered again to \
                     the next leader"
                );
            }
            if let Err(e) = joined {
                failures.push(e.into());
            }
        }
        for task in &self.background {
            task.abort();
        }
        self.storage.close().await;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StopError(failures))
        }
    }
}

/// Waits for `shutdown` (`None`), the storage failing for good or the miner task ending (the reason).
async fn first_failure(
    shutdown: impl std::future::Future<Output = ()>,
    mut fatal: watch::Receiver<Option<String>>,
    miner_ended: Option<watch::Receiver<Option<MinerEnd>>>,
) -> Option<String> {
    let storage_failed = async move {
        match fatal.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            // Never closed while the node runs (the node holds a receiver; a probe that ended dropped only
            // its sender): nothing failed.
            Err(_) => std::future::pending().await,
        }
    };
    let miner_failed = async move {
        let Some(mut ended) = miner_ended else {
            return std::future::pending().await;
        };
        match ended.wait_for(Option::is_some).await {
            // Any end while the node runs is abnormal: the miner returns only once told to stop.
            Ok(end) => end.as_ref().map(|end| format!("miner: {end}")),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => None,
        why = storage_failed => why,
        why = miner_failed => why,
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::miner::runtime::MinerRuntime;

    /// A miner that panics while the node runs is a fatal failure naming the panic; a shutdown first is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miner_panic_is_fatal() {
        let (_fatal_tx, fatal) = watch::channel(None);
        let miner = MinerRuntime::spawn(async { panic!("ingest bug") }).unwrap();
        let why = tokio::time::timeout(
            Duration::from_secs(10),
            first_failure(std::future::pending(), fatal.clone(), Some(miner.ended())),
        )
        .await
        .expect("the miner's end is a failure");
        assert_eq!(why.as_deref(), Some("miner: the miner task panicked: ingest bug"));
        let (_go, wait) = tokio::sync::oneshot::channel::<()>();
        let running = MinerRuntime::spawn(async move {
            let _ = wait.await;
        })
        .unwrap();
        assert_eq!(first_failure(async {}, fatal, Some(running.ended())).await, None);
    }
}
