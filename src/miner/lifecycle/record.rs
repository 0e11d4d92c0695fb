//! The session record the engine keeps and the driver persists (one per supplier and session): its identity,
//! its windows, its state and what was sent, confirmed and counted for it. Apart from the engine, so what is
//! stored (and must keep decoding across versions: every field added has a serde default) reads in one place.

use serde::{Deserialize, Serialize};
/// Identity of a session's trie: trees, records and logs are keyed by (supplier, session) (lessons.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    /// Supplier operator address.
    pub supplier: String,
    /// Session id.
    pub session_id: String,
}

/// The heights that govern one session, computed by the driver from the shared params at the session end height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Session start height.
    #[serde(default)]
    pub session_start: i64,
    /// Session end height.
    pub session_end: i64,
    /// First height a claim may be included at.
    pub claim_open: i64,
    /// Last height a claim may be included at.
    pub claim_close: i64,
    /// First height a proof may be included at; the proof seed block is `proof_open − 1` (§5.2).
    pub proof_open: i64,
    /// Last height a proof may be included at.
    pub proof_close: i64,
    /// Height after which the chain has settled (or expired) the claim.
    pub settlement: i64,
}

impl Schedule {
    /// The block whose hash seeds the proof path and the proof lottery (§5.2, §6.3): exactly `proof_open − 1`.
    pub fn proof_seed_height(&self) -> i64 {
        self.proof_open - 1
    }
}

/// Why revenue was lost (label values of `ha_miner_upokt_lost_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LossReason {
    /// The claim window closed without our claim on chain, and no claim of ours ever reached a node: none was
    /// due in time (no leader, a miner too far behind), or every broadcast failed (node unreachable).
    ClaimWindowMissed,
    /// A node took our claim (accepted into its mempool, or refused it at check time), but none was on chain
    /// when the window closed (rejected, or never included in a block).
    ClaimNotIncluded,
    /// A required proof's window closed without a validated proof, and no proof of ours ever reached a node.
    ProofWindowMissed,
    /// A node took our proof, but none was validated when the window closed (rejected or never included).
    ProofNotIncluded,
    /// The chain's settlement of our claim failed and it discarded the claim (poktroll `EventClaimDiscarded`):
    /// not paid, though nothing on our side was wrong.
    SettlementDiscarded,
}

impl LossReason {
    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClaimWindowMissed => "claim_window_missed",
            Self::ClaimNotIncluded => "claim_not_included",
            Self::ProofWindowMissed => "proof_window_missed",
            Self::ProofNotIncluded => "proof_not_included",
            Self::SettlementDiscarded => "settlement_discarded",
        }
    }
}

/// Lifecycle state of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Relays are being mined into the trie.
    Active,
    /// The claim has been sent (or is due) and awaits inclusion.
    Claiming,
    /// The claim is on chain; the proof requirement is not known yet.
    Claimed,
    /// A proof is required and has been sent (or is due).
    Proving,
    /// The required proof is validated on chain.
    Proved,
    /// The claim is on chain and no proof is required.
    Settled,
    /// No relays: nothing to claim; or relays whose claim was not worth its cost
    /// ([`Event::ClaimSkipped`](super::Event::ClaimSkipped)). Never counted as a failure.
    Discarded,
    /// Revenue lost, with the reason.
    Expired(LossReason),
}

impl State {
    /// Stable name used for storage listing and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Claiming => "claiming",
            Self::Claimed => "claimed",
            Self::Proving => "proving",
            Self::Proved => "proved",
            Self::Settled => "settled",
            Self::Discarded => "discarded",
            Self::Expired(_) => "expired",
        }
    }

    /// Whether nothing more will happen to the session but pruning.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Proved | Self::Settled | Self::Discarded | Self::Expired(_))
    }
}

