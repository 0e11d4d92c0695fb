//! Leadership transfer: the leader hands its role to a chosen voter instead of leaving the cluster to notice it
//! is gone. Used by `relay-miner raft transfer-leader` (planned maintenance: move the leader off a node before
//! restarting or upgrading it) and by a leader's graceful stop ([`crate::RaftNode::hand_off`], which `run`
//! calls first thing when it stops, and again before it closes the node).
//!
//! openraft 0.10 (`Trigger::transfer_leader`): the leader stops proposing and heartbeating and broadcasts a
//! transfer request to every node; the others reset the leader lease they hold for it (so they vote at once),
//! and the target, once its log holds everything the leader had, starts an election in the next term. Without
//! it, a stopped leader costs a full election timeout (150–300 ms) plus the election, and every write in
//! between waits. If the target never wins (it died meanwhile), the old leader has stopped heartbeating, so the
//! followers time out and elect someone as after any leader loss: a failed transfer degrades to a normal
//! election, never to a stuck cluster.
//!
//! The miner follows as after a failover: the storage lease a leader's miner held is void in the new term
//! ([`crate::backend`] `leader`), so the new leader's miner campaigns at once.

use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;

use crate::core::Core;
use crate::wire::WireError;

/// The voter a transfer should go to when the operator names none: among the voters other than `me`, the one
/// with the highest replicated log index (`matched`: from the leader's replication metrics), so the election
/// waits least for its log; ties go to the lowest id. `None` when there is no other voter.
pub(crate) fn pick_target(me: u64, voters: &[u64], matched: &[(u64, Option<u64>)]) -> Option<u64> {
    let progress = |id: u64| matched.iter().find(|(n, _)| *n == id).and_then(|(_, m)| *m);
    voters
        .iter()
        .copied()
        .filter(|id| *id != me)
        .max_by(|a, b| progress(*a).cmp(&progress(*b)).then(b.cmp(a)))
}

impl Core {
    /// Transfers leadership to voter `to` (`None`: the most caught-up other voter) and waits up to `wait` for
    /// that node (with `to` `None`: any other node) to lead in a later term; returns the new leader. `NotLeader` on a follower (with the leader's address,
    /// so the admin client follows it), `BadRequest` for a target that is not another voter, `Raft` when the
    /// target does not lead within `wait` (the cluster then elects as after a leader loss).
    pub(crate) async fn transfer_leadership(&self, to: Option<u64>, wait: Duration) -> Result<u64, WireError> {
        let (term, voters, matched, leader_addr) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let mem = m.membership_config.membership();
            let voters: Vec<u64> = mem.voter_ids().collect();
            let matched: Vec<(u64, Option<u64>)> = m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map(|l| l.index))).collect())
                .unwrap_or_default();
            let leader_addr = m
                .current_leader
                .and_then(|l| mem.get_node(&l).map(|n| n.raft_addr.clone()));
            if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
                return Err(WireError::NotLeader {
                    leader_id: m.current_leader,
                    leader_addr,
                });
            }
            (m.current_term, voters, matched, leader_addr)
        };
        let target = match to {
            Some(id) if id == self.id => {
                return Err(WireError::BadRequest(format!("node {id} already leads (term {term})")));
            }
            Some(id) if !voters.contains(&id) => {
                return Err(WireError::BadRequest(format!(
                    "node {id} is not a voter (voters {voters:?}): only a voter can lead"
                )));
            }
            Some(id) => id,
            None => pick_target(self.id, &voters, &matched).ok_or_else(|| {
                WireError::BadRequest(format!("no other voter to hand leadership to (voters {voters:?})"))
            })?,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut metrics = self.raft.metrics();
        // The target gets one election timeout (150 ms) to hold the leader's last entry once asked, else it
        // declines and the cluster elects whoever times out first. Under load a follower trails by the entries
        // in flight, so ask once it has caught up with the leader's log at least once (or half the wait passed).
        let caught_up_by = tokio::time::Instant::now() + wait / 2;
        while !self.caught_up(target) {
            if tokio::time::timeout_at(caught_up_by, metrics.changed()).await.is_err() {
                tracing::warn!(
                    to = target,
                    "raft: transfer target still behind the leader's log; asking anyway"
                );
                break;
            }
        }
        tracing::info!(term, to = target, leader = ?leader_addr, "raft: transferring leadership");
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| WireError::Raft(e.to_string()))?;
        loop {
            let v = self.view();
            match v.leader {
                Some(l) if v.term > term && (l == target || (to.is_none() && l != self.id)) => {
                    tracing::info!(term = v.term, leader = l, "raft: leadership transferred");
                    return Ok(l);
                }
                Some(l) if v.term > term && l != target => {
                    return Err(WireError::Raft(format!(
                        "node {l} won the election in term {} instead of node {target} (it was not caught up in \
                         time); ask again",
                        v.term
                    )));
                }
                _ => {}
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(WireError::Raft("raft stopped during the leadership transfer".into())),
                Err(_) => {
                    let v = self.view();
                    return Err(WireError::Raft(format!(
                        "node {target} did not lead within {wait:?} (term {}, leader {:?}); the cluster elects a \
                         leader as after a leader loss",
                        v.term, v.leader
                    )));
                }
            }
        }
    }

    /// True when this leader's replication metrics show `target` holding its whole log.
    fn caught_up(&self, target: u64) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let last = m.last_log_index;
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&target).cloned())
            .flatten()
            .map(|l| l.index);
        matched.is_some() && matched >= last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_caught_up_other_voter_is_picked() {
        let voters = [1, 2, 3];
        assert_eq!(pick_target(1, &voters, &[(2, Some(40)), (3, Some(42))]), Some(3));
        assert_eq!(pick_target(1, &voters, &[(2, Some(42)), (3, Some(42))]), Some(2));
        // A voter the leader has no progress for (just added, unreachable) comes last.
        assert_eq!(pick_target(1, &voters, &[(3, Some(1))]), Some(3));
        assert_eq!(pick_target(2, &voters, &[]), Some(1));
        // Learners are not in `voters` and never picked, whatever their progress.
        assert_eq!(pick_target(1, &[1, 2], &[(2, Some(5)), (4, Some(99))]), Some(2));
        assert_eq!(pick_target(1, &[1], &[(4, Some(99))]), None);
    }
}
