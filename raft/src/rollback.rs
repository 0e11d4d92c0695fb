//! Detecting, at start, a data directory restored from an older copy (a backup, a VM snapshot): this module owns
//! what each node remembers of its peers' votes and acknowledgements (the `witness` file), the raft-port route
//! that tells a peer what is known of it, the start check that asks, and the gate that keeps a node out of raft
//! until the check passed.
//!
//! Why: raft's safety assumes a node never forgets its vote nor an entry it acknowledged. A node restarted on
//! an older copy of its directory (same node id, same [`crate::identity`] incarnation, so the wiped-node checks
//! do not see it) comes back with an older vote and a shorter log: it can vote a second time in a term (two
//! leaders in one term: two miners submitting claims) and an entry committed with its acknowledgement may now be
//! held by a minority only (a relay batch lost at the next failover).
//!
//! What peers remember of node `n` (in memory, exact while they run; in their `witness` file, written at most once
//! a second and at shutdown, so after a crash of the peer a lower bound):
//! - `acked (t, i)`: while leading in term `t`, this node saw `n` acknowledge the log up to index `i` (openraft's
//!   replication matched index: durable on `n`). Accepting that append, `n` held a vote of term `t` exactly.
//! - `voted t`: `n` granted this node its vote in term `t` (openraft answers a granted vote once it is saved).
//!
//! Both come with `n`'s incarnation as known then: knowledge of another incarnation (a node removed, wiped and
//! added again under its id) is ignored, and a member removed from the membership is forgotten.
//!
//! The start check (`check`), with the node's vote term `v` and last log index `l` read from its own files
//! before openraft starts: the directory went back in time when a peer knows
//! - `voted t` with `t > v`, or `acked (t, i)` with `t > v` (votes never decrease), or
//! - `acked (t, i)` with `t == v` and `l < i` (in the term of its vote the node's log only grows; a later leader
//!   truncating uncommitted entries needs a later term, which then shows in `v`).
//!
//! The node then refuses to start ([`crate::NodeError::RolledBack`], logged at ERROR with the fix: wipe, `raft
//! remove`, `raft add-learner`, `raft promote`).
//!
//! Until the check ends the node's raft RPCs are gated: it answers none (no vote, no acknowledgement) and sends
//! none (no campaign), while its raft port already answers the admin routes and this check's route, so nodes of a
//! cluster restarted all at once answer each other. Who is asked: every other member of the membership the node's
//! own files hold (plus [`crate::RaftConfig::start_check_peers`]). The check waits for every one of them, because
//! the peer holding the newest knowledge is the last leader, which may be the one still down; but not forever: at
//! [`crate::RaftConfig::start_check_wait`] (10 s by default) it starts with what answered, logging a WARN naming
//! who did not (a whole-cluster restart where some host stays down must still come up).
//!
//! Only the route's own answer counts as a peer's answer: the route answers once the cluster token checked out
//! (401 otherwise) and names the answering node in [`KNOWN_BY_HEADER`]; the check counts it as peer `n`'s answer
//! when that is `n` (an answer of "nothing known of this node" included). Anything else at `n`'s address is
//! silence, and the wait applies: a 404 or any other status (another service took a stale address; a build
//! without the route), an answer naming another node (the address now belongs to another member), an answer
//! without the header (a build before it). Counted as answered, a stale address would let a node restored from
//! an old copy start while the member that knew better had moved. What an unidentified or another node's answer
//! knows is still judged (only a member holding the cluster token gets one): it proves a rollback as well.
//!
//! Not covered (documented limits): a copy newer than what the peers recorded (a peer that crashed lost up to a
//! second of its witness; a vote granted to a candidate that never led is known to that candidate only); a copy
//! restored while every peer that knew better is down past the wait; every node rolled back at once; a member
//! added after the copy was taken and not in [`crate::RaftConfig::start_check_peers`]; a single-voter cluster
//! (nobody to ask, and openraft elects it without the network). With pre-vote off, a node waiting at the gate
//! campaigns alone and may bump its term (as any cut-off node does). openraft itself detects none of this: it
//! trusts the vote and log state its storage returns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::PeerClient;

