//! Raft mode: a leader whose miner cannot make progress on the chain hands the raft leadership to a voter whose
//! miner can.
//!
//! On raft the miner lease can only be held by the raft leader (`raft` backend `leader` module). A leader whose
//! chain endpoint is down or stuck keeps heartbeating and keeps renewing its lease, while its miner fails every
//! iteration on the chain's tip: nobody claims or proves (revenue lost, then slashes), however healthy the other
//! nodes are. (On Redis the lease of a miner that stops renewing expires; on raft renewing needs no chain.)
//!
//! So every mining raft node probes the chain endpoint its miner uses ([`ChainClient::tip`], the call the
//! miner's iteration starts with) every [`PROBE_EVERY`] and publishes what it saw on its raft port
//! ([`raft::AppHealth`]): the height, how long ago it last advanced, the block time it measured, and whether it
//! counts as stalled: no advance for [`STALL_BLOCKS`] block times (within [`MIN_STALL`]..[`MAX_STALL`]; the block
//! time is measured from the heights seen, else taken from the peers, else [`DEFAULT_BLOCK_TIME`]). A raft leader
//! that is stalled asks the other voters for theirs and hands off to one that is not stalled and has read a
//! greater height (the highest; ties to the lowest id), with a WARN naming the reason, counted in
//! `ha_miner_leadership_hand_offs_total{reason="chain_stalled",outcome}`. The new raft term voids this node's
//! miner lease (the lease is checked against the entry's term), so the new leader's miner campaigns at once.
//!
//! No ping-pong: a hand-off needs a target that is both progressing and ahead, so a chain that halted for
//! everyone (all stalled at one height) moves nothing; and a node hands off at most once per [`COOLDOWN`].
//! A miner task that ended abnormally is handled by the node itself (the process exits with code 1, and its
//! graceful stop hands the leadership off first).
//!
//! Two more reasons a leader's miner cannot do the work while its chain reads are fine (rules in `choice`):
//! - `miner_hung`: the miner's loop stopped making progress without ending (an await that never returns, a
//!   deadlock): neither its heartbeat (`ha_loop_heartbeat_timestamp_seconds{loop="miner"}`, beaten at the start
//!   of every iteration, leading or not) nor the work it counts ([`choice::done`]: relays ingested, claims and
//!   proofs sent, sessions decided, and every phase, command, and supplier or session a long phase goes through)
//!   changed for [`choice::hung_after`]: 3 block times, at least 5 minutes, and at least 60 chain query timeouts.
//!   The bound does not grow with what the miner serves: a working miner, however many suppliers and sessions,
//!   counts a piece of work every few timeout-bounded calls. The node logs ERROR and publishes itself stalled
//!   (so nobody hands off to it), and, leading, hands off as for a stalled chain to a voter that progresses and
//!   is at most a block behind (nobody is ahead of a leader whose reads work). Process tests hang a real miner
//!   through a test-only fault hook (module `fault`).
//! - `keyless`: the miner, leading, found live sessions of suppliers whose key is not in this node's keys
//!   file (`MinerStats::keyless_suppliers`: it cannot sign their claims and proofs). Every node publishes the
//!   operator addresses it holds keys for; the leader hands off to a progressing voter (not stalled, at most a
//!   block behind) that holds more of the keys in play (its own and the lacking ones) than it does
//!   (`choice::pick_keyed` says why that rule and not "every lacking key"). A voter whose report has no key
//!   list (an older build) is never picked for it.
//!
//! All reasons share the rate limit and the `ha_miner_leadership_hand_offs_total{reason,outcome}` counter.

mod choice;
mod fault;

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use prometheus::{Gauge, IntCounterVec, Opts};
use raft::{AppHealth, RaftNode};
use tokio::task::JoinHandle;

use crate::chain::query::ChainClient;
use crate::keys::Keyring;
use crate::miner::driver::MinerStats;
use crate::telemetry::{Heartbeat, Telemetry, TelemetryError};
pub(super) use choice::MIN_HUNG;
use choice::{Pulse, Reason};
pub(super) use fault::TestFaults;

