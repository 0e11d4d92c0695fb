//! Offline recovery of a cluster that lost a majority of its voters for good: rewrite one stopped node's
//! membership to itself alone (`relay-miner raft recover-single`).
//!
//! With 2 of 3 voters' disks gone, the survivor can never win an election or commit again, and no online
//! membership change can help (it needs the lost quorum). The survivor still holds the relay log and the tries
//! it applied, and its raft log may hold more entries, acknowledged or not. [`recover_single`] appends, to the
//! stopped node's log, one membership entry making the node the single voter:
//!
//! - at index `last + 1` (after everything the node holds, so no entry is lost or rewritten), under the node's
//!   current term (`max` of its vote's term and its last entry's): log ids stay ordered, and the entry is the last
//!   membership entry of the log, which openraft takes as the effective membership when the node starts
//!   (a membership entry takes effect when it is appended, not when it commits);
//! - the node then starts as the only voter: it elects itself in the next term and commits a blank entry, which
//!   commits the recovery entry and every entry before it (entries of the old cluster that never reached a
//!   quorum included: writes that failed as "commit status unknown", which the relayer refused and the miner
//!   counts once, keyed by relay hash).
//!
//! # Why this is safe only when the other members are truly gone
//! This entry was not agreed by a quorum: it is a decision of the operator that the other voters will never
//! come back. If they did (a disk found again, a VM resumed), they would still be a majority of the old voter set
//! and could elect a leader among themselves, with a log that diverges from the recovered node's: two clusters
//! accepting writes, the same relays claimed twice, two miners leading. So before recovering, make sure the lost
//! nodes cannot start again with their data (destroy the disks or the machines); they may only rejoin wiped,
//! added as learners by the recovered cluster (`raft add-learner`, then `raft promote`).
//!
//! The node must be stopped: the log and state machine files are opened here, and redb refuses a file another
//! process (the running node) has open, so a running node is never rewritten underneath.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use openraft::Membership;
use openraft::entry::RaftEntry as _;
use openraft::storage::{IOFlushed, RaftLogReader as _, RaftLogStorage as _, RaftStateMachine as _};
use openraft::type_config::TypeConfigExt;

use crate::log_store::LogStore;
use crate::sm::StateMachine;
use crate::types::{Entry, LogId, NodeInfo, StoredMembership, TypeConfig};

/// Why a node's membership could not be rewritten (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The directory holds no raft node's files.
    #[error("{0} holds no raft node (no identity, log.redb or sm/state.redb): check the data directory and node id")]
    NotANode(PathBuf),
    /// The node is running (its files are open in another process).
    #[error(
        "{path} is open in another process: stop node {node_id} first (recover-single only runs on a stopped node)"
    )]
    Running {
        /// The node id.
        node_id: u64,
        /// The file found locked.
        path: PathBuf,
    },
    /// The directory belongs to another node id.
    #[error("{0}")]
    Identity(String),
    /// The node never was part of an initialized cluster.
    #[error("node {0} holds no membership: it was never initialized or added; there is nothing to recover")]
    NoMembership(u64),
    /// The node's membership does not list it.
    #[error(
        "node {node_id} is not a voter of its last membership (voters {voters:?}): recover a node that was a voter (a \
         learner's log may lack entries the voters committed)"
    )]
    NotAMember {
        /// The node id.
        node_id: u64,
        /// The voters of its last membership.
        voters: Vec<u64>,
    },
    /// Reading or writing the files failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// What [`recover_single`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverReport {
    /// The node recovered.
    pub node_id: u64,
    /// Voter sets of the membership it had (two during a joint change).
    pub old_voters: Vec<Vec<u64>>,
    /// Learners of the membership it had.
    pub old_learners: Vec<u64>,
    /// `(term, index)` of the old membership entry (`None`: none logged).
    pub old_membership_at: Option<(u64, u64)>,
    /// The term written with the new membership entry.
    pub term: u64,
    /// The node's last log index before recovery.
    pub last_log_index: Option<u64>,
    /// The index applied to its state machine (its relay log and tries are as of this index; the entries after
    /// it are applied once it leads).
    pub applied_index: Option<u64>,
    /// The index of the new membership entry (`None`: the node already was the single voter, nothing written).
    pub new_membership_index: Option<u64>,
}

fn io_at(what: impl Into<String>) -> impl FnOnce(io::Error) -> RecoverError {
    let what = what.into();
    move |source| RecoverError::Io { what, source }
}

/// Opens a redb-backed store, telling a file held by a running node from other failures.
fn opened<T>(node_id: u64, path: &Path, r: io::Result<T>) -> Result<T, RecoverError> {
    r.map_err(|e| {
        if e.to_string().contains("already open") {
            RecoverError::Running {
                node_id,
                path: path.to_path_buf(),
            }
        } else {
            RecoverError::Io {
                what: format!("opening {}", path.display()),
                source: e,
            }
        }
    })
}

