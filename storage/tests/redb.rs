//! The conformance suite on redb, restart persistence, and the kill -9 durability test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use storage::suite::{self, Fixture};
use storage::{NodeBatch, RedbBackend, RedbConfig, StorageError};

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::open(RedbConfig::new(dir.path().join("store.redb")))
        .await
        .unwrap();
    Fixture::with_guard(backend.storage(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    suite::run_all(fixture).await;
}

/// Opens `path`, retrying while a previous in-process handle is still shutting its writer thread down.
async fn reopen(path: &std::path::Path) -> RedbBackend {
    suite::poll_until("the database can be reopened", || async {
        match RedbBackend::open(RedbConfig::new(path)).await {
            Ok(b) => Some(b),
            Err(StorageError::Backend(msg)) if msg.contains("already open") => None,
            Err(e) => panic!("reopen failed: {e}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_unacked_entries_are_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let first_token;
    {
        let b = RedbBackend::open(RedbConfig::new(&path)).await.unwrap();
        let s = b.storage();
        let ids = s
            .relay_log
            .append((0..10).map(|n| suite::relay("pokt1a", "s1", n)).collect())
            .await
            .unwrap();
        let got = s.relay_log.read("pokt1a", "miner-1", 6).await.unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(s.relay_log.ack("pokt1a", &ids[..3]).await.unwrap(), 3);
        s.sessions
            .put("pokt1a", "s1", "claimed", b"rec".to_vec(), 0)
            .await
            .unwrap();
        s.kv.set("cache", b"v".to_vec(), None).await.unwrap();
        let mut ns = s.tries.open("pokt1a", "s1").await.unwrap();
        tokio::task::spawn_blocking(move || {
            ns.write_batch(NodeBatch {
                puts: vec![(vec![7; 32], b"node".to_vec())],
                deletes: vec![],
            })
            .unwrap();
        })
        .await
        .unwrap();
        first_token = s
            .leadership
            .campaign("global", "me", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    }
    let b = reopen(&path).await;
    let s = b.storage();
    let again = s.relay_log.read("pokt1a", "miner-2", 100).await.unwrap();
    let hashes: Vec<Vec<u8>> = again.iter().map(|e| e.relay.relay_hash.clone()).collect();
    let expect: Vec<Vec<u8>> = (3..10).map(|n| suite::relay("pokt1a", "s1", n).relay_hash).collect();
    assert_eq!(
        hashes, expect,
        "every unacknowledged entry comes back, acknowledged ones do not"
    );
    let more = s
        .relay_log
        .append(vec![suite::relay("pokt1a", "s1", 10)])
        .await
        .unwrap();
    assert!(more[0] > again[again.len() - 1].id, "sequence continues after restart");
    assert_eq!(s.sessions.get("pokt1a", "s1").await.unwrap().unwrap().version, 1);
    assert_eq!(s.kv.get("cache").await.unwrap().as_deref(), Some(&b"v"[..]));
    let ns = s.tries.open("pokt1a", "s1").await.unwrap();
    let node = tokio::task::spawn_blocking(move || ns.get(&[7; 32]).unwrap())
        .await
        .unwrap();
    assert_eq!(node.as_deref(), Some(&b"node"[..]));
    let token = s
        .leadership
        .campaign("global", "me", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(
        token > first_token,
        "fencing token persisted across restarts: {token} after {first_token}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_sweep_deletes_expired_keys() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(RedbConfig::new(dir.path().join("s.redb")))
        .await
        .unwrap();
    let s = b.storage();
    s.kv.set("short", b"1".to_vec(), Some(Duration::from_millis(50)))
        .await
        .unwrap();
    s.kv.set("long", b"1".to_vec(), Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let removed = suite::poll_until("the sweep removes the expired key", || {
        let b = b.clone();
        async move { Some(b.sweep().await.unwrap()).filter(|n| *n == 1) }
    })
    .await;
    assert_eq!(removed, 1);
    assert_eq!(b.sweep().await.unwrap(), 0);
    assert!(s.kv.get("long").await.unwrap().is_some());
}

const CHILD_ENV: &str = "RELAY_MINER_STORAGE_KILL9_DB";

/// Child side of `acknowledged_relays_survive_kill_9`: appends forever and prints each acknowledged relay id.
/// A no-op when the env var is unset (normal test runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_child_appender() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let b = RedbBackend::open(RedbConfig::new(path)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let log = b.storage().relay_log;
        tasks.push(tokio::spawn(async move {
            for batch in 0u64.. {
                let relays: Vec<_> = (0..16)
                    .map(|i| suite::relay("pokt1kill", "s1", (t << 48) | (batch * 16 + i)))
                    .collect();
                let hashes: Vec<String> = relays.iter().map(|r| hex(&r.relay_hash)).collect();
                log.append(relays).await.unwrap();
                let mut out = std::io::stdout().lock();
                for h in hashes {
                    writeln!(out, "ACK {h}").unwrap();
                }
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_relays_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill9.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill9_child_appender", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    let mut line = String::new();
    // Kill mid-stream once enough appends were acknowledged (the child keeps appending meanwhile).
    while acked.len() < 3_000 {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "child exited early");
        if let Some(h) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) {
            acked.push(h.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Lines the child printed before dying were acknowledged too; a torn last line is ignored.
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(h) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) {
            acked.push(h.to_owned());
        }
    }
    child.wait().unwrap();

    let b = RedbBackend::open(RedbConfig::new(&path)).await.unwrap();
    let log = b.storage().relay_log;
    let mut stored = std::collections::HashSet::new();
    loop {
        let chunk = log.read("pokt1kill", "checker", 4096).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        stored.extend(chunk.into_iter().map(|e| hex(&e.relay.relay_hash)));
    }
    let missing: Vec<&String> = acked.iter().filter(|h| !stored.contains(*h)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged relays lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(stored.len() >= acked.len());
    eprintln!("kill -9: {} acknowledged, {} stored", acked.len(), stored.len());
}
