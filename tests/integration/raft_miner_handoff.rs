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
//!
//! And when the leader lacks a **supplier's key** (its keys file is behind the others'): the leadership moved to
//! it while that supplier's session is live, it cannot sign the claim or the proof, and raft would keep it
//! leading. Now it hands the leadership to a voter holding the key, which claims and proves the session.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_miner::protocol::session::SessionWindows;
use relay_miner::protocol::wire::SharedParams;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::support::claims::{Proofs, assert_claims};
use crate::support::cluster::{Cluster, Env, TOKEN, start_env, tail};
use crate::support::traffic::Traffic;
use crate::support::{CLUSTER_TESTS, metric_sum, raft_block_ms, scrape, wait_height};

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
    let mut proxies = BTreeMap::new();
    for id in 1..=3 {
        proxies.insert(id, ChainProxy::start(&env.grpc_url).await);
    }
    let mut cluster = Cluster::default();
    cluster.add_voters(&env, 3, level, |proc| {
        proc.replace_in_config(
            &format!("  query_node_grpc_url: {}", env.grpc_url),
            &format!("  query_node_grpc_url: {}", proxies[&proc.id].url),
        );
    });
    cluster.start_all().await;
    let limit = Duration::from_secs(30);
    let (old, term) = cluster.leading(limit).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();

    // The load goes to the two nodes whose endpoints stay up (they forward their appends to the leader), from
    // the next session on: the one the leader's endpoint is cut at the start of.
    let (params, s) = next_session(&env, limit).await;
    let traffic = Traffic::start(&env, &cluster, others.clone(), Duration::from_millis(40));
    let t0 = Instant::now();
    proxies[&old].cut();
    let cut_at = env.chain.height();

    let h = await_hand_off(&env, &cluster, old, &others, term + 1, "chain_stalled", t0).await;
    println!(
        "leader {old} (term {term}) lost its chain endpoint at height {cut_at}; {}",
        h.describe(&s)
    );
    assert_eq!(
        h.counted,
        1.0,
        "node {old}'s hand-off count\n{}",
        tail(&cluster.proc(old).log)
    );
    h.assert_before_claim_close(&s);

    // Load through the session, then let it settle: the new leader claims and proves it.
    settle_and_check(&env, cluster, traffic, &params, &s, limit, started, h.new_term).await;
}

