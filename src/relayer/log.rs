//! Group commit of mined relays in front of the storage relay log.
//!
//! Handlers hand relays to one appender task over a bounded channel. The task takes whatever is queued (at most
//! `max_batch_relays`; when the queue is short it waits up to `max_batch_delay_ms` from the first relay for more)
//! and appends it as one batch, with a few batches in flight so one slow commit does not stall the next. With
//! `durable_ack` the handler waits for its batch's append to return (durable); without it, the handler returns at
//! once ([`LogAppender::append_eventually`]) and a failed batch is logged and counted as dropped, its relays'
//! meter charges refunded (not in the log, so never paid: kept charged, they would count against the session's
//! budget and refuse later relays the chain would pay). Either way no relay costs a commit of its own.
//!
//! A relay the log cannot hold at all (over the raft entry limit, [`storage::RelayLog::relay_fits`]) is refused on
//! its own with `StorageError::TooLarge` before it is queued: it neither fails its batch-mates nor counts as a
//! storage outage (which would refuse every relay for [`REFUSE_AFTER_FAILURE`]).
//!
//! Redis above its relay memory threshold (`storage.redis.relay_max_memory_ratio` of `maxmemory`; storage crate,
//! `redis` module docs) refuses appends with `StorageError::RelayMemoryThreshold`: handled like any failed append
//! (relays refused before the backend, one let through per [`REFUSE_AFTER_FAILURE`], the first success ends it, so appends resume
//! without a restart once the miner's pruning freed memory), but answered as `redis_memory_threshold` (code 19,
//! 503) and logged as such, at most once a second. `/ready` stays green meanwhile: every relayer on that Redis
//! refuses alike, so going unready would move no traffic to a relayer that could take it (there is none), would
//! empty a load balancer's pool or stall a rolling restart, and would turn a 503 that names its reason into
//! connection errors; the process itself works (its miner ingests and prunes), and the state is on `/metrics`
//! (`ha_relayer_relays_rejected_total{reason="redis_memory_threshold"}`, `ha_miner_redis_memory_usage_ratio`).
//! Redis at `maxmemory` still fails `/ready` (`redis_oom`): the miner's writes are refused then.
//!
//! The appender task beats `ha_loop_heartbeat_timestamp_seconds{loop="relay_log_appender"}` from a timer it
//! waits on next to the queue ([`crate::telemetry::IDLE_BEAT`]): an idle appender waiting for relays beats, a busy
//! one too (the wait picks a ready branch at random, so the timer is not starved by a full queue), and one stuck
//! (every commit slot held by appends that never return) stops beating. Nothing is added per relay or per batch:
//! one clock read and one store per timer wake.
//!
//! The shutdown closes the queue ([`LogAppender::close`], at the end of `Relayer::drain_settlements`) and waits
//! until every relay queued was appended (or its batch failed) and settled: without durable ack a relay is answered
//! once queued, so the miner's final ingest and the storage close must wait for its append.
//!
//! A backend that group-commits concurrent appends itself ([`storage::RelayLog::coalesces_appends`], the
//! embedded redb log with its write-ahead log) gets durable appends straight from the handler: batching here
//! too would only add a task hop and a wake-up to every relay's latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use crate::telemetry::{Heartbeat, LogThrottle};

/// Batches appended concurrently at most.
const IN_FLIGHT_BATCHES: usize = 4;
/// Relays queued in front of the appender at most (handlers wait when it is full: backpressure, no OOM).
const QUEUE_RELAYS: usize = 16_384;

type Ack = oneshot::Sender<Result<(), storage::StorageError>>;

/// Observes batch outcomes for metrics.
pub trait LogObserver: Send + Sync {
    /// A batch of `relays` relays was appended (`ok`) or failed.
    fn batch(&self, relays: usize, ok: bool);
    /// A durable append made without batching here (the backend coalesces appends) failed.
    fn append_failed(&self);
    /// A relay appended without durable ack was lost because its batch failed with `error`.
    fn dropped(&self, service_id: &str, error: &storage::StorageError);
}

