//! Raft HA under network partitions (issue 8), real processes: three `relay-miner run --storage raft` children
//! whose raft traffic goes through a fault-injecting TCP proxy per directed link ([`LinkProxies`]: every node's
//! peers, and so the raft membership, name the proxies), the simulator chain, the load generator sending to every
//! node at once (one sender per node, so a node that hangs only stalls its own sender).
//!
//! 1. The leader is cut off from both followers at a claim window's open: the majority elects a new leader
//!    within bounds and its miner claims; the isolated old leader reports no quorum on `/ready`, and its miner
//!    submits nothing while cut off (its claims and proofs counters stand still). Healed, it rejoins as a
//!    follower of the new leader and catches up, without an election (pre-vote: its term did not move).
//! 2. A follower is cut off: no leader change, the other two keep serving, its `/ready` reports no contact with
//!    the leader until healed; its term does not move either, and healed it catches up.
//!
//! Asserted as in `raft_chaos`: every served relay claimed, each session claimed once and proven once, zero
//! rejections, every session settled, no two submitters in one term, no term change beyond the one election.
//! And the settlement metrics: no node died, so summed over the nodes they count every settlement the chain made
//! for our suppliers exactly once, by status (`ha_miner_claims_settled_by_status_total`,
//! `ha_miner_relays_settled_by_status_total`), although the leader changed between the counts.
//!
//! Short blocks against raft's write deadlines: the simulator's blocks are 2 s (`RAFT_CHAOS_BLOCK_MS`), its
//! sessions 4 blocks, and the cluster's claims go out as the window opens (`claim_delay_blocks: 0`), one block
//! after a session's grace period. A relay the relayer accepted in the grace period is in the claim only if its
//! append commits before that block; one that commits later is served and not claimed (`relays_after_claim`).
//! A node that knows no leader retries a write for up to raft's `LEADER_DEADLINE` (5 s, `raft/src/core.rs`), and
//! once healed forwards it to the leader, which commits it. The old leader is healed at the claim window's
//! close, which is the next session's claim opening: a relay of that session accepted by the old leader in the
//! grace period, still retried at the heal, committed after that claim went out (seen about once in ten runs).
//! So the old leader's sender is paused before the heal until its last relay is answered
//! ([`Traffic::pause`]): nothing is left waiting in it. A cut-off follower (part 2) still knows its leader: its
//! forwarded writes are blackholed and fail at their deadline or at the heal, never retried, so its cut may span
//! a claim opening. With mainnet blocks (~60 s) and the default claim delay (1 block) a relay has more than a
//! minute, longer than any raft write deadline (at most 15 s).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_miner::protocol::session::SessionWindows;

