//! Safe automatic initialization of a new cluster from the configured peer list (`--peers`).
//!
//! The lowest-id node of the peer list initializes the cluster, but only when it can tell the cluster does not
//! exist yet. Initializing on a node whose data directory was wiped or replaced (new disk, operator mistake,
//! restored on another host) would start a *new* cluster from a peer list that may no longer match the
//! membership (after `promote`/`remove`): it would campaign with a fresh log against the real cluster, or, with
//! peers that lost their disks too, form a second cluster. So before initializing it asks every other listed
//! peer, on its raft port (the read-only admin status route), whether it holds raft state (a vote, a log or a
//! membership):
//!
//! - some peer holds raft state: a cluster exists, this node does **not** initialize. When that cluster lists
//!   this node, this node lost its data directory (ERROR naming `raft remove` + `raft add-learner`); otherwise it
//!   waits to be added (WARN);
//! - every other listed peer answered, and every one is empty: initialize;
//! - any did not answer: wait and ask again (WARN naming who answered what), since a peer that is down may hold
//!   the cluster. A majority is not enough: after `raft recover-single` (or two of three disks lost) the one
//!   survivor holds the cluster, and the wiped nodes restarted with the old `--peers` are a majority of empty
//!   answers while it restarts or is cut off; initializing then makes a second cluster whose miner submits
//!   against the survivor's (claims overwritten, proofs against the other root: slashed). A new cluster with a
//!   peer that never comes up is initialized by the operator: `relay-miner raft init`.
//!
//! A node whose own store already holds raft state never initializes (a restart), and a node that is not the
//! lowest id of the list never does.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::{AdminClient, Status};
use crate::types::{NodeInfo, Raft};

/// How a node decides whether to initialize a new cluster from its peer list.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// Every listed peer (voters of the new cluster), this node included.
    pub peers: BTreeMap<u64, NodeInfo>,
    /// Deadline of each peer's answer.
    pub probe_timeout: Duration,
    /// Pause between two rounds while too few peers answered.
    pub retry_every: Duration,
}

impl Bootstrap {
    /// Defaults: 2 s per answer, a round every second.
    pub fn new(peers: BTreeMap<u64, NodeInfo>) -> Self {
        Self {
            peers,
            probe_timeout: Duration::from_secs(2),
            retry_every: Duration::from_secs(1),
        }
    }
}

/// What one peer answered about its raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// No vote, no log, no membership: a fresh node.
    Empty,
    /// Holds raft state: a member (or former member) of an initialized cluster.
    Initialized {
        /// Its current term.
        term: u64,
        /// The voters of its membership.
        voters: Vec<u64>,
        /// The learners of its membership.
        learners: Vec<u64>,
        /// Its last log index.
        last_log_index: Option<u64>,
        /// The leader it knows.
        leader_id: Option<u64>,
    },
    /// No answer (down, unreachable, wrong token, timed out).
    Unanswered(String),
}

impl PeerState {
    /// The state a node's status report shows.
    pub fn of(status: &Status) -> Self {
        let initialized = status.term > 0
            || status.last_log_index.is_some()
            || status.snapshot_index.is_some()
            || !status.voters.is_empty()
            || !status.learners.is_empty();
        if !initialized {
            return Self::Empty;
        }
        Self::Initialized {
            term: status.term,
            voters: status.voters.iter().map(|(id, _)| *id).collect(),
            learners: status.learners.iter().map(|(id, _)| *id).collect(),
            last_log_index: status.last_log_index,
            leader_id: status.leader_id,
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "no raft state (uninitialized)"),
            Self::Initialized {
                term,
                voters,
                learners,
                last_log_index,
                leader_id,
            } => write!(
                f,
                "member of an initialized cluster (term {term}, voters {voters:?}, learners {learners:?}, last log \
                 index {last_log_index:?}, leader {leader_id:?})"
            ),
            Self::Unanswered(why) => write!(f, "no answer ({why})"),
        }
    }
}

/// One peer's answer, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnswer {
    /// Peer id.
    pub id: u64,
    /// Its raft address.
    pub addr: String,
    /// What it answered.
    pub state: PeerState,
}

/// Renders answers as `node 2 at host:port: …; node 3 …` for logs.
pub fn describe(answers: &[PeerAnswer]) -> String {
    answers
        .iter()
        .map(|a| format!("node {} at {}: {}", a.id, a.addr, a.state))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What one round of asking the peers decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every listed peer answered and is empty: initialize.
    Initialize,
    /// Not every peer answered, so an existing cluster cannot be ruled out: ask again later.
    Wait {
        /// Listed peers that answered, this node included.
        answered: usize,
        /// The listed peers: every one must answer.
        needed: usize,
    },
    /// Some peer holds raft state: never initialize here.
    ClusterExists {
        /// The initialized cluster's membership lists this node: this node lost its data directory.
        lists_this_node: bool,
    },
}

