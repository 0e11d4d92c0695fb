//! Opening the configured storage mode (`../shared/docs/architecture.md`, "Three storage modes") and keeping the
//! backend alive for the process: embedded redb, Redis, or a raft node. Also each mode's readiness probe and the
//! miner's consumer identity in the relay log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

mod guard;

pub use guard::{EMBEDDED_FILE, Store, StoreLocation};

use super::NodeError;
use crate::config::{Config, StorageMode};
use crate::telemetry::{Telemetry, TelemetryError};

/// Command-line overrides of the raft settings (`relay-miner run --storage raft --node-id N --peers …`).
#[derive(Debug, Clone, Default)]
pub struct RaftOverrides {
    /// Overrides `storage.mode`.
    pub mode: Option<StorageMode>,
    /// Overrides `storage.raft.node_id`.
    pub node_id: Option<u64>,
    /// Overrides `storage.raft.peers` (`id=host:port`, comma separated on the command line).
    pub peers: Option<Vec<String>>,
    /// Overrides `storage.raft.listen_addr`.
    pub listen_addr: Option<String>,
    /// Overrides `storage.data_dir`.
    pub data_dir: Option<std::path::PathBuf>,
    /// The roles this process runs (`relay-miner run`: both; `relayer`, `miner`: one, on Redis only).
    pub role: super::Role,
}

/// The open storage backend.
pub enum OpenedStorage {
    /// One redb file.
    Embedded(storage::redb::RedbBackend),
    /// Redis (with its memory monitor running).
    Redis(storage::redis::RedisBackend, storage::redis::MemoryMonitor),
    /// A raft member.
    Raft(std::sync::Arc<raft::RaftNode>),
}

/// Parses `id=host:port` peers; errors name the key.
pub fn parse_peers(peers: &[String]) -> Result<BTreeMap<u64, String>, NodeError> {
    let mut out = BTreeMap::new();
    for peer in peers {
        let (id, addr) = peer.split_once('=').ok_or_else(|| NodeError::Config {
            key: "storage.raft.peers",
            problem: format!("`{peer}` is not id=host:port"),
        })?;
        let id: u64 = id.trim().parse().map_err(|_| NodeError::Config {
            key: "storage.raft.peers",
            problem: format!("`{peer}`: node id `{id}` is not a positive integer"),
        })?;
        if id == 0 || addr.trim().is_empty() {
            return Err(NodeError::Config {
                key: "storage.raft.peers",
                problem: format!("`{peer}`: node ids start at 1 and need an address"),
            });
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(NodeError::Config {
                key: "storage.raft.peers",
                problem: format!("node id {id} listed twice"),
            });
        }
    }
    Ok(out)
}

/// How often the storage readiness probe runs.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How long a storage probe may go unanswered before `/ready` stops trusting the previous answer. The probes
/// bound most of their own steps (Redis commands by `response_timeout`, redb's probe write by 5 s) but not
/// all (a redb reopen, a lock held by a stuck writer), and until a probe returns its readiness would otherwise
/// keep its last value, possibly "ready", for as long as the probe hangs.
pub(super) const PROBE_STALE_AFTER: Duration = Duration::from_secs(10);

/// Runs `probe` every `every` and sets the `storage` readiness component from its answer (`Err((reason,
/// detail))`); beats `ha_loop_heartbeat_timestamp_seconds{loop="storage_probe"}` at each round. A probe that has
/// not answered after `stale_after` makes `storage` not ready (`probe_stalled`) while it keeps being awaited
/// (not cancelled: a probe may be reopening the store): its answer, when it comes, sets readiness again.
fn probe_storage<F, Fut>(telemetry: Telemetry, every: Duration, stale_after: Duration, probe: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), (&'static str, String)>> + Send,
{
    tokio::spawn(async move {
        let heartbeat = telemetry.heartbeat("storage_probe");
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            heartbeat.beat();
            let mut answer = std::pin::pin!(probe());
            let result = match tokio::time::timeout(stale_after, &mut answer).await {
                Ok(result) => result,
                Err(_) => {
                    telemetry.set_not_ready(
                        "storage",
                        "probe_stalled",
                        &format!("the storage readiness probe has not answered for {stale_after:?}"),
                    );
                    answer.await
                }
            };
            match result {
                Ok(()) => telemetry.set_ready("storage"),
                Err((reason, detail)) => telemetry.set_not_ready("storage", reason, &detail),
            }
        }
    })
}

