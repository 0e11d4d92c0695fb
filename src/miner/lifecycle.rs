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
//! lost whatever state the miner had it in. A session decided "no proof required" is looked up past its
//! settlement until a lookup answers (a lookup asked is not one answered, [`SETTLED_LOOKUP_BLOCKS`]); when the
//! chain never tells, it ends with its settlement unknown ([`SessionRecord::settlement_unknown`]), not as paid.
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

mod answers;
mod messages;
mod record;

use std::collections::BTreeMap;

pub use messages::{Command, Event, Step, TxKind, TxOutcome};
pub use record::{LossReason, Schedule, SessionKey, SessionRecord, State};

/// Blocks a session past its claim window stays `Claiming` after the first lookup that found its claim absent,
/// waiting for a lookup at a later height to say so again before it is expired and pruned
/// ([`SessionRecord::claim_absent_at`]; the same for a required proof past `proof_close`,
/// [`SessionRecord::proof_absent_at`]). One block: a fresh answer is asked at every block past the close
/// (`advance`), so this covers a node whose state lags the reported tip by one block, or a load balancer that
/// sent the first query to such a node. A node lagging by more than that cannot answer "absent" any more: the
/// driver's claim lookups are pinned to the tip it read (`x-cosmos-block-height`), so such a node refuses the
/// height (an error, asked again at the next block) instead of answering from its older state. Raising it only
/// delays expiry; the answer "exists" ends the wait at any height.
pub const CLAIM_ABSENT_CONFIRMATIONS: i64 = 1;

/// Whether an answer "absent" at `height` does not confirm yet the first one (`first`, none yet: this is it), so
/// the session waits for a later lookup ([`CLAIM_ABSENT_CONFIRMATIONS`]).
fn absence_unconfirmed(first: Option<i64>, height: i64) -> bool {
    first.is_none_or(|first| height < first + CLAIM_ABSENT_CONFIRMATIONS)
}

/// Lookups (one per block) a session decided "no proof required" gets past its settlement height before its
/// settlement may be given up as unknown ([`SessionRecord::settlement_unknown`]). Only an answer ends the wait:
/// the settlement read ([`Event::Settled`]), or the claim found gone where no settlement events can be read
/// (no CometBFT client: the decision stands). A lookup that failed (a node unreachable, block results pruned or
/// discarded, a node behind that still shows the claim) is asked again at the next block, so a claim the chain
/// expired at settlement is counted lost, not pruned as paid because a lookup was *asked*. Counted in the record
/// ([`SessionRecord::settlement_lookups`]), so a process back from a long stop asks as many before giving up.
pub const SETTLED_LOOKUP_BLOCKS: i64 = 8;

/// Blocks past its settlement height before which a session decided "no proof required" is not given up as
/// unknown, however many lookups failed: the lookup waits as long for a CometBFT node that does not have the
/// settlement block yet or does not answer (`driver::lookup`'s `SETTLEMENT_LAG_BLOCKS`, the same value).
pub const SETTLEMENT_WAIT_BLOCKS: i64 = 100;

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
                    } else if !required && record.state == State::Proving {
                        // Checked again after the chain refused the proof as not required
                        // (`TxOutcome::NotRequired`): the chain settles the claim without a proof, as if decided
                        // so at the seed block, and the watch proves it if the params make it required again. It
                        // was counted required: the correction is counted too (proofs owed = required − these).
                        record.proof_required = Some(false);
                        record.state = State::Settled;
                        step.commands.push(Command::RecordProofNotRequired { key: key.clone() });
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
            Event::SettlementUnknown { key } => {
                let unseen = self
                    .sessions
                    .get(&key)
                    .is_some_and(|r| r.state == State::Settled && !r.settlement_seen);
                if !unseen {
                    // Another state: a lookup that found no claim.
                    self.on_chain(&key, false, false, &mut step);
                } else if let Some(record) = self.sessions.get_mut(&key) {
                    Self::settlement_unknown(record, &mut step);
                    step.changed.push(key);
                }
            }
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
                record.settlement_seen,
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
            // Decided "no proof required": what the chain's settlement did is looked up at every block past it
            // until a lookup answers (`settlement_seen`, or the session expired by its settlement), so a claim the
            // chain expired at settlement is counted lost, not pruned as paid. A lookup asked is not an answer: one
            // that failed is asked again. Bounded (SETTLED_LOOKUP_BLOCKS lookups, and not before
            // SETTLEMENT_WAIT_BLOCKS past the settlement): then the settlement is given up as unknown, reported.
            if record.state == State::Settled
                && !record.settlement_seen
                && height > s.settlement
                && record.queried_at != Some(height)
            {
                let asked = i64::from(record.settlement_lookups);
                if asked >= SETTLED_LOOKUP_BLOCKS && height > s.settlement + SETTLEMENT_WAIT_BLOCKS {
                    Self::settlement_unknown(record, step);
                } else {
                    record.queried_at = Some(height);
                    record.settlement_lookups = record.settlement_lookups.saturating_add(1);
                    step.commands.push(Command::LookupOnChain {
                        key: record.key.clone(),
                    });
                }
            }
            let prune_due = match record.state {
                State::Proved | State::Expired(_) | State::Discarded => true,
                State::Settled => height > s.settlement && record.settlement_seen,
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
                record.settlement_seen,
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
mod send_tests;
#[cfg(test)]
mod settlement_event_tests;
#[cfg(test)]
mod settlement_lookup_tests;
#[cfg(test)]
mod skip_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tombstone_tests;
#[cfg(test)]
mod window_loss_tests;
