//! Fault-injection tests of the relay WAL: a failed `pwrite`, `fdatasync`, apply (after a write or during
//! recovery) or checkpoint reply, on a real backend (real segment files, real redb) where only that one call's
//! result is replaced with an error ([`super::fault`]).
//!
//! Each test appends one batch per record (appends are awaited one after the other, so record `n` of a fresh
//! database holds the `n`-th batch) and names the record to fail by its sequence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::fault::{Fault, FaultHook, Site};
use crate::redb::{RedbBackend, RedbConfig};
use crate::suite::{self, DEADLINE};
use crate::{MinedRelay, StorageError};

const SUPPLIER: &str = "pokt1fault";

/// What the hook does at a site: fail it (once), or first report that it got there and wait for a release.
enum Plan {
    Fail(Fault),
    HoldThenFail {
        reached: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
        fault: Fault,
    },
}

/// One backend on a temp dir, plus the plan its fault hook follows.
struct Harness {
    dir: tempfile::TempDir,
    plans: Arc<Mutex<HashMap<Site, Plan>>>,
    /// While set, every checkpoint reply is replaced with a failure (counted in `checkpoints_failed`).
    fail_checkpoints: Arc<AtomicBool>,
    checkpoints_failed: Arc<AtomicU64>,
    /// Checkpoints that succeeded and whose reply the WAL thread took (segments they free are recycled).
    checkpoints_taken: Arc<AtomicU64>,
    /// While set, every `fdatasync` of a record fails after its `pwrite` reached the file (a failing disk).
    fail_syncs: Arc<AtomicBool>,
    tune: fn(&mut RedbConfig),
    backend: Option<RedbBackend>,
}

impl Harness {
    async fn open() -> Self {
        Self::open_tuned(|_| {}).await
    }

