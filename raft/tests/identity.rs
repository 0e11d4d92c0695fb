//! Node identity with real nodes on 127.0.0.1: a voter whose data directory was wiped and that restarts under
//! its old id neither takes the leader's entries nor gives a vote (raft's safety needs its lost vote and log),
//! says why in its readiness, and can rejoin once removed; a data directory of another node id is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, SUPPLIER, TOKEN, config, holds, wait_for};
use raft::{AdminClient, RaftNode};
use storage::suite::relay;

async fn append(node: &RaftNode, range: std::ops::Range<u64>) {
    node.storage()
        .relay_log
        .append(range.map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
}

/// Whether node `of`'s `peers` file records an incarnation of node `id`.
fn knows(c: &Cluster, of: u64, id: u64) -> bool {
    std::fs::read_to_string(c.data_dir(of).join("peers"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{id}=")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_wiped_and_restarted_under_its_id_neither_takes_entries_nor_votes() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    append(c.node(l), 0..20).await;
    for n in c.running() {
        holds(n, 20).await;
    }
    let w = c.follower().await;
    let h = (1..=3).find(|id| *id != l && *id != w).unwrap();
    // The other follower never talked to `w` itself; it learns `w`'s incarnation from the leader's heartbeats.
    wait_for("the healthy follower knows the wiped node's incarnation", || async {
        knows(&c, h, w).then_some(())
    })
    .await;

    c.stop(w).await;
    std::fs::remove_dir_all(c.data_dir(w)).unwrap();
    c.restart(w).await;
    // The leader's appends are addressed to `w`'s old incarnation: refused, and `w` says why.
    let why = wait_for("the wiped node reports the wipe", || async {
        c.node(w).readiness().err().filter(|e| e.contains("wiped or replaced"))
    })
    .await;
    assert!(why.contains(&format!("Remove node {w}")), "{why}");
    assert_eq!(
        c.node(w).status().last_log_index,
        None,
        "took none of the leader's entries"
    );
    // The other two still commit.
    append(c.node(l), 20..30).await;
    holds(c.node(h), 30).await;
    assert_eq!(c.node(w).status().last_log_index, None);

    // The leader dies. The healthy follower has the longer log and would win with the wiped node's vote (an
    // empty node grants it): the vote must be refused, so no leader until the old leader is back.
    c.stop(l).await;
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        assert!(!c.node(h).is_leader(), "elected with the vote of a wiped voter");
        assert!(!c.node(w).is_leader());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.restart(l).await;
    let leader = wait_for("the old leader and the healthy follower elect a leader", || async {
        [l, h].into_iter().find(|id| c.node(*id).is_leader())
    })
    .await;
    append(c.node(leader), 30..40).await;
    holds(c.node(l), 40).await;
    holds(c.node(h), 40).await;
    assert_eq!(c.node(w).status().last_log_index, None);

    // The operator's way out: remove `w` from the cluster; its id is forgotten and may be added again.
    let admin = AdminClient::new(c.addrs[&leader].to_string(), TOKEN);
    admin.remove(w).await.unwrap();
    wait_for("the remaining nodes forget the removed node", || async {
        (!knows(&c, l, w) && !knows(&c, h, w)).then_some(())
    })
    .await;
    let info = c.node(w).node_info();
    admin.add_learner(w, info).await.unwrap();
    holds(c.node(w), 40).await;
    wait_for("the re-admitted node is ready", || async { c.node(w).readiness().ok() }).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_node_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node-1");
    let node = RaftNode::start(config(1, "127.0.0.1:0".parse().unwrap(), dir.clone()))
        .await
        .unwrap();
    node.shutdown().await;
    let err = match RaftNode::start(config(2, "127.0.0.1:0".parse().unwrap(), dir.clone())).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("node 2 started on node 1's data directory"),
    };
    assert!(err.contains("belongs to raft node 1, not to node 2"), "{err}");
    // Node 1 itself still starts on it.
    let node = wait_for("node 1 restarts on its data directory", || {
        let dir = dir.clone();
        async move {
            RaftNode::start(config(1, "127.0.0.1:0".parse().unwrap(), dir))
                .await
                .ok()
        }
    })
    .await;
    node.shutdown().await;
}
