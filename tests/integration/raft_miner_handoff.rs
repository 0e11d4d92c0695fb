//! Raft HA when only the leader's **chain endpoint** fails (real processes): three `relay-miner run --storage
//! raft` children, each reaching the simulator's gRPC through a TCP proxy of its own, so one node's chain endpoint
//! can be cut while its raft links and the others' endpoints stay up.
//!
//! The leader's endpoint is cut as a loaded session starts. Its raft core keeps heartbeating, so nothing in raft
//! moves the leadership, and on raft only the leader can hold the miner lease: before the miner watchdog
//! (`src/node/miner_watchdog.rs`) nobody claimed or proved that session. Now the leader, reading no chain
//! progress for 3 block times while a voter does, hands the raft leadership to it; that node's miner claims and
//! proves the session: every served relay claimed, each session claimed and proven once, one submitter per term,
//! and the old leader counts its hand-off (`ha_miner_leadership_hand_offs_total`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_miner::protocol::session::SessionWindows;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::support::claims::{Proofs, assert_claims};
use crate::support::cluster::{Cluster, NodeOpts, node_config, start_env, tail};
use crate::support::traffic::Traffic;
use crate::support::{CLUSTER_TESTS, free_port, metric_sum, raft_block_ms, scrape, wait_height};

/// A TCP proxy in front of the simulator's gRPC port for one node; [`ChainProxy::cut`] drops its open
/// connections and closes every new one at once (an endpoint that is down).
struct ChainProxy {
    url: String,
    cut: Arc<Mutex<bool>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl ChainProxy {
    async fn start(target_url: &str) -> Self {
        let target = target_url.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(Mutex::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, conns) = (Arc::clone(&cut), Arc::clone(&conns));
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let mut open = conns.lock().unwrap();
                    if *cut.lock().unwrap() {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    open.push(task.abort_handle());
                }
            }
        })
        .abort_handle();
        Self {
            url,
            cut,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        let mut open = self.conns.lock().unwrap();
        *self.cut.lock().unwrap() = true;
        for conn in open.drain(..) {
            conn.abort();
        }
    }
}

impl Drop for ChainProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_whose_chain_endpoint_fails_hands_off_and_the_session_is_claimed_and_proven() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let env = start_env(raft_block_ms(), 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    let raft_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let peers: Vec<(u64, String)> = raft_ports.iter().map(|(i, p)| (*i, format!("127.0.0.1:{p}"))).collect();
    let mut cluster = Cluster::default();
    let mut proxies = BTreeMap::new();
    for id in 1..=3 {
        let opts = NodeOpts {
            level,
            peers: &peers,
            raft_extra: &[],
        };
        let proc = node_config(&env, id, raft_ports[&id], &opts);
        let proxy = ChainProxy::start(&env.grpc_url).await;
        let config = std::fs::read_to_string(&proc.config).unwrap();
        let own = format!("query_node_grpc_url: {}\n", proxy.url);
        let rewritten = config.replace(&format!("query_node_grpc_url: {}\n", env.grpc_url), &own);
        assert!(rewritten.contains(&own), "{config}");
        std::fs::write(&proc.config, rewritten).unwrap();
        proxies.insert(id, proxy);
        cluster.add(proc);
    }
    for id in 1..=3 {
        cluster.start(id).await;
    }
    let limit = Duration::from_secs(30);
    let (old, term) = cluster.leader(0, limit).await;
    cluster.miner_leads(old, limit).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();

    // The load goes to the two nodes whose endpoints stay up (they forward their appends to the leader), from
    // the next session on: the one the leader's endpoint is cut at the start of.
    let params = env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();
    wait_height(&env.chain, s.start, limit).await;
    let traffic = Traffic::start(&env, &cluster, others.clone(), Duration::from_millis(40));
    let t0 = Instant::now();
    proxies[&old].cut();
    let cut_at = env.chain.height();

    let (new, new_term) = cluster.leader_among(&others, term + 1, Duration::from_secs(40)).await;
    let handed_off = t0.elapsed();
    cluster.miner_leads(new, Duration::from_secs(15)).await;
    let handed_at = env.chain.height();
    let old_metrics = scrape(&cluster.proc(old).metrics_url).await;
    let hand_offs = metric_sum(
        &old_metrics,
        "ha_miner_leadership_hand_offs_total",
        &[("reason", "chain_stalled"), ("outcome", "handed_off")],
    );
    println!(
        "leader {old} (term {term}) lost its chain endpoint at height {cut_at}; node {new} leads term {new_term} \
         after {} ms (height {handed_at}); session {}..{}, claim window {}..{}",
        handed_off.as_millis(),
        s.start,
        s.end,
        s.claim_open,
        s.claim_close
    );
    assert_eq!(
        hand_offs,
        1.0,
        "node {old}'s hand-off count\n{}",
        tail(&cluster.proc(old).log)
    );
    assert!(
        handed_at < s.claim_close,
        "the hand-off came after the claim window closed (height {handed_at})"
    );

    // Load through the session, then let it settle: the new leader claims and proves it.
    wait_height(&env.chain, s.end + 1, limit).await;
    let (load, submitters) = traffic.finish(&env, &params).await;
    let last_term = cluster.max_term().await;
    drop(cluster);
    println!(
        "load: {} sent, {} served (per node {:?}), {} refused, {} failed; sessions {:?}; submitters by term {:?}; \
         total {} s",
        load.sent,
        load.total_served(),
        load.served_by,
        load.refused,
        load.failed,
        load.served.keys().collect::<Vec<_>>(),
        submitters.by_term,
        started.elapsed().as_secs()
    );
    assert!(!load.served.is_empty(), "nothing served");
    submitters.assert_one_per_term();
    assert_claims(&env.chain, &load.served, load.unanswered(), Proofs::EveryClaim);
    assert_eq!(last_term, new_term, "the leadership moved again after the hand-off");
}
