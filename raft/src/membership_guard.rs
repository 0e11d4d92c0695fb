//! Guards of the admin membership changes (`relay-miner raft promote|remove`): a change is refused, with an error
//! naming the nodes and indexes involved, when carrying it out now would leave the cluster unable to commit.
//!
//! openraft changes the voter set through a joint config (old and new voters): the joint entry and the final one
//! each commit only with a majority of the old **and** of the new voters. So:
//! - promoting a learner that is still far behind (installing a snapshot, or not reachable at all) makes it a
//!   voter that acknowledges nothing for a while: 3 voters + 1 become 4, quorum 3, and one more voter down stops
//!   every write. A learner is promoted only once its matched index is within [`PROMOTE_MAX_LAG`] entries of the
//!   leader's committed index (waiting up to [`PROMOTE_WAIT`] for it to get there, as it does under load);
//! - removing a voter while the new voter set has no majority acknowledging the leader (another voter down)
//!   cannot commit the joint entry: the cluster is left in a joint config, refusing relays, until that voter is
//!   back. A change is proposed only when a majority of the current voters and of the new ones acknowledged the
//!   leader within the upper election timeout (heartbeats go out every 50 ms by default).
//!
//! The leader counts as acknowledging itself. Followers' acknowledgement times come from openraft's heartbeat
//! metrics (leader only).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::watch::WatchReceiver;

use crate::core::Core;
use crate::wire::WireError;

/// Most entries a learner's matched index may trail the leader's committed index by for it to be promoted: a
/// few appends' worth (64 entries each by default), so a learner keeping up under load qualifies and one still
/// catching up (snapshot install, a long log tail) does not.
pub(crate) const PROMOTE_MAX_LAG: u64 = 256;

/// How long a promotion waits for a learner that is behind by more than [`PROMOTE_MAX_LAG`] before refusing.
pub(crate) const PROMOTE_WAIT: Duration = Duration::from_secs(2);

/// True when the nodes in `acked` are a majority of `voters` (an empty voter set has none).
pub(crate) fn majority_acked(voters: &BTreeSet<u64>, acked: &BTreeSet<u64>) -> bool {
    !voters.is_empty() && voters.intersection(acked).count() * 2 > voters.len()
}

/// What the leader knows when a change is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderView {
    /// The current voters.
    pub voters: BTreeSet<u64>,
    /// Nodes that acknowledged the leader recently (the leader included).
    pub acked: BTreeSet<u64>,
    /// The leader's committed index.
    pub committed: Option<u64>,
    /// A node's matched index as the leader's replication metrics show it (`None`: nothing known replicated).
    pub matched: Vec<(u64, Option<u64>)>,
}

impl LeaderView {
    fn matched(&self, id: u64) -> Option<u64> {
        self.matched.iter().find(|(n, _)| *n == id).and_then(|(_, m)| *m)
    }

    /// Why learner `id` cannot be promoted now, if it cannot.
    pub(crate) fn refuse_promote(&self, id: u64) -> Option<String> {
        let committed = self.committed.unwrap_or(0);
        let matched = self.matched(id);
        let lag = committed.saturating_sub(matched.unwrap_or(0));
        if matched.is_none() || lag > PROMOTE_MAX_LAG {
            return Some(format!(
                "learner {id} is not caught up: its matched log index is {} and the leader's committed index is \
                 {committed} ({lag} entries behind, at most {PROMOTE_MAX_LAG} allowed); wait until \
                 `relay-miner raft status` shows its lag small, then promote it",
                matched.map_or_else(|| "unknown".to_string(), |m| m.to_string()),
            ));
        }
        let mut new = self.voters.clone();
        new.insert(id);
        self.refuse_unacked(&new, &format!("promoting learner {id}"))
    }

    /// Why voter `id` cannot be removed now, if it cannot.
    pub(crate) fn refuse_remove(&self, id: u64) -> Option<String> {
        let mut new = self.voters.clone();
        new.remove(&id);
        self.refuse_unacked(&new, &format!("removing voter {id}"))
    }

    /// Why the change to voters `new` cannot commit now: no majority of the current or of the new voters
    /// acknowledging the leader.
    fn refuse_unacked(&self, new: &BTreeSet<u64>, what: &str) -> Option<String> {
        for (which, voters) in [("current", &self.voters), ("new", new)] {
            if !majority_acked(voters, &self.acked) {
                let down: Vec<u64> = voters.difference(&self.acked).copied().collect();
                return Some(format!(
                    "{what} would leave the cluster in a joint config that cannot commit: a majority of the \
                     {which} voters {voters:?} must acknowledge the leader, but only {:?} do ({down:?} not \
                     answering); bring them back first",
                    voters.intersection(&self.acked).collect::<Vec<_>>(),
                ));
            }
        }
        None
    }
}

