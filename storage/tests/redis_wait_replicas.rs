//! Replica acknowledgement (`storage.redis.wait_replicas`, the `redis::replicas` module) on real `redis-server`
//! processes: a primary and one replica started with `--replicaof`. With the replica in sync every covered write
//! (relay-log append, session record, fenced record, write set) succeeds and the replica has it; with the replica
//! hung (SIGSTOP) or dead (SIGKILL) an append fails with `StorageError::NotReplicated` within about the timeout
//! while the shared connection keeps serving, and the miner's writes stand after that wait (counted), so claims
//! and proofs go on; once the replica is back, writes are acknowledged again. `wait_replicas = 0` is
//! the default every other Redis test runs with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::{Fence, NodeBatch, RecordWrite, Storage, StorageError, TrieWrite, WriteSet, suite};

const SUPPLIER: &str = "pokt1replica";
const ELECTION: &str = "miner";
const WAIT: Duration = Duration::from_millis(800);

async fn primary_and_replica() -> (RedisServer, RedisServer, RedisBackend) {
    let primary = RedisServer::start(ServerOptions::default()).unwrap();
    let replica = RedisServer::start_replica_of(&primary, ServerOptions::default()).unwrap();
    let cfg = RedisConfig {
        wait_replicas: 1,
        wait_timeout: WAIT,
        ..RedisConfig::new(primary.url())
    };
    let backend = RedisBackend::connect(cfg).await.unwrap();
    (primary, replica, backend)
}

/// One raw reply of `args` on `server`, trimmed of the protocol framing's line ends.
fn reply(server: &RedisServer, args: &[&str]) -> String {
    server.command(args).unwrap().trim_end().to_owned()
}

fn xlen(server: &RedisServer, b: &RedisBackend) -> String {
    reply(server, &["XLEN", &b.keys().relay_stream(SUPPLIER)])
}

/// The `version` field of a session record, as the raw bulk reply (`$1\r\n3`) or `$-1` when absent.
fn record_version(server: &RedisServer, b: &RedisBackend, session: &str) -> String {
    reply(server, &["HGET", &b.keys().session(SUPPLIER, session), "version"])
}

fn set_of(session: &str, expected_version: u64, node: u8) -> WriteSet {
    WriteSet {
        tries: vec![TrieWrite {
            supplier: SUPPLIER.into(),
            namespace: session.into(),
            batch: NodeBatch {
                puts: vec![(vec![node], vec![node; 8])],
                deletes: vec![],
            },
        }],
        records: vec![RecordWrite {
            supplier: SUPPLIER.into(),
            session_id: session.into(),
            state: "active".into(),
            data: vec![node],
            expected_version,
        }],
        ..WriteSet::default()
    }
}