    /// [`Self::open`] with `tune` applied to the config of every open.
    async fn open_tuned(tune: fn(&mut RedbConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Self {
            dir,
            plans: Arc::default(),
            fail_checkpoints: Arc::default(),
            checkpoints_failed: Arc::default(),
            checkpoints_taken: Arc::default(),
            fail_syncs: Arc::default(),
            tune,
            backend: None,
        };
        h.reopen().await;
        h
    }

    fn config(&self) -> RedbConfig {
        let mut config = RedbConfig::new(self.dir.path().join("fault.redb"));
        (self.tune)(&mut config);
        config
    }

    /// Closes the backend (if open) and opens it again with the same hook, retrying while the previous
    /// handle's threads still hold the file.
    async fn reopen(&mut self) {
        if let Err(e) = self.try_reopen().await {
            panic!("reopen failed: {e}");
        }
    }

    /// [`Self::reopen`], returning the open's error instead of panicking (the backend is closed then).
    async fn try_reopen(&mut self) -> Result<(), StorageError> {
        drop(self.backend.take());
        let plans = self.plans.clone();
        let (fail_checkpoints, failed) = (self.fail_checkpoints.clone(), self.checkpoints_failed.clone());
        let (taken, fail_syncs) = (self.checkpoints_taken.clone(), self.fail_syncs.clone());
        let hook = FaultHook::new(move |site| {
            if matches!(site, Site::Sync(_)) && fail_syncs.load(Ordering::SeqCst) {
                return Some(Fault::After);
            }
            if matches!(site, Site::CheckpointReply(_)) && fail_checkpoints.load(Ordering::SeqCst) {
                failed.fetch_add(1, Ordering::SeqCst);
                return Some(Fault::Instead);
            }
            if matches!(site, Site::CheckpointTaken(_)) {
                taken.fetch_add(1, Ordering::SeqCst);
                return None;
            }
            let plan = plans.lock().unwrap().remove(&site)?;
            match plan {
                Plan::Fail(f) => Some(f),
                Plan::HoldThenFail {
                    reached,
                    release,
                    fault,
                } => {
                    reached.send(()).unwrap();
                    release.recv_timeout(DEADLINE).expect("the test releases the held call");
                    Some(fault)
                }
            }
        });
        let config = self.config();
        let opened = suite::poll_until("the database can be reopened", || {
            let (config, hook) = (config.clone(), hook.clone());
            async move {
                match RedbBackend::open_with_faults(config, hook).await {
                    Err(StorageError::Backend(msg)) if msg.contains("already open") => None,
                    other => Some(other),
                }
            }
        })
        .await;
        self.backend = Some(opened?);
        Ok(())
    }

    /// Segment files holding records (named by their first record; spares excluded), the active one included.
    fn segments(&self) -> usize {
        let dir = super::wal_dir(&self.config().path).unwrap();
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(".seg") && !name.starts_with("spare-")
            })
            .count()
    }

    /// Every file in the WAL directory (segments and spares; the identity directory is not a file).
    fn wal_files(&self) -> usize {
        let dir = super::wal_dir(&self.config().path).unwrap();
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count()
    }

    fn fail(&self, site: Site, fault: Fault) {
        self.plans.lock().unwrap().insert(site, Plan::Fail(fault));
    }

    /// Holds the call at `site` until the returned sender is used (or dropped), then fails it; the receiver
    /// hears when the call got there.
    fn hold_then_fail(&self, site: Site, fault: Fault) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (reached_tx, reached) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let plan = Plan::HoldThenFail {
            reached: reached_tx,
            release: release_rx,
            fault,
        };
        self.plans.lock().unwrap().insert(site, plan);
        (reached, release)
    }

    fn backend(&self) -> &RedbBackend {
        self.backend.as_ref().unwrap()
    }

    async fn readiness(&self) -> Result<(), crate::redb::NotReady> {
        self.backend.as_ref().unwrap().readiness().await
    }

    /// Appends the relays numbered `ns`; returns their ids.
    async fn append(&self, ns: std::ops::Range<u64>) -> Result<Vec<u64>, StorageError> {
        let relays: Vec<MinedRelay> = ns.map(|n| suite::relay(SUPPLIER, "s1", n)).collect();
        let ids = self.backend().storage().relay_log.append(relays).await?;
        Ok(ids.into_iter().map(|id| id.major).collect())
    }

    /// Every entry of the log as id → relay number (each relay's bytes checked, none there twice). Delivers
    /// every entry to the consumer `checker`, so call it once per open.
    async fn read_all(&self) -> Result<BTreeMap<u64, u64>, StorageError> {
        let got = self
            .backend()
            .storage()
            .relay_log
            .read(SUPPLIER, "checker", 100_000)
            .await?;
        let mut out = BTreeMap::new();
        for e in got {
            let n = u64::from_be_bytes(e.relay.relay_hash[..8].try_into().unwrap());
            assert_eq!(e.relay, suite::relay(SUPPLIER, "s1", n), "stored bytes of relay {n}");
            assert!(!out.values().any(|m| *m == n), "relay {n} stored twice");
            out.insert(e.id.major, n);
        }
        Ok(out)
    }

    /// Relays 0..3 acknowledged as record 1 (applied), then record 2's apply fails with `fault` after relays
    /// 3..5 were acknowledged as record 2; a read sees the failure.
    async fn fail_record_2(&self, fault: Fault) {
        assert_eq!(self.append(0..3).await.unwrap(), vec![1, 2, 3]);
        assert_eq!(self.count().await.unwrap(), 3, "record 1 applied");
        self.fail(Site::Apply(2), fault);
        assert_eq!(
            self.append(3..5).await.unwrap(),
            vec![4, 5],
            "acknowledged once durable in the WAL"
        );
        assert_unavailable(self.count().await, "a read after the failed apply");
    }

    /// As [`Self::fail_record_2`], but record 2's apply is held until relays 5..7 were acknowledged as record 3
    /// (its apply queued behind the failing one, in a later redb transaction), then fails.
    async fn fail_record_2_with_record_3_queued(&self) {
        assert_eq!(self.append(0..3).await.unwrap(), vec![1, 2, 3]);
        assert_eq!(self.count().await.unwrap(), 3, "record 1 applied");
        let (at_apply, release) = self.hold_then_fail(Site::Apply(2), Fault::After);
        assert_eq!(self.append(3..5).await.unwrap(), vec![4, 5]);
        reached(at_apply).await;
        // The redb writer is inside record 2's apply: record 3 is durable and acknowledged, its apply queued.
        assert_eq!(self.append(5..7).await.unwrap(), vec![6, 7]);
        release.send(()).unwrap();
        // A read waits for the applies, so it sees the failure (an append sent now might still be taken).
        assert_unavailable(self.count().await, "a read after the failed apply");
    }

    /// Undelivered entries (a relay-log read that delivers nothing, so `read_all` still sees everything).
    async fn count(&self) -> Result<u64, StorageError> {
        Ok(self.backend().storage().relay_log.backlog(SUPPLIER).await?.undelivered)
    }
}

