//! `pocket_node.chain_id` against the node's chain id, over real sockets to the simulator: a config whose chain
//! id the node does not serve is refused by `relay-miner validate` and by `relay-miner run` (every tx would be
//! signed for the wrong chain and fail its signature check while Simulate passes), naming the key, the
//! configured value and the node's; the node's own id is accepted.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use relay_miner::sim::chain::{Genesis, SimChain};
use relay_miner::sim::{BlockTimer, SimNode, SimNodeConfig};

const NODE_CHAIN_ID: &str = "pocket-chain-id-it";

fn write_config(path: &Path, dir: &Path, node: &SimNode, chain_id: &str) {
    write_config_with(path, dir, node, chain_id, "");
}

/// The config of [`write_config`] with the YAML `extra` (top-level sections) appended.
pub(crate) fn write_config_with(path: &Path, dir: &Path, node: &SimNode, chain_id: &str, extra: &str) {
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
    std::fs::write(path, format!("{yaml}{extra}")).unwrap();
}

/// A simulator node on `genesis` whose blocks are produced only by hand, and a directory holding a supplier keys
/// file (`keys.yaml`) for the configs of [`write_config_with`].
pub(crate) async fn manual_node(genesis: Genesis) -> (SimNode, tempfile::TempDir) {
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
    (node, dir)
}

pub(crate) fn relay_miner(args: &[&str], config: &Path) -> tokio::process::Command {
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

/// The refusal names the key, the configured chain id and the node's.
fn assert_names_the_mismatch(text: &str) {
    for part in ["pocket_node.chain_id", "`pocket`", &format!("`{NODE_CHAIN_ID}`")] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_run_refuse_a_chain_id_the_node_does_not_serve() {
    let mut genesis = Genesis::from_yaml(relay_miner::cli::DEMO_GENESIS).unwrap();
    genesis.chain_id = NODE_CHAIN_ID.into();
    let (node, dir) = manual_node(genesis).await;
    let config = dir.path().join("relay-miner.yaml");

    // `pocket` (the default, and the example config's) is not this node's chain.
    write_config(&config, dir.path(), &node, "pocket");
    let out = relay_miner(&["validate"], &config).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_names_the_mismatch(&stdout);

    // `run` refuses before it serves anything; the deadline turns a run that starts anyway into a failure.
    let child = relay_miner(&["run"], &config).spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("`relay-miner run` started against a node of another chain")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_names_the_mismatch(&stderr);

    // The node's own chain id passes.
    write_config(&config, dir.path(), &node, NODE_CHAIN_ID);
    let out = relay_miner(&["validate"], &config).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("valid (1 services"), "{stdout}");
}
