//! Offline recovery of a lost majority (`raft::recover`, `relay-miner raft recover-single`) with real nodes on
//! 127.0.0.1: a 3-node cluster takes relays, every node stops, two are lost for good; the survivor's membership is
//! rewritten to itself alone, and started alone it leads with every relay and record, and commits new writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, SUPPLIER, holds, wait_for};
use raft::recover::{RecoverError, recover_single};
use storage::suite::relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_of_a_lost_majority_recovers_alone_with_its_relays() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let s = c.node(l).storage();
    s.relay_log
        .append((0..50).map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
    s.sessions
        .put(SUPPLIER, "s1", "claimed", b"tree".to_vec(), 0)
        .await
        .unwrap();
    drop(s);
    c.converged().await;
    let survivor = c.follower().await;
    let dir = c.data_dir(survivor);

    // A running node is never rewritten.
    let running = recover_single(&dir, survivor).await;
    assert!(matches!(running, Err(RecoverError::Running { .. })), "{running:?}");

    let last_before = c.node(survivor).status().last_log_index;
    let ids: Vec<u64> = c.nodes.keys().copied().collect();
    for id in ids {
        c.stop(id).await;
    }
    // The stopped node's files close once its writer threads end.
    let report = wait_for("the stopped survivor's files can be opened", || async {
        match recover_single(&dir, survivor).await {
            Err(RecoverError::Running { .. }) => None,
            other => Some(other.unwrap()),
        }
    })
    .await;
    println!("recover-single: {report:?}");
    assert_eq!(report.old_voters, vec![vec![1, 2, 3]]);
    assert_eq!(
        report.old_membership_at.map(|(_, index)| index),
        Some(0),
        "the initial membership"
    );
    assert_eq!(report.last_log_index, last_before);
    let index = report.new_membership_index.expect("a membership entry written");
    assert_eq!(Some(index), last_before.map(|i| i + 1));
    // Again: already the single voter, nothing written.
    let again = wait_for("the recovery's own files close", || async {
        match recover_single(&dir, survivor).await {
            Err(RecoverError::Running { .. }) => None,
            other => Some(other.unwrap()),
        }
    })
    .await;
    assert_eq!(again.new_membership_index, None, "{again:?}");
    assert_eq!(again.old_voters, vec![vec![survivor]]);

    // Started alone, it leads, holds everything, and commits new writes.
    c.restart(survivor).await;
    assert_eq!(c.leader().await, survivor);
    let n = c.node(survivor);
    let st = n.status();
    assert_eq!(st.voters.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![survivor]);
    assert!(st.term > report.term, "a new term: {st:?}");
    holds(n, 50).await;
    let rec = n.storage().sessions.get(SUPPLIER, "s1").await.unwrap().unwrap();
    assert_eq!(rec.state, "claimed");
    n.storage()
        .relay_log
        .append((50..60).map(|i| relay(SUPPLIER, "s1", i)).collect())
        .await
        .unwrap();
    holds(n, 60).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_refuses_a_directory_of_another_node_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let missing = recover_single(&dir.path().join("nothing"), 1).await;
    assert!(matches!(missing, Err(RecoverError::NotANode(_))), "{missing:?}");
    let mut c = Cluster::start(1).await;
    c.stop(1).await;
    let other = wait_for("node 1's files close", || async {
        match recover_single(&c.data_dir(1), 2).await {
            Err(RecoverError::Running { .. }) => None,
            other => Some(other),
        }
    })
    .await;
    assert!(matches!(other, Err(RecoverError::Identity(_))), "{other:?}");
}

/// A learner is refused: its log may lack entries the voters committed, and made the single voter its shorter log
/// would become the truth (acknowledged relay appends lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_refuses_a_learner() {
    let c = Cluster::start(3).await;
    c.leader().await;
    let dir4 = c.data_dir(4);
    let n4 = raft::RaftNode::start(common::config(4, "127.0.0.1:0".parse().unwrap(), dir4.clone()))
        .await
        .unwrap();
    let info4 = n4.node_info();
    let admin = raft::AdminClient::new(c.addrs[&c.leader().await].to_string(), common::TOKEN);
    admin.add_learner(4, info4).await.unwrap();
    wait_for("node 4 holds the membership", || async {
        n4.status().learners.iter().any(|(id, _)| *id == 4).then_some(())
    })
    .await;
    n4.shutdown().await;
    let refused = wait_for("node 4's files close", || async {
        match recover_single(&dir4, 4).await {
            Err(RecoverError::Running { .. }) => None,
            other => Some(other),
        }
    })
    .await;
    assert!(
        matches!(&refused, Err(RecoverError::NotAMember { node_id: 4, voters }) if voters.len() == 3),
        "{refused:?}"
    );
    c.shutdown().await;
}