/// `ids[i] -> ns[i]`.
fn expect(pairs: &[(std::ops::Range<u64>, std::ops::Range<u64>)]) -> BTreeMap<u64, u64> {
    pairs.iter().flat_map(|(ids, ns)| ids.clone().zip(ns.clone())).collect()
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    assert!(
        matches!(r, Err(StorageError::Unavailable(_))),
        "{what}: expected Unavailable, got {r:?}"
    );
}

/// Waits (on a blocking thread, with a deadline) until a held call reports that it got there.
async fn reached(rx: mpsc::Receiver<()>) {
    tokio::task::spawn_blocking(move || rx.recv_timeout(DEADLINE).expect("the held call is reached"))
        .await
        .unwrap();
}

/// A write that fails (before or after the `pwrite` reached the file) or whose `fdatasync` fails: the append
/// is not acknowledged, the acknowledged ones around it are readable before and after a reopen, and its ids
/// are burnt (the next append gets the ids after them).
async fn failed_write_case(site: fn(u64) -> Site, fault: Fault) {
    let mut h = Harness::open().await;
    assert_eq!(h.append(0..3).await.unwrap(), vec![1, 2, 3]);
    h.fail(site(2), fault);
    let failed = h.append(3..5).await;
    assert!(
        matches!(&failed, Err(StorageError::Backend(m)) if m.contains("injected fault")),
        "the failing append is not acknowledged: {failed:?}"
    );
    assert_eq!(h.append(5..7).await.unwrap(), vec![6, 7], "ids 4 and 5 stay burnt");
    let kept = expect(&[(1..4, 0..3), (6..8, 5..7)]);
    assert_eq!(h.read_all().await.unwrap(), kept);
    h.reopen().await;
    assert_eq!(
        h.read_all().await.unwrap(),
        kept,
        "after a reopen (the failed record is older than wal_applied)"
    );
    assert_eq!(h.append(7..8).await.unwrap(), vec![8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pwrite_is_not_acknowledged_and_burns_its_ids() {
    failed_write_case(Site::Write, Fault::Instead).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pwrite_that_reached_the_file_but_failed_is_not_acknowledged_and_burns_its_ids() {
    failed_write_case(Site::Write, Fault::After).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_is_not_acknowledged_and_burns_its_ids() {
    failed_write_case(Site::Sync, Fault::After).await;
}

/// A failed write that did reach the file, with nothing after it: it was never acknowledged, but it is a
/// valid record newer than `wal_applied`, so a reopen applies it with the ids it burnt; nothing collides and
/// the next id follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_record_that_reached_the_file_comes_back_with_its_own_ids() {
    let mut h = Harness::open().await;
    assert_eq!(h.append(0..3).await.unwrap(), vec![1, 2, 3]);
    h.fail(Site::Sync(2), Fault::After);
    assert!(h.append(3..5).await.is_err());
    h.reopen().await;
    assert_eq!(h.read_all().await.unwrap(), expect(&[(1..6, 0..5)]));
    assert_eq!(h.append(5..6).await.unwrap(), vec![6]);
}

/// A record whose apply to redb fails: its append was acknowledged (durable in the WAL); from then on every
/// relay-log read and append fails with `Unavailable`; a reopen recovers it, readable exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_makes_the_log_unavailable_until_a_reopen_recovers_it() {
    let mut h = Harness::open().await;
    assert_eq!(h.readiness().await, Ok(()));
    h.fail_record_2(Fault::After).await;
    assert_unavailable(h.read_all().await, "a read after the failed apply");
    assert_unavailable(h.append(5..6).await, "an append after the failed apply");
    assert_unavailable(h.append(5..6).await, "a second append");
    // `/ready` says so (the writer itself still commits: the WAL is what failed).
    let not_ready = h.readiness().await.unwrap_err();
    assert_eq!(not_ready.reason(), "redb_wal_failed", "{not_ready}");
    h.reopen().await;
    assert_eq!(
        h.readiness().await,
        Ok(()),
        "ready again once recovery applied the record"
    );
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..6, 0..5)]),
        "recovered exactly once"
    );
    assert_eq!(
        h.append(6..7).await.unwrap(),
        vec![6],
        "ids continue after the recovered ones"
    );
}

