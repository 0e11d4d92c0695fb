//! [`RaftNode`]: one raft member: its log and state machine files, the raft port (raft + admin RPCs), the
//! openraft instance and the storage bundle it serves.
//!
//! Data dir layout: `log.redb` (raft log), `sm/state.redb` (state machine), `sm/snapshots/` (snapshot files and
//! snapshot chunks being received). Restarting a node on the same data dir resumes from its vote, log and
//! applied state; a wiped node must join under a **new** node id, which [`crate::identity`] enforces (the
//! `identity` and `peers` files); `witness` holds what this node knows of its peers' votes and acknowledgements.
//!
//! Start order: files, then openraft with its raft RPCs gated, then the raft port, then the rollback check
//! ([`crate::rollback`]: peers asked whether this directory is older than what they saw of it), and only then
//! does the node vote, acknowledge or campaign. A directory that went back in time is refused
//! ([`NodeError::RolledBack`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::{Config, SnapshotPolicy};
use storage::Storage;
use tokio::sync::{oneshot, watch};

use crate::admin::Status;
use crate::backend::{BatchConfig, RaftBackend};
use crate::core::Core;
use crate::features::{FeatureSet, Features};
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::rollback::Local;
use crate::server::{ServerState, router};
use crate::sm::StateMachine;
use crate::types::{NodeInfo, Raft};

/// Configuration of one raft node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id (never reuse the id of a wiped node).
    pub node_id: u64,
    /// Address the raft port binds (port 0 = any free port).
    pub listen: SocketAddr,
    /// Address peers use to reach this node's raft port (`None` = the bound address).
    pub advertise: Option<String>,
    /// Optional API address recorded in the membership for operators.
    pub api_addr: Option<String>,
    /// Data directory (log, state machine, snapshots).
    pub data_dir: PathBuf,
    /// Pre-shared cluster token; every raft-port request must carry it.
    pub cluster_token: String,
    /// Leader heartbeat interval (also openraft's deadline of one heartbeat or append RPC).
    pub heartbeat: Duration,
    /// Election timeout range `(min, max)`. `max` is also the leader lease: a follower that last heard the
    /// leader at `t` campaigns at `t + max + U(min, max)` and refuses other candidates until `t + max`.
    pub election_timeout: (Duration, Duration),
    /// Run a pre-vote round before a real election: a node that cannot win (cut off, shorter log) does not bump
    /// the term, so it neither splits the vote of the node that can nor deposes a healthy leader on reconnect.
    pub pre_vote: bool,
    /// Most entries in one append RPC. openraft gives an append the heartbeat interval as its deadline, so a
    /// lagging follower or a new learner only catches up if a full append is sent, stored and answered within it.
    pub max_payload_entries: u64,
    /// Most encoded bytes of entries in one append RPC (its first entry always goes, whatever its size; at most
    /// [`crate::MAX_ENTRY_BYTES`]). Relay entries weigh up to [`crate::MAX_ENTRY_BYTES`] each, and an append must stay
    /// under the raft port's request limit ([`crate::wire::MAX_BODY`]) or it is refused every time it is resent, and
    /// the follower never catches up.
    pub max_payload_bytes: usize,
    /// Build a snapshot every this many applied entries (and purge the log behind it).
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for followers slightly behind).
    pub keep_after_snapshot: u64,
    /// Deadline of a whole snapshot install on a follower.
    pub install_snapshot_timeout: Duration,
    /// Relay-log group commit.
    pub batch: BatchConfig,
    /// The raft features this node advertises on every raft RPC and answer ([`crate::features`]):
    /// [`FeatureSet::CURRENT`], everything this build can apply. A node advertising fewer never proposes the
    /// entries of the others itself either. Tests set [`FeatureSet::NONE`] to stand for a node of a build
    /// without write sets, which sends no features header.
    pub features: FeatureSet,
    /// How long the start check ([`crate::rollback`]) waits for every other member to say what it knows of this
    /// node before starting with the answers it has (a WARN names who did not answer). The node takes no part in
    /// raft meanwhile. Peers answer at once when up, so this only delays a start while a member is down.
    pub start_check_wait: Duration,
    /// Peers asked by the start check besides the members in this node's own files (e.g. the configured peer
    /// list: a member added after this directory's copy was taken is not in it).
    pub start_check_peers: BTreeMap<u64, NodeInfo>,
}

