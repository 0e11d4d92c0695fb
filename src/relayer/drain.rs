//! The relayer's part of a graceful stop ([`Relayer::drain_settlements`]): what was answered reaches the relay log
//! before the miner's final ingest and the storage close, within a bound that fits a stop's grace period.
//!
//! Once the relay server drained its connections, relays may still be on their way to the log: WebSocket relay
//! connections (they leave the server's drain; each finishes the relay in hand, module `ws`), optimistic
//! settlements (answered first, validated and appended in the background; while the chain is unreachable their
//! reads are tried again for up to 30 s, module `chain_retry`), minings whose gateway went away and streamed
//! answers (module `detach`, module `stream`), and, without `relay_log.durable_ack`, relays answered once queued
//! for the log (module `log`). The drain waits for all of them for at most [`SETTLEMENT_DRAIN_LIMIT`], then gives
//! the relay log's queue and the relay meter's last sync at most [`FLUSH_LIMIT`] more: at most 15 s in all. So a
//! stop fits the common 30 s grace period (Kubernetes' default `terminationGracePeriodSeconds`) together with the
//! relay server's drain (as long as the backends answer the relays in flight: that drain waits for them, up to their
//! request timeouts) and the miner's final ingest; a longer grace period leaves room for slow backends.
//!
//! What is still running at a limit is abandoned, not cancelled: logged at ERROR with its counts and counted in
//! `ha_relayer_shutdown_abandoned_total{kind}` (`websocket` connections, `optimistic` settlements, `detached`
//! minings and streams, `queued` relays of the log's queue). Each is a relay answered to its gateway that may never
//! be in the relay log: it is lost unless its append lands before the storage closes, and even then the miner's
//! final ingest may not have seen it.

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::{OPTIMISTIC_IN_FLIGHT, Relayer};

/// How long the shutdown waits for the relays still settling ([`Relayer::drain_settlements`]).
pub const SETTLEMENT_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long the shutdown then waits for the relay log's queue and the relay meter's last sync.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(5);

impl Relayer {
    /// The relayer's drain at a graceful stop: [`Relayer::drain_settlements_within`] [`SETTLEMENT_DRAIN_LIMIT`],
    /// then at most [`FLUSH_LIMIT`] for the relay log's queue and the meter's last sync: at most 15 s, so a stop
    /// fits a 30 s grace period with the relay server's drain and the miner's final ingest. Call once the relay
    /// server drained its connections and before the miner's final ingest and the storage close. The relayer takes
    /// no relay after it.
    pub async fn drain_settlements(&self) {
        self.drain_settlements_within(SETTLEMENT_DRAIN_LIMIT).await;
    }

    /// Closes the WebSocket relay connections (module `ws`; each finishes the relay in hand) and waits until every
    /// optimistic settlement running in the background is done (validated, then appended or dropped): a relay
    /// already answered to its gateway but still validating would otherwise never reach the relay log. Every
    /// background settlement holds one of the `OPTIMISTIC_IN_FLIGHT` permits, so holding them all means none is
    /// left running; they are released on return. Then waits for the minings and settlements whose handler was
    /// dropped (their gateway disconnected) and which finish in tasks of their own (module `detach`), and for the
    /// streamed answers in flight (module `stream`), each mining its relay when its backend's stream ends. All of
    /// that for at most `limit`.
    ///
    /// Then, for at most [`FLUSH_LIMIT`]: closes the relay log's queue and waits until every relay queued was
    /// appended and settled (without `relay_log.durable_ack` a relay is answered once queued), and syncs the relay
    /// meter a last time, so the compute units charged since its last periodic sync reach the shared total the
    /// other relayers on the same storage count.
    ///
    /// What a limit cut short is abandoned, not cancelled: logged at ERROR with its counts and counted in
    /// `ha_relayer_shutdown_abandoned_total{kind}`. Each is a relay answered that may never be in the relay log.
    pub async fn drain_settlements_within(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.stop_streams();
        let mut abandoned: Vec<(&'static str, usize)> = Vec::new();
        // WebSocket relay connections first: they outlive the relay server's drain (an upgraded connection
        // leaves it), and each finishes the relay in hand before it ends.
        if timeout_at(deadline, self.ws_slots.close_all()).await.is_err() {
            abandoned.push(("websocket", self.ws_slots.open()));
        }
        let all = u32::try_from(OPTIMISTIC_IN_FLIGHT).unwrap_or(u32::MAX);
        match timeout_at(deadline, self.optimistic.acquire_many(all)).await {
            Ok(Ok(_all)) => tracing::debug!("optimistic settlements drained"),
            // The semaphore is never closed; nothing would be left to wait for.
            Ok(Err(e)) => tracing::warn!(error = %e, "optimistic settlements not drained"),
            // The permits taken so far went back with the dropped wait: the others are held by settlements.
            Err(_) => abandoned.push((
                "optimistic",
                OPTIMISTIC_IN_FLIGHT.saturating_sub(self.optimistic.available_permits()),
            )),
        }
        if timeout_at(deadline, self.detached.idle()).await.is_err() {
            abandoned.push(("detached", self.detached.running()));
        }
        let flush_deadline = Instant::now() + FLUSH_LIMIT;
        if timeout_at(flush_deadline, self.appender.close()).await.is_err() {
            abandoned.push(("queued", self.appender.unsettled()));
        }
        if let Some(meter) = &self.meter
            && timeout_at(flush_deadline, meter.sync()).await.is_err()
        {
            tracing::error!(
                limit = ?FLUSH_LIMIT,
                "relay meter's last sync did not finish: compute units charged since its last round may be missing \
                 from the shared total other relayers on the same storage count"
            );
        }
        self.report_abandoned(&abandoned, limit);
    }

    /// Logs at ERROR and counts (`ha_relayer_shutdown_abandoned_total{kind}`) what the drain gave up on.
    fn report_abandoned(&self, abandoned: &[(&'static str, usize)], limit: Duration) {
        let abandoned: Vec<_> = abandoned.iter().filter(|(_, n)| *n > 0).collect();
        if abandoned.is_empty() {
            return;
        }
        let count = |kind: &str| abandoned.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n);
        for (kind, n) in &abandoned {
            self.metrics
                .shutdown_abandoned
                .with_label_values(&[kind])
                .inc_by(u64::try_from(*n).unwrap_or(u64::MAX));
        }
        tracing::error!(
            settlement_limit = ?limit,
            flush_limit = ?FLUSH_LIMIT,
            optimistic = count("optimistic"),
            detached = count("detached"),
            queued = count("queued"),
            websocket = count("websocket"),
            "shutdown drain gave up: relays already answered may never reach the relay log (optimistic settlements \
             still validating or appending, e.g. retrying an unreachable chain; minings and streams still running; \
             relays still queued for the log; websocket connections still open); they are lost unless appended \
             before storage closes (counted in ha_relayer_shutdown_abandoned_total)"
        );
    }
}