impl Core {
    /// The leader's view for a membership change; `NotLeader` on any other node.
    pub(crate) fn membership_view(&self) -> Result<LeaderView, WireError> {
        let fresh = self.confirm_wait;
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let mem = m.membership_config.membership();
        if m.state != openraft::ServerState::Leader || m.current_leader != Some(self.id) {
            return Err(WireError::NotLeader {
                leader_id: m.current_leader,
                leader_addr: m
                    .current_leader
                    .and_then(|l| mem.get_node(&l).map(|n| n.raft_addr.clone())),
            });
        }
        let mut acked: BTreeSet<u64> = m
            .heartbeat
            .as_ref()
            .map(|h| {
                h.iter()
                    .filter(|(_, at)| at.as_ref().is_some_and(|t| t.elapsed() < fresh))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        acked.insert(self.id);
        Ok(LeaderView {
            voters: mem.voter_ids().collect(),
            acked,
            committed: m.cluster_committed.as_ref().map(|l| l.index),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map(|l| l.index))).collect())
                .unwrap_or_default(),
        })
    }

    /// Checks that learner `id` can be promoted now, waiting up to [`PROMOTE_WAIT`] for it to catch up.
    pub(crate) async fn check_promote(&self, id: u64) -> Result<(), WireError> {
        let deadline = tokio::time::Instant::now() + PROMOTE_WAIT;
        let mut metrics = self.raft.metrics();
        loop {
            let Some(why) = self.membership_view()?.refuse_promote(id) else {
                return Ok(());
            };
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!("raft: promotion refused: {why}");
                    return Err(WireError::BadRequest(why));
                }
            }
        }
    }

    /// Checks that voter `id` can be removed now.
    pub(crate) fn check_remove(&self, id: u64) -> Result<(), WireError> {
        match self.membership_view()?.refuse_remove(id) {
            None => Ok(()),
            Some(why) => {
                tracing::warn!("raft: removal refused: {why}");
                Err(WireError::BadRequest(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn majorities() {
        assert!(majority_acked(&set(&[1, 2, 3]), &set(&[1, 2])));
        assert!(!majority_acked(&set(&[1, 2, 3]), &set(&[1])));
        assert!(!majority_acked(&set(&[1, 3]), &set(&[1, 2])), "2 of 2 needed");
        assert!(majority_acked(&set(&[1]), &set(&[1])));
        assert!(!majority_acked(&set(&[]), &set(&[1])));
        assert!(!majority_acked(&set(&[1, 2, 3, 4]), &set(&[1, 2])), "3 of 4 needed");
    }

    fn view(acked: &[u64], committed: u64, matched: &[(u64, Option<u64>)]) -> LeaderView {
        LeaderView {
            voters: set(&[1, 2, 3]),
            acked: set(acked),
            committed: Some(committed),
            matched: matched.to_vec(),
        }
    }

    #[test]
    fn a_learner_is_promoted_only_once_caught_up() {
        let caught_up = view(&[1, 2, 3, 4], 1000, &[(4, Some(1000 - PROMOTE_MAX_LAG))]);
        assert_eq!(caught_up.refuse_promote(4), None);
        let behind = view(&[1, 2, 3, 4], 1000, &[(4, Some(999 - PROMOTE_MAX_LAG))]);
        let why = behind.refuse_promote(4).unwrap();
        assert!(why.contains("learner 4") && why.contains("1000"), "{why}");
        assert!(why.contains(&format!("{}", 999 - PROMOTE_MAX_LAG)), "{why}");
        let never = view(&[1, 2, 3], 10, &[(4, None)]);
        assert!(never.refuse_promote(4).unwrap().contains("unknown"));
        // Caught up, but the four voters would have no acknowledging majority (two voters down).
        let two_down = view(&[1, 4], 10, &[(4, Some(10))]);
        assert!(two_down.refuse_promote(4).unwrap().contains("current voters"));
    }

    #[test]
    fn a_voter_is_removed_only_when_the_new_voters_acknowledge_the_leader() {
        assert_eq!(view(&[1, 2, 3], 5, &[]).refuse_remove(2), None);
        // Removing the down voter itself is fine: {1, 2} both acknowledge.
        assert_eq!(view(&[1, 2], 5, &[]).refuse_remove(3), None);
        // Removing a live voter while another is down leaves {1, 3} with only 1 acknowledging.
        let why = view(&[1, 2], 5, &[]).refuse_remove(2).unwrap();
        assert!(
            why.contains("new voters {1, 3}") && why.contains("[3] not answering"),
            "{why}"
        );
    }
}
