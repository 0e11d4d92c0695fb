//! The simulator environment (chain, demo backend, keys and token files) and the `relay-miner run` child
//! processes on it: configs, start/kill/restart on the same data dir, the raft leader as the nodes see it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft::AdminClient;
use relay_miner::chain::query::ChainClient;
use relay_miner::cli::demo_genesis;
use relay_miner::sim::chain::{Genesis, SimChain};

use super::{demo_args, free_port, http_get, metric_sum, scrape, serve};

/// The cluster token every test node shares.
pub const TOKEN: &str = "chaos-test-cluster-token-0123456789";
/// The one service of the demo genesis.
pub const SERVICE: &str = "anvil";
/// `storage.raft.start_check_wait_ms` of every node: how long a starting raft node waits for a member that is
/// down before it starts with the answers it has (`raft::rollback`). Members that are up answer within
/// milliseconds; 10 s (the default) spent on every restart beside a stopped node is no part of what these tests
/// check.
pub const START_CHECK_WAIT_MS: u64 = 2000;

/// The simulator, the demo backend and the files every node shares.
pub struct Env {
    pub chain: SimChain,
    pub client: Arc<ChainClient>,
    pub genesis: Genesis,
    pub grpc_url: String,
    /// The simulator's CometBFT RPC (block subscription, settlement events).
    pub rpc_url: String,
    _rpc: relay_miner::sim::comet::CometServerHandle,
    pub backend: relay_miner::sim::backend::BackendHandle,
    pub keys: PathBuf,
    pub token_file: PathBuf,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// Starts the simulator chain (blocks every `block_time_ms`, `proof_probability` for every claim), the demo
/// backend, and writes the supplier keys and cluster token files. `RAFT_CHAOS_KEEP=1` keeps the node logs and
/// data dirs.
pub async fn start_env(block_time_ms: u64, proof_probability: f64) -> Env {
    start_env_with(block_time_ms, proof_probability, |_| {}).await
}

/// [`start_env`] with the demo genesis changed by `customize` first (e.g. longer sessions).
pub async fn start_env_with(block_time_ms: u64, proof_probability: f64, customize: impl FnOnce(&mut Genesis)) -> Env {
    let args = demo_args(block_time_ms, proof_probability);
    // The staked URL is informational here: the load generator targets each node's relay port itself.
    let mut genesis = demo_genesis(&args, "http://127.0.0.1:1");
    customize(&mut genesis);
    let chain = SimChain::new(genesis.clone()).unwrap();
    let grpc_url = serve(relay_miner::sim::chain::router(chain.clone()).into_axum()).await;
    let rpc = relay_miner::sim::comet::serve(
        Arc::new(chain.clone()),
        "127.0.0.1:0".parse().unwrap(),
        relay_miner::sim::comet::ServerConfig::default(),
    )
    .await
    .unwrap();
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let chain = chain.clone();
        async move {
            chain
                .run_blocks(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
        }
    });
    let backend = relay_miner::sim::backend::DemoBackend::spawn(Default::default())
        .await
        .unwrap();
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("RAFT_CHAOS_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("keeping node logs and data in {}", dir.path().display());
    }
    let keys = dir.path().join("keys.yaml");
    let mut text = String::from("keys:\n");
    for s in &genesis.suppliers {
        text.push_str(&format!("  - {}\n", s.key_hex));
    }
    std::fs::write(&keys, text).unwrap();
    let token_file = dir.path().join("cluster-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let client = Arc::new(ChainClient::new(&grpc_url, Duration::from_secs(5)).unwrap());
    Env {
        chain,
        client,
        genesis,
        grpc_url,
        rpc_url: rpc.url(),
        _rpc: rpc,
        backend,
        keys,
        token_file,
        dir,
        _stop: stop,
    }
}

/// One node: its ports, config, log file and (while running) its process.
pub struct Proc {
    pub id: u64,
    /// The raft port the node listens on (the test's admin calls go here, never through a proxy).
    pub raft_addr: String,
    pub relay_url: String,
    pub metrics_url: String,
    pub ready_url: String,
    pub config: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub incarnation: u32,
    /// The subcommand it runs: `run` (both roles), `relayer` or `miner`.
    pub command: &'static str,
}

impl Proc {
    /// Replaces the config line `old` (without its newline) by `new`, asserting that the line was there.
    pub fn replace_in_config(&self, old: &str, new: &str) {
        let config = std::fs::read_to_string(&self.config).unwrap();
        let (old, new) = (format!("{old}\n"), format!("{new}\n"));
        assert!(
            config.contains(&old),
            "node {}'s config has no line {old:?}\n{config}",
            self.id
        );
        std::fs::write(&self.config, config.replace(&old, &new)).unwrap();
    }
}

/// A running node as the load and monitor tasks see it.
#[derive(Debug, Clone)]
pub struct LiveNode {
    pub raft_addr: String,
    pub metrics_url: String,
    pub incarnation: u32,
    pub pid: u32,
}

/// Nodes currently running, by id.
pub type Live = Arc<Mutex<BTreeMap<u64, LiveNode>>>;

/// Settings of one node's config file.
pub struct NodeOpts<'a> {
    /// `logging.level`.
    pub level: &'a str,
    /// Every voter the node starts with as `(id, host:port)` (the addresses peers dial: the nodes' raft ports
    /// or proxies in front of them); empty = embedded storage (one process, no raft).
    pub peers: &'a [(u64, String)],
    /// Extra `storage.raft` lines (e.g. timing keys), each `key: value`.
    pub raft_extra: &'a [String],
}

