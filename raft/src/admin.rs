//! Cluster administration: the status report and the admin client the CLI uses
//! (`relay-miner raft status|init|add-learner|promote|remove|transfer-leader`).
//!
//! Admin RPCs go to any node's raft port; membership changes must run on the leader, so the client follows a
//! `NotLeader` answer to the leader's address once. One admin at a time: concurrent membership changes can
//! leave a joint config (openraft FAQ), so the CLI should not be run in parallel.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use serde::{Deserialize, Serialize};

use crate::core::Core;
use crate::types::NodeInfo;
use crate::wire::{PeerClient, WireError, path};

/// A voter-set change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Make a learner a voter.
    Promote(u64),
    /// Remove a voter or a learner from the cluster.
    Remove(u64),
}

/// Replication progress of one follower or learner, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// Node id.
    pub node_id: u64,
    /// Highest log index known replicated to it.
    pub matched: Option<u64>,
    /// Leader's last log index minus `matched` (entries not yet on the node).
    pub lag: Option<u64>,
}

/// What one member advertised to the node asked ([`crate::features`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFeatures {
    /// Node id.
    pub node_id: u64,
    /// The feature names it advertised in the current term (empty: none, a build without features); `None`:
    /// nothing heard from it in this term (down, restarting, or a follower the node asked never talks to).
    pub advertised: Option<Vec<String>>,
}

/// One node's view of the cluster (also the metrics values the process exports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node's id.
    pub node_id: u64,
    /// Raft server state (`Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`).
    pub state: String,
    /// Current term (the fencing epoch; lease tokens carry it in their high 32 bits).
    pub term: u64,
    /// Current leader, if known.
    pub leader_id: Option<u64>,
    /// Raft address of the current leader, if known.
    pub leader_addr: Option<String>,
    /// True when this node leads and a quorum acknowledged it recently.
    pub is_leader: bool,
    /// Voters with their addresses.
    pub voters: Vec<(u64, NodeInfo)>,
    /// Learners with their addresses.
    pub learners: Vec<(u64, NodeInfo)>,
    /// Last log index on this node.
    pub last_log_index: Option<u64>,
    /// Committed index known to this node.
    pub committed_index: Option<u64>,
    /// Index applied to this node's state machine.
    pub applied_index: Option<u64>,
    /// Last snapshot's index.
    pub snapshot_index: Option<u64>,
    /// Highest log index purged from this node's log (entries up to it live only in the snapshot).
    pub purged_index: Option<u64>,
    /// Per-follower replication (leader only; empty elsewhere).
    pub replication: Vec<Replication>,
    /// Why the node is not ready to serve writes (`None` = ready).
    pub not_ready: Option<String>,
    /// What every member (voters and learners, this node included) advertised to this node
    /// ([`crate::features`]); on the leader, what its write-set gate decides on.
    pub features: Vec<MemberFeatures>,
    /// On the leader: `true` while it proposes write sets as one entry (every member advertised `write-set`),
    /// `false` while they are written one entry per part. `None` on other nodes: the leader decides.
    pub write_sets: Option<bool>,
}