fn config_err(key: &'static str, problem: impl Into<String>) -> NodeError {
    NodeError::Config {
        key,
        problem: problem.into(),
    }
}

/// The storage mode `config` selects after `overrides`.
pub fn mode(config: &Config, overrides: &RaftOverrides) -> StorageMode {
    overrides.mode.unwrap_or(config.storage.mode)
}

/// The raft cluster token: the trimmed content of `storage.raft.cluster_token_file`, at least 16 characters.
/// `run` reads it when it opens raft storage, `validate` to check the file.
pub fn cluster_token(raft: &crate::config::RaftConfig) -> Result<String, NodeError> {
    const KEY: &str = "storage.raft.cluster_token_file";
    let token_file = raft
        .cluster_token_file
        .as_ref()
        .ok_or_else(|| config_err(KEY, "required in raft mode"))?;
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| config_err(KEY, format!("cannot read {}: {e}", token_file.display())))?
        .trim()
        .to_string();
    if token.len() < 16 {
        return Err(config_err(
            KEY,
            format!(
                "the cluster token in {} must be at least 16 characters",
                token_file.display()
            ),
        ));
    }
    Ok(token)
}

/// The raft node id `config` selects (after `overrides`); ids start at 1.
fn raft_node_id(config: &Config, overrides: &RaftOverrides) -> Result<u64, NodeError> {
    let node_id = overrides.node_id.unwrap_or(config.storage.raft.node_id);
    if node_id == 0 {
        return Err(config_err(
            "storage.raft.node_id",
            "required in raft mode (ids start at 1)",
        ));
    }
    Ok(node_id)
}

/// The store `config` selects (after `overrides`).
fn chosen_store(config: &Config, overrides: &RaftOverrides) -> Result<(std::path::PathBuf, Store), NodeError> {
    let data_dir = overrides
        .data_dir
        .clone()
        .unwrap_or_else(|| config.storage.data_dir.clone());
    let store = match mode(config, overrides) {
        StorageMode::Embedded => Store::Embedded,
        StorageMode::Raft => Store::Raft(raft_node_id(config, overrides)?),
        StorageMode::Redis => Store::Redis,
    };
    Ok((data_dir, store))
}

/// `relay-miner validate`'s data-directory check (`guard::validate`): `Err` when `run` would refuse to start
/// on a new store next to another store's live data, else warnings (stores `run` would abandon, stores held
/// open by a running process, a store that does not exist yet). Reads only; needs no runtime.
pub fn validate_data_dir(config: &Config, overrides: &RaftOverrides) -> Result<Vec<String>, NodeError> {
    let (data_dir, store) = chosen_store(config, overrides)?;
    guard::validate(&data_dir, store, config.storage.allow_abandoned_data)
}

/// Opens the storage `config` selects (after `overrides`).
pub async fn open(config: &Config, overrides: &RaftOverrides) -> Result<OpenedStorage, NodeError> {
    Ok(open_at(config, overrides).await?.0)
}