/// The raft-port route answering what this node knows of a peer ([`Known`]; the body is the peer's id).
pub const PATH: &str = "/admin/known-of";
/// Header of the route's answers naming the answering node's id (decimal): the start check counts an answer as
/// the asked peer's only with that peer's id here (module docs).
pub const KNOWN_BY_HEADER: &str = "x-raft-known-by";
/// File in the data directory holding what this node knows of its peers.
const FILE: &str = "witness";
/// How often the witness is written when it changed: a small synced file, at most once a second beside the log's
/// own fsyncs (what is in memory is exact; the file only matters after this node crashed).
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Pause between two rounds of asking the peers that did not answer yet.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// What one node knows of a peer's durable raft state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The peer's incarnation when recorded (`None`: not known then).
    pub incarnation: Option<u64>,
    /// The highest `(leader term, log index)` the peer acknowledged to this node while it led.
    pub acked: Option<(u64, u64)>,
    /// The highest term in which the peer granted this node its vote.
    pub voted: Option<u64>,
}

impl Known {
    fn is_empty(&self) -> bool {
        self.acked.is_none() && self.voted.is_none()
    }

    /// Starts over when the peer's incarnation changed (another data directory under the same id).
    fn under(&mut self, incarnation: Option<u64>) {
        match (self.incarnation, incarnation) {
            (Some(had), Some(now)) if had != now => *self = Self::default(),
            _ => {}
        }
        if incarnation.is_some() {
            self.incarnation = incarnation;
        }
    }
}

/// A node's own durable raft state at start, read from its files before openraft runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// The term of its stored vote (0: none).
    pub vote_term: u64,
    /// Its last log index (the log's, the purged prefix's or the applied state's, whichever is last).
    pub last_log_index: Option<u64>,
}

/// Why a peer's knowledge proves that `local` is older than the node's real state; `None` when it does not
/// (pure). Knowledge recorded under another incarnation than `incarnation` is about another data directory.
pub fn judge(incarnation: u64, local: Local, k: &Known) -> Option<String> {
    if k.incarnation.is_some_and(|i| i != incarnation) {
        return None;
    }
    let v = local.vote_term;
    if let Some(t) = k.voted.filter(|t| *t > v) {
        return Some(format!(
            "this node granted it a vote in term {t}, but the stored vote is of term {v}"
        ));
    }
    match k.acked {
        Some((t, i)) if t > v => Some(format!(
            "this node acknowledged its log up to index {i} in term {t}, but the stored vote is of term {v}"
        )),
        Some((t, i)) if t == v && local.last_log_index.is_none_or(|l| l < i) => Some(format!(
            "this node acknowledged its log up to index {i} in term {t}, but its log ends at {}",
            local
                .last_log_index
                .map_or_else(|| "nothing".to_owned(), |l| format!("index {l}"))
        )),
        _ => None,
    }
}

/// What this node knows of its peers, and the start gate.
#[derive(Debug)]
pub struct Witness {
    dir: PathBuf,
    /// By peer id; `true` when changed since the last write.
    known: Mutex<(BTreeMap<u64, Known>, bool)>,
    /// Raft RPCs flow (in and out) only once the start check passed.
    open: AtomicBool,
}

