//! Running the engine's steps: each step's changed records are stored first, then its reports and commands run
//! (most urgent first); when the records cannot be stored, the step's work is deferred or handed back to the
//! engine so that no claim, proof or loss report is lost or counted twice.

use super::*;
use crate::miner::lifecycle::Step;

impl Miner {
    /// Persists each step's changed records, then runs its commands (which may produce more steps).
    ///
    /// A loss is reported exactly when storage says so (lessons.md: revenue-loss metrics must not lie). The
    /// engine emits a report once, when it changes the session in memory, so:
    /// - a step's reports run right after its records are stored, before any command that can fail (a failed
    ///   chain query would otherwise drop a loss that storage already records, and nobody would report it);
    /// - when the records cannot be stored, the reports wait with them ([`Miner::persist_pending`]); if this
    ///   miner loses the leadership first, they are dropped with the in-memory state, and the next leader, which
    ///   restores the older records and moves them itself, reports the loss once.
    ///
    /// A failed command does not stop the others (only a fenced write does: the miner is deposed); the first
    /// error is returned once everything ran.
    pub(super) async fn execute(&mut self, step: Step) -> Result<(), MinerError> {
        let mut queue = vec![step];
        let mut failed = None;
        while let Some(step) = queue.pop() {
            let persisting = std::time::Instant::now();
            let mut written = Vec::new();
            let persisted = self.persist(&step.changed, &mut written).await;
            tracing::debug!(
                changed = step.changed.len(),
                written = persisted.as_ref().ok(),
                elapsed_ms = persisting.elapsed().as_secs_f64() * 1000.0,
                "miner step records persisted"
            );
            if let Err(e) = persisted {
                // The work of the step and of those queued behind it waits for a later block.
                for step in queue.iter().chain(std::iter::once(&step)) {
                    let suppliers = step.changed.iter().map(|k| k.supplier.as_str());
                    let suppliers = suppliers.chain(step.commands.iter().map(command_supplier));
                    self.block_failures.extend(suppliers.map(str::to_owned));
                }
                let stored: HashSet<SessionKey> = written.into_iter().collect();
                self.defer(queue.into_iter().chain(std::iter::once(step)), &stored)
                    .await;
                return Err(e);
            }
            let (reports, mut commands): (Vec<Command>, Vec<Command>) =
                step.commands.into_iter().partition(Command::is_report);
            // Most urgent first (stable: the engine's order within a kind is kept): a block's claims and proofs
            // must leave before their deadline, a block or two away, while a prune (four storage writes, on raft
            // four commits) can wait. Run in the engine's order, a block's prunes went before its submissions.
            commands.sort_by_key(urgency);
            for command in reports.into_iter().chain(commands) {
                let (running, kind) = (std::time::Instant::now(), command_kind(&command));
                let supplier = command_supplier(&command).to_owned();
                let result = self.run_command(command).await;
                self.progressed();
                tracing::debug!(
                    command = kind,
                    elapsed_ms = running.elapsed().as_secs_f64() * 1000.0,
                    "miner command ran"
                );
                match result {
                    Ok(Some(next)) => queue.push(next),
                    Ok(None) => {}
                    // Deposed: nothing more may be written or sent by this miner.
                    Err(e @ MinerError::Storage(storage::StorageError::Fenced(_))) => return Err(e),
                    // One session's failed command (a chain query timed out) must not hold back the others'
                    // claims and proofs due at this height: the rest run, and the failed one comes again at the
                    // next block (lookups and requirement checks are asked again, a send no node took is repeated).
                    Err(e) => {
                        tracing::warn!(error = %e, "a miner command failed; the others of this block still run");
                        failed.get_or_insert(e);
                        self.block_failures.insert(supplier);
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// After a failed record write: the changes of `steps` whose records are not in `stored` wait for
    /// [`Miner::persist_pending`] with their reports (or for any earlier write of their records, which runs those
    /// reports: [`Miner::stored_as`]), their prunes and their claims and proofs are handed back to the engine,
    /// their other commands are dropped (the engine asks for them again at the next block).
    ///
    /// A claim or proof the engine decided is recorded as sent in its session: not run, it is taken back as a
    /// send that never left (`TxOutcome::NotSent`), so it goes at the next block. Left recorded, the session
    /// waited for a re-send two blocks later and spent its one re-send on a tx nobody sent; one more failure
    /// and the claim was lost, or the proof missing (a slash).
    ///
    /// Records in `stored` were written as the engine has them now (all of the steps' changes included), so
    /// their reports run now: were they left waiting and this miner lost the leadership first, the next leader
    /// would restore those records already moved and never report them.
    pub(super) async fn defer(&mut self, steps: impl IntoIterator<Item = Step>, stored: &HashSet<SessionKey>) {
        let mut now = Vec::new();
        // With whether the step's changes may be in `stored` (a step of a take-back is newer than any write).
        let mut steps: Vec<(Step, bool)> = steps.into_iter().map(|s| (s, true)).collect();
        while let Some((step, written)) = steps.pop() {
            self.unpersisted
                .extend(step.changed.into_iter().filter(|k| !(written && stored.contains(k))));
            for command in step.commands {
                let (kind, keys) = match command {
                    report if written && report.report_key().is_some_and(|k| stored.contains(k)) => {
                        now.push(report);
                        continue;
                    }
                    report if report.is_report() => {
                        self.pending_reports.push(report);
                        continue;
                    }
                    // Not run: the engine prunes it again at the next block.
                    Command::Prune { key } => {
                        self.engine.prune_failed(&key);
                        continue;
                    }
                    Command::SubmitClaims { keys, .. } => (TxKind::Claim, keys),
                    Command::SubmitProofs { keys, .. } => (TxKind::Proof, keys),
                    _ => continue,
                };
                // Its changed records (the send taken back) wait as the others do, stored or not; its own
                // commands are deferred as well.
                let taken_back = self.engine.handle(Event::TxOutcome {
                    kind,
                    keys,
                    outcome: TxOutcome::NotSent("the step's session records could not be stored".into()),
                });
                steps.push((taken_back, false));
            }
        }
        for report in now {
            // Reports do no IO that can fail (metrics and a log line).
            if let Err(report_error) = self.run_command(report).await {
                tracing::warn!(error = %report_error, "a loss report failed");
            }
        }
    }

    pub(super) async fn run_command(&mut self, command: Command) -> Result<Option<Step>, MinerError> {
        Ok(match command {
            Command::SubmitClaims { supplier, keys } => Some(self.submit(TxKind::Claim, &supplier, keys).await?),
            Command::SubmitProofs { supplier, keys } => Some(self.submit(TxKind::Proof, &supplier, keys).await?),
            Command::LookupOnChain { key } => Some(self.lookup(key).await?),
            Command::CheckProofRequirement { key } => {
                // A proof found required is reported by the engine's step once its record is stored (module
                // `confirmed`).
                let required = self.proof_required(&key).await?;
                Some(self.engine.handle(Event::ProofRequirement { key, required }))
            }
            Command::RecordClaimConfirmed {
                key,
                service_id,
                session_end,
                compute_units,
            } => {
                self.report_claim_confirmed(&key, &service_id, session_end, compute_units)
                    .await;
                None
            }
            Command::RecordClaimSkipped {
                key,
                service_id,
                value_upokt,
            } => {
                self.report_claim_skipped(&key, &service_id, value_upokt);
                None
            }
            Command::RecordProofValidated { key, service_id } => {
                self.report_proof_validated(&key, &service_id);
                None
            }
            Command::RecordProofRequired { key } => {
                self.report_proof_required(&key);
                None
            }
            Command::RecordProofNotRequired { key } => {
                self.report_proof_not_required(&key);
                None
            }
            Command::RecordSettlementUnknown { key, service_id } => {
                self.report_settlement_unknown(&key, &service_id);
                None
            }
            Command::RecordLoss {
                key,
                reason,
                relays,
                compute_units,
            } => {
                self.stats.sessions_lost.fetch_add(1, AtomicOrdering::Relaxed);
                if self.metrics.is_some() {
                    let (service, end) = self
                        .engine
                        .session(&key)
                        .map(|r| (r.service_id.clone(), r.schedule.session_end))
                        .unwrap_or_default();
                    let upokt = self.upokt(&service, end, compute_units).await;
                    self.count_loss(&key, &service, reason.as_str(), relays, compute_units, upokt);
                    if let Some(m) = &self.metrics {
                        let labels = [key.supplier.as_str(), service.as_str(), reason.as_str()];
                        m.sessions_failed.with_label_values(&labels).inc();
                    }
                }
                tracing::error!(
                    supplier = key.supplier,
                    session = key.session_id,
                    reason = reason.as_str(),
                    relays,
                    compute_units,
                    "session revenue lost"
                );
                None
            }
            Command::RecordUnclaimed {
                key,
                relays,
                compute_units,
                accounted_compute_units,
            } => {
                // The value lost is what the trie is worth minus what the claim pays (each floored as the chain
                // floors it), so the metric adds up exactly to the served relays' value.
                let (service, end) = self
                    .engine
                    .session(&key)
                    .map(|r| (r.service_id.clone(), r.schedule.session_end))
                    .unwrap_or_default();
                if self.metrics.is_some() {
                    let all = self.upokt(&service, end, compute_units).await;
                    let paid = self.upokt(&service, end, accounted_compute_units).await;
                    let upokt = all.zip(paid).map(|(a, p)| a.saturating_sub(p));
                    self.count_loss(
                        &key,
                        &service,
                        "relays_after_claim",
                        relays,
                        compute_units.saturating_sub(accounted_compute_units),
                        upokt,
                    );
                }
                tracing::error!(
                    supplier = key.supplier,
                    session = key.session_id,
                    relays,
                    "served relays reached the trie after the session's claim was built; their revenue is lost"
                );
                None
            }
            Command::RecordDiscard { key } => {
                self.stats.sessions_discarded.fetch_add(1, AtomicOrdering::Relaxed);
                if let Some(m) = &self.metrics {
                    let service = self
                        .engine
                        .session(&key)
                        .map(|r| r.service_id.clone())
                        .unwrap_or_default();
                    m.claims_discarded.with_label_values(&[&key.supplier, &service]).inc();
                }
                tracing::info!(session = key.session_id, "zero-relay session discarded");
                None
            }
            Command::Prune { key } => {
                let open = self.tries.remove(&key);
                let tombstone = match self.delete_session(&key, open.as_ref()).await {
                    Ok(tombstone) => tombstone,
                    Err(e) => {
                        // Deletes are idempotent: the engine prunes it again at the next block.
                        self.engine.prune_failed(&key);
                        return Err(e);
                    }
                };
                // Its record leaves the engine here; its settlement may still be ahead: its tombstone, stored
                // awaiting it, is watched (module `settled`).
                if let Some((tombstone, version)) = tombstone {
                    self.watch_settlement(&tombstone, version);
                }
                self.engine.bury(&key);
                self.versions.remove(&key);
                self.stored.remove(&key);
                // The record holding its kept txs is gone (module `submit::kept`).
                self.kept_txs.held_hashes(&key, None);
                self.stored_txs.remove(&key);
                self.stats.sessions_done.fetch_add(1, AtomicOrdering::Relaxed);
                None
            }
            Command::Forget { key } => {
                // A failed delete is asked again at the next block (the tombstone stays in the engine until then).
                self.writer()?
                    .sessions
                    .delete(&key.supplier, &key.session_id, None)
                    .await?;
                self.engine.forget(&key);
                self.versions.remove(&key);
                self.stored.remove(&key);
                self.stored_txs.remove(&key);
                None
            }
        })
    }
}

/// The order [`Miner::execute`] runs a step's commands in, lowest first: submissions (deadlines), proof
/// requirement checks (a proof follows), lookups (inclusion checks and re-sends), then pruning.
pub(super) fn urgency(command: &Command) -> u8 {
    match command {
        Command::SubmitClaims { .. } | Command::SubmitProofs { .. } => 0,
        Command::CheckProofRequirement { .. } => 1,
        Command::LookupOnChain { .. } => 2,
        Command::RecordLoss { .. }
        | Command::RecordUnclaimed { .. }
        | Command::RecordDiscard { .. }
        | Command::RecordClaimSkipped { .. }
        | Command::RecordClaimConfirmed { .. }
        | Command::RecordProofValidated { .. }
        | Command::RecordProofRequired { .. }
        | Command::RecordProofNotRequired { .. }
        | Command::RecordSettlementUnknown { .. } => 3,
        Command::Prune { .. } | Command::Forget { .. } => 4,
    }
}

/// The supplier whose work `command` is (whose block's work failed when it fails, [`Miner::execute`]).
fn command_supplier(command: &Command) -> &str {
    match command {
        Command::SubmitClaims { supplier, .. } | Command::SubmitProofs { supplier, .. } => supplier,
        Command::LookupOnChain { key }
        | Command::CheckProofRequirement { key }
        | Command::RecordLoss { key, .. }
        | Command::RecordUnclaimed { key, .. }
        | Command::RecordDiscard { key }
        | Command::RecordClaimSkipped { key, .. }
        | Command::RecordClaimConfirmed { key, .. }
        | Command::RecordProofValidated { key, .. }
        | Command::RecordProofRequired { key }
        | Command::RecordProofNotRequired { key }
        | Command::RecordSettlementUnknown { key, .. }
        | Command::Prune { key }
        | Command::Forget { key } => &key.supplier,
    }
}

/// The name of `command`'s kind (the timing log of [`Miner::execute`]).
fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::SubmitClaims { .. } => "submit_claims",
        Command::SubmitProofs { .. } => "submit_proofs",
        Command::LookupOnChain { .. } => "lookup",
        Command::CheckProofRequirement { .. } => "check_proof_requirement",
        Command::RecordLoss { .. } => "record_loss",
        Command::RecordUnclaimed { .. } => "record_unclaimed",
        Command::RecordDiscard { .. } => "record_discard",
        Command::RecordClaimSkipped { .. } => "record_claim_skipped",
        Command::RecordClaimConfirmed { .. } => "record_claim_confirmed",
        Command::RecordProofValidated { .. } => "record_proof_validated",
        Command::RecordProofRequired { .. } => "record_proof_required",
        Command::RecordProofNotRequired { .. } => "record_proof_not_required",
        Command::RecordSettlementUnknown { .. } => "record_settlement_unknown",
        Command::Prune { .. } => "prune",
        Command::Forget { .. } => "forget",
    }
}
