//! Redis OOM hardening (the Go fleet's outage: leader died, the standby's acquisition failed with
//! `OOM command not allowed` for hours, logged at DEBUG, no metric, no leader). A server with `--maxmemory 2mb
//! --maxmemory-policy noeviction` is filled until it refuses writes; then relays, tries and KV writes fail with a
//! retryable `OutOfMemory` (so memory stops growing), while session records and leadership (small writes in
//! `allow-oom` scripts on Redis ≥ 7) still work: a standby takes over and claims and proofs keep going.
//! Readiness says why, nothing panics, and everything resumes once memory is freed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{AcquireFailure, NotReady, RedisBackend, RedisConfig};
use storage::{MinedRelay, NodeBatch, RecordWrite, StorageError, TrieWrite, WriteSet, suite};

use common::metrics;

fn big_relay(n: u64) -> MinedRelay {
    MinedRelay {
        payload: vec![b'x'; 4096],
        ..suite::relay("pokt1oom", "s1", n)
    }
}

/// Settings without the relay memory threshold (`redis_relay_threshold` tests it): these tests fill Redis with
/// relay appends up to `maxmemory`, which the threshold would stop earlier.
fn no_relay_threshold(url: String) -> RedisConfig {
    RedisConfig {
        relay_max_memory_ratio: 1.0,
        ..RedisConfig::new(url)
    }
}

