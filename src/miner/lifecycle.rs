//! PURE session lifecycle engine (issue 7): events in, commands out, no clocks, no IO.
//!
//! Every (supplier, session) the miner has relays for is driven through
//! `Active → Claiming → Claimed → Proving → Proved → (pruned)`, or `Claimed → Settled` when no proof is required,
//! or `Discarded` (zero relays, or a claim the driver found not worth its cost, [`Event::ClaimSkipped`]: nothing
//! claimed, not a failure), or `Expired { reason }` (real loss, recorded once). The thin async
//! driver feeds [`Event`]s (new blocks, relays ingested, tx outcomes, on-chain lookups, leadership changes) and
//! executes the [`Command`]s returned; it persists every session whose record changed (see [`Step::changed`]), so a
//! restarted or newly elected miner continues where the last one stopped.
//!
//! Timing (spec §3, §5.2, §6): a claim lands in `[claim_open, claim_close]` and a proof in `[proof_open,
//! proof_close]`, where the tx's height is the including block (≥ current + 1). Claims are sent once the current
//! height reached `claim_open` plus a delay (relays keep arriving until `claim_open − 1`, spec §2.6.5, and reach
//! the log up to a backend timeout later; [`EngineConfig::claim_delay_blocks`]) and no later than
//! `claim_close − buffer`; proofs once the seed block `proof_open − 1` exists and no later than `proof_close −
//! buffer`. A submission not confirmed on chain is re-sent once inside its window (lessons.md: mempool-only txs).
//! Before a session is recorded as lost the engine asks the driver to look the claim/proof up on chain, so an HA
//! conflict (another instance already submitted) is never counted as a loss; a claim is lost only when lookups at
//! two heights past its window found it absent (one answer may come from a node a block behind,
//! [`SessionRecord::claim_absent_at`]). Only the leader submits. The chain
//! deletes a claim when it settles it (end of block `proof_close`, §3); from then on the lookup answers with the
//! settlement itself ([`Event::Settled`], read from that block's events), which ends the session as paid or
//! lost whatever state the miner had it in.
//!
//! What happened to a session is reported by commands the engine emits once, in the step that moves it
//! ([`Command::is_report`]): a loss, a discard, a claim skipped as not worth its cost, relays after the claim, a
//! claim confirmed on chain, a proof found required or validated. The driver runs them once that step's record
//! is stored, so a change that a deposed leader could not store is reported by whoever moves the stored record
//! next, once.
//!
//! A relay validated in the grace period is appended once the backend answered, so it can still reach the trie
//! after the claim's root was built. Once the claim is confirmed the engine knows what it covers
//! ([`Event::ClaimOnChain`]); whatever the trie holds beyond that is recorded as lost once
//! ([`Command::RecordUnclaimed`]).
//!
//! Pruning deletes a session's tries and relay-log entries but leaves a *tombstone*: its record, marked with
//! [`SessionRecord::forget_after`], persisted like any record and kept for [`EngineConfig::tombstone_blocks`]
//! after the later of the prune and the settlement height. A relay of a tombstoned session that reaches the log
//! after the prune (at-least-once redelivery, a relayer that lags or appends late, a Go relayer's entry
//! `trim_session` cannot match) is acknowledged and not mined: mined, it would start a new record that runs
//! the lifecycle again, is counted lost a second time (or confirmed and counted claimed a second time from the
//! settlement events), or has a proof built from a trie that is not the claim's. Only then is the tombstone
//! deleted ([`Command::Forget`]). A session the miner never had a record of is not affected: its relays start
//! a record as ever (and are counted lost when its windows have passed). A discarded session leaves no
//! tombstone: none of its relays was paid or counted.

use std::collections::BTreeMap;

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
    /// No relays: nothing to claim; or relays whose claim was not worth its cost ([`Event::ClaimSkipped`]).
    /// Never counted as a failure.
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
    /// (relays, compute units) covered by the claim on chain plus those already recorded as unclaimed; set once
    /// the claim is confirmed ([`Event::ClaimOnChain`]). Relays beyond it reached the trie after the claim's root
    /// was built (a relay validated in the grace period is appended only when the backend answered) and are
    /// recorded once with [`Command::RecordUnclaimed`].
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
    /// Set when the session was pruned (its tries and relay-log entries deleted): the record is then the
    /// session's *tombstone*, kept until this height (see [`EngineConfig::tombstone_blocks`]) so that a relay of
    /// the session reaching the log after the prune is acknowledged without being mined into a new record.
    /// Never serialized while `None`: live records keep the format older binaries write and read (an older
    /// binary reads a tombstone as a record persisted as pruned, prunes it again and deletes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_after: Option<i64>,
    /// The chain's settlement of this session's claim was read (or judged without its events). A session the
    /// miner decided "no proof required" is `Settled` before the chain settles it, and the chain decides again
    /// at settlement with its live proof params (§6.3): it is looked up once past its settlement height
    /// ([`SETTLED_LOOKUP_BLOCKS`]) before it is pruned, so a claim the chain expired is counted as lost, not as
    /// paid. Never serialized while `false` (the format older binaries write and read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settlement_seen: bool,
    /// The first height past `claim_close` at which a lookup said the claim is not on chain (state `Claiming`).
    /// The claim lookup reads the node's latest state while the height comes from another call, so behind a
    /// load-balanced or lagging endpoint a claim included at `claim_close` can read as absent one block later.
    /// Expired and pruned on that single answer, a claim that was on chain could never be proven when a proof is
    /// then required (a slash) and would be counted lost though paid. So the session is expired only when a lookup
    /// at a later height ([`CLAIM_ABSENT_CONFIRMATIONS`]) says "absent" again. Never serialized while `None`.
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
}

/// Blocks a session past its claim window stays `Claiming` after the first lookup that found its claim absent,
/// waiting for a lookup at a later height to say so again before it is expired and pruned
/// ([`SessionRecord::claim_absent_at`]; the same for a required proof past `proof_close`,
/// [`SessionRecord::proof_absent_at`]). One block: a fresh answer is asked at every block past the close
/// (`advance`), so this covers a node whose state lags the reported tip by one block, or a load balancer that
/// sent the first query to such a node. A node that lags by more than one block at two successive heights would
/// still expire the session: the cost of waiting longer is a loss found (and the session's data kept) later for
/// every claim that really did not land, and a lag of that size makes the claim lookups wrong elsewhere too
/// (confirmations, re-sends). Raising it only delays expiry; the answer "exists" ends the wait at any height.
pub const CLAIM_ABSENT_CONFIRMATIONS: i64 = 1;

