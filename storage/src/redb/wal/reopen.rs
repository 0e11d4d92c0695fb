//! Reopening a failed relay WAL in place, without restarting the process.
//!
//! Why: when a record cannot be applied to redb (in practice the disk is full and the redb file cannot grow),
//! every later append and relay-log read fails until the WAL's records are recovered, which used to take a
//! restart of the whole process: a node left running kept refusing every relay (after its backend had served
//! it) until an operator noticed, though the disk might have had room again minutes later. Now the backend
//! holds its WAL in a [`WalSlot`], and [`WalSlot::reopen`] does what a restart would do to the WAL, on the same
//! open database, while the rest of the process keeps running:
//! 1. stop the failed WAL's thread and join it (appends in flight or sent later fail with `Unavailable`, as
//!    they did since the failure: none was acknowledged);
//! 2. a durable commit through the redb writer behind everything the old thread handed it (the writer applies
//!    in order, so every apply of the old WAL has run, failed or not, and nothing of it is still queued);
//! 3. recovery ([`super::recover`]), exactly as at open: every valid record newer than the durable
//!    `wal_applied` is applied in one durable commit, and the segment files are reset;
//! 4. a new WAL thread on the recovered state, swapped in for the next callers.
//!
//! The crash-safety argument of [`super`] carries over because this is the open path: recovery is idempotent
//! and runs with no WAL thread writing, and a failed step leaves a stopped WAL that the next attempt recovers
//! again from the files. Sequences continue from META (raised by every apply, recovery's included), as after a
//! restart. The caller decides when to retry ([`WalSlot::reopen_if_due`]: at once, then with a growing pause).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::{Wal, WalConfig, WalStats, recover};
use crate::StorageError;
use crate::lease::LeaseTable;
use crate::redb::writer::Writer;

/// First pause between two failed reopens; doubles after each failure.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest pause between two failed reopens.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// When the next reopen may be tried after failed ones.
#[derive(Debug, Default)]
struct Retry {
    not_before: Option<Instant>,
    pause: Duration,
}

/// The backend's relay WAL, replaceable by a reopen.
pub(crate) struct WalSlot {
    current: RwLock<Arc<Wal>>,
    db: Arc<Database>,
    writer: Writer,
    leases: Arc<Mutex<LeaseTable>>,
    cfg: WalConfig,
    stats: WalStats,
    /// One reopen at a time; holds the retry schedule.
    reopening: tokio::sync::Mutex<Retry>,
}

impl WalSlot {
    /// The WAL recovered at open, started.
    pub fn start(
        recovered: super::Recovered,
        db: Arc<Database>,
        writer: Writer,
        leases: Arc<Mutex<LeaseTable>>,
        cfg: WalConfig,
    ) -> Result<Self, StorageError> {
        let stats = WalStats::new().map_err(|e| StorageError::Backend(format!("relay WAL metrics: {e}")))?;
        let wal = Wal::start(
            recovered,
            db.clone(),
            writer.clone(),
            leases.clone(),
            cfg.clone(),
            stats.clone(),
        )?;
        Ok(Self {
            current: RwLock::new(Arc::new(wal)),
            db,
            writer,
            leases,
            cfg,
            stats,
            reopening: tokio::sync::Mutex::new(Retry::default()),
        })
    }

    /// The WAL to use now.
    pub fn get(&self) -> Arc<Wal> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The WAL's metrics (shared by every WAL this slot starts).
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// Reopens the WAL if it failed: `Ok(true)` once recovery applied its records and a new WAL takes appends,
    /// `Ok(false)` if it had not failed. On `Err` the WAL stays unusable (stopped); a later call tries again.
    pub async fn reopen(&self) -> Result<bool, StorageError> {
        let mut retry = self.reopening.lock().await;
        let reopened = self.reopen_locked().await;
        match &reopened {
            Ok(false) => {}
            Ok(true) => *retry = Retry::default(),
            Err(_) => {
                retry.pause = (retry.pause * 2).clamp(FIRST_RETRY, MAX_RETRY);
                retry.not_before = Some(Instant::now() + retry.pause);
            }
        }
        reopened
    }

    /// [`Self::reopen`] if the WAL failed and no failed reopen asked to wait longer (the first try is at once,
    /// then after 2 s, 4 s, … up to 60 s between tries). `Ok(false)`: nothing done.
    pub async fn reopen_if_due(&self) -> Result<bool, StorageError> {
        if self.get().failure().is_none() {
            return Ok(false);
        }
        let due = self
            .reopening
            .lock()
            .await
            .not_before
            .is_none_or(|t| Instant::now() >= t);
        if !due {
            return Ok(false);
        }
        self.reopen().await
    }

    async fn reopen_locked(&self) -> Result<bool, StorageError> {
        let old = self.get();
        let Some(failure) = old.failure() else {
            return Ok(false);
        };
        tracing::warn!(error = %failure, "relay WAL failed; reopening it in place to recover its records");
        let started = Instant::now();
        let (db, writer, cfg) = (self.db.clone(), self.writer.clone(), self.cfg.clone());
        let recovered = tokio::task::spawn_blocking(move || {
            old.stop();
            // Behind every apply the old thread handed over (the writer runs in order), and durable.
            writer.flush()?;
            writer.call_blocking(0, |_| Ok(Ok(())))?;
            recover(&db, &cfg)
        })
        .await
        .map_err(|e| StorageError::Backend(format!("relay WAL reopen task failed: {e}")))
        .and_then(|r| r)
        .and_then(|recovered| {
            Wal::start(
                recovered,
                self.db.clone(),
                self.writer.clone(),
                self.leases.clone(),
                self.cfg.clone(),
                self.stats.clone(),
            )
        });
        match recovered {
            Ok(wal) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(wal);
                self.stats.reopened(true);
                tracing::info!(took = ?started.elapsed(), "relay WAL reopened: its records are applied to redb");
                Ok(true)
            }
            Err(e) => {
                self.stats.reopened(false);
                tracing::error!(error = %e, "relay WAL reopen failed; appends stay refused until a later try");
                Err(e)
            }
        }
    }
}