fn is_oom(r: Result<impl std::fmt::Debug, StorageError>) -> bool {
    match r {
        Err(e @ StorageError::OutOfMemory(_)) => {
            assert!(e.is_retryable());
            true
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
}

/// Appends 32 KiB batches until Redis refuses one with OOM (returns that error), then lowers `maxmemory` to
/// halfway between the empty server's usage and the filled one's, so the refusal is stable against the
/// allocator noise of a few KiB at the boundary (a refused command's freed query buffer can otherwise let
/// the next one through) while freeing the data (FLUSHALL) still gets below it.
async fn fill(server: &RedisServer, b: &RedisBackend) -> StorageError {
    let baseline = b.poll_memory().await.unwrap().used_bytes;
    let mut n = 0u64;
    let err = loop {
        let batch: Vec<_> = (0..8).map(|i| big_relay(n * 8 + i)).collect();
        match b.storage().relay_log.append(batch).await {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 10_000, "server never refused writes");
    };
    assert!(n > 0);
    let used = b.poll_memory().await.unwrap().used_bytes;
    assert!(used > baseline + (512 << 10), "{used} vs {baseline}");
    let limit = (baseline + used) / 2;
    assert_eq!(
        server
            .command(&["CONFIG", "SET", "maxmemory", &limit.to_string()])
            .unwrap(),
        "+OK\r\n"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_is_typed_counted_and_recovers() {
    let server = RedisServer::start(ServerOptions::max_memory(2 << 20)).unwrap();
    let b = RedisBackend::connect(no_relay_threshold(server.url())).await.unwrap();
    let s = b.storage();
    let ttl = Duration::from_secs(30);

    // A leader elected before the memory runs out.
    let sitting = s
        .leadership
        .campaign("supplier:pokt1a", "old-leader", ttl)
        .await
        .unwrap()
        .unwrap();
    // A trie namespace opened before, written after.
    let mut ns = s.tries.open("pokt1oom", "s1").await.unwrap();

    // Fill until Redis refuses.
    let err = fill(&server, &b).await;
    assert!(matches!(err, StorageError::OutOfMemory(_)), "{err:?}");
    assert!(err.is_retryable());

    // Every write path reports OOM, typed.
    assert!(is_oom(s.relay_log.append(vec![big_relay(1 << 40)]).await));
    assert!(is_oom(s.kv.set("k", b"v".to_vec(), None).await));
    assert!(is_oom(s.kv.increment("ctr", 1, None).await));
    // Except session records (Redis ≥ 7, flagged scripts): no claim or proof is sent before its record is
    // stored, so refusing them at maxmemory stopped every submission (and slashed suppliers for missed proofs).
    assert!(b.script_flags(), "the test server is Redis 7");
    assert_eq!(
        s.sessions
            .put("pokt1a", "s1", "active", b"x".to_vec(), 0)
            .await
            .unwrap(),
        1,
        "a session record is written at maxmemory"
    );
    let (ns_back, res) = tokio::task::spawn_blocking(move || {
        let r = ns.write_batch(NodeBatch {
            puts: vec![(vec![1; 32], vec![2; 64])],
            deletes: vec![],
        });
        (ns, r)
    })
    .await
    .unwrap();
    ns = ns_back;
    assert!(is_oom(res));
    assert_eq!(ns.get(&[1; 32]).unwrap(), None, "a refused batch is not mirrored");
    // Write sets: records alone are written (the miner's step records), a set with a trie batch is refused
    // whole, before anything of it is written.
    let record = |session: &str, expected_version| RecordWrite {
        supplier: "pokt1ws".into(),
        session_id: session.into(),
        state: "active".into(),
        data: b"y".to_vec(),
        expected_version,
    };
    let outcome = s
        .write_sets
        .write(WriteSet {
            records: vec![record("s1", 0), record("s2", 0)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome.versions, vec![1, 1], "records written at maxmemory as one set");
    assert!(is_oom(
        s.write_sets
            .write(WriteSet {
                tries: vec![TrieWrite {
                    supplier: "pokt1oom".into(),
                    namespace: "s1".into(),
                    batch: NodeBatch {
                        puts: vec![(vec![1; 32], vec![2; 64])],
                        deletes: vec![],
                    },
                }],
                records: vec![record("s3", 0)],
                ..Default::default()
            })
            .await
    ));
    assert_eq!(ns.get(&[1; 32]).unwrap(), None, "a refused set is not mirrored");
    assert!(
        s.sessions.get("pokt1ws", "s3").await.unwrap().is_none(),
        "nothing of a refused set is written"
    );

    // Leadership acquisition works at maxmemory too (the Go fleet's outage: the standby's acquisition failed with
    // OOM for hours, no leader): a standby takes a free election.
    let stats = b.stats();
    let standby = s.leadership.campaign("global", "standby", ttl).await.unwrap();
    assert!(standby.is_some(), "acquired at maxmemory");
    assert_eq!(stats.acquire_failures(AcquireFailure::RedisOom), 0);
    assert_eq!(stats.acquire_failures(AcquireFailure::RedisError), 0);
    assert!(stats.oom_errors() >= 4, "{}", stats.oom_errors());
    // The sitting leader can still renew (PEXPIRE is allowed under OOM), so an existing leadership holds.
    assert!(
        s.leadership
            .renew("supplier:pokt1a", "old-leader", sitting, ttl)
            .await
            .unwrap()
    );

    // Readiness and the memory gauges say why.
    let not_ready = b.readiness().await.unwrap_err();
    assert!(matches!(not_ready, NotReady::OutOfMemory(_)), "{not_ready:?}");
    assert_eq!(not_ready.reason(), "redis_oom");
    let m = b.poll_memory().await.unwrap();
    assert!(m.ratio > 1.0, "{m:?}");
    assert_eq!(m.max_bytes, b.stats().memory().max_bytes);

    // Reads and acks keep working (acks free memory: XACK + XDEL are not refused).
    let got = s.relay_log.read("pokt1oom", "miner-1", 16).await.unwrap();
    assert_eq!(got.len(), 16);
    let ids: Vec<_> = got.iter().map(|e| e.id).collect();
    assert_eq!(s.relay_log.ack("pokt1oom", &ids).await.unwrap(), 16);
    assert_eq!(s.relay_log.backlog("pokt1oom").await.unwrap().pending, 0);

    // Free memory: everything resumes.
    assert_eq!(server.command(&["CONFIG", "SET", "maxmemory", "0"]).unwrap(), "+OK\r\n");
    b.readiness().await.unwrap();
    let token = s.leadership.campaign("global", "standby", ttl).await.unwrap().unwrap();
    assert_eq!(Some(token), standby, "still the standby's term");
    assert_eq!(stats.acquire_consecutive_failures(), 0);
    assert_eq!(stats.acquire_failures(AcquireFailure::RedisOom), 0);
    s.relay_log.append(vec![big_relay(1 << 41)]).await.unwrap();
    s.kv.set("k", b"v".to_vec(), None).await.unwrap();
    s.sessions
        .put("pokt1a", "s1", "claiming", b"y".to_vec(), 1)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        ns.write_batch(NodeBatch {
            puts: vec![(vec![1; 32], vec![2; 64])],
            deletes: vec![],
        })
        .unwrap();
        assert_eq!(ns.get(&[1; 32]).unwrap(), Some(vec![2; 64]));
    })
    .await
    .unwrap();
    let m = b.poll_memory().await.unwrap();
    assert_eq!((m.max_bytes, m.ratio), (0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_also_recovers_and_other_errors_count_as_redis_error() {
    let mut server = RedisServer::start(ServerOptions::max_memory(2 << 20)).unwrap();
    let mut cfg = no_relay_threshold(server.url());
    cfg.response_timeout = Duration::from_millis(500);
    cfg.connection_timeout = Duration::from_millis(300);
    cfg.reconnect_retries = 1;
    // As against Redis before 7, whose scripts cannot be flagged `allow-oom`: an acquisition at maxmemory is
    // refused, counted as `redis_oom`.
    let b = RedisBackend::connect(cfg).await.unwrap().without_script_flags();
    let s = b.storage();
    assert!(is_oom(Err::<(), _>(fill(&server, &b).await)));
    assert!(is_oom(
        s.leadership.campaign("global", "a", Duration::from_secs(5)).await
    ));
    assert_eq!(server.command(&["FLUSHALL"]).unwrap(), "+OK\r\n");
    assert!(
        s.leadership
            .campaign("global", "a", Duration::from_secs(5))
            .await
            .unwrap()
            .is_some()
    );
    // Unreachable Redis: counted as `redis_error`, not OOM.
    server.kill9().unwrap();
    let err = s
        .leadership
        .campaign("global", "b", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    let stats = b.stats();
    assert_eq!(stats.acquire_failures(AcquireFailure::RedisOom), 1);
    assert_eq!(stats.acquire_failures(AcquireFailure::RedisError), 1);
    assert_eq!(stats.acquire_consecutive_failures(), 1);
}

/// `maxmemory 0` (Redis's default) turns every memory safeguard off (no relay threshold, no OOM refusal, usage
/// gauges 0): seen at connect (an ERROR) and shown by `ha_storage_redis_max_memory_unset`, which memory polls keep
/// current as the setting changes. Readiness is not failed by it (module `health`, "Memory limit").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_maxmemory_is_reported_at_connect_and_by_a_gauge() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    assert_eq!(b.max_memory().await.unwrap(), Some(0));
    assert!(b.stats().max_memory_unset(), "read at connect, before any memory poll");
    assert!(metrics(&b).contains("ha_storage_redis_max_memory_unset 1\n"));
    b.readiness().await.unwrap();

    // Set at runtime: the next poll clears it; unset again, the next poll sets it.
    assert_eq!(
        server.command(&["CONFIG", "SET", "maxmemory", "64mb"]).unwrap(),
        "+OK\r\n"
    );
    b.poll_memory().await.unwrap();
    assert!(!b.stats().max_memory_unset());
    assert!(metrics(&b).contains("ha_storage_redis_max_memory_unset 0\n"));
    assert_eq!(server.command(&["CONFIG", "SET", "maxmemory", "0"]).unwrap(), "+OK\r\n");
    b.poll_memory().await.unwrap();
    assert!(b.stats().max_memory_unset());

    // A server with a limit: not reported at connect.
    let limited = RedisServer::start(ServerOptions::max_memory(64 << 20)).unwrap();
    let b = RedisBackend::connect(RedisConfig::new(limited.url())).await.unwrap();
    assert_eq!(b.max_memory().await.unwrap(), Some(64 << 20));
    assert!(!b.stats().max_memory_unset());
    assert!(metrics(&b).contains("ha_storage_redis_max_memory_unset 0\n"));
}
