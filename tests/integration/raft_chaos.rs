//! Raft HA chaos with real processes (issue 8): three `relay-miner run --storage raft` children on 127.0.0.1
//! against the in-process simulator chain and demo backend, the load generator sending signed relays round-robin
//! to every node's relay port (a dead node's request fails and the next one goes elsewhere).
//!
//! The scenario kills the leader with SIGKILL in a session's active, claim and proof windows, kills a follower,
//! restarts every killed node on its data dir, adds a fourth node as a learner and promotes it, removes a node,
//! and kills the leader of the new configuration, all under load, using the `relay-miner raft` CLI for the
//! membership changes. It asserts:
//! - every served relay is in an accepted claim (claimed ≥ served per (supplier, session), and the relays
//!   claimed beyond those served are at most the requests that failed: a relay can be committed while its
//!   node dies before answering);
//! - each session is claimed once and proven once (proof probability 1), zero rejections by the simulator,
//!   every session settles with a reward;
//! - no two nodes submitted in the same raft term (sampled from each node's `/metrics` and raft status);
//! - failover: leader killed → new leader elected → its miner leads again, within bounds; the numbers are
//!   printed (`--nocapture`) and recorded in BENCHMARKS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft::AdminClient;
use relay_miner::chain::query::ChainClient;
use relay_miner::cli::{LocalnetArgs, demo_genesis};
use relay_miner::loadgen::{LoadGen, Outcome};
use relay_miner::protocol::session::SessionWindows;
use relay_miner::sim::chain::{Genesis, Settlement, SimChain};

const TOKEN: &str = "chaos-test-cluster-token-0123456789";
const SERVICE: &str = "anvil";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn http_get(url: &str) -> Option<String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let fut = async {
        let response = client.get(url.parse().ok()?).await.ok()?;
        use http_body_util::BodyExt as _;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.ok().flatten()
}

/// Sum of a metric's samples whose label set contains every `labels` pair.
fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The simulator, the demo backend and the files every node shares.
struct Env {
    chain: SimChain,
    client: Arc<ChainClient>,
    genesis: Genesis,
    grpc_url: String,
    backend: relay_miner::sim::backend::BackendHandle,
    keys: PathBuf,
    token_file: PathBuf,
    dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start_env(block_time_ms: u64, proof_probability: f64) -> Env {
    let args = LocalnetArgs {
        sessions: 1,
        rate: 1,
        apps: 2,
        gateways: 1,
        suppliers: 2,
        block_time_ms,
        proof_probability,
        data_dir: None,
        keep_running: false,
    };
    // The staked URL is informational here: the load generator targets each node's relay port itself.
    let genesis = demo_genesis(&args, "http://127.0.0.1:1");
    let chain = SimChain::new(genesis.clone()).unwrap();
    let grpc_url = serve(relay_miner::sim::chain::router(chain.clone()).into_axum()).await;
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
        backend,
        keys,
        token_file,
        dir,
        _stop: stop,
    }
}

/// One node: its ports, config, log file and (while running) its process.
struct Proc {
    id: u64,
    raft_addr: String,
    relay_url: String,
    metrics_url: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    incarnation: u32,
}

/// Nodes currently running: id → (raft addr, metrics url, incarnation).
type Live = Arc<Mutex<BTreeMap<u64, (String, String, u32)>>>;

/// Every node process; all are killed when this drops (also on panic).
struct Cluster {
    procs: BTreeMap<u64, Proc>,
    /// Nodes currently running, for the load and monitor tasks: id → (raft addr, metrics url, incarnation).
    live: Live,
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

/// Ports and config of node `id` (not started). `peers` lists every voter this node starts with; no peers =
/// embedded storage (one process, no raft).
fn node_config(env: &Env, id: u64, raft_port: u16, peers: &[(u64, u16)], level: &str) -> Proc {
    let mode = if peers.is_empty() { "embedded" } else { "raft" };
    let relay_port = free_port();
    let metrics_port = free_port();
    let dir = env.dir.path().join(format!("node-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relay-miner.yaml");
    let peers: Vec<String> = peers.iter().map(|(i, p)| format!("\"{i}=127.0.0.1:{p}\"")).collect();
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
pocket_node:
  query_node_grpc_url: {grpc}
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
logging:
  level: \"{level}\"
  format: text
",
            data = dir.join("data").display(),
            peers = peers.join(", "),
            token = env.token_file.display(),
            grpc = env.grpc_url,
            chain_id = env.genesis.chain_id,
            keys = env.keys.display(),
            backend = env.backend.http_url(),
        ),
    )
    .unwrap();
    Proc {
        id,
        raft_addr: format!("127.0.0.1:{raft_port}"),
        relay_url: format!("http://127.0.0.1:{relay_port}"),
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        config,
        log: dir.join("stderr.log"),
        child: None,
        incarnation: 0,
    }
}

