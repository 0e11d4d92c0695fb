//! What the chain paid: every settlement of this miner's claims, counted once from the chain's own events.
//!
//! Why: the loss metrics (`ha_miner_upokt_lost_total` and the like) say what the miner failed to get on chain,
//! not what the chain paid for what it got there. A claim on chain can still be settled for less than it is worth
//! (the application's stake could not cover it: poktroll `EventApplicationOverserviced`), expired by the chain's
//! own proof decision at settlement, or discarded, and an expired claim also slashes the supplier's stake
//! (`EventSupplierSlashed`). Operators migrating from the Go HA RelayMiner have dashboards on its settlement
//! metrics; the Go miner's revenue metrics lied (lessons.md), so these are read from the settlement block's
//! finalize-block events only (module `lookup`, [`crate::chain::settlement`]), never derived from the miner's
//! own state.
//!
//! How: a session whose record is pruned in a state where its claim is on chain (`Proved`, `Settled`, or expired
//! at the proof stage or by a discarded settlement) is watched ([`SettlementWatch::watch`]); a `Proved` session is
//! pruned as soon as its proof is validated, before the chain settles it, so the watch outlives the record. Once
//! the chain is at the session's settlement height (`Schedule::settlement`, the block whose end settles it, §3),
//! the leader reads that block's settlement events (one `block_results` read per block, shared with the lookup
//! through `SettlementCache`) and counts the session's events once. A read that fails is tried again at the
//! next blocks, for [`SETTLEMENT_READ_BLOCKS`] blocks after the first try, then given up with a WARN and
//! `ha_miner_settlements_unread_total{reason="read_failed"}`; a block with no event of the session (its claim
//! was never on chain after all) counts `reason="no_event"`.
//!
//! Durable: the watch is stored with the session's tombstone (module `lifecycle`: the record a prune leaves in
//! storage, on every backend, until `tombstone_blocks` past the later of the prune and the settlement height),
//! which the prune writes with [`SessionRecord::awaiting_settlement`] set. A restarted process or a new leader
//! restores the tombstones with the records and watches again those still awaiting, so a restart or a failover
//! between a session's prune and its settlement block no longer misses what the chain paid for it. Once a
//! settlement block is read, the tombstones of its sessions are written again with the flag cleared (the
//! counted mark: one write per settlement block, [`storage::WriteSets`]; on raft one log entry), and only the
//! sessions whose mark is stored are counted; a mark that cannot be stored is tried again at the next block.
//! A new leadership term drops the watches it held in memory and takes them from storage again (the other
//! leader may have counted them meanwhile).
//!
//! Guarantee: at most once per session across processes and leaders, the mark being stored (a fenced write:
//! only the leader's lands) before the counters move. A session is missed only when its leader stops (or is
//! deposed) after its mark was stored and before it counted, with no await in between, or after a mark write
//! whose outcome it did not learn and before it wrote it again; a Prometheus counter of a process that stops
//! loses more (its increments since the last scrape). Within a process, a session counted is also remembered in
//! memory (until its tombstone would have been forgotten), so a second prune of it counts nothing more. Not
//! watched: sessions pruned by a binary without this flag (their tombstones do not carry it), and sessions
//! pruned without a CometBFT client. A restored watch whose settlement block the node no longer serves (a
//! pruning node, a leader back after long) is given up as `read_failed`.
//!
//! Storage: no record is added and none is kept longer: every watched session already leaves a tombstone, kept
//! at least `tombstone_blocks` (240 by default) past its settlement height, while the count is due at the
//! settlement height and retried for [`SETTLEMENT_READ_BLOCKS`] blocks. The cost is the flag in the tombstone
//! (a few dozen bytes) and one write per settlement block with watched sessions. Only the leader counts (its
//! loop is the one that prunes). Without a CometBFT client nothing is watched: these metrics then stay at zero.
//!
//! Status label (`status`) of the `*_settled_by_status_total` metrics, from the claim's event:
//! - `settled`: `EventClaimSettled` without a proof requirement (paid);
//! - `proven`: `EventClaimSettled` of a claim that required a proof, validated (paid);
//! - `expired`: `EventClaimExpired`, a required proof missing or invalid (not paid; the supplier slashed);
//! - `discarded`: `EventClaimDiscarded`, the chain's settlement failed (not paid).
//!
//! `ha_miner_upokt_earned_total` adds what the supplier's revenue-share holders received for a paid claim (its
//! event's `reward_distribution_detailed` rows of supplier-shareholder distributions, after the mint ratio and
//! the other allocations: the Go miner's meaning), `ha_miner_upokt_settled_total` its `settled_upokt` (what the
//! application's stake paid for it), `ha_miner_compute_units_settled_total` its claimed compute units (all of
//! them, also for a claim capped by the application's stake). `ha_miner_claim_ceiling_exceeded_upokt` adds, for a
//! claim the session's `EventApplicationOverserviced` names, `claimed_upokt − settled_upokt`: what the supplier
//! was not paid, in settlement terms (the overserviced event's burns are in stake terms, the inflation share
//! included).

