//! Node identity: which data directory a node id speaks for, so a voter whose data was wiped cannot rejoin under
//! its old id.
//!
//! Raft's safety rests on every voter keeping its vote and log across restarts. A voter whose data directory was
//! wiped or replaced (a pod rescheduled onto an empty volume, a restored template) but restarted under the same
//! id would vote again in terms it already voted in and count as holding entries it no longer has: two leaders in
//! one term, or a committed entry (an acknowledged relay) lost when the nodes that still hold it fail. The rule is
//! that a wiped node joins under a **new** id; this module enforces it.
//!
//! - Each data directory gets an *incarnation*: a random 64-bit value created with it, stored with the node id in
//!   the `identity` file. Starting a node on a directory written under another node id is refused.
//! - Every raft RPC (append, vote, pre-vote, snapshot chunk) carries the sender's `id:incarnation` and the target's
//!   id (with the incarnation the sender knows it by, if any); every answer carries the answering node's.
//! - Each node remembers the incarnation it first saw for every peer (trust on first contact, the `peers` file),
//!   and every raft RPC also carries the incarnations its sender knows, which the receiver adopts for ids it
//!   does not know yet: followers, which never talk to each other while a leader lasts, learn each other's from
//!   the leader's heartbeats, so a follower campaigning after the leader died still knows the wiped node's
//!   old incarnation.
//!   A request from, an answer from, or a request addressed to a known id under another incarnation is refused:
//!   the wiped node's votes and acknowledgements never count, and it learns from the refusal that it must not
//!   serve (its readiness says why). A request addressed to another node id (swapped addresses, a duplicate id)
//!   is refused the same way.
//! - A peer removed from the membership is forgotten, so an id can be reused after `raft remove`.
//!
//! Peers of an older version send no identity headers; they are not checked.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Header carrying the sending (or answering) node's `id:incarnation` (incarnation in hex).
pub const FROM_HEADER: &str = "x-raft-from";
/// Header carrying the target node's id, and `:incarnation` when the sender knows it.
pub const TO_HEADER: &str = "x-raft-to";
/// Header carrying every `id:incarnation` the sender knows (itself included), comma-separated.
pub const PEERS_HEADER: &str = "x-raft-peers";

/// File in the data directory holding the node id and incarnation.
const IDENTITY_FILE: &str = "identity";
/// File in the data directory holding the peers' incarnations as first seen.
const PEERS_FILE: &str = "peers";

/// Why an identity could not be opened or a peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the identity files failed.
    #[error("identity files in {dir}: {source}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The identity file is unreadable.
    #[error("identity file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The data directory was written by another node id.
    #[error(
        "data directory {dir} belongs to raft node {stored}, not to node {configured}: start node {stored} on it, \
         or give node {configured} its own directory"
    )]
    OtherNode {
        /// The data directory.
        dir: PathBuf,
        /// The id in its identity file.
        stored: u64,
        /// The id this node was started with.
        configured: u64,
    },
}

/// This node's identity and the incarnations of its peers.
#[derive(Debug)]
pub struct Identity {
    node_id: u64,
    incarnation: u64,
    peers_path: PathBuf,
    peers: Mutex<HashMap<u64, u64>>,
    /// Set when a peer refused this node as another incarnation of its id: this node must not serve.
    refused: Mutex<Option<String>>,
    /// When a refusal of each peer was last logged.
    logged: Mutex<HashMap<u64, std::time::Instant>>,
}

/// One `id:incarnation` pair from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Node id.
    pub id: u64,
    /// Incarnation, when given.
    pub incarnation: Option<u64>,
}

impl Stamp {
    /// Parses `id` or `id:incarnation-hex`; `None` when malformed.
    pub fn parse(v: &str) -> Option<Self> {
        match v.split_once(':') {
            Some((id, inc)) => Some(Self {
                id: id.parse().ok()?,
                incarnation: Some(u64::from_str_radix(inc, 16).ok()?),
            }),
            None => Some(Self {
                id: v.parse().ok()?,
                incarnation: None,
            }),
        }
    }

    /// The header form.
    pub fn render(&self) -> String {
        match self.incarnation {
            Some(inc) => format!("{}:{inc:016x}", self.id),
            None => self.id.to_string(),
        }
    }
}

