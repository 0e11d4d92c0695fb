//! Sharing a Redis with the Go relay miner fleet during a migration: a live Go miner keeps relay-miner's miner
//! from campaigning (and `/ready` says why), the Go relayer's `EXPIRE` of a relay stream is undone before it
//! fires, and relays lost to another process' deletes are counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{AcquireFailure, NotReady, RedisBackend, RedisConfig};
use storage::suite;

use common::metrics;

const LEASE: Duration = Duration::from_secs(10);

async fn backend(server: &RedisServer, prefix: &str) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()).with_prefix(prefix))
        .await
        .unwrap()
}

/// Waits until `key` expired (its TTL was set short by the test).
async fn expired(server: &RedisServer, key: &str) {
    suite::poll_until(&format!("{key} to expire"), || async move {
        (server.command(&["EXISTS", key]).unwrap() == ":0\r\n").then_some(())
    })
    .await;
}

/// Why `b`'s miner is not ready; its storage readiness (what a relayer's `/ready` follows) must be unaffected:
/// a Go miner is the miner's problem, not the relays'.
async fn miner_not_ready(b: &RedisBackend) -> NotReady {
    if let Err(e) = b.readiness().await {
        panic!("a miner-only reason failed the storage readiness: {e}");
    }
    let err = b.miner_readiness().unwrap_err();
    assert!(err.miner_only(), "{err}");
    err
}

fn go_miner_reason(b: &RedisBackend, err: NotReady) -> String {
    assert_eq!(err.reason(), "redis_go_miner_active", "{err}");
    let NotReady::GoMinerActive(found) = err else {
        panic!("not ready for another reason")
    };
    assert_eq!(b.go_miner_active().as_deref(), Some(found.as_str()));
    found
}

/// The Go global leader lock (`SET ha:miner:global_leader {host-pid} EX 30`) of a live Go miner: our miner does
/// not campaign while it lives, touching nothing, is counted and not ready; once it expired it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_go_global_leader_keeps_our_miner_from_campaigning() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    b.readiness().await.unwrap();
    b.miner_readiness().unwrap();
    server
        .command(&["SET", "ha:miner:global_leader", "go-host-42", "PX", "1500"])
        .unwrap();

    assert_eq!(
        b.storage()
            .leadership
            .campaign("miner", "miner-a", LEASE)
            .await
            .unwrap(),
        None
    );
    for key in [
        "ha:miner:leader:miner",
        "ha:miner:leader:miner:token",
        "ha:miner:instance_lock:miner-a",
    ] {
        assert_eq!(server.command(&["EXISTS", key]).unwrap(), ":0\r\n", "{key} untouched");
    }
    let stats = b.stats();
    assert_eq!(stats.acquire_failures(AcquireFailure::GoMinerActive), 1);
    assert_eq!(stats.acquire_consecutive_failures(), 0, "not a Redis failure");
    let found = go_miner_reason(&b, miner_not_ready(&b).await);
    assert!(
        found.contains("ha:miner:global_leader held by \"go-host-42\""),
        "{found}"
    );

    expired(&server, "ha:miner:global_leader").await;
    assert!(
        b.storage()
            .leadership
            .campaign("miner", "miner-a", LEASE)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(b.go_miner_active(), None);
    b.readiness().await.unwrap();
    b.miner_readiness().unwrap();
    assert_eq!(stats.acquire_failures(AcquireFailure::GoMinerActive), 1);

    // Not a live Go miner: relay-miner's own lease in election `global` (it has our token key next to it), nor
    // a `global_leader` without TTL (a Go lease always has one).
    let ours = backend(&server, "t1").await;
    let l = ours.storage().leadership;
    assert!(l.campaign("global", "rm-1", LEASE).await.unwrap().is_some());
    assert!(l.campaign("miner", "rm-2", LEASE).await.unwrap().is_some());
    let stale = backend(&server, "t2").await;
    server.command(&["SET", "t2:miner:global_leader", "go-old"]).unwrap();
    assert!(
        stale
            .storage()
            .leadership
            .campaign("miner", "rm-3", LEASE)
            .await
            .unwrap()
            .is_some()
    );
    stale.readiness().await.unwrap();
    stale.miner_readiness().unwrap();
}