impl Status {
    /// The status of the node behind `core` (copies metrics; never holds the watch across an await).
    pub(crate) fn of(core: &Core) -> Self {
        let not_ready = core.readiness().err();
        let is_leader = core.is_leader();
        let write_sets = core.write_set_lacking().map(|lacking| lacking.is_empty());
        let m = core.raft.metrics();
        let m = m.borrow_watched();
        let mem = m.membership_config.membership();
        let node = |id: u64| (id, mem.get_node(&id).cloned().unwrap_or_default());
        let voters: Vec<(u64, NodeInfo)> = mem.voter_ids().map(node).collect();
        let learners: Vec<(u64, NodeInfo)> = mem.learner_ids().map(node).collect();
        let features = mem
            .nodes()
            .map(|(id, _)| MemberFeatures {
                node_id: *id,
                advertised: core.features.advertised(*id, m.current_term).map(|f| f.names()),
            })
            .collect();
        let last = m.last_log_index;
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != core.id)
                    .map(|(id, matched)| {
                        let matched = matched.as_ref().map(|l| l.index);
                        Replication {
                            node_id: *id,
                            matched,
                            lag: last.map(|l| l.saturating_sub(matched.unwrap_or(0))),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            node_id: core.id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr: m
                .current_leader
                .and_then(|l| mem.get_node(&l).map(|n| n.raft_addr.clone())),
            is_leader,
            voters,
            learners,
            last_log_index: last,
            committed_index: m.cluster_committed.as_ref().map(|l| l.index),
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            replication,
            not_ready,
            features,
            write_sets,
        }
    }
}

/// Typed failures of admin calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The node could not be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// No answer in time (the change may or may not have happened: check `status`).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The cluster token was rejected.
    #[error("unauthorized: wrong cluster token")]
    Unauthorized,
    /// The node is not the leader (and following it did not help); the leader, if known.
    #[error("not leader; leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        /// Leader node id.
        leader_id: Option<u64>,
        /// Leader raft address.
        leader_addr: Option<String>,
    },
    /// The request is invalid (e.g. promoting a node that is not a learner).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Raft refused the request (e.g. already initialized, a membership change in progress).
    #[error("raft refused: {0}")]
    Raft(String),
}

impl From<WireError> for AdminError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Unreachable(s) => Self::Unreachable(s),
            WireError::Timeout(t) => Self::Timeout(format!("{t:?}")),
            WireError::Unauthorized => Self::Unauthorized,
            WireError::NotLeader { leader_id, leader_addr } => Self::NotLeader { leader_id, leader_addr },
            WireError::BadRequest(s) => Self::Invalid(s),
            WireError::Raft(s) => Self::Raft(s),
            WireError::Identity(s) | WireError::IdentityRefused(s) => Self::Raft(format!("node identity: {s}")),
        }
    }
}

/// A client for the admin RPCs of a node's raft port.
#[derive(Clone)]
pub struct AdminClient {
    addr: String,
    token: String,
    timeout: Duration,
}

impl AdminClient {
    /// A client talking to the raft port at `addr` (`host:port`) with the cluster `token`.
    pub fn new(addr: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            token: token.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sets the per-call deadline (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        req: &Req,
        follow: bool,
    ) -> Result<Resp, AdminError> {
        let first = PeerClient::new(&self.addr, &self.token)
            .call(route, req, self.timeout)
            .await;
        match first {
            Err(WireError::NotLeader {
                leader_addr: Some(addr),
                ..
            }) if follow && addr != self.addr => Ok(PeerClient::new(&addr, &self.token)
                .call(route, req, self.timeout)
                .await?),
            other => Ok(other?),
        }
    }

    /// The node's view of the cluster.
    pub async fn status(&self) -> Result<Status, AdminError> {
        self.call(path::STATUS, &(), false).await
    }

    /// Initializes a new cluster on this node with `members` (voters with their addresses). Run once, on one
    /// node; nodes never reuse the id of a wiped node.
    pub async fn init(&self, members: Vec<(u64, NodeInfo)>) -> Result<(), AdminError> {
        self.call(path::INIT, &members, false).await
    }

    /// Adds node `id` at `node` as a learner (it starts catching up via snapshot and log); returns the log
    /// index of the membership entry.
    pub async fn add_learner(&self, id: u64, node: NodeInfo) -> Result<u64, AdminError> {
        self.call(path::ADD_LEARNER, &(id, node), true).await
    }

    /// Makes learner `id` a voter; returns the log index of the membership entry (0 if already a voter).
    pub async fn promote(&self, id: u64) -> Result<u64, AdminError> {
        self.call(path::MEMBERSHIP, &MembershipChange::Promote(id), true).await
    }

    /// Hands the leadership to voter `to` (`None`: the most caught-up other voter); returns the new leader's id
    /// once it leads. Run against any node: a follower's answer is followed to the leader.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<u64, AdminError> {
        self.call(path::TRANSFER, &to, true).await
    }

    /// Removes voter or learner `id`; wipe its data only after this returns.
    pub async fn remove(&self, id: u64) -> Result<u64, AdminError> {
        self.call(path::MEMBERSHIP, &MembershipChange::Remove(id), true).await
    }
}
