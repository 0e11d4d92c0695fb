//! The per-node core shared by the server, the backend and the admin handlers: proposing writes (locally on the
//! leader, forwarded to the leader from followers), linearizable read barriers, leadership and readiness.
//!
//! Read-your-writes on every node: a forwarded write returns the log index the leader applied it at, and the
//! forwarding node waits until its own state machine has applied that index before answering its caller.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::Instant as _;
use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use storage::StorageError;

use crate::features::{FeatureSet, Lacking};
use crate::network::NetworkFactory;
use crate::types::{Op, OpResult, Raft, Request, Response, now_ms};
use crate::wire::{WireError, path};

/// How long a write or read barrier keeps looking for a leader before failing with `Unavailable`.
pub(crate) const LEADER_DEADLINE: Duration = Duration::from_secs(5);
/// Deadline of one forwarded request.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one local proposal (`client_write` on the leader: replicated, committed, applied), plus
/// [`size_allowance`]. A leader that lost its quorum never commits, and openraft does not fail the proposal until
/// the leader steps down or the partition heals; past this deadline the write is answered
/// [`WireError::Timeout`]: commit status unknown.
pub(crate) const COMMIT_DEADLINE: Duration = Duration::from_secs(5);
/// Deadline of a whole [`Core::write`] (finding the leader, proposing or forwarding, read-your-writes), plus
/// [`size_allowance`], so a caller (and the relay batcher's in-flight permit it holds) is always released.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(15);
/// Relay bytes per extra second of the deadlines above (an entry of many MiB is sent to every follower, and
/// encoded, fsynced and applied on each). Generous: it only delays the answer of a write that cannot commit,
/// and a debug build under load moves a few MiB/s through a three-node cluster.
const WRITE_BYTES_PER_SEC: usize = 2 << 20;

/// The extra time a write of `req` gets for its size.
pub(crate) fn size_allowance(req: &Request) -> Duration {
    Duration::from_secs_f64(req.relay_bytes() as f64 / WRITE_BYTES_PER_SEC as f64)
}
/// A follower or learner that heard nothing from a leader for this long reports not ready: it cannot forward
/// writes (relays) to a leader it cannot reach, e.g. when it is cut off from the rest of the cluster.
pub(crate) const FOLLOWER_CONTACT_LIMIT: Duration = Duration::from_secs(1);
/// A leader whose last quorum acknowledgement is this old reports not ready (the leader's side of
/// [`FOLLOWER_CONTACT_LIMIT`], the same tolerance). Readiness decides where relays are routed, and a leader
/// whose followers answer a few hundred milliseconds late under load still commits every write: judging it by
/// the leader lease (150 ms), as [`Core::is_leader`] must for a submission, made a healthy leader's `/ready`
/// flap on a loaded host. A leader really cut off from its quorum is replaced within the election timeout and
/// reports not ready a second after its last acknowledgement.
pub(crate) const LEADER_QUORUM_LIMIT: Duration = FOLLOWER_CONTACT_LIMIT;

/// A snapshot of the raft metrics that matter to callers (copied out of the watch, never held across awaits).
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub state: ServerState,
    pub term: u64,
    pub leader: Option<u64>,
    pub leader_addr: Option<String>,
    pub quorum_age: Option<Duration>,
    pub running: Result<(), String>,
}

/// An entry this node proposed, once applied.
#[derive(Debug)]
pub(crate) struct Proposed {
    /// Its log index.
    pub index: u64,
    /// The term it was proposed (and so applied) in.
    pub term: u64,
    /// Its results.
    pub data: Response,
}

/// Shared per-node state.
pub(crate) struct Core {
    pub raft: Raft,
    pub id: u64,
    pub net: NetworkFactory,
    /// A leader whose last quorum acknowledgement is older than this reports not-leader (lost quorum).
    pub lease: Duration,
    /// How long a leadership confirmation ([`Core::confirm_leader`]) on a leader whose quorum acknowledgement
    /// is merely late waits for a fresh one (the election timeout's upper bound).
    pub confirm_wait: Duration,
    /// When an append (entries or heartbeat) from a current leader last reached this node.
    pub leader_contact: Mutex<Option<Instant>>,
    /// Write latency and snapshot counters.
    pub stats: crate::RaftStats,
    /// This node's identity and its peers' ([`crate::identity`]).
    pub identity: Arc<crate::identity::Identity>,
    /// What this node and its peers can apply ([`crate::features`]).
    pub features: Arc<crate::features::Features>,
}

