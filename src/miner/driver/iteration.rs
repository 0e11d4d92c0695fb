//! The miner's loop: [`Miner::run`] ticks until shutdown (ingest rounds between ticks while busy), and each
//! iteration ([`Miner::step`]) campaigns, ingests and, on a new block, runs the engine's work for it; stopping
//! stores what is pending and gives the lease up. Its phases are timed ([`StepTimer`]) so an iteration that
//! falls behind the chain shows where the time went.

use super::*;

impl Miner {
    /// Runs until `shutdown` resolves; every iteration beats the heartbeat, busy or idle.
    pub async fn run(
        mut self,
        heartbeat: crate::telemetry::Heartbeat,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if let Err(e) = self.sync_suppliers().await {
            tracing::error!(error = %e, "miner could not restore sessions; retrying every tick");
        }
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.config.tick);
        let mut ingest_ticker = tokio::time::interval(self.config.ingest_every);
        ingest_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let extra_rounds = self.config.ingest_every < self.config.tick;
        // A failing step repeats every tick (storage down: 10 lines a second); one line a second says it. The
        // rounds between ticks have their own, so theirs never hide a tick's different error.
        let failures = crate::telemetry::LogThrottle::new(Duration::from_secs(1));
        let round_failures = crate::telemetry::LogThrottle::new(Duration::from_secs(1));
        loop {
            // Extra ingest rounds only while leading and busy (a round took relays within the last tick): an idle
            // or following miner reads nothing between ticks.
            let busy = self.ingest_busy_at.is_some_and(|at| at.elapsed() < self.config.tick);
            let ingest_due = extra_rounds && self.engine.is_leader() && busy;
            tokio::select! {
                // A stop asked while a tick is due wins: the final ingest below runs at once.
                biased;
                _ = &mut shutdown => break,
                _ = ticker.tick() => {}
                _ = ingest_ticker.tick(), if ingest_due => {
                    if let Err(e) = self.ingest_between_ticks().await
                        && let Some(suppressed) = round_failures.admit()
                    {
                        tracing::warn!(
                            error = %e,
                            suppressed,
                            "ingest round between ticks failed; retrying (`suppressed`: failures not logged since \
                             the last line)"
                        );
                    }
                    continue;
                }
            }
            heartbeat.beat();
            if let Err(e) = self.step().await
                && let Some(suppressed) = failures.admit()
            {
                tracing::warn!(
                    error = %e,
                    suppressed,
                    "miner iteration failed; retrying next tick (`suppressed`: failed iterations not logged since \
                     the last line)"
                );
            }
        }
        // Graceful shutdown: ingest what is pending and persist tries and records, including the records a
        // failed iteration could not store (else they wait for the next leader to rebuild them).
        match self.ingest().await {
            Err(e) if e.is_fenced() => self.fenced_out(&e),
            Err(e) => tracing::warn!(error = %e, "final ingest failed; entries stay pending for redelivery"),
            Ok(()) => {}
        }
        if self.engine.is_leader() {
            match self.persist_pending().await {
                Err(e) if e.is_fenced() => self.fenced_out(&e),
                Err(e) => {
                    tracing::warn!(error = %e, "records not stored before stopping; the next leader rebuilds them")
                }
                Ok(()) => {}
            }
        }
        self.resign().await;
    }

    /// Gives the lease up when this miner leads, last thing before it stops, so a standby takes over the claims
    /// and proofs at its next tick instead of when the lease expires (`storage.redis.leader_ttl_seconds`, 30 s by
    /// default, on Redis; 10 s on redb and raft): a rolling restart of the leader's pod no longer leaves the
    /// windows without a submitting miner for that long. Best effort: a failed resign leaves the lease to expire, as after a crash.
    pub(in crate::miner) async fn resign(&mut self) {
        let Some(token) = self.leader_token else {
            return;
        };
        match self
            .storage
            .leadership
            .resign(ELECTION, &self.config.instance, token)
            .await
        {
            Ok(true) => tracing::info!(instance = self.config.instance, "miner leadership given up on stop"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "giving up the miner leadership on stop failed; a standby takes over once the lease expires"
            ),
        }
        self.leave_leader_mode();
    }

    /// An ingest round between two ticks (`MinerConfig::ingest_every`): a write refused by the fence ends
    /// leadership as in [`Miner::step`]; any other failure holds every supplier's claims until a round catches
    /// up, as a failed ingest of a tick does.
    pub(super) async fn ingest_between_ticks(&mut self) -> Result<(), MinerError> {
        // As a tick does: the records a failed step left, and their waiting reports, before any ingest (an
        // eventually durable batch carrying such a record must not let its report run as if it were stored).
        match self.persist_pending().await {
            Err(e) if e.is_fenced() => {
                self.fenced_out(&e);
                return Ok(());
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        match self.ingest().await {
            Err(e) if e.is_fenced() => {
                self.fenced_out(&e);
                Ok(())
            }
            Err(e) => {
                self.mark_ingest_behind();
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// After a failed ingest: every supplier's log counts as not caught up, so its claims are held until a round
    /// catches up (`Engine::set_ingest_caught_up`).
    pub(super) fn mark_ingest_behind(&mut self) {
        for supplier in self.signers.keys() {
            self.engine.set_ingest_caught_up(supplier, false);
        }
    }

    /// One iteration: leadership, ingest, new block, commands. A write refused by the fence ends leadership here
    /// (logged at WARN, counted) and is not an error of the iteration.
    pub async fn step(&mut self) -> Result<(), MinerError> {
        match self.step_once().await {
            Err(e) if e.is_fenced() => {
                self.fenced_out(&e);
                Ok(())
            }
            other => other,
        }
    }

    /// One iteration. Its phases are timed (`miner iteration` at DEBUG: milliseconds per phase) so a miner that
    /// falls behind the chain on a loaded host shows where a block's work goes.
    pub(super) async fn step_once(&mut self) -> Result<(), MinerError> {
        let mut timer = StepTimer::start();
        self.campaign().await;
        self.lap(&mut timer, "campaign");
        if let Some(m) = &self.metrics {
            m.leader_status
                .with_label_values(&[&self.config.instance])
                .set(i64::from(self.engine.is_leader()));
        }
        // Followers stay passive: no ingest, no block handling, no record writes (they would race the leader's
        // records through storage). A follower that becomes leader reloads everything from storage first.
        if !self.engine.is_leader() {
            return Ok(());
        }
        let result = self.lead_once(&mut timer).await;
        timer.report(self.engine.height());
        result
    }

    /// The leader's part of an iteration: the chain's tip, ingest, then the block's work when the chain moved.
    ///
    /// The tip is read before the ingest round, so the claims a block makes due are built from tries holding every
    /// relay the log held when the miner learnt of that block. The relayer appends a session's relays until its
    /// height reaches the claim's first send height (`relayer::mining`), so a relay it appended before that block
    /// was rightly accepted; with the tip read after the round, one committed during a slow round (after its
    /// supplier's read) and before the block was left out of the claim the iteration then built, and counted lost
    /// (`relays_after_claim`; seen in the `raft_partition` process test, a 2 s round on a leader whose writes went
    /// one entry per part while a node was cut off).
    ///
    /// That still left the appends landing after the round's read of a supplier's log and before the claim's
    /// root was read (a relayer's check passed a block earlier, or its height lags the miner's): acknowledged to
    /// the gateway, never in the claim. The freeze read ([`Miner::freeze_read`]) reads the logs of the suppliers
    /// whose claims the block decided once more, right before those claims are built: it is the point where
    /// their tries freeze, and a relay appended after it is counted and logged as late.
    pub(super) async fn lead_once(&mut self, timer: &mut StepTimer) -> Result<(), MinerError> {
        self.persist_pending().await?;
        self.lap(timer, "persist_pending");
        // The tip only (node status, a few dozen bytes), not the latest block: this runs every tick, and a block
        // with proofs in it is MBs, returned twice by `GetLatestBlock`. Blocks are read where their contents are
        // needed (the proof seed block's hash, `proof_required` and `submit`). A failure fails the iteration
        // after the ingest round: the chain being unreachable must not stop the relay log from being ingested.
        let tip = self.chain.tip().await;
        self.lap(timer, "tip");
        let ingested = self.ingest().await;
        self.lap(timer, "ingest");
        match &ingested {
            Err(e) if e.is_fenced() => return ingested,
            // A failed ingest round (storage refusing the tries' writes, e.g. Redis at maxmemory, or one batch
            // that cannot be read) must not stop the block's work: proofs of claimed sessions need no ingest,
            // and every supplier's claim is held while its log is not caught up (until its last send height,
            // `Engine::set_ingest_caught_up`). Returned once the block is handled.
            Err(e) => {
                tracing::warn!(error = %e, "ingest failed; this block's claims and proofs are still handled");
                self.mark_ingest_behind();
            }
            // After ingest, so a removed supplier's last relays are in its tries before it is considered drained.
            Ok(()) => {
                self.sync_suppliers().await?;
                self.lap(timer, "sync_suppliers");
            }
        }
        let tip = tip?;
        if tip.height > self.engine.height() {
            timer.new_block = true;
            self.leading_since.get_or_insert(tip.height);
            let step = self.engine.handle(Event::NewBlock { height: tip.height });
            self.block_failures.clear();
            // The freeze read of the claims this block decided (`Miner::freeze_read`): what their suppliers'
            // relayers appended since the round read their logs goes into the claims, not the late tries. A
            // failure leaves the claims to what the tries hold (claims are not held for it: their send height
            // came) and holds the suppliers' next claims until a round catches up.
            match self.freeze_read(&step).await {
                Err(e) if e.is_fenced() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "freeze read before the block's claims failed; claims built from the tries as they are");
                    self.mark_ingest_behind();
                }
                Ok(()) => {}
            }
            self.lap(timer, "freeze_read");
            let executed = self.execute(step).await;
            self.lap(timer, "execute");
            // Fenced out: another instance leads; nothing more to read or count here.
            if let Err(e) = &executed
                && e.is_fenced()
            {
                return executed;
            }
            // After the block's own work (its claims and proofs come first), and never failing it (module
            // `requirement`).
            self.watch_proof_params().await;
            self.lap(timer, "proof_params");
            // What the chain paid for the sessions settled by now (module `settled`); fails the block only when
            // fenced out, which then comes first (the caller resigns on it).
            let counted = self.count_settlements().await;
            self.lap(timer, "settlements");
            if let Err(e) = &counted
                && e.is_fenced()
            {
                return counted;
            }
            // Observed whether or not a command failed: in a block with a failed command, the height, the
            // sessions and the lags kept their old values otherwise (and the funds went unchecked while one
            // session's command failed at every block), and a supplier stuck on failing commands did not show.
            self.mark_block_work(tip.height);
            self.observe_gauges(tip.height).await;
            self.lap(timer, "gauges");
            self.monitor_funds();
            counted?;
            executed?;
        }
        ingested
    }
}

impl Miner {
    /// Ends the phase `name` of `timer` and counts it as progress ([`Miner::progressed`]).
    fn lap(&self, timer: &mut StepTimer, name: &'static str) {
        timer.lap(name);
        self.progressed();
    }

    /// Counts a piece of work done as progress (`MinerStats::steps_done`, read by the raft watchdog to tell a hung
    /// miner from a busy one): every phase of an iteration and every command, and inside the phases that go
    /// through many suppliers or sessions, each one (a supplier's ingest and each of its batches, a session's trie
    /// opened or committed, its record written, its claim or proof built, a settlement block read, a supplier's
    /// backlog read for the gauges, a supplier restored). Each piece makes a few chain or storage calls at most,
    /// each bounded by its timeout, so a working miner moves this within seconds however many suppliers and
    /// sessions it serves.
    pub(super) fn progressed(&self) {
        self.stats.steps_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Times the phases of one miner iteration; reported at DEBUG when the iteration handled a new block or took
/// long (a tick that only polled the tip is not logged), and at WARN, whatever the log level, when it took
/// [`StepTimer::STALLED`] or more: a leader whose iterations take seconds misses windows of a few blocks without
/// any other error (seen on a host starved of CPU, where every send was late), so the operator sees which phase.
pub(super) struct StepTimer {
    started: std::time::Instant,
    last: std::time::Instant,
    phases: Vec<(&'static str, Duration)>,
    /// The iteration handled a new block.
    pub(super) new_block: bool,
}

impl StepTimer {
    /// An iteration that took longer than this is reported even without a new block.
    pub(super) const SLOW: Duration = Duration::from_millis(50);
    /// An iteration that took this long is reported at WARN.
    pub(super) const STALLED: Duration = Duration::from_secs(2);

    pub(super) fn start() -> Self {
        let now = std::time::Instant::now();
        Self {
            started: now,
            last: now,
            phases: Vec::new(),
            new_block: false,
        }
    }

    /// Ends the phase `name` now.
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    /// The level an iteration of `total` is reported at, if any.
    pub(super) fn level(&self, total: Duration) -> Option<tracing::Level> {
        if total >= Self::STALLED {
            Some(tracing::Level::WARN)
        } else if self.new_block || total >= Self::SLOW {
            Some(tracing::Level::DEBUG)
        } else {
            None
        }
    }

    fn report(&self, height: i64) {
        let total = self.started.elapsed();
        let level = self.level(total);
        let enabled = match level {
            Some(tracing::Level::WARN) => true,
            Some(_) => tracing::enabled!(tracing::Level::DEBUG),
            None => false,
        };
        if !enabled {
            return;
        }
        let phases = self
            .phases
            .iter()
            .map(|(name, d)| format!("{name}={:.1}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ");
        let total_ms = format!("{:.1}", total.as_secs_f64() * 1000.0);
        if level == Some(tracing::Level::WARN) {
            tracing::warn!(
                height,
                new_block = self.new_block,
                total_ms,
                phases,
                "miner iteration stalled (phases in ms): claims and proofs wait behind it"
            );
        } else {
            tracing::debug!(
                height,
                new_block = self.new_block,
                total_ms,
                phases,
                "miner iteration (phases in ms)"
            );
        }
    }
}
