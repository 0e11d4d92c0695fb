//! Raft features: what each node can apply, as it advertises it, and the version gate of the entries that need
//! a feature (write sets, [`crate::types::Op::WriteSet`]; increments applied at most once, `kv-once`,
//! [`crate::types::Op::KvIncrementOnce`], gated the same way: while a member lacks it, `increment_once` answers
//! `StorageError::Conflict` having proposed nothing, and the relay meter sends new deltas with plain increments
//! and keeps retrying the one whose answer it lost).
//!
//! A node of an older build cannot decode an entry of a newer op: its log store or state machine fails on it and
//! openraft stops that node for good, so proposing such an entry while one member runs an older build loses that
//! member (during a rolling upgrade, every member that is not upgraded yet). The gate:
//!
//! - Every raft RPC request (append, vote, pre-vote, snapshot chunk) and every answer to one carries
//!   [`FEATURES_HEADER`]: the features the sending (or answering) node can apply, comma-separated names
//!   (`x-raft-features: write-set`), next to the identity headers of [`crate::identity`]. No header means a build
//!   without any feature: older builds send none. Unknown names (a newer build's) are ignored.
//! - Each node remembers, per peer, what the peer last advertised to it, tagged with the raft term it was heard
//!   in: from the answers to its own RPCs (absent header: nothing) and from requests whose `x-raft-from` names
//!   their sender. A failed exchange (connection refused or reset: the peer is down or restarting, maybe into
//!   another build) forgets the peer, so a peer is always re-learned after a restart of either side (the table
//!   lives in memory). Only what was heard in the current term counts: a new leader uses only what its peers
//!   advertised since its election (its answers), never what it heard as a follower, when a peer may since have
//!   restarted unseen.
//! - The leader proposes an [`crate::types::Op::WriteSet`] only while every member of its current membership
//!   (voters, learners, both sides of a joint configuration, itself included) is known to have advertised
//!   `write-set` ([`Features::write_set_gate`], evaluated at each proposal, so a membership change counts at once).
//!   Otherwise the write set is refused before anything is proposed, as `StorageError::Conflict` (nothing
//!   written): the caller's one-by-one path, which it already takes for a record conflict, writes the same parts
//!   as ops every build applies (see `storage::WriteSets::write`). A follower forwards a write set only when the
//!   leader advertised `write-set` to it, and the leader checks again.
//! - Falling back is logged once at WARN per change of the members lacking the feature (naming them; at DEBUG
//!   within a second of a new term while the members lacking it are only not heard from yet: the election
//!   window), and the return of write sets at INFO; `ha_raft_write_sets_enabled` (1 on a leader proposing write sets) and
//!   `relay-miner raft status` show the state.
//!
//! While a member is down or restarting it is unknown, so write sets are off until it answers again: a member
//! that comes back as an older build (rolled back) must not find write sets proposed during its absence.
//!
//! What the gate does not cover: entries proposed before a member stopped advertising the feature. A node
//! *rolled back* to an older build may hold write-set entries in its log (or be sent those proposed while it
//! still advertised the feature), which that build cannot read; a node of an older build *added* as a learner is
//! sent those still in the leader's log. Upgrading (older builds to this one, one node at a time, in any order)
//! is covered: a member that never advertised `write-set` is never sent one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Header carrying the features the sending (or answering) node can apply, comma-separated.
pub const FEATURES_HEADER: &str = "x-raft-features";

/// A set of raft features (what entries a node can apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeatureSet(u32);

/// Every feature a build may know: bit and header name.
const NAMES: [(u32, &str); 2] = [(1, "write-set"), (2, "kv-once")];

impl FeatureSet {
    /// No feature: what a node of an older build advertises (it sends no [`FEATURES_HEADER`]).
    pub const NONE: Self = Self(0);
    /// Write sets: [`crate::types::Op::WriteSet`] entries.
    pub const WRITE_SET: Self = Self(1);
    /// Increments applied at most once: [`crate::types::Op::KvIncrementOnce`] entries.
    pub const KV_ONCE: Self = Self(2);
    /// Everything this build can apply.
    pub const CURRENT: Self = Self(Self::WRITE_SET.0 | Self::KV_ONCE.0);

