//! `transaction.claim_delay_blocks` against the chain's claim window, over real sockets to the simulator: a delay
//! that leaves no re-send of a claim before `claim_close − submission_buffer_blocks` is refused by
//! `relay-miner validate` and by `relay-miner run`, naming the key, the delay and the window; a delay that leaves
//! one is accepted.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use relay_miner::sim::chain::{Genesis, SimChain};
use relay_miner::sim::{BlockTimer, SimNode, SimNodeConfig};

/// The demo genesis's claim window (`claim_window_close_offset_blocks`).
const WINDOW: u64 = 4;

fn write_config(path: &Path, dir: &Path, node: &SimNode, chain_id: &str, claim_delay_blocks: u64) {
    let yaml = format!(
        "listen_addr: 127.0.0.1:0
storage:
  data_dir: {data}
  mode: embedded
pocket_node:
  query_node_rpc_url: {rpc}
  query_node_grpc_url: {grpc}
  chain_id: {chain_id}
keys:
  keys_file: {keys}
  hot_reload: false
services:
  anvil:
    backends:
      jsonrpc:
        url: http://127.0.0.1:8545
transaction:
  submission_buffer_blocks: 1
  claim_delay_blocks: {claim_delay_blocks}
metrics:
  enabled: false
health_check:
  enabled: false
logging:
  level: warn
  format: text
",
        data = dir.join("data").display(),
        rpc = node.rpc_url(),
        grpc = node.grpc_url(),
        keys = dir.join("keys.yaml").display(),
    );
    std::fs::write(path, yaml).unwrap();
}

fn relay_miner(args: &[&str], config: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_relay-miner"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A `run` that wrongly starts is killed when the deadline drops it.
        .kill_on_drop(true);
    command
}

/// The refusal names the key, the delay and the chain's window.
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
    let node = SimNode::start(
        SimChain::new(genesis).unwrap(),
        SimNodeConfig {
            blocks: BlockTimer::Manual,
            ..SimNodeConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    crate::support::node::write_keys(&dir.path().join("keys.yaml"), &[hex::encode([1u8; 32])]);
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