/// A Go miner replica's heartbeat (`ha:miner:active` member with a live `ha:miner:instance:{id}`) blocks a
/// campaign too; a stale member (a crashed Go miner, its heartbeat expired) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_go_instance_heartbeat_keeps_our_miner_from_campaigning() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    server
        .command(&["SADD", "ha:miner:active", "go-stale", "go-live"])
        .unwrap();
    server
        .command(&["SET", "ha:miner:instance:go-live", "1765000000000000000", "PX", "1500"])
        .unwrap();

    let l = b.storage().leadership;
    assert_eq!(l.campaign("miner", "miner-a", LEASE).await.unwrap(), None);
    assert_eq!(l.campaign("miner", "miner-a", LEASE).await.unwrap(), None);
    assert_eq!(b.stats().acquire_failures(AcquireFailure::GoMinerActive), 2);
    let found = go_miner_reason(&b, miner_not_ready(&b).await);
    assert!(found.contains("ha:miner:instance:go-live"), "{found}");
    assert!(!found.contains("go-stale"), "{found}");

    expired(&server, "ha:miner:instance:go-live").await;
    assert!(l.campaign("miner", "miner-a", LEASE).await.unwrap().is_some());
    b.readiness().await.unwrap();
    b.miner_readiness().unwrap();
}

fn pttl(server: &RedisServer, key: &str) -> String {
    server.command(&["PTTL", key]).unwrap()
}

/// The Go relayer sets `EXPIRE ha:relays:{supplier} 2h` once per process and stream: expired, the stream took
/// its consumer group, pending list and unread relays with it. The miner's next read round persists it, and so
/// does every append (the script of the relay memory threshold and the plain `MULTI`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_relayers_expire_of_a_relay_stream_is_undone_by_the_next_read() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    let log = b.storage().relay_log;
    let stream = "ha:relays:pokt1a";
    log.append((1..=3).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    assert_eq!(log.read("pokt1a", "miner-a", 1).await.unwrap().len(), 1);

    // What a Go relayer does at its first publish to the stream (2 h there; short here).
    server.command(&["PEXPIRE", stream, "1000"]).unwrap();
    let expiry = tokio::time::Instant::now() + Duration::from_millis(1000);
    // The miner's round.
    assert_eq!(log.read_pending("pokt1a", "miner-a", 10).await.unwrap().len(), 1);
    assert_eq!(pttl(&server, stream), ":-1\r\n");
    // Past the TTL the Go relayer set: the stream, its group, the pending entry and the unread ones are there.
    tokio::time::sleep_until(expiry + Duration::from_millis(300)).await;
    assert_eq!(server.command(&["XLEN", stream]).unwrap(), ":3\r\n");
    assert_eq!(log.read_pending("pokt1a", "miner-a", 10).await.unwrap().len(), 1);
    assert_eq!(log.read("pokt1a", "miner-a", 10).await.unwrap().len(), 2);
    assert_eq!(b.stats().relay_log_groups_vanished(), 0);

    // Appends persist the streams they write: the relay-memory-threshold script (on by default) ...
    assert!(b.relay_memory_threshold().is_some());
    server.command(&["PEXPIRE", stream, "60000"]).unwrap();
    log.append(vec![suite::relay("pokt1a", "s1", 4)]).await.unwrap();
    assert_eq!(pttl(&server, stream), ":-1\r\n");
    // ... and the plain MULTI.
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 1.0;
    let plain = RedisBackend::connect(cfg).await.unwrap();
    assert_eq!(plain.relay_memory_threshold(), None);
    server.command(&["PEXPIRE", stream, "60000"]).unwrap();
    let ids = plain
        .storage()
        .relay_log
        .append(vec![suite::relay("pokt1a", "s1", 5), suite::relay("pokt1a", "s1", 6)])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(pttl(&server, stream), ":-1\r\n");
}