use std::collections::BTreeMap;

use prometheus::IntCounterVec;

use super::lookup::SETTLEMENT_READ_BLOCKS;
use super::{Miner, MinerError, TOMBSTONE_STATE};
use crate::chain::settlement::{BlockSettlements, ClaimSettlement, SettlementOutcome};
use crate::miner::lifecycle::{LossReason, SessionKey, SessionRecord, State};

/// The settlement metrics' handles (registered with the miner's, `MinerMetrics`).
#[derive(Clone)]
pub struct SettlementMetrics {
    pub(in crate::miner) claims: IntCounterVec,
    pub(in crate::miner) relays: IntCounterVec,
    pub(in crate::miner) compute_units_by_status: IntCounterVec,
    pub(in crate::miner) compute_units: IntCounterVec,
    pub(in crate::miner) upokt_earned: IntCounterVec,
    pub(in crate::miner) upokt_settled: IntCounterVec,
    pub(in crate::miner) ceiling_exceeded: IntCounterVec,
    pub(in crate::miner) ceiling_exceeded_upokt: IntCounterVec,
    pub(in crate::miner) slashed: IntCounterVec,
    pub(in crate::miner) unread: IntCounterVec,
}

/// A watched session: its tombstone as stored (what identifies its events, and where they are), and the version
/// it is stored at (the counted mark overwrites it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Watched {
    /// The session's tombstone, [`SessionRecord::awaiting_settlement`] set.
    tombstone: SessionRecord,
    /// The tombstone's stored version.
    version: u64,
    /// The height of the first failed read of the settlement block, if any.
    failing_since: Option<i64>,
}

impl Watched {
    /// The block whose finalize-block events settle the session.
    pub(super) fn settlement(&self) -> i64 {
        self.tombstone.schedule.settlement
    }
}

/// Sessions whose settlement is yet to be counted, and those counted (pure: no IO).
#[derive(Debug, Default)]
pub(super) struct SettlementWatch {
    pending: BTreeMap<SessionKey, Watched>,
    /// Sessions counted or given up, with their settlement height: never counted again while kept.
    done: BTreeMap<SessionKey, i64>,
}

/// What to do after a failed read of a session's settlement block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadFailure {
    /// Try again at the next block.
    Retry,
    /// Tried for [`SETTLEMENT_READ_BLOCKS`] blocks: give up (counted as unread once its mark is stored).
    GiveUp,
}

impl SettlementWatch {
    /// Whether the session of `record`, a record being pruned, is to be watched: its claim is on chain (its state
    /// says so), and it is neither watched nor counted already.
    pub(super) fn wants(&self, record: &SessionRecord) -> bool {
        let on_chain = matches!(
            record.state,
            State::Proved
                | State::Settled
                | State::Expired(
                    LossReason::ProofWindowMissed | LossReason::ProofNotIncluded | LossReason::SettlementDiscarded
                )
        );
        on_chain && !self.pending.contains_key(&record.key) && !self.done.contains_key(&record.key)
    }

