//! The relay memory threshold on a real `redis-server` (`redis` module docs, "Relay memory threshold"): relay
//! appends are refused with `RelayMemoryThreshold` once the memory Redis counts against `maxmemory` (`used_memory`
//! less replica output buffers and the AOF buffer) is above `relay_max_memory_ratio` of it, well before Redis refuses every write (OOM), while the miner's writes (tries, records, leases,
//! acks, KV) go on, so it can ingest what was accepted and prune; appends resume on their own once memory is
//! below the threshold again. Without a `maxmemory`, or with `INFO` unreadable by scripts, nothing is refused
//! early.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::{MinedRelay, NodeBatch, Storage, StorageError, suite};

const SUPPLIER: &str = "pokt1mem";

fn big_relay(n: u64) -> MinedRelay {
    MinedRelay {
        payload: vec![b'x'; 4096],
        ..suite::relay(SUPPLIER, "s1", n)
    }
}

/// Appends batches of eight 4 KiB relays until one is refused; returns the error and the relays appended.
async fn fill(s: &Storage) -> (StorageError, u64) {
    let mut n = 0u64;
    loop {
        let batch: Vec<_> = (0..8).map(|i| big_relay(n + i)).collect();
        match s.relay_log.append(batch).await {
            Ok(_) => n += 8,
            Err(e) => return (e, n),
        }
        assert!(n < 100_000, "never refused");
    }
}

fn is_threshold(r: Result<impl std::fmt::Debug, StorageError>) -> bool {
    match r {
        Err(e @ StorageError::RelayMemoryThreshold(_)) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("above 0.5 of maxmemory"), "{e}");
            true
        }
        other => panic!("expected RelayMemoryThreshold, got {other:?}"),
    }
}

