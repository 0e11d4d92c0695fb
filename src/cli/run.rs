//! `relay-miner run --config FILE`: the production process (relayer + miner + telemetry) on the configured
//! storage; `--storage raft --node-id N --peers 1=host:port,…` overrides the raft settings of the file.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::{Config, LogFormat, StorageMode};
use crate::node::{Node, RaftOverrides, Role, shutdown_signal};

/// Flags of `relay-miner run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The YAML config file (see `config/relay-miner.example.yaml`).
    #[arg(long)]
    pub config: PathBuf,
    /// Overrides `storage.mode`: embedded, raft or redis.
    #[arg(long, value_parser = parse_mode)]
    pub storage: Option<StorageMode>,
    /// Overrides `storage.raft.node_id`.
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Overrides `storage.raft.peers`: `1=host:port,2=host:port,…` (every voter, this node included).
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Overrides `storage.raft.listen_addr`.
    #[arg(long)]
    pub raft_addr: Option<String>,
    /// Overrides `storage.data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<StorageMode, String> {
    match s {
        "embedded" => Ok(StorageMode::Embedded),
        "raft" => Ok(StorageMode::Raft),
        "redis" => Ok(StorageMode::Redis),
        other => Err(format!("unknown storage mode `{other}` (embedded, raft, redis)")),
    }
}

/// Loads the config (errors name the key), sets up logging, runs `role` until SIGTERM/Ctrl-C.
pub fn run(args: RunArgs, role: Role) -> anyhow::Result<i32> {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return Ok(2);
        }
    };
    crate::telemetry::init_tracing(&config.logging.level, config.logging.format == LogFormat::Json);
    let overrides = RaftOverrides {
        mode: args.storage,
        node_id: args.node_id,
        peers: args.peers,
        listen_addr: args.raft_addr,
        data_dir: args.data_dir,
        role,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let code = runtime.block_on(async move {
        let node = match Node::start(config, overrides).await {
            Ok(node) => node,
            Err(e) => {
                tracing::error!(error = %e, "relay miner failed to start");
                eprintln!("relay-miner: {e}");
                return Ok(2);
            }
        };
        match node.relay_addr {
            Some(relays) => println!(
                "relay-miner {}: relays on {relays}, metrics on {:?}, health on {:?}",
                role.command(),
                node.metrics_addr,
                node.health_addr
            ),
            None => println!(
                "relay-miner {}: no relays served here, metrics on {:?}, health on {:?}",
                role.command(),
                node.metrics_addr,
                node.health_addr
            ),
        }
        Ok(node.run_until(shutdown_signal()).await)
    });
    // Dropping the runtime would wait without limit for its blocking tasks (storage I/O stuck in a failed disk):
    // the node has stopped, so the process exits after at most this.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_LIMIT);
    code
}

/// How long the process waits for the main runtime's blocking tasks once the node stopped.
const RUNTIME_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
