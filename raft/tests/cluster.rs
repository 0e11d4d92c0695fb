//! Cluster behaviour with real nodes on 127.0.0.1: replication, leader failover (with timing), restart catch-up,
//! learners via snapshot, promotion, removal, and the cluster token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, SUPPLIER, TOKEN, holds, wait_for};
use raft::{AdminClient, AdminError, RaftNode};
use storage::suite::relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_failover_and_restart() {
    let mut c = Cluster::start(3).await;
    let l1 = c.leader().await;
    let s = c.node(l1).storage();
    let ids = s
        .relay_log
        .append((0..100).map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), 100);
    // Acknowledged on the leader → readable on every node after replication, with identical content.
    for n in c.running() {
        holds(n, 100).await;
    }
    let f = c.follower().await;
    let got = c
        .node(f)
        .storage()
        .relay_log
        .read(SUPPLIER, "probe", 1000)
        .await
        .unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got[7].relay, relay(SUPPLIER, "s1", 7));
    let ttl = Duration::from_secs(60);
    let token1 = s.leadership.campaign("global", "miner", ttl).await.unwrap().unwrap();
    let term1 = c.node(l1).status().term;
    drop(s);

    // Kill the leader; a new one is elected with a greater term and token.
    let stopped = Instant::now();
    c.stop(l1).await;
    let l2 = c.leader().await;
    let failover = stopped.elapsed();
    println!("failover: leader {l1} stopped -> leader {l2} elected in {failover:?}");
    assert_ne!(l1, l2);
    let term2 = c.node(l2).status().term;
    assert!(term2 > term1, "term {term2} after {term1}");
    assert!(failover < Duration::from_secs(5), "failover took {failover:?}");
    let s2 = c.node(l2).storage();
    let token2 = s2.leadership.campaign("global", "miner-2", ttl).await.unwrap().unwrap();
    assert!(token2 > token1, "fencing token {token2} after {token1}");
    assert!(
        !s2.leadership.renew("global", "miner", token1, ttl).await.unwrap(),
        "stale leader fenced"
    );
    // The surviving pair still takes writes (quorum 2 of 3).
    s2.relay_log
        .append((100..150).map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
    drop(s2);

    // The old leader restarts from its data dir and catches up.
    c.restart(l1).await;
    holds(c.node(l1), 150).await;
    c.converged().await;
    assert_eq!(c.leader().await, l2, "a restarted node does not disrupt the leader");
    c.shutdown().await;
}