/// A failed apply followed by a record acknowledged before the failure was known (its apply queued behind
/// the failing one, in a later redb transaction): the later record must not be applied over the gap, or its
/// META `wal_applied` would tell recovery that the failed record is in redb and it would be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_after_a_failed_apply_does_not_hide_it_from_recovery() {
    let mut h = Harness::open().await;
    h.fail_record_2_with_record_3_queued().await;
    assert_unavailable(h.append(7..8).await, "an append after the failed apply");
    // Closing checkpoints (a durable redb commit); the failed record must still be replayed.
    h.reopen().await;
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..8, 0..7)]),
        "every acknowledged relay, once"
    );
    assert_eq!(h.append(7..8).await.unwrap(), vec![8]);
}

/// An apply that fails with the WAL idle (no read waiting) and then the database reopened at once: the
/// record is replayed by recovery; reopening again replays nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_is_recovered_once_across_several_reopens() {
    let mut h = Harness::open().await;
    h.fail(Site::Apply(1), Fault::Instead);
    assert_eq!(h.append(0..4).await.unwrap(), vec![1, 2, 3, 4]);
    h.reopen().await;
    assert_eq!(h.count().await.unwrap(), 4);
    h.reopen().await;
    assert_eq!(h.read_all().await.unwrap(), expect(&[(1..5, 0..4)]));
    assert_eq!(h.append(4..5).await.unwrap(), vec![5]);
}

/// A record whose apply fails during recovery at open: the open fails and applies nothing, the WAL keeps the
/// record, and the next open applies every acknowledged relay exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_during_recovery_fails_the_open_and_the_next_open_recovers_everything() {
    let mut h = Harness::open().await;
    assert_eq!(h.append(0..3).await.unwrap(), vec![1, 2, 3]);
    // Record 2 stays in the WAL only: its apply fails (the log is unavailable until a reopen).
    h.fail(Site::Apply(2), Fault::Instead);
    assert_eq!(h.append(3..5).await.unwrap(), vec![4, 5]);
    assert_unavailable(h.count().await, "a read after the failed apply");
    h.fail(Site::Recover(2), Fault::After);
    let failed = h.try_reopen().await;
    assert!(
        matches!(&failed, Err(StorageError::Backend(m)) if m.contains("injected fault after Recover(2)")),
        "the open names the failed recovery: {failed:?}"
    );
    h.reopen().await;
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..6, 0..5)]),
        "every acknowledged relay, once"
    );
    assert_eq!(h.append(5..6).await.unwrap(), vec![6]);
}

/// A checkpoint whose reply says it failed: the segments it would have freed are kept for a later one (a
/// segment is reused only once a checkpoint that succeeded covers its records), appends go on being
/// acknowledged, and once checkpoints succeed again the kept segments are recycled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_keeps_its_segments_until_a_later_one_succeeds() {
    let mut h = Harness::open_tuned(|c| {
        c.wal_segment_bytes = 4096;
        c.wal_checkpoint_bytes = 2048;
        c.wal_checkpoint_interval = Duration::from_millis(5);
    })
    .await;
    h.fail_checkpoints.store(true, Ordering::SeqCst);
    let mut n = 0;
    while h.segments() < 4 {
        assert!(n < 2_000, "4 segments after {n} relays");
        let ids = h.append(n..n + 5).await.unwrap();
        assert_eq!(ids, (n + 1..n + 6).collect::<Vec<_>>());
        n += 5;
    }
    assert!(
        h.checkpoints_failed.load(Ordering::SeqCst) > 0,
        "checkpoints were attempted and failed"
    );
    h.fail_checkpoints.store(false, Ordering::SeqCst);
    // The next checkpoint (due on the next append) covers every closed segment: all but the active are reused.
    assert_eq!(h.append(n..n + 1).await.unwrap(), vec![n + 1]);
    n += 1;
    suite::poll_until("the kept segments are recycled", || async {
        (h.segments() == 1).then_some(())
    })
    .await;
    h.reopen().await;
    assert_eq!(h.read_all().await.unwrap(), expect(&[(1..n + 1, 0..n)]));
}