/// Whether an answer "absent" at `height` does not confirm yet the first one (`first`, none yet: this is it), so
/// the session waits for a later lookup ([`CLAIM_ABSENT_CONFIRMATIONS`]).
fn absence_unconfirmed(first: Option<i64>, height: i64) -> bool {
    first.is_none_or(|first| height < first + CLAIM_ABSENT_CONFIRMATIONS)
}

/// Blocks past its settlement height during which a session decided "no proof required" is looked up for its
/// settlement before it is pruned anyway (a node that cannot say: the decision stands, as before the lookup).
pub const SETTLED_LOOKUP_BLOCKS: i64 = 8;

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

/// Inputs of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new block was committed (the chain's height; delivered once per height, in order).
    NewBlock {
        /// Its height.
        height: i64,
    },
    /// Relays of a session were inserted into its trie (first call creates the session).
    RelaysIngested {
        /// Which session.
        key: SessionKey,
        /// Service id.
        service_id: String,
        /// Application of the session.
        application_address: String,
        /// Its heights.
        schedule: Schedule,
        /// Relays in the session's trie after this ingest: a total, not an increment. The trie is what gets
        /// claimed, so the record mirrors it: a relay redelivered after a crash that the trie already holds (the
        /// trie was committed, the record or the ack was not) adds nothing to the trie but must still count.
        relays: u64,
        /// Compute units in the session's trie after this ingest (its sum; a total, like `relays`).
        compute_units: u64,
    },
    /// Outcome of a claim or proof tx for some sessions.
    TxOutcome {
        /// Claim or proof.
        kind: TxKind,
        /// The sessions the tx carried.
        keys: Vec<SessionKey>,
        /// What happened.
        outcome: TxOutcome,
    },
    /// The chain's proof params differ from those the last proof-requirement checks used (or are not known to
    /// be the same: a restart). poktroll computes the requirement with its live proof params when the proof is
    /// submitted and again at settlement (`ProofRequirementForClaim`, spec §6.3), so a session decided "no proof"
    /// becomes "proof required" if governance lowers the threshold or raises the probability before it settles,
    /// and its claim then expires for want of a proof. Every such session whose proof can still be sent is
    /// checked again ([`Command::CheckProofRequirement`]); the driver watches the params while
    /// [`Engine::proof_requirement_revisable`].
    ProofParamsChanged,
    /// Answer to [`Command::CheckProofRequirement`].
    ProofRequirement {
        /// Which session.
        key: SessionKey,
        /// Whether the chain will require a proof (spec §6.3).
        required: bool,
    },
    /// Answer to [`Command::LookupOnChain`] (or a periodic inclusion check).
    OnChain {
        /// Which session.
        key: SessionKey,
        /// Our claim exists on chain for this session.
        claim_exists: bool,
        /// The claim's proof status is VALIDATED (lessons.md: never read proof records).
        proof_validated: bool,
    },
    /// What our claim on chain covers (its root's count and sum), sent with every lookup that found it.
    ClaimOnChain {
        /// Which session.
        key: SessionKey,
        /// Relays in the claim's root.
        relays: u64,
        /// Compute units in the claim's root.
        compute_units: u64,
    },
    /// What the chain did with the session's claim at settlement, read from the settlement block's events
    /// (`crate::chain::settlement`) when a lookup at or after it found no claim: poktroll removes a claim once it
    /// is settled, so "not found" alone cannot tell a paid claim from a lost one. Sent after the
    /// [`Event::ClaimOnChain`] of the claim the event describes.
    Settled {
        /// Which session.
        key: SessionKey,
        /// The outcome.
        outcome: crate::chain::settlement::SettlementOutcome,
    },
    /// The driver found these sessions' claims not worth their expected cost and does not send them
    /// (`driver` module `profit`). A session still `Claiming` whose claim never left
    /// ([`SessionRecord::claim_never_left`]) ends `Discarded`, without a claim and with no loss recorded, reported
    /// once with [`Command::RecordClaimSkipped`], and is pruned like any other ended session, leaving a tombstone:
    /// its relays were served, so one reaching the log later must not start a record counted lost. Others are
    /// left as they are (and not reported).
    ClaimSkipped {
        /// The sessions, each with its claim's value in uPOKT (§6.3.1), which its report counts.
        claims: Vec<(SessionKey, u64)>,
    },
    /// This instance became (or stopped being) the leader that submits.
    Leadership {
        /// True when leading.
        leader: bool,
    },
}

/// Claim or proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxKind {
    /// `MsgCreateClaim`.
    Claim,
    /// `MsgSubmitProof`.
    Proof,
}

/// What a submission produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutcome {
    /// Accepted into the mempool (code 0, or code 19: these very bytes are already in its mempool or cache); inclusion
    /// still has to be confirmed from chain state.
    Broadcast,
    /// Not taken by any node as far as this miner knows (node unreachable, a transient simulation failure, a
    /// broadcast that failed at the transport and may have reached the node after all): the send is taken back
    /// and repeated at the next block while the window allows. The repeat of a broadcast without an answer does
    /// not sign a new tx while the first may still land: the driver looks it up and broadcasts its same bytes
    /// again (module `driver::submit::unknown`).
    Retryable(String),
    /// Certainly never left this process (this miner no longer leads, the window's deadline passed while the
    /// leadership was confirmed, the message or tx could not be built, a chain read needed to build it failed):
    /// handled as `Retryable`, and unlike every other outcome of a claim it does not freeze the trie
    /// (`SessionRecord::claim_built`), since no claim of it can be on chain.
    NotSent(String),
    /// A node refused it before its mempool: Simulate failed (the node answered, e.g. gRPC `Unknown`), or
    /// CheckTx returned a non-zero code (mempool full, insufficient fee or funds, an unordered nonce or TTL
    /// refusal, tx too large, ...). Neither costs a fee, and many are transient: the gRPC latest block can be
    /// one ahead of the committed state Simulate and CheckTx run on (CometBFT stores a block before the app
    /// commits it), so a claim sent at `claim_open` may be refused "outside the window" once; an operator can
    /// top up a balance. Taken back and repeated at the next block while the window allows, like `Retryable`
    /// (it does not use up a re-send), but it reached a node (a final loss is `*_not_included`) and the chain
    /// is asked whether another instance's claim or proof is there (an HA conflict is never a loss).
    Refused(String),
    /// Another instance already submitted (sequence mismatch, claim exists): an HA conflict, never a loss.
    HaConflict(String),
    /// Cannot be sent for a reason retrying cannot fix (no key for the supplier, a proof that cannot verify
    /// against the claim on chain): never repeated.
    Rejected(String),
}

