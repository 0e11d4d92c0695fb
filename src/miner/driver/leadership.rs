//! The miner's leadership: campaigning and renewing through the storage contract's [`storage::Leadership`], the
//! fenced storage view every leader write goes through, and leaving leader mode the moment storage refuses a
//! fenced write.
//!
//! Why fencing: the leader's local view of its lease can lag (on raft it is checked every tick against the
//! node's applied state, renewed only every `lease / 4`), so a deposed leader may still ingest for a moment.
//! Every write it makes (relay-log deliveries and acks, trie batches, session records, pruning) carries its
//! [`storage::Fence`] (election, instance, token); storage checks it atomically with the write and refuses it
//! with [`storage::StorageError::Fenced`] once another instance leads. The miner then drops leadership at once,
//! retries nothing, logs at WARN and counts `ha_miner_fenced_writes_total`. The chain submission itself is
//! guarded separately by a lease renewal right before it ([`Miner::still_leader`]).
//!
//! Only a definite answer ends leader mode: a check that finds another holder, a renewal refused, a fenced write.
//! A check or renewal that fails (a timeout, a reconnect) is no answer: leader mode is kept while the lease last
//! renewed surely holds ([`Miner::lease_surely_held`]), since leaving drops every open trie, which the next tick
//! (winning the same lease back) loads again from storage.
//!
//! On Redis a campaign is also refused (answered as "not elected") while a Go relay miner is live on the same
//! Redis: the storage checks it, counts it and fails the miner's readiness (`storage::redis`, module `go_fleet`).
//! A Go miner started while this miner leads is seen by the storage at the next lease renewal, which still
//! answers "renewed": the miner keeps leading, so the sessions it holds (ingested relays, claims awaiting their
//! proofs, which the Go miner cannot see) are still claimed and proved, while the storage alarms (ERROR,
//! `ha_storage_redis_go_miner_beside_leader`, the `miner` component not ready with `redis_go_miner_beside_leader`:
//! `/ready?component=miner` 503, and `/ready` 503 in `relay-miner miner`; advisory in `relay-miner run`, whose
//! relayer keeps serving) for an operator to stop one of the two; `go_fleet` gives the reasoning.

use std::sync::atomic::Ordering as AtomicOrdering;

use k256::ecdsa::SigningKey;

use storage::{Fence, StorageError};

use super::{ELECTION, Miner, MinerError};
use crate::miner::lifecycle::{Engine, Event, SessionRecord};
use crate::telemetry::LogThrottle;

/// Throttle of the "leadership acquisition failed" WARN: the first failure of a streak is logged at once, the
/// following ones at most once per [`FailureLog::EVERY`] with the number of failures since the last report (the
/// miner campaigns every tick, ~100 ms: unthrottled, a Redis outage wrote ten WARNs a second). A
/// [`LogThrottle`] paces the reports; the streak's length is reported on recovery.
#[derive(Debug)]
pub(super) struct FailureLog {
    throttle: LogThrottle,
    /// Failures in the current streak (reset by a success).
    streak: u64,
}

impl Default for FailureLog {
    fn default() -> Self {
        Self {
            throttle: LogThrottle::new(Self::EVERY),
            streak: 0,
        }
    }
}

impl FailureLog {
    /// The shortest interval between two reports.
    pub(super) const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    /// Records a failure at `now`; `Some(failures since the last report, this one included)` when it is to be
    /// logged.
    pub(super) fn failed(&mut self, now: std::time::Instant) -> Option<u64> {
        self.streak += 1;
        self.throttle.admit_at(now).map(|held_back| held_back + 1)
    }

    /// Records a success; `Some(failures of the streak it ends)` when there was one. The next failure starts a
    /// new streak, reported at once.
    pub(super) fn recovered(&mut self) -> Option<u64> {
        self.throttle.reset();
        Some(std::mem::take(&mut self.streak)).filter(|n| *n > 0)
    }
}

impl MinerError {
    /// Whether storage refused a fenced write (this miner is no longer the leader).
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            Self::Storage(StorageError::Fenced(_)) | Self::Trie(crate::smst::SmstError::Store(StorageError::Fenced(_)))
        )
    }
}