    /// True when every feature of `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The feature names, in a fixed order.
    pub fn names(self) -> Vec<String> {
        NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| (*name).to_owned())
            .collect()
    }

    /// The [`FEATURES_HEADER`] value (`None` for the empty set: no header, as an older build).
    pub fn header(self) -> Option<String> {
        let names = self.names();
        (!names.is_empty()).then(|| names.join(","))
    }

    /// Parses a [`FEATURES_HEADER`] value (`None`: no header, the empty set); unknown names are ignored.
    pub fn parse(header: Option<&str>) -> Self {
        let mut bits = 0;
        for name in header.unwrap_or_default().split(',').map(str::trim) {
            if let Some((bit, _)) = NAMES.iter().find(|(_, n)| *n == name) {
                bits |= bit;
            }
        }
        Self(bits)
    }
}

impl std::fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.header() {
            Some(h) => f.write_str(&h),
            None => f.write_str("none"),
        }
    }
}

/// What one peer advertised, and in which term.
#[derive(Debug, Clone, Copy)]
struct Heard {
    features: FeatureSet,
    term: u64,
}

/// Why the gate is closed: the members lacking the feature, each with what it advertised (`None`: nothing heard
/// from it in the current term).
pub type Lacking = Vec<(u64, Option<FeatureSet>)>;

/// This node's features and what its peers advertised to it.
#[derive(Debug)]
pub struct Features {
    node_id: u64,
    own: FeatureSet,
    /// The current raft term, as this node last saw it in its metrics (tags what is heard).
    term: AtomicU64,
    peers: Mutex<HashMap<u64, Heard>>,
    /// When this node first saw the current term.
    term_since: Mutex<Instant>,
    /// The members lacking write sets last logged at WARN (`None`: write sets on, or nothing logged yet).
    warned: Mutex<Option<Vec<u64>>>,
}

/// Right after an election the leader has not heard every member's answer yet: write sets refused then only
/// for members not heard from are logged at DEBUG, not WARN (every failover would WARN otherwise).
const ELECTION_GRACE: Duration = Duration::from_secs(1);

impl Features {
    /// Node `node_id`, advertising (and proposing entries of) `own`.
    pub fn new(node_id: u64, own: FeatureSet) -> Self {
        Self {
            node_id,
            own,
            term: AtomicU64::new(0),
            peers: Mutex::new(HashMap::new()),
            term_since: Mutex::new(Instant::now()),
            warned: Mutex::new(None),
        }
    }

    /// What this node advertises.
    pub fn own(&self) -> FeatureSet {
        self.own
    }

