//! Opening the database's files (the redb file, its writer thread, the relay WAL), and reopening them in place.
//!
//! Why in place: a full disk breaks the embedded store in two ways that only closing and opening the database
//! repairs. redb answers `PreviousIo` to every transaction after an I/O error in a commit (`ENOSPC` when the file
//! must grow), and the relay WAL stops taking appends once a record could not be applied to redb. A restart
//! fixes both (redb repairs the file at open, WAL recovery applies the records), but a process left running
//! refused every relay, after its backend had served it, until an operator restarted it, even once the disk
//! had room again. [`RedbBackend::reopen`] does what a restart does to the files while the rest of the process
//! (relayer, miner, the in-memory leases and consumer groups) keeps running:
//! 1. the open [`Files`] leave the backend (calls made from now on fail with `Unavailable`);
//! 2. the WAL thread and the writer thread are stopped and joined (ops queued in them fail with `Unavailable`;
//!    none of them was acknowledged);
//! 3. once no call in flight holds the files any more, the database is closed;
//! 4. the open path runs again ([`open_files`]): redb's repair, WAL recovery (every valid record newer than
//!    the durable `wal_applied` is applied in one durable commit), a new writer and WAL thread.
//!
//! 5. if the old writer held eventually durable commits not yet synced (`SetDurability::Eventual`, the miner's
//!    ingest batches), the close may have lost them (redb makes pending commits durable at close, but not after
//!    an I/O error in a commit, the usual reason for a reopen). The in-memory state built on them is then
//!    restarted as a process restart would: every lease ends (the miner's next fenced write is refused, it
//!    leaves leader mode, and when it leads again it reloads its sessions and tries from storage) and every
//!    consumer group starts over (entries whose ack was lost are delivered again). Without this, a miner that
//!    kept its in-memory tries would never write the lost trie leaves again, and its relays' entries, delivered
//!    again, would be acknowledged without them.
//!
//! The crash-safety argument of the WAL (`wal/mod.rs`) carries over because step 4 is the open path, run with
//! nothing else touching the files; a failed step leaves the database closed and the next try starts again from
//! the files. Sequences continue from META (raised by every apply, recovery's included), as after a restart.
//! Tries are made by the readiness loop ([`RedbBackend::readiness_recovering`]): at once, then, while reopens
//! keep being needed (they fail, or the database breaks again right after, as on a disk that is still full),
//! with pauses from 2 s doubling to 60 s; each is counted in `ha_storage_redb_reopens_total{result}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{IntCounterVec, Opts};
use redb::Database;

use super::tables::{self, KV, META, db_err};
use super::wal::{self, Wal, WalStats, fault::FaultHook};
use super::writer::{GroupCommit, Writer};
use super::{RedbBackend, RedbConfig, join_err, lock_leases};
use crate::StorageError;
use crate::lease::LeaseTable;

/// First pause after a reopen; doubles with each reopen until the database stays healthy through a pause.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest pause between two tries.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How long a reopen waits for calls in flight to let go of the old files before it tries to open them again
/// (an open while they are held fails with "already open", and the next try repeats it).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// One opening of the database: the file, its writer thread and its relay WAL (`None` with
/// `relay_wal = false`). Replaced whole by a reopen.
pub(crate) struct Files {
    pub db: Arc<Database>,
    pub writer: Writer,
    pub wal: Option<Wal>,
}

