//! The relayer's part of a graceful stop ([`Relayer::drain_settlements`]): what was answered reaches the relay log
//! before the miner's final ingest and the storage close, within a bound that fits a stop's grace period.
//!
//! Once the relay server drained its connections, relays may still be on their way to the log: WebSocket relay
//! connections (they leave the server's drain; each finishes the relay in hand, module `ws`), optimistic
//! settlements (answered first, validated and appended in the background; while the chain is unreachable their
//! reads are tried again for up to 30 s, module `chain_retry`), minings whose gateway went away and streamed
//! answers (module `detach`, module `stream`), and, without `relay_log.durable_ack`, relays answered once queued
//! for the log (module `log`). The drain waits for all of them for at most [`SETTLEMENT_DRAIN_LIMIT`], then gives
//! the relay log's queue and the relay meter's last sync at most [`FLUSH_LIMIT`] more: at most 15 s in all. A
//! stop's grace period must hold it together with the relay server's drain (the backends' answers to the relays in
//! flight: that drain waits for them, up to their request timeouts) and the miner's stop (up to
//! `node::MINER_STOP_LIMIT`, 30 s): 60–90 s, as the README says, not Kubernetes' default 30 s
//! (`terminationGracePeriodSeconds`).
//!
//! What is still running at a limit is abandoned, not cancelled: logged at ERROR with its counts, counted in
//! `ha_relayer_shutdown_abandoned_total{kind}` (`websocket` connections, `optimistic` settlements, `detached`
//! minings and streams, `queued` relays of the log's queue) and returned ([`Abandoned`]): the node then exits with
//! code 1, since a process that stops is not scraped again. Each is a relay answered to its gateway that may never
//! be in the relay log: it is lost unless its append lands before the storage closes, and even then the miner's
//! final ingest may not have seen it.

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::{OPTIMISTIC_IN_FLIGHT, Relayer};

/// How long the shutdown waits for the relays still settling ([`Relayer::drain_settlements`]).
pub const SETTLEMENT_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long the shutdown then waits for the relay log's queue and the relay meter's last sync.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// What a relay drain gave up on at its limits (module docs), by kind; all zero after a complete drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// WebSocket relay connections still open.
    pub websocket: usize,
    /// Optimistic settlements still validating or appending.
    pub optimistic: usize,
    /// Minings and streamed answers still running in tasks of their own.
    pub detached: usize,
    /// Relays still queued for the relay log.
    pub queued: usize,
}

impl Abandoned {
    /// Whether the drain gave up on nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Each kind with its count, as labelled in `ha_relayer_shutdown_abandoned_total{kind}`.
    fn by_kind(&self) -> [(&'static str, usize); 4] {
        [
            ("websocket", self.websocket),
            ("optimistic", self.optimistic),
            ("detached", self.detached),
            ("queued", self.queued),
        ]
    }
}

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} optimistic settlements, {} detached minings and streams, {} queued relays, {} websocket connections",
            self.optimistic, self.detached, self.queued, self.websocket
        )
    }
}

impl Relayer {
    /// The relayer's drain at a graceful stop: [`Relayer::drain_settlements_within`] [`SETTLEMENT_DRAIN_LIMIT`],
    /// then at most [`FLUSH_LIMIT`] for the relay log's queue and the meter's last sync: at most 15 s (module docs
    /// for the grace period a stop needs). Call once the relay server drained its connections and before the
    /// miner's final ingest and the storage close. The relayer takes no relay after it. Returns what it abandoned.
    pub async fn drain_settlements(&self) -> Abandoned {
        self.drain_settlements_within(SETTLEMENT_DRAIN_LIMIT).await
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
    /// What a limit cut short is abandoned, not cancelled: logged at ERROR with its counts, counted in
    /// `ha_relayer_shutdown_abandoned_total{kind}` and returned. Each is a relay answered that may never be in the
    /// relay log.
    pub async fn drain_settlements_within(&self, limit: Duration) -> Abandoned {
        let deadline = Instant::now() + limit;
        self.stop_streams();
        let mut abandoned = Abandoned::default();
        // WebSocket relay connections first: they outlive the relay server's drain (an upgraded connection
        // leaves it), and each finishes the relay in hand before it ends.
        if timeout_at(deadline, self.ws_slots.close_all()).await.is_err() {
            abandoned.websocket = self.ws_slots.open();
        }
        let all = u32::try_from(OPTIMISTIC_IN_FLIGHT).unwrap_or(u32::MAX);
        match timeout_at(deadline, self.optimistic.acquire_many(all)).await {
            Ok(Ok(_all)) => tracing::debug!("optimistic settlements drained"),
            // The semaphore is never closed; nothing would be left to wait for.
            Ok(Err(e)) => tracing::warn!(error = %e, "optimistic settlements not drained"),
            // The permits taken so far went back with the dropped wait: the others are held by settlements.
            Err(_) => {
                abandoned.optimistic = OPTIMISTIC_IN_FLIGHT.saturating_sub(self.optimistic.available_permits());
            }
        }
        if timeout_at(deadline, self.detached.idle()).await.is_err() {
            abandoned.detached = self.detached.running();
        }
        let flush_deadline = Instant::now() + FLUSH_LIMIT;
        if timeout_at(flush_deadline, self.appender.close()).await.is_err() {
            abandoned.queued = self.appender.unsettled();
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
        abandoned
    }

    /// Logs at ERROR and counts (`ha_relayer_shutdown_abandoned_total{kind}`) what the drain gave up on.
    fn report_abandoned(&self, abandoned: &Abandoned, limit: Duration) {
        if abandoned.is_empty() {
            return;
        }
        for (kind, n) in abandoned.by_kind() {
            if n > 0 {
                self.metrics
                    .shutdown_abandoned
                    .with_label_values(&[kind])
                    .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
            }
        }
        tracing::error!(
            settlement_limit = ?limit,
            flush_limit = ?FLUSH_LIMIT,
            optimistic = abandoned.optimistic,
            detached = abandoned.detached,
            queued = abandoned.queued,
            websocket = abandoned.websocket,
            "shutdown drain gave up: relays already answered may never reach the relay log (optimistic settlements \
             still validating or appending, e.g. retrying an unreachable chain; minings and streams still running; \
             relays still queued for the log; websocket connections still open); they are lost unless appended \
             before storage closes (counted in ha_relayer_shutdown_abandoned_total; the process exits with code 1)"
        );
    }
}