/// A trie batch of `n` 4 KiB values (the relay bytes an ingest writes), run off the runtime as the miner does.
async fn write_trie(
    mut ns: storage::BoxNodeStore,
    first: u32,
    n: u32,
) -> (storage::BoxNodeStore, Result<(), StorageError>) {
    tokio::task::spawn_blocking(move || {
        let puts = (first..first + n)
            .map(|i| (i.to_be_bytes().to_vec(), vec![b'v'; 4096]))
            .collect();
        let r = ns.write_batch(NodeBatch { puts, deletes: vec![] });
        (ns, r)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_appends_stop_at_the_threshold_while_the_miner_ingests_and_prunes() {
    let max: u64 = 16 << 20;
    let server = RedisServer::start(ServerOptions::max_memory(max)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    // One backend for relayer and miner, as in `relay-miner run`: only its relay appends are held back.
    let b = RedisBackend::connect(cfg).await.unwrap();
    assert_eq!(b.relay_memory_threshold(), Some(0.5));
    let s = b.storage();
    let ttl = Duration::from_secs(30);

    // Relayers fill Redis up to the threshold; the refusal is the threshold's, not Redis' OOM.
    let (err, appended) = fill(&s).await;
    assert!(is_threshold(Err::<(), _>(err)));
    let m = b.poll_memory().await.unwrap();
    // (Read by another command than the refused append, give or take the allocator's noise.)
    assert!(
        m.counted_ratio > 0.45 && m.counted_ratio < 0.6,
        "refused at the threshold: {m:?}"
    );
    let stats = b.stats();
    assert_eq!(stats.relays_refused_memory_threshold(), 8);

    // The miner's writes go on above the threshold: the tries of another session (4 MiB, so memory is clearly
    // above the threshold, past the allocator's noise of a few KiB), leadership, session records, KV, and the
    // ingest of every accepted relay (trie batch, then ack).
    let mut other = s.tries.open(SUPPLIER, "s2").await.unwrap();
    for k in 0..8 {
        let (back, res) = write_trie(other, k * 128, 128).await;
        other = back;
        res.unwrap();
    }
    let m = b.poll_memory().await.unwrap();
    assert!(m.counted_ratio > 0.6 && m.counted_ratio < 0.9, "{m:?}");
    assert!(is_threshold(s.relay_log.append(vec![big_relay(1 << 40)]).await));
    assert_eq!(stats.relays_refused_memory_threshold(), 8 + 1);
    let token = s.leadership.campaign("global", "miner-1", ttl).await.unwrap();
    assert!(token.is_some());
    s.sessions.put(SUPPLIER, "s1", "active", vec![7; 256], 0).await.unwrap();
    s.kv.set("k", b"v".to_vec(), None).await.unwrap();
    let mut ns = s.tries.open(SUPPLIER, "s1").await.unwrap();
    let mut ingested = 0u32;
    loop {
        let entries = s.relay_log.read(SUPPLIER, "miner-1", 64).await.unwrap();
        if entries.is_empty() {
            break;
        }
        let (back, res) = write_trie(ns, ingested, u32::try_from(entries.len()).unwrap()).await;
        ns = back;
        res.unwrap();
        ingested += u32::try_from(entries.len()).unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
        assert_eq!(s.relay_log.ack(SUPPLIER, &ids).await.unwrap(), ids.len() as u64);
    }
    assert_eq!(u64::from(ingested), appended, "every accepted relay ingested");
    assert_eq!(ns.get(&0u32.to_be_bytes()).unwrap(), Some(vec![b'v'; 4096]));
    // A relay's trie records take a little less than its stream entry: still above the threshold.
    let m = b.poll_memory().await.unwrap();
    assert!(m.counted_ratio > 0.55, "{m:?}");
    assert!(is_threshold(s.relay_log.append(vec![big_relay(1 << 41)]).await));

    // No maxmemory, no threshold (changed at runtime: read by every append).
    assert_eq!(server.command(&["CONFIG", "SET", "maxmemory", "0"]).unwrap(), "+OK\r\n");
    s.relay_log.append(vec![big_relay(1 << 42)]).await.unwrap();
    assert_eq!(
        server
            .command(&["CONFIG", "SET", "maxmemory", &max.to_string()])
            .unwrap(),
        "+OK\r\n"
    );
    assert!(is_threshold(s.relay_log.append(vec![big_relay(1 << 43)]).await));

    // The session settles and is pruned: its trie and relay-log entries go, and appends resume without a
    // restart or reconnect.
    drop((ns, other));
    s.tries.delete_namespace(SUPPLIER, "s1").await.unwrap();
    s.tries.delete_namespace(SUPPLIER, "s2").await.unwrap();
    s.relay_log.trim_session(SUPPLIER, "s1").await.unwrap();
    // (`UNLINK`: Redis frees the hashes in the background.)
    suite::poll_until("memory below the threshold after pruning", || {
        let b = b.clone();
        async move { (b.poll_memory().await.unwrap().counted_ratio < 0.5).then_some(()) }
    })
    .await;
    s.relay_log.append(vec![big_relay(1 << 44)]).await.unwrap();
    let read = s.relay_log.read(SUPPLIER, "miner-1", 16).await.unwrap();
    assert!(read.iter().any(|e| e.relay == big_relay(1 << 44)), "{}", read.len());
    assert_eq!(stats.relays_refused_memory_threshold(), 8 + 3);
    assert_eq!(stats.oom_errors(), 0, "Redis itself refused nothing");
}

/// Memory Redis does not count against `maxmemory` does not hold relays back either: a replica that stopped
/// reading (SIGSTOP) makes the primary buffer the replication stream for it, which takes `used_memory` above the
/// threshold while the dataset stays at a few percent of `maxmemory`. Redis takes every write there (its own
/// limit leaves replica output buffers out), so relays are taken too; the monitor shows both ratios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_output_buffers_do_not_refuse_relays() {
    let max: u64 = 16 << 20;
    let server = RedisServer::start(ServerOptions::max_memory(max)).unwrap();
    let replica = RedisServer::start_replica_of(&server, ServerOptions::default()).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    let b = RedisBackend::connect(cfg).await.unwrap();
    let s = b.storage();
    s.relay_log.append(vec![big_relay(0)]).await.unwrap();

    replica.pause().unwrap();
    // One 1 MiB value written over and over: the dataset holds one, the stalled replica's buffer all of them
    // (after the kernel's socket buffers fill).
    let mut m = b.poll_memory().await.unwrap();
    let mut writes = 0;
    while m.ratio < 0.6 {
        s.kv.set("big", vec![b'b'; 1 << 20], None).await.unwrap();
        writes += 1;
        assert!(writes < 200, "the replica's buffer never grew: {m:?}");
        m = b.poll_memory().await.unwrap();
    }
    assert!(m.counted_ratio < 0.3, "the buffer is not counted: {m:?}");
    assert!(
        m.used_bytes - m.counted_bytes > max / 4,
        "the primary holds the stalled replica's stream: {m:?}"
    );
    s.relay_log.append(vec![big_relay(1)]).await.unwrap();
    assert_eq!(b.stats().relays_refused_memory_threshold(), 0);
    assert_eq!(b.stats().oom_errors(), 0);
    replica.resume().unwrap();
}

/// A fenced view (a leader's) appends through the same script: refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_appends_are_held_back_too() {
    let server = RedisServer::start(ServerOptions::max_memory(16 << 20)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    let b = RedisBackend::connect(cfg).await.unwrap();
    let token = b
        .storage()
        .leadership
        .campaign("global", "miner-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let fenced = storage::Fencing::fenced(&b, storage::Fence::new("global", "miner-1", token));
    let (err, appended) = fill(&fenced).await;
    assert!(appended > 0);
    assert!(is_threshold(Err::<(), _>(err)));
    assert!(b.poll_memory().await.unwrap().counted_ratio < 0.6);
}

/// Ratio 1 turns the threshold off (appends refused only by Redis at maxmemory, OOM); so does a server whose
/// `INFO` scripts cannot call (it cannot be checked): appends still work there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_at_ratio_one_and_when_info_is_disabled() {
    let server = RedisServer::start(ServerOptions::max_memory(4 << 20)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 1.0;
    let b = RedisBackend::connect(cfg).await.unwrap();
    assert_eq!(b.relay_memory_threshold(), None);
    let (err, _) = fill(&b.storage()).await;
    assert!(matches!(err, StorageError::OutOfMemory(_)), "{err:?}");
    drop(b);
    drop(server);

    let server = RedisServer::start(ServerOptions {
        extra_args: vec!["--rename-command".into(), "INFO".into(), String::new()],
        ..ServerOptions::max_memory(4 << 20)
    })
    .unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    let b = RedisBackend::connect(cfg).await.unwrap();
    assert_eq!(b.relay_memory_threshold(), None, "INFO cannot be read");
    let (err, appended) = fill(&b.storage()).await;
    assert!(appended > 0);
    assert!(matches!(err, StorageError::OutOfMemory(_)), "{err:?}");
}

/// A probe that fails at connect (here `INFO` denied to the connection's user by an ACL, as a passing failure
/// would) leaves the threshold off only until a memory poll's probe succeeds: it is not off for the life of the
/// process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_threshold_comes_back_once_scripts_can_read_info_again() {
    let server = RedisServer::start(ServerOptions::max_memory(4 << 20)).unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let acl = |rule: &'static str| redis::cmd("ACL").arg("SETUSER").arg("default").arg(rule).clone();
    let _: () = acl("-info").query_async(&mut admin).await.unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    let b = RedisBackend::connect(cfg).await.unwrap();
    assert_eq!(b.relay_memory_threshold(), None, "INFO denied at connect");
    let _: () = acl("+info").query_async(&mut admin).await.unwrap();
    b.poll_memory().await.unwrap();
    assert_eq!(b.relay_memory_threshold(), Some(0.5), "back after a poll");
    let (err, appended) = fill(&b.storage()).await;
    assert!(appended > 0);
    assert!(is_threshold(Err::<(), _>(err)));
}