/// Opens the database at `config.path`: creates the tables, recovers the relay WAL into redb before any other
/// write, starts the writer thread and the WAL thread (reporting to `wal_stats`).
pub(crate) async fn open_files(
    config: &RedbConfig,
    faults: &FaultHook,
    wal_stats: Option<&WalStats>,
    leases: &Arc<Mutex<LeaseTable>>,
) -> Result<Files, StorageError> {
    let cfg = config.clone();
    let wal_cfg = wal::WalConfig {
        db: config.path.clone(),
        dir: wal::wal_dir(&config.path)?,
        segment_bytes: config.wal_segment_bytes.max(4096),
        checkpoint_bytes: config.wal_checkpoint_bytes.max(1),
        checkpoint_interval: config.wal_checkpoint_interval,
        max_entries: config.group_commit_max_entries.max(1),
        faults: faults.clone(),
    };
    let recover_cfg = wal_cfg.clone();
    let (db, recovered) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
        let mut builder = Database::builder();
        builder.set_cache_size(cfg.cache_size_bytes);
        // A `validate` reading the store at this instant holds it for milliseconds (`busy`).
        let db = super::busy::create_when_free(&builder, &cfg.path, super::busy::BUSY_WAIT, |_| {}).map_err(db_err)?;
        let mut txn = db.begin_write().map_err(db_err)?;
        // Open-time commits record the allocator state (`writer.rs`: quick repair) whatever the mode: they are
        // few, and a process that crashes again right after each open must not pay a full repair every time.
        txn.set_quick_repair(true);
        // A new database gets its identity with its tables (the relay WAL is bound to it).
        let created = txn
            .list_tables()
            .map_err(db_err)?
            .all(|t| redb::TableHandle::name(&t) != redb::TableHandle::name(&META));
        wal::init_new_database(&txn)?;
        // Before anything reads the tables: a database written by a newer binary is refused untouched.
        super::schema::check_and_record(&txn, &cfg.path)?;
        txn.open_table(tables::SUPPLIERS).map_err(db_err)?;
        txn.open_table(tables::LOG).map_err(db_err)?;
        txn.open_table(tables::LOG_SESSIONS).map_err(db_err)?;
        txn.open_table(tables::NAMESPACES).map_err(db_err)?;
        txn.open_table(tables::NODES).map_err(db_err)?;
        txn.open_table(tables::SESSIONS).map_err(db_err)?;
        txn.open_table(KV).map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        // A database written before the relay log's session index existed, or by an older binary since, gets
        // it (re)built now, before WAL recovery applies (and indexes) anything.
        if let Some((reason, indexed)) = super::log::ensure_session_index(&txn)? {
            tracing::info!(
                path = %cfg.path.display(),
                entries = indexed,
                %reason,
                "relay log session index built"
            );
        }
        txn.commit().map_err(db_err)?;
        if created {
            tracing::info!(path = %cfg.path.display(), "new embedded database created");
        }
        // Before any other write: relay-log appends acknowledged by the WAL must be in redb first.
        let recovered = if cfg.relay_wal {
            Some(wal::recover(&db, &recover_cfg)?)
        } else {
            wal::recover_and_remove(&db, &recover_cfg.db, &recover_cfg.dir, &recover_cfg.faults)?;
            None
        };
        Ok((db, recovered))
    })
    .await
    .map_err(join_err)??;
    let db = Arc::new(db);
    let writer = Writer::spawn(
        db.clone(),
        GroupCommit {
            window: config.group_commit_window,
            max_entries: config.group_commit_max_entries.max(1),
            defer: config.wal_apply_delay,
            quick_repair: config.relay_wal,
            sync_within: config.eventual_sync_within,
            faults: faults.clone(),
        },
    )?;
    let wal = match (recovered, wal_stats) {
        (Some(r), Some(stats)) => Some(Wal::start(
            r,
            db.clone(),
            writer.clone(),
            leases.clone(),
            wal_cfg,
            stats.clone(),
        )?),
        (Some(_), None) => {
            writer.stop();
            return Err(StorageError::Backend("relay WAL without its metrics".into()));
        }
        (None, _) => None,
    };
    Ok(Files { db, writer, wal })
}

/// When the next reopen may be tried after failed ones.
#[derive(Debug, Default)]
struct Retry {
    not_before: Option<Instant>,
    pause: Duration,
}