impl Miner {
    /// The fenced storage view of the current leadership term; every write of the miner goes through it. A
    /// miner that does not lead gets [`StorageError::Fenced`] (it must not write at all).
    pub(super) fn writer(&self) -> Result<&storage::Storage, MinerError> {
        self.fenced
            .as_ref()
            .ok_or_else(|| MinerError::Storage(StorageError::Fenced("this miner does not lead".into())))
    }

    /// Campaigns (or renews, or checks the local view between renewals) and switches the engine in or out of
    /// leader mode on a change.
    pub(super) async fn campaign(&mut self) {
        let leadership = &self.storage.leadership;
        let renew_every = self.config.lease / 4;
        // Only a campaign (no leadership held) is an acquisition; a failed renewal or check is no answer, and
        // ends in a loss only once the lease last renewed may have expired (`lease_surely_held`).
        let acquiring = self.leader_token.is_none();
        let result = match self.leader_token {
            // Between renewals (each one a replicated write) the storage's local view is checked every tick,
            // so a lost lease or a new raft term stops ingest and submissions at once.
            Some(token) if self.last_renewal.is_some_and(|at| at.elapsed() < renew_every) => {
                leadership.leader(ELECTION).await.map(|info| {
                    info.filter(|i| i.token == token && i.holder == self.config.instance)
                        .map(|_| token)
                })
            }
            Some(token) => {
                let requested = std::time::Instant::now();
                let renewed = leadership
                    .renew(ELECTION, &self.config.instance, token, self.config.lease)
                    .await
                    .map(|ok| ok.then_some(token));
                if matches!(renewed, Ok(Some(_))) {
                    self.last_renewal = Some(requested);
                    self.confirmed_at(requested, token);
                }
                renewed
            }
            None => {
                let requested = std::time::Instant::now();
                let won = leadership
                    .campaign(ELECTION, &self.config.instance, self.config.lease)
                    .await;
                if let Ok(Some(token)) = won {
                    self.last_renewal = Some(requested);
                    self.confirmed_at(requested, token);
                }
                won
            }
        };
        let token = match result {
            Ok(token) => {
                if let Some(failures) = self.leadership_failures.recovered() {
                    tracing::info!(failures, "leadership requests reach storage again");
                }
                token
            }
            Err(e) => {
                if acquiring {
                    self.count_acquisition_failure(&e);
                }
                // An error is no answer: the lease may well be held still. Leader mode is kept while the lease
                // last renewed surely holds (see `lease_surely_held`); only a definite answer, or that time
                // passing without one, leaves it.
                let kept = self.leader_token.filter(|_| self.lease_surely_held());
                if let Some(failures) = self.leadership_failures.failed(std::time::Instant::now()) {
                    if acquiring {
                        tracing::warn!(
                            error = %e,
                            failures,
                            "leadership acquisition failed ({failures} failures since the last report)"
                        );
                    } else if kept.is_some() {
                        tracing::warn!(
                            error = %e,
                            failures,
                            "leadership check or renewal failed ({failures} failures since the last report): still \
                             leading on the lease last renewed until it would expire"
                        );
                    } else {
                        tracing::warn!(
                            error = %e,
                            failures,
                            "leadership check or renewal failed ({failures} failures since the last report) and \
                             the lease last renewed may have expired: leaving leader mode"
                        );
                    }
                }
                kept
            }
        };
        if token.is_some() != self.engine.is_leader() {
            tracing::info!(
                leader = token.is_some(),
                instance = self.config.instance,
                "miner leadership changed"
            );
            match token {
                Some(token) => {
                    self.fenced = Some(self.storage.fenced(Fence::new(ELECTION, &self.config.instance, token)));
                    // Another instance may have led since this one last did: its session records and tries are
                    // in storage, ours in memory are stale. Start from storage.
                    if let Err(e) = self.reload_from_storage().await {
                        tracing::warn!(error = %e, "reloading sessions after gaining leadership failed; retrying");
                        self.fenced = None;
                        return;
                    }
                    let step = self.engine.handle(Event::Leadership { leader: true });
                    self.leader_token = Some(token);
                    self.leading_since = None;
                    if let Some(m) = &self.metrics {
                        m.leader_elections.with_label_values(&[&self.config.instance]).inc();
                    }
                    if let Err(e) = self.execute(step).await {
                        if e.is_fenced() {
                            self.fenced_out(&e);
                        } else {
                            tracing::warn!(error = %e, "commands after gaining leadership failed");
                        }
                    }
                    return;
                }
                None => self.leave_leader_mode(),
            }
        }
        self.leader_token = token;
    }