/// Outputs of the engine, executed by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Build the roots of these sessions (all of one supplier) and send them as claims in one tx.
    SubmitClaims {
        /// Supplier operator address.
        supplier: String,
        /// Sessions to claim.
        keys: Vec<SessionKey>,
    },
    /// The seed block exists: compute the proof requirement of this claimed session and answer with
    /// [`Event::ProofRequirement`].
    CheckProofRequirement {
        /// Which session.
        key: SessionKey,
    },
    /// Build the closest proofs of these sessions (all of one supplier) and send them in one tx.
    SubmitProofs {
        /// Supplier operator address.
        supplier: String,
        /// Sessions to prove.
        keys: Vec<SessionKey>,
    },
    /// Look the session's claim up on chain and answer with [`Event::OnChain`].
    LookupOnChain {
        /// Which session.
        key: SessionKey,
    },
    /// Record a real loss once (metrics `upokt_lost{reason}`, log at ERROR).
    RecordLoss {
        /// Which session.
        key: SessionKey,
        /// Why.
        reason: LossReason,
        /// Relays lost.
        relays: u64,
        /// Compute units lost.
        compute_units: u64,
    },
    /// Served relays ingested after the session's claim was built (the driver keeps them out of the claimed
    /// trie, in a late one): not in the claim on chain, so their revenue is lost (metric
    /// `upokt_lost{reason="relays_after_claim"}`, log at ERROR). Recorded once.
    RecordUnclaimed {
        /// Which session.
        key: SessionKey,
        /// Relays not claimed.
        relays: u64,
        /// Compute units in the trie.
        compute_units: u64,
        /// Compute units the claim (and earlier records) already cover.
        accounted_compute_units: u64,
    },
    /// A zero-relay session was dropped (counted separately, not a failure).
    RecordDiscard {
        /// Which session.
        key: SessionKey,
    },
    /// The session's claim was not worth its expected cost and is not sent ([`Event::ClaimSkipped`]): it ended
    /// `Discarded` with its relays unclaimed, not a loss. Metrics `claims_skipped{reason="unprofitable"}` and
    /// `claims_skipped_upokt` (the claim's value). Reported once: a deposed leader that could not store the
    /// discard drops the report with it, and the next leader, restoring the session still `Claiming`, decides
    /// (and reports) it itself.
    RecordClaimSkipped {
        /// Which session.
        key: SessionKey,
        /// Its service (metrics label).
        service_id: String,
        /// The claim's value in uPOKT (§6.3.1), as the driver valued it when it skipped it.
        value_upokt: u64,
    },
    /// Our claim was found on chain: the session left `Claiming` (for `Claimed`, or straight to its settlement's
    /// outcome when the lookup read that). Metrics `claim_inclusion_outcome{included}` and `upokt_claimed`
    /// (the claim's value, from a chain query when the report runs), counter `claims_confirmed`. Reported once:
    /// a next leader that restores the record still `Claiming` confirms (and reports) it itself.
    RecordClaimConfirmed {
        /// Which session.
        key: SessionKey,
        /// Its service (metrics label; what the claim is valued at).
        service_id: String,
        /// Its session end height (what the claim is valued at).
        session_end: i64,
        /// Compute units the claim on chain pays for: its root's sum ([`SessionRecord::claimed`]), the trie's
        /// when the chain did not say.
        compute_units: u64,
    },
    /// The session's required proof was found validated on chain (or its settlement said so): the session is
    /// `Proved`. Metric `proof_inclusion_outcome{validated}`. Reported once.
    RecordProofValidated {
        /// Which session.
        key: SessionKey,
        /// Its service (metrics label).
        service_id: String,
    },
    /// The proof requirement check found a proof required: the session went to `Proving` (from `Claimed`, or
    /// from `Settled` under changed proof params). Metric `proof_requirement{required}`, counter
    /// `proofs_required`. Reported once.
    RecordProofRequired {
        /// Which session.
        key: SessionKey,
    },
    /// Delete the session's tries and relay-log entries, then store its tombstone ([`Engine::tombstone`],
    /// [`Engine::bury`]), or delete its record when it leaves none: nothing more will be asked of it.
    Prune {
        /// Which session.
        key: SessionKey,
    },
    /// Delete the record of a pruned session whose tombstone has expired ([`SessionRecord::forget_after`]
    /// passed), then [`Engine::forget`] it. Asked again at every new block until it was done.
    Forget {
        /// Which session.
        key: SessionKey,
    },
}

impl Command {
    /// A report of what happened to a session (a loss, relays after the claim, a discard, a claim skipped, a
    /// claim confirmed, a proof validated or found required): metrics and a log line, no IO that can fail. The
    /// driver runs reports once the records that say so are stored, so each is counted once across leaders
    /// (lessons.md: metrics must not lie).
    pub fn is_report(&self) -> bool {
        self.report_key().is_some()
    }

    /// The session a report is about (`None` for a command that is not a report).
    pub fn report_key(&self) -> Option<&SessionKey> {
        match self {
            Self::RecordLoss { key, .. }
            | Self::RecordUnclaimed { key, .. }
            | Self::RecordDiscard { key }
            | Self::RecordClaimSkipped { key, .. }
            | Self::RecordClaimConfirmed { key, .. }
            | Self::RecordProofValidated { key, .. }
            | Self::RecordProofRequired { key } => Some(key),
            _ => None,
        }
    }
}

/// The result of one [`Engine::handle`] call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    /// Commands to execute, in order.
    pub commands: Vec<Command>,
    /// Sessions whose record changed and must be persisted.
    pub changed: Vec<SessionKey>,
}

impl Step {
    /// Appends `next`'s commands after this step's and unions the changed sessions (sorted, no duplicates).
    pub fn merge(&mut self, next: Step) {
        self.commands.extend(next.commands);
        self.changed.extend(next.changed);
        self.changed.sort();
        self.changed.dedup();
    }
}