/// [`open`], also saying where the store is and whether it existed. Before anything is created, the data
/// directory is checked (`guard` module): a new store while `data_dir` holds another mode's live data is refused
/// unless `storage.allow_abandoned_data` is set. Logs the store's absolute path (INFO), and a WARN when the
/// store is new.
pub async fn open_at(config: &Config, overrides: &RaftOverrides) -> Result<(OpenedStorage, StoreLocation), NodeError> {
    let mode = mode(config, overrides);
    let (data_dir, store) = chosen_store(config, overrides)?;
    let location = {
        let (dir, allow) = (data_dir.clone(), config.storage.allow_abandoned_data);
        tokio::task::spawn_blocking(move || guard::check(&dir, store, allow))
            .await
            .map_err(|e| NodeError::Storage(format!("the data directory check failed: {e}")))??
    };
    match (&location.path, location.existed) {
        (Some(path), true) => {
            tracing::info!(mode = ?mode, path = %path.display(), "storage: opening the existing store")
        }
        (Some(path), false) => tracing::warn!(
            mode = ?mode,
            path = %path.display(),
            "no existing store at {}: starting empty; if this node ran before, check storage.data_dir / the working \
             directory",
            path.display()
        ),
        (None, _) => {}
    }
    let opened = open_store(config, overrides, mode, &data_dir).await?;
    Ok((opened, location))
}

async fn open_store(
    config: &Config,
    overrides: &RaftOverrides,
    mode: StorageMode,
    data_dir: &std::path::Path,
) -> Result<OpenedStorage, NodeError> {
    match mode {
        StorageMode::Embedded => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| config_err("storage.data_dir", format!("cannot create {}: {e}", data_dir.display())))?;
            let mut redb = storage::redb::RedbConfig::new(data_dir.join(EMBEDDED_FILE));
            redb.cache_size_bytes = usize::try_from(config.storage.cache_size_bytes).unwrap_or(usize::MAX);
            redb.relay_wal = config.storage.relay_wal;
            // No redb window: the relayer's appender already gathers relays while commits are in flight
            // (`relay_log.max_batch_delay_ms`), and a window here would delay every write, idle or not.
            redb.group_commit_window = Duration::ZERO;
            redb.group_commit_max_entries = config.relay_log.max_batch_relays.max(1);
            let backend = storage::redb::RedbBackend::open(redb)
                .await
                .map_err(|e| NodeError::Storage(format!("redb at {}: {e}", data_dir.display())))?;
            Ok(OpenedStorage::Embedded(backend))
        }
        StorageMode::Redis => {
            let r = &config.storage.redis;
            if r.url.is_empty() {
                return Err(config_err("storage.redis.url", "required in redis mode"));
            }
            let mut cfg = storage::redis::RedisConfig::new(r.url.clone()).with_prefix(r.base_prefix.clone());
            // The miner's leadership identity (see `consumer_and_instance`): names the readiness probe key and
            // labels `ha_miner_leader_acquisition_failures_total{instance}`.
            cfg.instance_id = r.consumer_name.clone().unwrap_or_else(consumer_default);
            cfg.require_aof = !r.allow_without_aof;
            cfg.relay_max_memory_ratio = r.relay_max_memory_ratio;
            cfg.memory_warn_ratio = r.memory_warn_ratio;
            // Writes whose loss in a failover costs money wait for this many replicas (0 = off).
            cfg.wait_replicas = r.wait_replicas;
            cfg.wait_timeout = Duration::from_millis(r.wait_timeout_ms);
            // 0 disables the take-over of a dead consumer's pending entries.
            cfg.claim_idle_timeout =
                (r.claim_idle_timeout_ms > 0).then(|| Duration::from_millis(r.claim_idle_timeout_ms));
            if r.heartbeat_rate_seconds != crate::config::RedisConfig::default().heartbeat_rate_seconds {
                tracing::warn!(
                    heartbeat_rate_seconds = r.heartbeat_rate_seconds,
                    leader_ttl_seconds = r.leader_ttl_seconds,
                    "storage.redis.heartbeat_rate_seconds is ignored (deprecated): the miner renews its lease every \
                     leader_ttl_seconds / 4"
                );
            }
            if let Some(path) = &r.tls_ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    config_err(
                        "storage.redis.tls_ca_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                cfg.tls_root_cert_pem = Some(pem);
            }
            let backend = storage::redis::RedisBackend::connect(cfg)
                .await
                .map_err(|e| NodeError::Storage(format!("redis at {}: {e}", r.url)))?;
            let monitor = backend.start_memory_monitor();
            Ok(OpenedStorage::Redis(backend, monitor))
        }
        StorageMode::Raft => {
            let r = &config.storage.raft;
            let node_id = raft_node_id(config, overrides)?;
            let peers = parse_peers(overrides.peers.as_ref().unwrap_or(&r.peers))?;
            let listen = overrides
                .listen_addr
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| Some(r.listen_addr.clone()).filter(|a| !a.is_empty()))
                .or_else(|| peers.get(&node_id).cloned())
                .ok_or_else(|| config_err("storage.raft.listen_addr", "required (or list this node in peers)"))?;
            let listen: SocketAddr = listen
                .parse()
                .map_err(|e| config_err("storage.raft.listen_addr", format!("`{listen}`: {e}")))?;
            let token = cluster_token(r)?;
            let mut cfg = raft::RaftConfig::new(node_id, listen, data_dir.join(format!("raft-{node_id}")), token);
            cfg.advertise = peers.get(&node_id).cloned();
            let (heartbeat, election_timeout) = r.timing();
            cfg.heartbeat = heartbeat;
            cfg.election_timeout = election_timeout;
            if let Some(pre_vote) = r.pre_vote {
                cfg.pre_vote = pre_vote;
            }
            cfg.start_check_wait = r.start_check_wait();
            // The rollback check at start (`raft::rollback`) also asks the configured peers: a member added after
            // an older copy of this directory was taken is not in the membership that copy holds.
            cfg.start_check_peers = peers
                .iter()
                .filter(|(id, _)| **id != node_id)
                .map(|(id, addr)| (*id, raft::NodeInfo::new(addr)))
                .collect();
            let node = raft::RaftNode::start(cfg)
                .await
                .map_err(|e| NodeError::Storage(format!("raft node {node_id}: {e}")))?;
            // A fresh cluster is initialized by its lowest-id peer, once every listed peer answered and none
            // holds raft state (`raft::bootstrap`): a lowest-id node whose data directory was wiped never starts a
            // second cluster from a stale peer list. In the background: peers started later are asked again.
            let members: BTreeMap<u64, raft::NodeInfo> = peers
                .iter()
                .map(|(id, addr)| (*id, raft::NodeInfo::new(addr)))
                .collect();
            drop(node.spawn_bootstrap(raft::Bootstrap::new(members)));
            Ok(OpenedStorage::Raft(std::sync::Arc::new(node)))
        }
    }
}

