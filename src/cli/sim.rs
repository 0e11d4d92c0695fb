//! `relay-miner sim`: the local chain simulator as a standalone node (gRPC + CometBFT RPC + websocket, a block
//! timer, and the demo backend) for demos and manual testing of a relay miner pointed at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sim::backend::BackendConfig;
use crate::sim::chain::{Genesis, SimChain, actor};
use crate::sim::{BlockTimer, SimNode, SimNodeConfig};

/// The demo genesis written to `--genesis` when that file does not exist (the same text as the repository's
/// `config/sim-genesis.yaml`).
pub const DEMO_GENESIS: &str = include_str!("../../config/sim-genesis.yaml");

/// Options of `relay-miner sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Genesis YAML (services, applications, gateways, suppliers, params). Written with a commented demo genesis
    /// if it does not exist.
    #[arg(long, default_value = "config/sim-genesis.yaml")]
    pub genesis: PathBuf,
    /// gRPC listen address (pocket/cosmos queries and txs).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub grpc_addr: SocketAddr,
    /// CometBFT RPC listen address (HTTP and /websocket).
    #[arg(long, default_value = "127.0.0.1:26657")]
    pub rpc_addr: SocketAddr,
    /// Block interval in milliseconds (default: the genesis `block_time_ms`).
    #[arg(long)]
    pub block_time_ms: Option<u64>,
    /// Demo backend listen address (JSON-RPC, REST, WebSocket, gRPC, SSE, NDJSON).
    #[arg(long, default_value = "127.0.0.1:8545")]
    pub backend_addr: SocketAddr,
    /// Do not start the demo backend.
    #[arg(long)]
    pub no_backend: bool,
    /// The node's `minimum-gas-prices`, as in a node's app.toml (poktroll's `pocketd init` writes `1upokt`):
    /// CheckTx refuses a lower fee with code 13. Default: none, as poktroll's localnet.
    #[arg(long, default_value = "")]
    pub minimum_gas_prices: String,
}

/// Why the genesis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SimCliError {
    /// The demo genesis could not be written.
    #[error("cannot write the demo genesis to {path}: {source}")]
    WriteGenesis {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The genesis is unreadable or invalid.
    #[error("genesis {path}: {source}")]
    Genesis {
        /// The file.
        path: String,
        /// What is wrong (names the key).
        source: crate::sim::chain::genesis::GenesisError,
    },
    /// `--block-time-ms 0`.
    #[error("--block-time-ms must be ≥ 1")]
    BlockTime,
    /// `--minimum-gas-prices` does not parse.
    #[error("--minimum-gas-prices: {0}")]
    MinimumGasPrices(String),
}