/// Decides from the answers of every other listed peer (pure; `me` counts as an empty peer that answered).
pub fn decide(me: u64, listed: usize, answers: &[PeerAnswer]) -> Decision {
    let mut lists_this_node = false;
    let mut exists = false;
    for a in answers {
        if let PeerState::Initialized { voters, learners, .. } = &a.state {
            exists = true;
            lists_this_node |= voters.contains(&me) || learners.contains(&me);
        }
    }
    if exists {
        return Decision::ClusterExists { lists_this_node };
    }
    let answered = 1 + answers
        .iter()
        .filter(|a| a.id != me && matches!(a.state, PeerState::Empty))
        .count();
    // Every listed peer (module docs: a majority of empty answers can leave out the one node holding the cluster).
    let needed = listed;
    if answered >= needed {
        Decision::Initialize
    } else {
        Decision::Wait { answered, needed }
    }
}

/// How a bootstrap ended (or, for one round, where it stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// This node initialized the cluster with the listed peers as voters.
    Initialized,
    /// This node's store holds raft state (a restart, or it was added or initialized meanwhile): nothing to do.
    AlreadyInitialized,
    /// Not this node's job: it is not the lowest id of a list of at least two peers.
    NotInitializer,
    /// A peer holds raft state, so a cluster exists: this node did not initialize and waits to be added.
    ClusterExists {
        /// The cluster lists this node: it lost its data directory and must be removed and added again.
        lost_data: bool,
        /// Every other peer's answer.
        answers: Vec<PeerAnswer>,
    },
    /// Too few peers answered (one round only; `RaftNode::spawn_bootstrap` asks again).
    Waiting {
        /// Every other peer's answer.
        answers: Vec<PeerAnswer>,
    },
    /// The node stopped before a decision.
    Stopped,
}

/// True when openraft holds a vote or a log on this node.
async fn initialized(raft: &Raft) -> Result<bool, String> {
    raft.is_initialized().await.map_err(|e| e.to_string())
}

/// Asks every other listed peer for its raft state, concurrently.
async fn ask(me: u64, token: &str, b: &Bootstrap) -> Vec<PeerAnswer> {
    let asks = b.peers.iter().filter(|(id, _)| **id != me).map(|(id, node)| {
        let client = AdminClient::new(node.raft_addr.clone(), token).with_timeout(b.probe_timeout);
        async move {
            let state = match client.status().await {
                Ok(s) if s.node_id != *id => PeerState::Unanswered(format!(
                    "node {} answered at this address (a wrong address in the peer list?)",
                    s.node_id
                )),
                Ok(s) => PeerState::of(&s),
                Err(e) => PeerState::Unanswered(e.to_string()),
            };
            PeerAnswer {
                id: *id,
                addr: node.raft_addr.clone(),
                state,
            }
        }
    });
    futures::future::join_all(asks).await
}