/// `level` with the directives of `RAFT_CHAOS_LOG` appended (e.g. `raft::core=debug`), to look into a failing
/// run without editing the test.
fn log_level(level: &str) -> String {
    match std::env::var("RAFT_CHAOS_LOG") {
        Ok(extra) if !extra.trim().is_empty() => format!("{level},{}", extra.trim()),
        _ => level.to_string(),
    }
}

/// Ports and config of node `id` (not started), its raft port listening on `raft_port`.
pub fn node_config(env: &Env, id: u64, raft_port: u16, opts: &NodeOpts) -> Proc {
    let mode = if opts.peers.is_empty() { "embedded" } else { "raft" };
    let relay_port = free_port();
    let metrics_port = free_port();
    let dir = env.dir.path().join(format!("node-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relay-miner.yaml");
    let peers: Vec<String> = opts.peers.iter().map(|(i, a)| format!("\"{i}={a}\"")).collect();
    let extra: String = opts.raft_extra.iter().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        &config,
        format!(
            "listen_addr: 127.0.0.1:{relay_port}
storage:
  mode: {mode}
  data_dir: {data}
  raft:
    node_id: {id}
    listen_addr: 127.0.0.1:{raft_port}
    peers: [{peers}]
    cluster_token_file: {token}
    start_check_wait_ms: {START_CHECK_WAIT_MS}
{extra}pocket_node:
  query_node_grpc_url: {grpc}
  query_node_rpc_url: {rpc}
  chain_id: {chain_id}
keys:
  keys_file: {keys}
  hot_reload: false
default_validation_mode: eager
services:
  {SERVICE}:
    default_backend: jsonrpc
    backends:
      jsonrpc:
        url: {backend}
metrics:
  addr: 127.0.0.1:{metrics_port}
health_check:
  addr: 127.0.0.1:{metrics_port}
# The chaos tests kill and cut off leaders inside the simulator's 4-block claim window: claims go out at its
# opening, as before the claim delay (covered by the miner's own tests), so a failover keeps its slack.
transaction:
  claim_delay_blocks: 0
logging:
  level: \"{level}\"
  format: text
",
            data = dir.join("data").display(),
            peers = peers.join(", "),
            token = env.token_file.display(),
            grpc = env.grpc_url,
            rpc = env.rpc_url,
            chain_id = env.genesis.chain_id,
            keys = env.keys.display(),
            backend = env.backend.http_url(),
            level = log_level(opts.level),
        ),
    )
    .unwrap();
    Proc {
        id,
        raft_addr: format!("127.0.0.1:{raft_port}"),
        relay_url: format!("http://127.0.0.1:{relay_port}"),
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        ready_url: format!("http://127.0.0.1:{metrics_port}/ready"),
        config,
        log: dir.join("stderr.log"),
        child: None,
        incarnation: 0,
        command: "run",
    }
}

/// Every node process; all are killed when this drops (also on panic).
pub struct Cluster {
    pub procs: BTreeMap<u64, Proc>,
    /// Nodes currently running, for the load, monitor and proxy tasks.
    pub live: Live,
    /// The `relay-miner` binary the nodes run.
    pub binary: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new(PathBuf::from(env!("CARGO_BIN_EXE_relay-miner")))
    }
}