/// One queued relay.
struct Item {
    relay: storage::MinedRelay,
    service_id: String,
    /// How its handler learns the outcome.
    outcome: Outcome,
}

/// What a queued relay's batch result goes to.
enum Outcome {
    /// A durable append: its handler waits for the result.
    Ack(Ack),
    /// An append without durable ack: its handler returned when it was queued; its meter charge is kept when the
    /// batch is appended and refunded when it failed, and `appended` runs once the batch is appended.
    Settle(super::meter::Charge, Option<Appended>),
}

/// What runs once a relay queued without durable ack is appended (the relayer records its hash as appended lately,
/// module `recent`: its repeat is then neither appended nor charged again; and counts it in
/// `ha_relayer_relays_mined_total`).
pub type Appended = Box<dyn FnOnce() + Send>;

/// Handle to the appender task (cheap to clone; the task ends when every handle is dropped).
#[derive(Clone)]
pub struct LogAppender {
    tx: mpsc::Sender<Item>,
    /// The log itself, asked whether a relay fits before it is queued: an oversized relay is refused on its own
    /// (`StorageError::TooLarge`) instead of failing its batch, and is no sign of a storage outage.
    log: Arc<dyn storage::RelayLog>,
    /// Set when the backend coalesces appends itself: durable appends go straight to it.
    direct: Option<(Arc<dyn storage::RelayLog>, Arc<dyn LogObserver>)>,
    /// One ERROR line per second at most for failed appends (each is counted in the metrics).
    failures: Arc<LogThrottle>,
    /// The last failed append, until an append succeeds: relays arriving within [`REFUSE_AFTER_FAILURE`] of it
    /// are refused before they reach the backend, then one relay per [`REFUSE_AFTER_FAILURE`] goes through
    /// ([`LogAppender::refusing`]).
    last_failure: Arc<Mutex<Option<Failure>>>,
    /// The close of the queue ([`LogAppender::close`]) and the relays queued not settled yet.
    closing: Closing,
}

/// Shared by the handles and the appender task: the close asked for, the task finished with every queued relay
/// settled, and how many relays handed to the queue are not settled yet (queued, or in a batch being appended).
#[derive(Clone)]
struct Closing {
    requested: Arc<Notify>,
    finished: Arc<watch::Sender<bool>>,
    unsettled: Arc<AtomicUsize>,
}

impl Closing {
    /// `relays` handed to the queue were settled (or were never queued).
    fn settled(&self, relays: usize) {
        self.unsettled.fetch_sub(relays, Ordering::Relaxed);
    }
}

/// A failed append and the probe let through since (module docs of [`REFUSE_AFTER_FAILURE`]).
#[derive(Debug)]
struct Failure {
    /// When the last append failed.
    at: Instant,
    /// Its error, answered to the relays refused meanwhile.
    error: storage::StorageError,
    /// When a relay was last let through to find out whether appends work again.
    probe_at: Option<Instant>,
}

/// How long after a failed append new relays are refused before they are served. Storage that refuses one
/// append (a full disk, Redis OOM or above its relay memory threshold, no raft quorum) refuses the next ones too;
/// serving them anyway makes the backend work for relays that can never be claimed (in optimistic mode they are
/// even answered first, then dropped), and makes the gateway wait for a backend answer only to get an error.
/// After this long one relay is let through (a probe) while the others are still refused, and one more every
/// this long while no append answered: the first append that succeeds ends the refusals, a failed one starts
/// them again. So while storage keeps refusing, the backend serves at most one relay per second for nothing,
/// not every relay arriving between the end of a window and the next failed append.
pub const REFUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How often a failed append is logged at most while they keep failing.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(1);