impl Witness {
    /// Opens (or starts) the witness of `data_dir`, gate closed.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(FILE);
        let (known, changed) = match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&text) {
                Some(known) => (known, false),
                None => {
                    // What this node knows of its peers only ever protects them (a lower bound of what they did):
                    // an unreadable file (corrupt, a newer build's format after a downgrade) must not keep the
                    // node from starting. It is kept aside for inspection and the node starts knowing nothing.
                    let aside = data_dir.join(format!(
                        "{FILE}.unreadable-{}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                    ));
                    std::fs::rename(&path, &aside)?;
                    tracing::error!(
                        file = %path.display(),
                        moved_to = %aside.display(),
                        "raft: the witness file (what this node saw of its peers' votes and acknowledgements) is \
                         unreadable; moved aside, starting without it: a peer restarted on an older copy of its \
                         data directory is not detected by what this node knew of it"
                    );
                    (BTreeMap::new(), true)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), false),
            Err(e) => return Err(e),
        };
        Ok(Self {
            dir: data_dir.to_path_buf(),
            known: Mutex::new((known, changed)),
            open: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<u64, Known>, bool)> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `peer` (of `incarnation`, when known) acknowledged the log up to `index` to this node leading
    /// in `term`.
    pub fn record_ack(&self, peer: u64, incarnation: Option<u64>, term: u64, index: u64) {
        let mut g = self.lock();
        let k = g.0.entry(peer).or_default();
        let before = *k;
        k.under(incarnation);
        if k.acked.is_none_or(|a| a < (term, index)) {
            k.acked = Some((term, index));
        }
        if *k != before {
            g.1 = true;
        }
    }

    /// Records that `peer` granted this node its vote in `term`.
    pub fn record_vote(&self, peer: u64, incarnation: Option<u64>, term: u64) {
        let mut g = self.lock();
        let k = g.0.entry(peer).or_default();
        let before = *k;
        k.under(incarnation);
        if k.voted.is_none_or(|v| v < term) {
            k.voted = Some(term);
        }
        if *k != before {
            g.1 = true;
        }
    }

    /// What this node knows of `peer`.
    pub fn known_of(&self, peer: u64) -> Known {
        self.lock().0.get(&peer).copied().unwrap_or_default()
    }

    /// Forgets peers not in `members` (removed: their id may be reused by a new data directory).
    pub fn forget_absent(&self, members: &BTreeSet<u64>) {
        let mut g = self.lock();
        let before = g.0.len();
        g.0.retain(|id, _| members.contains(id));
        if g.0.len() != before {
            g.1 = true;
        }
    }

    /// Writes the witness file when it changed (atomically, synced).
    pub fn flush(&self) -> std::io::Result<()> {
        let text = {
            let mut g = self.lock();
            if !g.1 {
                return Ok(());
            }
            g.1 = false;
            render(&g.0)
        };
        let r = crate::identity::write_atomically(&self.dir, FILE, &text);
        if r.is_err() {
            self.lock().1 = true;
        }
        r
    }

    /// True once the start check let the node take part in raft.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Lets the node take part in raft.
    pub(crate) fn open_gate(&self) {
        self.open.store(true, Ordering::Release);
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// One line per peer: `<id> <incarnation hex|-> <acked term|-> <acked index|-> <voted term|->`.
fn render(known: &BTreeMap<u64, Known>) -> String {
    known
        .iter()
        .filter(|(_, k)| !k.is_empty())
        .map(|(id, k)| {
            format!(
                "{id} {} {} {} {}\n",
                k.incarnation.map_or_else(|| "-".to_owned(), |i| format!("{i:016x}")),
                opt(k.acked.map(|a| a.0)),
                opt(k.acked.map(|a| a.1)),
                opt(k.voted)
            )
        })
        .collect()
}

fn parse(text: &str) -> Option<BTreeMap<u64, Known>> {
    let field = |s: &str, hex: bool| -> Option<Option<u64>> {
        match (s, hex) {
            ("-", _) => Some(None),
            (s, true) => u64::from_str_radix(s, 16).ok().map(Some),
            (s, false) => s.parse().ok().map(Some),
        }
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let [id, inc, t, i, v] = f.as_slice() else {
                return None;
            };
            let acked = match (field(t, false)?, field(i, false)?) {
                (Some(t), Some(i)) => Some((t, i)),
                (None, None) => None,
                _ => return None,
            };
            Some((
                id.parse().ok()?,
                Known {
                    incarnation: field(inc, true)?,
                    acked,
                    voted: field(v, false)?,
                },
            ))
        })
        .collect()
}

/// Proof that this node's data directory is older than what a peer saw of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The peer that knows better.
    pub peer: u64,
    /// What it knows, against this node's state.
    pub why: String,
}

/// How the start check ended without finding a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checked {
    /// Peers that answered.
    pub answered: Vec<u64>,
    /// Peers that did not answer within the wait (id and why).
    pub unanswered: Vec<(u64, String)>,
}

