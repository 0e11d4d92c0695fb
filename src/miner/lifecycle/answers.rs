//! How the engine moves a session on what the driver found out: a tx's outcome ([`Event::TxOutcome`]), a claim
//! or proof looked up on chain ([`Event::OnChain`]) and a settlement read from the chain's events
//! ([`Event::Settled`]), with the transitions they share (a claim confirmed, a proof done, a session expired).

use super::*;

impl Engine {
    pub(super) fn on_tx_outcome(&mut self, kind: TxKind, key: &SessionKey, outcome: &TxOutcome, step: &mut Step) {
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
            TxOutcome::Retryable(_) | TxOutcome::NotSent(_) | TxOutcome::Refused(_) | TxOutcome::NotRequired(_) => {
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
                if kind == TxKind::Proof && matches!(outcome, TxOutcome::NotRequired(_)) {
                    // The chain no longer requires this proof (its live proof params changed since the seed
                    // block): check the requirement again rather than re-sending it at every block until the
                    // close; a session found not required ends `Settled` (`Event::ProofRequirement`).
                    record.queried_at = Some(self.height);
                    step.commands.push(Command::CheckProofRequirement { key: key.clone() });
                    step.changed.push(key.clone());
                } else if matches!(outcome, TxOutcome::Refused(_) | TxOutcome::NotRequired(_))
                    && record.queried_at != Some(self.height)
                {
                    // A refusal may mean another instance's claim or proof is already there: ask the chain.
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

    pub(super) fn on_chain(&mut self, key: &SessionKey, claim_exists: bool, proof_validated: bool, step: &mut Step) {
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
    pub(super) fn on_settled(
        &mut self,
        key: &SessionKey,
        outcome: &crate::chain::settlement::SettlementOutcome,
        step: &mut Step,
    ) {
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
    pub(super) fn record_unclaimed(record: &mut SessionRecord, step: &mut Step) {
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
    pub(super) fn confirm_claim(record: &SessionRecord, step: &mut Step) {
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
    pub(super) fn prove(record: &mut SessionRecord, step: &mut Step) {
        record.state = State::Proved;
        step.commands.push(Command::RecordProofValidated {
            key: record.key.clone(),
            service_id: record.service_id.clone(),
        });
    }

    /// Ends a session decided "no proof required" whose settlement the chain never told
    /// ([`SessionRecord::settlement_unknown`]): neither paid nor lost, reported once, then pruned.
    pub(super) fn settlement_unknown(record: &mut SessionRecord, step: &mut Step) {
        record.settlement_seen = true;
        record.settlement_unknown = true;
        step.commands.push(Command::RecordSettlementUnknown {
            key: record.key.clone(),
            service_id: record.service_id.clone(),
        });
    }

    /// Ends the session as lost. Before its claim is on chain the whole trie is lost; after (a proof-stage
    /// loss) what is lost is what the claim pays for: relays beyond it were recorded when the claim was found.
    pub(super) fn expire(record: &mut SessionRecord, reason: LossReason, step: &mut Step) {
        record.state = State::Expired(reason);
        let (relays, compute_units) = record.claimed.unwrap_or((record.relays, record.compute_units));
        step.commands.push(Command::RecordLoss {
            key: record.key.clone(),
            reason,
            relays,
            compute_units,
        });
    }
}