    /// Whether the lease this miner last renewed (or won) surely holds still, by this process's clock: its
    /// renewal was requested less than `lease − lease / 4` ago (the storage set its expiry after the request, so
    /// it holds until at least `request + lease`; the quarter is the margin for clock drift and the time the
    /// storage took).
    ///
    /// Why: on Redis, one check or renewal that fails (a 3 s timeout during an AOF rewrite's fork, a reconnect)
    /// used to end leader mode at once: every open trie was dropped, and the next tick won the same lease back and
    /// loaded every trie from storage again (minutes of stall, gigabytes of relay bytes read). Keeping leader mode
    /// meanwhile is safe: every write is fenced by the storage atomically with the lease, and every tx leaves only
    /// after a fresh renewal (`leader_right_now`); neither reuses this one. On raft the lease is void in any later
    /// term whatever its time: another node may lead at once while this miner keeps its leader mode (and its
    /// `leader_status` gauge at 1) up to three quarters of the lease; what keeps that safe is the same fencing
    /// (by term and token, at apply) and fresh renewal before every send.
    pub(super) fn lease_surely_held(&self) -> bool {
        let lease = self.config.lease;
        self.last_renewal
            .is_some_and(|at| at.elapsed() < lease.saturating_sub(lease / 4))
    }

    /// Counts a failed campaign in `ha_miner_leader_acquisition_failures_total{instance,reason}` when the miner
    /// counts them (not on Redis, whose backend counts its own: [`crate::miner::metrics::AcquisitionFailures`]).
    /// lessons.md: a standby that cannot acquire the leadership for hours must show on a metric, by reason.
    fn count_acquisition_failure(&self, e: &StorageError) {
        let Some(failures) = self
            .metrics
            .as_ref()
            .and_then(|m| m.leader_acquisition_failures.as_ref())
        else {
            return;
        };
        let reason = match e {
            StorageError::Unavailable(_) => "storage_unavailable",
            StorageError::OutOfMemory(_) => "storage_oom",
            _ => "storage_error",
        };
        failures.with_label_values(&[&self.config.instance, reason]).inc();
    }

    /// Leaves leader mode: no fenced view, no open tries (they may hold uncommitted inserts), engine passive.
    /// The engine's step is dropped: a miner that does not lead writes nothing. A miner that led counts the loss
    /// (`ha_miner_leader_losses_total`: a lost or unrenewed lease, a fenced write, a resign on stop).
    pub(super) fn leave_leader_mode(&mut self) {
        if self.engine.is_leader()
            && let Some(m) = &self.metrics
        {
            m.leader_losses.with_label_values(&[&self.config.instance]).inc();
        }
        self.leader_token = None;
        self.leading_since = None;
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.last_renewal = None;
        self.fenced = None;
        self.tries.clear();
        // Changes not stored are the next leader's to make (and to report) from the records as stored.
        self.unpersisted.clear();
        self.pending_reports.clear();
        self.gas_pricing.forget_unwritten();
        // A listing owed is the next term's to make (each term lists at its start).
        self.keyless_listing_owed = false;
        // A follower signs nothing: the suppliers it lacks keys for are no reason to hand a leadership off.
        self.stats
            .keyless_suppliers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // Drained by every write's caller before it returns (`Miner::run_due_reports`), so empty here; any left
        // would be reports of records this miner did store, not to be dropped.
        debug_assert!(self.due_reports.is_empty(), "due reports left: {:?}", self.due_reports);
        let step = self.engine.handle(Event::Leadership { leader: false });
        if !step.commands.is_empty() || !step.changed.is_empty() {
            tracing::debug!(
                commands = step.commands.len(),
                changed = step.changed.len(),
                "dropping the engine's step on losing leadership"
            );
        }
        // A new term counts from its first block (module `observe`); a follower handles no blocks.
        self.work_done_at.clear();
        if let Some(m) = &self.metrics {
            m.leader_status.with_label_values(&[&self.config.instance]).set(0);
            m.block_processing_lag.reset();
        }
    }

    /// Storage refused a fenced write: another instance leads. Drop leadership now (no retry of the write).
    pub(super) fn fenced_out(&mut self, e: &MinerError) {
        tracing::warn!(
            error = %e,
            instance = self.config.instance,
            token = self.leader_token,
            "storage refused a fenced write: another instance leads; leaving leader mode"
        );
        self.stats.fenced_writes.fetch_add(1, AtomicOrdering::Relaxed);
        if let Some(m) = &self.metrics {
            m.fenced_writes.inc();
        }
        self.leave_leader_mode();
    }