/// One round: checks this node's own store, asks the peers, and initializes when [`decide`] says so.
pub(crate) async fn round(raft: &Raft, me: u64, token: &str, b: &Bootstrap) -> Result<BootstrapOutcome, String> {
    if b.peers.len() < 2 || b.peers.keys().next() != Some(&me) {
        return Ok(BootstrapOutcome::NotInitializer);
    }
    if initialized(raft).await? {
        return Ok(BootstrapOutcome::AlreadyInitialized);
    }
    let answers = ask(me, token, b).await;
    match decide(me, b.peers.len(), &answers) {
        Decision::ClusterExists { lists_this_node } => Ok(BootstrapOutcome::ClusterExists {
            lost_data: lists_this_node,
            answers,
        }),
        Decision::Wait { .. } => Ok(BootstrapOutcome::Waiting { answers }),
        Decision::Initialize => match raft.initialize(b.peers.clone()).await {
            Ok(()) => Ok(BootstrapOutcome::Initialized),
            // Added by a leader or initialized by an operator since the check above.
            Err(_) if initialized(raft).await? => Ok(BootstrapOutcome::AlreadyInitialized),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Rounds until a decision (asking again every [`Bootstrap::retry_every`] while too few peers answer), logging
/// each outcome; ends early when `stop` turns true.
pub(crate) async fn run(
    raft: Raft,
    me: u64,
    token: String,
    b: Bootstrap,
    mut stop: watch::Receiver<bool>,
) -> BootstrapOutcome {
    let mut rounds: u64 = 0;
    loop {
        if *stop.borrow() {
            return BootstrapOutcome::Stopped;
        }
        let outcome = round(&raft, me, &token, &b).await;
        rounds += 1;
        match &outcome {
            Ok(BootstrapOutcome::Waiting { answers }) => {
                // The first round, then every 30th: a node waiting for its peers to start logs once in a while.
                if rounds % 30 == 1 {
                    tracing::warn!(
                        node_id = me,
                        "raft: not initializing the cluster yet: all {} listed peers (this node included) must \
                         answer, and none may hold raft state, so an existing cluster is never replaced; asking \
                         again every {:?} (a new cluster with a peer that never starts: `relay-miner raft init`). \
                         Answers: {}",
                        b.peers.len(),
                        b.retry_every,
                        describe(answers)
                    );
                }
            }
            Ok(done) => {
                log_outcome(me, &b, done);
                return done.clone();
            }
            Err(e) => tracing::warn!(node_id = me, "raft: cluster initialization round failed: {e}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(b.retry_every) => {}
            _ = stop.changed() => {}
        }
    }
}

fn log_outcome(me: u64, b: &Bootstrap, outcome: &BootstrapOutcome) {
    let addr = b.peers.get(&me).map(|n| n.raft_addr.as_str()).unwrap_or("?");
    match outcome {
        BootstrapOutcome::Initialized => tracing::info!(
            node_id = me,
            voters = ?b.peers.keys().collect::<Vec<_>>(),
            "raft cluster initialized (every reachable listed peer was empty)"
        ),
        BootstrapOutcome::AlreadyInitialized => {
            tracing::info!(node_id = me, "raft: this node holds raft state; not initializing")
        }
        BootstrapOutcome::NotInitializer | BootstrapOutcome::Waiting { .. } | BootstrapOutcome::Stopped => {}
        BootstrapOutcome::ClusterExists {
            lost_data: true,
            answers,
        } => tracing::error!(
            node_id = me,
            "raft: this node's store is empty but its peers hold a cluster that lists node {me}: this node lost its \
             data directory (new disk, wipe, restore on another host). It does NOT initialize a new cluster and \
             cannot rejoin under its old identity. Re-add it as a learner, from any node: `relay-miner raft remove \
             --id {me} --addr <a member's raft address>`, then `relay-miner raft add-learner --id {me} --node-addr \
             {addr} --wait`, then `relay-miner raft promote --id {me}`. Answers: {}",
            describe(answers)
        ),
        BootstrapOutcome::ClusterExists {
            lost_data: false,
            answers,
        } => tracing::warn!(
            node_id = me,
            "raft: peers hold an initialized cluster that does not list node {me}: not initializing a new one; \
             waiting to be added (`relay-miner raft add-learner --id {me} --node-addr {addr} --wait`, then \
             `relay-miner raft promote --id {me}`). Answers: {}",
            describe(answers)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u64, state: PeerState) -> PeerAnswer {
        PeerAnswer {
            id,
            addr: format!("10.0.0.{id}:7001"),
            state,
        }
    }

    fn member_of(voters: &[u64]) -> PeerState {
        PeerState::Initialized {
            term: 3,
            voters: voters.to_vec(),
            learners: vec![],
            last_log_index: Some(9),
            leader_id: Some(2),
        }
    }

    #[test]
    fn initializes_only_when_every_peer_answered_empty() {
        let down = || PeerState::Unanswered("unreachable".into());
        assert_eq!(
            decide(1, 3, &[answer(2, PeerState::Empty), answer(3, PeerState::Empty)]),
            Decision::Initialize
        );
        // A majority of empty answers is not enough: the peer not answering may hold the cluster (a survivor of
        // `raft recover-single` restarting while the wiped nodes come back).
        assert_eq!(
            decide(1, 3, &[answer(2, PeerState::Empty), answer(3, down())]),
            Decision::Wait { answered: 2, needed: 3 }
        );
        assert_eq!(
            decide(1, 3, &[answer(2, down()), answer(3, down())]),
            Decision::Wait { answered: 1, needed: 3 }
        );
        assert_eq!(
            decide(
                1,
                5,
                &[
                    answer(2, PeerState::Empty),
                    answer(3, down()),
                    answer(4, down()),
                    answer(5, down())
                ]
            ),
            Decision::Wait { answered: 2, needed: 5 }
        );
    }

    #[test]
    fn any_initialized_peer_forbids_initializing_and_says_whether_it_lists_this_node() {
        assert_eq!(
            decide(1, 3, &[answer(2, PeerState::Empty), answer(3, member_of(&[1, 2, 3]))]),
            Decision::ClusterExists { lists_this_node: true }
        );
        assert_eq!(
            decide(1, 3, &[answer(2, member_of(&[2, 3, 4])), answer(3, PeerState::Empty)]),
            Decision::ClusterExists { lists_this_node: false }
        );
    }
}
