//! `relay-miner raft recover-single --yes-i-lost-the-majority` on a real data dir (real processes): three
//! `relay-miner run --storage raft` children take a session's relays; all of them crash (SIGKILL) and two lose
//! their data dirs for good. The CLI, run on the survivor's config, makes it the single voter; started alone, it
//! leads and its miner claims and proves every relay the cluster served: each claimed and proven once, one
//! submitter per term. And the CLI refuses while the node runs (its files are open), changing nothing.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::raft_miner_handoff::{next_session, settle_and_check};
use crate::support::cluster::{Cluster, start_env, tail};
use crate::support::traffic::Traffic;
use crate::support::{CLUSTER_TESTS, raft_block_ms, wait_height};

/// Runs `relay-miner raft recover-single` on node `config`'s data dir, confirmed.
fn recover_single(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .args(["raft", "recover-single", "--yes-i-lost-the-majority", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// What a CLI run printed, for assertion messages.
fn printed(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_recover_single_on_the_survivors_dir_leads_alone_and_claims_every_relay() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let env = start_env(raft_block_ms(), 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info,raft=info";
    let mut cluster = Cluster::default();
    cluster.add_voters(&env, 3, level, |_| {});
    cluster.start_all().await;
    let limit = Duration::from_secs(30);
    let (leader, _) = cluster.leading(limit).await;
    // The survivor is a follower: what it holds came to it by replication.
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    let lost: Vec<u64> = (1..=3).filter(|id| *id != survivor).collect();
    let config = cluster.proc(survivor).config.clone();

    // Running: the CLI refuses (the node's files are open) and changes nothing.
    let refused = recover_single(&config);
    assert_eq!(refused.status.code(), Some(1), "{}", printed(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("open in another process") && stderr.contains("nothing changed"),
        "{}",
        printed(&refused)
    );
    cluster.expect_answering(survivor, limit).await;
    assert_eq!(cluster.status(survivor).await.unwrap().voters.len(), 3);

    // Relays of one session through every node, until two blocks into it.
    let (params, s) = next_session(&env, limit).await;
    let traffic = Traffic::start(&env, &cluster, 1..=3, Duration::from_millis(40));
    wait_height(&env.chain, s.start + 2, limit).await;
    for id in 1..=3 {
        traffic.pause(id, limit).await;
    }
    // Every served relay was committed before its answer; the survivor applied them all.
    cluster.caught_up(survivor, limit).await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in &lost {
        let data = cluster.proc(*id).config.parent().unwrap().join("data");
        std::fs::remove_dir_all(&data).unwrap();
    }
    let crashed_at = env.chain.height();

    let recovered = recover_single(&config);
    assert_eq!(recovered.status.code(), Some(0), "{}", printed(&recovered));
    assert!(
        String::from_utf8_lossy(&recovered.stdout).contains(&format!("new membership: voters [{survivor}]")),
        "{}",
        printed(&recovered)
    );

    // Alone (its config still lists the lost peers): it leads and its miner takes the lease.
    let t0 = Instant::now();
    cluster.start(survivor).await;
    let (now_leading, term) = cluster.leader_among(&[survivor], 0, limit).await;
    cluster.miner_leads(survivor, limit).await;
    let status = cluster.status(survivor).await.unwrap();
    let voters: Vec<u64> = status.voters.iter().map(|(id, _)| *id).collect();
    let leads_at = env.chain.height();
    println!(
        "node {survivor} recovered alone: crash at height {crashed_at}, leads term {term} {} ms after its start \
         (height {leads_at}); voters {voters:?}; session {}..{}, claim window {}..{}",
        t0.elapsed().as_millis(),
        s.start,
        s.end,
        s.claim_open,
        s.claim_close
    );
    assert_eq!(now_leading, survivor);
    assert_eq!(voters, vec![survivor], "{}", tail(&cluster.proc(survivor).log));
    assert!(
        leads_at < s.claim_close,
        "the survivor led after the claim window closed (height {leads_at})"
    );

    settle_and_check(&env, cluster, traffic, &params, &s, limit, started, term).await;
}