/// A failed apply recovered in place: `reopen` closes the database under the backend, opens it again (WAL
/// recovery included) and swaps it in, the backend handle staying the same. Every acknowledged relay is
/// readable once, ids continue, `/ready` is green again, and a real reopen afterwards replays nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_is_recovered_by_reopening_the_database_in_place() {
    let mut h = Harness::open().await;
    assert!(!h.backend().reopen().await.unwrap(), "nothing to reopen yet");
    h.fail_record_2(Fault::After).await;
    assert_eq!(h.readiness().await.unwrap_err().reason(), "redb_wal_failed");
    assert!(h.backend().reopen().await.unwrap(), "reopened");
    assert_eq!(h.readiness().await, Ok(()), "ready once the WAL is reopened");
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..6, 0..5)]),
        "recovered exactly once"
    );
    assert_eq!(
        h.append(5..6).await.unwrap(),
        vec![6],
        "ids continue after the recovered ones"
    );
    assert_eq!((h.backend().reopens(true), h.backend().reopens(false)), (1, 0));
    let stats = h.backend().wal_stats().unwrap();
    assert_eq!(
        stats.records(),
        3,
        "one record per append, before and after the reopen, in the same metrics"
    );
    h.reopen().await;
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..7, 0..6)]),
        "a real reopen replays nothing twice"
    );
    assert_eq!(h.append(6..7).await.unwrap(), vec![7]);
}

/// The in-place reopen with a record acknowledged while the failing apply was held (its apply queued behind
/// it): the reopen stops the old writer (the queued apply fails, unapplied), then recovery applies both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_in_place_recovers_records_queued_behind_the_failed_apply() {
    let h = Harness::open().await;
    h.fail_record_2_with_record_3_queued().await;
    assert_unavailable(h.append(7..8).await, "an append after the failed apply");
    assert!(h.backend().reopen().await.unwrap(), "reopened");
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..8, 0..7)]),
        "every acknowledged relay, once"
    );
    assert_eq!(h.append(7..8).await.unwrap(), vec![8]);
}

/// A reopen whose recovery fails leaves the database closed (appends and reads refused, `/ready` red with the
/// reason, counted as failed); `readiness_recovering` does not retry before the pause (2 s), then recovers
/// everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_in_place_reopen_is_retried_after_a_pause_and_then_recovers_everything() {
    let h = Harness::open().await;
    h.fail_record_2(Fault::Instead).await;
    h.fail(Site::Recover(2), Fault::After);
    let failed_at = std::time::Instant::now();
    let not_ready = h.backend().readiness_recovering().await.unwrap_err();
    assert_eq!(not_ready.reason(), "redb_closed", "{not_ready}");
    assert!(
        not_ready.to_string().contains("injected fault after Recover(2)"),
        "/ready names why the reopen failed: {not_ready}"
    );
    let b = h.backend();
    assert_eq!((b.reopens(true), b.reopens(false)), (0, 1), "tried at once, failed");
    assert_unavailable(h.append(5..6).await, "an append while the database is closed");
    assert_unavailable(h.count().await, "a read while the database is closed");
    // Probes before the pause report the state without trying again.
    assert!(h.backend().readiness_recovering().await.is_err());
    assert_eq!(b.reopens(false), 1, "no second try inside the pause");
    suite::poll_until("the next try reopens the database", || async {
        h.backend().readiness_recovering().await.ok()
    })
    .await;
    assert!(
        failed_at.elapsed() >= Duration::from_secs(2),
        "retried only after the pause"
    );
    assert_eq!((b.reopens(true), b.reopens(false)), (1, 1));
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..6, 0..5)]),
        "every acknowledged relay, once"
    );
    assert_eq!(h.append(5..6).await.unwrap(), vec![6]);
}