/// Asks every peer in `peers` what it knows of node `me`, until each answered or `wait` passed: the evidence of
/// the first answer proving `local` older than the node's real state, else who answered.
pub(crate) async fn check(
    me: u64,
    incarnation: u64,
    local: Local,
    peers: &BTreeMap<u64, String>,
    token: &str,
    wait: Duration,
) -> Result<Checked, Evidence> {
    let deadline = tokio::time::Instant::now() + wait;
    let probe = wait.clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut pending: BTreeMap<u64, String> = peers
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let mut out = Checked::default();
    let mut why: BTreeMap<u64, String> = BTreeMap::new();
    loop {
        let asks = pending.iter().map(|(id, addr)| async move {
            let client = PeerClient::new(addr, token);
            let answer = client
                .call_with_header::<u64, Known>(PATH, &me, probe, KNOWN_BY_HEADER)
                .await;
            (*id, addr.clone(), answer)
        });
        for (id, addr, answer) in futures::future::join_all(asks).await {
            // Not the route's answer (a 404 included: module docs): silence.
            let (known, by) = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    why.insert(id, e.to_string());
                    continue;
                }
            };
            let by = by.and_then(|b| b.trim().parse::<u64>().ok());
            if let Some(why) = judge(incarnation, local, &known) {
                return Err(Evidence {
                    peer: by.unwrap_or(id),
                    why,
                });
            }
            match by {
                Some(by) if by == id => {
                    pending.remove(&id);
                    out.answered.push(id);
                }
                Some(by) => {
                    why.insert(id, format!("node {by} answers at its address {addr}"));
                }
                None => {
                    why.insert(
                        id,
                        format!("the answer at {addr} does not name its node ({KNOWN_BY_HEADER}: a build before it)"),
                    );
                }
            }
        }
        if pending.is_empty() {
            return Ok(out);
        }
        if tokio::time::Instant::now() >= deadline {
            out.unanswered = pending
                .keys()
                .map(|id| (*id, why.get(id).cloned().unwrap_or_default()))
                .collect();
            return Ok(out);
        }
        tokio::time::sleep(RETRY_EVERY.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INC: u64 = 0xabc;

    fn local(vote_term: u64, last: Option<u64>) -> Local {
        Local {
            vote_term,
            last_log_index: last,
        }
    }

    fn acked(t: u64, i: u64) -> Known {
        Known {
            incarnation: Some(INC),
            acked: Some((t, i)),
            voted: None,
        }
    }

    #[test]
    fn a_shorter_log_in_the_term_of_the_acknowledgement_is_a_rollback() {
        assert!(judge(INC, local(4, Some(19)), &acked(4, 20)).is_some());
        assert!(judge(INC, local(4, None), &acked(4, 1)).is_some());
        assert_eq!(judge(INC, local(4, Some(20)), &acked(4, 20)), None);
        assert_eq!(judge(INC, local(4, Some(25)), &acked(4, 20)), None);
    }

    #[test]
    fn an_older_vote_than_an_acknowledgement_or_a_grant_is_a_rollback() {
        assert!(judge(INC, local(3, Some(30)), &acked(4, 20)).is_some());
        let voted = Known {
            incarnation: Some(INC),
            acked: None,
            voted: Some(5),
        };
        assert!(judge(INC, local(4, Some(30)), &voted).is_some());
        assert_eq!(judge(INC, local(5, Some(30)), &voted), None);
    }

    /// A later leader may truncate entries this node acknowledged but that never committed: with a later vote, a
    /// shorter log is no proof.
    #[test]
    fn a_later_vote_with_a_shorter_log_is_not_a_rollback() {
        assert_eq!(judge(INC, local(5, Some(12)), &acked(4, 20)), None);
    }

    #[test]
    fn knowledge_of_another_incarnation_or_none_proves_nothing() {
        let mut k = acked(4, 20);
        k.incarnation = Some(INC + 1);
        assert_eq!(judge(INC, local(1, None), &k), None);
        assert_eq!(judge(INC, local(0, None), &Known::default()), None);
        // Recorded before the incarnation was known: it is about this id's only directory so far.
        k.incarnation = None;
        assert!(judge(INC, local(1, None), &k).is_some());
    }

    /// An unreadable witness (corrupt, a newer format) is moved aside and the node starts knowing nothing: it
    /// only ever protects peers, so it must not keep this node down.
    #[test]
    fn an_unreadable_witness_is_moved_aside_and_the_node_starts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not a witness line\n").unwrap();
        let w = Witness::open(dir.path()).unwrap();
        assert!(w.lock().0.is_empty());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with("witness.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1, "the unreadable file is kept aside");
        w.record_ack(3, Some(INC), 2, 10);
        w.flush().unwrap();
        assert_eq!(Witness::open(dir.path()).unwrap().lock().0.len(), 1);
    }

    #[test]
    fn the_witness_keeps_the_highest_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let w = Witness::open(dir.path()).unwrap();
        w.record_ack(3, Some(INC), 2, 10);
        w.record_ack(3, Some(INC), 2, 7);
        w.record_ack(3, Some(INC), 3, 5);
        w.record_vote(3, Some(INC), 4);
        w.record_vote(3, None, 1);
        w.record_ack(2, None, 1, 1);
        w.flush().unwrap();
        let again = Witness::open(dir.path()).unwrap();
        assert_eq!(
            again.known_of(3),
            Known {
                incarnation: Some(INC),
                acked: Some((3, 5)),
                voted: Some(4),
            }
        );
        assert_eq!(again.known_of(2), acked(1, 1).with_incarnation(None));
        assert!(!again.is_open());
        // Another incarnation starts over; a removed peer is forgotten.
        again.record_ack(3, Some(INC + 1), 5, 1);
        assert_eq!(again.known_of(3).acked, Some((5, 1)));
        assert_eq!(again.known_of(3).voted, None);
        again.forget_absent(&BTreeSet::from([3]));
        again.flush().unwrap();
        assert_eq!(Witness::open(dir.path()).unwrap().known_of(2), Known::default());
    }

    /// A 404 at a peer's address (another service took it, or a build without the route) is no answer: the peer
    /// counts as silent, as one that is down, and both are named once the wait has passed.
    #[tokio::test]
    async fn a_404_at_a_peers_address_is_silence_like_a_down_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move { axum::serve(listener, axum::Router::new()).await });
        let down = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let peers = BTreeMap::from([(2, other), (3, down)]);
        let checked = check(1, INC, local(1, Some(1)), &peers, "token", Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(checked.answered, Vec::<u64>::new());
        assert_eq!(
            checked.unanswered.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(checked.unanswered[0].1.contains("404"), "{:?}", checked.unanswered);
        server.abort();
    }

    /// The route's own answer counts, also when it knows nothing of the asking node, but only as the answer of the
    /// node it names: asked at the address of another id (the address moved to another member), it is silence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_routes_answer_counts_only_as_the_answer_of_the_node_it_names() {
        const TOKEN: &str = "rollback-check-test-token-0123456789";
        let dir = tempfile::tempdir().unwrap();
        let node = crate::RaftNode::start(crate::RaftConfig::new(
            2,
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            TOKEN,
        ))
        .await
        .unwrap();
        let addr = node.local_addr().to_string();
        let peers = BTreeMap::from([(2, addr.clone())]);
        let checked = check(1, INC, local(1, Some(1)), &peers, TOKEN, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!((checked.answered, checked.unanswered), (vec![2], vec![]));
        let moved = BTreeMap::from([(3, addr)]);
        let checked = check(1, INC, local(1, Some(1)), &moved, TOKEN, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(checked.answered, Vec::<u64>::new());
        assert_eq!(checked.unanswered.len(), 1);
        assert!(
            checked.unanswered[0].1.contains("node 2 answers"),
            "{:?}",
            checked.unanswered
        );
        node.shutdown().await;
    }

    impl Known {
        fn with_incarnation(mut self, i: Option<u64>) -> Self {
            self.incarnation = i;
            self
        }
    }
}