    /// Drops in-memory sessions and tries and restores every supplier's records from storage.
    async fn reload_from_storage(&mut self) -> Result<(), MinerError> {
        // Sessions restored here may have been claimed by another instance (module `profit`).
        self.leading_since = None;
        self.engine = Engine::new(self.config.engine);
        self.tries.clear();
        self.versions.clear();
        self.stored.clear();
        // The txs kept in the records are restored with them (the previous leader may have resolved or replaced
        // what this process kept when it last led).
        self.unknown_txs = super::submit::UnknownTxs::default();
        self.kept_txs.clear();
        self.stored_txs.clear();
        self.kept_changed.clear();
        // Sessions another leader decided "no proof" for, with params this process never saw (module
        // `requirement`).
        self.watched_proof_params = None;
        // The proof tx fees another leader stored since this process last read them (module `fees::proof_fees`).
        self.gas_pricing.proof_tx_fees().read_again();
        // Settlements still to count are restored with the tombstones awaiting them: another leader may have
        // counted some meanwhile (module `settled`).
        self.settled.drop_pending();
        self.unpersisted.clear();
        self.pending_reports.clear();
        // Drained by every write's caller before it returns (`Miner::run_due_reports`), so empty here; any left
        // would be reports of records this miner did store, not to be dropped.
        debug_assert!(self.due_reports.is_empty(), "due reports left: {:?}", self.due_reports);
        // The keys of suppliers removed from the keys file that this process still holds stay: their live
        // sessions are claimed and proved as before (`sync_suppliers` drops a key once none is live). Rebuilt from
        // the keys file alone, those sessions were not restored and never claimed or proved.
        // A reload that fails (storage in trouble: likely when a renewal just failed) puts the held keys back, so
        // the next attempt holds them still; dropped there, they were gone for good.
        let current = self.keys.snapshot();
        let mut held: Vec<(String, SigningKey)> = std::mem::take(&mut self.signers)
            .into_iter()
            .filter(|(address, _)| !current.contains_key(address))
            .collect();
        if let Err(e) = self.sync_suppliers().await {
            self.signers.extend(held);
            return Err(e);
        }
        while let Some((address, key)) = held.pop() {
            if let Err(e) = self.restore_supplier(&address).await {
                self.signers.insert(address, key);
                self.signers.extend(held);
                return Err(e);
            }
            tracing::info!(
                supplier = address,
                "miner still serving a supplier removed from the keys file: its live sessions are claimed and proved"
            );
            self.engine.set_ingest_caught_up(&address, false);
            self.signers.insert(address, key);
        }
        // A failed listing must not keep this miner from leading: it is owed, and tried again at the next blocks
        // while this process leads (`Miner::list_keyless_owed`). Not tried again, the removed suppliers' tombstones
        // were not forgotten and their settlements not counted for the whole term.
        let listed = self.keyless_sessions().await;
        self.keyless_listing_owed = listed.is_err();
        if let Err(e) = listed {
            tracing::warn!(
                error = %e,
                "could not list the sessions of suppliers without a key: listed again at the next block"
            );
        }
        Ok(())
    }

    /// Lists the sessions of suppliers without a key ([`Miner::keyless_sessions`]) when this leadership term
    /// still owes it (the listing at the leadership change failed: storage in trouble, likely just when the
    /// leadership moved). Called once per block, after its claims and proofs ([`Miner::count_settlements`]), so
    /// it is tried at most once a block and never holds any of them up; a failure only logs and stays owed.
    ///
    /// Why: the listing restores the tombstones of suppliers removed from the keys file (else never forgotten:
    /// storage grows) and the settlement watches they carry (else what the chain paid for those sessions is
    /// never counted in the settlement metrics).
    pub(super) async fn list_keyless_owed(&mut self) {
        if !self.keyless_listing_owed {
            return;
        }
        match self.keyless_sessions().await {
            Ok(()) => {
                self.keyless_listing_owed = false;
                tracing::info!("listed the sessions of suppliers without a key (failed at the leadership change)");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "could not list the sessions of suppliers without a key: listed again at the next block"
            ),
        }
    }