fn not_leader(f: &openraft::error::ForwardToLeader<crate::types::TypeConfig>) -> WireError {
    WireError::NotLeader {
        leader_id: f.leader_id,
        leader_addr: f.leader_node.as_ref().map(|n| n.raft_addr.clone()),
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("raft: {e}"))
}

impl Core {
    /// Copies the current metrics.
    pub fn view(&self) -> View {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        self.features.set_term(m.current_term);
        let leader_addr = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.raft_addr.clone())
        });
        // A leader that is the only voter (a new cluster before its other nodes join, one shrunk to a node for
        // maintenance, or one run alone) is its own quorum: every entry commits on its own log write, and no
        // follower acknowledges anything, so openraft's quorum acknowledgement stays at the election's and, read
        // as an age, would depose it from the lease 150 ms after it was elected (its miner never claimed again).
        let sole_voter = m.state == ServerState::Leader
            && m.membership_config
                .membership()
                .get_joint_config()
                .iter()
                .all(|voters| voters.len() == 1 && voters.contains(&self.id));
        let quorum_age = if sole_voter {
            Some(Duration::ZERO)
        } else {
            m.last_quorum_acked.as_ref().map(|t| t.elapsed())
        };
        View {
            state: m.state,
            term: m.current_term,
            leader: m.current_leader,
            leader_addr,
            quorum_age,
            running: m.running_state.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    /// True when this node is the raft leader and a quorum acknowledged it within the lease.
    pub fn is_leader(&self) -> bool {
        let v = self.view();
        v.running.is_ok()
            && v.state == ServerState::Leader
            && v.leader == Some(self.id)
            && v.quorum_age.is_some_and(|a| a < self.lease)
    }

    /// [`Core::is_leader`] for a leadership confirmation, waiting a moment when the leadership is merely
    /// unconfirmed: a node that is the raft leader of `term` (`None`: of its current term) but whose last quorum
    /// acknowledgement is older than the lease (a follower's answers late on a loaded host, while the other
    /// follower is down or cut off) triggers a heartbeat round and waits up to [`Core::confirm_wait`] for a
    /// quorum to acknowledge it. Answering "not the leader" at once would make its miner skip a claim or proof
    /// due now, or drop its leadership, for an answer a few milliseconds late. The condition is the same as
    /// [`Core::is_leader`]'s, only checked again as acknowledgements arrive; false once the node stops leading
    /// `term`, or when no acknowledgement comes in time (a leader cut off from its quorum).
    pub async fn confirm_leader(&self, term: Option<u64>) -> bool {
        let leads = |v: &View, term: u64| {
            v.running.is_ok() && v.state == ServerState::Leader && v.leader == Some(self.id) && v.term == term
        };
        let fresh = |v: &View| v.quorum_age.is_some_and(|a| a < self.lease);
        let v = self.view();
        let term = term.unwrap_or(v.term);
        if !leads(&v, term) {
            return false;
        }
        if fresh(&v) {
            return true;
        }
        let mut metrics = self.raft.metrics();
        if let Err(e) = self.raft.trigger().heartbeat().await {
            tracing::debug!(error = %e, "raft heartbeat trigger failed");
            return false;
        }
        let deadline = tokio::time::Instant::now() + self.confirm_wait;
        loop {
            let v = self.view();
            if !leads(&v, term) {
                return false;
            }
            if fresh(&v) {
                tracing::debug!(term, "raft leadership confirmed after a late quorum acknowledgement");
                return true;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let v = self.view();
                    return leads(&v, term) && fresh(&v);
                }
            }
        }
    }

    /// Why this node cannot serve writes right now, if it cannot.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(why) = self.identity.problem() {
            return Err(format!("raft node identity refused: {why}"));
        }
        readiness_of(&self.view(), self.id, self.leader_contact_age())
    }

    /// Records that a current leader's append reached this node.
    pub fn note_leader_contact(&self) {
        *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn leader_contact_age(&self) -> Option<Duration> {
        self.leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    /// `Err` once openraft's core stopped for good (a storage error, e.g. a full disk; see
    /// [`crate::RaftNode::stopped`]): refusing here, before openraft, spares an ERROR line per request from it.
    pub fn check_running(&self) -> Result<(), WireError> {
        self.view()
            .running
            .map_err(|why| WireError::Raft(format!("raft stopped: {why}")))
    }

    /// The members lacking write sets ([`crate::features`]) when this node is the raft leader; `None` when it
    /// is not (the leader decides). Updates `ha_raft_write_sets_enabled`.
    pub fn write_set_lacking(&self) -> Option<Lacking> {
        let (members, term): (Vec<u64>, u64) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
                self.stats.write_sets_enabled(false);
                return None;
            }
            let members = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
            (members, m.current_term)
        };
        self.features.set_term(term);
        let lacking = self.features.lacking(members, FeatureSet::WRITE_SET, term);
        self.stats.write_sets_enabled(lacking.is_empty());
        Some(lacking)
    }

    /// Whether a write set may be sent as one entry ([`crate::types::Op::WriteSet`]) now: on the leader, when
    /// every member advertised `write-set` to it in this term; on a follower (which forwards it), when the leader
    /// did, and this node itself does (the leader checks again). `Err` says why not (logged at WARN once per
    /// change of the members lacking it).
    pub fn check_write_set(&self) -> Result<(), String> {
        let v = self.view();
        let lacking = match v.leader {
            Some(l) if l == self.id => match self.write_set_lacking() {
                Some(lacking) => lacking,
                None => return Err(format!("node {l} is not the raft leader any more")),
            },
            Some(l) => self.features.lacking([self.id, l], FeatureSet::WRITE_SET, v.term),
            None => return Err("no raft leader known".into()),
        };
        self.features.write_set_gate(&lacking)
    }

    /// Whether an [`crate::types::Op::KvIncrementOnce`] may be sent now: as [`Core::check_write_set`] for the
    /// `kv-once` feature (on the leader every member advertised it in this term; on a follower the leader did
    /// and this node does). `Err` says why not.
    pub fn check_kv_once(&self) -> Result<(), String> {
        let v = self.view();
        let lacking = match v.leader {
            Some(l) if l == self.id => {
                let m = self.raft.metrics();
                let m = m.borrow_watched();
                if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
                    return Err(format!("node {l} is not the raft leader any more"));
                }
                let members: Vec<u64> = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
                self.features.lacking(members, FeatureSet::KV_ONCE, m.current_term)
            }
            Some(l) => self.features.lacking([self.id, l], FeatureSet::KV_ONCE, v.term),
            None => return Err("no raft leader known".into()),
        };
        if lacking.is_empty() {
            return Ok(());
        }
        Err(format!(
            "raft increments at most once off: {}",
            crate::features::describe(&lacking)
        ))
    }

    /// Proposes `req` on this node only (stamping the leader clock); `NotLeader` when this node is not leader.
    /// Returns the log index the entry was applied at and its results.
    pub async fn write_local(&self, req: Request) -> Result<(u64, Response), WireError> {
        self.propose_local(req).await.map(|w| (w.index, w.data))
    }

    /// [`Core::write_local`], also returning the term the entry was proposed in.
    ///
    /// openraft answers a proposal once its entry is applied, even when this node lost leadership meanwhile and
    /// a later leader committed the entry (it was replicated before the cut, the acknowledgements were not).
    /// The results then speak for the proposal's term, which may be over: callers that draw a conclusion about
    /// the present (leadership) compare [`Proposed::term`] with the current term.
    ///
    /// Bounded by [`COMMIT_DEADLINE`] plus [`size_allowance`]: past it the answer is [`WireError::Timeout`] and the
    /// entry may still commit later (when the partition heals). See [`Core::write`] for why that is safe for relays.
    pub async fn propose_local(&self, mut req: Request) -> Result<Proposed, WireError> {
        self.check_running()?;
        if req.ops.iter().any(Op::is_write_set) {
            // The version gate ([`crate::features`]): a write set is proposed only while every member can apply
            // it. Otherwise nothing is proposed and every op answers `Conflict` (the caller writes the set's parts
            // one by one); index 0 (the cluster's first entry): read-your-writes has nothing to wait for, also on
            // a forwarding follower that lags.
            let v = self.view();
            if v.leader != Some(self.id) {
                return Err(WireError::NotLeader {
                    leader_id: v.leader,
                    leader_addr: v.leader_addr,
                });
            }
            if let Err(why) = self.check_write_set() {
                return Ok(Proposed {
                    index: 0,
                    term: v.term,
                    data: Response {
                        results: vec![OpResult::Conflict(why); req.ops.len()],
                    },
                });
            }
        }
        if req.ops.iter().any(Op::is_kv_once) {
            // The same gate for `kv-once` ([`crate::features`]): nothing proposed, every op `Conflict`.
            let v = self.view();
            if v.leader != Some(self.id) {
                return Err(WireError::NotLeader {
                    leader_id: v.leader,
                    leader_addr: v.leader_addr,
                });
            }
            if let Err(why) = self.check_kv_once() {
                tracing::debug!(why, "raft increment at most once refused by the kv-once gate");
                return Ok(Proposed {
                    index: 0,
                    term: v.term,
                    data: Response {
                        results: vec![OpResult::Conflict(why); req.ops.len()],
                    },
                });
            }
        }
        req.now_ms = now_ms();
        let deadline = COMMIT_DEADLINE + size_allowance(&req);
        let Ok(written) = tokio::time::timeout(deadline, self.raft.client_write(req)).await else {
            tracing::warn!(
                ?deadline,
                "raft proposal not committed within its deadline (leader without quorum?): commit status unknown"
            );
            return Err(WireError::Timeout(deadline));
        };
        match written {
            Ok(r) => Ok(Proposed {
                index: r.log_id.index,
                term: r.log_id.committed_leader_id().term,
                data: r.data,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(&f)),
            Err(e) => Err(WireError::Raft(e.to_string())),
        }
    }

    /// The log index a linearizable read on any node must wait for; only answered by the leader.
    pub async fn linearize_local(&self) -> Result<u64, WireError> {
        self.check_running()?;
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(r) => Ok(r.log_id().index),
            Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(f))) => Err(not_leader(&f)),
            Err(e) => Err(WireError::Raft(e.to_string())),
        }
    }

    /// Waits until the local state machine applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), StorageError> {
        self.raft
            .wait(Some(LEADER_DEADLINE))
            .applied_index_at_least(Some(index), "read your writes")
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Runs `local` on the leader: here if this node leads, else forwarded to `path` on the leader, retrying
    /// while no leader is known or the leader moved, until [`LEADER_DEADLINE`]. Only failures that guarantee
    /// the request was not executed (not leader, unreachable) are retried.
    async fn on_leader<T, F, Fut>(&self, route: &str, body: &Request, local: F) -> Result<T, StorageError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, WireError>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_DEADLINE;
        let mut backoff = Duration::from_millis(5);
        loop {
            let v = self.view();
            let attempt = match (v.leader, v.leader_addr) {
                (Some(l), _) if l == self.id => local().await,
                (Some(_), Some(addr)) => {
                    let timeout = FORWARD_TIMEOUT + size_allowance(body);
                    self.net.client(&addr).call(route, body, timeout).await
                }
                _ => Err(WireError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                }),
            };
            match attempt {
                Ok(t) => return Ok(t),
                Err(WireError::NotLeader { .. } | WireError::Unreachable(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(WireError::Timeout(t)) => {
                    return Err(unavailable(format!(
                        "commit status unknown: no answer from the leader within {t:?} (the write may still \
                         commit; callers treat it as failed)"
                    )));
                }
                Err(e @ (WireError::NotLeader { .. } | WireError::Unreachable(_))) => {
                    return Err(unavailable(e));
                }
                Err(e @ WireError::Unauthorized) => {
                    return Err(StorageError::Backend(e.to_string()));
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// Replicates `req` through the leader and returns its results once this node has applied it.
    ///
    /// Always answers within [`WRITE_DEADLINE`] (plus [`size_allowance`]). An `Unavailable` answer does not say the write was not
    /// committed: a proposal that timed out (leader without quorum) may commit once the partition heals. For
    /// relay appends that is safe: the relayer refuses a relay whose append failed, and if the entry commits
    /// later anyway, its relays are applied once (one raft entry, one apply) and the miner keys its tries by relay
    /// hash, so a relay appended again after a failure is not counted twice.
    pub async fn write(&self, req: Request) -> Result<Response, StorageError> {
        let started = Instant::now();
        let deadline = WRITE_DEADLINE + size_allowance(&req);
        let written = tokio::time::timeout(deadline, async {
            let (index, resp) = self
                .on_leader(path::WRITE, &req, || self.write_local(req.clone()))
                .await?;
            self.wait_applied(index).await?;
            Ok::<_, StorageError>(resp)
        })
        .await
        .map_err(|_| {
            unavailable(format!(
                "commit status unknown: the write did not complete within {deadline:?}"
            ))
        })??;
        self.stats.write_done(started.elapsed());
        Ok(written)
    }

    /// A linearizable read barrier: after it returns, local reads see every write committed before the call.
    pub async fn linearize(&self) -> Result<(), StorageError> {
        let index: u64 = self
            .on_leader(path::LINEARIZE, &Request::default(), || self.linearize_local())
            .await?;
        self.wait_applied(index).await
    }
}

/// [`Core::readiness`] on a metrics view: `contact_age` is the time since a leader's append last reached this
/// node (followers and learners).
fn readiness_of(v: &View, id: u64, contact_age: Option<Duration>) -> Result<(), String> {
    if let Err(e) = &v.running {
        return Err(format!("raft stopped: {e}"));
    }
    match v.leader {
        None => Err(format!("no raft leader known (term {}, {:?})", v.term, v.state)),
        Some(l) if l == id && v.quorum_age.is_none_or(|a| a >= LEADER_QUORUM_LIMIT) => Err(format!(
            "raft leader without quorum acknowledgement for {:?} (term {})",
            v.quorum_age, v.term
        )),
        Some(l) if l != id => match contact_age {
            Some(age) if age < FOLLOWER_CONTACT_LIMIT => Ok(()),
            age => Err(format!(
                "no contact with raft leader {l} for {} (term {}, {:?})",
                age.map_or("ever".to_string(), |a| format!("{a:?}")),
                v.term,
                v.state
            )),
        },
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_view(quorum_age: Option<Duration>) -> View {
        View {
            state: ServerState::Leader,
            term: 4,
            leader: Some(1),
            leader_addr: None,
            quorum_age,
            running: Ok(()),
        }
    }

    /// A leader whose followers answer late (beyond the 150 ms lease, as on a loaded host) stays ready; one
    /// without an acknowledgement for the limit, or never acknowledged, is not.
    #[test]
    fn leader_readiness_tolerates_late_acknowledgements() {
        assert_eq!(
            readiness_of(&leader_view(Some(Duration::from_millis(20))), 1, None),
            Ok(())
        );
        assert_eq!(
            readiness_of(&leader_view(Some(Duration::from_millis(400))), 1, None),
            Ok(())
        );
        let late = readiness_of(&leader_view(Some(LEADER_QUORUM_LIMIT)), 1, None).unwrap_err();
        assert!(late.contains("without quorum acknowledgement"), "{late}");
        assert!(readiness_of(&leader_view(None), 1, None).is_err());
        let mut stopped = leader_view(Some(Duration::ZERO));
        stopped.running = Err("disk full".into());
        assert_eq!(readiness_of(&stopped, 1, None), Err("raft stopped: disk full".into()));
    }

    /// A follower is ready while a leader's appends reach it, not once they stopped for the contact limit.
    #[test]
    fn follower_readiness_follows_leader_contact() {
        let mut v = leader_view(None);
        v.state = ServerState::Follower;
        assert_eq!(readiness_of(&v, 2, Some(Duration::from_millis(300))), Ok(()));
        let cut = readiness_of(&v, 2, Some(FOLLOWER_CONTACT_LIMIT)).unwrap_err();
        assert!(cut.contains("no contact with raft leader 1"), "{cut}");
        assert!(readiness_of(&v, 2, None).unwrap_err().contains("for ever"));
        v.leader = None;
        assert!(readiness_of(&v, 2, None).unwrap_err().contains("no raft leader known"));
    }
}