    /// Watches the session of `tombstone`, stored at `version` with [`SessionRecord::awaiting_settlement`] set
    /// (at its prune, or found so in storage): `false` when [`SettlementWatch::wants`] does not.
    pub(super) fn watch(&mut self, tombstone: &SessionRecord, version: u64) -> bool {
        if !self.wants(tombstone) {
            return false;
        }
        self.pending.insert(
            tombstone.key.clone(),
            Watched {
                tombstone: tombstone.clone(),
                version,
                failing_since: None,
            },
        );
        true
    }

    /// Forgets the sessions watched but not counted: a new leadership term restores them from storage (the
    /// previous leader may have counted them meanwhile, and their tombstones' versions may have moved).
    pub(super) fn drop_pending(&mut self) {
        self.pending.clear();
    }

    /// The watched sessions whose settlement block is committed at `height`, by settlement height (sessions of
    /// one block together, so one read serves them all).
    pub(super) fn due(&self, height: i64) -> Vec<(SessionKey, Watched)> {
        let mut due: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, w)| w.settlement() <= height)
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        due.sort_by_key(|(_, w)| w.settlement());
        due
    }

    /// The session was counted (or given up), its mark stored: never again in this process.
    pub(super) fn done(&mut self, key: &SessionKey) {
        if let Some(w) = self.pending.remove(key) {
            self.done.insert(key.clone(), w.settlement());
        }
    }

    /// A read of `key`'s settlement block failed at `height`: retried for `budget` blocks after the first failure
    /// ([`super::lookup::read_budget`]: more while the node does not have the block yet), then given up (the
    /// caller stores its mark, then calls [`SettlementWatch::done`]).
    pub(super) fn read_failed(&mut self, key: &SessionKey, height: i64, budget: i64) -> ReadFailure {
        let Some(w) = self.pending.get_mut(key) else {
            return ReadFailure::GiveUp;
        };
        let since = *w.failing_since.get_or_insert(height);
        if height >= since + budget {
            ReadFailure::GiveUp
        } else {
            ReadFailure::Retry
        }
    }

    /// Forgets the sessions counted whose settlement is more than `keep` blocks before `height` (no record of
    /// them can be pruned again: their tombstones are gone).
    pub(super) fn forget_done(&mut self, height: i64, keep: i64) {
        self.done.retain(|_, settlement| *settlement + keep >= height);
    }

    #[cfg(test)]
    pub(super) fn is_pending(&self, key: &SessionKey) -> bool {
        self.pending.contains_key(key)
    }
}

/// The `status` label of a claim's settlement (module docs).
fn status(outcome: &SettlementOutcome) -> &'static str {
    match outcome {
        SettlementOutcome::Settled { proof_required: false } => "settled",
        SettlementOutcome::Settled { proof_required: true } => "proven",
        SettlementOutcome::Expired { .. } => "expired",
        SettlementOutcome::Discarded { .. } => "discarded",
    }
}

/// A uPOKT amount as a counter increment (saturating: no amount on chain comes near `u64::MAX`).
fn inc(amount: u128) -> u64 {
    u64::try_from(amount).unwrap_or(u64::MAX)
}

impl Miner {
    /// The tombstone the pruned session `key` leaves ([`crate::miner::lifecycle::Engine::tombstone`]), marked
    /// [`SessionRecord::awaiting_settlement`] when its settlement is to be watched: its claim is on chain and a
    /// CometBFT client reads the settlement events.
    pub(super) fn tombstone_of(&self, key: &SessionKey) -> Option<SessionRecord> {
        let mut tombstone = self.engine.tombstone(key)?;
        tombstone.awaiting_settlement = self.comet.is_some() && self.settled.wants(&tombstone);
        Some(tombstone)
    }

