//! Redis HA mode with real processes: two `relay-miner run --storage redis` children (instances `node-1`,
//! `node-2`) on one real `redis-server`, the simulator chain, and the load sending signed relays to both relayers.
//!
//! The leading miner is stopped with SIGTERM as a session's claim window opens, and later the other one, each
//! restarted after: a stopping leader gives its lease up, so the standby leads within seconds instead of after
//! the lease TTL (60 s here, longer than the whole scenario), and claims and proofs go on. Asserted as in the
//! raft tests: every served relay is in an accepted claim, each session claimed once and proven once, zero
//! rejections, every session settles; no lost revenue on either node. A second run kills the leader (SIGKILL)
//! with a 3 s lease: the standby leads once it expired. A third runs the roles as separate processes
//! (`relay-miner relayer`, `relay-miner miner`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_miner::loadgen::LoadGen;
use relay_miner::protocol::session::SessionWindows;
use storage::redis::server::{RedisServer, ServerOptions};

use crate::support::claims::{Proofs, assert_claims};
use crate::support::cluster::{Cluster, Env, NodeOpts, Proc, SERVICE, node_config, start_env, tail};
use crate::support::load::{Load, spawn_load};
use crate::support::{CLUSTER_TESTS, free_port, http_get, metric_sum, raft_block_ms, scrape, wait_height};

/// Far longer than the scenario: a standby that leads within seconds of a stop got the lease given up, not expired.
const LEADER_TTL_SECONDS: u64 = 60;

/// Node `id`'s config, as the raft tests' but on Redis at `url` under instance name `node-{id}`, its lease
/// lasting `ttl` seconds.
fn redis_node(env: &Env, id: u64, url: &str, ttl: u64) -> Proc {
    let opts = NodeOpts {
        level: "warn,relay_miner::miner=info,relay_miner::node=info",
        peers: &[],
        raft_extra: &[],
    };
    let proc = node_config(env, id, free_port(), &opts);
    let text = std::fs::read_to_string(&proc.config).unwrap();
    let text = text.replacen("  mode: embedded\n", "  mode: redis\n", 1).replacen(
        "  raft:\n",
        &format!(
            "  redis:\n    url: {url}\n    consumer_name: node-{id}\n    leader_ttl_seconds: {ttl}\n    \
             heartbeat_rate_seconds: 1\n  raft:\n"
        ),
        1,
    );
    assert!(text.contains("mode: redis") && text.contains("consumer_name"), "{text}");
    std::fs::write(&proc.config, text).unwrap();
    proc
}