/// What reopening needs beyond the files: the settings they were opened with, the WAL metrics every opening
/// shares, the retry schedule and the reopen counter.
pub(crate) struct Reopen {
    config: RedbConfig,
    faults: FaultHook,
    wal_stats: Option<WalStats>,
    /// One reopen at a time.
    retry: tokio::sync::Mutex<Retry>,
    /// Why the files are closed (`None` while they are open).
    closed: Mutex<Option<String>>,
    reopens: IntCounterVec,
}

impl Reopen {
    pub fn new(config: RedbConfig, faults: FaultHook, wal_stats: Option<WalStats>) -> Result<Self, StorageError> {
        let reopens = IntCounterVec::new(
            Opts::new(
                "ha_storage_redb_reopens_total",
                "In-place reopens of the embedded database after a failed relay WAL or redb I/O error, by result",
            ),
            &["result"],
        )
        .map_err(|e| StorageError::Backend(format!("redb metrics: {e}")))?;
        // Both results exported from the start (at 0), so an alert on `failed` has a series to watch.
        for result in ["ok", "failed"] {
            reopens.with_label_values(&[result]);
        }
        Ok(Self {
            config,
            faults,
            wal_stats,
            retry: tokio::sync::Mutex::new(Retry::default()),
            closed: Mutex::new(None),
            reopens,
        })
    }

    pub fn wal_stats(&self) -> Option<&WalStats> {
        self.wal_stats.as_ref()
    }

    /// The error of a call made while the files are closed.
    pub fn closed(&self) -> StorageError {
        let why = self.closed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        StorageError::Unavailable(format!(
            "redb is closed: {}",
            why.unwrap_or_else(|| "being reopened".into())
        ))
    }