use crate::raft_chaos::timing_overrides;
use crate::support::claims::{Proofs, assert_claims};
use crate::support::cluster::{Cluster, NodeOpts, node_config, start_env};
use crate::support::settled::{ByStatus, await_counted, chain_settled, cluster_settled, print_settled_series};
use crate::support::tcp_proxy::LinkProxies;
use crate::support::traffic::{Traffic, served_by};
use crate::support::{
    CLUSTER_TESTS, assert_nodes_lost_nothing, free_port, http_get_status, poll, raft_block_ms, scrape, submitted,
    wait_height,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_cluster_survives_partitions_under_load() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let block_ms = raft_block_ms();
    let env = start_env(block_ms, 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    let timing = timing_overrides();
    let raft_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let mut cluster = Cluster::default();
    let targets: BTreeMap<u64, String> = raft_ports.iter().map(|(i, p)| (*i, format!("127.0.0.1:{p}"))).collect();
    let proxies = LinkProxies::start(&targets, Arc::clone(&cluster.live));
    let peers: Vec<(u64, String)> = (1..=3).map(|id| (id, proxies.addr(id))).collect();
    for id in 1..=3 {
        let opts = NodeOpts {
            level,
            peers: &peers,
            raft_extra: &timing,
        };
        cluster.add(node_config(&env, id, raft_ports[&id], &opts));
    }
    cluster.start_many(&[1, 2, 3]).await;
    let limit = Duration::from_secs(30);
    let (leader, _) = cluster.leader(0, limit).await;
    cluster.miner_leads(leader, limit).await;

    let traffic = Traffic::start(&env, &cluster, 1..=3, Duration::from_millis(40));
    let load = Arc::clone(&traffic.load);
    let first_term = cluster.max_term().await;
    let params = env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();

    // 1. The leader cut off from both followers as the claim window of a loaded session opens.
    wait_height(&env.chain, s.claim_open, limit).await;
    let (old, term) = cluster.leader(0, limit).await;
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let t0 = Instant::now();
    proxies.isolate(old);
    let (new, new_term) = cluster.leader_among(&majority, term + 1, Duration::from_secs(10)).await;
    let elected = t0.elapsed();
    cluster.miner_leads(new, Duration::from_secs(15)).await;
    let active = t0.elapsed();
    let ready_url = cluster.proc(old).ready_url.clone();
    let (code, reason) = poll(
        "isolated old leader reports not ready",
        Duration::from_secs(5),
        || async { http_get_status(&ready_url).await.filter(|(code, _)| *code == 503) },
    )
    .await;
    let not_ready = t0.elapsed();
    assert!(reason.contains("no_quorum"), "{code}: {reason}");
    let old_status = cluster.status(old).await.unwrap();
    assert!(!old_status.is_leader, "{old_status:?}");
    // From here on the old leader cannot confirm its leadership: its miner must not submit.
    let old_metrics = cluster.proc(old).metrics_url.clone();
    let submitted_at_cut = submitted(&scrape(&old_metrics).await);
    let old_served_at_cut = served_by(&load, &[old]);
    let majority_served_at_cut = served_by(&load, &majority);
    println!(
        "partition: leader {old} (term {term}) cut off → node {new} elected in term {new_term} after {} ms, its \
         miner leading after {} ms; node {old} /ready 503 after {} ms: {}; proxies {:?}",
        elected.as_millis(),
        active.as_millis(),
        not_ready.as_millis(),
        reason.trim(),
        proxies.stats()
    );
    // Held through the claim window: the new leader claims the session, the majority keeps serving.
    wait_height(&env.chain, s.claim_close, limit).await;
    poll("the majority serves relays", limit, || async {
        (served_by(&load, &majority) >= majority_served_at_cut + 20).then_some(())
    })
    .await;
    let old_status = cluster.status(old).await.unwrap();
    assert_eq!(old_status.term, term, "the isolated node's term moved: {old_status:?}");
    assert!(!old_status.is_leader, "{old_status:?}");
    assert_eq!(
        submitted(&scrape(&old_metrics).await),
        submitted_at_cut,
        "the isolated old leader submitted while cut off"
    );
    let old_served_isolated = served_by(&load, &[old]) - old_served_at_cut;
    println!(
        "claim window closed with node {old} cut off: proxies {:?}",
        proxies.stats()
    );

    // Healed: the old leader follows the new one and catches up, without an election. Nothing sent to it is
    // left waiting in it by then (module docs): a relay of the next session it still retried would commit after
    // that session's claim.
    traffic.pause(old, limit).await;
    let t_heal = Instant::now();
    proxies.rejoin(old);
    traffic.resume(old);
    let rejoined = cluster
        .await_status(old, "old leader follows the new one", limit, |s| {
            (s.leader_id == Some(new) && s.state == "Follower").then(|| s.clone())
        })
        .await;
    let rejoin = t_heal.elapsed();
    let partition_terms = new_term - term;
    cluster.caught_up(old, limit).await;
    let caught_up = t_heal.elapsed();
    assert_eq!(rejoined.term, new_term, "{rejoined:?}");
    assert_eq!(
        cluster.leader(0, limit).await,
        (new, new_term),
        "healing moved the leader"
    );
    poll("healed node ready again", Duration::from_secs(5), || async {
        http_get_status(&ready_url).await.filter(|(code, _)| *code == 200)
    })
    .await;
    println!(
        "healed: node {old} follows node {new} after {} ms, caught up after {} ms; relays it served while cut off: \
         {old_served_isolated}",
        rejoin.as_millis(),
        caught_up.as_millis()
    );

    // 2. A follower cut off: the leader and the other follower keep serving, nobody campaigns.
    let (leader, term) = cluster.leader(0, limit).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let serving: Vec<u64> = (1..=3).filter(|id| *id != follower).collect();
    proxies.isolate(follower);
    let served_at_cut = served_by(&load, &serving);
    let h = env.chain.height();
    poll("two nodes serve with a follower cut off", limit, || async {
        (served_by(&load, &serving) >= served_at_cut + 20).then_some(())
    })
    .await;
    // Several election timeouts pass (3 blocks) without a term change anywhere.
    wait_height(&env.chain, h + 3, limit).await;
    assert_eq!(
        cluster.leader(0, limit).await,
        (leader, term),
        "a follower's partition moved the leader"
    );
    let f_status = cluster.status(follower).await.unwrap();
    assert_eq!(f_status.term, term, "the cut-off follower's term moved: {f_status:?}");
    // It cannot reach the leader, so it cannot forward relays: /ready says so (and recovers after the heal).
    let f_ready_url = cluster.proc(follower).ready_url.clone();
    let f_ready = poll("cut-off follower reports not ready", limit, || async {
        http_get_status(&f_ready_url).await.filter(|(code, _)| *code == 503)
    })
    .await;
    proxies.rejoin(follower);
    cluster.caught_up(follower, limit).await;
    poll("healed follower ready again", limit, || async {
        http_get_status(&f_ready_url).await.filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(
        cluster.leader(0, limit).await,
        (leader, term),
        "healing a follower moved the leader"
    );
    println!("follower {follower} cut off for 3 blocks: leader {leader} kept term {term}; its /ready said {f_ready:?}");

    // Load through the current session, then let every served session settle.
    let last = SessionWindows::new(&params, env.chain.height()).unwrap();
    wait_height(&env.chain, last.end + 1, limit).await;
    let last_term = cluster.max_term().await;
    let (load, submitters) = traffic.finish(&env, &params).await;
    // Settlement counters: no process died, so every node's survive; wait until they include every settlement
    // the chain made (the leader counts at its next block), then a few blocks more, so that a second count of a
    // session (another leader, a later block) would show too.
    let t_count = Instant::now();
    let (on_chain, _) = chain_settled(&env.chain, 0);
    let counted_by = await_counted(limit, &ByStatus::default(), &on_chain, || cluster.metrics()).await;
    wait_height(&env.chain, env.chain.height() + 2, limit).await;
    let metrics = cluster.metrics().await;
    let count_wait = t_count.elapsed();
    let stats = proxies.stats();
    drop(cluster);

    println!(
        "load: {} sent, {} served (per node {:?}), {} refused, {} failed (per node {:?}; last error: {:?}); {} \
         sessions; proxies {stats:?}; submitters by term {:?}; terms {first_term} → {last_term}; total {} s",
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
    assert!(load.served.len() >= 2, "too few sessions served: {:?}", load.served);
    // Two submitters in one term explain rejected or duplicate claims best: asserted first.
    submitters.assert_one_per_term();
    crate::support::print_miner_errors(&metrics);
    print_settled_series(&metrics);
    assert_claims(&env.chain, &load.served, load.unanswered(), Proofs::EveryClaim);
    // Each settlement counted exactly once across the nodes and the leaders (partitions, no deaths: nothing may be
    // missed), by status and relays, as the chain settled it (`src/miner/driver/settled.rs` module docs).
    let counted = cluster_settled(&metrics);
    println!(
        "settlements: chain {on_chain:?}; counted over the nodes {counted:?} (when first covered: {:?}); waited {} ms \
         after the load's last settlement",
        cluster_settled(&counted_by),
        count_wait.as_millis()
    );
    assert!(on_chain.total_claims() >= 2, "too few settlements: {on_chain:?}");
    assert_eq!(
        chain_settled(&env.chain, 0).0,
        on_chain,
        "the chain settled more meanwhile"
    );
    assert_eq!(
        counted, on_chain,
        "settlement counters summed over the nodes ≠ the chain's settlements"
    );
    assert_nodes_lost_nothing(&metrics);
    assert!(stats.dropped + stats.blackholed > 0, "the cuts cut nothing: {stats:?}");
    assert_eq!(
        last_term - first_term,
        partition_terms,
        "term changes beyond the partition's election"
    );
    assert!(
        elected <= Duration::from_secs(2),
        "election after the cut took {elected:?}"
    );
    assert!(active <= Duration::from_secs(5), "miner leading after {active:?}");
}
