//! SIGTERM to a `relay-miner run` process (embedded storage) whose **miner loop hangs**: the stop must not wait
//! for the miner forever (an orchestrator would SIGKILL it at the end of its grace period with no line saying
//! why). The miner is hung through the test-only fault hook `RELAY_MINER_TEST_HANG_MINER_FILE`
//! (`src/node/miner_watchdog/fault.rs`) while its relayer serves; after SIGTERM the process abandons the miner at
//! `relay_miner::node::MINER_STOP_LIMIT`, logs an ERROR saying so, closes storage and exits with code 1. Nothing
//! the relayer answered is lost: restarted without the fault, the process claims every served relay.
//!
//! The chain is driven block by block (`BlockTimer::Manual`), so the session's claim window is still ahead after
//! the half-minute stop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay_miner::loadgen::Outcome;
use relay_miner::node::MINER_STOP_LIMIT;
use relay_miner::protocol::session::SessionWindows;

use crate::support::claims::{Proofs, Served, assert_claims, claimed_counts};
use crate::support::cluster::tail;
use crate::support::node::{NetOpts, spawn_miner, spawn_miner_with, start_net, wait_up};
use crate::support::{http_get, metric_sum};

/// The process's stop after SIGTERM: the miner's bound, and as much again for the rest (the relay drain, storage
/// close, a debug build on a loaded host).
const STOP_DEADLINE: Duration = Duration::from_secs(MINER_STOP_LIMIT.as_secs() * 2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hung_miner_exits_non_zero_within_the_bound_and_loses_nothing() {
    // The pace of the blocks the test produces once the process is restarted: a debug build on a loaded host must
    // still get its claim into the 4-block claim window.
    let block = Duration::from_millis(500);
    let net = start_net(NetOpts {
        manual_blocks: true,
        ..NetOpts::blocks_every(200)
    })
    .await;
    let dir = net.config.parent().unwrap().to_path_buf();
    let hang_file = dir.join("hang-miner");
    let log_path = dir.join("relay-miner.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut miner = spawn_miner_with(
        &net.config,
        &[("RELAY_MINER_TEST_HANG_MINER_FILE", hang_file.to_str().unwrap())],
        Stdio::from(log),
    );
    wait_up(&net).await;
    let params = net.chain.state().shared.clone();
    let height = net.chain.height();
    let session = SessionWindows::new(&params, height).unwrap();

    // Relays served while the chain stands inside the session.
    let mut served = Served::new();
    for n in 1..=20u64 {
        match net.loadgen.send(n, net.chain.height()).await {
            Outcome::Served {
                supplier, session_id, ..
            } => *served.entry((supplier, session_id)).or_default() += 1,
            other => panic!("relay {n} not served: {other:?}"),
        }
    }

    // The miner hangs at its next poll (every tick); the relayer goes on.
    std::fs::write(&hang_file, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("test fault: the miner loop hangs")
    {
        assert!(Instant::now() < deadline, "the miner did not hang\n{}", tail(&log_path));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the hung miner ingested (and acknowledged) before it hung: not delivered to the next process again.
    let ingested_before = metric_sum(
        &http_get(&net.metrics_url).await.unwrap_or_default(),
        "ha_miner_relays_consumed_from_stream_total",
        &[],
    );
    for n in 21..=30u64 {
        match net.loadgen.send(n, net.chain.height()).await {
            Outcome::Served {
                supplier, session_id, ..
            } => *served.entry((supplier, session_id)).or_default() += 1,
            other => panic!("relay {n} not served beside the hung miner: {other:?}"),
        }
    }

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(miner.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exit = loop {
        if let Some(exit) = miner.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < STOP_DEADLINE,
            "still running {STOP_DEADLINE:?} after SIGTERM (the stop waits for the hung miner)\n{}",
            tail(&log_path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stopped_after = signalled.elapsed();
    let text = std::fs::read_to_string(&log_path).unwrap();
    println!("SIGTERM with a hung miner: exited {exit:?} after {stopped_after:?}");
    assert_eq!(exit.code(), Some(1), "exit status\n{}", tail(&log_path));
    assert!(
        stopped_after >= MINER_STOP_LIMIT,
        "stopped after {stopped_after:?}, before the miner's bound"
    );
    let error = text
        .lines()
        .find(|l| l.contains("the miner did not stop within the limit"))
        .unwrap_or_else(|| panic!("no ERROR naming the hung miner\n{}", tail(&log_path)));
    assert!(error.contains("ERROR"), "{error}");

    // Restarted without the fault, on the same store: every relay answered before the stop is claimed.
    assert_eq!(net.chain.height(), height, "only the test produces blocks");
    let mut miner = spawn_miner(&net.config);
    wait_up(&net).await;
    // The rest ingested (from the relay log the hung process left) before the chain moves on.
    let rest = served.values().sum::<u64>() as f64 - ingested_before;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http_get(&net.metrics_url).await.unwrap_or_default();
        if metric_sum(&metrics, "ha_miner_relays_consumed_from_stream_total", &[]) >= rest {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rest} relays not ingested after the restart ({ingested_before} before the hang):\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while net.chain.height() <= session.settlement
        || claimed_counts(&net.chain).len() < served.len()
        || net.chain.settlements().len() < served.len()
    {
        assert!(
            Instant::now() < deadline,
            "not claimed and settled within 60 s (chain at {}, session {session:?}): claimed {:?}, served {served:?}",
            net.chain.height(),
            claimed_counts(&net.chain)
        );
        net.chain.produce_block();
        tokio::time::sleep(block).await;
    }
    miner.kill().unwrap();
    miner.wait().unwrap();
    assert_claims(&net.chain, &served, 0, Proofs::None);
}