/// How often the chain endpoint is probed (and the health republished).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one probe's answer (an endpoint that blackholes requests counts as not answering).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Block times without a height advance after which a node counts as stalled.
pub const STALL_BLOCKS: u32 = 3;
/// Shortest stall that counts, whatever the measured block time.
pub const MIN_STALL: Duration = Duration::from_secs(3);
/// Longest stall needed, whatever the measured block time.
pub const MAX_STALL: Duration = Duration::from_secs(600);
/// The block time assumed before any was measured here or by a peer (Pocket mainnet's order of magnitude).
pub const DEFAULT_BLOCK_TIME: Duration = Duration::from_secs(60);
/// A node hands off at most once per this long.
pub const COOLDOWN: Duration = Duration::from_secs(60);
/// How long a hand-off waits for the target to lead.
const HAND_OFF_WAIT: Duration = Duration::from_secs(5);
/// Deadline of asking one peer for its health.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Height advances kept to measure the block time.
const PACE_POINTS: usize = 8;

/// The heights this node's probes read and when each advanced.
#[derive(Debug)]
pub(crate) struct Progress {
    started: Instant,
    height: i64,
    advanced_at: Option<Instant>,
    points: VecDeque<(i64, Instant)>,
}

impl Progress {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            started: now,
            height: 0,
            advanced_at: None,
            points: VecDeque::new(),
        }
    }

    /// A successful read of `height` at `now`.
    pub(crate) fn observe(&mut self, height: i64, now: Instant) {
        if height <= self.height {
            return;
        }
        self.height = height;
        self.advanced_at = Some(now);
        self.points.push_back((height, now));
        while self.points.len() > PACE_POINTS {
            self.points.pop_front();
        }
    }

    /// The block time over the advances kept (`None` before two advances).
    pub(crate) fn block_time(&self) -> Option<Duration> {
        let (first, last) = (self.points.front()?, self.points.back()?);
        let blocks = u32::try_from(last.0 - first.0).ok().filter(|b| *b > 0)?;
        Some(last.1.duration_since(first.1) / blocks)
    }

    /// How long since the height last advanced (since the start when it never did).
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.advanced_at.unwrap_or(self.started))
    }
}

/// No advance for this long counts as stalled, for the block time `block_time`.
pub(crate) fn stall_after(block_time: Option<Duration>) -> Duration {
    (block_time.unwrap_or(DEFAULT_BLOCK_TIME) * STALL_BLOCKS).clamp(MIN_STALL, MAX_STALL)
}

/// The longest block time the peers measured (the most cautious stall limit); `None` when none measured one.
fn slowest_block_time<'a>(peers: impl Iterator<Item = &'a AppHealth>) -> Option<Duration> {
    peers.filter_map(|h| h.block_time_ms).max().map(Duration::from_millis)
}

/// The watchdog's metrics.
struct Metrics {
    age: Gauge,
    hand_offs: IntCounterVec,
}

impl Metrics {
    fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        let age = Gauge::new(
            "ha_miner_chain_progress_age_seconds",
            "Seconds since the chain height read by this node's miner endpoint probe last advanced",
        )
        .map_err(TelemetryError::from)?;
        telemetry.register(Box::new(age.clone()))?;
        let hand_offs = IntCounterVec::new(
            Opts::new(
                "ha_miner_leadership_hand_offs_total",
                "Raft leadership hand-offs of a leader whose miner could not work, by reason and outcome \
                 (handed_off, failed, no_healthy_voter)",
            ),
            &["reason", "outcome"],
        )
        .map_err(TelemetryError::from)?;
        telemetry.register(Box::new(hand_offs.clone()))?;
        Ok(Self { age, hand_offs })
    }
}

/// What the watchdog watches of this node's miner besides its chain endpoint.
pub(super) struct Watched {
    /// The miner's stats (the suppliers of live sessions it has no key for, while it leads).
    pub stats: Arc<MinerStats>,
    /// This node's supplier keys, published to the peers.
    pub keyring: Keyring,
    /// The miner loop's heartbeat (`telemetry.heartbeat("miner")`), read to tell a hung loop.
    pub heartbeat: Heartbeat,
    /// The chain query timeout (`pocket_node.query_timeout_seconds`): the hung bound grows with it.
    pub query_timeout: Duration,
    /// The shortest iteration that counts as hung ([`MIN_HUNG`]; tests shorten it).
    pub min_hung: Duration,
    /// The hung bound instead of [`choice::hung_after`] (a test fault: `fault::HUNG_AFTER_MS`); `None` normally.
    pub hung_after: Option<Duration>,
}