/// Where append outcomes go: the failure log (throttled) and the last failure that makes new relays refused.
#[derive(Clone)]
struct Outcomes {
    throttle: Arc<LogThrottle>,
    last_failure: Arc<Mutex<Option<Failure>>>,
}

impl Outcomes {
    fn record(&self, result: &Result<(), storage::StorageError>, relays: usize) {
        if let Err(storage::StorageError::TooLarge(e)) = result {
            // One write too large for the store: says nothing about the store's health.
            tracing::debug!(error = %e, relays, "relay log append refused as too large");
            return;
        }
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if last.take().is_some() {
                    tracing::info!("relay log appends succeed again; relays are served again");
                }
            }
            Err(e) => {
                *last = Some(Failure {
                    at: Instant::now(),
                    error: e.clone(),
                    probe_at: None,
                });
                drop(last);
                let Some(suppressed) = self.throttle.admit() else {
                    return;
                };
                if let storage::StorageError::RelayMemoryThreshold(e) = e {
                    // Not a storage failure: Redis is kept below maxmemory for the miner (storage crate, `redis`
                    // module docs, "Relay memory threshold").
                    tracing::error!(
                        error = %e,
                        relays,
                        suppressed,
                        "redis memory above relay threshold: relays are refused (redis_memory_threshold, code 19) \
                         before reaching the backend, so the miner keeps the rest of maxmemory to ingest what was \
                         accepted and to prune; taken again once its pruning brings memory below \
                         storage.redis.relay_max_memory_ratio (`suppressed`: refused appends not logged since the \
                         last line; every refused relay is counted in \
                         ha_relayer_relays_rejected_total{{reason=\"redis_memory_threshold\"}})"
                    );
                } else {
                    tracing::error!(
                        error = %e,
                        relays,
                        suppressed,
                        "relay log append failed; relays are refused before reaching the backend, one a second let \
                         through until an append succeeds (`suppressed`: failed appends not logged since the last line; all are counted in \
                         ha_relayer_relay_log_append_failures_total)"
                    );
                }
            }
        }
    }
}

fn refusing_at(last_failure: &Mutex<Option<Failure>>, now: Instant) -> Option<storage::StorageError> {
    let mut last = last_failure.lock().unwrap_or_else(|e| e.into_inner());
    let failure = last.as_mut()?;
    let within = |since: Instant| now.saturating_duration_since(since) < REFUSE_AFTER_FAILURE;
    if within(failure.at) || failure.probe_at.is_some_and(within) {
        return Some(failure.error.clone());
    }
    // The probe: this relay goes through; the others wait for its append (or the next window).
    failure.probe_at = Some(now);
    None
}

/// Settings of the appender.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Longest wait for more relays after the first one of a batch.
    pub max_delay: Duration,
    /// Largest batch.
    pub max_relays: usize,
}

