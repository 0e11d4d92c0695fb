//! `transaction.claim_delay_blocks` against the chain's claim window, over real sockets to the simulator: a delay
//! that leaves no re-send of a claim before `claim_close − submission_buffer_blocks` is refused by
//! `relay-miner validate` and by `relay-miner run`, naming the key, the delay and the window; a delay that leaves
//! one is accepted.

use std::path::Path;
use std::time::Duration;

use relay_miner::sim::SimNode;
use relay_miner::sim::chain::Genesis;

use super::chain_id::relay_miner;

/// The demo genesis's claim window (`claim_window_close_offset_blocks`).
const WINDOW: u64 = 4;

fn write_config(path: &Path, dir: &Path, node: &SimNode, chain_id: &str, claim_delay_blocks: u64) {
    let transaction =
        format!("transaction:\n  submission_buffer_blocks: 1\n  claim_delay_blocks: {claim_delay_blocks}\n");
    super::chain_id::write_config_with(path, dir, node, chain_id, &transaction);
}

fn assert_names_the_delay(text: &str, delay: u64) {
    for part in [
        "transaction.claim_delay_blocks".to_string(),
        format!("{delay} leaves 1 claim send"),
        format!("claim window of {WINDOW} blocks"),
        "at most 2".to_string(),
    ] {
        assert!(text.contains(&part), "`{part}` missing from: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_run_refuse_a_claim_delay_that_leaves_no_resend_in_the_chains_claim_window() {
    let genesis = Genesis::from_yaml(relay_miner::cli::DEMO_GENESIS).unwrap();
    assert_eq!(genesis.shared_params.claim_window_close_offset_blocks, WINDOW);
    let chain_id = genesis.chain_id.clone();
    let (node, dir) = super::chain_id::manual_node(genesis).await;
    let config = dir.path().join("relay-miner.yaml");

    // 3 blocks after the window opens is claim_close − 1 = claim_close − buffer: the only send. 100 (the config's
    // own bound) is clamped there too.
    for delay in [3, 100] {
        write_config(&config, dir.path(), &node, &chain_id, delay);
        let out = relay_miner(&["validate"], &config).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert_names_the_delay(&stdout, delay);
    }

    // `run` refuses before it serves anything; the deadline turns a run that starts anyway into a failure.
    write_config(&config, dir.path(), &node, &chain_id, 3);
    let child = relay_miner(&["run"], &config).spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("`relay-miner run` started with a claim delay that leaves no re-send")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_names_the_delay(&stderr, 3);

    // Two sends (claim_close − 2 and claim_close − 1) fit with a delay of 2.
    write_config(&config, dir.path(), &node, &chain_id, 2);
    let out = relay_miner(&["validate"], &config).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("valid (1 services"), "{stdout}");
}
