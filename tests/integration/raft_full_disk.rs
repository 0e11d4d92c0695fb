//! A full disk under one node of a raft cluster, real processes: three `relay-miner run --storage raft`
//! children, each with its data directory on a small tmpfs of its own, the simulator chain, and the load
//! generator sending to every node at once (one sender per node, as in `raft_partition`). A filler file takes
//! every free byte of one node's tmpfs, first a follower's, then the leader's:
//!
//! - the full node stops acknowledging relays and reports not ready, naming the cause; the other two keep
//!   serving, committing and mining (a full leader loses its leadership to the healthy majority);
//! - once the filler is removed the node is back: openraft stops its core for good on a storage error, so the
//!   process exits non-zero with an ERROR naming the cause, and its supervisor (the test here) restarts it on
//!   the same data directory; it catches up and serves again.
//!
//! Asserted as in `raft_chaos`: every served relay claimed, each session claimed once and proven once, zero
//! rejections, every session settled, no two submitters in one term. Needs root for the mounts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_miner::protocol::session::SessionWindows;
use storage::suite::{Tmpfs, fill};

use crate::raft_chaos::timing_overrides;
use crate::support::claims::{Proofs, assert_claims};
use crate::support::cluster::{Cluster, NodeOpts, node_config, start_env, tail};
use crate::support::load::Load;
use crate::support::traffic::{Traffic, served_by};
use crate::support::{
    CLUSTER_TESTS, assert_nodes_lost_nothing, free_port, http_get_status, poll, raft_block_ms, wait_height,
};

/// Refused or failed requests to `node`.
fn failed_by(load: &Mutex<Load>, node: u64) -> u64 {
    load.lock().unwrap().failed_by.get(&node).copied().unwrap_or(0)
}

/// What one full-disk episode measured.
struct Episode {
    /// Filler written → the node's `/ready` answered 503.
    not_ready: Duration,
    /// Its `/ready` answer.
    reason: String,
    /// Relays the full node served / refused while its disk was full.
    served_full: u64,
    refused_full: u64,
    /// Filler removed → the process exited (its exit status), and → serving and ready again after the restart.
    exit: String,
    exited: Duration,
    recovered: Duration,
}

impl Episode {
    fn print(&self, who: &str) {
        println!(
            "full disk on {who}: /ready 503 after {} ms ({}); while full it served {} relays and refused {}; freed: \
             exited with {} after {} ms, ready and serving again after {} ms (restart and catch-up included)",
            self.not_ready.as_millis(),
            self.reason,
            self.served_full,
            self.refused_full,
            self.exit,
            self.exited.as_millis(),
            self.recovered.as_millis()
        );
    }
}