impl RaftConfig {
    /// Default [`RaftConfig::start_check_wait`].
    pub const DEFAULT_START_CHECK_WAIT: Duration = Duration::from_secs(10);
    /// Default [`RaftConfig::heartbeat`].
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(50);
    /// Default [`RaftConfig::election_timeout`].
    pub const DEFAULT_ELECTION_TIMEOUT: (Duration, Duration) = (Duration::from_millis(150), Duration::from_millis(300));

    /// Defaults for node `node_id` with data in `data_dir`, listening on `listen`: heartbeat 50 ms, election
    /// timeout 150–300 ms, pre-vote on, at most 64 entries and 16 MiB per append, a snapshot every 10 000 entries.
    ///
    /// Failover arithmetic (openraft 0.10): a follower keeps the leader's lease for `election_timeout.1` after
    /// the last heartbeat it received, then waits a random `election_timeout` more before it campaigns. So the
    /// first surviving follower campaigns `max + U(min, max)` after the old leader's last heartbeat: 450–600 ms
    /// with these defaults, plus a pre-vote and a vote round trip. Without pre-vote, when the follower with the
    /// shorter log times out first, it bumps the term and votes for itself; the other follower rejects it (log)
    /// and then campaigns in that same term, which the first rejects (already voted): the election needs a
    /// third timeout, `max + 2 × U(min, max)` (0.8–1.2 s with 200–400 ms, measured). With pre-vote the shorter
    /// log's pre-vote fails without touching the term and the longer log wins the first round. Two candidates
    /// with equal logs timing out within one round trip still split (rare with a 150 ms range): `max + 2 ×
    /// U(min, max)` ≤ 900 ms.
    ///
    /// Spurious elections: a follower campaigns after hearing nothing for `max + min` = 450 ms (heartbeats go
    /// out every 50 ms), and with pre-vote it only wins when a majority also has not heard the leader for the
    /// lease (300 ms): in practice a stall of the leader itself, not of one follower.
    pub fn new(
        node_id: u64,
        listen: SocketAddr,
        data_dir: impl Into<PathBuf>,
        cluster_token: impl Into<String>,
    ) -> Self {
        Self {
            node_id,
            listen,
            advertise: None,
            api_addr: None,
            data_dir: data_dir.into(),
            cluster_token: cluster_token.into(),
            heartbeat: Self::DEFAULT_HEARTBEAT,
            election_timeout: Self::DEFAULT_ELECTION_TIMEOUT,
            pre_vote: true,
            max_payload_entries: 64,
            max_payload_bytes: crate::log_store::DEFAULT_MAX_PAYLOAD_BYTES,
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
            install_snapshot_timeout: Duration::from_secs(60),
            batch: BatchConfig::default(),
            features: FeatureSet::CURRENT,
            start_check_wait: Self::DEFAULT_START_CHECK_WAIT,
            start_check_peers: BTreeMap::new(),
        }
    }
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Files or sockets.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Invalid raft configuration.
    #[error("raft config: {0}")]
    Config(String),
    /// openraft failed to start.
    #[error("raft: {0}")]
    Raft(String),
    /// The data directory is older than what a peer saw of this node ([`crate::rollback`]): it must be wiped and
    /// the node added again.
    #[error("raft data directory rolled back: {0}")]
    RolledBack(String),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A running raft node.
pub struct RaftNode {
    raft: Raft,
    core: Arc<Core>,
    backend: Arc<RaftBackend>,
    addr: SocketAddr,
    advertise: String,
    api_addr: Option<String>,
    data_dir: PathBuf,
    /// The cluster token, for this node's own calls to its peers' raft ports ([`RaftNode::peer_app_health`]).
    token: String,
    /// What this node's application last published ([`crate::app_health`]), served on the raft port.
    app_health: crate::app_health::Shared,
    stop: watch::Sender<bool>,
    server_stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Who answered the start check ([`crate::rollback`]); `None` when there was nobody to ask.
    checked: Option<crate::rollback::Checked>,
}

impl RaftNode {
    /// Opens the node's files, binds its raft port and starts raft. A fresh node waits to be initialized
    /// ([`RaftNode::initialize`] or `AdminClient::init`) or added by the leader.
    pub async fn start(cfg: RaftConfig) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let identity = Arc::new(
            crate::identity::Identity::open(&cfg.data_dir, cfg.node_id)
                .map_err(|e| NodeError::Config(e.to_string()))?,
        );
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let advertise = cfg.advertise.clone().unwrap_or_else(|| addr.to_string());
        let config = Config {
            cluster_name: "relay-miner".into(),
            heartbeat_interval: ms(cfg.heartbeat),
            election_timeout_min: ms(cfg.election_timeout.0),
            election_timeout_max: ms(cfg.election_timeout.1),
            install_snapshot_timeout: ms(cfg.install_snapshot_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.keep_after_snapshot,
            enable_pre_vote: Some(cfg.pre_vote),
            // No election until the rollback check passed ([`crate::rollback`]): with pre-vote off, a gated node
            // would otherwise campaign alone at every election timeout and save a vote of a higher term into a
            // rolled-back directory, so that after its refusal a restart would find a vote newer than what its
            // peers saw and pass. Enabled once the gate opens.
            enable_elect: false,
            max_payload_entries: cfg.max_payload_entries.max(1),
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| NodeError::Config(e.to_string()))?);
        if cfg.max_payload_bytes > crate::MAX_ENTRY_BYTES {
            return Err(NodeError::Config(format!(
                "max_payload_bytes {} is over {} (the largest entry), so an append could exceed the raft port's \
                 request limit ({} bytes)",
                cfg.max_payload_bytes,
                crate::MAX_ENTRY_BYTES,
                crate::wire::MAX_BODY
            )));
        }
        let mut log = LogStore::open(&cfg.data_dir.join("log.redb"))?.with_max_payload_bytes(cfg.max_payload_bytes);
        let sm_dir = cfg.data_dir.join("sm");
        let stats = crate::RaftStats::new().map_err(|e| NodeError::Config(format!("metrics: {e}")))?;
        let mut sm = StateMachine::open(&sm_dir)?.with_stats(stats.clone());
        // This node's vote and log as its files hold them, before openraft can change them.
        let local = local_state(&mut log, &mut sm).await?;
        let witness = Arc::new(crate::rollback::Witness::open(&cfg.data_dir)?);
        let reader = sm.reader();
        let features = Arc::new(Features::new(cfg.node_id, cfg.features));
        let net = NetworkFactory::new(identity.clone(), features.clone(), witness.clone(), &cfg.cluster_token)
            .with_stats(stats.clone());
        let raft = Raft::new(cfg.node_id, config, net.clone(), log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let core = Arc::new(Core {
            raft: raft.clone(),
            id: cfg.node_id,
            net,
            lease: cfg.election_timeout.0,
            confirm_wait: cfg.election_timeout.1,
            leader_contact: std::sync::Mutex::new(None),
            stats,
            identity: identity.clone(),
            features,
        });
        let (stop, stop_rx) = watch::channel(false);
        // Peers removed from the membership are forgotten, so their ids can be reused; the write-set gauge
        // follows leadership and membership changes (and what peers advertise, heard with each replication
        // answer) ([`crate::features`]); a leader records what each peer acknowledged ([`crate::rollback`]).
        {
            let mut metrics = raft.metrics();
            let identity = identity.clone();
            let witness = witness.clone();
            let core = core.clone();
            tokio::spawn(async move {
                loop {
                    let members: std::collections::BTreeSet<u64> = {
                        let m = metrics.borrow_and_update();
                        core.features.set_term(m.current_term);
                        if m.state == openraft::ServerState::Leader
                            && m.current_leader == Some(core.id)
                            && let Some(replication) = &m.replication
                        {
                            for (id, matched) in replication.iter() {
                                if let (false, Some(matched)) = (*id == core.id, matched) {
                                    let incarnation = identity.target(*id).incarnation;
                                    witness.record_ack(*id, incarnation, m.current_term, matched.index);
                                }
                            }
                        }
                        m.membership_config.membership().nodes().map(|(id, _)| *id).collect()
                    };
                    if !members.is_empty() {
                        identity.forget_absent(&members);
                        witness.forget_absent(&members);
                    }
                    core.write_set_lacking();
                    if metrics.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        // The witness is written when it changed, once a second and once more at shutdown: what peers find there
        // after a restart is a lower bound of what this node saw.
        {
            let witness = witness.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                // Failures in a row: the first is logged, then one in a minute (a full disk fails every second).
                let mut failing = 0u64;
                loop {
                    let stopping = tokio::select! {
                        _ = tokio::time::sleep(crate::rollback::FLUSH_EVERY) => false,
                        _ = stop.changed() => true,
                    };
                    match witness.flush() {
                        Err(e) => {
                            if failing.is_multiple_of(60) {
                                tracing::warn!(error = %e, failures_in_a_row = failing + 1, "raft: could not write \
                                               the witness file (what this node knows of its peers' votes and \
                                               acknowledgements); retrying every second");
                            }
                            failing += 1;
                        }
                        Ok(()) => failing = 0,
                    }
                    if stopping || *stop.borrow() {
                        return;
                    }
                }
            });
        }
        let backend = RaftBackend::start(core.clone(), reader, cfg.batch, stop_rx);
        let app_health = crate::app_health::Shared::default();
        let state = ServerState::new(
            core.clone(),
            &cfg.cluster_token,
            sm_dir.join("snapshots"),
            app_health.clone(),
        );
        let (server_stop, server_stop_rx) = oneshot::channel::<()>();
        let app = router(state);
        let server = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = server_stop_rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!("raft port server failed: {e}");
            }
        });
        let mut node = Self {
            raft,
            core,
            backend,
            addr,
            advertise,
            api_addr: cfg.api_addr.clone(),
            data_dir: cfg.data_dir.clone(),
            token: cfg.cluster_token.clone(),
            app_health,
            stop,
            server_stop: Some(server_stop),
            server: Some(server),
            checked: None,
        };
        match node.check_peers(&cfg, identity.incarnation(), local).await {
            Ok(checked) => {
                node.checked = checked;
                witness.open_gate();
                node.raft.runtime_config().elect(true);
                Ok(node)
            }
            Err(e) => {
                node.shutdown().await;
                Err(e)
            }
        }
    }