/// Supplier labels of `name` whose value is above 0 in a `/metrics` text.
fn suppliers_counted(metrics: &str, name: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_without_a_suppliers_key_hands_off_and_the_session_is_claimed_and_proven() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let started = Instant::now();
    let env = start_env(raft_block_ms(), 1.0).await;
    let level = "warn,relay_miner::miner=info,relay_miner::node=info";
    // Node 3's keys file lacks the first supplier's key (the others have both).
    assert_eq!(env.genesis.suppliers.len(), 2);
    let partial = env.dir.path().join("keys-partial.yaml");
    std::fs::write(&partial, format!("keys:\n  - {}\n", env.genesis.suppliers[1].key_hex)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let keyless = 3;
    let mut cluster = Cluster::default();
    cluster.add_voters(&env, 3, level, |proc| {
        if proc.id == keyless {
            proc.replace_in_config(
                &format!("  keys_file: {}", env.keys.display()),
                &format!("  keys_file: {}", partial.display()),
            );
        }
    });
    // All three start (the cluster is initialized once every listed peer answered, `raft::bootstrap`); a keyed
    // node is made the leader, so its miner stores the session's records.
    let keyed = [1, 2];
    cluster.start_all().await;
    let limit = Duration::from_secs(30);
    let (leader, _) = cluster.leader(0, limit).await;
    if leader == keyless {
        raft::AdminClient::new(cluster.proc(leader).raft_addr.clone(), TOKEN)
            .transfer_leader(Some(keyed[0]))
            .await
            .unwrap();
    }
    let (first, _) = cluster.leader_among(&keyed, 0, limit).await;
    cluster.miner_leads(first, limit).await;
    cluster.caught_up(keyless, limit).await;

    let (params, s) = next_session(&env, limit).await;
    let traffic = Traffic::start(&env, &cluster, keyed, Duration::from_millis(40));
    // Both suppliers' relays of the session mined by the keyed leader: their records are in storage.
    let deadline = Instant::now() + limit;
    while suppliers_counted(
        &scrape(&cluster.proc(first).metrics_url).await,
        "ha_miner_relays_consumed_from_stream_total",
    ) < 2
    {
        assert!(
            Instant::now() < deadline,
            "node {first} mined no relays of both suppliers\n{}",
            tail(&cluster.proc(first).log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, term) = cluster.leader(0, limit).await;
    // The leadership moves to the node lacking a key (as an operator's transfer, or an election, can do).
    let moved = raft::AdminClient::new(cluster.proc(first).raft_addr.clone(), TOKEN)
        .transfer_leader(Some(keyless))
        .await;
    let moved_at = env.chain.height();
    let t0 = Instant::now();
    let h = await_hand_off(&env, &cluster, keyless, &keyed, term + 2, "keyless", t0).await;
    println!(
        "node {first} led; transfer to node {keyless} (no key of one supplier) at height {moved_at}: {moved:?}; {}",
        h.describe(&s)
    );
    assert_eq!(moved.ok(), Some(keyless), "the transfer to node {keyless}");
    assert_eq!(
        h.counted,
        1.0,
        "node {keyless}'s keyless hand-off count\n{}",
        tail(&cluster.proc(keyless).log)
    );
    assert!(
        metric_sum(&h.old_metrics, "ha_miner_keyless_sessions", &[]) > 0.0,
        "node {keyless} found no keyless live session\n{}",
        tail(&cluster.proc(keyless).log)
    );
    h.assert_before_claim_close(&s);

    settle_and_check(&env, cluster, traffic, &params, &s, limit, started, h.new_term).await;
}

/// The session after the current one, once it started (waited for up to `limit`): the chain's shared params and
/// its windows. The hand-off tests load it from its first block and break the leader at its start.
pub(crate) async fn next_session(env: &Env, limit: Duration) -> (SharedParams, SessionWindows) {
    let params = env.chain.state().shared.clone();
    let now = SessionWindows::new(&params, env.chain.height()).unwrap();
    let s = SessionWindows::new(&params, now.end + 1).unwrap();
    wait_height(&env.chain, s.start, limit).await;
    (params, s)
}

/// A hand-off of the raft leadership away from a node whose miner could not work, as the test saw it.
pub(crate) struct HandOff {
    /// The node leading after it, and its term.
    pub new: u64,
    pub new_term: u64,
    /// From the fault to the new leader's raft leadership.
    pub after: Duration,
    /// The chain height once the new leader's miner led.
    pub at: i64,
    /// The old leader's `ha_miner_leadership_hand_offs_total{reason, outcome="handed_off"}`.
    pub counted: f64,
    /// The old leader's `/metrics` text, read once the new leader's miner led.
    pub old_metrics: String,
}

impl HandOff {
    /// What a test prints of it, with `s`'s windows.
    pub fn describe(&self, s: &SessionWindows) -> String {
        format!(
            "node {} leads term {} {} ms after the fault (height {}); session {}..{}, claim window {}..{}",
            self.new,
            self.new_term,
            self.after.as_millis(),
            self.at,
            s.start,
            s.end,
            s.claim_open,
            s.claim_close
        )
    }

    /// The new leader's miner led before `s`'s claim window closed: it can still claim the session.
    pub fn assert_before_claim_close(&self, s: &SessionWindows) {
        assert!(
            self.at < s.claim_close,
            "the hand-off came after the claim window closed (height {})",
            self.at
        );
    }
}

/// Waits (40 s) for a node of `among` to lead in a term ≥ `min_term` after the fault that began at `t0` on node
/// `old`, then (15 s) for its miner to lead, and reads `old`'s hand-off count for `reason`.
pub(crate) async fn await_hand_off(
    env: &Env,
    cluster: &Cluster,
    old: u64,
    among: &[u64],
    min_term: u64,
    reason: &str,
    t0: Instant,
) -> HandOff {
    let (new, new_term) = cluster.leader_among(among, min_term, Duration::from_secs(40)).await;
    let after = t0.elapsed();
    cluster.miner_leads(new, Duration::from_secs(15)).await;
    let at = env.chain.height();
    let old_metrics = scrape(&cluster.proc(old).metrics_url).await;
    let counted = metric_sum(
        &old_metrics,
        "ha_miner_leadership_hand_offs_total",
        &[("reason", reason), ("outcome", "handed_off")],
    );
    HandOff {
        new,
        new_term,
        after,
        at,
        counted,
        old_metrics,
    }
}

/// Loads through the session `s`, lets it settle, stops the cluster, and checks that every served relay was claimed
/// and proven once, one submitter per term (the monitor having seen the submissions of `new_term`), and that the
/// leadership did not move after `new_term`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn settle_and_check(
    env: &Env,
    cluster: Cluster,
    traffic: Traffic,
    params: &SharedParams,
    s: &SessionWindows,
    limit: Duration,
    started: Instant,
    new_term: u64,
) {
    wait_height(&env.chain, s.end + 1, limit).await;
    let (load, submitters) = traffic.finish(env, params).await;
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
    assert!(
        submitters.by_term.contains_key(&new_term),
        "the monitor saw no submission in term {new_term}, where the session's claims and proofs were due: {:?}",
        submitters.by_term
    );
    assert_claims(&env.chain, &load.served, load.unanswered(), Proofs::EveryClaim);
    assert_eq!(last_term, new_term, "the leadership moved again after the hand-off");
}
