//! Eventually durable write sets on redb (`SetDurability::Eventual`, the miner's ingest batches): visible at
//! once, not yet on disk, on disk with the next durable write, at a clean close, and, with nothing else
//! written, within `RedbConfig::eventual_sync_within`.
//!
//! "On disk" is checked the way a crash would see it: a copy of the database file, taken while the backend is
//! open, opened on its own. redb writes a non-durable commit's pages but leaves the header naming the last
//! durable commit, so the copy holds exactly what an open after a crash (SIGKILL) at that moment recovers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use storage::suite;
use storage::{RecordWrite, RedbBackend, RedbConfig, SetDurability, WriteSet};

const SUP: &str = "pokt1eventual";

fn config(path: &Path, sync_within: Duration) -> RedbConfig {
    let mut c = RedbConfig::new(path);
    c.eventual_sync_within = sync_within;
    c
}

fn set(session: &str, durability: SetDurability) -> WriteSet {
    WriteSet {
        records: vec![RecordWrite {
            supplier: SUP.into(),
            session_id: session.into(),
            state: "active".into(),
            data: session.as_bytes().to_vec(),
            expected_version: 0,
        }],
        durability,
        ..Default::default()
    }
}

/// The sessions a crash right now would leave: a copy of the file opened on its own (no WAL: nothing was
/// appended to the relay log).
async fn on_disk(path: &Path, dir: &Path) -> Vec<String> {
    let copy: PathBuf = dir.join(format!("copy-{}.redb", rand_suffix()));
    std::fs::copy(path, &copy).unwrap();
    let mut c = RedbConfig::new(&copy);
    c.relay_wal = false;
    let b = RedbBackend::open(c).await.unwrap();
    let mut ids: Vec<String> = b
        .storage()
        .sessions
        .list(Some(SUP), None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.session_id)
        .collect();
    ids.sort();
    ids
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// With no bound in reach (an hour): an eventual set is visible at once but not on disk; the next durable
/// write puts it there with its own; a clean close keeps one written after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventual_set_is_durable_with_the_next_durable_write_or_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let hour = Duration::from_secs(3600);
    let b = RedbBackend::open(config(&path, hour)).await.unwrap();
    let s = b.storage();
    s.write_sets
        .write(set("durable-0", SetDurability::Immediate))
        .await
        .unwrap();
    s.write_sets
        .write(set("eventual-1", SetDurability::Eventual))
        .await
        .unwrap();
    assert!(
        s.sessions.get(SUP, "eventual-1").await.unwrap().is_some(),
        "visible to readers at once"
    );
    assert_eq!(
        on_disk(&path, dir.path()).await,
        vec!["durable-0"],
        "an eventual set is not synced by its own write (that is its point)"
    );
    s.write_sets
        .write(set("durable-2", SetDurability::Immediate))
        .await
        .unwrap();
    assert_eq!(
        on_disk(&path, dir.path()).await,
        vec!["durable-0", "durable-2", "eventual-1"],
        "a durable write makes every earlier eventual one durable"
    );
    s.write_sets
        .write(set("eventual-3", SetDurability::Eventual))
        .await
        .unwrap();
    drop(s);
    drop(b);
    let b = suite::reopen_redb(config(&path, hour)).await;
    assert!(
        b.storage().sessions.get(SUP, "eventual-3").await.unwrap().is_some(),
        "a clean close keeps an eventual set"
    );
}

/// With nothing written after it, an eventual set is on disk once `eventual_sync_within` passed (the writer's
/// idle sync): a crash after the bound loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventual_set_is_durable_within_the_bound_when_nothing_follows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let bound = Duration::from_millis(200);
    let b = RedbBackend::open(config(&path, bound)).await.unwrap();
    let s = b.storage();
    s.write_sets
        .write(set("durable-0", SetDurability::Immediate))
        .await
        .unwrap();
    let written = Instant::now();
    s.write_sets
        .write(set("eventual-1", SetDurability::Eventual))
        .await
        .unwrap();
    let synced = suite::poll_until("the eventual set is on disk", || {
        let (path, dir) = (path.clone(), dir.path().to_owned());
        async move {
            on_disk(&path, &dir)
                .await
                .contains(&"eventual-1".to_owned())
                .then(Instant::now)
        }
    })
    .await;
    // Not a timing assertion on a shared host (the poll's deadline bounds it): the elapsed time is printed.
    println!(
        "eventual set on disk {:?} after its write (bound {bound:?})",
        synced - written
    );
    assert_eq!(on_disk(&path, dir.path()).await, vec!["durable-0", "eventual-1"]);
    drop(b);
}

/// Under a steady stream of eventual sets (four writers, each sending its next as soon as the last returned)
/// the earliest sets reach the disk while the stream goes on: the first commit after the bound is durable (or
/// an empty durable one, when the queue is empty between two groups at that moment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_eventual_sets_reaches_the_disk_while_it_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let b = RedbBackend::open(config(&path, Duration::from_millis(200)))
        .await
        .unwrap();
    let s = b.storage();
    s.write_sets.write(set("first", SetDurability::Eventual)).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    s.write_sets
                        .write(set(&format!("stream-{w}-{n:06}"), SetDurability::Eventual))
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let started = Instant::now();
    suite::poll_until("the first set is on disk while the stream goes on", || {
        let (path, dir) = (path.clone(), dir.path().to_owned());
        async move { on_disk(&path, &dir).await.contains(&"first".to_owned()).then_some(()) }
    })
    .await;
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    println!("the first set was on disk after {elapsed:?}, {written} sets written meanwhile");
}