    /// Goes through the sessions storage holds for suppliers whose key is not in the keys file (removed, then
    /// the process restarted or the leadership moved):
    /// - their tombstones are restored into the engine, which deletes each once its `forget_after` is past
    ///   ([`crate::miner::lifecycle::Command::Forget`] needs no key). Only suppliers with a key are restored
    ///   otherwise, so a removed supplier's tombstones were never forgotten and stayed in storage for good;
    /// - their live sessions are logged at ERROR, per supplier: their claims and proofs cannot be signed, so
    ///   nothing is submitted for them until the key is added back (the records are kept: adding the key back
    ///   restores them). Their number is in [`MinerStats::keyless_sessions`], and per supplier in
    ///   `ha_miner_keyless_sessions{supplier}`.
    async fn keyless_sessions(&mut self) -> Result<(), MinerError> {
        let mut keyless: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for stored in self.storage.sessions.list(None, None).await? {
            if self.signers.contains_key(&stored.supplier) {
                continue;
            }
            let record = serde_json::from_slice::<SessionRecord>(&stored.data).ok();
            if let Some(record) = record.as_ref().filter(|r| r.forget_after.is_some())
                && !self.engine.is_tombstoned(&record.key)
            {
                self.versions.insert(record.key.clone(), stored.version);
                // A removed supplier's settlements are still counted (module `settled`).
                self.watch_settlement(record, stored.version);
                self.engine.restore(record.clone());
                continue;
            }
            let live = record.is_none_or(|r| !r.state.is_terminal() && !r.pruned);
            if live {
                *keyless.entry(stored.supplier).or_default() += 1;
            }
        }
        for (supplier, sessions) in &keyless {
            tracing::error!(
                supplier,
                sessions,
                "live sessions of a supplier whose key is not in the keys file: their claims and proofs are not \
                 submitted (revenue lost when their windows close) unless the key is added back"
            );
        }
        self.stats
            .keyless_sessions
            .store(keyless.values().sum(), AtomicOrdering::Relaxed);
        *self.stats.keyless_suppliers.lock().unwrap_or_else(|p| p.into_inner()) = keyless.keys().cloned().collect();
        if let Some(m) = &self.metrics {
            // Suppliers listed before and not now (their key is back, or their sessions ended) drop out.
            m.keyless_sessions.reset();
            for (supplier, sessions) in &keyless {
                m.keyless_sessions
                    .with_label_values(&[supplier])
                    .set(i64::try_from(*sessions).unwrap_or(i64::MAX));
            }
        }
        Ok(())
    }

    /// Takes leadership confirmations as holding for `reuse` after they were requested: a check within that
    /// time of the last successful one (a renewal by `campaign` or `still_leader`) does not ask
    /// storage again. Zero (the default) asks every time.
    ///
    /// Why it is safe, for a `reuse` below what the storage guarantees after a confirmation (the caller,
    /// `node`, picks it): a renewal that succeeded was requested at `t` and committed after `t`.
    /// - raft: the renewal is a raft entry a quorum appended after `t`, and its term was still current with this
    ///   node leading it when it returned. Each follower of that quorum refuses any other candidate until `election
    ///   timeout max` after it last heard this leader (raft's `RaftConfig::election_timeout`, the follower lease),
    ///   and a lease granted in term `T` is void in any later term, so no other miner can lead before `t + election
    ///   timeout max`. `node` gives half of that (150 ms of the default 300 ms).
    /// - Redis: the renewal extended the lease to at least `t + lease TTL` (≥ 1 s); no one else can take it before.
    /// - embedded: one process, no other leader.
    ///
    /// - raft leadership transfer (`relay-miner raft transfer-leader`, a leader's graceful stop): the followers
    ///   drop the follower lease at once and the target campaigns, so another leader IS possible within the
    ///   window. What keeps a send safe then is not the reuse but the two storage round trips every tx makes
    ///   right before it leaves: the fresh renewal and the fenced write of the tx into its session record
    ///   (`submit::kept`); a transferring leader proposes nothing (openraft answers ForwardToLeader) and the new
    ///   term voids the lease, so both fail and the tx never leaves. A tx stored just before the transfer is
    ///   restored by the new leader as one of unknown outcome and re-sent as the same bytes: one fee at most.
    ///
    /// So a send confirmed by a reused answer leaves while no other instance can lead, as one confirmed by a fresh
    /// renewal does (that one, too, holds only from its request on: the broadcast after it takes time as well). On
    /// raft the margins are the same: a reused answer (taken before `t + max / 2`) leaves at least `max / 2` before
    /// another leader is possible; a fresh one returns with a quorum acknowledgement younger than the core's lease
    /// (`election timeout min`, 150 ms), leaving at least `max − min` (150 ms by default). A
    /// miner whose leadership storage refused since (a fenced write, a failed renewal) dropped the confirmation
    /// with its leadership (`leave_leader_mode`).
    ///
    /// What it saves: each submission confirmed twice (before building the tx, and right before it leaves), and
    /// each confirmation is a replicated commit on raft that, on a loaded host, waits for a late quorum
    /// acknowledgement; a block with claims for several suppliers paid that per tx. Only the check before building
    /// reuses an answer: the one right before a tx leaves always asks storage (`leader_right_now`), as
    /// a miner that kept sending on a reused answer after losing its quorum raced the next leader's sends (a
    /// duplicate proof in one block was seen in the partition test).
    pub fn with_confirmation_reuse(mut self, reuse: std::time::Duration) -> Self {
        self.confirmation_reuse = reuse;
        self
    }