    /// Watches the settlement of a session whose tombstone (from [`Miner::tombstone_of`]) was just stored at
    /// `version`, or was found so in storage (a restart, a new leadership term).
    pub(super) fn watch_settlement(&mut self, tombstone: &SessionRecord, version: u64) {
        if self.comet.is_some() && tombstone.forget_after.is_some() && tombstone.awaiting_settlement {
            self.settled.watch(tombstone, version);
        }
    }

    /// Counts the settlements of the watched sessions whose settlement block is committed (once per new block,
    /// by the leader): per settlement block, one read of its events, one write of its sessions' counted marks
    /// ([`Miner::store_counted`]), then the counts of the sessions whose mark is stored. A failed read or mark
    /// write is tried again at the next block and never fails the block's work; only a fenced write (another
    /// instance leads) is returned.
    ///
    /// First, when this leadership term still owes it, the listing that restores the watches of suppliers
    /// removed from the keys file ([`Miner::list_keyless_owed`]): once per block at most, after the block's claims
    /// and proofs, and never failing the block.
    pub(super) async fn count_settlements(&mut self) -> Result<(), MinerError> {
        self.list_keyless_owed().await;
        let height = self.engine.height();
        let due = self.settled.due(height);
        let mut rest = due.as_slice();
        while let Some((_, first)) = rest.first() {
            let at = first.settlement();
            let (block, tail) = rest.split_at(rest.iter().take_while(|(_, w)| w.settlement() == at).count());
            rest = tail;
            let read = self.read_settlements(at).await;
            self.progressed();
            match read {
                Ok(true) => {
                    let (stored, error) = self.store_counted(block).await;
                    for (key, watched) in &block[..stored] {
                        self.count_settlement(key, watched);
                        self.settled.done(key);
                    }
                    Self::mark_not_stored(error, at)?;
                }
                Ok(false) => return Ok(()),
                Err(e) => {
                    let mut given_up = Vec::new();
                    for (key, watched) in block {
                        if self.settled.read_failed(key, height, super::lookup::read_budget(&e)) == ReadFailure::GiveUp
                        {
                            given_up.push((key.clone(), watched.clone()));
                        }
                    }
                    let (stored, error) = self.store_counted(&given_up).await;
                    for (key, watched) in &given_up[..stored] {
                        tracing::warn!(
                            supplier = key.supplier,
                            session = key.session_id,
                            settlement_height = at,
                            error = %e,
                            "cannot read the settlement block's events: what the chain paid for this session is not \
                             counted (ha_miner_settlements_unread_total)"
                        );
                        self.count_unread(key, watched, "read_failed");
                        self.settled.done(key);
                    }
                    Self::mark_not_stored(error, at)?;
                }
            }
        }
        self.settled.forget_done(
            height,
            self.config.engine.tombstone_blocks.max(0) + SETTLEMENT_READ_BLOCKS,
        );
        Ok(())
    }

