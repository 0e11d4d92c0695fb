//! Ingest: the relay log into one trie per (supplier, session), leader only, at-least-once and idempotent.
//!
//! A redelivered relay overwrites its own leaf (same relay hash); the engine is told the trie's totals (not
//! increments), and entries are acknowledged only after the trie batch is committed to storage.
//!
//! The claimed trie is frozen. Once a session's claim has been decided (`SessionRecord::claim_built`, never
//! taken back, even when the send's outcome is unknown), relays for it no longer enter its trie. A relay validated in the grace period can still reach the miner after that (the
//! relayer appends it only when the backend answered, and a relayer's height may lag the miner's). Inserted,
//! it would change the trie the proof is built from, and a proof against any root other than the one claimed
//! on chain fails (spec §5.4 step 17): the claim is then lost and the supplier slashed for a missing proof.
//! Such relays go to a separate *late* trie in the namespace `{session}/late`, so each is still counted once
//! (the engine's totals are claimed + late, and records the late ones as `relays_after_claim`), and a relay the
//! claimed trie already holds (redelivered after a crash) is not counted again.
//!
//! The freeze is a point in the relay log, not a moment: right before the claims a block decided are built, a
//! freeze read ([`Miner::freeze_read`]) takes what their suppliers' relayers appended since the iteration's
//! round read their logs (an append in flight at the claim's block, a relayer a block behind) into the claimed
//! tries. Every relay appended before that read is in the claim; one appended after it goes to the late trie,
//! counted (`MinerStats::relays_late`, then `relays_after_claim`) and logged at WARN (throttled), never lost
//! silently.
//!
//! Every relay is weighted with the chain's `compute_units_per_relay` of its service at the session's start
//! height (spec §5, §6.1: the chain refuses a claim whose sum is not its count times that value; the difficulty
//! multiplier is not in the weight, only in the claim's uPOKT value), read once per session from the chain client
//! (cached there too), not with the value in the relay-log entry. In a mixed fleet one relayer can weigh with
//! another value (a stale cache across a governance change of the service's compute units, another
//! implementation): trusted, the trie's sum would not be count × the chain's value and the claim would be
//! refused. Such entries are counted (`ha_miner_relays_reweighted_total`) and logged at WARN (throttled).
//!
//! A relay too large for a proof of it to fit a tx (`transaction.max_tx_bytes` less
//! [`crate::smst::MAX_PROOF_OVERHEAD_BYTES`]; the proof carries the whole relay, spec §5.4) is not counted into any trie. If
//! the chain picked it for the session's proof, no node would take the proof tx (CometBFT refuses txs over its
//! `mempool.max_tx_bytes` at CheckTx): the whole claim would expire and the supplier be slashed for a missing
//! proof. Left out, only that relay's reward is lost. It is acknowledged, counted in
//! `ha_miner_relays_rejected_total{reason="too_large_to_prove"}` and logged (throttled).
//!
//! A pruned session is gone for good. A relay of a session whose tombstone the engine keeps (module
//! `lifecycle`: the session was pruned, its relays paid for or counted lost) is acknowledged with its batch and
//! not mined: no trie is opened and no record started for it. It is counted in
//! `ha_miner_relays_rejected_total{reason="session_pruned"}` and logged at WARN at most once per
//! [`AFTER_PRUNE_LOG_EVERY`] (with the number held back): a relayer whose chain view lags, or an entry redelivered
//! long after its session, is worth a line, not one per relay. The tombstone is checked before the size, so a
//! relay of a pruned session that is also too large is counted as `session_pruned` (why it is not mined).

use std::collections::HashMap;
use std::sync::atomic::Ordering as AtomicOrdering;

use prost::Message as _;

use super::{Miner, MinerError};
use crate::miner::lifecycle::{Event, Schedule, SessionKey, Step};
use crate::protocol::session::SessionWindows;
use crate::protocol::wire::{MinedRelayMessage, SessionHeader};

/// Most relay-log entries one ingest batch takes (one trie commit, one record write and one ack per batch).
///
/// An ingest round of a supplier reads batches until a read of new entries returns fewer than asked for, then
/// stops until the next tick (or earlier, at [`INGEST_ROUND_BATCHES`] or [`INGEST_ROUND_TIME`]). It used to read until the log was empty: under steady load the log is never empty for
/// long, so the miner chased it in batches of a few relays, each with a durable trie commit, record write and
/// ack (~1,100 durable redb commits per second at 2,000 relays/s, each writing out the pages redb had buffered
/// since the last one, e.g. the relay WAL's applies, and syncing), and the relayer's added p50 at that rate went
/// from ~1.0 to ~2.0 ms (BENCHMARKS.md, Relayer).
pub(super) const INGEST_BATCH: usize = 512;