/// Fills node `id`'s tmpfs while the load runs; asserts that it stops acknowledging relays and reports not
/// ready while `others` keep serving; frees the disk and brings the node back (restarting it once it exits).
async fn full_disk_episode(
    cluster: &mut Cluster,
    load: &Mutex<Load>,
    disk: &Tmpfs,
    id: u64,
    others: &[u64],
) -> Episode {
    let limit = Duration::from_secs(30);
    let ready_url = cluster.proc(id).ready_url.clone();
    let filler = disk.path().join("filler");
    let t0 = Instant::now();
    fill(&filler);
    let (_, reason) = poll("the full node reports not ready", limit, || async {
        http_get_status(&ready_url).await.filter(|(code, _)| *code == 503)
    })
    .await;
    let not_ready = t0.elapsed();
    // It refuses relays (answers them, as a refusal, not by hanging) while the others keep serving.
    let (served_at, failed_at) = (served_by(load, &[id]), failed_by(load, id));
    let others_at = served_by(load, others);
    poll("the full node refuses relays, the others serve", limit, || async {
        (failed_by(load, id) >= failed_at + 10 && served_by(load, others) >= others_at + 20).then_some(())
    })
    .await;
    let served_full = served_by(load, &[id]) - served_at;
    let refused_full = failed_by(load, id) - failed_at;
    assert!(
        served_full <= 1,
        "node {id} served {served_full} relays with a full disk (refused {refused_full})"
    );
    // The healthy two have a leader with a quorum, whose miner leads.
    let (leader, _) = cluster.leader_among(others, 0, limit).await;
    cluster.miner_leads(leader, limit).await;

    // Room again.
    std::fs::remove_file(&filler).unwrap();
    let t1 = Instant::now();
    let exit = poll("the stopped node exits", limit, || {
        let status = cluster
            .procs
            .get_mut(&id)
            .unwrap()
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap();
        async move { status }
    })
    .await;
    let exited = t1.elapsed();
    assert!(!exit.success(), "node {id} exited with {exit}");
    let log = tail(&cluster.proc(id).log);
    assert!(
        log.contains("ERROR") && log.contains("raft stopped"),
        "node {id} exited without an ERROR naming the cause:\n{log}"
    );
    // Its supervisor restarts it on the same data directory.
    cluster.kill(id);
    cluster.start(id).await;
    cluster.caught_up(id, limit).await;
    let served_at = served_by(load, &[id]);
    poll("the restarted node is ready and serves", limit, || async {
        (served_by(load, &[id]) > served_at + 5 && matches!(http_get_status(&ready_url).await, Some((200, _))))
            .then_some(())
    })
    .await;
    Episode {
        not_ready,
        reason: reason.trim().to_string(),
        served_full,
        refused_full,
        exit: exit.to_string(),
        exited,
        recovered: t1.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_node_with_a_full_disk_stops_acknowledging_and_comes_back() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let env = start_env(raft_block_ms(), 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    let timing = timing_overrides();
    let raft_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let peers: Vec<(u64, String)> = raft_ports.iter().map(|(i, p)| (*i, format!("127.0.0.1:{p}"))).collect();
    let mut cluster = Cluster::default();
    let mut disks = BTreeMap::new();
    for id in 1..=3 {
        let opts = NodeOpts {
            level,
            peers: &peers,
            raft_extra: &timing,
        };
        let proc = node_config(&env, id, raft_ports[&id], &opts);
        let data = proc.config.parent().unwrap().join("data");
        disks.insert(id, Tmpfs::mount(&data, "64M"));
        cluster.add(proc);
    }
    cluster.start_many(&[1, 2, 3]).await;
    let limit = Duration::from_secs(30);
    let (leader, _) = cluster.leader(0, limit).await;
    cluster.miner_leads(leader, limit).await;

    let traffic = Traffic::start(&env, &cluster, 1..=3, Duration::from_millis(40));
    let load = Arc::clone(&traffic.load);
    poll("every node serves", limit, || async {
        (1..=3).all(|id| served_by(&load, &[id]) >= 5).then_some(())
    })
    .await;

    // 1. A follower's disk fills.
    let (leader, term) = cluster.leader(0, limit).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|id| *id != follower).collect();
    let f = full_disk_episode(&mut cluster, &load, &disks[&follower], follower, &others).await;
    assert_eq!(
        cluster.leader(0, limit).await,
        (leader, term),
        "a follower's full disk moved the leader"
    );
    f.print(&format!("follower {follower}"));

    // 2. The leader's disk fills: the healthy majority elects a leader whose miner takes over.
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let l = full_disk_episode(&mut cluster, &load, &disks[&leader], leader, &others).await;
    let (new, new_term) = cluster.leader(term + 1, limit).await;
    l.print(&format!(
        "leader {leader} (term {term}; leader now {new}, term {new_term})"
    ));

    // Load through the current session, then let every served session settle.
    let params = env.chain.state().shared.clone();
    let last = SessionWindows::new(&params, env.chain.height()).unwrap();
    wait_height(&env.chain, last.end + 1, limit).await;
    let (load, submitters) = traffic.finish(&env, &params).await;
    let metrics = cluster.metrics().await;
    drop(cluster);
    drop(disks);

    println!(
        "load: {} sent, {} served (per node {:?}), {} refused, {} failed (per node {:?}; last error: {:?}); {} \
         sessions; submitters by term {:?}; total {} s",
        load.sent,
        load.total_served(),
        load.served_by,
        load.refused,
        load.failed,
        load.failed_by,
        load.last_error,
        load.served.len(),
        submitters.by_term,
        started.elapsed().as_secs()
    );
    submitters.assert_one_per_term();
    crate::support::print_miner_errors(&metrics);
    assert_claims(&env.chain, &load.served, load.unanswered(), Proofs::EveryClaim);
    assert_nodes_lost_nothing(&metrics);
}
