//! Raft HA chaos with real processes (issue 8): three `relay-miner run --storage raft` children on 127.0.0.1
//! against the in-process simulator chain and demo backend, the load generator sending signed relays to every
//! node's relay port (one sender per node; a dead node's requests fail while the others are served).
//!
//! The scenario kills the leader with SIGKILL in a session's active, claim and proof windows, kills a follower,
//! restarts every killed node on its data dir, adds a fourth node as a learner and promotes it, removes a node,
//! hands the leadership to a named voter (`raft transfer-leader`) and stops that leader with SIGTERM (it hands
//! off before it exits), and kills the leader of the new configuration, all under load, using the
//! `relay-miner raft` CLI for the membership changes. It asserts:
//! - every served relay is in an accepted claim (claimed ≥ served per (supplier, session), and the relays
//!   claimed beyond those served are at most the requests that failed: a relay can be committed while its
//!   node dies before answering);
//! - each session is claimed once and proven once (proof probability 1), zero rejections by the simulator,
//!   every session settles with a reward;
//! - no two nodes submitted in the same raft term (sampled from each node's `/metrics` and raft status);
//! - failover: leader killed → new leader elected → its miner leads again, within bounds; the numbers are
//!   printed (`--nocapture`) and recorded in BENCHMARKS.md (new leader ≤ 1.5 s asserted, goal 1 s);
//! - settlement metrics (`ha_miner_claims_settled_by_status_total`, `ha_miner_relays_settled_by_status_total`):
//!   summed over the live nodes, per status, at most what the chain settled (never counted twice across
//!   processes and leaders; a killed process's counters are lost), and every settlement made after the last
//!   leader kill counted;
//! - no spurious elections: every term change is accounted for by a leader kill or a planned hand-off (the raft
//!   term of the cluster at the end minus at the start equals the terms the failovers and hand-offs took).
//!
//! `RAFT_CHAOS_TIMING=heartbeat,min,max[,pre_vote]` (ms, true/false) overrides the raft timing keys, to compare
//! settings; `RAFT_CHAOS_BLOCK_MS` the block time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_miner::protocol::session::SessionWindows;
use relay_miner::sim::chain::SimChain;

use crate::support::claims::{Proofs, assert_claims};
use crate::support::cluster::{Cluster, NodeOpts, lease_taken_ms, node_config, now_ms, start_env, tail};
use crate::support::settled::{await_counted, chain_settled, cluster_settled, print_settled_series};
use crate::support::traffic::Traffic;
use crate::support::{CLUSTER_TESTS, assert_nodes_lost_nothing, free_port, min_median_max, raft_block_ms, wait_height};

/// `storage.raft` timing lines from `RAFT_CHAOS_TIMING=heartbeat,min,max[,pre_vote]` (none = the defaults).
pub fn timing_overrides() -> Vec<String> {
    let Ok(v) = std::env::var("RAFT_CHAOS_TIMING") else {
        return Vec::new();
    };
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let keys = [
        "heartbeat_interval_ms",
        "election_timeout_min_ms",
        "election_timeout_max_ms",
        "pre_vote",
    ];
    keys.iter().zip(parts).map(|(k, v)| format!("{k}: {v}")).collect()
}

