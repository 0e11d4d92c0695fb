//! A real full disk under the embedded store: a small tmpfs holds the redb file and its relay WAL, a filler
//! file takes the rest, and relays are appended until redb cannot grow (`ENOSPC`). redb then refuses every
//! transaction (`PreviousIo`) and the WAL every append, so `/ready` goes red; while the disk stays full the
//! in-place reopen fails and `/ready` names why; once the filler is removed the readiness loop
//! (`readiness_recovering`) reopens the database and every acknowledged relay is in the log exactly once.
//!
//! Mounting needs root (CAP_SYS_ADMIN), which the test machines have: the test fails, naming the reason,
//! where the mount is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use storage::suite::{self, Tmpfs, fill};
use storage::{MinedRelay, RedbBackend, RedbConfig};

const SUPPLIER: &str = "pokt1full";

/// Relay `n` with a 1 KiB payload.
fn relay(n: u64) -> MinedRelay {
    let mut r = suite::relay(SUPPLIER, "s1", n);
    r.payload.resize(1024, b'x');
    r
}

/// Waits until the WAL's spare segment (written by its own thread, started at open) has all its `size` bytes,
/// so that the free space measured next is not taken by it while the filler is written.
async fn spare_segment_made(wal: &Path, size: u64) {
    suite::poll_until("the WAL's spare segment is written", || async {
        let entries = std::fs::read_dir(wal).ok()?;
        entries
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name().to_string_lossy().starts_with("spare-") && e.metadata().is_ok_and(|m| m.len() == size)
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_store_not_ready_and_freeing_it_recovers_every_acknowledged_relay() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(dir.path(), "8M");
    let mut config = RedbConfig::new(fs.path().join("full.redb"));
    config.cache_size_bytes = 1 << 20;
    config.wal_segment_bytes = 1 << 20;
    config.wal_checkpoint_bytes = 64 << 10;
    let backend = RedbBackend::open(config).await.unwrap();
    let log = backend.storage().relay_log;
    assert_eq!(backend.readiness_recovering().await, Ok(()));
    spare_segment_made(&fs.path().join("full.redb.wal"), 1 << 20).await;

    // Leave ~600 KiB: the preallocated WAL segments keep taking records, the redb file soon cannot grow.
    let filler: PathBuf = fs.path().join("filler");
    let room = fs.available().saturating_sub(600 << 10);
    std::fs::write(&filler, vec![0u8; usize::try_from(room).unwrap()]).unwrap();

    let mut acknowledged = BTreeSet::new();
    let mut next = 0u64;
    let mut not_ready = None;
    for _ in 0..2_000 {
        let batch: Vec<MinedRelay> = (next..next + 10).map(relay).collect();
        if log.append(batch).await.is_ok() {
            acknowledged.extend(next..next + 10);
        }
        next += 10;
        if let Err(e) = backend.readiness().await {
            not_ready = Some(e);
            break;
        }
    }
    let not_ready = not_ready.expect("the store stops being ready when the disk is full");
    assert!(!acknowledged.is_empty());

    // Not a byte left (what the failed transaction allocated included). A reopen may still succeed (the
    // failed transaction's pages are free again at open) or fail (redb's repair or the WAL recovery cannot
    // write); either way no acknowledged relay may be lost, and appends are refused or durable, never lost.
    let rest = fs.path().join("rest");
    fill(&rest);
    let attempt = backend.readiness_recovering().await;
    eprintln!("full disk: {not_ready}; reopen on a full disk: {attempt:?}");
    if log.append(vec![relay(next)]).await.is_ok() {
        acknowledged.insert(next);
    }
    next += 1;

    // Room again: the readiness loop reopens the database in place (after its pause).
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&rest).unwrap();
    suite::poll_until("the store is ready again", || async {
        backend.readiness_recovering().await.ok()
    })
    .await;
    assert!(backend.reopens(true) >= 1, "recovered by reopening in place");

    // Every acknowledged relay is there, once, with its bytes; appends are taken again.
    let entries = log.read(SUPPLIER, "checker", 100_000).await.unwrap();
    let mut seen = BTreeSet::new();
    for e in &entries {
        let n = u64::from_be_bytes(e.relay.relay_hash[..8].try_into().unwrap());
        assert_eq!(e.relay, relay(n), "stored bytes of relay {n}");
        assert!(seen.insert(n), "relay {n} stored twice");
    }
    let lost: Vec<_> = acknowledged.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "acknowledged relays missing after the reopen: {lost:?}"
    );
    assert!(log.append(vec![relay(next)]).await.is_ok());
}