/// Default of [`EngineConfig::tombstone_blocks`]: 240 blocks.
///
/// The bound is how late a relay of a session can reach the relay log after the session was pruned. A relayer
/// accepts a relay only below its session's claim window open (spec §2.6 rule 5). A session is pruned at the
/// earliest two blocks after its claim window closed (a claim that never landed, said absent at two heights,
/// [`SessionRecord::claim_absent_at`]), once its proof is validated
/// (from `proof_open` on) or past its settlement height; its tombstone is kept until `tombstone_blocks` past
/// the later of the prune and the settlement height (§3 `SettlementSessionEnd`). So a relay would have to reach
/// the log at least `settlement − claim_open + 1 + tombstone_blocks` blocks after the last height it could be
/// accepted at: 249 blocks with the default shared params, 262 with mainnet's. What delays a relay after it
/// was accepted: the backend's answer (appended after it, bounded by the request timeout, 30 s by default), an
/// append retried through a storage outage (bounded by the storage's write deadlines, raft 15 s), a relayer
/// whose chain view lags, and, on Redis, a Go relayer's entry: it has no `session` field, `trim_session` cannot
/// remove it, and it stays in the stream until the miner reads it, however far behind the miner is (the Go
/// relayer trims its streams after 2 h). 240 blocks are 4 h at 60 s blocks, 2 h at 30 s, and still 4 minutes at
/// localnet's 1 s, far beyond a request timeout. The cost is one small record per pruned session for that long.
pub const TOMBSTONE_BLOCKS: i64 = 240;

/// Blocks between a claim or proof send and its re-send: a send the chain does not show one block later may
/// only be slow (included a block late); it is sent again at the block after that if still missing.
pub const CLAIM_RESEND_SPACING: i64 = 2;

/// Tunables of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// A submission must be sent at least this many blocks before its window closes.
    pub submission_buffer_blocks: i64,
    /// Sends of one claim/proof inside its window: the first plus this many re-sends when not confirmed.
    pub max_resends: usize,
    /// A claim's first send waits this many blocks after `claim_open` (never past `claim_close − buffer`), so
    /// relays accepted just before `claim_open` reach the trie first: by relayers whose height lags the
    /// miner's, or still waiting for their backend's answer when the window opened (spec §2.6.5 accepts them
    /// until `claim_open − 1`). Once the claim is built such relays can only be recorded as lost.
    pub claim_delay_blocks: i64,
    /// Blocks a pruned session's tombstone is kept past the later of its prune and its settlement height
    /// (see [`TOMBSTONE_BLOCKS`] for the bound and why).
    pub tombstone_blocks: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            submission_buffer_blocks: 1,
            max_resends: 1,
            claim_delay_blocks: 1,
            tombstone_blocks: TOMBSTONE_BLOCKS,
        }
    }
}

/// The engine: all sessions of all suppliers this miner serves.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    config: EngineConfig,
    sessions: BTreeMap<SessionKey, SessionRecord>,
    height: i64,
    leader: bool,
    /// Sessions whose claim / proof this engine sent since it last became the leader. A send recorded in a
    /// session without being in here was made by a predecessor (a leader that may have died before its tx
    /// reached the chain): once the chain says the claim or proof is not there, it is re-sent at once, not two
    /// blocks after the predecessor's send, which near the window's close left no time at all. Each with the
    /// height of its first send here: a first send taken back (it did not leave) is forgotten, so the session
    /// stays inherited, or a predecessor that used up the re-sends left it with none.
    claims_sent_here: BTreeMap<SessionKey, i64>,
    proofs_sent_here: BTreeMap<SessionKey, i64>,
    /// Sends that no node took at the current height (`TxOutcome::Retryable`/`NotSent`, taken back): repeated at the next
    /// block, not in the same iteration (which would loop while the node stays unreachable). Emptied at each
    /// new height.
    failed_at_height: std::collections::BTreeSet<(TxKind, SessionKey)>,
    /// Pruned sessions whose tombstone is kept, with the height after which it is forgotten
    /// ([`SessionRecord::forget_after`]). Apart from `sessions`, so the per-block pass and every reader of
    /// [`Engine::sessions`] see only sessions with work left.
    tombstones: BTreeMap<SessionKey, i64>,
    /// Per supplier, whether the driver's last ingest round read its relay log up to now (`true`) or stopped at
    /// its bound with entries left (`false`); absent: not ingested since this engine's leadership last changed.
    /// See [`Engine::set_ingest_caught_up`].
    ingest_caught_up: BTreeMap<String, bool>,
}

impl Engine {
    /// An engine with no sessions (restore persisted ones with [`Engine::restore`]).
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Re-adds a persisted session (after a restart or a leadership change). A record persisted as pruned is
    /// one whose data the process may not have finished deleting (it stopped between writing the record and
    /// storing the tombstone, which comes last): it is pruned again at the next block (deletes are idempotent).
    /// A tombstone ([`SessionRecord::forget_after`] set) is restored as one.
    pub fn restore(&mut self, mut record: SessionRecord) {
        if let Some(forget_after) = record.forget_after {
            self.sessions.remove(&record.key);
            self.tombstones.insert(record.key, forget_after);
            return;
        }
        record.pruned = false;
        self.sessions.insert(record.key.clone(), record);
    }

    /// Whether `key` is a pruned session whose tombstone is kept: relays of it are acknowledged, not mined.
    pub fn is_tombstoned(&self, key: &SessionKey) -> bool {
        self.tombstones.contains_key(key)
    }

    /// The tombstones kept: (session, height after which it is forgotten).
    pub fn tombstones(&self) -> impl Iterator<Item = (&SessionKey, i64)> {
        self.tombstones.iter().map(|(k, h)| (k, *h))
    }

    /// A session's record.
    pub fn session(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.sessions.get(key)
    }