/// Runs the `relay-miner raft` CLI; returns (exit code, stdout, stderr).
fn cli(token_file: &Path, addr: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .arg("raft")
        .args(args)
        .arg("--addr")
        .arg(addr)
        .arg("--cluster-token-file")
        .arg(token_file)
        .arg("--timeout-secs")
        .arg("10")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(token_file: &Path, addr: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(token_file, addr, args);
    assert_eq!(code, 0, "raft {args:?} at {addr}: {stdout}{stderr}");
    stdout
}

fn cli_status_json(token_file: &Path, addr: &str) -> serde_json::Value {
    serde_json::from_str(&cli_ok(token_file, addr, &["status", "--json"])).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// One failover.
struct Failover {
    what: String,
    /// Leader killed → a new leader with a quorum is seen.
    elected: Duration,
    /// Leader killed → its miner took the lease (from its log).
    lease: Duration,
    /// Leader killed → its `ha_miner_leader_status` read 1.
    active: Duration,
    height: i64,
    /// Terms the election took (1 = won in the first round).
    terms: u64,
}

/// Kills the current leader; measures kill → new leader elected → its miner leads; restarts the killed node.
async fn kill_leader(cluster: &mut Cluster, chain: &SimChain, what: &str) -> Failover {
    let (old, term) = cluster.leader(0, Duration::from_secs(10)).await;
    let h0 = chain.height();
    let wall0 = now_ms();
    let t0 = Instant::now();
    cluster.kill(old);
    let (new, new_term) = cluster.leader(term + 1, Duration::from_secs(10)).await;
    let elected = t0.elapsed();
    cluster.miner_leads(new, Duration::from_secs(15)).await;
    let active = t0.elapsed();
    let lease = lease_taken_ms(&cluster.proc(new).log, wall0)
        .map(|t| Duration::from_millis(u64::try_from(t - wall0).unwrap_or(0)))
        .unwrap_or(active);
    println!(
        "failover ({what}): leader {old} (term {term}) killed → node {new} elected in term {new_term} after {} ms, \
         its miner took the lease after {} ms and reports leading after {} ms (heights {h0} → {})",
        elected.as_millis(),
        lease.as_millis(),
        active.as_millis(),
        chain.height()
    );
    cluster.start(old).await;
    Failover {
        what: what.to_string(),
        elected,
        lease,
        active,
        height: h0,
        terms: new_term - term,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_cluster_survives_leader_kills_and_membership_changes_under_load() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let block_ms = raft_block_ms();
    let env = start_env(block_ms, 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    let timing = timing_overrides();
    let raft_ports: BTreeMap<u64, u16> = (1..=4).map(|id| (id, free_port())).collect();
    let addr = |id: u64| (id, format!("127.0.0.1:{}", raft_ports[&id]));
    let initial: Vec<(u64, String)> = (1..=3).map(addr).collect();
    let all: Vec<(u64, String)> = (1..=4).map(addr).collect();
    let mut cluster = Cluster::default();
    for id in 1..=4 {
        let opts = NodeOpts {
            level,
            // The fourth node knows the whole future voter set (it is not the lowest id, so it never initializes).
            peers: if id == 4 { &all } else { &initial },
            raft_extra: &timing,
        };
        cluster.add(node_config(&env, id, raft_ports[&id], &opts));
    }
    cluster.start_many(&[1, 2, 3]).await;
    let (leader, _) = cluster.leader(0, Duration::from_secs(20)).await;
    cluster.miner_leads(leader, Duration::from_secs(20)).await;
    let token_file = env.token_file.clone();

    // CLI: status from a follower names the leader and lists three voters.
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();
    cluster.expect_answering(follower, Duration::from_secs(10)).await;
    let status = cli_status_json(&token_file, &cluster.proc(follower).raft_addr);
    assert_eq!(status["leader_id"].as_u64(), Some(leader), "{status}");
    assert_eq!(ids(&status["voters"]), vec![1, 2, 3], "{status}");
    let table = cli_ok(&token_file, &cluster.proc(follower).raft_addr, &["status"]);
    println!("{table}");
    assert!(table.contains(&format!("leader: node {leader}")), "{table}");
    assert!(
        table.lines().nth(2).is_some_and(|l| l.starts_with("write sets: ")),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4 + 3, "{table}");

    // Load and the submitter monitor.
    // One sender per node; about the rate of the former single round-robin sender (8 ms pauses).
    let traffic = Traffic::start(&env, &cluster, 1..=4, Duration::from_millis(40));
    let load = Arc::clone(&traffic.load);
    let first_term = cluster.max_term().await;

    let params = env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();
    let limit = Duration::from_secs(30);
    let mut failovers: Vec<Failover> = Vec::new();

    // 1. Leader killed mid-session (active window), 2. at the claim window's open, 3. at the proof window's open.
    wait_height(&env.chain, s.start + 1, limit).await;
    failovers.push(kill_leader(&mut cluster, &env.chain, "active window").await);
    wait_height(&env.chain, s.claim_open, limit).await;
    failovers.push(kill_leader(&mut cluster, &env.chain, "claim window").await);
    wait_height(&env.chain, s.proof_open, limit).await;
    failovers.push(kill_leader(&mut cluster, &env.chain, "proof window").await);

    // 4. A follower killed: relays keep being served by the other two; restarted, it catches up.
    let (leader, _) = cluster.leader(0, limit).await;
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();
    cluster.kill(follower);
    let served_before = load.lock().unwrap().total_served();
    let deadline = Instant::now() + limit;
    while load.lock().unwrap().total_served() < served_before + 20 {
        assert!(Instant::now() < deadline, "no relays served with a follower down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.start(follower).await;
    cluster.caught_up(follower, limit).await;

    // 5. A fourth node joins as a learner (asked through a follower: the CLI follows to the leader), is promoted.
    cluster.start(4).await;
    let (leader, _) = cluster.leader(0, limit).await;
    let follower = *cluster.running().iter().find(|id| **id != leader && **id != 4).unwrap();
    let via = cluster.proc(follower).raft_addr.clone();
    let out = cli_ok(
        &token_file,
        &via,
        &[
            "add-learner",
            "--id",
            "4",
            "--node-addr",
            &cluster.proc(4).raft_addr,
            "--wait",
        ],
    );
    assert!(out.contains("added as a learner") && out.contains("caught up"), "{out}");
    let status = cli_status_json(&token_file, &via);
    assert_eq!(ids(&status["learners"]), vec![4], "{status}");
    let out = cli_ok(&token_file, &via, &["promote", "--id", "4"]);
    assert!(out.contains("promoted"), "{out}");
    let status = cli_status_json(&token_file, &via);
    assert_eq!(ids(&status["voters"]), vec![1, 2, 3, 4], "{status}");
    assert!(ids(&status["learners"]).is_empty(), "{status}");

    // 6. One of the original followers is removed, then stopped for good.
    let (leader, _) = cluster.leader(0, limit).await;
    let removed = *cluster.running().iter().find(|id| **id != leader && **id != 4).unwrap();
    let out = cli_ok(
        &token_file,
        &cluster.proc(4).raft_addr,
        &["remove", "--id", &removed.to_string()],
    );
    assert!(out.contains("removed"), "{out}");
    cluster.kill(removed);
    let status = cli_status_json(&token_file, &cluster.proc(4).raft_addr);
    let voters = ids(&status["voters"]);
    assert_eq!(voters.len(), 3, "{status}");
    assert!(!voters.contains(&removed), "{status}");

    // 7. Planned maintenance, under load: the CLI hands the leadership to a named voter (asked through that
    // follower: the CLI follows to the leader), whose miner takes over; then that leader is stopped with SIGTERM:
    // it drains, hands off before it stops (its log says so), exits 0, and is started again.
    let (leader, term) = cluster.leader(0, limit).await;
    let to = *voters.iter().find(|id| **id != leader).unwrap();
    let out = cli_ok(
        &token_file,
        &cluster.proc(to).raft_addr,
        &["transfer-leader", "--to", &to.to_string()],
    );
    assert!(out.contains(&format!("node {to} leads now")), "{out}");
    let (now_leading, transfer_term) = cluster.leader(term + 1, limit).await;
    assert_eq!(now_leading, to);
    cluster.miner_leads(to, Duration::from_secs(15)).await;
    let t0 = Instant::now();
    let stopped = cluster.terminate(to, Duration::from_secs(30)).await;
    let (after, after_term) = cluster.leader(transfer_term + 1, limit).await;
    let handed_off = t0.elapsed();
    assert!(
        stopped.success(),
        "node {to} stopped with {stopped}\n{}",
        tail(&cluster.proc(to).log)
    );
    let log = std::fs::read_to_string(&cluster.proc(to).log).unwrap();
    assert!(
        log.contains("raft leadership handed off before stopping"),
        "{}",
        tail(&cluster.proc(to).log)
    );
    assert_ne!(after, to);
    cluster.miner_leads(after, Duration::from_secs(15)).await;
    println!(
        "planned: transfer to node {to} (term {term} → {transfer_term}); SIGTERM → node {after} leads (term \
         {after_term}) {} ms after the signal",
        handed_off.as_millis()
    );
    // Terms the planned changes took (one each when the chosen node wins its first round).
    let planned_terms = after_term - term;
    cluster.start(to).await;
    cluster.caught_up(to, limit).await;

    // 8. The leader of the new configuration is killed too.
    failovers.push(kill_leader(&mut cluster, &env.chain, "after membership change").await);
    // No process dies from here on: the settlement counters' base, then how many settlements the chain had made
    // (read after the scrape: a settlement made later cannot be in the base).
    let settled_base = cluster_settled(&cluster.metrics().await);
    let (_, settled_before_base) = chain_settled(&env.chain, 0);

    // Keep loading through the current session, then let every served session settle.
    let last = SessionWindows::new(&params, env.chain.height()).unwrap();
    wait_height(&env.chain, last.end + 1, limit).await;
    let last_term = cluster.max_term().await;
    let (load, submitters) = traffic.finish(&env, &params).await;
    // The settlements made after the base are all counted by the live nodes (the leader counts at its next
    // block); a few blocks more, so that a second count of a session would show too.
    let t_count = Instant::now();
    let (settled_after_base, _) = chain_settled(&env.chain, settled_before_base);
    let counted_by = await_counted(limit, &settled_base, &settled_after_base, || cluster.metrics()).await;
    wait_height(&env.chain, env.chain.height() + 2, limit).await;
    let count_wait = t_count.elapsed();

    // CLI errors: an unreachable node, a wrong token, an invalid change.
    let (code, _, err) = cli(&token_file, &cluster.proc(removed).raft_addr, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    let bad_token = env.dir.path().join("bad-token");
    std::fs::write(&bad_token, "not-the-cluster-token-at-all").unwrap();
    let (code, _, err) = cli(&bad_token, &cluster.proc(4).raft_addr, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rejected the cluster token"), "{err}");
    let (code, _, err) = cli(&token_file, &cluster.proc(4).raft_addr, &["promote", "--id", "99"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a learner"), "{err}");
    let final_table = cli_ok(&token_file, &cluster.proc(4).raft_addr, &["status"]);
    println!("{final_table}");

    let metrics = cluster.metrics().await;
    drop(cluster);

    // --- Assertions ---
    let kill_heights: Vec<i64> = failovers.iter().map(|f| f.height).collect();
    println!(
        "submitters by term: {:?} ({} samples, {} ambiguous intervals); leader miner max blocks behind the \
         chain, per node: {:?}",
        submitters.by_term, submitters.samples, submitters.ambiguous, submitters.miner_lag
    );
    println!("{}", load.summary());
    assert!(load.served.len() >= 4, "too few sessions served: {:?}", load.served);
    println!("leader kills at heights {kill_heights:?}");
    // Two submitters in one term explain rejected or duplicate claims best: asserted first.
    submitters.assert_one_per_term();
    crate::support::print_miner_errors(&metrics);
    print_settled_series(&metrics);
    assert_claims(&env.chain, &load.served, load.unanswered(), Proofs::EveryClaim);
    // Settlement counters: killed processes lost theirs, so summed over the live nodes they are at most the
    // chain's settlements, per status (never double-counted across processes and leaders), and every settlement
    // made after the last leader kill is counted (`src/miner/driver/settled.rs` module docs).
    let (on_chain, _) = chain_settled(&env.chain, 0);
    let counted = cluster_settled(&metrics);
    let counted_since = counted.minus(&settled_base);
    println!(
        "settlements: chain {on_chain:?}, {} of them after the last leader kill {settled_after_base:?}; counted \
         over the live nodes {counted:?}, since the last kill {counted_since:?} (when first covered: {:?}); waited \
         {} ms after the load's last settlement",
        on_chain.total_claims() - settled_before_base as u64,
        cluster_settled(&counted_by).minus(&settled_base),
        count_wait.as_millis()
    );
    assert!(
        on_chain.covers(&counted),
        "settlement counters summed over the live nodes exceed the chain's settlements: {counted:?} > {on_chain:?}"
    );
    assert!(
        settled_after_base.total_claims() > 0,
        "no settlement after the last leader kill: {settled_after_base:?}"
    );
    assert!(
        counted_since.covers(&settled_after_base),
        "settlements made after the last leader kill not counted: {counted_since:?} < {settled_after_base:?}"
    );
    assert_nodes_lost_nothing(&metrics);
    let failover_terms: u64 = failovers.iter().map(|f| f.terms).sum();
    let spurious = (last_term - first_term).saturating_sub(failover_terms + planned_terms);
    let ms = |d: &Duration| d.as_millis() as u64;
    let elected: Vec<u64> = failovers.iter().map(|f| ms(&f.elected)).collect();
    let lease: Vec<u64> = failovers.iter().map(|f| ms(&f.lease)).collect();
    let active: Vec<u64> = failovers.iter().map(|f| ms(&f.active)).collect();
    let rounds: Vec<u64> = failovers.iter().map(|f| f.terms).collect();
    println!(
        "failover summary: elected ms {elected:?} (min/median/max {:?}), miner lease ms {lease:?} (max {}), miner \
         leading ms {active:?} (max {}); election rounds {rounds:?}; terms {first_term} → {last_term}, \
         {spurious} spurious elections (term changes without a kill); total test {} s",
        min_median_max(&elected),
        lease.iter().max().unwrap(),
        active.iter().max().unwrap(),
        started.elapsed().as_secs()
    );
    for f in &failovers {
        assert!(
            // Goal 1 s (measured 0.51–0.68 s); the margin is for a loaded CI machine.
            f.elected <= Duration::from_millis(1500),
            "{}: election took {:?}",
            f.what,
            f.elected
        );
        assert!(
            f.active <= Duration::from_secs(5),
            "{}: miner back after {:?}",
            f.what,
            f.active
        );
    }
    assert_eq!(
        spurious, 0,
        "term changes without a leader kill: {first_term} → {last_term}, {rounds:?}"
    );
}