/// A database that breaks again right after a reopen that succeeded (as on a disk still full) is not
/// reopened at every probe: the next reopen waits for the pause (2 s) and `/ready` is red in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_breaks_again_right_after_a_reopen_is_reopened_only_after_a_pause() {
    let h = Harness::open().await;
    h.fail_record_2(Fault::Instead).await;
    let reopened_at = std::time::Instant::now();
    let b = h.backend();
    assert_eq!(
        b.readiness_recovering().await,
        Ok(()),
        "the first failure is repaired at once"
    );
    assert_eq!(b.reopens(true), 1);
    // Recovery applied record 2, so the next record is 3: it fails too.
    h.fail(Site::Apply(3), Fault::Instead);
    assert_eq!(h.append(5..6).await.unwrap(), vec![6]);
    assert_unavailable(h.count().await, "a read after the second failed apply");
    let not_ready = b.readiness_recovering().await.unwrap_err();
    assert_eq!(not_ready.reason(), "redb_wal_failed", "{not_ready}");
    assert_eq!(b.reopens(true), 1, "not reopened again inside the pause");
    suite::poll_until("the second reopen", || async { b.readiness_recovering().await.ok() }).await;
    assert!(
        reopened_at.elapsed() >= Duration::from_secs(2),
        "reopened again only after the pause"
    );
    assert_eq!((b.reopens(true), b.reopens(false)), (2, 0));
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..7, 0..6)]),
        "every acknowledged relay, once"
    );
}

/// A checkpoint that succeeds after an apply failed covers only what redb holds (META `wal_applied`), not every
/// record handed to redb before it: the segment holding the failed record (closed, with the next record in a
/// new one) is not recycled, and a reopen recovers every acknowledged relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_after_a_failed_apply_keeps_the_segment_of_the_failed_record() {
    let mut h = Harness::open_tuned(|c| {
        c.wal_segment_bytes = 4096;
        c.wal_checkpoint_bytes = 1 << 30;
        c.wal_checkpoint_interval = Duration::from_millis(5);
    })
    .await;
    // No segment is recycled before the failure: the failed record's segment is the newest of several closed.
    h.fail_checkpoints.store(true, Ordering::SeqCst);
    // One relay per record (id == record sequence); records of constant size from relay 100 on.
    let mut n = 0u64;
    while n < 100 {
        h.append(n..n + 1).await.unwrap();
        n += 1;
    }
    // Two rollovers measure the records per segment.
    let mut firsts = Vec::new();
    while firsts.len() < 2 {
        let before = h.segments();
        h.append(n..n + 1).await.unwrap();
        if h.segments() > before {
            firsts.push(n + 1);
        }
        n += 1;
    }
    let per_seg = firsts[1] - firsts[0];
    // Record k is the last of the active segment.
    let k = firsts[1] + per_seg - 1;
    while n + 1 < k {
        h.append(n..n + 1).await.unwrap();
        n += 1;
    }
    let (at_apply, release) = h.hold_then_fail(Site::Apply(k), Fault::Instead);
    let segs = h.segments();
    assert_eq!(h.append(n..n + 1).await.unwrap(), vec![k], "record k acknowledged");
    n += 1;
    reached(at_apply).await;
    assert_eq!(
        h.append(n..n + 1).await.unwrap(),
        vec![k + 1],
        "record k+1 acknowledged"
    );
    n += 1;
    assert_eq!(h.segments(), segs + 1, "record k+1 rolled: k's segment is closed");
    h.fail_checkpoints.store(false, Ordering::SeqCst);
    release.send(()).unwrap();
    // Every checkpoint so far failed; one queued behind the failed apply (or requested after it) succeeds.
    assert_eq!(h.checkpoints_taken.load(Ordering::SeqCst), 0);
    suite::poll_until("a checkpoint after the failed apply is taken", || async {
        (h.checkpoints_taken.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert_unavailable(h.count().await, "a read after the failed apply");
    h.reopen().await;
    let got = h.read_all().await.unwrap();
    let missing: Vec<u64> = (1..=n).filter(|id| !got.contains_key(id)).collect();
    assert!(missing.is_empty(), "acknowledged ids lost after reopen: {missing:?}");
    assert_eq!(got.len() as u64, n, "every acknowledged relay, once");
}

/// Writes that keep failing (every `fdatasync`, as on a failing disk) fail their appends without filling the
/// disk: a segment holding only a failed write is reused by the next group (the WAL alternates between it and
/// the spare) instead of each failure leaving a segment file behind. Once writes succeed again appends are
/// acknowledged (the failed ones' ids stay burnt), and a reopen finds every acknowledged relay, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_keep_failing_reuse_their_segments_instead_of_filling_the_disk() {
    let mut h = Harness::open().await;
    assert_eq!(h.append(0..1).await.unwrap(), vec![1]);
    h.fail_syncs.store(true, Ordering::SeqCst);
    for n in 1..40 {
        let failed = h.append(n..n + 1).await;
        assert!(
            matches!(&failed, Err(StorageError::Backend(m)) if m.contains("injected fault")),
            "append {n} while every sync fails: {failed:?}"
        );
    }
    // The segment holding record 1 (and the failed record 2), and the two files taking turns since.
    let files = h.wal_files();
    assert!(files <= 3, "{files} WAL files (16 MiB each) after 39 failed appends");
    h.fail_syncs.store(false, Ordering::SeqCst);
    assert_eq!(h.append(40..41).await.unwrap(), vec![41], "ids 2..=40 stay burnt");
    h.reopen().await;
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..2, 0..1), (41..42, 40..41)]),
        "every acknowledged relay, once (the failed records are older than wal_applied)"
    );
    assert_eq!(h.append(41..42).await.unwrap(), vec![42]);
}