    /// After [`Miner::store_counted`]: a fenced write is returned (another instance leads and counts what is
    /// left); any other error only delays the count to the next block.
    fn mark_not_stored(error: Option<MinerError>, settlement: i64) -> Result<(), MinerError> {
        match error {
            Some(e) if e.is_fenced() => Err(e),
            Some(e) => {
                tracing::warn!(
                    settlement_height = settlement,
                    error = %e,
                    "cannot store that sessions' settlements are counted: counted at the next block instead"
                );
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Stores the counted mark of `sessions` (each tombstone written again with
    /// [`SessionRecord::awaiting_settlement`] cleared; several as one write, [`storage::WriteSets`]), before
    /// they are counted: a restart or a new leader then never counts them again. Returns how many of them, from
    /// the first, are stored, and the error that stopped the rest.
    async fn store_counted(&self, sessions: &[(SessionKey, Watched)]) -> (usize, Option<MinerError>) {
        if sessions.is_empty() {
            return (0, None);
        }
        let mut writes = Vec::with_capacity(sessions.len());
        for (key, watched) in sessions {
            let mut tombstone = watched.tombstone.clone();
            tombstone.awaiting_settlement = false;
            let data = match serde_json::to_vec(&tombstone) {
                Ok(data) => data,
                Err(e) => return (0, Some(MinerError::Corrupt(e.to_string()))),
            };
            writes.push(storage::RecordWrite {
                supplier: key.supplier.clone(),
                session_id: key.session_id.clone(),
                state: TOMBSTONE_STATE.to_owned(),
                data,
                expected_version: watched.version,
            });
        }
        let writer = match self.writer() {
            Ok(writer) => writer,
            Err(e) => return (0, Some(e)),
        };
        if writes.len() > 1 {
            let set = storage::WriteSet {
                records: writes.clone(),
                ..Default::default()
            };
            match writer.write_sets.write(set).await {
                Ok(_) => return (writes.len(), None),
                // One by one below, where a conflict is resolved.
                Err(storage::StorageError::Conflict(_)) => {}
                Err(e) => return (0, Some(e.into())),
            }
        }
        let n = writes.len();
        for (i, write) in writes.into_iter().enumerate() {
            if let Err(e) = Self::store_mark(writer, write).await {
                return (i, Some(e));
            }
        }
        (n, None)
    }

    /// One counted mark. On a version conflict (a write of this process whose answer was lost: only the leader
    /// writes, fenced) the stored record is read again: a tombstone is written at its version; no record, or a
    /// live record (the tombstone forgotten, a relay of the session mined anew), is left alone: no watch can be
    /// restored from it, so the session is counted here once.
    async fn store_mark(writer: &storage::Storage, write: storage::RecordWrite) -> Result<(), MinerError> {
        let storage::RecordWrite {
            supplier,
            session_id,
            state,
            data,
            expected_version,
        } = write;
        match writer
            .sessions
            .put(&supplier, &session_id, &state, data.clone(), expected_version)
            .await
        {
            Ok(_) => Ok(()),
            Err(storage::StorageError::Conflict(_)) => {
                let Some(current) = writer.sessions.get(&supplier, &session_id).await? else {
                    return Ok(());
                };
                if current.state == TOMBSTONE_STATE {
                    writer
                        .sessions
                        .put(&supplier, &session_id, &state, data, current.version)
                        .await?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Counts one session's settlement from the block just read.
    fn count_settlement(&self, key: &SessionKey, w: &Watched) {
        let block: &BlockSettlements = self.settlement_block();
        let (t, settlement) = (&w.tombstone, w.settlement());
        let (application, service_id, session_end) = (&t.application_address, &t.service_id, t.schedule.session_end);
        let claim: Option<&ClaimSettlement> = block.claims.iter().find(|s| {
            s.is_for(&key.supplier, application, service_id, session_end)
                && s.session_id.as_ref().is_none_or(|id| *id == key.session_id)
        });
        let Some(claim) = claim else {
            tracing::warn!(
                supplier = key.supplier,
                session = key.session_id,
                settlement_height = settlement,
                "the settlement block has no event of this session's claim: nothing counted as settled"
            );
            self.count_unread(key, w, "no_event");
            return;
        };
        let status = status(&claim.outcome);
        let paid = matches!(claim.outcome, SettlementOutcome::Settled { .. });
        let (relays, compute_units) = (claim.relays.unwrap_or(0), claim.compute_units.unwrap_or(0));
        let overserviced = block
            .overserviced
            .iter()
            .find(|o| o.is_for(&key.supplier, application, service_id, session_end));
        let slashed = block
            .slashed
            .iter()
            .find(|s| s.is_for(&key.supplier, application, service_id, session_end));
        tracing::info!(
            supplier = key.supplier,
            session = key.session_id,
            status,
            relays,
            compute_units,
            settled_upokt = claim.settled_upokt.map(|v| v.to_string()),
            claimed_upokt = claim.claimed_upokt.map(|v| v.to_string()),
            overserviced_by_upokt = overserviced.map(|o| o.exceeded_by().to_string()),
            slashed_upokt = slashed.map(|s| s.penalty.to_string()),
            "session settled on chain"
        );
        let Some(m) = self.metrics.as_ref().map(|m| &m.settlement) else {
            return;
        };
        let ss = [key.supplier.as_str(), service_id.as_str()];
        let by_status = [key.supplier.as_str(), service_id.as_str(), status];
        m.claims.with_label_values(&by_status).inc();
        m.relays.with_label_values(&by_status).inc_by(relays);
        m.compute_units_by_status
            .with_label_values(&by_status)
            .inc_by(compute_units);
        if paid {
            m.compute_units.with_label_values(&ss).inc_by(compute_units);
            match claim.settled_upokt {
                Some(upokt) => m.upokt_settled.with_label_values(&ss).inc_by(inc(upokt)),
                None => tracing::warn!(
                    supplier = key.supplier,
                    session = key.session_id,
                    "the settlement event carries no settled_upokt (a release before v0.1.35?): \
                     ha_miner_upokt_settled_total misses it"
                ),
            }
            match claim.supplier_share_upokt {
                Some(upokt) => m.upokt_earned.with_label_values(&ss).inc_by(inc(upokt)),
                None => tracing::warn!(
                    supplier = key.supplier,
                    session = key.session_id,
                    "the settlement event carries no readable reward_distribution_detailed (a release before \
                     v0.1.33?): ha_miner_upokt_earned_total misses it"
                ),
            }
        }
        if overserviced.is_some() {
            m.ceiling_exceeded.with_label_values(&ss).inc();
            // In settlement terms, what the supplier was not paid: the claim's worth less its settlement (the
            // overserviced event's burns are in stake terms, the inflation share included).
            if let (Some(claimed), Some(settled)) = (claim.claimed_upokt, claim.settled_upokt) {
                m.ceiling_exceeded_upokt
                    .with_label_values(&ss)
                    .inc_by(inc(claimed.saturating_sub(settled)));
            }
        }
        if slashed.is_some() {
            m.slashed.with_label_values(&ss).inc();
        }
    }

    fn count_unread(&self, key: &SessionKey, w: &Watched, reason: &str) {
        if let Some(m) = &self.metrics {
            m.settlement
                .unread
                .with_label_values(&[key.supplier.as_str(), w.tombstone.service_id.as_str(), reason])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::miner::lifecycle::Schedule;

    #[test]
    fn each_outcome_has_its_status_label() {
        assert_eq!(status(&SettlementOutcome::Settled { proof_required: false }), "settled");
        assert_eq!(status(&SettlementOutcome::Settled { proof_required: true }), "proven");
        assert_eq!(
            status(&SettlementOutcome::Expired {
                reason: "PROOF_MISSING".into()
            }),
            "expired"
        );
        assert_eq!(status(&SettlementOutcome::Discarded { error: "x".into() }), "discarded");
    }

    fn record(session: &str, state: State, settlement: i64) -> SessionRecord {
        let key = SessionKey {
            supplier: "pokt1supplier".into(),
            session_id: session.into(),
        };
        let schedule = Schedule {
            session_start: 1,
            session_end: 10,
            claim_open: 11,
            claim_close: 15,
            proof_open: 15,
            proof_close: 19,
            settlement,
        };
        SessionRecord {
            state,
            relays: 3,
            compute_units: 30,
            claim_sent_at: vec![11],
            claim_reached_node: true,
            claim_built: true,
            ..SessionRecord::new(key, "anvil".into(), "pokt1app".into(), schedule)
        }
    }

    /// Only sessions whose claim is on chain are watched, each once: a second prune of the same session (a
    /// record persisted as pruned is pruned again) or one counted already adds nothing.
    #[test]
    fn sessions_with_a_claim_on_chain_are_watched_once() {
        let mut w = SettlementWatch::default();
        assert!(w.watch(&record("proved", State::Proved, 19), 1));
        assert!(!w.watch(&record("proved", State::Proved, 19), 1), "watched already");
        assert!(w.watch(&record("settled", State::Settled, 19), 1));
        assert!(w.watch(
            &record("lost-proof", State::Expired(LossReason::ProofNotIncluded), 19),
            1
        ));
        assert!(!w.watch(
            &record("no-claim", State::Expired(LossReason::ClaimWindowMissed), 19),
            1
        ));
        assert!(!w.watch(
            &record("no-claim-2", State::Expired(LossReason::ClaimNotIncluded), 19),
            1
        ));
        assert!(!w.watch(&record("zero", State::Discarded, 19), 1));
        assert!(w.due(18).is_empty(), "the settlement block is not committed yet");
        assert_eq!(w.due(19).len(), 3);
        let proved = record("proved", State::Proved, 19).key;
        w.done(&proved);
        assert!(!w.watch(&record("proved", State::Proved, 19), 1), "counted already");
        assert_eq!(w.due(25).len(), 2);
        // Forgotten once no record of it can come back (its tombstone is gone).
        w.forget_done(19 + 240, 240);
        assert!(!w.watch(&record("proved", State::Proved, 19), 1));
        w.forget_done(19 + 241, 240);
        assert!(w.watch(&record("proved", State::Proved, 19), 1));
    }

    /// A new leadership term forgets the sessions watched but not counted (they come back from storage, unless
    /// the other leader counted them), and keeps those counted.
    #[test]
    fn a_new_term_drops_the_pending_watches_and_keeps_the_counted() {
        let mut w = SettlementWatch::default();
        let (pending, counted) = (
            record("pending", State::Proved, 19),
            record("counted", State::Proved, 19),
        );
        assert!(w.watch(&pending, 1) && w.watch(&counted, 1));
        w.done(&counted.key);
        w.drop_pending();
        assert!(!w.is_pending(&pending.key));
        assert!(w.due(30).is_empty());
        assert!(w.wants(&pending), "watched again when restored awaiting");
        assert!(!w.wants(&counted), "counted in this process");
    }

    /// Sessions of the earlier settlement block come first, so one read serves all of a block's.
    #[test]
    fn due_sessions_come_by_settlement_height() {
        let mut w = SettlementWatch::default();
        w.watch(&record("a", State::Proved, 29), 1);
        w.watch(&record("b", State::Proved, 19), 1);
        w.watch(&record("c", State::Settled, 29), 1);
        let due: Vec<i64> = w.due(30).iter().map(|(_, w)| w.settlement()).collect();
        assert_eq!(due, vec![19, 29, 29]);
    }

    /// A failed read is tried again for `SETTLEMENT_READ_BLOCKS` blocks after the first failure, then given up.
    #[test]
    fn a_failing_read_is_retried_for_a_few_blocks_then_given_up() {
        let mut w = SettlementWatch::default();
        let r = record("a", State::Proved, 19);
        w.watch(&r, 1);
        for height in 20..20 + SETTLEMENT_READ_BLOCKS {
            assert_eq!(
                w.read_failed(&r.key, height, SETTLEMENT_READ_BLOCKS),
                ReadFailure::Retry,
                "at {height}"
            );
            assert!(w.is_pending(&r.key));
        }
        assert_eq!(
            w.read_failed(&r.key, 20 + SETTLEMENT_READ_BLOCKS, SETTLEMENT_READ_BLOCKS),
            ReadFailure::GiveUp
        );
        assert!(w.is_pending(&r.key), "pending until its mark is stored");
        w.done(&r.key);
        assert!(!w.is_pending(&r.key));
        assert!(!w.watch(&r, 1), "given up: not watched again");
    }
}