impl LogAppender {
    /// Starts the appender over `log`, beating `heartbeat` (module docs). Must be called inside a tokio runtime.
    pub fn spawn(
        log: Arc<dyn storage::RelayLog>,
        settings: BatchSettings,
        observer: Arc<dyn LogObserver>,
        heartbeat: Heartbeat,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_RELAYS);
        let direct = log
            .coalesces_appends()
            .then(|| (Arc::clone(&log), Arc::clone(&observer)));
        let failures = Arc::new(LogThrottle::new(FAILURE_LOG_EVERY));
        let last_failure = Arc::new(Mutex::new(None));
        let outcomes = Outcomes {
            throttle: Arc::clone(&failures),
            last_failure: Arc::clone(&last_failure),
        };
        let closing = Closing {
            requested: Arc::new(Notify::new()),
            finished: Arc::new(watch::Sender::new(false)),
            unsettled: Arc::new(AtomicUsize::new(0)),
        };
        let task = Task {
            log: Arc::clone(&log),
            settings,
            observer,
            outcomes,
            heartbeat,
            closing: closing.clone(),
        };
        tokio::spawn(run(task, rx));
        Self {
            tx,
            log,
            direct,
            failures,
            last_failure,
            closing,
        }
    }

    /// Closes the queue and waits until every relay handed to it is settled: its batch appended (or failed) and its
    /// outcome given (a durable append's answer; without durable ack its charge kept or refunded). The end of the
    /// shutdown's drain (`Relayer::drain_settlements`): without durable ack a relay is answered once queued, and
    /// the miner's final ingest and the storage close must come after its append. Relays handed to the appender
    /// afterwards are refused ("relay log appender stopped"); appends straight to a backend that coalesces them
    /// (`direct`) are their callers' to wait for.
    pub async fn close(&self) {
        self.closing.requested.notify_one();
        let mut finished = self.closing.finished.subscribe();
        // The sender lives in `self`: this ends only once the task finished.
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Relays handed to the queue and not settled yet (queued, or in a batch being appended).
    pub fn unsettled(&self) -> usize {
        self.closing.unsettled.load(Ordering::Relaxed)
    }

    /// Hands `item` to the queue, counted unsettled until its batch settles it.
    async fn queue(&self, item: Item) -> Result<(), mpsc::error::SendError<Item>> {
        self.closing.unsettled.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.send(item).await;
        if sent.is_err() {
            self.closing.settled(1);
        }
        sent
    }

    /// The error of an append that failed less than [`REFUSE_AFTER_FAILURE`] ago with no append succeeding
    /// since: the relay about to be served should be refused with it instead.
    pub fn refusing(&self) -> Option<storage::StorageError> {
        refusing_at(&self.last_failure, Instant::now())
    }

    fn outcomes(&self) -> Outcomes {
        Outcomes {
            throttle: Arc::clone(&self.failures),
            last_failure: Arc::clone(&self.last_failure),
        }
    }

    /// Refuses a relay the log cannot hold at all (module docs).
    fn check_fits(&self, relay: &storage::MinedRelay) -> Result<(), storage::StorageError> {
        if self.log.relay_fits(relay) {
            return Ok(());
        }
        Err(storage::StorageError::TooLarge(format!(
            "relay of {} bytes is larger than the relay log can hold (see max_body_size_bytes)",
            relay.payload.len()
        )))
    }

    /// Appends `relay` and returns once its batch is durable.
    pub async fn append(&self, relay: storage::MinedRelay, service_id: &str) -> Result<(), storage::StorageError> {
        self.check_fits(&relay)?;
        if let Some((log, observer)) = &self.direct {
            let result = log.append(vec![relay]).await.map(|_| ());
            if result.is_err() {
                observer.append_failed();
            }
            self.outcomes().record(&result, 1);
            return result;
        }
        let (ack, done) = oneshot::channel();
        self.queue(Item {
            relay,
            service_id: service_id.to_string(),
            outcome: Outcome::Ack(ack),
        })
        .await
        .map_err(|_| appender_gone())?;
        done.await.map_err(|_| appender_gone())?
    }

    /// Queues `relay` without waiting for its batch (no durable ack). Once queued, the batch settles `charge`:
    /// kept when the relay is appended (then `appended` runs), refunded when the batch failed (module docs). A
    /// relay not queued (too large, the appender gone) gets its charge back with the error.
    pub async fn append_eventually(
        &self,
        relay: storage::MinedRelay,
        service_id: &str,
        charge: super::meter::Charge,
        appended: Option<Appended>,
    ) -> Result<(), (storage::StorageError, super::meter::Charge)> {
        if let Err(e) = self.check_fits(&relay) {
            return Err((e, charge));
        }
        let item = Item {
            relay,
            service_id: service_id.to_string(),
            outcome: Outcome::Settle(charge, appended),
        };
        match self.queue(item).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(item)) => match item.outcome {
                Outcome::Settle(charge, _) => Err((appender_gone(), charge)),
                Outcome::Ack(_) => Err((appender_gone(), super::meter::Charge::none())),
            },
        }
    }
}

