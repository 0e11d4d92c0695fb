//! A node restarted on an older copy of its data directory (`raft::rollback`), with real nodes on 127.0.0.1: it
//! refuses to start, before voting or acknowledging anything, and the cluster keeps its leader (whether the
//! leader saw a longer log in the same term, a later vote, or remembers it from its witness file after a
//! restart); the same node on
//! its intact directory restarts; a whole cluster restarted at once comes back; a member that stays down delays
//! a start by the configured wait only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Cluster, DEADLINE, START_CHECK_WAIT, SUPPLIER, TOKEN, config, holds, wait_for};
use raft::rollback::Known;
use raft::wire::PeerClient;
use raft::{NodeError, RaftNode};
use storage::suite::relay;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What node `holder` knows of node `of` (the start check's question).
async fn known_of(c: &Cluster, holder: u64, of: u64) -> Known {
    PeerClient::new(&c.addrs[&holder].to_string(), TOKEN)
        .call(raft::rollback::PATH, &of, Duration::from_secs(2))
        .await
        .unwrap()
}

/// Starts node `id` on its address and directory, retrying while the files of its previous run are being closed
/// (`Err` only when the start check refused the directory).
async fn start(c: &Cluster, id: u64) -> Result<RaftNode, NodeError> {
    let (addr, dir) = (c.addrs[&id], c.data_dir(id));
    wait_for(&format!("node {id} starts or is refused"), || {
        let dir = dir.clone();
        async move {
            match RaftNode::start(config(id, addr, dir)).await {
                Ok(n) => Some(Ok(n)),
                Err(e @ NodeError::RolledBack(_)) => Some(Err(e)),
                Err(_) => None,
            }
        }
    })
    .await
}

async fn append(c: &Cluster, from: u64, to: u64) {
    let l = c.leader().await;
    c.node(l)
        .storage()
        .relay_log
        .append((from..to).map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
}

/// A cluster of three where node 3 follows.
async fn three_with_node_3_following() -> Cluster {
    let c = Cluster::start(3).await;
    if c.leader().await == 3 {
        raft::AdminClient::new(c.addrs[&1].to_string(), TOKEN)
            .transfer_leader(Some(1))
            .await
            .unwrap();
    }
    c
}

/// What happens between the copy of node 3's directory and its restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Twist {
    /// Nothing: the same leader, in the same term, saw node 3 acknowledge a longer log.
    None,
    /// The leadership moves to the other follower: node 3 voted and acknowledged in a later term.
    Transfer,
    /// The leader restarts before node 3 does: what it saw comes from its witness file.
    RestartLeader,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_an_older_copy_of_its_directory_refuses_to_start() {
    refused_after(Twist::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_before_a_later_term_refuses_to_start() {
    refused_after(Twist::Transfer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_still_knows_what_the_node_acknowledged() {
    refused_after(Twist::RestartLeader).await;
}

async fn refused_after(twist: Twist) {
    let mut c = three_with_node_3_following().await;
    append(&c, 0, 10).await;
    c.converged().await;

    // An early copy of node 3's directory (taken stopped, as a VM snapshot or backup is consistent), then node 3
    // restarts on its intact directory (the start check passes) and acknowledges more.
    c.stop(3).await;
    let old = c.dir.path().join("node-3-old");
    copy_dir(&c.data_dir(3), &old);
    let n3 = start(&c, 3).await.expect("an intact directory starts");
    c.nodes.insert(3, Some(n3));
    if twist == Twist::Transfer {
        let from = c.leader().await;
        let to = if from == 1 { 2 } else { 1 };
        let term = c.node(from).status().term;
        raft::AdminClient::new(c.addrs[&from].to_string(), TOKEN)
            .transfer_leader(Some(to))
            .await
            .unwrap();
        wait_for("node 3 follows the new leader in a later term", || async {
            let st = c.node(3).status();
            (st.leader_id == Some(to) && st.term > term).then_some(())
        })
        .await;
    }
    append(&c, 10, 30).await;
    holds(c.node(3), 30).await;
    let last3 = c.node(3).status().last_log_index.unwrap();
    let leader = c.leader().await;
    assert_ne!(leader, 3);
    wait_for("the leader knows node 3 acknowledged its last entry", || async {
        let k = known_of(&c, leader, 3).await;
        k.acked.is_some_and(|(_, i)| i >= last3).then_some(())
    })
    .await;

    // Node 3 stops, its directory is replaced by the old copy, and it starts again: refused.
    c.stop(3).await;
    let newer = c.dir.path().join("node-3-newer");
    std::fs::rename(c.data_dir(3), &newer).unwrap();
    std::fs::rename(&old, c.data_dir(3)).unwrap();
    if twist == Twist::RestartLeader {
        c.stop(leader).await;
        c.restart(leader).await;
        assert!(
            known_of(&c, leader, 3).await.acked.is_some_and(|(_, i)| i >= last3),
            "read back from the witness file"
        );
    }
    let leader = c.leader().await;
    let term = c.node(leader).status().term;
    let refused = start(&c, 3).await;
    let Err(NodeError::RolledBack(why)) = &refused else {
        panic!(
            "node 3 must refuse its older directory: {:?}",
            refused.map(|n| n.status())
        );
    };
    assert!(why.contains("is older than what node"), "{why}");
    let evidence = if twist == Twist::Transfer {
        "the stored vote is of term"
    } else {
        "but its log ends at index"
    };
    assert!(why.contains(evidence), "{twist:?}: {why}");
    assert!(
        why.contains("raft remove --id 3") && why.contains("raft add-learner --id 3"),
        "{why}"
    );
    // The refused node never took part: same leader and term, and the two others still commit.
    assert_eq!(c.node(leader).status().leader_id, Some(leader));
    assert_eq!(c.node(leader).status().term, term);
    append(&c, 30, 31).await;
    for id in [1, 2] {
        holds(c.node(id), 31).await;
    }

    // The intact directory back: node 3 starts and catches up.
    std::fs::remove_dir_all(c.data_dir(3)).unwrap();
    std::fs::rename(&newer, c.data_dir(3)).unwrap();
    let n3 = start(&c, 3).await.expect("the intact directory starts");
    holds(&n3, 31).await;
    n3.shutdown().await;
    c.shutdown().await;
}

/// Every node restarted at once: each start check waits for the others, which answer while gated, so none
/// waits for the full wait and the cluster elects a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restarted_at_once_comes_back() {
    let mut c = three_with_node_3_following().await;
    append(&c, 0, 5).await;
    c.converged().await;
    for id in 1..=3 {
        c.stop(id).await;
    }
    let began = tokio::time::Instant::now();
    let (a, b, d) = tokio::join!(start(&c, 1), start(&c, 2), start(&c, 3));
    let started = began.elapsed();
    for n in [a, b, d] {
        let n = n.expect("an intact directory starts");
        let checked = n.start_check().expect("members to ask");
        let others: Vec<u64> = (1..=3).filter(|id| *id != n.id()).collect();
        assert_eq!(
            checked
                .answered
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            others.iter().copied().collect()
        );
        assert!(checked.unanswered.is_empty(), "node {}: {checked:?}", n.id());
        c.nodes.insert(n.id(), Some(n));
    }
    assert!(
        started < START_CHECK_WAIT,
        "took {started:?}: a start check waited for a peer that was up"
    );
    append(&c, 5, 6).await;
    for id in 1..=3 {
        holds(c.node(id), 6).await;
    }
    c.shutdown().await;
}

/// A member that stays down does not keep a node from starting: the check starts with the answers it has once
/// the wait has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_delays_a_start_by_the_wait_only() {
    let mut c = three_with_node_3_following().await;
    append(&c, 0, 5).await;
    c.converged().await;
    c.stop(3).await;
    let down = if c.leader().await == 1 { 2 } else { 1 };
    c.stop(down).await;
    let wait = Duration::from_millis(1500);
    let mut cfg = config(3, c.addrs[&3], c.data_dir(3));
    cfg.start_check_wait = wait;
    let began = tokio::time::Instant::now();
    let n3 = wait_for("node 3 starts", || {
        let cfg = cfg.clone();
        async move { RaftNode::start(cfg).await.ok() }
    })
    .await;
    let took = began.elapsed();
    assert!(took >= wait && took < DEADLINE, "took {took:?}");
    let checked = n3.start_check().expect("members to ask");
    assert_eq!(checked.answered, vec![3 - down], "{checked:?}");
    assert_eq!(
        checked.unanswered.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![down]
    );
    c.nodes.insert(3, Some(n3));
    append(&c, 5, 6).await;
    holds(c.node(3), 6).await;
    c.shutdown().await;
}