/// Relays lost to another process are counted: a consumer group that vanished with its stream (an expired or
/// deleted stream) and entries pending for the miner deleted before it acknowledged them (the Go relayer's
/// `XTRIM MINID`). Reading goes on: the group is created again and the deleted entries acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_lost_to_another_process_are_counted() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    let stats = b.stats();
    let log = b.storage().relay_log;
    let stream = "ha:relays:pokt1a";
    log.append((1..=3).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    let read = log.read("pokt1a", "miner-a", 10).await.unwrap();
    assert_eq!(read.len(), 3);

    // Two pending entries trimmed away by another process.
    server
        .command(&["XDEL", stream, &read[0].id.to_string(), &read[1].id.to_string()])
        .unwrap();
    assert_eq!(log.read_pending("pokt1a", "miner-a", 10).await.unwrap().len(), 1);
    assert_eq!(stats.relay_log_pending_deleted(), 2);
    assert_eq!(log.read_pending("pokt1a", "miner-a", 10).await.unwrap().len(), 1);
    assert_eq!(stats.relay_log_pending_deleted(), 2, "acknowledged: counted once");

    // The stream expires (deleted) with its group; a Go relayer's publish creates it again without a group.
    server.command(&["DEL", stream]).unwrap();
    assert!(log.read_pending("pokt1a", "miner-a", 10).await.unwrap().is_empty());
    assert_eq!(stats.relay_log_groups_vanished(), 1);
    server.command(&["XADD", stream, "*", "data", "go-relay"]).unwrap();
    assert!(log.read_pending("pokt1a", "miner-a", 10).await.unwrap().is_empty());
    let again = log.read("pokt1a", "miner-a", 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].relay.payload, b"go-relay");
    assert_eq!(stats.relay_log_groups_vanished(), 1, "counted once");

    let out = metrics(&b);
    assert!(
        out.contains("ha_storage_redis_relay_log_pending_deleted_total 2\n"),
        "{out}"
    );
    assert!(
        out.contains("ha_storage_redis_relay_log_groups_vanished_total 1\n"),
        "{out}"
    );
}

/// A Go miner started while our miner leads (a replica's heartbeat, then its global leader lock): the next lease
/// renewal sees it and keeps the lease (our sessions in progress are still ours to claim and prove), counts it,
/// sets the gauge and fails readiness with its own reason; once the Go keys expired a renewal clears it, and a
/// renewal refused (another holder) clears it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_miner_started_beside_our_leader_is_seen_at_the_next_renewal() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    let l = b.storage().leadership;
    let token = l.campaign("miner", "miner-a", LEASE).await.unwrap().unwrap();
    assert!(l.renew("miner", "miner-a", token, LEASE).await.unwrap());
    assert_eq!(b.go_miner_beside_leader(), None);
    b.readiness().await.unwrap();
    b.miner_readiness().unwrap();

    // A Go miner replica starts: its claimer registers and heartbeats.
    server.command(&["SADD", "ha:miner:active", "go-host-7"]).unwrap();
    server
        .command(&[
            "SET",
            "ha:miner:instance:go-host-7",
            "1765000000000000000",
            "PX",
            "3000",
        ])
        .unwrap();
    assert!(
        l.renew("miner", "miner-a", token, LEASE).await.unwrap(),
        "keeps leading"
    );
    let info = l.leader("miner").await.unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.token), ("miner-a", token));
    let stats = b.stats();
    assert_eq!(stats.go_miner_beside_leader_renewals(), 1);
    assert!(stats.go_miner_beside_leader());
    let err = miner_not_ready(&b).await;
    assert_eq!(err.reason(), "redis_go_miner_beside_leader", "{err}");
    let NotReady::GoMinerBesideLeader(found) = err else {
        panic!("not ready for another reason")
    };
    assert!(found.contains("ha:miner:instance:go-host-7"), "{found}");
    assert_eq!(b.go_miner_beside_leader().as_deref(), Some(found.as_str()));
    assert_eq!(b.go_miner_active(), None, "not a refused campaign");
    let out = metrics(&b);
    assert!(out.contains("ha_storage_redis_go_miner_beside_leader 1\n"), "{out}");
    assert!(
        out.contains("ha_storage_redis_go_miner_beside_leader_renewals_total 1\n"),
        "{out}"
    );

    // Its global leader lock too (our election is `miner`, so Go's key is not ours).
    server
        .command(&["SET", "ha:miner:global_leader", "go-host-7", "PX", "60000"])
        .unwrap();
    assert!(l.renew("miner", "miner-a", token, LEASE).await.unwrap());
    assert_eq!(stats.go_miner_beside_leader_renewals(), 2);
    expired(&server, "ha:miner:instance:go-host-7").await;
    assert!(l.renew("miner", "miner-a", token, LEASE).await.unwrap());
    assert_eq!(stats.go_miner_beside_leader_renewals(), 3, "the leader lock alone");
    assert!(b.miner_readiness().is_err());
    b.readiness().await.unwrap();

    // Both gone (a graceful stop deletes the lock): the next renewal clears it.
    server.command(&["DEL", "ha:miner:global_leader"]).unwrap();
    assert!(l.renew("miner", "miner-a", token, LEASE).await.unwrap());
    assert_eq!(b.go_miner_beside_leader(), None);
    assert!(!stats.go_miner_beside_leader());
    b.readiness().await.unwrap();
    b.miner_readiness().unwrap();
    assert_eq!(stats.go_miner_beside_leader_renewals(), 3);
    assert!(metrics(&b).contains("ha_storage_redis_go_miner_beside_leader 0\n"));

    // Seen again, then the lease is lost (another holder): no longer beside it as a leader.
    server
        .command(&["SET", "ha:miner:global_leader", "go-host-8", "PX", "60000"])
        .unwrap();
    assert!(l.renew("miner", "miner-a", token, LEASE).await.unwrap());
    assert!(b.go_miner_beside_leader().is_some());
    server
        .command(&["SET", "ha:miner:leader:miner", "miner-b", "PX", "60000"])
        .unwrap();
    assert!(!l.renew("miner", "miner-a", token, LEASE).await.unwrap());
    assert_eq!(b.go_miner_beside_leader(), None);
    assert!(!stats.go_miner_beside_leader());
}

