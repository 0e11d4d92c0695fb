//! What the miner exports besides its logs: the gauges observed once per block (sessions by state, height,
//! leadership, ingest lag, each supplier's block processing lag), and the valuing and counting of lost revenue in
//! the money metrics, which must add up to what was really lost.

use super::*;

impl Miner {
    /// Records that the work of block `height` completed for every supplier no command or record write of it
    /// failed for ([`Miner::execute`] collects those in `block_failures`). A supplier with no completed block in
    /// this leadership term counts the block before its first one as completed.
    pub(super) fn mark_block_work(&mut self, height: i64) {
        let signers = &self.signers;
        self.work_done_at.retain(|supplier, _| signers.contains_key(supplier));
        for supplier in self.signers.keys() {
            if self.block_failures.contains(supplier) {
                self.work_done_at.entry(supplier.clone()).or_insert(height - 1);
            } else {
                self.work_done_at.insert(supplier.clone(), height);
            }
        }
    }

    /// Sessions by state, height, leadership, ingest lag and block processing lag (once per block).
    pub(super) async fn observe_gauges(&self, height: i64) {
        let Some(m) = &self.metrics else { return };
        m.block_height.set(height);
        m.leader_status
            .with_label_values(&[&self.config.instance])
            .set(i64::from(self.engine.is_leader()));
        let mut by_state: HashMap<&'static str, i64> = HashMap::new();
        for record in self.engine.sessions().filter(|r| !r.pruned) {
            *by_state.entry(record.state.as_str()).or_default() += 1;
        }
        by_state.insert(
            TOMBSTONE_STATE,
            i64::try_from(self.engine.tombstones().count()).unwrap_or(i64::MAX),
        );
        for state in [
            TOMBSTONE_STATE,
            "active",
            "claiming",
            "claimed",
            "proving",
            "proved",
            "settled",
            "discarded",
            "expired",
        ] {
            m.sessions
                .with_label_values(&[state])
                .set(by_state.get(state).copied().unwrap_or(0));
        }
        // Blocks behind the tip: a supplier whose commands fail at every block shows a growing lag.
        m.block_processing_lag.reset();
        for supplier in self.signers.keys() {
            let done = self.work_done_at.get(supplier).copied().unwrap_or(height);
            m.block_processing_lag
                .with_label_values(&[supplier])
                .set(height.saturating_sub(done).max(0));
        }
        for supplier in self.signers.keys() {
            let read = self.storage.relay_log.backlog(supplier).await;
            self.progressed();
            if let Ok(backlog) = read {
                let lag = backlog.undelivered.saturating_add(backlog.pending);
                m.consumer_lag
                    .with_label_values(&[supplier])
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
        self.observe_unowned_logs(m).await;
    }

    /// The uPOKT value of `compute_units` of a session (§6.3.1 at the session start height), for money metrics.
    pub(super) async fn upokt(&self, service_id: &str, session_end: i64, compute_units: u64) -> Option<u64> {
        use num_traits::ToPrimitive as _;
        let params = self.chain.shared_params_at(session_end).await.ok()?;
        let start = SessionWindows::new(&params, session_end).ok()?.start;
        let start_params = self.chain.shared_params_at(start).await.ok()?;
        let target = self.chain.difficulty_target_at(service_id, start).await.ok()?;
        lottery::claimed_upokt(
            compute_units,
            &target,
            start_params.compute_units_to_tokens_multiplier,
            start_params.compute_unit_cost_granularity,
        )?
        .to_u64()
    }

    /// Counts a loss in the money metrics: relays and compute units exactly, uPOKT when it could be valued
    /// (`None`: a chain query failed; logged, so the uPOKT metric's shortfall is visible).
    pub(super) fn count_loss(
        &self,
        key: &SessionKey,
        service: &str,
        reason: &str,
        relays: u64,
        compute_units: u64,
        upokt: Option<u64>,
    ) {
        let Some(m) = &self.metrics else {
            return;
        };
        let labels = [key.supplier.as_str(), service, reason];
        m.relays_lost.with_label_values(&labels).inc_by(relays);
        m.compute_units_lost.with_label_values(&labels).inc_by(compute_units);
        match upokt {
            Some(upokt) => m.upokt_lost.with_label_values(&labels).inc_by(upokt),
            None => tracing::error!(
                supplier = key.supplier,
                session = key.session_id,
                reason,
                relays,
                compute_units,
                "cannot value a loss in uPOKT (chain query failed): ha_miner_upokt_lost_total misses it, \
                 ha_miner_relays_lost_total and ha_miner_compute_units_lost_total count it"
            ),
        }
    }
}