/// `miner-{hostname}`: stable across restarts (a restarted process re-takes its own lease at once once the
/// previous one released its instance lock at shutdown, or it expired). Several instances on one host must set
/// `storage.redis.consumer_name` each: a second process under a name in use does not campaign, logs at ERROR
/// and is not ready (`redis_instance_in_use`).
fn consumer_default() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("miner-{host}")
}

impl OpenedStorage {
    /// The storage bundle for relayer and miner.
    pub fn storage(&self) -> storage::Storage {
        match self {
            Self::Embedded(b) => b.storage(),
            Self::Redis(b, _) => b.storage(),
            Self::Raft(n) => n.storage(),
        }
    }

    /// `embedded`, `redis` or `raft`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Redis(..) => "redis",
            Self::Raft(_) => "raft",
        }
    }

    /// The miner's relay-log consumer name and its leadership identity. Every miner of a cluster shares one
    /// consumer (only the leader ingests; a new leader re-reads what the old one read but never acknowledged)
    /// and campaigns under its own name: `node-{id}` on raft, the configured `consumer_name` on Redis.
    pub fn consumer_and_instance(&self, config: &Config) -> (String, String) {
        match self {
            Self::Embedded(_) => ("miner".into(), "miner".into()),
            Self::Redis(..) => {
                let name = config
                    .storage
                    .redis
                    .consumer_name
                    .clone()
                    .unwrap_or_else(consumer_default);
                ("miner".into(), name)
            }
            Self::Raft(n) => ("miner".into(), format!("node-{}", n.id())),
        }
    }

    /// Background probes feeding `/ready` with the storage's state (raft quorum, Redis OOM or eviction policy, a
    /// failed relay WAL or redb writer), and the storage's own metrics (the relay WAL's, raft's writes and
    /// snapshots, Redis' acquisition failures, OOM refusals and memory) registered with the process's registry.
    ///
    /// Each mode's probe loop beats `ha_loop_heartbeat_timestamp_seconds{loop="storage_probe"}`; on embedded and
    /// Redis, a probe unanswered for `PROBE_STALE_AFTER` (10 s) makes `storage` not ready (`probe_stalled`).
    ///
    /// A raft node whose core stopped for good (a storage error, e.g. a full data directory) reports not ready
    /// and, once its data directory has room, sends the reason on `fatal`: the process then exits non-zero for
    /// its supervisor to restart it (`super::raft_stopped`).
    pub fn spawn_readiness(
        &self,
        telemetry: Telemetry,
        fatal: tokio::sync::watch::Sender<Option<String>>,
    ) -> Result<Option<JoinHandle<()>>, TelemetryError> {
        Ok(match self {
            Self::Embedded(backend) => {
                for collector in backend.collectors() {
                    telemetry.register(collector)?;
                }
                let backend = backend.clone();
                Some(probe_storage(telemetry, PROBE_EVERY, PROBE_STALE_AFTER, move || {
                    let backend = backend.clone();
                    // A failed relay WAL or a redb that refuses every write (after a full disk) is reopened in
                    // place here (retried with growing pauses), so the node takes relays again once there is room.
                    async move {
                        backend
                            .readiness_recovering()
                            .await
                            .map_err(|e| (e.reason(), e.to_string()))
                    }
                }))
            }
            Self::Redis(backend, _) => {
                // Leadership acquisition failures by reason, OOM refusals and the memory gauges: without them a
                // Redis OOM is visible only in logs (the Go fleet's hours-long silent outage).
                for collector in backend.collectors()? {
                    telemetry.register(collector)?;
                }
                let backend = backend.clone();
                Some(probe_storage(telemetry, PROBE_EVERY, PROBE_STALE_AFTER, move || {
                    let backend = backend.clone();
                    async move { backend.readiness().await.map_err(|e| (e.reason(), e.to_string())) }
                }))
            }
            Self::Raft(node) => {
                for collector in node.stats().collectors() {
                    telemetry.register(collector)?;
                }
                let node = std::sync::Arc::downgrade(node);
                let metrics = RaftMetrics::new(&telemetry)?;
                let heartbeat = telemetry.heartbeat("storage_probe");
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(250));
                    let mut stopped_logged = false;
                    loop {
                        tick.tick().await;
                        heartbeat.beat();
                        let Some(node) = node.upgrade() else { return };
                        if let Some(why) = node.stopped() {
                            let dir = node.data_dir().to_path_buf();
                            metrics.observe(&node.status());
                            drop(node);
                            let detail = format!(
                                "{why}; the node takes no raft entries until restarted and exits for a restart once \
                                 {} has room",
                                dir.display()
                            );
                            telemetry.set_not_ready("raft", "stopped", &detail);
                            if !stopped_logged {
                                stopped_logged = true;
                                tracing::error!(
                                    error = %why,
                                    data_dir = %dir.display(),
                                    "raft stopped on a storage error: relays are refused; the process exits (code 1) \
                                     for a restart once its data directory has room"
                                );
                            }
                            if super::raft_stopped::has_room_async(dir).await.is_ok() {
                                let _ = fatal.send(Some(format!("raft stopped: {why}")));
                                return;
                            }
                            continue;
                        }
                        match node.readiness() {
                            Ok(()) => telemetry.set_ready("raft"),
                            Err(reason) => telemetry.set_not_ready("raft", "no_quorum", &reason),
                        }
                        metrics.observe(&node.status());
                    }
                }))
            }
        })
    }

    /// A stopping raft leader hands its role to the most caught-up voter (raft `transfer` module), first thing
    /// in a graceful stop: its miner's lease is void in the new term, so the new leader's miner takes over the
    /// claims and proofs at once, while this node's relayer drains through the new leader (followers forward
    /// writes) and its miner winds down. Handing off only at the end left the cluster without a submitting miner
    /// for as long as the drain and the miner's last step took (13 s in one test run, a whole proof window at
    /// 2 s blocks). Nothing to do on other storage or on a follower.
    pub async fn hand_off(&self) {
        if let Self::Raft(node) = self
            && let Some(to) = node.hand_off(RAFT_HAND_OFF_WAIT).await
        {
            tracing::info!(to, "raft leadership handed off before stopping");
        }
    }

    /// Closes the backend (raft stops its port and tasks; redb flushes on drop).
    pub async fn close(self) {
        match self {
            Self::Embedded(b) => drop(b),
            Self::Redis(b, monitor) => {
                drop(monitor);
                // A restart under the same name then campaigns at once (storage::redis `leader` module).
                b.release_instances().await;
                drop(b);
            }
            Self::Raft(node) => {
                // Leading again after the hand-off at the stop's start (re-elected meanwhile): hand off again, so
                // the others elect at once instead of after an election timeout. Relayer and miner have stopped.
                if let Some(to) = node.hand_off(RAFT_HAND_OFF_WAIT).await {
                    tracing::info!(to, "raft leadership handed off before stopping");
                }
                match std::sync::Arc::try_unwrap(node) {
                    Ok(node) => node.shutdown().await,
                    Err(_) => {
                        tracing::warn!("raft node still referenced at shutdown; its tasks stop with the process")
                    }
                }
            }
        }
    }
}