    /// The rollback check at start ([`crate::rollback`]): asks every other member this node's files list (and
    /// [`RaftConfig::start_check_peers`]) what it knows of this node; refuses a data directory older than that.
    async fn check_peers(
        &self,
        cfg: &RaftConfig,
        incarnation: u64,
        local: Local,
    ) -> Result<Option<crate::rollback::Checked>, NodeError> {
        let me = self.core.id;
        let mut peers: BTreeMap<u64, String> = self
            .raft
            .with_raft_state(|st| {
                st.membership_state
                    .effective()
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.raft_addr.clone()))
                    .collect::<BTreeMap<u64, String>>()
            })
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        for (id, n) in &cfg.start_check_peers {
            peers.entry(*id).or_insert_with(|| n.raft_addr.clone());
        }
        peers.remove(&me);
        if peers.is_empty() {
            return Ok(None);
        }
        let dir = self.data_dir.display();
        match crate::rollback::check(me, incarnation, local, &peers, &self.token, cfg.start_check_wait).await {
            Ok(checked) if checked.unanswered.is_empty() => {
                tracing::info!(node_id = me, peers = ?checked.answered, "raft: start check passed: no peer saw this \
                               node with a newer vote or a longer log than its data directory holds");
                Ok(Some(checked))
            }
            Ok(checked) => {
                tracing::warn!(
                    node_id = me,
                    answered = ?checked.answered,
                    "raft: starting without the answer of every member after {:?}: a data directory restored from \
                     an older copy is only checked against the members that answered (an older vote or a shorter log \
                     than a silent member saw goes undetected). No answer from: {}",
                    cfg.start_check_wait,
                    checked
                        .unanswered
                        .iter()
                        .map(|(id, why)| format!("node {id} ({why})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(Some(checked))
            }
            Err(evidence) => {
                let msg = format!(
                    "raft node {me}'s data directory {dir} is older than what node {peer} saw of it: {why}. It was \
                     restored from an older copy (a backup, a VM snapshot) or lost writes; its vote and log went back \
                     in time, so it could vote twice in a term or lose entries the cluster committed with its \
                     acknowledgement. The node does not start. Fix: stop it, move {dir} away (or wipe it), then from \
                     any member `relay-miner raft remove --id {me} --addr <a member's raft address>`, start this node \
                     on an empty directory, then `relay-miner raft add-learner --id {me} --node-addr {addr} --wait` \
                     and `relay-miner raft promote --id {me}`",
                    peer = evidence.peer,
                    why = evidence.why,
                    addr = self.advertise,
                );
                tracing::error!(node_id = me, "{msg}");
                Err(NodeError::RolledBack(msg))
            }
        }
    }

    /// Who answered this node's start check ([`crate::rollback`]) and who did not within the wait; `None` when
    /// its files named no other member to ask (a new node, a single voter).
    pub fn start_check(&self) -> Option<&crate::rollback::Checked> {
        self.checked.as_ref()
    }

    /// The storage contract served by this node (backend name `"raft"`).
    pub fn storage(&self) -> Storage {
        self.backend.storage()
    }

    /// The openraft handle (for metrics and advanced use).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The bound address of the raft port.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node as the cluster records it.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            raft_addr: self.advertise.clone(),
            api_addr: self.api_addr.clone(),
        }
    }

    /// Initializes a new cluster with these voters (call on one node of a fresh cluster).
    pub async fn initialize(&self, members: BTreeMap<u64, NodeInfo>) -> Result<(), NodeError> {
        self.raft
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Decides, once the listed peers answer, whether this node initializes a new cluster, and does so
    /// ([`crate::bootstrap`]): only the lowest id of `bootstrap.peers` does, only while its own store is empty,
    /// and only when a majority of the listed peers answered and none holds raft state. Runs in the background,
    /// asking again while too few peers answer; ends with the outcome (logged), or `Stopped` at shutdown.
    pub fn spawn_bootstrap(&self, bootstrap: crate::Bootstrap) -> tokio::task::JoinHandle<crate::BootstrapOutcome> {
        let raft = self.raft.clone();
        let stop = self.stop.subscribe();
        tokio::spawn(crate::bootstrap::run(
            raft,
            self.core.id,
            self.token.clone(),
            bootstrap,
            stop,
        ))
    }

    /// One round of [`RaftNode::spawn_bootstrap`]: `Waiting` when too few peers answered (nothing done).
    pub async fn bootstrap_round(&self, bootstrap: &crate::Bootstrap) -> Result<crate::BootstrapOutcome, NodeError> {
        crate::bootstrap::round(&self.raft, self.core.id, &self.token, bootstrap)
            .await
            .map_err(NodeError::Raft)
    }

    /// Metrics values: term, leader, leadership, log/commit/apply indexes, replication lag per follower.
    pub fn status(&self) -> Status {
        Status::of(&self.core)
    }

    /// True when this node is the raft leader with a recent quorum acknowledgement.
    pub fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    /// This node's write-latency and snapshot counters (register [`crate::RaftStats::collectors`] with the process's
    /// Prometheus registry).
    pub fn stats(&self) -> &crate::RaftStats {
        &self.core.stats
    }

    /// `Ok` when the node can serve writes; else why not (no leader known, leader without quorum, stopped).
    pub fn readiness(&self) -> Result<(), String> {
        self.core.readiness()
    }

    /// Why openraft's core stopped, once it has: a storage error (a log or state machine write that failed,
    /// e.g. `ENOSPC`) or a fatal bug. The core never runs again in this process; only a restart on the same data
    /// directory brings the node back (it then catches up from the leader).
    pub fn stopped(&self) -> Option<String> {
        self.core.view().running.err()
    }

    /// The node's data directory (raft log, state machine, snapshots, identity).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// On the leader: hands the leadership to the most caught-up other voter and waits up to `wait` for it to
    /// lead (see `transfer`), so a planned stop costs the cluster one election round instead of an election
    /// timeout with every write waiting. Call it before [`RaftNode::shutdown`] once this node's own writers
    /// (relayer, miner) have stopped. Returns the new leader; `None` (logged) on a follower, in a cluster of
    /// one voter, on a stopped core, or when the target did not lead in time (the cluster then elects as after
    /// any leader loss).
    pub async fn hand_off(&self, wait: std::time::Duration) -> Option<u64> {
        if self.stopped().is_some() || self.core.view().leader != Some(self.core.id) {
            return None;
        }
        match self.core.transfer_leadership(None, wait).await {
            Ok(to) => Some(to),
            Err(e @ crate::wire::WireError::BadRequest(_)) => {
                // A cluster of one voter: nobody to hand the role to.
                tracing::debug!("raft: no leadership hand-off before stopping: {e}");
                None
            }
            Err(e) => {
                tracing::warn!("raft: leadership not handed off before stopping: {e}");
                None
            }
        }
    }

    /// Publishes what this node's application reports about itself; peers read it on the raft port
    /// ([`crate::app_health`]).
    pub fn set_app_health(&self, health: crate::AppHealth) {
        *self.app_health.lock().unwrap_or_else(|p| p.into_inner()) = Some(health);
    }

    /// The application health every other voter publishes, asked concurrently, each within `timeout`: by node
    /// id, `Ok(None)` for a member that published nothing yet, `Err` for one that did not answer (down, cut off,
    /// or a build without the route). Empty on a node that knows no other voter.
    pub async fn peer_app_health(
        &self,
        timeout: Duration,
    ) -> Vec<(u64, Result<Option<crate::AppHealth>, crate::wire::WireError>)> {
        let peers: Vec<(u64, String)> = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let mem = m.membership_config.membership();
            mem.voter_ids()
                .filter(|id| *id != self.core.id)
                .filter_map(|id| mem.get_node(&id).map(|n| (id, n.raft_addr.clone())))
                .collect()
        };
        let asks = peers.into_iter().map(|(id, addr)| {
            let token = self.token.clone();
            async move {
                let client = crate::wire::PeerClient::new(&addr, &token);
                (id, client.call(crate::app_health::PATH, &(), timeout).await)
            }
        });
        futures::future::join_all(asks).await
    }

    /// On the leader: hands the leadership to voter `to` and waits up to `wait` for it to lead (see `transfer`);
    /// the new leader's id. Errors: `NotLeader` on a follower, `BadRequest` for a target that is not another
    /// voter, `Raft` when the target did not lead in time (the cluster then elects as after a leader loss).
    pub async fn hand_off_to(&self, to: u64, wait: Duration) -> Result<u64, crate::wire::WireError> {
        self.core.check_running()?;
        self.core.transfer_leadership(Some(to), wait).await
    }

    /// Stops raft, the raft port and the backend tasks. The data dir can be reopened once every clone of the
    /// storage bundle is dropped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        // The last acknowledgements seen, for the peers' start checks after this node restarts.
        if let Err(e) = self.core.net.witness().flush() {
            tracing::warn!(error = %e, "raft: could not write the witness file at shutdown");
        }
        if let Some(s) = self.server_stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

/// This node's vote term and last log index as its files hold them ([`crate::rollback`]): the log's last entry,
/// its purged prefix or the state machine's applied index, whichever is last.
async fn local_state(log: &mut LogStore, sm: &mut StateMachine) -> Result<Local, NodeError> {
    use openraft::storage::{RaftLogReader as _, RaftLogStorage as _, RaftStateMachine as _};
    let vote = log.read_vote().await?;
    let state = log.get_log_state().await?;
    let (applied, _) = sm.applied_state().await?;
    let last = state.last_log_id.map(|l| l.index).max(applied.map(|a| a.index));
    Ok(Local {
        vote_term: vote.map_or(0, |v| v.leader_id().term),
        last_log_index: last,
    })
}
