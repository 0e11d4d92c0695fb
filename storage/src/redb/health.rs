//! Readiness of the embedded redb backend, for `/ready`: whether a relay accepted now could be recorded.
//!
//! Ways the embedded store stops recording while the process keeps running:
//! - the relay WAL failed to apply a record to redb (in practice: the disk is full, so the redb file cannot
//!   grow; the WAL's segments are preallocated and keep taking records until then). From then on every
//!   relay-log append and read fails until the database is reopened and recovery applies the record;
//! - the relay WAL's writes fail (its `fdatasync` reports an I/O error, a new segment cannot be created on a
//!   full disk): every append is refused while they do. Nothing needs repairing (the failed records were never
//!   acknowledged and each next group tries again), so this is not reopened; the probe itself tries a write (a
//!   record without relays), so `/ready` turns green as soon as the disk takes writes again, even though a
//!   node that is not ready gets no relays to write;
//! - redb refuses every write: after an I/O error in a commit (a full disk again) redb answers `PreviousIo`
//!   to everything until the database is closed and opened again;
//! - the writer thread cannot commit for another reason, or does not answer;
//! - the database is closed: being reopened, or reopening it failed.
//!
//! Without a probe, `/ready` stayed green in these cases, and a load balancer kept sending relays to a node
//! that refused every one of them after its backend had served it. The probe checks the WAL's and the writer's
//! state and makes one small non-durable write through the writer thread (META `ready_probe` = unix ms): no
//! `fsync`, so probing every few seconds costs nothing measurable. The first two cases are repaired in place
//! by [`RedbBackend::readiness_recovering`] (the process's readiness loop), which reopens the database.

use std::time::Duration;

use tokio::sync::oneshot;

use super::RedbBackend;
use super::tables::{META, db_err, now_ms};
use super::writer::Durable;

/// META key the probe writes.
const READY_PROBE: &str = "ready_probe";
/// How long the probe's write may take before the backend counts as not ready (a busy writer answers in
/// milliseconds; a durable checkpoint ahead of it in tens).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the redb backend is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The relay WAL could not apply a record; appends fail until the database is reopened (in place by
    /// [`RedbBackend::readiness_recovering`], or by a restart).
    #[error("relay WAL unusable until the database is reopened: {0}")]
    WalFailed(String),
    /// The relay WAL's writes fail (the last one, and the probe's, failed): every append is refused until a write
    /// succeeds again. Not repaired by a reopen.
    #[error("relay WAL writes fail: {0}")]
    WalWriteFailed(String),
    /// The probe's write through the writer thread failed or timed out.
    #[error("redb refuses writes: {0}")]
    WriteFailed(String),
    /// The database is closed: being reopened, or the last reopen failed (the detail says why).
    #[error("redb is closed: {0}")]
    Closed(String),
}

impl NotReady {
    /// A stable label for metrics and logs: `redb_wal_failed`, `redb_wal_write_failed`, `redb_write_failed`,
    /// `redb_closed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WalFailed(_) => "redb_wal_failed",
            Self::WalWriteFailed(_) => "redb_wal_write_failed",
            Self::WriteFailed(_) => "redb_write_failed",
            Self::Closed(_) => "redb_closed",
        }
    }
}

impl RedbBackend {
    /// Readiness: the relay WAL has not failed, its writes succeed (while they were failing, a probe record is
    /// written first), and a non-durable write through the writer thread commits within 5 s. Logs the reason at
    /// WARN when not ready.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let res = self.probe().await;
        if let Err(e) = &res {
            tracing::warn!(reason = e.reason(), error = %e, "redb storage not ready");
        }
        res
    }

    /// Readiness, after reopening the database if it needs it and a try is due (see `open.rs`: the first try
    /// at once, then with pauses growing from 2 s to 60 s while reopens keep being needed). What the process's readiness loop
    /// runs every 2 s, so a node whose disk filled up takes relays again once there is room, without a restart.
    pub async fn readiness_recovering(&self) -> Result<(), NotReady> {
        // The outcome is logged and counted by the reopen; readiness below reports the state either way.
        let _ = self.reopen_if_due().await;
        self.readiness().await
    }

    async fn probe(&self) -> Result<(), NotReady> {
        let files = self.inner.files().map_err(|e| NotReady::Closed(e.to_string()))?;
        if let Some(wal) = &files.wal {
            if let Some(e) = wal.failure() {
                return Err(NotReady::WalFailed(e.to_string()));
            }
            if wal.write_failure().is_some() {
                let probed = tokio::time::timeout(PROBE_TIMEOUT, wal.probe_write(self.unfenced_check())).await;
                let failed = match probed {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("the probe's write got no answer within {PROBE_TIMEOUT:?}")),
                };
                if let Some(probe) = failed {
                    return Err(NotReady::WalWriteFailed(match wal.write_failure() {
                        Some(f) => format!("{} writes failed in a row, the last: {}", f.consecutive, f.error),
                        None => probe,
                    }));
                }
            }
        }
        if let Some(e) = files.writer.broken() {
            return Err(NotReady::WriteFailed(format!(
                "redb refuses every write until it is reopened: {e}"
            )));
        }
        let (tx, rx) = oneshot::channel();
        files
            .writer
            .submit(
                0,
                Durable::Later,
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
