//! Raft HA when the leader's **miner loop hangs** (real processes): three `relay-miner run --storage raft`
//! children; the leader's miner stops where it awaits (the test-only fault hook `RELAY_MINER_TEST_HANG_MINER_FILE`,
//! `src/node/miner_watchdog/fault.rs`) as a loaded session starts, while its chain reads, its raft core and its
//! relayer go on. Raft keeps it leading and only the raft leader can hold the miner lease, so nobody would claim or
//! prove that session. The leader's watchdog sees no progress of its miner for the hung bound
//! (`RELAY_MINER_TEST_HUNG_AFTER_MS`: the real one is minutes), publishes itself stalled and hands the leadership
//! to a voter whose miner runs; that node claims and proves the session: every served relay claimed, each session
//! claimed and proven once, one submitter per term, the leadership not moving again, and the hung node counts its
//! hand-off (`ha_miner_leadership_hand_offs_total{reason="miner_hung"}`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::raft_miner_handoff::{await_hand_off, next_session, settle_and_check};
use crate::support::cluster::{Cluster, start_env, tail};
use crate::support::traffic::Traffic;
use crate::support::{CLUSTER_TESTS, raft_block_ms};

/// The hung bound of the nodes: far above an iteration of a working miner here (a 100 ms tick; seconds on a
/// loaded 2-core host), and short enough for the hand-off to come before the claim window closes (the session is
/// 4 blocks of 2 s, the claim window 4 more).
const HUNG_AFTER_MS: u64 = 7000;

/// The file, next to a node's config, whose existence hangs that node's miner.
const HANG_FILE: &str = "hang-miner";

/// A script running the `relay-miner` binary with the test faults armed: each node's miner hangs once the
/// [`HANG_FILE`] next to its config (`run --config <path>`: the third argument) exists.
fn faulty_binary(dir: &Path) -> PathBuf {
    let script = dir.join("relay-miner-with-faults.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nRELAY_MINER_TEST_HANG_MINER_FILE=\"$(dirname \"$3\")/{}\" RELAY_MINER_TEST_HUNG_AFTER_MS={} \
             exec {} \"$@\"\n",
            HANG_FILE,
            HUNG_AFTER_MS,
            env!("CARGO_BIN_EXE_relay-miner"),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_whose_miner_hangs_hands_off_and_the_session_is_claimed_and_proven() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let env = start_env(raft_block_ms(), 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    let mut cluster = Cluster::new(faulty_binary(env.dir.path()));
    cluster.add_voters(&env, 3, level, |_| {});
    cluster.start_all().await;
    let limit = Duration::from_secs(30);
    let (old, term) = cluster.leading(limit).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();

    // The load goes to every node (the hung leader's relayer keeps serving), from the next session on: the one
    // the leader's miner hangs at the start of.
    let (params, s) = next_session(&env, limit).await;
    let traffic = Traffic::start(&env, &cluster, 1..=3, Duration::from_millis(40));
    let t0 = Instant::now();
    let config_dir = cluster.proc(old).config.parent().unwrap().to_path_buf();
    std::fs::write(config_dir.join(HANG_FILE), b"").unwrap();
    let hung_at = env.chain.height();

    let h = await_hand_off(&env, &cluster, old, &others, term + 1, "miner_hung", t0).await;
    println!(
        "leader {old} (term {term}): miner hung at height {hung_at}; {}",
        h.describe(&s)
    );
    let log = std::fs::read_to_string(&cluster.proc(old).log).unwrap();
    assert!(
        log.contains("test fault: the miner loop hangs"),
        "node {old}'s miner did not hang\n{}",
        tail(&cluster.proc(old).log)
    );
    // Anything else that moves the leadership first (an election on a starved host) is no test of the watchdog.
    let counted: Vec<&str> = h
        .old_metrics
        .lines()
        .filter(|l| l.starts_with("ha_miner_leadership_hand_offs_total"))
        .collect();
    assert_eq!(
        h.counted,
        1.0,
        "node {old}'s miner_hung hand-off count ({counted:?})\n{}",
        tail(&cluster.proc(old).log)
    );
    // The watchdog looks at the miner once a second: the last progress it saw may precede the hang by that.
    assert!(
        h.after >= Duration::from_millis(HUNG_AFTER_MS - 1000),
        "handed off before the hung bound: {:?}",
        h.after
    );
    h.assert_before_claim_close(&s);

    settle_and_check(&env, cluster, traffic, &params, &s, limit, started, h.new_term).await;
}