    /// Records a successful confirmation of `token` requested at `requested`.
    fn confirmed_at(&self, requested: std::time::Instant, token: u64) {
        let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        if confirmed.is_none_or(|(at, t)| t != token || at < requested) {
            *confirmed = Some((requested, token));
        }
    }

    /// Whether a confirmation of `token` requested within the reuse window still holds (see
    /// [`Miner::with_confirmation_reuse`]).
    pub(super) fn recently_confirmed(&self, token: u64) -> bool {
        if self.confirmation_reuse.is_zero() {
            return false;
        }
        let confirmed = *self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        confirmed.is_some_and(|(at, t)| t == token && at.elapsed() < self.confirmation_reuse)
    }

    /// Confirms leadership before a submission is built by renewing the lease: on raft the renewal is a raft entry
    /// committed by a quorum in the current term (a linearizable check); on Redis an atomic compare-and-extend.
    /// A confirmation requested within the reuse window is taken as it is ([`Miner::with_confirmation_reuse`]).
    pub(super) async fn still_leader(&self) -> bool {
        self.confirm_leadership(true).await
    }

    /// Confirms leadership with a fresh renewal, whatever the reuse window: the check right before a tx leaves.
    /// A miner cut off from its quorum must not send after the cut on the strength of an earlier answer: the next
    /// leader cannot see a tx still in the mempool and sends its own (a second fee, or a second proof). The
    /// reuse stays for the check before building, which only saves work.
    pub(super) async fn leader_right_now(&self) -> bool {
        self.confirm_leadership(false).await
    }

    async fn confirm_leadership(&self, may_reuse: bool) -> bool {
        let Some(token) = self.leader_token else {
            return false;
        };
        if may_reuse && self.recently_confirmed(token) {
            tracing::debug!("leadership confirmation reused (requested within the reuse window)");
            return true;
        }
        let requested = std::time::Instant::now();
        let answer = self
            .storage
            .leadership
            .renew(ELECTION, &self.config.instance, token, self.config.lease)
            .await;
        let elapsed_ms = requested.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(true) => {
                tracing::debug!(elapsed_ms, "leadership confirmed");
                self.confirmed_at(requested, token);
                true
            }
            Ok(false) => {
                tracing::debug!(elapsed_ms, "leadership confirmation refused");
                *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, elapsed_ms, "leadership check before submission failed");
                *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailureLog;
    use std::time::{Duration, Instant};

    #[test]
    fn failures_are_reported_once_a_second_with_their_count() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.failed(t0),
            Some(1),
            "the first failure of a streak is reported at once"
        );
        // Nine more ticks within the second: silent.
        for i in 1..10 {
            assert_eq!(log.failed(t0 + Duration::from_millis(100 * i)), None);
        }
        // The first tick a second after the last report carries the nine plus itself.
        assert_eq!(log.failed(t0 + Duration::from_millis(1000)), Some(10));
        assert_eq!(log.failed(t0 + Duration::from_millis(1100)), None);
        assert_eq!(log.recovered(), Some(12));
        assert_eq!(log.recovered(), None);
        // A new streak is reported at once again.
        assert_eq!(log.failed(t0 + Duration::from_millis(1200)), Some(1));
    }
}
