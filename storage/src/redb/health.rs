//! Readiness of the embedded redb backend, for `/ready`: whether a relay accepted now could be recorded.
//!
//! Two ways the embedded store stops recording while the process keeps running:
//! - the relay WAL failed to apply a record to redb (in practice: the disk is full, so the redb file cannot
//!   grow; the WAL's segments are preallocated and keep taking records until then). From then on every
//!   relay-log append and read fails until the WAL is reopened and recovery applies the record:
//!   [`RedbBackend::readiness_recovering`] (the process's readiness loop) tries that in place;
//! - the writer thread cannot commit (a redb error) or does not answer.
//!
//! Without a probe, `/ready` stayed green in both cases, and a load balancer kept sending relays to a node that
//! refused every one of them after its backend had served it. The probe checks the WAL's state and makes one
//! small non-durable write through the writer thread (META `ready_probe` = unix ms): no `fsync`, so probing
//! every few seconds costs nothing measurable.

use std::time::Duration;

use tokio::sync::oneshot;

use super::RedbBackend;
use super::tables::{META, db_err, now_ms};

/// META key the probe writes.
const READY_PROBE: &str = "ready_probe";
/// How long the probe's write may take before the backend counts as not ready (a busy writer answers in
/// milliseconds; a durable checkpoint ahead of it in tens).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the redb backend is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The relay WAL could not apply a record; appends fail until it is reopened (in place by
    /// [`RedbBackend::readiness_recovering`], or by opening the database again).
    #[error("relay WAL unusable until it is reopened: {0}")]
    WalFailed(String),
    /// The probe's write through the writer thread failed or timed out.
    #[error("redb refuses writes: {0}")]
    WriteFailed(String),
}

impl NotReady {
    /// A stable label for metrics and logs: `redb_wal_failed`, `redb_write_failed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WalFailed(_) => "redb_wal_failed",
            Self::WriteFailed(_) => "redb_write_failed",
        }
    }
}

impl RedbBackend {
    /// Readiness: the relay WAL has not failed, and a non-durable write through the writer thread commits
    /// within 5 s. Logs the reason at WARN when not ready.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let res = self.probe().await;
        if let Err(e) = &res {
            tracing::warn!(reason = e.reason(), error = %e, "redb storage not ready");
        }
        res
    }

    /// Reopens a failed relay WAL in place (see `wal/reopen.rs`): its records are recovered into redb and
    /// appends are taken again. `Ok(true)` reopened, `Ok(false)` the WAL had not failed (or there is none);
    /// `Err`: still unusable, and a later call tries again.
    pub async fn reopen_wal(&self) -> Result<bool, crate::StorageError> {
        match &self.inner.wal {
            Some(wal) => wal.reopen().await,
            None => Ok(false),
        }
    }

    /// Readiness, after reopening a failed relay WAL if a try is due (the first at once, then with pauses
    /// growing from 2 s to 60 s while tries fail): what the process's readiness loop runs every 2 s, so a node
    /// whose disk filled up takes relays again once there is room, without a restart. A failed reopen is
    /// logged and counted (`ha_storage_wal_reopens_total{result="failed"}`); readiness then says `redb_wal_failed`.
    pub async fn readiness_recovering(&self) -> Result<(), NotReady> {
        if let Some(wal) = &self.inner.wal {
            // The outcome is logged and counted by the reopen; readiness below reports the state either way.
            let _ = wal.reopen_if_due().await;
        }
        self.readiness().await
    }

    async fn probe(&self) -> Result<(), NotReady> {
        if let Some(e) = self.inner.wal.as_ref().and_then(|w| w.get().failure()) {
            return Err(NotReady::WalFailed(e.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .submit(
                0,
                false,
                |txn| {
                    txn.open_table(META)
                        .map_err(db_err)?
                        .insert(READY_PROBE, now_ms())
                        .map_err(db_err)?;
                    Ok(Ok(()))
                },
                move |r| {
                    let _ = tx.send(r);
                },
            )
            .map_err(|e| NotReady::WriteFailed(e.to_string()))?;
        match tokio::time::timeout(PROBE_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(NotReady::WriteFailed(e.to_string())),
            Ok(Err(_)) => Err(NotReady::WriteFailed("the writer dropped the probe".into())),
            Err(_) => Err(NotReady::WriteFailed(format!(
                "the probe's write got no answer within {PROBE_TIMEOUT:?}"
            ))),
        }
    }
}