/// `reason` of `ha_miner_relays_rejected_total` for a relay too large to prove (module docs).
const TOO_LARGE: &str = "too_large_to_prove";
/// `reason` of `ha_miner_relays_rejected_total` for a relay of a pruned session (module docs).
const PRUNED: &str = "session_pruned";
/// `reason` of `ha_miner_relays_rejected_total` for a relay whose session's stored trie cannot be read (its
/// records malformed: damaged, or not this miner's, e.g. a Go miner's trie under the same Redis key). That
/// session cannot be claimed from it; its relays are acknowledged and counted, so the supplier's later relays,
/// behind them in the log, are still ingested. Left pending, they were read first in every round and failed it:
/// the supplier's ingest stopped, and every later session went unclaimed.
const TRIE_UNREADABLE: &str = "trie_unreadable";

/// What one ingest batch counts, counted (metrics and [`super::MinerStats`]) exactly when its entries are
/// acknowledged, which is when they will not be read again:
/// - not before: a batch whose write fails stays pending and is read again, and counting at reading counted its
///   rejected relays once per failed write (a store refusing writes for a while inflated `too_large_to_prove`,
///   a lost reward, many times over);
/// - not after the step's commands: the write that acknowledges the entries succeeded, so a command failing
///   after it (a prune re-issued and failing again) must not skip counting them, or nobody ever would.
#[derive(Default)]
struct BatchCounts {
    /// Entries of the batch (`MinerStats::relays_ingested`).
    entries: u64,
    /// Relays put into tries, by service (`ha_miner_relays_consumed_from_stream_total`).
    consumed: HashMap<String, u64>,
    rejected: Rejections,
    /// Relays whose entry's compute units per relay were not the chain's, by service
    /// (`ha_miner_relays_reweighted_total`).
    reweighted: HashMap<String, u64>,
    /// Relays put into a late trie that did not hold them (`MinerStats::relays_late`).
    late: u64,
}