/// The fenced view of the elected miner, as the miner writes its records.
async fn leader(s: &Storage) -> Storage {
    let token = s
        .leadership
        .campaign(ELECTION, "a", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("elected");
    s.fenced(Fence::new(ELECTION, "a", token))
}

fn assert_not_replicated<T: std::fmt::Debug>(r: Result<T, StorageError>, started: Instant, what: &str) {
    let took = started.elapsed();
    match r {
        Err(e @ StorageError::NotReplicated { asked: 1, got: 0, .. }) => {
            assert!(e.is_retryable(), "{e}");
            assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
        }
        other => panic!("{what}: expected NotReplicated 0 of 1, got {other:?}"),
    }
    // About the timeout: not sooner (it waited), not much later (nothing else blocked it).
    assert!(
        took >= WAIT && took < WAIT + Duration::from_secs(2),
        "{what} took {took:?}"
    );
}

/// A miner write short of replicas: it waited about the timeout and stands (the primary has it).
fn assert_stands<T: std::fmt::Debug>(r: Result<T, StorageError>, started: Instant, what: &str) -> T {
    let took = started.elapsed();
    let value = r.unwrap_or_else(|e| panic!("{what}: a miner write must stand, got {e:?}"));
    assert!(
        took >= WAIT && took < WAIT + Duration::from_secs(2),
        "{what} took {took:?}"
    );
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_replica_in_sync_writes_succeed_and_the_replica_has_them() {
    let (_primary, replica, b) = primary_and_replica().await;
    let s = b.storage();

    let ids = s
        .relay_log
        .append((0..3).map(|n| suite::relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    // WAIT returned 1: the replica has applied the append, so it reads it at once.
    assert_eq!(xlen(&replica, &b), ":3");

    assert_eq!(
        s.sessions
            .put(SUPPLIER, "s1", "active", b"tx".to_vec(), 0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(record_version(&replica, &b, "s1"), "$1\r\n1");

    let fenced = leader(&s).await;
    assert_eq!(
        fenced
            .sessions
            .put(SUPPLIER, "s1", "claimed", b"tx".to_vec(), 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(record_version(&replica, &b, "s1"), "$1\r\n2");
    fenced.write_sets.write(set_of("s2", 0, 7)).await.unwrap();
    assert_eq!(record_version(&replica, &b, "s2"), "$1\r\n1");
    assert_eq!(b.stats().writes_not_replicated(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_replica_hung_appends_fail_and_miner_writes_stand_until_it_is_back() {
    let (primary, replica, b) = primary_and_replica().await;
    let s = b.storage();
    let fenced = leader(&s).await;
    fenced
        .sessions
        .put(SUPPLIER, "s1", "active", b"a".to_vec(), 0)
        .await
        .unwrap();
    s.relay_log.append(vec![suite::relay(SUPPLIER, "s1", 0)]).await.unwrap();

    replica.pause().unwrap();

    // An append waits for the replica, in vain: refused, so the relayer answers its gateway with the error.
    let started = Instant::now();
    let append = tokio::spawn({
        let s = s.clone();
        async move { s.relay_log.append(vec![suite::relay(SUPPLIER, "s1", 1)]).await }
    });
    // While its WAIT blocks the dedicated connection, the shared one serves the rest (reads, leases).
    suite::poll_until("the append's WAIT blocks at the primary", || async {
        reply(&primary, &["INFO", "clients"])
            .contains("blocked_clients:1")
            .then_some(())
    })
    .await;
    assert_eq!(s.relay_log.backlog(SUPPLIER).await.unwrap().undelivered, 2);
    assert!(s.leadership.leader(ELECTION).await.unwrap().is_some());
    assert!(
        !append.is_finished(),
        "the shared connection waited for the append's WAIT"
    );
    assert_not_replicated(append.await.unwrap(), started, "append");
    // Applied on the primary all the same (a failover may lose it): not acknowledged, still mined if kept.
    assert_eq!(xlen(&primary, &b), ":2");

    // The miner's writes stand: a claim's stored tx, a step's records, a write set (claims and proofs go on).
    let started = Instant::now();
    let r = fenced.sessions.put(SUPPLIER, "s1", "claimed", b"tx".to_vec(), 1).await;
    assert_eq!(assert_stands(r, started, "fenced record put"), 2);
    let started = Instant::now();
    assert_stands(fenced.write_sets.write(set_of("s2", 0, 7)).await, started, "write set");
    let started = Instant::now();
    let r = s.sessions.put(SUPPLIER, "s3", "active", b"c".to_vec(), 0).await;
    assert_eq!(assert_stands(r, started, "record put"), 1);
    assert_eq!(record_version(&primary, &b, "s1"), "$1\r\n2");
    assert_eq!(b.stats().writes_not_replicated(), 4, "each counted");

    // Back: it catches up, and writes are acknowledged again.
    replica.resume().unwrap();
    replica.wait_replica_online(&primary).unwrap();
    s.relay_log.append(vec![suite::relay(SUPPLIER, "s1", 2)]).await.unwrap();
    assert_eq!(
        fenced
            .sessions
            .put(SUPPLIER, "s1", "proved", b"p".to_vec(), 2)
            .await
            .unwrap(),
        3
    );
    assert_eq!(xlen(&replica, &b), ":3");
    assert_eq!(record_version(&replica, &b, "s1"), "$1\r\n3");
    assert_eq!(b.stats().writes_not_replicated(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_replica_dead_appends_fail_until_a_replica_syncs_again() {
    let (primary, mut replica, b) = primary_and_replica().await;
    let s = b.storage();
    replica.kill9().unwrap();

    let started = Instant::now();
    let r = s.relay_log.append(vec![suite::relay(SUPPLIER, "s1", 0)]).await;
    assert_not_replicated(r, started, "append");
    let fenced = leader(&s).await;
    let started = Instant::now();
    let r = fenced.sessions.put(SUPPLIER, "s1", "active", b"a".to_vec(), 0).await;
    assert_eq!(assert_stands(r, started, "fenced record put"), 1);

    replica.restart().unwrap();
    replica.wait_replica_online(&primary).unwrap();
    s.relay_log.append(vec![suite::relay(SUPPLIER, "s1", 1)]).await.unwrap();
    assert_eq!(
        fenced
            .sessions
            .put(SUPPLIER, "s2", "active", b"b".to_vec(), 0)
            .await
            .unwrap(),
        1
    );
    // The full resync brought what the primary kept of the failed writes too.
    assert_eq!(xlen(&replica, &b), ":2");
    assert_eq!(record_version(&replica, &b, "s1"), "$1\r\n1");
    assert_eq!(b.stats().writes_not_replicated(), 2);
}