/// Loads `path`, writing [`DEMO_GENESIS`] there first if it does not exist; returns the genesis and whether it
/// was written.
pub fn load_or_write_genesis(path: &Path) -> Result<(Genesis, bool), SimCliError> {
    let written = if path.exists() {
        false
    } else {
        let write = |source| SimCliError::WriteGenesis {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        std::fs::write(path, DEMO_GENESIS).map_err(write)?;
        true
    };
    let genesis = Genesis::load(path).map_err(|source| SimCliError::Genesis {
        path: path.display().to_string(),
        source,
    })?;
    Ok((genesis, written))
}

/// Builds the chain and node config from the arguments.
pub fn prepare(args: &SimArgs) -> Result<(SimChain, SimNodeConfig, bool), SimCliError> {
    let (mut genesis, written) = load_or_write_genesis(&args.genesis)?;
    if let Some(ms) = args.block_time_ms {
        if ms == 0 {
            return Err(SimCliError::BlockTime);
        }
        genesis.block_time_ms = ms;
    }
    let chain = SimChain::new(genesis).map_err(|source| SimCliError::Genesis {
        path: args.genesis.display().to_string(),
        source,
    })?;
    chain
        .set_minimum_gas_prices(&args.minimum_gas_prices)
        .map_err(SimCliError::MinimumGasPrices)?;
    let config = SimNodeConfig {
        grpc_addr: args.grpc_addr,
        rpc_addr: args.rpc_addr,
        blocks: BlockTimer::Genesis,
        backend: (!args.no_backend).then(|| BackendConfig {
            listen: args.backend_addr,
            ..BackendConfig::default()
        }),
        ..SimNodeConfig::default()
    };
    Ok((chain, config, written))
}

/// What the operator needs to point a relay miner, gateway or load generator at the node.
fn banner(node: &SimNode, genesis_path: &Path) -> String {
    let s = node.chain().state();
    let g = &s.genesis;
    let mut out = format!(
        "relay-miner sim: chain `{}` from {}, height {}, a block every {} ms\n",
        g.chain_id,
        genesis_path.display(),
        s.height,
        g.block_time_ms
    );
    out += &format!("  gRPC          {}\n", node.grpc_url());
    out += &format!("  CometBFT RPC  {}\n", node.rpc_url());
    out += &format!("  websocket     {}\n", node.websocket_url());
    match node.backend() {
        Some(b) => out += &format!("  demo backend  {} (websocket {})\n", b.http_url(), b.ws_url()),
        None => out += "  demo backend  not started (--no-backend)\n",
    }
    let address = |key_hex: &str| actor(key_hex).map(|(_, a, _)| a).unwrap_or_default();
    for sup in &g.suppliers {
        let services: Vec<&str> = sup.services.iter().map(|s| s.service_id.as_str()).collect();
        out += &format!("  supplier      {} {:?}\n", address(&sup.key_hex), services);
    }
    for app in &g.applications {
        out += &format!("  application   {} {:?}\n", address(&app.key_hex), app.services);
    }
    for gw in &g.gateways {
        out += &format!("  gateway       {}\n", address(&gw.key_hex));
    }
    out += "Ctrl-C or SIGTERM stops it.";
    out
}

async fn terminated() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the simulator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the simulator until Ctrl-C/SIGTERM; returns the exit code (1 for a bad genesis, reported on stderr).
pub async fn run(args: SimArgs) -> anyhow::Result<i32> {
    let (chain, config, written) = match prepare(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    if written {
        println!("wrote the demo genesis to {}", args.genesis.display());
    }
    let node = SimNode::start(chain, config).await?;
    println!("{}", banner(&node, &args.genesis));
    terminated().await;
    tracing::info!("stopping the simulator");
    let shutdown = tokio::time::timeout(Duration::from_secs(15), node.shutdown()).await;
    match shutdown {
        Ok(r) => r?,
        Err(_) => tracing::warn!("simulator shutdown took too long; exiting anyway"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(genesis: PathBuf) -> SimArgs {
        SimArgs {
            genesis,
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            rpc_addr: "127.0.0.1:0".parse().unwrap(),
            block_time_ms: Some(20),
            backend_addr: "127.0.0.1:0".parse().unwrap(),
            no_backend: false,
            minimum_gas_prices: String::new(),
        }
    }

    #[test]
    fn missing_genesis_is_written_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/sim-genesis.yaml");
        let (chain, config, written) = prepare(&args(path.clone())).unwrap();
        assert!(written);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), DEMO_GENESIS);
        assert_eq!(chain.state().genesis.block_time_ms, 20);
        assert!(config.backend.is_some());
        let (_, _, written) = prepare(&args(path)).unwrap();
        assert!(!written);
    }

    #[test]
    fn genesis_errors_name_the_file_key_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.yaml");
        std::fs::write(
            &path,
            DEMO_GENESIS.replace("compute_units_per_relay: 5", "compute_units_per_relay: -5"),
        )
        .unwrap();
        let e = prepare(&args(path.clone())).unwrap_err().to_string();
        assert!(
            e.contains("g.yaml") && e.contains("services[1].compute_units_per_relay"),
            "{e}"
        );
        std::fs::write(&path, DEMO_GENESIS.replace("delegate_to: [0]", "delegate_to: [3]")).unwrap();
        let e = prepare(&args(path)).unwrap_err().to_string();
        assert!(
            e.contains("applications[0].delegate_to") && e.contains("no gateway 3"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn node_serves_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, config, _) = prepare(&args(dir.path().join("g.yaml"))).unwrap();
        let node = SimNode::start(chain, config).await.unwrap();
        let text = banner(&node, Path::new("g.yaml"));
        assert!(
            text.contains(&node.grpc_url()) && text.contains(&node.rpc_url()),
            "{text}"
        );
        assert!(text.contains("supplier      pokt1"), "{text}");
        let comet = crate::chain::comet::CometClient::new(&node.rpc_url()).unwrap();
        let status = comet.status().await.unwrap();
        assert_eq!(status.network, "pocket");
        node.shutdown().await.unwrap();
    }
}