impl Identity {
    /// Opens the identity of `data_dir` for node `node_id`, creating it (a new incarnation) when the directory
    /// has none. Refuses a directory written under another node id.
    pub fn open(data_dir: &Path, node_id: u64) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            dir: data_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let path = data_dir.join(IDENTITY_FILE);
        let incarnation = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (stored, incarnation) = parse_identity(&text).ok_or_else(|| IdentityError::Corrupt {
                    path: path.clone(),
                    reason: format!("expected `node_id=<id>` and `incarnation=<hex>` lines, found {text:?}"),
                })?;
                if stored != node_id {
                    return Err(IdentityError::OtherNode {
                        dir: data_dir.to_path_buf(),
                        stored,
                        configured: node_id,
                    });
                }
                incarnation
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let incarnation = random_incarnation();
                write_atomically(
                    data_dir,
                    IDENTITY_FILE,
                    &format!("node_id={node_id}\nincarnation={incarnation:016x}\n"),
                )
                .map_err(io)?;
                tracing::info!(node_id, incarnation = %format!("{incarnation:016x}"), "raft: new node identity");
                incarnation
            }
            Err(e) => return Err(io(e)),
        };
        let peers_path = data_dir.join(PEERS_FILE);
        let peers = match std::fs::read_to_string(&peers_path) {
            Ok(text) => parse_peers(&text).ok_or_else(|| IdentityError::Corrupt {
                path: peers_path.clone(),
                reason: "expected `<id>=<incarnation hex>` lines".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            node_id,
            incarnation,
            peers_path,
            peers: Mutex::new(peers),
            refused: Mutex::new(None),
            logged: Mutex::new(HashMap::new()),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// This node's stamp (the [`FROM_HEADER`] value).
    pub fn stamp(&self) -> Stamp {
        Stamp {
            id: self.node_id,
            incarnation: Some(self.incarnation),
        }
    }

    /// The stamp addressing peer `id` (the [`TO_HEADER`] value): with its incarnation when known.
    pub fn target(&self, id: u64) -> Stamp {
        Stamp {
            id,
            incarnation: self.lock().get(&id).copied(),
        }
    }

    /// Checks a request addressed to `to`: it must name this node, and this incarnation when it names one.
    /// A request for another incarnation of this id means this node's data was wiped or replaced: it is
    /// recorded, and [`Identity::problem`] reports it until the process restarts.
    pub fn check_addressed(&self, to: Stamp) -> Result<(), String> {
        if to.id != self.node_id {
            return Err(format!(
                "request for raft node {} reached node {} (a wrong address, or two nodes with one id)",
                to.id, self.node_id
            ));
        }
        match to.incarnation {
            Some(inc) if inc != self.incarnation => {
                let why = format!(
                    "the cluster knows raft node {} as incarnation {inc:016x}, but this node's data directory is \
                     incarnation {:016x}: it was wiped or replaced, so this node's vote and log are gone. Remove \
                     node {} from the cluster (`relay-miner raft remove`) and add this node under a new id",
                    self.node_id, self.incarnation, self.node_id
                );
                self.note_refused(&why);
                Err(why)
            }
            Some(_) => {
                // Addressed to this very incarnation: the cluster (re)admitted this data directory, e.g. after
                // `raft remove` and `add-learner` of the wiped node.
                self.refused.lock().unwrap_or_else(|e| e.into_inner()).take();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Checks a peer's stamp (from a request it sent or an answer it gave): its first incarnation is remembered
    /// (and persisted); another one later is refused.
    pub fn check_peer(&self, peer: Stamp) -> Result<(), String> {
        let Some(inc) = peer.incarnation else {
            return Ok(());
        };
        let mut peers = self.lock();
        match peers.get(&peer.id) {
            Some(known) if *known == inc => Ok(()),
            Some(known) => Err(format!(
                "raft node {} now answers as incarnation {inc:016x}, known as {known:016x}: its data directory was \
                 wiped or replaced and its votes and acknowledgements are refused. Remove node {} from the cluster \
                 and add it back under a new id",
                peer.id, peer.id
            )),
            None => {
                peers.insert(peer.id, inc);
                if let Err(e) = self.persist(&peers) {
                    // Kept in memory: refused on this run; after a restart the peer is learned again.
                    tracing::error!(error = %e, peer = peer.id, "raft: could not persist a peer's identity");
                }
                Ok(())
            }
        }
    }

    /// Every `id:incarnation` this node knows, itself first (the [`PEERS_HEADER`] value).
    pub fn advertised(&self) -> String {
        let peers = self.lock();
        let mut out = self.stamp().render();
        let mut sorted: Vec<_> = peers.iter().filter(|(id, _)| **id != self.node_id).collect();
        sorted.sort();
        for (id, inc) in sorted {
            out.push(',');
            out.push_str(
                &Stamp {
                    id: *id,
                    incarnation: Some(*inc),
                }
                .render(),
            );
        }
        out
    }

    /// Adopts the incarnations a peer advertised ([`PEERS_HEADER`]) for ids this node does not know yet (a known
    /// one is kept: the first seen is the one the cluster agreed with). Malformed entries are ignored.
    pub fn adopt(&self, advertised: &str) {
        let mut peers = self.lock();
        let mut changed = false;
        for stamp in advertised.split(',').filter_map(Stamp::parse) {
            if let (Some(inc), false) = (stamp.incarnation, stamp.id == self.node_id)
                && !peers.contains_key(&stamp.id)
            {
                peers.insert(stamp.id, inc);
                changed = true;
            }
        }
        if changed && let Err(e) = self.persist(&peers) {
            tracing::error!(error = %e, "raft: could not persist the peers' identities");
        }
    }

    /// Adopts the incarnations the current raft leader advertised, replacing known ones that differ (see
    /// `server`: called once the leader's append was accepted). Its own id is never taken from a peer.
    pub fn adopt_from_leader(&self, advertised: &str) {
        let mut peers = self.lock();
        let mut changed = false;
        for stamp in advertised.split(',').filter_map(Stamp::parse) {
            if let (Some(inc), false) = (stamp.incarnation, stamp.id == self.node_id)
                && peers.insert(stamp.id, inc) != Some(inc)
            {
                changed = true;
            }
        }
        if changed && let Err(e) = self.persist(&peers) {
            tracing::error!(error = %e, "raft: could not persist the peers' identities");
        }
    }

    /// Forgets peers that are not in `members` (removed from the cluster: their id may be reused).
    pub fn forget_absent(&self, members: &BTreeSet<u64>) {
        let mut peers = self.lock();
        let before = peers.len();
        peers.retain(|id, _| members.contains(id));
        if peers.len() != before
            && let Err(e) = self.persist(&peers)
        {
            tracing::error!(error = %e, "raft: could not persist the peers' identities");
        }
    }

    /// Records that a peer refused this node as another incarnation of its id (until a request addressed to this
    /// incarnation arrives: the node was re-admitted).
    pub fn note_refused(&self, why: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.is_none() {
            tracing::error!("raft: {why}");
        }
        *refused = Some(why.to_owned());
    }

    /// Whether a refusal of `peer` is to be logged now (once a minute per peer: heartbeats are refused 20 times a
    /// second).
    pub fn should_log_refusal(&self, peer: u64) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match logged.get(&peer) {
            Some(at) if now.duration_since(*at) < std::time::Duration::from_secs(60) => false,
            _ => {
                logged.insert(peer, now);
                true
            }
        }
    }

    /// Why this node must not serve, if a peer refused its identity.
    pub fn problem(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, peers: &HashMap<u64, u64>) -> std::io::Result<()> {
        let mut sorted: Vec<_> = peers.iter().collect();
        sorted.sort();
        let text: String = sorted.iter().map(|(id, inc)| format!("{id}={inc:016x}\n")).collect();
        let dir = self.peers_path.parent().unwrap_or(Path::new("."));
        write_atomically(dir, PEERS_FILE, &text)
    }
}

fn parse_identity(text: &str) -> Option<(u64, u64)> {
    let mut id = None;
    let mut inc = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=')? {
            ("node_id", v) => id = Some(v.parse().ok()?),
            ("incarnation", v) => inc = Some(u64::from_str_radix(v, 16).ok()?),
            _ => return None,
        }
    }
    Some((id?, inc?))
}

fn parse_peers(text: &str) -> Option<HashMap<u64, u64>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (id, inc) = line.split_once('=')?;
            Some((id.parse().ok()?, u64::from_str_radix(inc, 16).ok()?))
        })
        .collect()
}