/// Relays a foreign consumer of the group read (the Go miner's `XREADGROUP GROUP ha-miners miner-{host}-{pid}`)
/// are counted at risk at our read round while they are pending for it, and no longer once it acknowledged them
/// or the group is gone; our own pending entries are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_read_by_a_foreign_consumer_are_counted_at_risk() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    let stats = b.stats();
    let log = b.storage().relay_log;
    let stream = "ha:relays:pokt1a";
    let ids = log
        .append((1..=5).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();

    // The Go miner takes two new relays first.
    let taken = server
        .command(&[
            "XREADGROUP",
            "GROUP",
            "ha-miners",
            "miner-gohost-42",
            "COUNT",
            "2",
            "STREAMS",
            stream,
            ">",
        ])
        .unwrap();
    assert!(taken.contains("data"), "{taken}");
    assert!(log.read_pending("pokt1a", "miner", 10).await.unwrap().is_empty());
    assert_eq!(stats.relay_log_foreign_pending(), 2);
    assert_eq!(stats.relay_log_foreign_consumers(), 1);
    let out = metrics(&b);
    assert!(out.contains("ha_storage_redis_relay_log_foreign_pending 2\n"), "{out}");
    assert!(
        out.contains("ha_storage_redis_relay_log_foreign_consumers 1\n"),
        "{out}"
    );

    // We get the other three; pending for us, they are not at risk.
    let ours = log.read("pokt1a", "miner", 10).await.unwrap();
    assert_eq!(ours.len(), 3);
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 3);
    assert_eq!(stats.relay_log_foreign_pending(), 2);

    // A second supplier's stream with its own foreign reader: summed over the streams.
    log.append(vec![suite::relay("pokt1b", "s2", 1)]).await.unwrap();
    server
        .command(&[
            "XREADGROUP",
            "GROUP",
            "ha-miners",
            "miner-gohost-43",
            "STREAMS",
            "ha:relays:pokt1b",
            ">",
        ])
        .unwrap();
    assert!(log.read_pending("pokt1b", "miner", 10).await.unwrap().is_empty());
    assert_eq!(stats.relay_log_foreign_pending(), 3);
    assert_eq!(stats.relay_log_foreign_consumers(), 2);

    // The Go miner acknowledges its two (XACKDEL on Redis 8.2+; XACK + XDEL here): nothing pending for it.
    for id in &ids[..2] {
        let id = id.to_string();
        assert_eq!(server.command(&["XACK", stream, "ha-miners", &id]).unwrap(), ":1\r\n");
        server.command(&["XDEL", stream, &id]).unwrap();
    }
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 3);
    assert_eq!(stats.relay_log_foreign_pending(), 1);
    assert_eq!(
        stats.relay_log_foreign_consumers(),
        1,
        "still a consumer of the group, holding nothing"
    );

    // The second stream vanishes with its group: forgotten.
    server.command(&["DEL", "ha:relays:pokt1b"]).unwrap();
    assert!(log.read_pending("pokt1b", "miner", 10).await.unwrap().is_empty());
    assert_eq!(stats.relay_log_foreign_pending(), 0);
    assert_eq!(stats.relay_log_foreign_consumers(), 0);

    // Counted by the leader's reads; once this process no longer leads (here: it resigns) it reads nothing, so
    // its last count is forgotten rather than shown for good.
    let l = b.storage().leadership;
    let token = l.campaign("miner", "miner", LEASE).await.unwrap().unwrap();
    log.append(vec![suite::relay("pokt1a", "s1", 9)]).await.unwrap();
    server
        .command(&[
            "XREADGROUP",
            "GROUP",
            "ha-miners",
            "miner-gohost-42",
            "STREAMS",
            stream,
            ">",
        ])
        .unwrap();
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 3);
    assert_eq!(stats.relay_log_foreign_pending(), 1);
    assert!(l.resign("miner", "miner", token).await.unwrap());
    assert_eq!(stats.relay_log_foreign_pending(), 0);
    assert_eq!(stats.relay_log_foreign_consumers(), 0);
}