/// What the engine remembers per session; persisted by the driver as the session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Which session.
    pub key: SessionKey,
    /// Service id (metrics label).
    pub service_id: String,
    /// Application of the session (with the schedule, rebuilds the session header after a restart).
    #[serde(default)]
    pub application_address: String,
    /// Its heights.
    pub schedule: Schedule,
    /// Current state.
    pub state: State,
    /// Relays ingested into the trie.
    pub relays: u64,
    /// Compute units ingested (sum of leaf weights).
    pub compute_units: u64,
    /// Heights at which a claim tx was sent (recorded before the broadcast; a send that no node took or that a
    /// node refused before its mempool, a `TxOutcome::Retryable`, `NotSent` or `Refused`, is taken back).
    pub claim_sent_at: Vec<i64>,
    /// Heights at which a proof tx was sent (the same).
    pub proof_sent_at: Vec<i64>,
    /// Whether a node answered one of our claim broadcasts (accepted or refused it): tells a claim lost on
    /// chain (`claim_not_included`) from one that never left this miner (`claim_window_missed`). Records
    /// written before this field existed read as `true`, the label they would have had if they sent anything.
    #[serde(default = "reached_before_it_was_recorded")]
    pub claim_reached_node: bool,
    /// The same for proof broadcasts.
    #[serde(default = "reached_before_it_was_recorded")]
    pub proof_reached_node: bool,
    /// Whether a proof is required, once known.
    pub proof_required: Option<bool>,
    /// Height at which the last chain query (lookup or proof requirement) was requested: at most one per block,
    /// and a lost answer is simply asked again at the next block.
    pub queried_at: Option<i64>,
    /// The session's state has been pruned from storage.
    pub pruned: bool,
    /// (relays, compute units) covered by the claim on chain plus those already recorded as unclaimed; set once the
    /// claim is confirmed ([`Event::ClaimOnChain`](super::Event::ClaimOnChain)). Relays beyond it reached the trie
    /// after the claim's root was built (a relay validated in the grace period is appended only when the backend
    /// answered) and are recorded once with [`Command::RecordUnclaimed`](super::Command::RecordUnclaimed).
    #[serde(default)]
    pub accounted: Option<(u64, u64)>,
    /// (relays, compute units) of the claim on chain (its root's count and sum), once a lookup found it: what
    /// a failed proof loses. Relays beyond it are recorded apart (`RecordUnclaimed`), so a proof-stage loss
    /// must not count them again. `None` in records written before the field existed (their loss counts the
    /// trie's totals, as it did then).
    #[serde(default)]
    pub claimed: Option<(u64, u64)>,
    /// A claim of this session's trie may have reached the chain: from then on the trie is frozen (module
    /// `driver::ingest`). Set by the outcome of every claim send but one that certainly never left
    /// (`TxOutcome::NotSent`), and never taken back: a send whose outcome is ambiguous (a transport error after
    /// the node may have admitted the tx) is taken back as `Retryable`, but the claim may be on chain, and a trie
    /// that changed after it could no longer prove it (§5.4 step 17). While a send is in flight its
    /// `claim_sent_at` entry (stored before the tx is built) freezes the trie, also across a crash.
    #[serde(default)]
    pub claim_built: bool,
    /// Set when the session was pruned (its tries and relay-log entries deleted): the record is then the session's
    /// *tombstone*, kept until this height (see
    /// [`EngineConfig::tombstone_blocks`](super::EngineConfig::tombstone_blocks)) so that a relay of the session
    /// reaching the log after the prune is acknowledged without being mined into a new record. Never serialized while
    /// `None`: live records keep the format older binaries write and read (an older binary reads a tombstone as a
    /// record persisted as pruned, prunes it again and deletes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_after: Option<i64>,
    /// The chain's settlement of this session's claim was read (or judged without its events). A session the miner
    /// decided "no proof required" is `Settled` before the chain settles it, and the chain decides again at settlement
    /// with its live proof params (§6.3): it is looked up past its settlement height until a lookup answers
    /// ([`SETTLED_LOOKUP_BLOCKS`](super::SETTLED_LOOKUP_BLOCKS)) before it is pruned, so a claim the chain expired is
    /// counted as lost, not as paid; also set when the settlement is given up as unknown
    /// ([`Self::settlement_unknown`]). Never serialized while `false` (the format older binaries write and read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settlement_seen: bool,
    /// The first height past `claim_close` at which a lookup said the claim is not on chain (state `Claiming`). The
    /// claim lookup reads the node's latest state while the height comes from another call, so behind a load-balanced
    /// or lagging endpoint a claim included at `claim_close` can read as absent one block later. Expired and pruned on
    /// that single answer, a claim that was on chain could never be proven when a proof is then required (a slash) and
    /// would be counted lost though paid. So the session is expired only when a lookup at a later height
    /// ([`CLAIM_ABSENT_CONFIRMATIONS`](super::CLAIM_ABSENT_CONFIRMATIONS)) says "absent" again. Never serialized while
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_absent_at: Option<i64>,
    /// The same for a required proof (state `Proving`): the first height past `proof_close` at which a lookup
    /// found no validated proof. The chain settles and deletes the claim at the end of block `proof_close` (the
    /// settlement height, §3), so past it a current node has no claim and the lookup reads the settlement; a node
    /// that still shows the claim with its proof unvalidated is behind, and a proof included at `proof_close`
    /// (validated in that block) would have been counted lost though paid. Nothing can be sent past the window,
    /// so this only keeps a false loss out of the metrics. Never serialized while `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_absent_at: Option<i64>,
    /// Set on a tombstone whose session's settlement is yet to be counted in the settlement metrics (module
    /// `driver::settled`); cleared (the tombstone written again) once it is counted or given up. A restarted
    /// process or a new leader restoring a tombstone with it set watches the settlement again. The engine never
    /// sets it. Never serialized while `false` (the format older binaries write and read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_settlement: bool,
    /// Lookups asked past the settlement height for a session decided "no proof required" whose settlement is not
    /// read yet ([`Self::settlement_seen`]): only an answer ends the wait (a lookup that failed, or that got no
    /// answer, is asked again at the next block), and this bounds it across restarts
    /// ([`SETTLED_LOOKUP_BLOCKS`](super::SETTLED_LOOKUP_BLOCKS)). Never serialized while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settlement_lookups: u32,
    /// The chain never told what its settlement did with this session's claim (decided "no proof required"): the
    /// lookups past the settlement height failed or found no settlement event for as long as they are asked
    /// ([`SETTLED_LOOKUP_BLOCKS`](super::SETTLED_LOOKUP_BLOCKS), [`SETTLEMENT_WAIT_BLOCKS`](super::SETTLEMENT_WAIT_BLOCKS);
    /// block results pruned or discarded by the node, a node unreachable all that time). The session ends neither
    /// paid nor lost, reported once as such ([`Command::RecordSettlementUnknown`](super::Command::RecordSettlementUnknown)).
    /// Never serialized while `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settlement_unknown: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SessionRecord {
    /// The record of a session first seen with relays ingested: `Active`, nothing sent, nothing counted (its
    /// relays and compute units are raised by the ingest that created it).
    pub fn new(key: SessionKey, service_id: String, application_address: String, schedule: Schedule) -> Self {
        Self {
            key,
            service_id,
            application_address,
            schedule,
            state: State::Active,
            relays: 0,
            compute_units: 0,
            claim_sent_at: Vec::new(),
            proof_sent_at: Vec::new(),
            claim_reached_node: false,
            proof_reached_node: false,
            proof_required: None,
            queried_at: None,
            pruned: false,
            accounted: None,
            claimed: None,
            claim_built: false,
            forget_after: None,
            settlement_seen: false,
            claim_absent_at: None,
            proof_absent_at: None,
            awaiting_settlement: false,
            settlement_lookups: 0,
            settlement_unknown: false,
        }
    }

    /// Whether the session's trie is frozen: a claim may be on chain (`claim_built`), a send is recorded (in
    /// flight, or confirmed and not taken back), or the state is past `Claiming` (also covers records written
    /// before `claim_built` existed).
    pub fn is_claim_built(&self) -> bool {
        self.claim_built || !self.claim_sent_at.is_empty() || !matches!(self.state, State::Active | State::Claiming)
    }

    /// Whether no claim of the session can be on chain at `height`: `Claiming`, no claim send left
    /// ([`Self::claim_built`]) and none recorded but the one due at this height (a send recorded earlier may have
    /// left before a crash).
    pub fn claim_never_left(&self, height: i64) -> bool {
        self.state == State::Claiming && !self.claim_built && self.claim_sent_at.iter().all(|&at| at == height)
    }
}

fn reached_before_it_was_recorded() -> bool {
    true
}