impl Cluster {
    /// No nodes yet; they will run `binary`.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            procs: BTreeMap::new(),
            live: Arc::new(Mutex::new(BTreeMap::new())),
            binary,
        }
    }

    pub fn add(&mut self, proc: Proc) {
        self.procs.insert(proc.id, proc);
    }

    /// Adds `n` `run --storage raft` voters (ids `1..=n`, not started), each on a free raft port of its own that
    /// every peer dials directly, logging at `level`; `prepare` sees each node's config before it is added (e.g.
    /// to point one node at a chain proxy or a keys file of its own with [`Proc::replace_in_config`]).
    pub fn add_voters(&mut self, env: &Env, n: u64, level: &str, mut prepare: impl FnMut(&Proc)) {
        let raft_ports: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let peers: Vec<(u64, String)> = raft_ports.iter().map(|(i, p)| (*i, format!("127.0.0.1:{p}"))).collect();
        for (id, port) in &raft_ports {
            let opts = NodeOpts {
                level,
                peers: &peers,
                raft_extra: &[],
            };
            let proc = node_config(env, *id, *port, &opts);
            prepare(&proc);
            self.add(proc);
        }
    }

    /// Waits (each up to `limit`) for a raft leader among the running nodes and for its miner to lead: the
    /// leader and its term.
    pub async fn leading(&self, limit: Duration) -> (u64, u64) {
        let (leader, term) = self.leader(0, limit).await;
        self.miner_leads(leader, limit).await;
        (leader, term)
    }

    pub fn proc(&self, id: u64) -> &Proc {
        &self.procs[&id]
    }

    /// Starts node `id` (again) on its data dir and waits until its `/metrics` answers.
    pub async fn start(&mut self, id: u64) {
        self.start_many(&[id]).await;
    }

    /// Starts the nodes `ids` (again) on their data dirs all at once, then waits until each one's `/metrics`
    /// answers: as a cluster's processes are started. A raft node serves nothing before its start check
    /// (`raft::rollback`) has heard every other member or waited for it, so nodes started one by one would each
    /// wait out that check for the ones not started yet.
    pub async fn start_many(&mut self, ids: &[u64]) {
        for id in ids {
            self.spawn(*id);
        }
        for id in ids {
            self.wait_up(*id).await;
        }
    }

    /// Starts every node added and not running ([`Cluster::start_many`]).
    pub async fn start_all(&mut self) {
        let stopped: Vec<u64> = self
            .procs
            .values()
            .filter(|p| p.child.is_none())
            .map(|p| p.id)
            .collect();
        self.start_many(&stopped).await;
    }

    /// Starts node `id`'s process and registers it as live.
    fn spawn(&mut self, id: u64) {
        let p = self.procs.get_mut(&id).unwrap();
        assert!(p.child.is_none(), "node {id} already running");
        let log = OpenOptions::new().create(true).append(true).open(&p.log).unwrap();
        let child = Command::new(&self.binary)
            .arg(p.command)
            .arg("--config")
            .arg(&p.config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let pid = child.id();
        p.child = Some(child);
        p.incarnation += 1;
        // Registered at once: the proxies attribute the node's raft connections by its pid from its first one.
        let node = LiveNode {
            raft_addr: p.raft_addr.clone(),
            metrics_url: p.metrics_url.clone(),
            incarnation: p.incarnation,
            pid,
        };
        self.live.lock().unwrap().insert(id, node);
    }

    /// Waits (30 s) until started node `id`'s `/metrics` answers; panics with its log's tail if it exits first.
    async fn wait_up(&mut self, id: u64) {
        let p = self.procs.get_mut(&id).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&p.metrics_url).await.is_none() {
            if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("node {id} exited at start: {status}\n{}", tail(&p.log));
            }
            assert!(Instant::now() < deadline, "node {id} did not come up\n{}", tail(&p.log));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (a crash: no graceful shutdown).
    pub fn kill(&mut self, id: u64) {
        self.live.lock().unwrap().remove(&id);
        let p = self.procs.get_mut(&id).unwrap();
        let mut child = p.child.take().unwrap_or_else(|| panic!("node {id} is not running"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM (a planned stop: the node drains, its miner stops, a leader hands its role off) and waits up to
    /// `limit` for the process to exit; its exit status.
    pub async fn terminate(&mut self, id: u64, limit: Duration) -> std::process::ExitStatus {
        self.live.lock().unwrap().remove(&id);
        let p = self.procs.get_mut(&id).unwrap();
        let mut child = p.child.take().unwrap_or_else(|| panic!("node {id} is not running"));
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM node {id}");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not stop within {limit:?}\n{}",
                tail(&p.log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` answers a raft status on its raft port; panics with its exit status (if it exited)
    /// and the tail of its log otherwise, so a node that died is named with its own last words.
    pub async fn expect_answering(&mut self, id: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.status(id).await.is_none() {
            let p = self.procs.get_mut(&id).unwrap();
            if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("node {id} exited: {status}\n{}", tail(&p.log));
            }
            assert!(
                Instant::now() < deadline,
                "node {id} does not answer on its raft port {} within {limit:?}\n{}",
                p.raft_addr,
                tail(&p.log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.procs
            .values()
            .filter(|p| p.child.is_some())
            .map(|p| p.id)
            .collect()
    }

    /// Node `id`'s raft status, `None` when it does not answer within 300 ms.
    pub async fn status(&self, id: u64) -> Option<raft::Status> {
        AdminClient::new(self.proc(id).raft_addr.clone(), TOKEN)
            .with_timeout(Duration::from_millis(300))
            .status()
            .await
            .ok()
    }

    /// The leader as seen by a running node in `among` that leads with a quorum in a term ≥ `min_term`, with
    /// its term; waits up to `limit`.
    pub async fn leader_among(&self, among: &[u64], min_term: u64, limit: Duration) -> (u64, u64) {
        let deadline = Instant::now() + limit;
        loop {
            for id in self.running().into_iter().filter(|id| among.contains(id)) {
                if let Some(s) = self.status(id).await
                    && s.is_leader
                    && s.term >= min_term
                {
                    return (s.node_id, s.term);
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no raft leader among {among:?} within {limit:?}\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The leader as seen by any running node (see [`Cluster::leader_among`]).
    pub async fn leader(&self, min_term: u64, limit: Duration) -> (u64, u64) {
        self.leader_among(&self.running(), min_term, limit).await
    }

    /// The highest term any running node reports.
    pub async fn max_term(&self) -> u64 {
        let mut term = 0;
        for id in self.running() {
            if let Some(s) = self.status(id).await {
                term = term.max(s.term);
            }
        }
        term
    }

    /// Waits until node `id`'s miner reports leading (`ha_miner_leader_status 1`).
    pub async fn miner_leads(&self, id: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(text) = http_get(&self.proc(id).metrics_url).await
                && metric_sum(&text, "ha_miner_leader_status", &[]) == 1.0
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}'s miner did not lead within {limit:?}\n{}",
                tail(&self.proc(id).log)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until node `id` has applied everything the leader committed when called.
    pub async fn caught_up(&self, id: u64, limit: Duration) {
        let (leader, _) = self.leader(0, limit).await;
        let target = AdminClient::new(self.proc(leader).raft_addr.clone(), TOKEN)
            .status()
            .await
            .unwrap()
            .committed_index
            .unwrap_or(0);
        let what = format!("node {id} catches up to {target}");
        self.await_status(id, &what, limit, |s| {
            (s.applied_index.unwrap_or(0) >= target).then_some(())
        })
        .await;
    }

    /// Polls node `id`'s raft status every 5 ms until `accept` returns `Some`; after `limit` panics with `what`
    /// and every running node's status and log tail ([`Cluster::describe`]).
    pub async fn await_status<T>(
        &self,
        id: u64,
        what: &str,
        limit: Duration,
        mut accept: impl FnMut(&raft::Status) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(s) = self.status(id).await {
                if let Some(t) = accept(&s) {
                    return t;
                }
                last = Some(s);
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what}: not within {limit:?}; node {id} last answered {last:?}\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every running node's raft status (or that it did not answer) and the tail of its log: what a failed
    /// cluster assertion prints.
    pub async fn describe(&self) -> String {
        let mut out = String::new();
        for id in self.running() {
            let status = match self.status(id).await {
                Some(s) => format!(
                    "{} term {} leader {:?} is_leader {} log {:?} committed {:?} applied {:?} not_ready {:?}",
                    s.state,
                    s.term,
                    s.leader_id,
                    s.is_leader,
                    s.last_log_index,
                    s.committed_index,
                    s.applied_index,
                    s.not_ready
                ),
                None => "no status answer within 300 ms".to_string(),
            };
            out.push_str(&format!("---- node {id}: {status}\n{}\n", tail(&self.proc(id).log)));
        }
        out
    }

    /// Every running node's `/metrics` text.
    pub async fn metrics(&self) -> BTreeMap<u64, String> {
        let mut m = BTreeMap::new();
        for id in self.running() {
            m.insert(id, scrape(&self.proc(id).metrics_url).await);
        }
        m
    }
}

/// Repeated per-RPC network warnings of openraft (one per heartbeat or replication attempt to an unreachable
/// peer); [`tail`] leaves them out so a log's last words are about something else.
const NETWORK_NOISE: [&str; 4] = [
    "failed to send a heartbeat",
    "while requesting pre-vote",
    "when:(stream-replication)",
    "update progress error",
];

/// The last 30 lines of a log file, without colour codes and openraft's per-RPC network warnings.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !NETWORK_NOISE.iter().any(|n| l.contains(n)))
        .map(strip_ansi)
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a tracing timestamp `2026-11-23T12:29:16.712587Z` into ms since the Unix epoch.
fn log_time_ms(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    Some(((days_from_civil(y, mo, day) * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Wall clock in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When (ms since the epoch) node's log first says its miner took the leadership at or after `after_ms`.
pub fn lease_taken_ms(log: &Path, after_ms: i64) -> Option<i64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .map(strip_ansi)
        .filter(|l| l.contains("miner leadership changed") && l.contains("leader=true"))
        .filter_map(|l| log_time_ms(l.split_whitespace().next()?))
        .find(|t| *t >= after_ms)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