/// Relays of one ingest batch acknowledged without being mined, by `(reason, service)`.
#[derive(Default)]
struct Rejections(HashMap<(&'static str, String), u64>);

impl Rejections {
    fn note(&mut self, reason: &'static str, service: &str) {
        *self.0.entry((reason, service.to_owned())).or_default() += 1;
    }
}

/// Entries of the first read of a round whose supplier's log was not caught up at the end of its last round (or
/// that this leadership has not ingested yet): the entries' size is not known yet, and at the largest provable
/// relays (~880 KB at the default `transaction.max_tx_bytes`) a full batch would be a ~450 MB read and trie
/// commit, more than one Redis reply can carry within its response timeout, failing every round.
pub(super) const INGEST_PROBE: usize = 16;

/// Relay bytes one ingest batch aims at: after the first read, a round's reads ask for as many entries as fit
/// this at the mean size of the previous batch's (at most [`INGEST_BATCH`], at least one).
pub(super) const INGEST_BATCH_BYTES: usize = 16 << 20;

/// Batches one ingest round of one supplier reads at most.
pub(super) const INGEST_ROUND_BATCHES: usize = 8;

/// Time after which one ingest round stops reading (checked between batches; every supplier gets at least one
/// batch per round). At most a quarter of the leadership lease, so the iteration that ingests still renews the
/// lease and handles its block in time: an unbounded round over a backlog (a restart after an outage, relayers
/// appending faster than one leader ingests) let the lease lapse, leadership flap with a full reload each time,
/// and no block was handled meanwhile (proofs missed their windows).
pub(super) const INGEST_ROUND_TIME: std::time::Duration = std::time::Duration::from_millis(300);

/// When an ingest round stops reading, checked between batches (every supplier still gets one batch per round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoundBound {
    /// [`INGEST_ROUND_TIME`] or a quarter of the lease, whichever is shorter: what runs.
    Time,
    /// After this many batches of the round, over all its suppliers: for tests, whose counts must not depend on
    /// how fast the host is.
    #[cfg_attr(not(test), allow(dead_code))]
    Batches(usize),
}

/// Entries the next read of a round asks for, given the previous batch's (module constants).
fn next_read_size(previous: &[storage::LogEntry]) -> usize {
    let bytes: usize = previous.iter().map(|e| e.relay.payload.len()).sum();
    let mean = (bytes / previous.len().max(1)).max(1);
    (INGEST_BATCH_BYTES / mean).clamp(1, INGEST_BATCH)
}

/// At most one WARN per this interval about relays of pruned sessions.
pub(super) const AFTER_PRUNE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The trie namespace of a session's late relays (see the module docs).
pub(super) fn late_namespace(session_id: &str) -> String {
    format!("{session_id}/late")
}

impl Miner {
    /// One ingest round ([`Miner::ingest_round`]), noting when it took any relay (`ingest_busy_at`: the extra
    /// rounds between ticks run for a tick after that, see [`super::MinerConfig::ingest_every`]).
    pub(super) async fn ingest(&mut self) -> Result<(), MinerError> {
        let before = self.stats.relays_ingested.load(AtomicOrdering::Relaxed);
        let result = self.ingest_round().await;
        if self.stats.relays_ingested.load(AtomicOrdering::Relaxed) != before {
            self.ingest_busy_at = Some(std::time::Instant::now());
        }
        result
    }

    async fn ingest_round(&mut self) -> Result<(), MinerError> {
        // Only the leader builds tries: followers' engines would diverge from the records the leader persists.
        if !self.engine.is_leader() {
            return Ok(());
        }
        let deadline = std::time::Instant::now() + INGEST_ROUND_TIME.min(self.config.lease / 4);
        let mut round_batches = 0usize;
        // Every supplier gets at least one batch per round, and the round starts at the next supplier each time:
        // in a fixed order, the first suppliers' batches used up the time bound every round and the last ones
        // got a single batch each, so a busy one at the end never caught up (its claims held, then built from
        // part of its relays).
        let mut suppliers: Vec<String> = self.signers.keys().cloned().collect();
        let start = self.ingest_rotation % suppliers.len().max(1);
        self.ingest_rotation = self.ingest_rotation.wrapping_add(1);
        suppliers.rotate_left(start);
        self.ingest_each(suppliers, deadline, &mut round_batches).await
    }

    /// Ingests `suppliers` in turn ([`Miner::ingest_supplier`]). A supplier whose ingest fails (a read storage
    /// refuses, a chain read its relays need) does not keep the suppliers after it from being ingested: the rest
    /// go on and the first error is returned (not caught up, that supplier's claims are held). A fenced write ends
    /// it at once: another instance leads.
    async fn ingest_each(
        &mut self,
        suppliers: impl IntoIterator<Item = String>,
        deadline: std::time::Instant,
        round_batches: &mut usize,
    ) -> Result<(), MinerError> {
        let mut first_error = None;
        for supplier in suppliers {
            let ingested = self.ingest_supplier(&supplier, deadline, round_batches).await;
            self.progressed();
            match ingested {
                Ok(()) => {}
                Err(e) if e.is_fenced() => return Err(e),
                Err(e) => {
                    tracing::debug!(supplier, error = %e, "supplier's ingest failed; the others go on");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reads `supplier`'s relay log into its sessions' tries, batch by batch, until a read finds it caught up or
    /// the round's bound (`deadline`, or [`RoundBound::Batches`] over `round_batches`) is reached.
    async fn ingest_supplier(
        &mut self,
        supplier: &str,
        deadline: std::time::Instant,
        round_batches: &mut usize,
    ) -> Result<(), MinerError> {
        // A round that stops at its bound leaves the supplier's claims held until a later one catches up
        // (`Engine::set_ingest_caught_up`); marked before the first batch, whose events may advance the engine.
        // The first read asks for what the supplier's last batch sized (a full batch, not a probe, for one
        // that fell behind); the probe only when nothing is known of its entries.
        let mut want = match (
            self.ingest_read_size.get(supplier),
            self.engine.ingest_caught_up(supplier),
        ) {
            (Some(size), _) => *size,
            (None, Some(true)) => INGEST_BATCH,
            (None, _) => INGEST_PROBE,
        };
        self.engine.set_ingest_caught_up(supplier, false);
        for batch in 1..=INGEST_ROUND_BATCHES {
            let (entries, caught_up) = match self.read_batch(supplier, want).await {
                Ok(read) => read,
                Err(e) => {
                    // The read may have asked for more than storage can answer in time (on Redis a reply
                    // that outlasts the response timeout, its entries left pending): asked again at the same
                    // size, it failed every round and the supplier's ingest stopped. The next round probes
                    // (the supplier is not caught up) and sizes up from what it reads.
                    self.ingest_read_size.remove(supplier);
                    return Err(e);
                }
            };
            if entries.is_empty() {
                self.engine.set_ingest_caught_up(supplier, true);
                return Ok(());
            }
            want = next_read_size(&entries);
            self.ingest_read_size.insert(supplier.to_owned(), want);
            let mut touched: HashMap<SessionKey, (Schedule, String, String)> = HashMap::new();
            let mut counts = BatchCounts {
                entries: entries.len() as u64,
                ..BatchCounts::default()
            };
            // Sessions of this batch whose stored trie cannot be read (not opened again for each relay).
            let mut unreadable: std::collections::HashSet<SessionKey> = std::collections::HashSet::new();
            for entry in &entries {
                let Some((message, hash)) = self.readable(supplier, entry, &mut counts.rejected) else {
                    continue;
                };
                let key = SessionKey {
                    supplier: supplier.to_owned(),
                    session_id: message.session_id.clone(),
                };
                // The pruned session first: a relay of it is refused whatever its size, and counted for that.
                if self.engine.is_tombstoned(&key) {
                    self.after_prune(&key, &message, entry, &mut counts.rejected);
                    continue;
                }
                if !self.provable(supplier, &message, &mut counts.rejected) {
                    continue;
                }
                if unreadable.contains(&key) {
                    counts.rejected.note(TRIE_UNREADABLE, &message.service_id);
                    continue;
                }
                match self.insert(&key, &message, &hash, &mut counts).await {
                    Ok(()) => {}
                    Err(e) if unreadable_trie(&e) => {
                        tracing::error!(
                            supplier,
                            session = key.session_id,
                            error = %e,
                            "the session's stored trie cannot be read: its relays are acknowledged without being \
                             mined (ha_miner_relays_rejected_total{{reason=\"trie_unreadable\"}}) so the \
                             supplier's later relays are still ingested"
                        );
                        counts.rejected.note(TRIE_UNREADABLE, &message.service_id);
                        unreadable.insert(key);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                *counts.consumed.entry(message.service_id.clone()).or_default() += 1;
                let schedule = self.schedule(message.session_end_height).await?;
                touched.entry(key).or_insert((
                    schedule,
                    message.service_id.clone(),
                    message.application_address.clone(),
                ));
            }
            // The record takes the tries' totals, not this batch's increments: after a crash between the trie
            // commit and the record/ack, redelivered relays are already in a trie and add nothing to it.
            let ids: Vec<storage::EntryId> = entries.iter().map(|e| e.id).collect();
            let mut step = Step::default();
            let mut tries = Vec::new();
            for (key, (schedule, service_id, application_address)) in touched {
                let open = self
                    .tries
                    .get(&key)
                    .ok_or_else(|| MinerError::Corrupt("trie vanished".into()))?;
                let (mut relays, mut compute_units) = (open.trie.count(), open.trie.sum());
                if open.trie.has_uncommitted_changes() {
                    let batch = open.trie.pending_batch();
                    tries.push((key.clone(), false, batch));
                }
                if let Some(late) = &open.late {
                    if late.has_uncommitted_changes() {
                        tries.push((key.clone(), true, late.pending_batch()));
                    }
                    relays += late.count();
                    compute_units += late.sum();
                }
                step.merge(self.engine.handle(Event::RelaysIngested {
                    key,
                    service_id,
                    application_address,
                    schedule,
                    relays,
                    compute_units,
                }));
            }
            self.commit_batch(supplier, tries, step, ids, counts).await?;
            self.progressed();
            if caught_up {
                self.engine.set_ingest_caught_up(supplier, true);
                return Ok(());
            }
            *round_batches += 1;
            let bounded = match self.ingest_bound {
                RoundBound::Time => std::time::Instant::now() >= deadline,
                RoundBound::Batches(max) => *round_batches >= max,
            };
            if batch == INGEST_ROUND_BATCHES || bounded {
                tracing::debug!(
                    supplier,
                    batches = batch,
                    "ingest round bounded with relay-log entries left; continued next tick, claims held"
                );
                break;
            }
        }
        Ok(())
    }

    /// Writes one ingest batch: its sessions' trie batches, their records and the ack of its entries as ONE
    /// storage write ([`storage::WriteSets`], all or nothing; on raft one log entry instead of one per trie,
    /// record and ack), then runs the step's commands. The ack is in the write that makes the relays durable in
    /// their tries, so an acknowledged relay is always in a stored trie, and a crash leaves the batch written
    /// whole or not at all (its entries redelivered, the tries reopened at their last commit). A batch whose step
    /// has no command is eventually durable ([`ingest_durability`]).
    ///
    /// When a record changed under this leader, or raft's version gate refuses write sets while a member has not
    /// advertised them (both the write set's `Conflict`, nothing written), the batch is written as before write
    /// sets: the tries first, then the records (the conflict taken over there, a failure
    /// keeping them and their reports waiting), then the ack. Any other failure writes nothing and keeps it all
    /// waiting (see the last match arm).
    async fn commit_batch(
        &mut self,
        supplier: &str,
        tries: Vec<(SessionKey, bool, storage::NodeBatch)>,
        step: Step,
        ids: Vec<storage::EntryId>,
        counts: BatchCounts,
    ) -> Result<(), MinerError> {
        let records = self.record_writes(&step.changed)?;
        let (written, tries): (Vec<(SessionKey, bool)>, Vec<storage::TrieWrite>) = tries
            .into_iter()
            .map(|(key, late, batch)| {
                let namespace = if late {
                    late_namespace(&key.session_id)
                } else {
                    key.session_id.clone()
                };
                let write = storage::TrieWrite {
                    supplier: key.supplier.clone(),
                    namespace,
                    batch,
                };
                ((key, late), write)
            })
            .unzip();
        let set = storage::WriteSet {
            tries,
            records: records.iter().map(|(_, _, w)| w.clone()).collect(),
            acks: vec![storage::LogAck {
                supplier: supplier.to_owned(),
                ids: ids.clone(),
            }],
            durability: self.batch_durability(&step, &counts),
        };
        match self.writer()?.write_sets.write(set).await {
            Ok(outcome) => {
                for (key, late) in written {
                    let Some(open) = self.tries.get_mut(&key) else {
                        continue;
                    };
                    match (late, &mut open.late) {
                        (false, _) => open.trie.mark_committed(),
                        (true, Some(trie)) => trie.mark_committed(),
                        (true, None) => {}
                    }
                }
                for ((key, record, _), version) in records.into_iter().zip(outcome.versions) {
                    self.stored_as(key, record, version);
                }
                self.run_due_reports().await;
                // Acknowledged: never read again, so counted now, whatever the step's commands do.
                self.count_batch(supplier, counts);
                // The records are stored: this persists nothing more and runs the step's commands.
                self.execute(step).await
            }
            Err(e @ storage::StorageError::Conflict(_)) => {
                tracing::debug!(supplier, error = %e, "ingest batch write conflicted; writing its parts one by one");
                // Every trie of the batch before its ack (a trie whose record did not change included); when this
                // fails, the records' write below fails on the same tries and keeps them waiting.
                let keys: Vec<SessionKey> = written.into_iter().map(|(key, _)| key).collect();
                let flushed = self.flush_tries(&keys).await;
                self.execute(step).await?;
                if !flushed?.is_empty() {
                    // Rolled back (storage out of memory, `Miner::flush_tries`): the batch's relays are not all in
                    // stored tries, so its entries stay pending and are read again.
                    return Err(storage::StorageError::OutOfMemory(
                        "the ingest batch's trie changes were refused and rolled back".into(),
                    )
                    .into());
                }
                self.writer()?.relay_log.ack(supplier, &ids).await?;
                self.count_batch(supplier, counts);
                Ok(())
            }
            // Nothing of the batch is known to be stored: the tries keep their changes (committed before any of
            // their records, `Miner::persist`, or rolled back there if storage is out of memory), the records and reports wait for `persist_pending`, the entries
            // stay pending (redelivered, adding nothing to the tries). Not retried part by part here: against an
            // unreachable store that would double the time before the block's claims and proofs are handled.
            Err(e) => {
                self.defer(std::iter::once(step), &std::collections::HashSet::new())
                    .await;
                Err(e.into())
            }
        }
    }

    /// Counts an acknowledged batch: its entries, the relays it put into tries and those it acknowledged
    /// without mining them.
    fn count_batch(&self, supplier: &str, counts: BatchCounts) {
        self.stats
            .relays_ingested
            .fetch_add(counts.entries, AtomicOrdering::Relaxed);
        self.stats.relays_late.fetch_add(counts.late, AtomicOrdering::Relaxed);
        let reweighted: u64 = counts.reweighted.values().sum();
        self.stats
            .relays_reweighted
            .fetch_add(reweighted, AtomicOrdering::Relaxed);
        if let Some(m) = &self.metrics {
            for (service, n) in counts.consumed {
                m.relays_consumed.with_label_values(&[supplier, &service]).inc_by(n);
            }
            for (service, n) in counts.reweighted {
                m.relays_reweighted.with_label_values(&[supplier, &service]).inc_by(n);
            }
        }
        for ((reason, service), n) in counts.rejected.0 {
            let stat = match reason {
                TOO_LARGE => &self.stats.relays_too_large,
                PRUNED => &self.stats.relays_after_prune,
                _ => &self.stats.relays_unreadable,
            };
            stat.fetch_add(n, AtomicOrdering::Relaxed);
            if let Some(m) = &self.metrics {
                m.relays_rejected
                    .with_label_values(&[supplier, reason, &service])
                    .inc_by(n);
            }
        }
    }

    /// Whether a proof of this relay fits a tx (module docs); notes in `rejected` and logs (throttled) one that
    /// does not.
    fn provable(&self, supplier: &str, message: &MinedRelayMessage, rejected: &mut Rejections) -> bool {
        let limit = crate::smst::max_provable_relay_bytes(self.config.max_tx_bytes);
        let size = message.relay_bytes.len();
        if size <= limit {
            return true;
        }
        rejected.note(TOO_LARGE, &message.service_id);
        if let Some(suppressed) = self.too_large_log.admit() {
            tracing::warn!(
                supplier,
                session = message.session_id,
                service = message.service_id,
                relay_bytes = size,
                limit,
                suppressed,
                "served relay not claimed: a proof of it would not fit a tx (transaction.max_tx_bytes); its reward \
                 is lost, the session's claim stays provable (`suppressed`: such relays not logged since the last \
                 line)"
            );
        }
        false
    }

    /// The relay of a relay-log entry, or `None` (logged at ERROR, noted in `rejected` for
    /// `ha_miner_relays_rejected_total`) when it cannot be read: its payload does not decode or its relay hash is
    /// not 32 bytes. Such an entry can never be read, so it is acknowledged with its batch and skipped: left in
    /// the log it would fail every ingest round and, with it, every claim and proof of every supplier.
    fn readable(
        &self,
        supplier: &str,
        entry: &storage::LogEntry,
        rejected: &mut Rejections,
    ) -> Option<(MinedRelayMessage, [u8; 32])> {
        let mut fail = |reason: &'static str, service: &str, error: String| {
            tracing::error!(
                supplier,
                entry = %entry.id,
                session = entry.relay.session_id,
                reason,
                error,
                "unreadable relay-log entry skipped; its relay, if any, is lost"
            );
            rejected.note(reason, service);
            None
        };
        let message = match MinedRelayMessage::decode(entry.relay.payload.as_slice()) {
            Ok(m) => m,
            Err(e) => return fail("undecodable", "", e.to_string()),
        };
        match <[u8; 32]>::try_from(message.relay_hash.as_slice()) {
            Ok(hash) => Some((message, hash)),
            Err(_) => {
                let service = message.service_id.clone();
                fail(
                    "bad_relay_hash",
                    &service,
                    format!("{} bytes", message.relay_hash.len()),
                )
            }
        }
    }

    /// Notes in `rejected` and (throttled) logs a relay of a pruned session, which is acknowledged with its
    /// batch unmined.
    fn after_prune(
        &self,
        key: &SessionKey,
        message: &MinedRelayMessage,
        entry: &storage::LogEntry,
        rejected: &mut Rejections,
    ) {
        rejected.note(PRUNED, &message.service_id);
        if let Some(suppressed) = self.after_prune_log.admit() {
            tracing::warn!(
                supplier = key.supplier,
                session = key.session_id,
                entry = %entry.id,
                deliveries = entry.deliveries,
                suppressed,
                "relay of a session already pruned (paid or counted lost) acknowledged and not mined; \
                 `suppressed`: such relays not logged since the last line"
            );
        }
    }

    /// Puts one relay into its session's trie, or into the session's late trie once the claim was built (a
    /// relay the claimed trie already holds goes nowhere: it is counted already). Its weight is the chain's
    /// compute units per relay for the session ([`Miner::session_compute_units`]), whatever its entry says; an
    /// entry that says otherwise is noted in `counts` and logged (throttled).
    async fn insert(
        &mut self,
        key: &SessionKey,
        message: &MinedRelayMessage,
        hash: &[u8; 32],
        counts: &mut BatchCounts,
    ) -> Result<(), MinerError> {
        if !self.tries.contains_key(key) {
            let header = SessionHeader {
                application_address: message.application_address.clone(),
                service_id: message.service_id.clone(),
                session_id: message.session_id.clone(),
                session_start_block_height: message.session_start_height,
                session_end_block_height: message.session_end_height,
            };
            self.keep_open(key, header).await?;
            self.progressed();
        }
        let weight = self.session_compute_units(key).await?;
        if message.compute_units_per_relay != weight {
            self.reweighted(key, message, weight, counts);
        }
        // Frozen once the claim may be on chain, except while the freeze read of the block that decided the
        // claim runs (module docs): its root is not read yet.
        let frozen = self.engine.session(key).is_some_and(|r| r.is_claim_built()) && !self.freezing.contains(key);
        let open = self
            .tries
            .get_mut(key)
            .ok_or_else(|| MinerError::Corrupt("trie vanished".into()))?;
        if !frozen {
            open.trie.insert_relay(hash, &message.relay_bytes, weight);
            return Ok(());
        }
        // A relay the claimed trie holds is delivered again: its leaf is written back as it is (the root does not
        // change), in case storage lost it (a Redis failover rolled back the trie batch and the ack after it).
        if open.trie.rewrite(hash, &message.relay_bytes) || open.trie.contains(hash) {
            return Ok(());
        }
        if open.late.is_none() {
            let late = self.load_trie(&key.supplier, &late_namespace(&key.session_id)).await?;
            if let Some(open) = self.tries.get_mut(key) {
                open.late = Some(late);
            }
        }
        if let Some(late) = self.tries.get_mut(key).and_then(|open| open.late.as_mut()) {
            if !late.contains(hash) {
                counts.late += 1;
                if let Some(suppressed) = self.late_log.admit() {
                    tracing::warn!(
                        supplier = key.supplier,
                        session = key.session_id,
                        arrival_height = message.arrival_block_height,
                        suppressed,
                        "relay reached the miner after its session's claimed trie was frozen: kept in the late \
                         trie, counted lost as relays_after_claim once the claim is confirmed (`suppressed`: such \
                         relays not logged since the last line)"
                    );
                }
            }
            late.insert_relay(hash, &message.relay_bytes, weight);
        }
        Ok(())
    }

    /// The chain's `compute_units_per_relay` of the session's service at its start height (spec §5, §6.1: the
    /// chain refuses a claim whose sum is not its count times that value), read once per session and kept with
    /// its open trie (the chain client caches it too).
    async fn session_compute_units(&mut self, key: &SessionKey) -> Result<u64, MinerError> {
        let open = self
            .tries
            .get(key)
            .ok_or_else(|| MinerError::Corrupt("trie vanished".into()))?;
        if let Some(cupr) = open.compute_units_per_relay {
            return Ok(cupr);
        }
        let (service, start) = (open.header.service_id.clone(), open.header.session_start_block_height);
        let cupr = self.chain.compute_units_at(&service, start).await?;
        if let Some(open) = self.tries.get_mut(key) {
            open.compute_units_per_relay = Some(cupr);
        }
        Ok(cupr)
    }

    /// Notes in `counts` and (throttled) logs a relay whose entry's compute units per relay are not `weight`,
    /// the chain's for its session.
    fn reweighted(&self, key: &SessionKey, message: &MinedRelayMessage, weight: u64, counts: &mut BatchCounts) {
        *counts.reweighted.entry(message.service_id.clone()).or_default() += 1;
        if let Some(suppressed) = self.reweighted_log.admit() {
            tracing::warn!(
                supplier = key.supplier,
                session = key.session_id,
                service = message.service_id,
                entry_compute_units_per_relay = message.compute_units_per_relay,
                chain_compute_units_per_relay = weight,
                suppressed,
                "relay-log entry weighted with compute units per relay other than the chain's at the session's \
                 start (a relayer with a stale cache or another implementation?): mined with the chain's value \
                 (`suppressed`: such entries not logged since the last line)"
            );
        }
    }

    async fn schedule(&self, session_end: i64) -> Result<Schedule, MinerError> {
        let params = self.chain.shared_params_at(session_end).await?;
        let w = SessionWindows::new(&params, session_end).map_err(|e| MinerError::Corrupt(e.to_string()))?;
        Ok(Schedule {
            session_start: w.start,
            session_end,
            claim_open: w.claim_open,
            claim_close: w.claim_close,
            proof_open: w.proof_open,
            proof_close: w.proof_close,
            settlement: w.settlement,
        })
    }
}

#[cfg(test)]
mod tests;

/// Whether `error` says a stored trie is malformed (it will not read better next time), not that storage
/// failed for now.
fn unreadable_trie(error: &MinerError) -> bool {
    matches!(
        error,
        MinerError::Trie(crate::smst::SmstError::Corrupt(_))
            | MinerError::Trie(crate::smst::SmstError::Store(storage::StorageError::Corrupt(_)))
            | MinerError::Storage(storage::StorageError::Corrupt(_))
    )
}

impl Miner {
    /// Reads up to `want` entries of `supplier`'s log: those delivered to this consumer and not acknowledged
    /// first, else new ones, with whether the log is drained up to now (fewer new entries than asked for; relays
    /// appended while the batch is committed wait for the next tick instead of being chased in batches of a few).
    async fn read_batch(&self, supplier: &str, want: usize) -> Result<(Vec<storage::LogEntry>, bool), MinerError> {
        let log = &self.writer()?.relay_log;
        let pending = log.read_pending(supplier, &self.config.consumer, want).await?;
        if !pending.is_empty() {
            return Ok((pending, false));
        }
        let entries = log.read(supplier, &self.config.consumer, want).await?;
        let caught_up = entries.len() < want;
        Ok((entries, caught_up))
    }

    /// The durability of an ingest batch's write set: [`storage::SetDurability::Eventual`] when its step has no
    /// command and no record or report of an earlier step is waiting to be stored, `Immediate` otherwise.
    ///
    /// Such a batch is pure bookkeeping that the relay log can rebuild: its relays' trie inserts, their sessions'
    /// totals (the tries' counts, see `ingest`) and the acks of its entries. If a crash loses it, the entries are
    /// still pending and delivered again, and inserting a relay twice adds nothing. Nothing outside storage acts on
    /// it meanwhile: a claim or proof is sent only after a durable write of its record, which makes every earlier
    /// write durable too (storage keeps commit order). A step with a command (a loss report of relays that arrived
    /// after the claim was built, `Command::RecordUnclaimed`, or any command `advance` adds) runs it right after
    /// this write, and a report must never be repeated after a restart (lessons.md: revenue-loss metrics must not
    /// lie), so its batch is durable first. The same holds while a failed step's records wait (`unpersisted`,
    /// `pending_reports`): this batch writes the engine's whole record of each session it touches, which can be
    /// such a record, and `persist_pending` then finds it stored and runs its report.
    ///
    /// Why: on redb the ingest's durable commits were ~1/4 of the device's syncs at 2,000 relays/s, and the relay
    /// WAL's `fdatasync`s (on the acknowledgement path of every relay) queued behind them: making them eventual
    /// took the relayer's added p99 from 2.7–3.5 ms to 2.4–2.6 ms (BENCHMARKS.md).
    /// [`Miner::ingest_durability`] of a batch, made durable too when it acknowledges relays without mining them:
    /// their rejections are counted right after this write (`count_batch`), and a crash losing an eventual write
    /// would deliver the relays again to be counted a second time (`too_large_to_prove` is a lost reward). Rare
    /// enough to cost nothing measurable.
    fn batch_durability(&self, step: &Step, counts: &BatchCounts) -> storage::SetDurability {
        if counts.rejected.0.is_empty() {
            self.ingest_durability(step)
        } else {
            storage::SetDurability::Immediate
        }
    }

    pub(super) fn ingest_durability(&self, step: &Step) -> storage::SetDurability {
        if step.commands.is_empty() && self.unpersisted.is_empty() && self.pending_reports.is_empty() {
            storage::SetDurability::Eventual
        } else {
            storage::SetDurability::Immediate
        }
    }
}

impl Miner {
    /// The freeze read: right before the claims `step` decided (at the block being handled) are built, reads the
    /// logs of their suppliers once more into their sessions' claimed tries. Returns the error of a failed read
    /// or write (the claims are still built, from what the tries hold).
    ///
    /// The round that ran before the block's step read each log before the step decided the claims; a relay whose
    /// append landed between that read and the claim's root (a relayer whose check passed a block earlier, its
    /// append still in flight; one whose height lags) was acknowledged to its gateway and yet went to the late
    /// trie, served and never paid. This read is the freeze: every relay appended before it is in the claimed
    /// trie, and no ingest runs between it and the roots read for the claims (one task), so a relay appended
    /// after it goes to the late trie, counted once (`MinerStats::relays_late`, then `relays_after_claim`) and
    /// logged. Only sessions whose claim never left ([`crate::miner::lifecycle::SessionRecord::claim_never_left`]:
    /// decided at this height, no send recorded before) are thawed for it; a re-sent claim's root may be on chain.
    pub(super) async fn freeze_read(&mut self, step: &Step) -> Result<(), MinerError> {
        let height = self.engine.height();
        let mut suppliers = std::collections::BTreeSet::new();
        for command in &step.commands {
            let crate::miner::lifecycle::Command::SubmitClaims { supplier, keys } = command else {
                continue;
            };
            for key in keys {
                if self.engine.session(key).is_some_and(|r| r.claim_never_left(height)) {
                    self.freezing.insert(key.clone());
                    suppliers.insert(supplier.clone());
                }
            }
        }
        let deadline = std::time::Instant::now() + INGEST_ROUND_TIME.min(self.config.lease / 4);
        let mut batches = 0usize;
        // Every supplier's read is tried: one whose read fails does not leave the others' appends out of their
        // claims.
        let result = self.ingest_each(suppliers, deadline, &mut batches).await;
        self.freezing.clear();
        result
    }
}