/// Starts the watchdog of a mining raft node (module docs).
pub(super) fn spawn(
    chain: Arc<ChainClient>,
    node: Weak<RaftNode>,
    telemetry: &Telemetry,
    miner: Watched,
) -> Result<JoinHandle<()>, TelemetryError> {
    let metrics = Metrics::new(telemetry)?;
    let heartbeat = telemetry.heartbeat("miner_watchdog");
    Ok(tokio::spawn(async move {
        let mut progress = Progress::new(Instant::now());
        let mut pulse = Pulse::new(Instant::now());
        let mut ticker = tokio::time::interval(PROBE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut peer_block_time: Option<Duration> = None;
        let mut last_hand_off: Option<Instant> = None;
        let mut warned_no_target: Option<Instant> = None;
        let mut was_hung = false;
        let mut last_error = String::new();
        loop {
            ticker.tick().await;
            heartbeat.beat();
            match tokio::time::timeout(PROBE_TIMEOUT, chain.tip()).await {
                Ok(Ok(tip)) => progress.observe(tip.height, Instant::now()),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = format!("no answer within {PROBE_TIMEOUT:?}"),
            }
            let Some(node) = node.upgrade() else { return };
            // A leader that never saw two heights (its endpoint down since it started) measures nothing: it
            // takes the peers' measure rather than waiting out 3 × DEFAULT_BLOCK_TIME.
            if progress.block_time().is_none() && peer_block_time.is_none() && node.is_leader() {
                let peers = node.peer_app_health(PEER_TIMEOUT).await;
                peer_block_time = slowest_block_time(peers.iter().filter_map(|(_, r)| r.as_ref().ok()?.as_ref()));
            }
            let now = Instant::now();
            pulse.observe(miner.heartbeat.last(), choice::done(&miner.stats), now);
            let age = progress.age(now);
            metrics.age.set(age.as_secs_f64());
            let block_time = progress.block_time().or(peer_block_time);
            let limit = stall_after(block_time);
            let chain_stalled = age >= limit;
            let own: BTreeSet<String> = miner.keyring.addresses().into_iter().collect();
            let hung_for = pulse.age(now);
            let hung_limit = miner
                .hung_after
                .unwrap_or_else(|| choice::hung_after(block_time, miner.query_timeout, miner.min_hung));
            let miner_hung = hung_for >= hung_limit;
            if miner_hung && !was_hung {
                tracing::error!(
                    reason = Reason::MinerHung.label(),
                    no_progress_s = hung_for.as_secs(),
                    limit_s = hung_limit.as_secs(),
                    leader = node.is_leader(),
                    "this node's miner loop has made no progress for longer than any working iteration takes (hung: \
                     an await that never returns, a deadlock): it claims and proves nothing; reported stalled to the \
                     other voters, and a leader hands its leadership off"
                );
            } else if was_hung && !miner_hung {
                tracing::warn!("this node's miner loop makes progress again");
            }
            was_hung = miner_hung;
            node.set_app_health(AppHealth {
                chain_height: progress.height,
                progressed_ms_ago: progress
                    .advanced_at
                    .map(|t| u64::try_from(now.duration_since(t).as_millis()).unwrap_or(u64::MAX)),
                block_time_ms: progress
                    .block_time()
                    .map(|b| u64::try_from(b.as_millis()).unwrap_or(u64::MAX)),
                stalled: chain_stalled || miner_hung,
                suppliers: Some(own.iter().cloned().collect()),
            });
            if !node.is_leader() || last_hand_off.is_some_and(|t| now.duration_since(t) < COOLDOWN) {
                continue;
            }
            // The miner's list, as of its last listing, less the keys this node holds now (a key added since).
            let lacking: BTreeSet<String> = miner
                .stats
                .keyless_suppliers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .difference(&own)
                .cloned()
                .collect();
            let Some(reason) = choice::reason(miner_hung, chain_stalled, &lacking) else {
                continue;
            };
            let peers: Vec<(u64, Option<AppHealth>)> = node
                .peer_app_health(PEER_TIMEOUT)
                .await
                .into_iter()
                .map(|(id, r)| (id, r.ok().flatten()))
                .collect();
            // Measured by a peer: used from the next round on when this node never saw two heights.
            peer_block_time = slowest_block_time(peers.iter().filter_map(|(_, h)| h.as_ref())).or(peer_block_time);
            let why = match reason {
                Reason::ChainStalled => "this raft leader's miner reads no chain progress",
                Reason::MinerHung => "this raft leader's miner loop is hung",
                Reason::Keyless => "this raft leader lacks the keys of suppliers with live sessions",
            };
            let label = reason.label();
            let Some(to) = choice::pick(reason, progress.height, &own, &lacking, &peers) else {
                if warned_no_target.is_none_or(|t| now.duration_since(t) >= COOLDOWN) {
                    warned_no_target = Some(now);
                    metrics.hand_offs.with_label_values(&[label, "no_healthy_voter"]).inc();
                    tracing::warn!(
                        reason = label,
                        height = progress.height,
                        stalled_for_s = age.as_secs(),
                        iteration_running_s = hung_for.as_secs(),
                        lacking = ?lacking,
                        last_error = %last_error,
                        peers = ?peers,
                        "{why}, but no other voter does better: keeping the leadership"
                    );
                }
                continue;
            };
            last_hand_off = Some(now);
            tracing::warn!(
                reason = label,
                height = progress.height,
                stalled_for_s = age.as_secs(),
                limit_s = limit.as_secs(),
                iteration_running_s = hung_for.as_secs(),
                lacking = ?lacking,
                last_error = %last_error,
                to,
                "{why}: handing the raft leadership (and the miner lease) to a voter whose miner can do the work"
            );
            match node.hand_off_to(to, HAND_OFF_WAIT).await {
                Ok(leader) => {
                    metrics.hand_offs.with_label_values(&[label, "handed_off"]).inc();
                    tracing::warn!(reason = label, leader, "raft leadership handed off");
                }
                Err(e) => {
                    metrics.hand_offs.with_label_values(&[label, "failed"]).inc();
                    tracing::warn!(reason = label, to, error = %e, "raft leadership hand-off failed");
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn progress_measures_block_time_and_age() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        assert_eq!(
            p.age(t0 + Duration::from_secs(4)),
            Duration::from_secs(4),
            "never advanced: since start"
        );
        assert_eq!(p.block_time(), None);
        p.observe(10, t0 + Duration::from_secs(1));
        p.observe(10, t0 + Duration::from_secs(2));
        assert_eq!(p.block_time(), None, "one advance measures nothing");
        p.observe(14, t0 + Duration::from_secs(9));
        assert_eq!(p.block_time(), Some(Duration::from_secs(2)));
        p.observe(12, t0 + Duration::from_secs(10));
        assert_eq!(
            p.height, 14,
            "a lower height (another node behind a balancer) is no progress"
        );
        assert_eq!(p.age(t0 + Duration::from_secs(15)), Duration::from_secs(6));
    }

    #[test]
    fn stall_is_three_block_times_within_bounds() {
        assert_eq!(stall_after(Some(Duration::from_secs(2))), Duration::from_secs(6));
        assert_eq!(stall_after(Some(Duration::from_millis(100))), MIN_STALL);
        assert_eq!(stall_after(None), Duration::from_secs(180));
        assert_eq!(stall_after(Some(Duration::from_secs(3600))), MAX_STALL);
    }

    /// A raft node on a free port, not initialized (it leads nothing: the watchdog only publishes).
    async fn lone_node(dir: &std::path::Path) -> Arc<RaftNode> {
        let listen = "127.0.0.1:0".parse().unwrap();
        Arc::new(
            RaftNode::start(raft::RaftConfig::new(1, listen, dir, TOKEN))
                .await
                .unwrap(),
        )
    }

    const TOKEN: &str = "watchdog-test-cluster-token-0123456789";

    /// What `node` serves on its raft port.
    async fn served(node: &RaftNode) -> Option<AppHealth> {
        raft::wire::PeerClient::new(&node.local_addr().to_string(), TOKEN)
            .call(raft::app_health::PATH, &(), Duration::from_secs(2))
            .await
            .unwrap()
    }

    /// The loop publishes this node's keys, and `stalled` once the miner's heartbeat stopped changing for the
    /// hung bound, while a node whose miner beats stays unstalled (their chain endpoint is down for both and
    /// stays far from its own 3-minute stall limit).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miner_whose_heartbeat_stops_is_published_stalled_with_the_nodes_keys() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (hung, beating) = (lone_node(dirs.0.path()).await, lone_node(dirs.1.path()).await);
        let keys = crate::keys::parse_keys(
            std::path::Path::new("keys.yaml"),
            &format!("keys:\n  - {}\n", "01".repeat(32)),
        )
        .unwrap();
        let keyring = Keyring::new(keys);
        let chain = Arc::new(ChainClient::new("http://127.0.0.1:1", Duration::from_millis(200)).unwrap());
        let start = |node: &Arc<RaftNode>| {
            let telemetry = Telemetry::new().unwrap();
            let watched = Watched {
                stats: Arc::default(),
                keyring: keyring.clone(),
                heartbeat: telemetry.heartbeat("miner"),
                query_timeout: Duration::from_millis(1),
                min_hung: Duration::from_secs(2),
                hung_after: None,
            };
            let beat = telemetry.heartbeat("miner");
            (
                spawn(Arc::clone(&chain), Arc::downgrade(node), &telemetry, watched).unwrap(),
                beat,
            )
        };
        let (hung_task, _never) = start(&hung);
        let (beating_task, beat) = start(&beating);
        let beater = tokio::spawn(async move {
            loop {
                beat.beat();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let report = loop {
            if let Some(h) = served(&hung).await.filter(|h| h.stalled) {
                break h;
            }
            assert!(
                Instant::now() < deadline,
                "never published stalled: {:?}",
                served(&hung).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(report.suppliers, Some(keyring.addresses()));
        assert_eq!(report.chain_height, 0);
        let other = served(&beating).await.unwrap();
        assert!(!other.stalled, "{other:?}");
        assert_eq!(other.suppliers, Some(keyring.addresses()));
        for task in [hung_task, beating_task, beater] {
            task.abort();
        }
    }

    /// Three miners whose loops never beat again after the start: the one that does nothing is published stalled
    /// after the 2 s bound; the one whose counted work goes on (claims sent inside an iteration that has not
    /// completed), and the one inside a long phase that goes through many sessions (`steps_done` counted per
    /// session, nothing else moving), are not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miner_that_works_or_goes_through_many_sessions_is_not_hung_when_its_heartbeat_waits() {
        let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
        let mut nodes = Vec::new();
        for dir in &dirs {
            nodes.push(lone_node(dir.path()).await);
        }
        let chain = Arc::new(ChainClient::new("http://127.0.0.1:1", Duration::from_millis(200)).unwrap());
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        for node in &nodes {
            let telemetry = Telemetry::new().unwrap();
            let miner_stats: Arc<MinerStats> = Arc::default();
            stats.push(Arc::clone(&miner_stats));
            let watched = Watched {
                stats: miner_stats,
                keyring: Keyring::new(Default::default()),
                heartbeat: telemetry.heartbeat("miner"),
                query_timeout: Duration::from_millis(20),
                min_hung: Duration::from_secs(2),
                hung_after: None,
            };
            telemetry.heartbeat("miner").beat();
            tasks.push(spawn(Arc::clone(&chain), Arc::downgrade(node), &telemetry, watched).unwrap());
        }
        let spawned = Instant::now();
        let (working, busy) = (Arc::clone(&stats[1]), Arc::clone(&stats[2]));
        tasks.push(tokio::spawn(async move {
            loop {
                working.claims_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                busy.steps_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !served(&nodes[0]).await.is_some_and(|h| h.stalled) {
            assert!(Instant::now() < deadline, "the idle miner was never published stalled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Until each of the others has judged its miner past the idle bound too (two rounds after it).
        tokio::time::sleep_until((spawned + Duration::from_secs(2) + PROBE_EVERY * 2).into()).await;
        for (i, what) in [(1, "working"), (2, "busy")] {
            let h = served(&nodes[i]).await.unwrap();
            assert!(!h.stalled, "the {what} miner was published stalled: {h:?}");
        }
        for task in tasks {
            task.abort();
        }
    }
}