/// The last membership the node holds: the last membership entry of its log after the applied index, else
/// the state machine's.
async fn last_membership(
    log: &mut LogStore,
    sm_membership: StoredMembership,
    applied: Option<LogId>,
    first: u64,
    last: Option<u64>,
) -> Result<(Option<LogId>, Membership<u64, NodeInfo>), RecoverError> {
    let Some(last) = last else {
        return Ok((*sm_membership.log_id(), sm_membership.membership().clone()));
    };
    let since = applied.map_or(0, |a| a.index + 1).max(first);
    let mut index = last;
    while index >= since {
        let entries = log
            .try_get_log_entries(index..=index)
            .await
            .map_err(io_at(format!("reading log entry {index}")))?;
        if let Some(m) = entries.first().and_then(|e| e.get_membership()) {
            return Ok((Some(entries[0].log_id()), m));
        }
        if index == 0 {
            break;
        }
        index -= 1;
    }
    Ok((*sm_membership.log_id(), sm_membership.membership().clone()))
}

/// Rewrites the membership of the stopped node `node_id` whose raft data directory is `dir` to the node alone as
/// the single voter, by appending one membership entry to its log (see the module docs for why, and why only
/// when the other voters are gone for good). Changes nothing when the node already is the single voter, or on
/// any error.
pub async fn recover_single(dir: &Path, node_id: u64) -> Result<RecoverReport, RecoverError> {
    let log_path = dir.join("log.redb");
    let sm_dir = dir.join("sm");
    if !dir.join("identity").is_file() || !log_path.is_file() || !sm_dir.join("state.redb").is_file() {
        return Err(RecoverError::NotANode(dir.to_path_buf()));
    }
    crate::identity::Identity::open(dir, node_id).map_err(|e| RecoverError::Identity(e.to_string()))?;
    let mut log = opened(node_id, &log_path, LogStore::open(&log_path))?;
    let mut sm = opened(node_id, &sm_dir.join("state.redb"), StateMachine::open(&sm_dir))?;

    let vote = log.read_vote().await.map_err(io_at("reading the vote"))?;
    let state = log.get_log_state().await.map_err(io_at("reading the log state"))?;
    let (applied, sm_membership) = sm
        .applied_state()
        .await
        .map_err(io_at("reading the state machine's applied state"))?;
    let last = state.last_log_id.as_ref().map(|l| l.index);
    let first = state.last_purged_log_id.as_ref().map_or(0, |p| p.index + 1);
    let (old_log_id, old) = last_membership(&mut log, sm_membership, applied, first, last).await?;
    let old_voters: Vec<Vec<u64>> = old
        .get_joint_config()
        .iter()
        .map(|c| c.iter().copied().collect())
        .collect();
    if old_voters.iter().all(|c| c.is_empty()) {
        return Err(RecoverError::NoMembership(node_id));
    }
    // A voter only: `get_node` also answers for a learner, whose log may be behind the committed index; made the
    // single voter, its shorter log would become the truth and entries the old majority committed (acknowledged
    // relay appends) would be lost.
    let is_voter = old.voter_ids().any(|v| v == node_id);
    let Some(me) = old.get_node(&node_id).filter(|_| is_voter).cloned() else {
        return Err(RecoverError::NotAMember {
            node_id,
            voters: old.voter_ids().collect(),
        });
    };
    let vote_term = vote.as_ref().map_or(0, |v| v.leader_id().term);
    let log_term = state.last_log_id.as_ref().map_or(0, |l| l.leader_id.term);
    let term = vote_term.max(log_term);
    let mut report = RecoverReport {
        node_id,
        old_voters: old_voters.clone(),
        old_learners: old.learner_ids().collect(),
        old_membership_at: old_log_id.map(|l| (l.leader_id.term, l.index)),
        term,
        last_log_index: last,
        applied_index: applied.map(|a| a.index),
        new_membership_index: None,
    };
    if old_voters == [vec![node_id]] && report.old_learners.is_empty() {
        return Ok(report);
    }
    let new = Membership::new(vec![BTreeSet::from([node_id])], BTreeMap::from([(node_id, me)]))
        .map_err(|e| RecoverError::Identity(e.to_string()))?;
    let index = last.map(|l| l + 1).max(applied.map(|a| a.index + 1)).unwrap_or(0);
    let entry = Entry::new_membership(
        LogId::new(openraft::vote::leader_id_std::CommittedLeaderId::new(term), index),
        new,
    );
    let (tx, rx) = <TypeConfig as TypeConfigExt>::oneshot();
    log.append([entry], IOFlushed::signal(tx))
        .await
        .map_err(io_at(format!("appending the membership entry at {index}")))?;
    rx.await
        .map_err(|_| RecoverError::Io {
            what: format!("appending the membership entry at {index}"),
            source: io::Error::other("the log writer stopped"),
        })?
        .map_err(io_at(format!("appending the membership entry at {index}")))?;
    report.new_membership_index = Some(index);
    Ok(report)
}