    /// Records the current raft term (it only grows): what is heard from now on is tagged with it.
    pub fn set_term(&self, term: u64) {
        if self.term.fetch_max(term, Ordering::Relaxed) < term {
            *self.term_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Heard>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what `peer` advertised in a request or an answer: the [`FEATURES_HEADER`] value, `None` when the
    /// message had none.
    pub fn heard(&self, peer: u64, header: Option<&str>) {
        if peer == self.node_id {
            return;
        }
        let heard = Heard {
            features: FeatureSet::parse(header),
            term: self.term.load(Ordering::Relaxed),
        };
        self.lock().insert(peer, heard);
    }

    /// Forgets what `peer` advertised: an exchange with it failed (down or restarting, maybe into another build).
    pub fn forget(&self, peer: u64) {
        self.lock().remove(&peer);
    }

    /// What `peer` advertised in raft term `term` (this node's own features for its own id).
    pub fn advertised(&self, peer: u64, term: u64) -> Option<FeatureSet> {
        if peer == self.node_id {
            return Some(self.own);
        }
        self.lock().get(&peer).filter(|h| h.term == term).map(|h| h.features)
    }

    /// The members (this node included when it is one) not known to have advertised `feature` in raft term
    /// `term` (the current one, read from the raft metrics by the caller: what is heard is tagged with the term
    /// this node last saw, which may lag, never lead, so an answer heard right after an election may count
    /// only from the next one).
    pub fn lacking(&self, members: impl IntoIterator<Item = u64>, feature: FeatureSet, term: u64) -> Lacking {
        members
            .into_iter()
            .filter_map(|id| {
                let advertised = self.advertised(id, term);
                (!advertised.is_some_and(|f| f.contains(feature))).then_some((id, advertised))
            })
            .collect()
    }

    /// The write-set gate given the members `lacking` it ([`Features::lacking`]): `Ok` when none does. Logs a
    /// change of state: WARN naming the members lacking the feature when they change, INFO when write sets are
    /// back on.
    pub fn write_set_gate(&self, lacking: &Lacking) -> Result<(), String> {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if lacking.is_empty() {
            if warned.take().is_some() {
                tracing::info!("raft write sets on: every member advertises write-set; a write set is one entry again");
            }
            return Ok(());
        }
        let why = describe(lacking);
        let ids: Vec<u64> = lacking.iter().map(|(id, _)| *id).collect();
        let electing = lacking.iter().all(|(_, f)| f.is_none())
            && self.term_since.lock().unwrap_or_else(|p| p.into_inner()).elapsed() < ELECTION_GRACE;
        if electing {
            tracing::debug!(lacking = ?ids, "raft write set written one entry per part right after an election ({why})");
        } else if warned.as_ref() != Some(&ids) {
            tracing::warn!(
                lacking = ?ids,
                "raft write sets off ({why}): each write set (ingest batch, record set) is written one entry per \
                 part until every member advertises write-set (upgrade a member of an older build; one not heard \
                 from is down, restarting or cut off)"
            );
            *warned = Some(ids);
        }
        Err(format!("raft write sets off: {why}"))
    }
}

/// "node 3 advertises none, node 2 not heard from in this term".
pub fn describe(lacking: &Lacking) -> String {
    lacking
        .iter()
        .map(|(id, f)| match f {
            Some(f) => format!("node {id} advertises {f} (an older build)"),
            None => format!("node {id} not heard from in this term"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_round_trip_and_unknown_names_are_ignored() {
        assert_eq!(FeatureSet::CURRENT.header().as_deref(), Some("write-set,kv-once"));
        assert_eq!(FeatureSet::parse(Some("write-set,kv-once")), FeatureSet::CURRENT);
        assert_eq!(FeatureSet::parse(Some("kv-once")), FeatureSet::KV_ONCE);
        assert_eq!(FeatureSet::NONE.header(), None);
        assert_eq!(FeatureSet::parse(Some("write-set")), FeatureSet::WRITE_SET);
        assert_eq!(FeatureSet::parse(Some("hyper-drive, write-set")), FeatureSet::WRITE_SET);
        assert_eq!(FeatureSet::parse(Some("hyper-drive")), FeatureSet::NONE);
        assert_eq!(FeatureSet::parse(None), FeatureSet::NONE);
        assert_eq!(FeatureSet::NONE.to_string(), "none");
    }

    #[test]
    fn the_gate_needs_every_member_heard_in_this_term() {
        let f = Features::new(1, FeatureSet::CURRENT);
        let ws = FeatureSet::WRITE_SET;
        f.set_term(3);
        let members = [1, 2, 3];
        assert_eq!(
            f.lacking(members, ws, 3),
            vec![(2, None), (3, None)],
            "unknown is not supported"
        );
        f.heard(2, Some("write-set"));
        f.heard(3, None);
        let lacking = f.lacking(members, ws, 3);
        assert_eq!(lacking, vec![(3, Some(FeatureSet::NONE))]);
        assert!(
            f.write_set_gate(&lacking)
                .unwrap_err()
                .contains("node 3 advertises none")
        );
        f.heard(3, Some("write-set"));
        f.write_set_gate(&f.lacking(members, ws, 3)).unwrap();
        // A new term: nothing heard before it counts, even while this node's tag still lags.
        assert_eq!(f.lacking(members, ws, 4).len(), 2);
        f.set_term(4);
        f.set_term(2);
        f.heard(2, Some("write-set"));
        f.heard(3, Some("write-set"));
        assert!(f.lacking(members, ws, 4).is_empty());
        // A failed exchange forgets the peer; a new member is unknown.
        f.forget(3);
        assert_eq!(f.lacking(members, ws, 4), vec![(3, None)]);
        f.heard(3, Some("write-set"));
        assert_eq!(f.lacking([1, 2, 3, 4], ws, 4), vec![(4, None)]);
        // A node advertising none never proposes write sets itself.
        let old = Features::new(1, FeatureSet::NONE);
        assert_eq!(old.lacking([1], ws, 4), vec![(1, Some(FeatureSet::NONE))]);
    }
}