/// Measures failover a few times and prints the distribution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_time() {
    let mut times = Vec::new();
    for _ in 0..3 {
        let mut c = Cluster::start(3).await;
        let l = c.leader().await;
        c.stop(l).await;
        let t = Instant::now();
        c.leader().await;
        times.push(t.elapsed());
        c.shutdown().await;
    }
    times.sort();
    println!("failover times (leader stopped -> new leader agreed by all): {times:?}");
    assert!(times[1] < Duration::from_secs(3), "median failover {:?}", times[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_via_snapshot_then_promoted_then_removed() {
    let mut c = Cluster::start_with(3, |cfg| {
        cfg.snapshot_every = 20;
        cfg.keep_after_snapshot = 5;
    })
    .await;
    let l = c.leader().await;
    let s = c.node(l).storage();
    for n in 0..60 {
        s.relay_log.append(vec![relay(SUPPLIER, "s1", n)]).await.unwrap();
    }
    s.sessions
        .put(SUPPLIER, "s1", "claimed", b"rec".to_vec(), 0)
        .await
        .unwrap();
    drop(s);
    wait_for("the leader snapshots and purges", || async {
        let st = c.node(l).status();
        (st.snapshot_index.is_some_and(|i| i >= 20) && st.purged_index.is_some_and(|i| i >= 10)).then_some(())
    })
    .await;

    // Node 4 starts empty and joins as a learner through a follower's admin port (the client follows the
    // NotLeader answer to the leader).
    let f = c.follower().await;
    let dir4 = c.data_dir(4);
    let n4 = RaftNode::start(common::config(4, "127.0.0.1:0".parse().unwrap(), dir4))
        .await
        .unwrap();
    c.addrs.insert(4, n4.local_addr());
    let info4 = n4.node_info();
    c.nodes.insert(4, Some(n4));
    let admin = AdminClient::new(c.addrs[&f].to_string(), TOKEN);
    admin.add_learner(4, info4).await.unwrap();
    holds(c.node(4), 60).await;
    assert!(
        c.node(4).status().snapshot_index.is_some(),
        "the learner started from a snapshot (the leader's log is purged)"
    );
    let rec = c.node(4).storage().sessions.get(SUPPLIER, "s1").await.unwrap().unwrap();
    assert_eq!(rec.state, "claimed");
    // Activity metrics: the leader timed its 61 writes and built snapshots; node 4 installed the one the leader
    // sent it (the leader is the only node replicating to it).
    let leader_stats = c.node(l).stats();
    assert!(leader_stats.writes() >= 61, "{leader_stats:?}");
    assert!(leader_stats.snapshots("built") >= 1);
    assert!(c.node(4).stats().snapshots("installed") >= 1);
    assert!(leader_stats.snapshots("sent") >= 1);
    let st = admin.status().await.unwrap();
    assert!(st.learners.iter().any(|(id, _)| *id == 4), "{st:?}");
    let leader_view = AdminClient::new(c.addrs[&l].to_string(), TOKEN).status().await.unwrap();
    let rep4 = leader_view.replication.iter().find(|r| r.node_id == 4).unwrap();
    println!("leader status: {leader_view:?}");
    assert!(rep4.matched.is_some());

    admin.promote(4).await.unwrap();
    let st = wait_for("node 4 is a voter", || async {
        let st = c.node(l).status();
        st.voters.iter().any(|(id, _)| *id == 4).then_some(st)
    })
    .await;
    assert_eq!(st.voters.len(), 4);
    assert!(matches!(admin.promote(99).await, Err(AdminError::Invalid(_))));

    // Remove a follower other than 4, then stop it.
    let victim = c.running().map(|n| n.id()).find(|id| *id != l && *id != 4).unwrap();
    admin.remove(victim).await.unwrap();
    wait_for("the removed node leaves the voters", || async {
        let st = c.node(l).status();
        (!st.voters.iter().any(|(id, _)| *id == victim) && st.voters.len() == 3).then_some(())
    })
    .await;
    c.stop(victim).await;
    // The 3 remaining voters keep working.
    c.node(l)
        .storage()
        .relay_log
        .append(vec![relay(SUPPLIER, "s1", 999)])
        .await
        .unwrap();
    holds(c.node(4), 61).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_token_is_rejected() {
    let c = Cluster::start(1).await;
    let addr = c.addrs[&1].to_string();
    let bad = AdminClient::new(addr.clone(), "not-the-token");
    assert_eq!(bad.status().await.unwrap_err(), AdminError::Unauthorized);
    assert_eq!(bad.remove(1).await.unwrap_err(), AdminError::Unauthorized);
    // Raft RPCs are checked too.
    let client = raft::wire::PeerClient::new(&addr, "not-the-token");
    let r: Result<(), _> = client.call(raft::wire::path::VOTE, &(), Duration::from_secs(5)).await;
    assert_eq!(r.unwrap_err(), raft::wire::WireError::Unauthorized);
    let good = AdminClient::new(addr, TOKEN);
    let st = good.status().await.unwrap();
    assert_eq!(st.leader_id, Some(1));
    assert!(st.not_ready.is_none());
    // Unreachable nodes give a typed error.
    let gone = AdminClient::new("127.0.0.1:1", TOKEN);
    assert!(matches!(gone.status().await, Err(AdminError::Unreachable(_))));
    c.shutdown().await;
}

/// A leader that loses its quorum reports not-leader and a readiness reason; writes fail as retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_without_quorum_is_not_ready() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let others: Vec<u64> = c.running().map(|n| n.id()).filter(|id| *id != l).collect();
    for id in others {
        c.stop(id).await;
    }
    let reason = wait_for("the lone leader reports not ready", || async {
        c.node(l).readiness().err()
    })
    .await;
    assert!(!c.node(l).is_leader());
    println!("readiness reason: {reason}");
    let s = c.node(l).storage();
    assert_eq!(
        s.leadership
            .campaign("global", "x", Duration::from_secs(10))
            .await
            .unwrap(),
        None
    );
    c.shutdown().await;
}
