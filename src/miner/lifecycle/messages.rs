//! What goes in and out of the engine: the [`Event`]s the driver feeds it, the [`Command`]s it returns (with
//! the reports among them, [`Command::is_report`]) and the [`Step`] that carries them with the sessions whose
//! record changed.

use super::*;
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
    /// Answer to [`Command::LookupOnChain`] for a session decided "no proof required" whose claim is gone past
    /// its settlement height, when the settlement block's events were read and hold no event of the claim (its
    /// settlement is in no block the miner can name): what the chain did cannot be learnt by asking again. The
    /// session ends with its settlement unknown ([`SessionRecord::settlement_unknown`]), neither paid nor lost.
    /// A session in another state takes it as a lookup that found no claim ([`Event::OnChain`]).
    SettlementUnknown {
        /// Which session.
        key: SessionKey,
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
    /// A node refused a proof because the chain does not require it (poktroll `ErrProofNotRequired`, code 1129
    /// in codespace `proof`, "proof not required"): `SubmitProof` decides the requirement with its *live* proof
    /// params, so a proof found required at the seed block stops being required when governance raises
    /// `proof_requirement_threshold` or lowers `proof_request_probability` before it lands, and the settlement
    /// then pays the claim without one. Refused at Simulate (no fee), it is taken back like `Refused` but not
    /// sent again at every block: the requirement is checked again with the params in force
    /// ([`Command::CheckProofRequirement`]), and a session found not required ends `Settled`, still watched
    /// while its proof can be sent ([`Event::ProofParamsChanged`]). Only a proof's outcome (a claim's is taken as
    /// `Refused`).
    NotRequired(String),
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
    /// A proof found required (and counted so, [`Command::RecordProofRequired`]) turned out not to be: the chain
    /// refused it as not required ([`TxOutcome::NotRequired`]) or the driver found so right before sending it, and
    /// the requirement checked again said "not required"; the session went from `Proving` to `Settled`. Metric
    /// `proof_requirement_not_required_after_all`, counter `proofs_not_required_after_all`: the proofs owed are
    /// the required less these. Reported once.
    RecordProofNotRequired {
        /// Which session.
        key: SessionKey,
    },
    /// The chain never told what its settlement did with the claim of this session decided "no proof required"
    /// ([`SessionRecord::settlement_unknown`]): neither paid nor lost as far as the miner knows. Metric
    /// `settlement_unknown`, counter `settlements_unknown`, a WARN. Reported once.
    RecordSettlementUnknown {
        /// Which session.
        key: SessionKey,
        /// Its service (metrics label).
        service_id: String,
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
    /// claim confirmed, a proof validated, found required or not required after all, a settlement that could not
    /// be learnt): metrics and a log line, no IO that can fail. The
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
            | Self::RecordProofRequired { key }
            | Self::RecordProofNotRequired { key }
            | Self::RecordSettlementUnknown { key, .. } => Some(key),
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