/// How long a stopping raft leader waits for the voter it hands the leadership to (`RaftNode::hand_off`).
const RAFT_HAND_OFF_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Raft gauges (issue 8): term, leader id, is_leader, commit/apply index, replication lag per follower.
struct RaftMetrics {
    term: prometheus::IntGauge,
    leader_id: prometheus::IntGauge,
    is_leader: prometheus::IntGauge,
    committed: prometheus::IntGauge,
    applied: prometheus::IntGauge,
    snapshot: prometheus::IntGauge,
    lag: prometheus::IntGaugeVec,
}

impl RaftMetrics {
    fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        let gauge = |name: &str, help: &str| -> Result<prometheus::IntGauge, TelemetryError> {
            let g = prometheus::IntGauge::new(name, help)?;
            telemetry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let lag = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "ha_raft_replication_lag_entries",
                "Entries not yet on a follower (leader view)",
            ),
            &["follower"],
        )?;
        telemetry.register(Box::new(lag.clone()))?;
        Ok(Self {
            term: gauge("ha_raft_term", "Current raft term (the fencing epoch)")?,
            leader_id: gauge("ha_raft_leader_id", "Current leader's node id (0 = unknown)")?,
            is_leader: gauge("ha_raft_is_leader", "1 when this node leads with a recent quorum")?,
            committed: gauge("ha_raft_commit_index", "Committed log index known to this node")?,
            applied: gauge("ha_raft_apply_index", "Log index applied to this node's state machine")?,
            snapshot: gauge("ha_raft_snapshot_index", "Index of this node's last snapshot")?,
            lag,
        })
    }

    fn observe(&self, s: &raft::Status) {
        let i = |v: Option<u64>| i64::try_from(v.unwrap_or(0)).unwrap_or(i64::MAX);
        self.term.set(i(Some(s.term)));
        self.leader_id.set(i(s.leader_id));
        self.is_leader.set(i64::from(s.is_leader));
        self.committed.set(i(s.committed_index));
        self.applied.set(i(s.applied_index));
        self.snapshot.set(i(s.snapshot_index));
        for r in &s.replication {
            self.lag.with_label_values(&[&r.node_id.to_string()]).set(i(r.lag));
        }
    }
}

#[cfg(test)]
mod tests;