/// Relays a foreign consumer took and acknowledged (the Go miner's `XACKDEL`: gone from its pending list and from
/// the stream, so the foreign-pending gauge never sees them) are counted from the group's `entries-read` at our
/// next read round, exactly; our own reads are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_a_foreign_consumer_took_and_acknowledged_are_counted() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "ha").await;
    let stats = b.stats();
    let log = b.storage().relay_log;
    let stream = "ha:relays:pokt1a";
    log.append((1..=3).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    assert!(log.read_pending("pokt1a", "miner", 10).await.unwrap().is_empty());
    let ours = log.read("pokt1a", "miner", 10).await.unwrap();
    assert_eq!(ours.len(), 3);
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 3);
    let ids: Vec<_> = ours.iter().map(|e| e.id).collect();
    assert_eq!(log.ack("pokt1a", &ids).await.unwrap(), 3);
    assert_eq!(stats.relay_log_taken_by_foreign(), 0, "our own reads");

    // The Go miner takes four of six new relays and acknowledges them (XACKDEL on Redis 8.2+; XACK + XDEL here).
    let ids = log
        .append((4..=9).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    server
        .command(&[
            "XREADGROUP",
            "GROUP",
            "ha-miners",
            "miner-gohost-42",
            "COUNT",
            "4",
            "STREAMS",
            stream,
            ">",
        ])
        .unwrap();
    for id in &ids[..4] {
        let id = id.to_string();
        assert_eq!(server.command(&["XACK", stream, "ha-miners", &id]).unwrap(), ":1\r\n");
        server.command(&["XDEL", stream, &id]).unwrap();
    }
    assert!(log.read_pending("pokt1a", "miner", 10).await.unwrap().is_empty());
    assert_eq!(stats.relay_log_foreign_pending(), 0, "nothing pending for it any more");
    assert_eq!(stats.relay_log_taken_by_foreign(), 4);

    // We get the other two: not counted, at this round or the next.
    assert_eq!(log.read("pokt1a", "miner", 10).await.unwrap().len(), 2);
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 2);
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 2);
    assert_eq!(stats.relay_log_taken_by_foreign(), 4);
    let out = metrics(&b);
    assert!(
        out.contains("ha_storage_redis_relay_log_taken_by_foreign_total 4\n"),
        "{out}"
    );
}

/// A server (or an ACL) without XINFO: the count of relays at risk is best effort, so our reads go on (before,
/// XINFO CONSUMERS rode in the read's MULTI: refused, the whole read failed and no relay was ingested).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_work_where_xinfo_is_refused() {
    let server = RedisServer::start(ServerOptions {
        extra_args: vec!["--rename-command".into(), "XINFO".into(), String::new()],
        ..ServerOptions::default()
    })
    .unwrap();
    assert!(
        server.command(&["XINFO", "HELP"]).unwrap().starts_with('-'),
        "XINFO disabled"
    );
    let b = backend(&server, "ha").await;
    let log = b.storage().relay_log;
    log.append((1..=3).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    assert_eq!(log.read("pokt1a", "miner", 10).await.unwrap().len(), 3);
    assert_eq!(log.read_pending("pokt1a", "miner", 10).await.unwrap().len(), 3);
    assert_eq!(b.stats().relay_log_foreign_pending(), 0);
}