impl Cluster {
    fn proc(&self, id: u64) -> &Proc {
        &self.procs[&id]
    }

    /// Starts node `id` (again) on its data dir and waits until its `/metrics` answers.
    async fn start(&mut self, id: u64) {
        let p = self.procs.get_mut(&id).unwrap();
        assert!(p.child.is_none(), "node {id} already running");
        let log = OpenOptions::new().create(true).append(true).open(&p.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_relay-miner"))
            .arg("run")
            .arg("--config")
            .arg(&p.config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        p.child = Some(child);
        p.incarnation += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&p.metrics_url).await.is_none() {
            if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("node {id} exited at start: {status}\n{}", tail(&p.log));
            }
            assert!(Instant::now() < deadline, "node {id} did not come up\n{}", tail(&p.log));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.live
            .lock()
            .unwrap()
            .insert(id, (p.raft_addr.clone(), p.metrics_url.clone(), p.incarnation));
    }

    /// SIGKILL (a crash: no graceful shutdown).
    fn kill(&mut self, id: u64) {
        self.live.lock().unwrap().remove(&id);
        let p = self.procs.get_mut(&id).unwrap();
        let mut child = p.child.take().unwrap_or_else(|| panic!("node {id} is not running"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn running(&self) -> Vec<u64> {
        self.procs
            .values()
            .filter(|p| p.child.is_some())
            .map(|p| p.id)
            .collect()
    }

    /// The leader as seen by a running node that leads with a quorum, with its term; waits up to `limit`.
    async fn leader(&self, min_term: u64, limit: Duration) -> (u64, u64) {
        let deadline = Instant::now() + limit;
        loop {
            for id in self.running() {
                let addr = &self.proc(id).raft_addr;
                let status = AdminClient::new(addr.clone(), TOKEN)
                    .with_timeout(Duration::from_millis(300))
                    .status()
                    .await;
                if let Ok(s) = status
                    && s.is_leader
                    && s.term >= min_term
                {
                    return (s.node_id, s.term);
                }
            }
            assert!(Instant::now() < deadline, "no raft leader within {limit:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until node `id`'s miner reports leading (`ha_miner_leader_status 1`).
    async fn miner_leads(&self, id: u64, limit: Duration) {
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
    async fn caught_up(&self, id: u64, limit: Duration) {
        let (leader, _) = self.leader(0, limit).await;
        let target = AdminClient::new(self.proc(leader).raft_addr.clone(), TOKEN)
            .status()
            .await
            .unwrap()
            .committed_index
            .unwrap_or(0);
        let deadline = Instant::now() + limit;
        loop {
            let s = AdminClient::new(self.proc(id).raft_addr.clone(), TOKEN)
                .with_timeout(Duration::from_millis(500))
                .status()
                .await;
            if let Ok(s) = s
                && s.applied_index.unwrap_or(0) >= target
            {
                return;
            }
            assert!(Instant::now() < deadline, "node {id} did not catch up to {target}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When (ms since the epoch) node's log first says its miner took the leadership at or after `after_ms`.
fn lease_taken_ms(log: &Path, after_ms: i64) -> Option<i64> {
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

async fn wait_height(chain: &SimChain, height: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while chain.height() < height {
        assert!(Instant::now() < deadline, "chain did not reach height {height}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Outcomes of the load, per (supplier, session).
#[derive(Debug, Default)]
struct Load {
    served: BTreeMap<(String, String), u64>,
    max_session_end: i64,
    sent: u64,
    failed: u64,
    refused: u64,
    last_error: Option<String>,
}

/// Sends relays round-robin to every node's relay port until `stop`; a dead node's request fails and the next
/// request goes to the next node.
fn spawn_load(
    chain: SimChain,
    gens: Vec<LoadGen>,
    load: Arc<Mutex<Load>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n: u64 = 0;
        while !*stop.borrow() {
            n += 1;
            let node = &gens[(n as usize) % gens.len()];
            let outcome = node.send(n, chain.height()).await;
            {
                let mut l = load.lock().unwrap();
                l.sent += 1;
                match outcome {
                    Outcome::Served {
                        supplier,
                        session_id,
                        session_end,
                    } => {
                        *l.served.entry((supplier, session_id)).or_default() += 1;
                        l.max_session_end = l.max_session_end.max(session_end);
                    }
                    Outcome::Refused(e) => {
                        l.refused += 1;
                        l.last_error = Some(e);
                    }
                    Outcome::Failed(e) => {
                        l.failed += 1;
                        l.last_error = Some(e);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(8)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

/// Samples of who submitted in which term: (node, incarnation) → (term, claims + proofs submitted) at the last
/// sample; term → nodes whose submission counters grew within a sampling interval spent wholly in that term.
#[derive(Debug, Default)]
struct Submitters {
    last: BTreeMap<(u64, u32), (u64, f64)>,
    by_term: BTreeMap<u64, BTreeSet<u64>>,
    ambiguous: u64,
    samples: u64,
    /// Largest (chain height − height the leading miner last handled) seen per node: how far behind the chain
    /// the leader's miner loop runs.
    miner_lag: BTreeMap<u64, i64>,
}

fn spawn_monitor(
    chain: SimChain,
    live: Live,
    out: Arc<Mutex<Submitters>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !*stop.borrow() {
            let nodes: Vec<_> = live.lock().unwrap().clone().into_iter().collect();
            for (id, (raft_addr, metrics_url, incarnation)) in nodes {
                let client = AdminClient::new(raft_addr, TOKEN).with_timeout(Duration::from_millis(300));
                let Ok(before) = client.status().await else { continue };
                let Some(text) = http_get(&metrics_url).await else {
                    continue;
                };
                let Ok(after) = client.status().await else { continue };
                let submitted = metric_sum(&text, "ha_miner_claims_submitted_total", &[])
                    + metric_sum(&text, "ha_miner_proofs_submitted_total", &[]);
                let mut s = out.lock().unwrap();
                s.samples += 1;
                if metric_sum(&text, "ha_miner_leader_status", &[]) == 1.0 {
                    let handled = metric_sum(&text, "ha_miner_current_block_height", &[]) as i64;
                    let lag = chain.height() - handled;
                    let max = s.miner_lag.entry(id).or_default();
                    *max = (*max).max(lag);
                }
                let term = after.term;
                if let Some((prev_term, prev_submitted)) = s.last.insert((id, incarnation), (term, submitted))
                    && submitted > prev_submitted
                {
                    if prev_term == term && before.term == term {
                        s.by_term.entry(term).or_default().insert(id);
                    } else {
                        s.ambiguous += 1;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(30)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

/// Runs the `relay-miner raft` CLI; returns (exit code, stdout, stderr).
fn cli(token_file: &Path, addr: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .arg("raft")
        .args(args)
        .arg("--addr")
        .arg(addr)
        .arg("--cluster-token-file")
        .arg(token_file)
        .arg("--timeout-secs")
        .arg("10")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(token_file: &Path, addr: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(token_file, addr, args);
    assert_eq!(code, 0, "raft {args:?} at {addr}: {stdout}{stderr}");
    stdout
}

fn cli_status_json(token_file: &Path, addr: &str) -> serde_json::Value {
    serde_json::from_str(&cli_ok(token_file, addr, &["status", "--json"])).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// One failover: (what, new leader elected after, its miner took the lease after (from its log), its
/// `ha_miner_leader_status` read 1 after).
type Failover = (String, Duration, Duration, Duration, i64);

/// Kills the current leader; measures kill → new leader elected → its miner leads; restarts the killed node.
async fn kill_leader(cluster: &mut Cluster, chain: &SimChain, what: &str) -> Failover {
    let (old, term) = cluster.leader(0, Duration::from_secs(10)).await;
    let h0 = chain.height();
    let wall0 = now_ms();
    let t0 = Instant::now();
    cluster.kill(old);
    let (new, new_term) = cluster.leader(term + 1, Duration::from_secs(10)).await;
    let elected = t0.elapsed();
    cluster.miner_leads(new, Duration::from_secs(15)).await;
    let active = t0.elapsed();
    let lease = lease_taken_ms(&cluster.proc(new).log, wall0)
        .map(|t| Duration::from_millis(u64::try_from(t - wall0).unwrap_or(0)))
        .unwrap_or(active);
    println!(
        "failover ({what}): leader {old} (term {term}) killed → node {new} elected in term {new_term} after {} ms, \
         its miner took the lease after {} ms and reports leading after {} ms (heights {h0} → {})",
        elected.as_millis(),
        lease.as_millis(),
        active.as_millis(),
        chain.height()
    );
    cluster.start(old).await;
    (what.to_string(), elected, lease, active, h0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_cluster_survives_leader_kills_and_membership_changes_under_load() {
    let started = Instant::now();
    // Block time: windows are 5 blocks; the leading miner must keep up with the chain within them.
    let block_ms = std::env::var("RAFT_CHAOS_BLOCK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let env = start_env(block_ms, 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    let raft_ports: BTreeMap<u64, u16> = (1..=4).map(|id| (id, free_port())).collect();
    let initial: Vec<(u64, u16)> = (1..=3).map(|id| (id, raft_ports[&id])).collect();
    let all: Vec<(u64, u16)> = (1..=4).map(|id| (id, raft_ports[&id])).collect();
    let mut cluster = Cluster {
        procs: BTreeMap::new(),
        live: Arc::new(Mutex::new(BTreeMap::new())),
    };
    for id in 1..=3 {
        cluster
            .procs
            .insert(id, node_config(&env, id, raft_ports[&id], &initial, level));
    }
    // The fourth node knows the whole future voter set (it is not the lowest id, so it never initializes).
    cluster
        .procs
        .insert(4, node_config(&env, 4, raft_ports[&4], &all, level));
    for id in 1..=3 {
        cluster.start(id).await;
    }
    let (leader, _) = cluster.leader(0, Duration::from_secs(20)).await;
    cluster.miner_leads(leader, Duration::from_secs(20)).await;
    let token_file = env.token_file.clone();

    // CLI: status from a follower names the leader and lists three voters.
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();
    let status = cli_status_json(&token_file, &cluster.proc(follower).raft_addr);
    assert_eq!(status["leader_id"].as_u64(), Some(leader), "{status}");
    assert_eq!(ids(&status["voters"]), vec![1, 2, 3], "{status}");
    let table = cli_ok(&token_file, &cluster.proc(follower).raft_addr, &["status"]);
    println!("{table}");
    assert!(table.contains(&format!("leader: node {leader}")), "{table}");
    assert_eq!(table.lines().count(), 3 + 3, "{table}");

    // Load and the submitter monitor.
    let gens: Vec<LoadGen> = (1..=4)
        .map(|id| {
            LoadGen::new(
                &env.genesis,
                Arc::clone(&env.client),
                &cluster.proc(id).relay_url,
                SERVICE,
            )
            .unwrap()
        })
        .collect();
    let load = Arc::new(Mutex::new(Load::default()));
    let submitters = Arc::new(Mutex::new(Submitters::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load_task = spawn_load(env.chain.clone(), gens, Arc::clone(&load), stop_rx.clone());
    let monitor_task = spawn_monitor(
        env.chain.clone(),
        Arc::clone(&cluster.live),
        Arc::clone(&submitters),
        stop_rx,
    );

    let params = env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();
    let limit = Duration::from_secs(30);
    let mut failovers: Vec<Failover> = Vec::new();

    // 1. Leader killed mid-session (active window), 2. at the claim window's open, 3. at the proof window's open.
    wait_height(&env.chain, s.start + 1, limit).await;
    failovers.push(kill_leader(&mut cluster, &env.chain, "active window").await);
    wait_height(&env.chain, s.claim_open, limit).await;
    failovers.push(kill_leader(&mut cluster, &env.chain, "claim window").await);
    wait_height(&env.chain, s.proof_open, limit).await;
    failovers.push(kill_leader(&mut cluster, &env.chain, "proof window").await);

    // 4. A follower killed: relays keep being served by the other two; restarted, it catches up.
    let (leader, _) = cluster.leader(0, limit).await;
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();
    cluster.kill(follower);
    let served_before: u64 = load.lock().unwrap().served.values().sum();
    let deadline = Instant::now() + limit;
    while load.lock().unwrap().served.values().sum::<u64>() < served_before + 20 {
        assert!(Instant::now() < deadline, "no relays served with a follower down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.start(follower).await;
    cluster.caught_up(follower, limit).await;

    // 5. A fourth node joins as a learner (asked through a follower: the CLI follows to the leader), is promoted.
    cluster.start(4).await;
    let (leader, _) = cluster.leader(0, limit).await;
    let follower = *cluster.running().iter().find(|id| **id != leader && **id != 4).unwrap();
    let via = cluster.proc(follower).raft_addr.clone();
    let out = cli_ok(
        &token_file,
        &via,
        &[
            "add-learner",
            "--id",
            "4",
            "--node-addr",
            &cluster.proc(4).raft_addr,
            "--wait",
        ],
    );
    assert!(out.contains("added as a learner") && out.contains("caught up"), "{out}");
    let status = cli_status_json(&token_file, &via);
    assert_eq!(ids(&status["learners"]), vec![4], "{status}");
    let out = cli_ok(&token_file, &via, &["promote", "--id", "4"]);
    assert!(out.contains("promoted"), "{out}");
    let status = cli_status_json(&token_file, &via);
    assert_eq!(ids(&status["voters"]), vec![1, 2, 3, 4], "{status}");
    assert!(ids(&status["learners"]).is_empty(), "{status}");

    // 6. One of the original followers is removed, then stopped for good.
    let (leader, _) = cluster.leader(0, limit).await;
    let removed = *cluster.running().iter().find(|id| **id != leader && **id != 4).unwrap();
    let out = cli_ok(
        &token_file,
        &cluster.proc(4).raft_addr,
        &["remove", "--id", &removed.to_string()],
    );
    assert!(out.contains("removed"), "{out}");
    cluster.kill(removed);
    let status = cli_status_json(&token_file, &cluster.proc(4).raft_addr);
    let voters = ids(&status["voters"]);
    assert_eq!(voters.len(), 3, "{status}");
    assert!(!voters.contains(&removed), "{status}");

    // 7. The leader of the new configuration is killed too.
    failovers.push(kill_leader(&mut cluster, &env.chain, "after membership change").await);

    // Keep loading through the current session, then let every served session settle.
    let last = SessionWindows::new(&params, env.chain.height()).unwrap();
    wait_height(&env.chain, last.end + 1, limit).await;
    stop_tx.send(true).unwrap();
    load_task.await.unwrap();
    let load = std::mem::take(&mut *load.lock().unwrap());
    let settle = SessionWindows::new(&params, load.max_session_end).unwrap();
    wait_height(&env.chain, settle.settlement + 1, Duration::from_secs(60)).await;
    monitor_task.await.unwrap();

    // CLI errors: an unreachable node, a wrong token, an invalid change.
    let (code, _, err) = cli(&token_file, &cluster.proc(removed).raft_addr, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    let bad_token = env.dir.path().join("bad-token");
    std::fs::write(&bad_token, "not-the-cluster-token-at-all").unwrap();
    let (code, _, err) = cli(&bad_token, &cluster.proc(4).raft_addr, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rejected the cluster token"), "{err}");
    let (code, _, err) = cli(&token_file, &cluster.proc(4).raft_addr, &["promote", "--id", "99"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a learner"), "{err}");
    let final_table = cli_ok(&token_file, &cluster.proc(4).raft_addr, &["status"]);
    println!("{final_table}");

    let metrics: BTreeMap<u64, String> = {
        let mut m = BTreeMap::new();
        for id in cluster.running() {
            m.insert(id, http_get(&cluster.proc(id).metrics_url).await.unwrap_or_default());
        }
        m
    };
    drop(cluster);

    // --- Assertions ---
    let kill_heights: Vec<i64> = failovers.iter().map(|f| f.4).collect();
    let submitters = std::mem::take(&mut *submitters.lock().unwrap());
    println!(
        "submitters by term: {:?} ({} samples, {} ambiguous intervals); leader miner max blocks behind the \
         chain, per node: {:?}",
        submitters.by_term, submitters.samples, submitters.ambiguous, submitters.miner_lag
    );
    println!(
        "load: {} sent, {} served, {} refused, {} failed (last error: {:?}); {} sessions",
        load.sent,
        load.served.values().sum::<u64>(),
        load.refused,
        load.failed,
        load.last_error,
        load.served.len()
    );
    assert!(load.served.len() >= 4, "too few sessions served: {:?}", load.served);
    let records = env.chain.records();
    let rejected: Vec<_> = records.iter().filter(|r| r.rejected.is_some()).collect();
    assert!(rejected.is_empty(), "simulator rejected: {rejected:?}");
    let mut per_session: BTreeMap<(String, String, &str), u64> = BTreeMap::new();
    for r in &records {
        *per_session
            .entry((r.supplier.clone(), r.session_id.clone(), r.kind))
            .or_default() += 1;
    }
    let duplicates: Vec<String> = per_session
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((supplier, session, kind), n)| {
            let heights: Vec<i64> = records
                .iter()
                .filter(|r| &r.supplier == supplier && &r.session_id == session && r.kind == *kind)
                .map(|r| r.height)
                .collect();
            format!("{kind} ×{n} of {supplier} {session} at heights {heights:?}")
        })
        .collect();
    assert!(
        duplicates.is_empty(),
        "submitted more than once (leader kills at heights {kill_heights:?}):\n{}",
        duplicates.join("\n")
    );
    // `state()` holds the simulator's lock: copy what is needed and release it before `settlements()`.
    let claimed: BTreeMap<(String, String), u64> = env
        .chain
        .state()
        .claims
        .iter()
        .map(|((session, supplier), entry)| {
            let root = &entry.claim.root_hash;
            (
                (supplier.clone(), session.clone()),
                u64::from_be_bytes(root[40..48].try_into().unwrap()),
            )
        })
        .collect();
    let mut extra = 0;
    for (key, served) in &load.served {
        let claimed = claimed.get(key).copied().unwrap_or(0);
        assert!(
            claimed >= *served,
            "{key:?}: {served} relays served, only {claimed} claimed (claims: {claimed:?})"
        );
        extra += claimed - served;
    }
    extra += claimed
        .iter()
        .filter(|(k, _)| !load.served.contains_key(*k))
        .map(|(_, c)| c)
        .sum::<u64>();
    assert!(
        extra <= load.failed + load.refused,
        "{extra} relays claimed beyond those served, but only {} requests failed",
        load.failed + load.refused
    );
    for ((supplier, session), _) in claimed.iter() {
        assert_eq!(
            per_session.get(&(supplier.clone(), session.clone(), "proof")),
            Some(&1),
            "{supplier} {session}: proof count"
        );
    }
    let settlements = env.chain.settlements();
    for (session, supplier, outcome) in &settlements {
        assert!(
            matches!(outcome, Settlement::Settled(v) if *v > 0),
            "{supplier} {session}: {outcome:?}"
        );
    }
    assert_eq!(settlements.len(), claimed.len(), "every claimed session settles");
    for (id, text) in &metrics {
        assert_eq!(
            metric_sum(text, "ha_miner_upokt_lost_total", &[]),
            0.0,
            "node {id} lost revenue"
        );
    }
    for (term, nodes) in &submitters.by_term {
        assert!(nodes.len() <= 1, "term {term}: nodes {nodes:?} all submitted");
    }
    for (what, elected, _, active, _) in &failovers {
        assert!(*elected <= Duration::from_secs(3), "{what}: election took {elected:?}");
        assert!(*active <= Duration::from_secs(5), "{what}: miner back after {active:?}");
    }
    let ms = |d: &Duration| d.as_millis() as u64;
    let elected: Vec<u64> = failovers.iter().map(|f| ms(&f.1)).collect();
    let lease: Vec<u64> = failovers.iter().map(|f| ms(&f.2)).collect();
    let active: Vec<u64> = failovers.iter().map(|f| ms(&f.3)).collect();
    println!(
        "failover summary: elected ms {elected:?} (max {}), miner lease ms {lease:?} (max {}), miner leading ms \
         {active:?} (max {}); total test {} s",
        elected.iter().max().unwrap(),
        lease.iter().max().unwrap(),
        active.iter().max().unwrap(),
        started.elapsed().as_secs()
    );
}

/// Sends relays from `workers` concurrent senders to `url` for `run`; returns (served, failed or refused) and the
/// largest number of blocks the leading miner at `metrics_url` ran behind the chain meanwhile.
async fn timed_load(env: &Env, url: &str, metrics_url: &str, workers: u64, run: Duration) -> (u64, u64, i64) {
    let loadgen = Arc::new(LoadGen::new(&env.genesis, Arc::clone(&env.client), url, SERVICE).unwrap());
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let end = Instant::now() + run;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (loadgen, chain, served, failed) = (
            Arc::clone(&loadgen),
            env.chain.clone(),
            Arc::clone(&served),
            Arc::clone(&failed),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < end {
                i += 1;
                match loadgen.send(1_000_000 + w + workers * i, chain.height()).await {
                    Outcome::Served { .. } => served.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    _ => failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                };
            }
        }));
    }
    let mut max_lag = 0;
    while Instant::now() < end {
        if let Some(text) = http_get(metrics_url).await
            && metric_sum(&text, "ha_miner_leader_status", &[]) == 1.0
        {
            let handled = metric_sum(&text, "ha_miner_current_block_height", &[]) as i64;
            max_lag = max_lag.max(env.chain.height() - handled);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        served.load(std::sync::atomic::Ordering::Relaxed),
        failed.load(std::sync::atomic::Ordering::Relaxed),
        max_lag,
    )
}

/// Relays/s through a 3-node raft cluster (sent to the leader, and to a follower: forwarded appends) vs one
/// embedded-storage process, same machine, same debug binary; also how far the leading miner falls behind the
/// chain under that load. Prints numbers for BENCHMARKS.md; asserts nothing about speed.
/// `cargo test --test integration raft_vs_embedded -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints relays/s, takes ~40 s"]
async fn raft_vs_embedded_relay_throughput() {
    let env = start_env(1000, 0.0).await;
    let level = "warn";
    let run = Duration::from_secs(10);
    let workers = 8;
    let raft_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let peers: Vec<(u64, u16)> = raft_ports.iter().map(|(i, p)| (*i, *p)).collect();
    let mut cluster = Cluster {
        procs: BTreeMap::new(),
        live: Arc::new(Mutex::new(BTreeMap::new())),
    };
    for id in 1..=3 {
        cluster
            .procs
            .insert(id, node_config(&env, id, raft_ports[&id], &peers, level));
    }
    cluster.procs.insert(9, node_config(&env, 9, 0, &[], level));
    for id in 1..=3 {
        cluster.start(id).await;
    }
    let (leader, _) = cluster.leader(0, Duration::from_secs(20)).await;
    cluster.miner_leads(leader, Duration::from_secs(20)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let (l_served, l_failed, l_lag) = timed_load(
        &env,
        &cluster.proc(leader).relay_url,
        &cluster.proc(leader).metrics_url,
        workers,
        run,
    )
    .await;
    let (f_served, f_failed, f_lag) = timed_load(
        &env,
        &cluster.proc(follower).relay_url,
        &cluster.proc(leader).metrics_url,
        workers,
        run,
    )
    .await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    cluster.start(9).await;
    cluster.miner_leads(9, Duration::from_secs(20)).await;
    let (e_served, e_failed, e_lag) = timed_load(
        &env,
        &cluster.proc(9).relay_url,
        &cluster.proc(9).metrics_url,
        workers,
        run,
    )
    .await;
    let secs = run.as_secs_f64();
    println!(
        "relays/s with {workers} senders for {secs} s (debug binary): raft via leader {:.1} ({l_failed} failed, \
         leading miner ≤ {l_lag} blocks behind), raft via follower {:.1} ({f_failed} failed, ≤ {f_lag} behind), \
         embedded {:.1} ({e_failed} failed, ≤ {e_lag} behind)",
        l_served as f64 / secs,
        f_served as f64 / secs,
        e_served as f64 / secs,
    );
}