    /// Every session's record.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionRecord> {
        self.sessions.values()
    }

    /// Records whether the relay log of `supplier` was ingested up to now (`false`: an ingest round stopped at
    /// its time or batch bound with entries left, `driver::ingest`).
    ///
    /// While it is not, the first send of the supplier's claims is held: the claimed trie is frozen once the
    /// claim is built (module docs), so a claim built while the log still holds relays of its session would
    /// leave them out for good (counted lost as relays after the claim). An unbounded ingest round kept this
    /// true by construction but could outlast the leadership lease with a backlog. The hold lasts at most until
    /// the last height the buffer allows (`claim_close − buffer`): a claim of the relays ingested so far is worth
    /// more than none. Proofs and every other command are not held.
    pub fn set_ingest_caught_up(&mut self, supplier: &str, caught_up: bool) {
        self.ingest_caught_up.insert(supplier.to_owned(), caught_up);
    }

    /// What [`Engine::set_ingest_caught_up`] last recorded for `supplier` in this leadership (`None`: nothing).
    pub fn ingest_caught_up(&self, supplier: &str) -> Option<bool> {
        self.ingest_caught_up.get(supplier).copied()
    }

    /// The latest height seen.
    pub fn height(&self) -> i64 {
        self.height
    }

    /// Whether this instance submits.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Feeds one event; returns the commands to run and the sessions to persist.
    pub fn handle(&mut self, event: Event) -> Step {
        let mut step = Step::default();
        match event {
            Event::NewBlock { height } => {
                if height > self.height {
                    self.height = height;
                    self.failed_at_height.clear();
                    self.forget_due(&mut step);
                }
            }
            // A relay of a pruned session (see the module docs): paid or counted already, never a new record.
            Event::RelaysIngested { ref key, .. } if self.tombstones.contains_key(key) => {}
            Event::RelaysIngested {
                key,
                service_id,
                application_address,
                schedule,
                relays,
                compute_units,
            } => {
                let record = self
                    .sessions
                    .entry(key.clone())
                    .or_insert_with(|| SessionRecord::new(key.clone(), service_id, application_address, schedule));
                record.relays = record.relays.max(relays);
                record.compute_units = record.compute_units.max(compute_units);
                Self::record_unclaimed(record, &mut step);
                step.changed.push(key);
            }
            Event::ClaimOnChain {
                key,
                relays,
                compute_units,
            } => {
                if let Some(record) = self.sessions.get_mut(&key)
                    && record.accounted.is_none()
                {
                    record.accounted = Some((relays, compute_units));
                    record.claimed = Some((relays, compute_units));
                    Self::record_unclaimed(record, &mut step);
                    step.changed.push(key);
                }
            }
            Event::TxOutcome { kind, keys, outcome } => {
                for key in keys {
                    self.on_tx_outcome(kind, &key, &outcome, &mut step);
                }
            }
            Event::ProofRequirement { key, required } => {
                if let Some(record) = self.sessions.get_mut(&key) {
                    if record.state == State::Claimed {
                        record.proof_required = Some(required);
                        record.state = if required { State::Proving } else { State::Settled };
                        if required {
                            step.commands.push(Command::RecordProofRequired { key: key.clone() });
                        }
                        step.changed.push(key);
                    } else if required && Self::revisable(record, self.height, self.config.submission_buffer_blocks) {
                        // Decided "no proof" under older proof params (`Event::ProofParamsChanged`): proven now.
                        record.proof_required = Some(true);
                        record.state = State::Proving;
                        step.commands.push(Command::RecordProofRequired { key: key.clone() });
                        step.changed.push(key);
                    }
                }
            }
            Event::ProofParamsChanged => {
                let (height, buffer) = (self.height, self.config.submission_buffer_blocks);
                for record in self.sessions.values_mut() {
                    if Self::revisable(record, height, buffer) && record.queried_at != Some(height) {
                        record.queried_at = Some(height);
                        step.commands.push(Command::CheckProofRequirement {
                            key: record.key.clone(),
                        });
                    }
                }
            }
            Event::OnChain {
                key,
                claim_exists,
                proof_validated,
            } => self.on_chain(&key, claim_exists, proof_validated, &mut step),
            Event::Settled { key, outcome } => self.on_settled(&key, &outcome, &mut step),
            Event::ClaimSkipped { claims } => {
                for (key, value_upokt) in claims {
                    if let Some(record) = self.sessions.get_mut(&key)
                        && record.claim_never_left(self.height)
                    {
                        record.claim_sent_at.clear();
                        record.state = State::Discarded;
                        self.claims_sent_here.remove(&key);
                        step.commands.push(Command::RecordClaimSkipped {
                            key: key.clone(),
                            service_id: record.service_id.clone(),
                            value_upokt,
                        });
                        step.changed.push(key);
                    }
                }
            }
            Event::Leadership { leader } => {
                if leader != self.leader {
                    self.claims_sent_here.clear();
                    self.proofs_sent_here.clear();
                    self.ingest_caught_up.clear();
                }
                self.leader = leader;
            }
        }
        self.advance(&mut step);
        step.changed.sort();
        step.changed.dedup();
        step
    }

    fn on_tx_outcome(&mut self, kind: TxKind, key: &SessionKey, outcome: &TxOutcome, step: &mut Step) {
        let Some(record) = self.sessions.get_mut(key) else {
            return;
        };
        if kind == TxKind::Claim && !matches!(outcome, TxOutcome::NotSent(_)) && !record.claim_built {
            record.claim_built = true;
            step.changed.push(key.clone());
        }
        let expected = match kind {
            TxKind::Claim => State::Claiming,
            TxKind::Proof => State::Proving,
        };
        if record.state != expected {
            return;
        }
        if !matches!(outcome, TxOutcome::Retryable(_) | TxOutcome::NotSent(_)) {
            // A node answered (took it, or refused it at check time): a loss is now `*_not_included`.
            match kind {
                TxKind::Claim => record.claim_reached_node = true,
                TxKind::Proof => record.proof_reached_node = true,
            }
            step.changed.push(key.clone());
        }
        match outcome {
            // Inclusion is confirmed from chain state (lookups each block), never from the broadcast result.
            TxOutcome::Broadcast => {}
            TxOutcome::Retryable(_) | TxOutcome::NotSent(_) | TxOutcome::Refused(_) => {
                // No node took it (unreachable node, a chain query failed while building it, leadership or
                // deadline check), or a node refused it before its mempool (no fee paid): the send did not
                // happen, so it does not use up a re-send. Forgetting it makes the session due again at the next
                // block while its window allows (a first send from `advance`, a re-send from `on_chain` after an
                // earlier real send).
                let sent = match kind {
                    TxKind::Claim => &mut record.claim_sent_at,
                    TxKind::Proof => &mut record.proof_sent_at,
                };
                if sent.last() == Some(&self.height) {
                    sent.pop();
                    self.failed_at_height.insert((kind, key.clone()));
                    step.changed.push(key.clone());
                    let sent_here = match kind {
                        TxKind::Claim => &mut self.claims_sent_here,
                        TxKind::Proof => &mut self.proofs_sent_here,
                    };
                    if sent_here.get(key) == Some(&self.height) {
                        sent_here.remove(key);
                    }
                }
                // A refusal may mean another instance's claim or proof is already there: ask the chain.
                if matches!(outcome, TxOutcome::Refused(_)) && record.queried_at != Some(self.height) {
                    record.queried_at = Some(self.height);
                    step.commands.push(Command::LookupOnChain { key: key.clone() });
                    step.changed.push(key.clone());
                }
            }
            TxOutcome::HaConflict(_) | TxOutcome::Rejected(_) => {
                // Either someone else's submission is on chain (conflict) or ours can never be: ask the chain
                // before deciding; a rejection is a loss only if the chain has nothing for this session.
                if record.queried_at != Some(self.height) {
                    record.queried_at = Some(self.height);
                    step.commands.push(Command::LookupOnChain { key: key.clone() });
                }
                if matches!(outcome, TxOutcome::Rejected(_)) {
                    // Do not re-send something the chain refuses for good.
                    let sent = match kind {
                        TxKind::Claim => &mut record.claim_sent_at,
                        TxKind::Proof => &mut record.proof_sent_at,
                    };
                    while sent.len() <= self.config.max_resends {
                        sent.push(self.height);
                    }
                }
                step.changed.push(key.clone());
            }
        }
    }

    fn on_chain(&mut self, key: &SessionKey, claim_exists: bool, proof_validated: bool, step: &mut Step) {
        let height = self.height;
        let leader = self.leader;
        let buffer = self.config.submission_buffer_blocks;
        let max_sends = self.config.max_resends + 1;
        // A re-send only after the chain said "not there" at this height: a send that merely landed a block late
        // (slow broadcast, busy node) must not be paid for twice.
        // A send of a predecessor (`inherited`) is repeated at once: it may never have left the dead leader, and
        // a claim or proof sent twice costs a fee, one never sent the whole session.
        let resend_due = |sent: &[i64], close: i64, inherited: bool| {
            leader
                && height <= close - buffer
                && ((sent.len() < max_sends && sent.last().is_some_and(|at| height >= at + CLAIM_RESEND_SPACING))
                    || (inherited && !sent.is_empty()))
        };
        let claim_inherited = !self.claims_sent_here.contains_key(key);
        let proof_inherited = !self.proofs_sent_here.contains_key(key);
        let claim_failed_now = self.failed_at_height.contains(&(TxKind::Claim, key.clone()));
        let proof_failed_now = self.failed_at_height.contains(&(TxKind::Proof, key.clone()));
        let Some(record) = self.sessions.get_mut(key) else {
            return;
        };
        step.changed.push(key.clone());
        match record.state {
            State::Claiming if claim_exists => {
                record.state = State::Claimed;
                Self::confirm_claim(record, step);
            }
            // Absent past the close, said once: kept `Claiming` (not pruned) and looked up again at the next
            // block (`advance` asks at every height past the close), see `SessionRecord::claim_absent_at`.
            State::Claiming
                if height > record.schedule.claim_close && absence_unconfirmed(record.claim_absent_at, height) =>
            {
                record.claim_absent_at.get_or_insert(height);
            }
            State::Claiming if height > record.schedule.claim_close => {
                // Said absent at two heights past the close: lost.
                // A claim refused before the mempool (`Refused`) is taken back but did reach a node.
                let reason = if !record.claim_reached_node {
                    LossReason::ClaimWindowMissed
                } else {
                    LossReason::ClaimNotIncluded
                };
                Self::expire(record, reason, step);
            }
            State::Claiming
                if !claim_failed_now
                    && resend_due(&record.claim_sent_at, record.schedule.claim_close, claim_inherited) =>
            {
                record.claim_sent_at.push(height);
                self.claims_sent_here.entry(key.clone()).or_insert(height);
                step.commands.push(Command::SubmitClaims {
                    supplier: key.supplier.clone(),
                    keys: vec![key.clone()],
                });
            }
            // Decided "no proof required" and the claim is gone past its settlement, with no settlement events to
            // read (`on_settled` otherwise): the decision stands.
            State::Settled if !claim_exists && height > record.schedule.settlement => record.settlement_seen = true,
            // The proof requirement was never learnt and the window closed (a lookup answered with the settlement
            // when the chain had one, `on_settled`): the claim is gone and no proof of ours was sent.
            State::Claimed if !claim_exists && height > record.schedule.proof_close => {
                Self::expire(record, LossReason::ProofWindowMissed, step);
            }
            State::Proving if proof_validated => Self::prove(record, step),
            // No validated proof past the close, said once: looked up again at the next block (the lookup then
            // usually reads the settlement), see `SessionRecord::proof_absent_at`.
            State::Proving
                if height > record.schedule.proof_close && absence_unconfirmed(record.proof_absent_at, height) =>
            {
                record.proof_absent_at.get_or_insert(height);
            }
            State::Proving if height > record.schedule.proof_close => {
                let reason = if !record.proof_reached_node {
                    LossReason::ProofWindowMissed
                } else {
                    LossReason::ProofNotIncluded
                };
                Self::expire(record, reason, step);
            }
            State::Proving
                if height >= record.schedule.proof_open
                    && !proof_failed_now
                    && resend_due(&record.proof_sent_at, record.schedule.proof_close, proof_inherited) =>
            {
                record.proof_sent_at.push(height);
                self.proofs_sent_here.entry(key.clone()).or_insert(height);
                step.commands.push(Command::SubmitProofs {
                    supplier: key.supplier.clone(),
                    keys: vec![key.clone()],
                });
            }
            _ => {}
        }
    }

    /// Ends a session the chain settled: paid (`Proved` when a proof was required, else `Settled`), or lost when
    /// the chain expired the claim (a required proof missing or invalid) or discarded it.
    fn on_settled(&mut self, key: &SessionKey, outcome: &crate::chain::settlement::SettlementOutcome, step: &mut Step) {
        use crate::chain::settlement::SettlementOutcome;
        let Some(record) = self.sessions.get_mut(key) else {
            return;
        };
        if record.state == State::Settled && !record.settlement_seen {
            // Decided "no proof required" by this miner: the chain decided again at settlement (§6.3).
            step.changed.push(key.clone());
            match outcome {
                SettlementOutcome::Settled { .. } => record.settlement_seen = true,
                SettlementOutcome::Expired { .. } => Self::expire(record, LossReason::ProofWindowMissed, step),
                SettlementOutcome::Discarded { .. } => Self::expire(record, LossReason::SettlementDiscarded, step),
            }
            return;
        }
        if !matches!(record.state, State::Claiming | State::Claimed | State::Proving) {
            return;
        }
        step.changed.push(key.clone());
        if record.state == State::Claiming {
            // The chain settled (or expired, or discarded) our claim: it was on chain.
            Self::confirm_claim(record, step);
        }
        match outcome {
            SettlementOutcome::Settled { proof_required } => {
                let required = *proof_required || record.state == State::Proving;
                record.proof_required = Some(required);
                record.settlement_seen = true;
                if required {
                    Self::prove(record, step);
                } else {
                    record.state = State::Settled;
                }
            }
            SettlementOutcome::Expired { .. } => {
                // As at the window's close (`on_chain`): a proof a node answered for is `proof_not_included`.
                let reason = if record.state == State::Proving && record.proof_reached_node {
                    LossReason::ProofNotIncluded
                } else {
                    LossReason::ProofWindowMissed
                };
                Self::expire(record, reason, step);
            }
            SettlementOutcome::Discarded { .. } => Self::expire(record, LossReason::SettlementDiscarded, step),
        }
    }

    /// Records, once, the relays the trie holds beyond what the confirmed claim (and earlier records) cover.
    fn record_unclaimed(record: &mut SessionRecord, step: &mut Step) {
        let Some((relays, compute_units)) = record.accounted else {
            return;
        };
        if record.relays > relays {
            step.commands.push(Command::RecordUnclaimed {
                key: record.key.clone(),
                relays: record.relays - relays,
                compute_units: record.compute_units,
                accounted_compute_units: compute_units,
            });
            record.accounted = Some((record.relays, record.compute_units.max(compute_units)));
        }
    }

    /// Reports the session's claim as found on chain, once: called as the session leaves `Claiming` with its
    /// claim there (after [`Event::ClaimOnChain`], so what the claim pays for is known when the chain said).
    fn confirm_claim(record: &SessionRecord, step: &mut Step) {
        step.commands.push(Command::RecordClaimConfirmed {
            key: record.key.clone(),
            service_id: record.service_id.clone(),
            session_end: record.schedule.session_end,
            compute_units: record
                .claimed
                .map_or(record.compute_units, |(_, compute_units)| compute_units),
        });
    }

    /// Ends the session as proved (its required proof validated on chain) and reports it, once.
    fn prove(record: &mut SessionRecord, step: &mut Step) {
        record.state = State::Proved;
        step.commands.push(Command::RecordProofValidated {
            key: record.key.clone(),
            service_id: record.service_id.clone(),
        });
    }

    /// Ends the session as lost. Before its claim is on chain the whole trie is lost; after (a proof-stage
    /// loss) what is lost is what the claim pays for: relays beyond it were recorded when the claim was found.
    fn expire(record: &mut SessionRecord, reason: LossReason, step: &mut Step) {
        record.state = State::Expired(reason);
        let (relays, compute_units) = record.claimed.unwrap_or((record.relays, record.compute_units));
        step.commands.push(Command::RecordLoss {
            key: record.key.clone(),
            reason,
            relays,
            compute_units,
        });
    }

    /// Moves every session as far as the current height allows and emits the due submissions, batched per
    /// supplier.
    fn advance(&mut self, step: &mut Step) {
        let height = self.height;
        let buffer = self.config.submission_buffer_blocks;
        let mut claims: BTreeMap<String, Vec<SessionKey>> = BTreeMap::new();
        let mut proofs: BTreeMap<String, Vec<SessionKey>> = BTreeMap::new();
        let failed_now = &self.failed_at_height;
        let ingest_caught_up = &self.ingest_caught_up;
        for record in self.sessions.values_mut() {
            let s = record.schedule;
            let before = (
                record.state,
                record.claim_sent_at.len(),
                record.proof_sent_at.len(),
                record.queried_at,
                record.pruned,
            );
            if record.state == State::Active && height >= s.claim_open {
                if record.relays == 0 {
                    record.state = State::Discarded;
                    step.commands.push(Command::RecordDiscard {
                        key: record.key.clone(),
                    });
                } else {
                    record.state = State::Claiming;
                }
            }
            if record.state == State::Claiming {
                let last_sent = record.claim_sent_at.last().copied();
                // First send once the window opened and the claim delay passed, or at the last height the buffer
                // allows when the window is shorter than the delay; never past it. Re-sends are decided by the
                // lookup's answer (`on_chain`), not here.
                let first_send_at = crate::protocol::session::first_claim_send_height(
                    s.claim_open,
                    s.claim_close,
                    self.config.claim_delay_blocks,
                    buffer,
                );
                // Held while the supplier's relay log is not ingested up to now (`set_ingest_caught_up`), but
                // only until the last height that leaves a re-send (`CLAIM_RESEND_SPACING` blocks later, still
                // within the buffer): a claim held to the very last height had one attempt, and one tx that did
                // not land lost the session.
                let hold_until = (s.claim_close - buffer - CLAIM_RESEND_SPACING).max(first_send_at);
                let held = ingest_caught_up.get(&record.key.supplier) == Some(&false) && height < hold_until;
                let due = last_sent.is_none()
                    && height >= first_send_at
                    && !held
                    && !failed_now.contains(&(TxKind::Claim, record.key.clone()));
                if self.leader && due && height <= s.claim_close - buffer {
                    record.claim_sent_at.push(height);
                    self.claims_sent_here.entry(record.key.clone()).or_insert(height);
                    claims
                        .entry(record.key.supplier.clone())
                        .or_default()
                        .push(record.key.clone());
                } else if record.queried_at != Some(height)
                    && (last_sent.is_some_and(|at| height > at) || height > s.claim_close)
                {
                    // Confirm inclusion from chain state every block after a send, and once the window closed.
                    record.queried_at = Some(height);
                    step.commands.push(Command::LookupOnChain {
                        key: record.key.clone(),
                    });
                }
            }
            if record.state == State::Claimed
                && record.proof_required.is_none()
                && height >= s.proof_seed_height()
                && record.queried_at != Some(height)
            {
                record.queried_at = Some(height);
                // Past the proof window a proof could no longer be sent either way: what the chain did with the
                // claim (its settlement) decides, so a requirement check that keeps failing (an unreadable trie)
                // cannot hold the session forever.
                step.commands.push(if height > s.proof_close {
                    Command::LookupOnChain {
                        key: record.key.clone(),
                    }
                } else {
                    Command::CheckProofRequirement {
                        key: record.key.clone(),
                    }
                });
            }
            if record.state == State::Proving {
                let last_sent = record.proof_sent_at.last().copied();
                let due = last_sent.is_none() && !failed_now.contains(&(TxKind::Proof, record.key.clone()));
                // Not before block `proof_open` is committed: the node simulates (and checks) a tx at its last
                // committed height, and poktroll refuses a proof below the window's open there; sent at the seed
                // block (`proof_open − 1`) it would be refused, though it would land inside the window.
                if self.leader && due && height >= s.proof_open && height <= s.proof_close - buffer {
                    record.proof_sent_at.push(height);
                    self.proofs_sent_here.entry(record.key.clone()).or_insert(height);
                    proofs
                        .entry(record.key.supplier.clone())
                        .or_default()
                        .push(record.key.clone());
                } else if record.queried_at != Some(height)
                    && (last_sent.is_some_and(|at| height > at) || height > s.proof_close)
                {
                    record.queried_at = Some(height);
                    step.commands.push(Command::LookupOnChain {
                        key: record.key.clone(),
                    });
                }
            }
            // Decided "no proof required": what the chain's settlement did, read once past it (`settlement_seen`).
            let settlement_unseen = record.state == State::Settled && !record.settlement_seen;
            if settlement_unseen
                && height > s.settlement
                && height <= s.settlement + SETTLED_LOOKUP_BLOCKS
                && record.queried_at != Some(height)
            {
                record.queried_at = Some(height);
                step.commands.push(Command::LookupOnChain {
                    key: record.key.clone(),
                });
            }
            let prune_due = match record.state {
                State::Proved | State::Expired(_) | State::Discarded => true,
                State::Settled => {
                    height > s.settlement && (!settlement_unseen || height > s.settlement + SETTLED_LOOKUP_BLOCKS)
                }
                _ => false,
            };
            if prune_due && !record.pruned && self.leader {
                record.pruned = true;
                step.commands.push(Command::Prune {
                    key: record.key.clone(),
                });
            }
            let after = (
                record.state,
                record.claim_sent_at.len(),
                record.proof_sent_at.len(),
                record.queried_at,
                record.pruned,
            );
            if before != after {
                step.changed.push(record.key.clone());
            }
        }
        for (supplier, keys) in claims {
            step.commands.push(Command::SubmitClaims { supplier, keys });
        }
        for (supplier, keys) in proofs {
            step.commands.push(Command::SubmitProofs { supplier, keys });
        }
    }

    /// Whether `record` was decided "no proof required" and a proof of it could still be sent at `height` (its
    /// proof window is open to sends: up to `proof_close − buffer`), so a change of the chain's proof params
    /// can still be acted on ([`Event::ProofParamsChanged`]).
    fn revisable(record: &SessionRecord, height: i64, buffer: i64) -> bool {
        record.state == State::Settled
            && record.proof_required == Some(false)
            && !record.pruned
            && height <= record.schedule.proof_close - buffer
    }

    /// Whether some session decided "no proof required" could still be proven if the chain's proof params
    /// changed: the driver then compares them block by block ([`Event::ProofParamsChanged`]).
    pub fn proof_requirement_revisable(&self) -> bool {
        let buffer = self.config.submission_buffer_blocks;
        self.sessions.values().any(|r| Self::revisable(r, self.height, buffer))
    }

    /// A [`Command::Prune`] that failed or did not run: the session is pruned again at the engine's next pass (deletes
    /// are idempotent), so a transient storage error does not leave its data behind until a restart.
    pub fn prune_failed(&mut self, key: &SessionKey) {
        if let Some(record) = self.sessions.get_mut(key) {
            record.pruned = false;
        }
    }

    /// The tombstone the pruned session `key` leaves: its record marked pruned, with
    /// [`SessionRecord::forget_after`] [`EngineConfig::tombstone_blocks`] past the later of the current height
    /// and its settlement height. `None` for a session without a record, and for one discarded without relays:
    /// none of its relays was paid or counted, so a relay of it that arrives later is rightly mined as new. A
    /// session discarded with relays (its claim skipped, [`Event::ClaimSkipped`]) leaves one like any other.
    pub fn tombstone(&self, key: &SessionKey) -> Option<SessionRecord> {
        let record = self.sessions.get(key)?;
        if record.state == State::Discarded && record.relays == 0 {
            return None;
        }
        let mut tombstone = record.clone();
        tombstone.pruned = true;
        tombstone.forget_after =
            Some(self.height.max(record.schedule.settlement) + self.config.tombstone_blocks.max(0));
        Some(tombstone)
    }

    /// Replaces a pruned session by its tombstone ([`Engine::tombstone`]) once the driver deleted the session's
    /// data and stored the tombstone in place of its record ([`Command::Prune`]), or forgets it when it leaves
    /// none (the driver deleted its record). The engine holds only sessions with work left (plus the tombstones'
    /// keys), so its memory and its per-block pass stay bounded by the live sessions.
    pub fn bury(&mut self, key: &SessionKey) {
        let forget_after = self.tombstone(key).and_then(|t| t.forget_after);
        self.forget(key);
        if let Some(forget_after) = forget_after {
            self.tombstones.insert(key.clone(), forget_after);
        }
    }

    /// Forgets a session, or the tombstone of a pruned one once the driver deleted its record
    /// ([`Command::Forget`]). A relay of the session ingested after its tombstone was forgotten starts a new
    /// record, which is counted lost as `claim_window_missed` and pruned again: [`TOMBSTONE_BLOCKS`] is chosen
    /// so that none can arrive that late.
    pub fn forget(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        self.claims_sent_here.remove(key);
        self.proofs_sent_here.remove(key);
        self.failed_at_height.remove(&(TxKind::Claim, key.clone()));
        self.failed_at_height.remove(&(TxKind::Proof, key.clone()));
        self.tombstones.remove(key);
        self.sessions.remove(key)
    }

    /// Asks the driver to delete every tombstone kept past its `forget_after` (the leader only: followers
    /// write nothing). Called once per new height, so a delete that failed is asked again at the next one.
    fn forget_due(&self, step: &mut Step) {
        if !self.leader {
            return;
        }
        for (key, forget_after) in &self.tombstones {
            if self.height > *forget_after {
                step.commands.push(Command::Forget { key: key.clone() });
            }
        }
    }
}

#[cfg(test)]
mod absence_tests;
#[cfg(test)]
mod confirmation_tests;
#[cfg(test)]
mod ingest_hold_tests;
#[cfg(test)]
mod requirement_tests;
#[cfg(test)]
mod skip_tests;
#[cfg(test)]
mod tests;