/// A random nonzero 64-bit value (std's per-process random hash keys, the clock and the pid mixed): unique per
/// data directory in practice, which is all it must be (it is no secret).
fn random_incarnation() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// Writes `name` in `dir` through a synced temporary file and a rename, then syncs the directory.
pub(crate) fn write_atomically(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_identity_survives_a_restart_and_a_wipe_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::open(dir.path(), 3).unwrap();
        let again = Identity::open(dir.path(), 3).unwrap();
        assert_eq!(first.incarnation(), again.incarnation());
        std::fs::remove_dir_all(dir.path()).unwrap();
        let wiped = Identity::open(dir.path(), 3).unwrap();
        assert_ne!(first.incarnation(), wiped.incarnation());
    }

    #[test]
    fn a_directory_of_another_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::open(dir.path(), 1).unwrap();
        let err = Identity::open(dir.path(), 2).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::OtherNode {
                    stored: 1,
                    configured: 2,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(dir.path().join(IDENTITY_FILE), "garbage").unwrap();
        assert!(matches!(
            Identity::open(dir.path(), 1).unwrap_err(),
            IdentityError::Corrupt { .. }
        ));
    }

    #[test]
    fn peers_are_learned_once_persisted_and_another_incarnation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::open(dir.path(), 1).unwrap();
        let peer = Stamp {
            id: 2,
            incarnation: Some(0xabc),
        };
        assert_eq!(me.target(2).incarnation, None);
        me.check_peer(peer).unwrap();
        me.check_peer(peer).unwrap();
        assert_eq!(me.target(2).render(), "2:0000000000000abc");
        let wiped = Stamp {
            id: 2,
            incarnation: Some(0xdef),
        };
        assert!(me.check_peer(wiped).unwrap_err().contains("wiped"));
        // A peer of an older version (no incarnation) is not checked.
        me.check_peer(Stamp {
            id: 2,
            incarnation: None,
        })
        .unwrap();
        // Remembered across a restart.
        let me = Identity::open(dir.path(), 1).unwrap();
        assert!(me.check_peer(wiped).is_err());
        // Removed from the membership: forgotten, so the id can be reused.
        me.forget_absent(&BTreeSet::from([1, 3]));
        me.check_peer(wiped).unwrap();
        let me = Identity::open(dir.path(), 1).unwrap();
        assert_eq!(me.target(2).incarnation, Some(0xdef));
    }

    #[test]
    fn a_request_for_another_incarnation_or_node_is_refused_and_marks_this_node() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::open(dir.path(), 3).unwrap();
        me.check_addressed(Stamp {
            id: 3,
            incarnation: None,
        })
        .unwrap();
        me.check_addressed(me.stamp()).unwrap();
        assert!(me.problem().is_none());
        let err = me
            .check_addressed(Stamp {
                id: 4,
                incarnation: None,
            })
            .unwrap_err();
        assert!(err.contains("reached node 3"), "{err}");
        assert!(
            me.problem().is_none(),
            "a misrouted request says nothing about this node's data"
        );
        let old = Stamp {
            id: 3,
            incarnation: Some(me.incarnation() ^ 1),
        };
        assert!(me.check_addressed(old).is_err());
        assert!(me.problem().unwrap().contains("wiped or replaced"));
        // Re-admitted (removed and added again): requests name this incarnation.
        me.check_addressed(me.stamp()).unwrap();
        assert!(me.problem().is_none());
    }

    #[test]
    fn advertised_incarnations_are_adopted_only_for_unknown_ids() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Identity::open(a.path(), 1).unwrap();
        let follower = Identity::open(b.path(), 2).unwrap();
        leader
            .check_peer(Stamp {
                id: 3,
                incarnation: Some(0x33),
            })
            .unwrap();
        follower
            .check_peer(Stamp {
                id: 4,
                incarnation: Some(0x44),
            })
            .unwrap();
        let advertised = format!("{},4:99,2:1234,garbage", leader.advertised());
        follower.adopt(&advertised);
        assert_eq!(follower.target(1).incarnation, Some(leader.incarnation()));
        assert_eq!(follower.target(3).incarnation, Some(0x33));
        assert_eq!(follower.target(4).incarnation, Some(0x44), "a known peer is kept");
        assert_eq!(follower.target(2).incarnation, None, "its own id is not a peer");
        // Persisted.
        let follower = Identity::open(b.path(), 2).unwrap();
        assert_eq!(follower.target(3).incarnation, Some(0x33));
    }

    #[test]
    fn the_leaders_view_replaces_a_stale_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::open(dir.path(), 2).unwrap();
        me.check_peer(Stamp {
            id: 3,
            incarnation: Some(0x30),
        })
        .unwrap();
        me.adopt("3:31");
        assert_eq!(
            me.target(3).incarnation,
            Some(0x30),
            "a peer's advertisement does not replace"
        );
        me.adopt_from_leader(&format!("1:11,2:{:x},3:31", me.incarnation() ^ 1));
        assert_eq!(me.target(3).incarnation, Some(0x31), "the leader's does");
        assert_eq!(me.target(1).incarnation, Some(0x11));
        assert_eq!(me.target(2).incarnation, None, "its own id is not taken from a peer");
        let me = Identity::open(dir.path(), 2).unwrap();
        assert_eq!(me.target(3).incarnation, Some(0x31), "persisted");
    }

    #[test]
    fn stamps_round_trip() {
        for s in [
            Stamp {
                id: 7,
                incarnation: None,
            },
            Stamp {
                id: 7,
                incarnation: Some(u64::MAX),
            },
        ] {
            assert_eq!(Stamp::parse(&s.render()), Some(s));
        }
        assert_eq!(Stamp::parse("x:1"), None);
        assert_eq!(Stamp::parse("1:zz"), None);
    }
}