    fn set_closed(&self, why: Option<String>) {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn count(&self, ok: bool) {
        self.reopens
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// Reopens so far that succeeded (`ok = true`) or failed.
    pub fn reopens(&self, ok: bool) -> u64 {
        self.reopens
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .get()
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        let mut out: Vec<Box<dyn Collector>> = vec![Box::new(self.reopens.clone())];
        if let Some(stats) = &self.wal_stats {
            out.extend(stats.collectors());
        }
        out
    }
}

impl RedbBackend {
    /// Why the database needs reopening, if it does: its relay WAL failed, redb refuses every write
    /// (`PreviousIo`), or it is closed (a reopen failed).
    ///
    /// Failing WAL writes ([`Wal::write_failure`]) are not a reason: they leave nothing to repair (the failed
    /// records were never acknowledged; the WAL thread retires the segment and the next group tries again), so a
    /// reopen would only redo what the next write does, and on a disk that still fails it would close the whole
    /// store (leases, consumer groups, KV) instead of refusing appends only, or fail and keep it closed.
    pub(crate) fn needs_reopen(&self) -> Option<String> {
        let files = match self.inner.files() {
            Ok(files) => files,
            Err(e) => return Some(e.to_string()),
        };
        if let Some(e) = files.wal.as_ref().and_then(|w| w.failure()) {
            return Some(e.to_string());
        }
        files.writer.broken().map(|e| format!("redb refuses every write: {e}"))
    }

    /// Reopens the database in place if it needs it (module docs). `Ok(true)`: reopened, every record of the
    /// relay WAL is in redb and writes are taken again; `Ok(false)`: it did not need it. On `Err` the database
    /// stays closed (calls fail with `Unavailable` naming the error) and a later call tries again.
    pub async fn reopen(&self) -> Result<bool, StorageError> {
        let mut retry = self.inner.reopen.retry.lock().await;
        let reopened = self.reopen_locked().await;
        if !matches!(reopened, Ok(false)) {
            // Failed, or succeeded but maybe only for a moment (a disk still full: redb opens, applies the WAL,
            // and fails again at the next commit that must grow the file): the next try waits longer.
            retry.pause = (retry.pause * 2).clamp(FIRST_RETRY, MAX_RETRY);
            retry.not_before = Some(Instant::now() + retry.pause);
        }
        reopened
    }

    /// [`Self::reopen`] if the database needs it and the pause after the last try is over. The pause doubles
    /// from 2 s to 60 s with every try, and starts over once the database stayed healthy through it, so a
    /// database that breaks again right after each reopen is not reopened every probe (and `/ready` stays red
    /// in between), while a one-off failure is repaired at once. `Ok(false)`: nothing done.
    pub(crate) async fn reopen_if_due(&self) -> Result<bool, StorageError> {
        let needed = self.needs_reopen().is_some();
        let mut retry = self.inner.reopen.retry.lock().await;
        let due = retry.not_before.is_none_or(|t| Instant::now() >= t);
        if !needed {
            if due {
                *retry = Retry::default();
            }
            return Ok(false);
        }
        if !due {
            return Ok(false);
        }
        drop(retry);
        self.reopen().await
    }

    /// What a restart does to the in-memory state built on the files, for a reopen that may lose eventually
    /// durable writes (module docs, point 5): every lease ends and every consumer group starts over.
    fn restart_views(&self) {
        lock_leases(&self.inner.leases).depose_all();
        self.inner.groups().clear();
        tracing::warn!(
            "the database was reopened with eventually durable writes (the miner's ingest) not yet synced, which \
             the reopen may have lost: every leadership ended and every relay-log entry not acknowledged on disk \
             is delivered again, so the miner reloads its sessions from storage and ingests those relays again"
        );
    }

    async fn reopen_locked(&self) -> Result<bool, StorageError> {
        let Some(why) = self.needs_reopen() else {
            return Ok(false);
        };
        let reopen = &self.inner.reopen;
        tracing::warn!(reason = %why, "embedded database unusable; reopening it in place");
        let started = Instant::now();
        let old = self.inner.files.write().unwrap_or_else(|e| e.into_inner()).take();
        reopen.set_closed(Some(format!("being reopened ({why})")));
        if let Some(old) = old {
            let stopping = old.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(wal) = &stopping.wal {
                    wal.stop();
                }
                stopping.writer.stop();
            })
            .await
            .map_err(join_err)?;
            // Calls in flight fail now that the threads are gone; the file closes with the last of them.
            let deadline = Instant::now() + RELEASE_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if old.writer.holds_unsynced() {
                self.restart_views();
            }
        }
        let opened = open_files(
            &reopen.config,
            &reopen.faults,
            reopen.wal_stats.as_ref(),
            &self.inner.leases,
        )
        .await;
        match opened {
            Ok(files) => {
                *self.inner.files.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(files));
                reopen.set_closed(None);
                reopen.count(true);
                tracing::info!(took = ?started.elapsed(), "embedded database reopened; the relay WAL is recovered");
                Ok(true)
            }
            Err(e) => {
                reopen.set_closed(Some(format!("reopening failed ({e}); retried later")));
                reopen.count(false);
                tracing::error!(error = %e, "reopening the embedded database failed; retried later");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::suite;

    /// A new database records the schema version; a database whose version is newer than this binary's (a
    /// rollback after an upgrade) is refused with an error naming both versions and the file, and is left as it
    /// was; one without the key (written before it existed) is taken as the current version and gets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_with_a_newer_schema_version_is_refused() {
        use super::super::schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY};
        let dir = tempfile::tempdir().unwrap();
        let config = RedbConfig::new(dir.path().join("v.redb"));
        // The file once the dropped backend's threads let go of it.
        let released = || {
            suite::poll_until("the database is released", || async {
                match Database::open(&config.path) {
                    Ok(db) => Some(db),
                    Err(redb::DatabaseError::DatabaseAlreadyOpen) => None,
                    Err(e) => panic!("{e}"),
                }
            })
        };
        let set_version = |db: Database, version: Option<u64>| {
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                match version {
                    Some(v) => meta.insert(SCHEMA_VERSION_KEY, v).unwrap(),
                    None => meta.remove(SCHEMA_VERSION_KEY).unwrap(),
                };
            }
            txn.commit().unwrap();
        };
        let stored_version = |db: &Database| {
            let txn = db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            meta.get(SCHEMA_VERSION_KEY).unwrap().map(|g| g.value())
        };
        let b = RedbBackend::open(config.clone()).await.unwrap();
        b.storage()
            .sessions
            .put("pokt1v", "s1", "active", b"x".to_vec(), 0)
            .await
            .unwrap();
        drop(b);
        let db = released().await;
        assert_eq!(
            stored_version(&db),
            Some(SCHEMA_VERSION),
            "written with the new database"
        );

