//! One `relay-miner run` process against the simulator in this process (`miner_process`, `full_disk`): the
//! network ([`start_net`]: chain, gRPC/RPC node, demo backend, keys and config file), the child process
//! ([`spawn_miner`], killed when dropped) and the load ([`load_until`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_miner::chain::query::ChainClient;
use relay_miner::cli::demo_genesis;
use relay_miner::loadgen::{LoadGen, Outcome};
use relay_miner::sim::BlockTimer;
use relay_miner::sim::chain::SimChain;
use storage::suite::Tmpfs;

use super::claims::Served;
use super::{demo_args, free_port, http_get};

pub struct Net {
    pub chain: SimChain,
    pub metrics_url: String,
    pub config: PathBuf,
    pub keys: PathBuf,
    pub supplier_keys: Vec<String>,
    pub client: Arc<ChainClient>,
    pub loadgen: LoadGen,
    /// The data directory's tmpfs ([`NetOpts::data_tmpfs`]); unmounted before the temp dir is removed.
    pub data: Option<Tmpfs>,
    _node: relay_miner::sim::SimNode,
    _dir: tempfile::TempDir,
    /// Held while the network lives: process tests never share the two cores with a raft cluster's test or with
    /// each other (a CI run once starved a cluster's proxies and followers into a failed election).
    _exclusive: tokio::sync::MutexGuard<'static, ()>,
}

#[derive(Clone, Copy)]
pub struct NetOpts {
    pub block_time_ms: u64,
    pub proof_probability: f64,
    pub unordered: bool,
    /// Only the first `n` suppliers in the initial keys file (hot reload on); `None` = all, reload off.
    pub initial_suppliers: Option<usize>,
    /// Redis URL for `storage.mode: redis`; `None` = embedded.
    pub redis_url: Option<&'static str>,
    /// The test produces every block itself ([`BlockTimer::Manual`]) instead of the genesis block timer.
    pub manual_blocks: bool,
    /// The services' backend (e.g. a [`super::gate::Gate`]'s URL); `None` = the simulator's demo backend.
    pub backend_url: Option<&'static str>,
    /// Put the data directory on a tmpfs of this size (e.g. `"64M"`) to fill it up; needs root.
    pub data_tmpfs: Option<&'static str>,
}

impl NetOpts {
    /// Blocks every `block_time_ms` by the genesis timer, no proofs, unordered sends, every supplier, embedded
    /// storage on the temp dir, the demo backend: change what a test needs with `..NetOpts::blocks_every(ms)`.
    pub fn blocks_every(block_time_ms: u64) -> Self {
        Self {
            block_time_ms,
            proof_probability: 0.0,
            unordered: true,
            initial_suppliers: None,
            redis_url: None,
            manual_blocks: false,
            backend_url: None,
            data_tmpfs: None,
        }
    }
}

pub fn write_keys(path: &Path, keys: &[String]) {
    let mut text = String::from("keys:\n");
    for k in keys {
        text.push_str(&format!("  - {k}\n"));
    }
    // Atomic replace, as an operator's tooling should do it: the reloader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub async fn start_net(opts: NetOpts) -> Net {
    let exclusive = super::CLUSTER_TESTS.lock().await;
    let NetOpts {
        block_time_ms,
        proof_probability,
        unordered,
        initial_suppliers,
        redis_url,
        manual_blocks,
        backend_url,
        data_tmpfs,
    } = opts;
    let storage_mode = match redis_url {
        Some(url) => format!("redis\n  redis:\n    url: {url}"),
        None => "embedded".to_string(),
    };
    let relay_port = free_port();
    let metrics_port = free_port();
    let relay_url = format!("http://127.0.0.1:{relay_port}");
    let args = demo_args(block_time_ms, proof_probability);
    let genesis = demo_genesis(&args, &relay_url);
    let chain = SimChain::new(genesis.clone()).unwrap();
    let node = relay_miner::sim::SimNode::start(
        chain.clone(),
        relay_miner::sim::SimNodeConfig {
            backend: Some(relay_miner::sim::backend::BackendConfig::default()),
            blocks: if manual_blocks {
                BlockTimer::Manual
            } else {
                BlockTimer::Genesis
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let grpc_url = node.grpc_url();
    let rpc_url = node.rpc_url();
    let backend_url = match backend_url {
        Some(url) => url.to_string(),
        None => node.backend_url().unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = data_tmpfs.map(|size| Tmpfs::mount(&dir.path().join("data"), size));
    let keys = dir.path().join("keys.yaml");
    let supplier_keys: Vec<String> = genesis.suppliers.iter().map(|s| s.key_hex.clone()).collect();
    let initial = initial_suppliers.unwrap_or(supplier_keys.len());
    write_keys(&keys, &supplier_keys[..initial]);
    let hot_reload = initial_suppliers.is_some();
    let config = dir.path().join("relay-miner.yaml");
    std::fs::write(
        &config,
        format!(
            "listen_addr: 127.0.0.1:{relay_port}
storage:
  data_dir: {data}
  mode: {storage_mode}
pocket_node:
  query_node_rpc_url: {rpc_url}
  query_node_grpc_url: {grpc_url}
  chain_id: {chain_id}
keys:
  keys_file: {keys}
  hot_reload: {hot_reload}
default_validation_mode: eager
services:
  anvil:
    default_backend: jsonrpc
    backends:
      jsonrpc:
        url: {backend}
metrics:
  addr: 127.0.0.1:{metrics_port}
health_check:
  addr: 127.0.0.1:{metrics_port}
transaction:
  unordered: {unordered}
logging:
  level: warn
  format: text
",
            data = dir.path().join("data").display(),
            chain_id = genesis.chain_id,
            keys = keys.display(),
            backend = backend_url,
        ),
    )
    .unwrap();
    let client = Arc::new(ChainClient::new(&grpc_url, Duration::from_secs(5)).unwrap());
    let loadgen = LoadGen::new(&genesis, Arc::clone(&client), &relay_url, "anvil").unwrap();
    Net {
        chain,
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        config,
        keys,
        supplier_keys,
        client,
        loadgen,
        data,
        _node: node,
        _dir: dir,
        _exclusive: exclusive,
    }
}

/// A `relay-miner` child process, killed (SIGKILL) and reaped when dropped: a failed assertion must not leave
/// it running against a simulator that is gone (seen: an orphan retrying its chain connection for minutes).
pub struct MinerProcess(Child);

impl std::ops::Deref for MinerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for MinerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for MinerProcess {
    fn drop(&mut self) {
        // Already killed and reaped by the test on its happy path: both calls are then no-ops.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_miner(config: &Path) -> MinerProcess {
    spawn_miner_with(config, &[], Stdio::inherit())
}

/// [`spawn_miner`] with extra environment variables (test faults) and its stderr (the log) sent to `stderr`.
pub fn spawn_miner_with(config: &Path, envs: &[(&str, &str)], stderr: Stdio) -> MinerProcess {
    MinerProcess(
        Command::new(env!("CARGO_BIN_EXE_relay-miner"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

pub async fn wait_up(net: &Net) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&net.metrics_url).await.is_none() {
        assert!(Instant::now() < deadline, "relay-miner did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends relays until the chain reaches `until` (exclusive); counts served relays per (supplier, session).
pub async fn load_until(net: &Net, until: i64, n: &mut u64, served: &mut Served) {
    while net.chain.height() < until {
        *n += 1;
        if let Outcome::Served {
            supplier, session_id, ..
        } = net.loadgen.send(*n, net.chain.height()).await
        {
            *served.entry((supplier, session_id)).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}