/// While WAL writes fail (every `fdatasync`, as on a failing disk) every append is refused, and `/ready` says so
/// (`redb_wal_write_failed`, with the failures in a row) instead of staying green. The database is not reopened
/// for it (nothing to repair; see `needs_reopen`). The probe tries a write itself (a record without relays), so
/// `/ready` turns green as soon as writes succeed, without a relay having to reach a node that is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_red_while_wal_writes_fail_and_green_once_one_succeeds_without_a_reopen() {
    let mut h = Harness::open().await;
    assert_eq!(h.append(0..1).await.unwrap(), vec![1]);
    h.fail_syncs.store(true, Ordering::SeqCst);
    for n in 1..5 {
        assert!(h.append(n..n + 1).await.is_err(), "append {n} while every sync fails");
    }
    let b = h.backend();
    let not_ready = b.readiness_recovering().await.unwrap_err();
    assert_eq!(not_ready.reason(), "redb_wal_write_failed", "{not_ready}");
    assert!(
        not_ready.to_string().contains("5 writes failed in a row") && not_ready.to_string().contains("injected fault"),
        "/ready names the failures (4 appends and the probe's record): {not_ready}"
    );
    assert_eq!((b.reopens(true), b.reopens(false)), (0, 0), "not reopened");
    assert_eq!(b.wal_stats().unwrap().write_failures(), 5);
    h.fail_syncs.store(false, Ordering::SeqCst);
    assert_eq!(
        b.readiness_recovering().await,
        Ok(()),
        "green once the probe's write succeeds"
    );
    assert_eq!(b.readiness().await, Ok(()), "and it stays green");
    assert_eq!((b.reopens(true), b.reopens(false)), (0, 0), "still not reopened");
    assert_eq!(
        h.append(5..6).await.unwrap(),
        vec![6],
        "ids 2..=5 burnt, the probes took none"
    );
    h.reopen().await;
    assert_eq!(
        h.read_all().await.unwrap(),
        expect(&[(1..2, 0..1), (6..7, 5..6)]),
        "every acknowledged relay, once"
    );
}