        set_version(db, Some(SCHEMA_VERSION + 1));
        let err = match RedbBackend::open(config.clone()).await {
            Ok(_) => panic!("a database of schema version {} was opened", SCHEMA_VERSION + 1),
            Err(e) => e.to_string(),
        };
        let newer = format!("schema version {}", SCHEMA_VERSION + 1);
        for part in [newer.as_str(), "newer than", &config.path.display().to_string()] {
            assert!(err.contains(part), "`{part}` missing from: {err}");
        }
        let db = released().await;
        assert_eq!(
            stored_version(&db),
            Some(SCHEMA_VERSION + 1),
            "the refused database is unchanged"
        );

        set_version(db, None);
        let b = RedbBackend::open(config.clone()).await.unwrap();
        let records = b.storage().sessions.list(Some("pokt1v"), None).await.unwrap();
        assert_eq!(records.len(), 1, "the data is read as before");
        drop(b);
        let db = released().await;
        assert_eq!(
            stored_version(&db),
            Some(SCHEMA_VERSION),
            "a database without it gets it"
        );
    }

    /// A crash right after a durable commit (the file copied while the database is open is what SIGKILL
    /// leaves) needs only redb's quick repair at the next open: the commit recorded the allocator state, so the
    /// open does not walk the whole database (redb calls the repair callback only for that full repair).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_after_a_durable_commit_needs_only_a_quick_repair() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RedbConfig::new(dir.path().join("q.redb"));
        // Nothing commits behind the test's back while it copies the file.
        config.sweep_interval = Duration::from_secs(3600);
        config.wal_checkpoint_interval = Duration::from_secs(3600);
        config.wal_checkpoint_bytes = 1 << 30;
        let b = RedbBackend::open(config.clone()).await.unwrap();
        let log = b.storage().relay_log;
        log.append(vec![suite::relay("pokt1quick", "s1", 0)]).await.unwrap();
        assert_eq!(log.backlog("pokt1quick").await.unwrap().undelivered, 1, "applied");
        b.sweep().await.unwrap(); // a durable commit through the writer, the last one
        let crashed = dir.path().join("crashed.redb");
        std::fs::copy(&config.path, &crashed).unwrap();
        let full_repair = Arc::new(AtomicBool::new(false));
        let seen = full_repair.clone();
        let db = Database::builder()
            .set_repair_callback(move |_| seen.store(true, Ordering::SeqCst))
            .open(&crashed)
            .unwrap();
        assert!(
            !full_repair.load(Ordering::SeqCst),
            "the open walked the whole database"
        );
        let txn = db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(tables::LOG).unwrap().len().unwrap(),
            1,
            "the relay is in the copy"
        );
        drop(b);
    }

    /// A reopen after eventually durable writes that no durable commit followed (module docs, point 5) ends
    /// every lease and starts every consumer group over; after a durable commit it changes neither. The reopen
    /// is forced by a failed WAL apply, and the stopping WAL's checkpoint (a durable commit) fails as on a
    /// failing disk. Only what the reopen does to the in-memory state is checked: redb's close still makes the
    /// pending commits durable here, which a real I/O error in a commit would prevent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_with_unsynced_eventual_writes_restarts_leases_and_deliveries() {
        for synced in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = RedbConfig::new(dir.path().join("e.redb"));
            config.sweep_interval = Duration::from_secs(3600);
            config.wal_checkpoint_interval = Duration::from_secs(3600);
            config.wal_checkpoint_bytes = 1 << 30;
            config.eventual_sync_within = Duration::from_secs(3600);
            // The second WAL record's apply fails: the WAL stops and the database needs a reopen. Once armed,
            // the next durable commit fails too (the disk is failing): the WAL's checkpoint when the reopen stops
            // it cannot make the pending commits durable.
            let fail_next_durable = Arc::new(AtomicBool::new(false));
            let armed = fail_next_durable.clone();
            let hook = FaultHook::new(move |site| match site {
                wal::fault::Site::Apply(2) => Some(wal::fault::Fault::Instead),
                wal::fault::Site::DurableCommit if armed.swap(false, Ordering::SeqCst) => {
                    Some(wal::fault::Fault::Instead)
                }
                _ => None,
            });
            let b = RedbBackend::open_with_faults(config, hook).await.unwrap();
            let s = b.storage();
            let ttl = Duration::from_secs(3600);
            let token = s.leadership.campaign("miner", "a", ttl).await.unwrap().unwrap();
            let view = s.fenced(crate::Fence::new("miner", "a", token));
            let sup = "pokt1reopen";
            s.relay_log
                .append((0..2).map(|n| suite::relay(sup, "s1", n)).collect())
                .await
                .unwrap();
            let delivered = view.relay_log.read(sup, "miner", 10).await.unwrap();
            assert_eq!(delivered.len(), 2);
            // The ingest batch of the first relay: its ack and its session's record, eventually durable.
            view.write_sets
                .write(crate::WriteSet {
                    records: vec![crate::RecordWrite {
                        supplier: sup.into(),
                        session_id: "s1".into(),
                        state: "active".into(),
                        data: b"1 relay".to_vec(),
                        expected_version: 0,
                    }],
                    acks: vec![crate::LogAck {
                        supplier: sup.into(),
                        ids: vec![delivered[0].id],
                    }],
                    durability: crate::SetDurability::Eventual,
                    ..Default::default()
                })
                .await
                .unwrap();
            if synced {
                // A durable write (a record's compare-and-set) after it.
                view.sessions.put(sup, "s0", "active", b"x".to_vec(), 0).await.unwrap();
            }
            fail_next_durable.store(true, Ordering::SeqCst);
            s.relay_log.append(vec![suite::relay(sup, "s1", 2)]).await.unwrap();
            suite::poll_until("the failed apply stopped the WAL", || async {
                b.needs_reopen().map(drop)
            })
            .await;
            assert!(b.reopen().await.unwrap(), "reopened");
            assert!(
                !fail_next_durable.load(Ordering::SeqCst),
                "the stopping WAL's checkpoint failed"
            );
            let fenced = view.sessions.put(sup, "s2", "active", b"x".to_vec(), 0).await;
            let leader = s.leadership.leader("miner").await.unwrap();
            let again = s.relay_log.read(sup, "miner", 10).await.unwrap();
            let ids = |entries: &[crate::LogEntry]| entries.iter().map(|e| e.id).collect::<Vec<_>>();
            if synced {
                fenced.unwrap();
                assert_eq!(leader.map(|l| l.token), Some(token), "the lease outlives the reopen");
                assert_eq!(ids(&again).len(), 1, "only the relay appended since: {again:?}");
            } else {
                assert!(
                    matches!(fenced, Err(StorageError::Fenced(_))),
                    "the old leader's writes are refused: {fenced:?}"
                );
                assert_eq!(leader, None, "no lease survives the reopen");
                let next = s.leadership.campaign("miner", "a", ttl).await.unwrap().unwrap();
                assert!(next > token, "a new term: {next} after {token}");
                assert_eq!(
                    ids(&again),
                    vec![delivered[1].id, ids(&again)[1]],
                    "the relay delivered but not acknowledged is delivered again, then the new one"
                );
            }
            drop(b);
        }
    }
}