fn appender_gone() -> storage::StorageError {
    storage::StorageError::Unavailable("relay log appender stopped".into())
}

/// What the appender task works with.
struct Task {
    log: Arc<dyn storage::RelayLog>,
    settings: BatchSettings,
    observer: Arc<dyn LogObserver>,
    outcomes: Outcomes,
    heartbeat: Heartbeat,
    closing: Closing,
}

/// The appender task: batches until the queue is closed ([`LogAppender::close`]; every relay queued before is
/// still taken) or every handle is dropped, then waits for the batches in flight and reports itself finished.
async fn run(task: Task, mut rx: mpsc::Receiver<Item>) {
    let Task {
        log,
        settings,
        observer,
        outcomes,
        heartbeat,
        closing,
    } = task;
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_BATCHES));
    let max = settings.max_relays.max(1);
    let mut beat = tokio::time::interval(crate::telemetry::IDLE_BEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = false;
    loop {
        // Not `biased`: with relays always queued the timer still gets its turn (module docs).
        let first = tokio::select! {
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = beat.tick() => {
                heartbeat.beat();
                continue;
            }
            _ = closing.requested.notified(), if !closed => {
                // No relay is queued from now on; those queued are still received, then `recv` ends.
                closed = true;
                rx.close();
                continue;
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.max_delay;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing queued: commit now if a commit slot is free (low latency when idle), else keep
                    // gathering until a slot frees up or the delay is over.
                    if in_flight.available_permits() > 0 {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(item)) => batch.push(item),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            // Never closed: nothing else takes its permits away.
            break;
        };
        let log = Arc::clone(&log);
        let observer = Arc::clone(&observer);
        let outcomes = outcomes.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut relays = Vec::with_capacity(batch.len());
            let mut waiting = Vec::with_capacity(batch.len());
            for item in batch {
                relays.push(item.relay);
                waiting.push((item.service_id, item.outcome));
            }
            let n = relays.len();
            let result = log.append(relays).await.map(|_| ());
            outcomes.record(&result, n);
            for (service_id, outcome) in waiting {
                match (outcome, &result) {
                    (Outcome::Ack(ack), _) => {
                        let _ = ack.send(result.clone());
                    }
                    (Outcome::Settle(charge, appended), Ok(())) => {
                        charge.commit();
                        if let Some(appended) = appended {
                            appended();
                        }
                    }
                    (Outcome::Settle(charge, _), Err(e)) => {
                        observer.dropped(&service_id, e);
                        charge.refund_counted();
                    }
                }
            }
            // Observed once the batch's relays are settled: a batch counted has its hashes recorded (module
            // `recent`) and its charges kept or refunded.
            observer.batch(n, result.is_ok());
            closing.settled(n);
        });
    }
    // Every batch in flight holds a permit: holding them all, none is left running.
    let all = u32::try_from(IN_FLIGHT_BATCHES).unwrap_or(u32::MAX);
    if let Err(e) = in_flight.acquire_many(all).await {
        tracing::warn!(error = %e, "relay log batches in flight not waited for");
    }
    closing.finished.send_replace(true);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    struct Quiet;

    fn spawn(log: Arc<dyn storage::RelayLog>, settings: BatchSettings) -> LogAppender {
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        LogAppender::spawn(
            log,
            settings,
            Arc::new(Quiet),
            telemetry.heartbeat("relay_log_appender"),
        )
    }

    /// The appender beats while it waits for relays (idle is healthy, not stalled) and while relays keep it
    /// busy (its timer is not starved by a queue that is never empty).
    #[tokio::test]
    async fn the_appender_beats_idle_and_busy() {
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let backend = storage::MemoryBackend::new();
        let settings = BatchSettings {
            max_delay: Duration::from_millis(1),
            max_relays: 8,
        };
        let appender = LogAppender::spawn(
            backend.storage().relay_log,
            settings,
            Arc::new(Quiet),
            telemetry.heartbeat("relay_log_appender"),
        );
        telemetry.assert_heartbeat_advances("relay_log_appender").await;
        let busy = tokio::spawn({
            let appender = appender.clone();
            async move {
                for n in 0.. {
                    let relay = storage::suite::relay("pokt1sup", "s1", n);
                    if appender
                        .append_eventually(relay, "anvil", crate::relayer::meter::Charge::none(), None)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        telemetry.assert_heartbeat_advances("relay_log_appender").await;
        busy.abort();
        assert!(
            backend
                .storage()
                .relay_log
                .backlog("pokt1sup")
                .await
                .unwrap()
                .undelivered
                > 0,
            "relays flowed while it beat"
        );
    }

    impl LogObserver for Quiet {
        fn batch(&self, _relays: usize, _ok: bool) {}
        fn append_failed(&self) {}
        fn dropped(&self, _service_id: &str, _error: &storage::StorageError) {}
    }

    /// Storage that refuses an append makes the appender refuse new relays for a second (they would fail the
    /// same way after the backend served them), then let one through per second while the others wait; a failed
    /// append starts over, the first append that succeeds ends it at once.
    #[tokio::test]
    async fn a_failed_append_refuses_new_relays_until_one_succeeds_or_a_second_passed() {
        let backend = storage::MemoryBackend::new();
        let settings = BatchSettings {
            max_delay: Duration::from_millis(1),
            max_relays: 8,
        };
        let appender = spawn(backend.storage().relay_log, settings);
        let relay = |n| storage::suite::relay("pokt1sup", "s1", n);
        appender.append(relay(1), "anvil").await.unwrap();
        assert!(appender.refusing().is_none(), "nothing failed yet");

        let full = storage::StorageError::OutOfMemory("disk full".into());
        backend.faults().refuse_writes(Some(full.clone()));
        assert_eq!(appender.append(relay(2), "anvil").await, Err(full.clone()));
        assert_eq!(
            appender.refusing(),
            Some(full.clone()),
            "refused right after the failure"
        );
        let failed_at = appender.last_failure.lock().unwrap().as_ref().map(|f| f.at).unwrap();
        let after = |d: Duration| refusing_at(&appender.last_failure, failed_at + d);
        assert_eq!(
            after(REFUSE_AFTER_FAILURE - Duration::from_millis(1)),
            Some(full.clone())
        );
        assert_eq!(
            after(REFUSE_AFTER_FAILURE),
            None,
            "one let through a second after the failure"
        );
        assert_eq!(
            after(REFUSE_AFTER_FAILURE + Duration::from_millis(1)),
            Some(full.clone()),
            "the others wait for its append"
        );
        assert_eq!(
            after(2 * REFUSE_AFTER_FAILURE),
            None,
            "another one when the first never reached an append"
        );
        assert_eq!(after(2 * REFUSE_AFTER_FAILURE), Some(full.clone()));
        // The probe's append fails: refused for a whole window again.
        assert_eq!(appender.append(relay(3), "anvil").await, Err(full.clone()));
        assert_eq!(appender.refusing(), Some(full));

        backend.faults().refuse_writes(None);
        appender.append(relay(4), "anvil").await.unwrap();
        assert!(appender.refusing().is_none(), "a successful append ends it at once");
    }

    /// Without durable ack the handler returns when its relay is queued; the relay's meter charge follows its
    /// batch: kept when the batch is appended, refunded (and counted) when it failed, as the relay is then not in
    /// the log and never paid. Before, the charge was kept at queueing: a failed batch's relays stayed charged
    /// against the session's budget.
    #[tokio::test]
    async fn a_failed_batch_without_durable_ack_refunds_its_relays_charges() {
        use crate::relayer::meter::{Budget, MeterKey, MeterObserver, RelayMeter};
        struct NoMeterObserver;
        impl MeterObserver for NoMeterObserver {
            fn storage_error(&self, _: &'static str) {}
        }
        let backend = storage::MemoryBackend::new();
        let store = backend.storage();
        let (_height, rx) = tokio::sync::watch::channel(0);
        let meter = RelayMeter::spawn(
            Arc::clone(&store.kv),
            crate::config::FailBehavior::Open,
            Duration::from_secs(3600),
            Duration::from_secs(60),
            rx,
            Arc::new(NoMeterObserver),
        );
        let key = MeterKey {
            session_id: "s1".into(),
            supplier: "pokt1sup".into(),
        };
        let budget = Budget {
            limit_compute_units: 10,
            forget_at_height: 100,
        };
        let refunded = prometheus::IntCounter::new("refunded", "refunded charges").unwrap();
        let charge = || async {
            meter
                .charge(&key, budget, 10)
                .await
                .unwrap()
                .count_abandoned_in(refunded.clone())
        };
        let settings = BatchSettings {
            max_delay: Duration::from_millis(1),
            max_relays: 8,
        };
        let appender = spawn(store.relay_log.clone(), settings);
        let relay = |n| storage::suite::relay("pokt1sup", "s1", n);
        let full = storage::StorageError::OutOfMemory("disk full".into());
        backend.faults().refuse_writes(Some(full));
        appender
            .append_eventually(relay(1), "anvil", charge().await, None)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while refunded.get() == 0 {
            assert!(
                Instant::now() < deadline,
                "the failed batch's charge was never refunded"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!meter.exhausted(&key, 10), "the failed relay's compute units are back");

        backend.faults().refuse_writes(None);
        appender
            .append_eventually(relay(2), "anvil", charge().await, None)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.relay_log.backlog("pokt1sup").await.unwrap().undelivered == 0 {
            assert!(Instant::now() < deadline, "the relay was never appended");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(meter.exhausted(&key, 10), "the appended relay stays charged");
        assert_eq!(refunded.get(), 1);
    }

    /// A relay the log cannot hold is refused on its own: not queued with others, not taken for a storage
    /// outage (which would refuse every relay for a second).
    #[tokio::test]
    async fn a_relay_too_large_for_the_log_is_refused_alone_and_is_no_outage() {
        let backend = storage::MemoryBackend::new();
        backend.faults().limit_relay_bytes(Some(1000));
        let settings = BatchSettings {
            max_delay: Duration::from_millis(1),
            max_relays: 8,
        };
        let appender = spawn(backend.storage().relay_log, settings);
        let relay = |n, bytes: usize| storage::MinedRelay {
            payload: vec![7; bytes],
            ..storage::suite::relay("pokt1sup", "s1", n)
        };
        for durable in [true, false] {
            let result = if durable {
                appender.append(relay(1, 2000), "anvil").await
            } else {
                let none = crate::relayer::meter::Charge::none();
                appender
                    .append_eventually(relay(1, 2000), "anvil", none, None)
                    .await
                    .map_err(|(e, _)| e)
            };
            match result {
                Err(storage::StorageError::TooLarge(_)) => {}
                other => panic!("expected TooLarge, got {other:?}"),
            }
            assert!(
                appender.refusing().is_none(),
                "one oversized relay is no storage outage"
            );
        }
        appender.append(relay(2, 10), "anvil").await.unwrap();
        // Even when the store itself refuses a write as too large, that is no outage.
        backend
            .faults()
            .refuse_writes(Some(storage::StorageError::TooLarge("big".into())));
        assert!(appender.append(relay(3, 10), "anvil").await.is_err());
        assert!(appender.refusing().is_none());
        backend.faults().refuse_writes(None);
        appender.append(relay(4, 10), "anvil").await.unwrap();
        assert_eq!(
            backend
                .storage()
                .relay_log
                .backlog("pokt1sup")
                .await
                .unwrap()
                .undelivered,
            2
        );
    }
}