/// The node whose miner leads, waiting up to `limit`; panics when both report leading.
async fn leading(cluster: &Cluster, among: &[u64], limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let mut leaders = Vec::new();
        for id in among {
            if let Some(text) = http_get(&cluster.proc(*id).metrics_url).await
                && metric_sum(&text, "ha_miner_leader_status", &[]) == 1.0
            {
                leaders.push(*id);
            }
        }
        assert!(leaders.len() <= 1, "two miners lead at once: {leaders:?}");
        if let [id] = leaders[..] {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no miner leads among {among:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM to the leader at `height`; the other node's miner must lead well within the lease TTL. Restarts the
/// stopped node. Returns (stopped, new leader, takeover time).
async fn stop_leader(cluster: &mut Cluster, env: &Env, height: i64) -> (u64, u64, Duration) {
    wait_height(&env.chain, height, Duration::from_secs(60)).await;
    let old = leading(cluster, &[1, 2], Duration::from_secs(10)).await;
    let other = 3 - old;
    let t0 = Instant::now();
    let exit = cluster.terminate(old, Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "node {old} stopped with {exit}\n{}",
        tail(&cluster.proc(old).log)
    );
    let new = leading(cluster, &[other], Duration::from_secs(10)).await;
    let took = t0.elapsed();
    let log = std::fs::read_to_string(&cluster.proc(old).log).unwrap();
    assert!(
        log.contains("miner leadership given up on stop"),
        "{}",
        tail(&cluster.proc(old).log)
    );
    cluster.start(old).await;
    (old, new, took)
}

/// Two nodes on one redis-server (leases of `ttl` seconds), one miner leading, the load sending to both.
struct Run {
    _server: RedisServer,
    env: Env,
    cluster: Cluster,
    load: Arc<Mutex<Load>>,
    stop: tokio::sync::watch::Sender<bool>,
    load_task: tokio::task::JoinHandle<()>,
}

impl Run {
    async fn start(ttl: u64) -> Self {
        Self::start_with(ttl, &[(1, "run"), (2, "run")], &[1, 2]).await
    }

    /// Nodes `(id, subcommand)` on one redis-server, one miner leading among those that mine, the load sending
    /// to the relayers of `load_to`.
    async fn start_with(ttl: u64, nodes: &[(u64, &'static str)], load_to: &[u64]) -> Self {
        let server = RedisServer::start(ServerOptions::default()).unwrap();
        let env = start_env(raft_block_ms(), 1.0).await;
        let mut cluster = Cluster::default();
        for (id, command) in nodes {
            let mut proc = redis_node(&env, *id, &server.url(), ttl);
            proc.command = command;
            cluster.add(proc);
        }
        for (id, _) in nodes {
            cluster.start(*id).await;
        }
        let miners: Vec<u64> = nodes
            .iter()
            .filter(|(_, c)| *c != "relayer")
            .map(|(id, _)| *id)
            .collect();
        leading(&cluster, &miners, Duration::from_secs(30)).await;
        let gens: Vec<(u64, LoadGen)> = load_to
            .iter()
            .copied()
            .map(|id| {
                let url = &cluster.proc(id).relay_url;
                (
                    id,
                    LoadGen::new(&env.genesis, Arc::clone(&env.client), url, SERVICE).unwrap(),
                )
            })
            .collect();
        let load = Arc::new(Mutex::new(Load::default()));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let load_task = spawn_load(
            env.chain.clone(),
            gens,
            Arc::clone(&load),
            stop_rx,
            Duration::from_millis(40),
        );
        Self {
            _server: server,
            env,
            cluster,
            load,
            stop,
            load_task,
        }
    }

    /// Loads through the current session, lets every served session settle, and asserts the money.
    async fn finish(self) {
        let env = &self.env;
        let params = env.chain.state().shared.clone();
        let last = SessionWindows::new(&params, env.chain.height()).unwrap();
        wait_height(&env.chain, last.end + 1, Duration::from_secs(60)).await;
        self.stop.send(true).unwrap();
        self.load_task.await.unwrap();
        let load = std::mem::take(&mut *self.load.lock().unwrap());
        let settle = SessionWindows::new(&params, load.max_session_end).unwrap();
        wait_height(&env.chain, settle.settlement + 1, Duration::from_secs(60)).await;
        let mut metrics = Vec::new();
        for id in 1..=2 {
            metrics.push(scrape(&self.cluster.proc(id).metrics_url).await);
        }
        drop(self.cluster);
        println!("{}", load.summary());
        assert!(load.served.len() >= 2, "too few sessions served: {:?}", load.served);
        assert_claims(&env.chain, &load.served, load.unanswered(), Proofs::EveryClaim);
        for (i, text) in metrics.iter().enumerate() {
            assert_eq!(
                metric_sum(text, "ha_miner_upokt_lost_total", &[]),
                0.0,
                "node {} lost revenue",
                i + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_standby_takes_over_at_once_when_the_leader_stops() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let mut run = Run::start(LEADER_TTL_SECONDS).await;
    // The leader stops as a loaded session's claim window opens, then the new one as the next one's proof window
    // opens: the standby leads within seconds each time (the TTL is 60 s), and the windows are met.
    let params = run.env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, run.env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();
    let first = stop_leader(&mut run.cluster, &run.env, s.claim_open).await;
    let next = SessionWindows::new(&params, s.end + 1).unwrap();
    let second = stop_leader(&mut run.cluster, &run.env, next.proof_open).await;
    println!(
        "redis HA: SIGTERM to leader {} → {} leads after {:?}; {} → {} after {:?}",
        first.0, first.1, first.2, second.0, second.1, second.2
    );
    for (_, _, took) in [first, second] {
        assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    }
    run.finish().await;
}

/// A leader killed (SIGKILL: no resign) mid-session: the standby leads once the 3 s lease expired (never two at
/// once, sampled every 20 ms), and the session is claimed and proven by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_standby_takes_over_when_a_killed_leaders_lease_expires() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    const TTL: u64 = 3;
    let mut run = Run::start(TTL).await;
    let params = run.env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, run.env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();
    wait_height(&run.env.chain, s.start + 1, Duration::from_secs(60)).await;
    let old = leading(&run.cluster, &[1, 2], Duration::from_secs(10)).await;
    let t0 = Instant::now();
    run.cluster.kill(old);
    let new = leading(&run.cluster, &[3 - old], Duration::from_secs(TTL + 10)).await;
    let took = t0.elapsed();
    println!("redis HA: SIGKILL to leader {old} → {new} leads after {took:?} (lease {TTL} s)");
    run.cluster.start(old).await;
    run.finish().await;
}

/// The Go fleet's deployment shape: `relay-miner relayer` (serves and records relays, never mines) and
/// `relay-miner miner` (mines what the relayer recorded, serves nothing) as separate processes on one Redis. The
/// load goes to the relayer only; every served relay is claimed and proven by the miner, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayer_process_and_a_miner_process_on_redis_lose_nothing() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let run = Run::start_with(LEADER_TTL_SECONDS, &[(1, "relayer"), (2, "miner")], &[1]).await;
    let relayer = scrape(&run.cluster.proc(1).metrics_url).await;
    assert!(
        !relayer.contains("ha_miner_leader_status"),
        "the relayer process runs a miner"
    );
    assert!(
        http_get(&run.cluster.proc(1).relay_url).await.is_some(),
        "the relayer process does not answer on its relay port"
    );
    let miner = scrape(&run.cluster.proc(2).metrics_url).await;
    assert!(
        !miner.contains("ha_relayer_relays_received_total"),
        "the miner process runs a relayer"
    );
    assert!(
        http_get(&run.cluster.proc(2).relay_url).await.is_none(),
        "the miner process answers on its relay port"
    );
    // A whole loaded session, then the current one (`finish`).
    let params = run.env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, run.env.chain.height()).unwrap();
    wait_height(&run.env.chain, now.end + 2, Duration::from_secs(60)).await;
    run.finish().await;
}
