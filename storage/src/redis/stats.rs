//! Counters and gauges of the Redis backend, readable in-process and exported to Prometheus through
//! [`RedisStats::collectors`].
//!
//! The Go fleet's failure this exists for: the leader died, the standby's acquisition failed with
//! `OOM command not allowed` for hours, logged at DEBUG, with no metric. Here every failed acquisition is
//! counted by reason ([`AcquireFailure`]) and the consecutive-failure streak is kept, and the memory monitor
//! publishes used / max / ratio with a heartbeat timestamp.
//!
//! Exported series (Go names where the Go fleet has the metric, so its dashboards and alerts keep working):
//!
//! | series | type | Go name? |
//! |---|---|---|
//! | `ha_miner_leader_acquisition_failures_total{instance,reason=redis_oom\|redis_error\|go_miner_active}` (`go_miner_active`: a campaign refused because a Go miner is live on this Redis, module `go_fleet`; ours) | counter | yes |
//! | `ha_miner_redis_used_memory_bytes`, `ha_miner_redis_max_memory_bytes`, `ha_miner_redis_memory_usage_ratio` | gauge | yes |
//! | `ha_storage_redis_memory_counted_ratio` (what Redis counts against `maxmemory` over `maxmemory`: what it refuses writes at, and what the relay memory threshold compares) | gauge | ours |
//! | `ha_storage_redis_leader_acquisition_consecutive_failures` | gauge | ours |
//! | `ha_storage_redis_oom_errors_total` (every operation refused with OOM) | counter | ours |
//! | `ha_storage_redis_memory_last_poll_timestamp_seconds` (0 = never; stalls when the monitor does) | gauge | ours |
//! | `ha_storage_redis_memory_poll_failures_total` | counter | ours |
//! | `ha_storage_redis_relays_refused_memory_threshold_total` (relays whose append the relay memory threshold refused) | counter | ours |
//! | `ha_storage_redis_relay_memory_threshold_ratio` (the threshold in use; 0 = none) | gauge | ours |
//! | `ha_storage_redis_writes_not_replicated_total` (writes fewer than `wait_replicas` replicas acknowledged in time) | counter | ours |
//! | `ha_storage_redis_relay_log_pending_deleted_total` (entries pending for the reading consumer found deleted before it acknowledged them: their relays are lost unless already ingested) | counter | ours |
//! | `ha_storage_redis_relay_log_groups_vanished_total` (a relay stream's consumer group this process had seen is gone: the stream was deleted or expired, its pending and unread relays with it) | counter | ours |
//! | `ha_storage_redis_go_miner_beside_leader` (1 while this process leads and its last lease renewal found a live Go miner on this Redis, module `go_fleet`) | gauge | ours |
//! | `ha_storage_redis_go_miner_beside_leader_renewals_total` (lease renewals that found a live Go miner beside this leader) | counter | ours |
//! | `ha_storage_redis_relay_log_foreign_pending` (relays at risk: entries pending for consumers of the group other than the reader, summed over the streams at their last read round, module `go_fleet`) | gauge | ours |
//! | `ha_storage_redis_relay_log_taken_by_foreign_total` (relay-stream entries the group delivered to consumers other than the reader between two of its read rounds, acknowledged since or not; module `log::taken`) | counter | ours |
//! | `ha_storage_redis_relay_log_foreign_consumers` (consumers of the relay streams' group other than the reader holding pending entries, summed over the streams at their last read round) | gauge | ours |
//! | `ha_storage_redis_max_memory_unset` (1 when `maxmemory` was last read as 0: unlimited, every memory safeguard off; module `health`) | gauge | ours |
//! | `ha_storage_redis_instance_lock_refresh_timestamp_seconds` (the instance-lock refresher's heartbeat: each round, busy or idle; 0 = not started, no campaign yet) | gauge | ours |
//!
//! The collector reads the atomics below at scrape time, so there is one source of truth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts};

/// Why a leadership acquisition (campaign) failed. "Someone else holds it" is not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcquireFailure {
    /// Redis refused the write: `OOM command not allowed` (maxmemory reached with `noeviction`).
    RedisOom,
    /// Any other Redis error (unreachable, timeout, script error, ...).
    RedisError,
    /// Not a Redis failure: a Go miner is live on this Redis, so this process does not campaign (module
    /// `go_fleet`). Counted apart from the consecutive-failure streak, which counts Redis failures only.
    GoMinerActive,
}

impl AcquireFailure {
    /// The metric label value: `redis_oom`, `redis_error` or `go_miner_active`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::RedisOom => "redis_oom",
            Self::RedisError => "redis_error",
            Self::GoMinerActive => "go_miner_active",
        }
    }
}

/// Live counters of one backend (shared by its clones).
#[derive(Debug, Default)]
pub struct RedisStats {
    acquire_failures_oom: AtomicU64,
    acquire_failures_error: AtomicU64,
    acquire_failures_go_miner: AtomicU64,
    acquire_consecutive_failures: AtomicU64,
    oom_errors: AtomicU64,
    memory_used_bytes: AtomicU64,
    memory_max_bytes: AtomicU64,
    memory_ratio_bits: AtomicU64,
    memory_counted_bytes: AtomicU64,
    memory_counted_ratio_bits: AtomicU64,
    memory_last_poll_unix_ms: AtomicU64,
    memory_poll_failures: AtomicU64,
    relays_refused_memory_threshold: AtomicU64,
    writes_not_replicated: AtomicU64,
    /// Unix ms of the last logged write not replicated (0 = never).
    not_replicated_last_log_unix_ms: AtomicU64,
    /// Unix ms of the last logged acquisition failure (0 = none in the current streak).
    acquire_last_log_unix_ms: AtomicU64,
    /// Unix ms of the instance-lock refresher's last round (0 = not started).
    instance_lock_refresh_unix_ms: AtomicU64,
    /// Unix ms of the last logged refusal because of a live Go miner (0 = none since the last campaign without).
    go_miner_last_log_unix_ms: AtomicU64,
    relay_log_pending_deleted: AtomicU64,
    relay_log_groups_vanished: AtomicU64,
    /// 1 while this process leads beside a live Go miner (module `go_fleet`), else 0.
    go_miner_beside_leader: AtomicU64,
    go_miner_beside_leader_renewals: AtomicU64,
    /// Unix ms of the last logged renewal beside a live Go miner (0 = none since the last renewal without).
    go_miner_beside_last_log_unix_ms: AtomicU64,
    relay_log_foreign_pending: AtomicU64,
    relay_log_foreign_consumers: AtomicU64,
    relay_log_taken_by_foreign: AtomicU64,
    /// Unix ms of the last logged read round that found relays taken by a foreign consumer (0 = never).
    taken_last_log_unix_ms: AtomicU64,
    /// Unix ms of the last logged read round that found relays pending for a foreign consumer (0 = never).
    foreign_last_log_unix_ms: AtomicU64,
    /// Unix ms of the last logged relay-log loss (pending entries deleted, a group vanished; 0 = never).
    relay_log_loss_last_log_unix_ms: AtomicU64,
    /// The most value bytes a trie load held at once (module `trie`).
    trie_load_peak_bytes: AtomicU64,
    /// 1 when `maxmemory` was last read as 0 (unlimited: no memory safeguard; module `health`).
    max_memory_unset: AtomicU64,
}

/// Whether an event at `now_ms` is to be logged when the last one logged (unix ms in `last`, 0 = none) was at
/// least `every_ms` before; records it when so.
fn admit(last: &AtomicU64, now_ms: u64, every_ms: u64) -> bool {
    let prev = last.load(Ordering::Relaxed);
    (prev == 0 || now_ms.saturating_sub(prev) >= every_ms)
        && last
            .compare_exchange(prev, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Interval of the ERROR logs of relay-log losses (each loss is counted).
const LOSS_LOG_EVERY_MS: u64 = 10_000;

/// Interval of the ERROR logs of campaigns refused because of a live Go miner (each is counted).
const GO_MINER_LOG_EVERY_MS: u64 = 10_000;

/// A point-in-time copy of the memory gauges.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MemorySnapshot {
    /// `used_memory` from `INFO MEMORY`, bytes.
    pub used_bytes: u64,
    /// `maxmemory` from `INFO MEMORY`, bytes (0 = unlimited).
    pub max_bytes: u64,
    /// `used / max` (0.0 when `max` is 0).
    pub ratio: f64,
    /// What Redis counts against `maxmemory`: `used_memory` less `mem_not_counted_for_evict` (replica output
    /// buffers and the AOF buffer, which Redis leaves out when it decides to refuse writes, `evict.c`), bytes.
    pub counted_bytes: u64,
    /// `counted / max` (0.0 when `max` is 0): Redis refuses writes at 1; the relay memory threshold compares this.
    pub counted_ratio: f64,
    /// Wall-clock time of the last successful poll (unix ms; 0 = never). Advances every poll.
    pub last_poll_unix_ms: u64,
    /// Polls that failed (Redis unreachable, unparsable reply).
    pub poll_failures: u64,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RedisStats {
    /// Leadership acquisitions that failed with `reason`, since start.
    pub fn acquire_failures(&self, reason: AcquireFailure) -> u64 {
        match reason {
            AcquireFailure::RedisOom => self.acquire_failures_oom.load(Ordering::Relaxed),
            AcquireFailure::RedisError => self.acquire_failures_error.load(Ordering::Relaxed),
            AcquireFailure::GoMinerActive => self.acquire_failures_go_miner.load(Ordering::Relaxed),
        }
    }

    /// Relay-log entries pending for the reading consumer that were found deleted before it acknowledged them
    /// (module `log`), since start.
    pub fn relay_log_pending_deleted(&self) -> u64 {
        self.relay_log_pending_deleted.load(Ordering::Relaxed)
    }

    /// Relay streams whose consumer group this process had seen and found gone (module `log`), since start.
    pub fn relay_log_groups_vanished(&self) -> u64 {
        self.relay_log_groups_vanished.load(Ordering::Relaxed)
    }

    /// Records `n` pending entries found deleted; whether to log it (at most once every 10 s, each counted).
    pub(crate) fn record_pending_deleted(&self, n: usize) -> bool {
        self.relay_log_pending_deleted
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        admit(&self.relay_log_loss_last_log_unix_ms, unix_ms(), LOSS_LOG_EVERY_MS)
    }

    /// Records a vanished consumer group; whether to log it (at most once every 10 s, each counted).
    pub(crate) fn record_group_vanished(&self) -> bool {
        self.relay_log_groups_vanished.fetch_add(1, Ordering::Relaxed);
        admit(&self.relay_log_loss_last_log_unix_ms, unix_ms(), LOSS_LOG_EVERY_MS)
    }

    /// Records a campaign refused because a Go miner is live; whether to log it (the first of a stretch at once,
    /// then at most once every 10 s; each is counted).
    pub(crate) fn record_go_miner_refusal(&self, now_ms: u64) -> bool {
        self.acquire_failures_go_miner.fetch_add(1, Ordering::Relaxed);
        admit(&self.go_miner_last_log_unix_ms, now_ms, GO_MINER_LOG_EVERY_MS)
    }

    /// Ends a stretch of refusals because of a live Go miner (the next one is logged at once).
    pub(crate) fn record_go_miner_gone(&self) {
        self.go_miner_last_log_unix_ms.store(0, Ordering::Relaxed);
    }

    /// Whether this process leads beside a live Go miner (its last lease renewal found one; module `go_fleet`).
    pub fn go_miner_beside_leader(&self) -> bool {
        self.go_miner_beside_leader.load(Ordering::Relaxed) == 1
    }

    /// Lease renewals that found a live Go miner beside this leader, since start.
    pub fn go_miner_beside_leader_renewals(&self) -> u64 {
        self.go_miner_beside_leader_renewals.load(Ordering::Relaxed)
    }

    /// Records a renewal beside a live Go miner; whether to log it (the first of a stretch at once, then at most
    /// once every 10 s; each is counted).
    pub(crate) fn record_go_miner_beside_leader(&self, now_ms: u64) -> bool {
        self.go_miner_beside_leader_renewals.fetch_add(1, Ordering::Relaxed);
        self.go_miner_beside_leader.store(1, Ordering::Relaxed);
        admit(&self.go_miner_beside_last_log_unix_ms, now_ms, GO_MINER_LOG_EVERY_MS)
    }

    /// Ends a stretch of leading beside a live Go miner (the next one is logged at once).
    pub(crate) fn record_go_miner_beside_leader_gone(&self) {
        self.go_miner_beside_leader.store(0, Ordering::Relaxed);
        self.go_miner_beside_last_log_unix_ms.store(0, Ordering::Relaxed);
    }

    /// Relays at risk: entries pending for consumers of the relay streams' group other than the reader, summed
    /// over the streams at their last read round (module `go_fleet`).
    pub fn relay_log_foreign_pending(&self) -> u64 {
        self.relay_log_foreign_pending.load(Ordering::Relaxed)
    }

    /// Consumers of the relay streams' group other than the reader holding pending entries, summed over the
    /// streams at their last read round.
    pub fn relay_log_foreign_consumers(&self) -> u64 {
        self.relay_log_foreign_consumers.load(Ordering::Relaxed)
    }

    /// Relay-stream entries delivered to consumers other than the reader (module `log::taken`), since start.
    pub fn relay_log_taken_by_foreign(&self) -> u64 {
        self.relay_log_taken_by_foreign.load(Ordering::Relaxed)
    }

    /// Records `n` entries taken by foreign consumers; whether to log it (at most once every 10 s, each counted).
    pub(crate) fn record_taken_by_foreign(&self, n: u64) -> bool {
        self.relay_log_taken_by_foreign.fetch_add(n, Ordering::Relaxed);
        admit(&self.taken_last_log_unix_ms, unix_ms(), LOSS_LOG_EVERY_MS)
    }

    /// Records the foreign consumers' totals over the streams; whether to log a read round that found relays at
    /// risk (`at_risk`; at most once every 10 s).
    pub(crate) fn record_foreign_consumers(&self, pending: u64, consumers: u64, at_risk: bool) -> bool {
        self.relay_log_foreign_pending.store(pending, Ordering::Relaxed);
        self.relay_log_foreign_consumers.store(consumers, Ordering::Relaxed);
        at_risk && admit(&self.foreign_last_log_unix_ms, unix_ms(), LOSS_LOG_EVERY_MS)
    }

    /// The most bytes of hash values a trie load (`HSCAN` of a namespace: one page plus what the mirror kept of the
    /// pages before) held at once, since start. In-process only: it shows that a reload holds one page of relay
    /// bytes, not a session's (module `trie`).
    pub fn trie_load_peak_bytes(&self) -> u64 {
        self.trie_load_peak_bytes.load(Ordering::Relaxed)
    }

    /// Records that a trie load holds `bytes` of values now.
    pub(crate) fn record_trie_load_held(&self, bytes: usize) {
        self.trie_load_peak_bytes
            .fetch_max(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Failed acquisitions in a row (reset by a campaign that reached Redis, won or not).
    pub fn acquire_consecutive_failures(&self) -> u64 {
        self.acquire_consecutive_failures.load(Ordering::Relaxed)
    }

    /// Operations of any kind refused with `OOM`, since start.
    pub fn oom_errors(&self) -> u64 {
        self.oom_errors.load(Ordering::Relaxed)
    }

    /// Relays whose append was refused by the relay memory threshold, since start.
    pub fn relays_refused_memory_threshold(&self) -> u64 {
        self.relays_refused_memory_threshold.load(Ordering::Relaxed)
    }

    /// Writes applied on the primary that fewer replicas than `wait_replicas` acknowledged in time (failed with
    /// `StorageError::NotReplicated`), since start.
    pub fn writes_not_replicated(&self) -> u64 {
        self.writes_not_replicated.load(Ordering::Relaxed)
    }

    /// Unix ms of the instance-lock refresher's last round (module `leader`; 0 = not started): its heartbeat,
    /// advancing every [`INSTANCE_LOCK_REFRESH`](super::INSTANCE_LOCK_REFRESH) whatever the refreshes answered,
    /// stalling when a refresh hangs.
    pub fn instance_lock_refreshed_unix_ms(&self) -> u64 {
        self.instance_lock_refresh_unix_ms.load(Ordering::Relaxed)
    }

    /// Records a round of the instance-lock refresher.
    pub(crate) fn record_instance_lock_refresh(&self) {
        self.instance_lock_refresh_unix_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// The memory gauges of the last `INFO MEMORY` poll.
    pub fn memory(&self) -> MemorySnapshot {
        MemorySnapshot {
            used_bytes: self.memory_used_bytes.load(Ordering::Relaxed),
            max_bytes: self.memory_max_bytes.load(Ordering::Relaxed),
            ratio: f64::from_bits(self.memory_ratio_bits.load(Ordering::Relaxed)),
            counted_bytes: self.memory_counted_bytes.load(Ordering::Relaxed),
            counted_ratio: f64::from_bits(self.memory_counted_ratio_bits.load(Ordering::Relaxed)),
            last_poll_unix_ms: self.memory_last_poll_unix_ms.load(Ordering::Relaxed),
            poll_failures: self.memory_poll_failures.load(Ordering::Relaxed),
        }
    }

    /// Records one failed acquisition; returns the consecutive-failure count including it.
    pub(crate) fn record_acquire_failure(&self, reason: AcquireFailure) -> u64 {
        match reason {
            AcquireFailure::RedisOom => &self.acquire_failures_oom,
            AcquireFailure::RedisError => &self.acquire_failures_error,
            AcquireFailure::GoMinerActive => &self.acquire_failures_go_miner,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.acquire_consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records an acquisition that reached Redis; returns the streak it ended.
    pub(crate) fn record_acquire_reached(&self) -> u64 {
        self.acquire_last_log_unix_ms.store(0, Ordering::Relaxed);
        self.acquire_consecutive_failures.swap(0, Ordering::Relaxed)
    }

    /// Whether a failed acquisition at `now_ms` is to be logged: the first of a streak, then at most one a
    /// second (the miner campaigns every ~100 ms; the counters above count every one).
    pub(crate) fn log_acquire_failure(&self, now_ms: u64) -> bool {
        admit(&self.acquire_last_log_unix_ms, now_ms, 1000)
    }

    /// Records one write not replicated; returns the total including it.
    pub(crate) fn record_not_replicated(&self) -> u64 {
        self.writes_not_replicated.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether a write not replicated at `now_ms` is to be logged: at most one a second (each is counted).
    pub(crate) fn log_not_replicated(&self, now_ms: u64) -> bool {
        admit(&self.not_replicated_last_log_unix_ms, now_ms, 1000)
    }

    pub(crate) fn record_relay_memory_refusal(&self, relays: usize) {
        self.relays_refused_memory_threshold
            .fetch_add(u64::try_from(relays).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn record_oom(&self) {
        self.oom_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one poll: `used_memory`, `mem_not_counted_for_evict` and `maxmemory`; returns the snapshot.
    pub(crate) fn record_memory(&self, used: u64, not_counted: u64, max: u64) -> MemorySnapshot {
        let of_max = |bytes: u64| if max == 0 { 0.0 } else { bytes as f64 / max as f64 };
        let counted = used.saturating_sub(not_counted);
        self.memory_used_bytes.store(used, Ordering::Relaxed);
        self.memory_max_bytes.store(max, Ordering::Relaxed);
        self.memory_ratio_bits.store(of_max(used).to_bits(), Ordering::Relaxed);
        self.memory_counted_bytes.store(counted, Ordering::Relaxed);
        self.memory_counted_ratio_bits
            .store(of_max(counted).to_bits(), Ordering::Relaxed);
        self.memory_last_poll_unix_ms.store(unix_ms(), Ordering::Relaxed);
        self.record_max_memory_unset(max == 0);
        self.memory()
    }

    /// Records whether `maxmemory` was read as 0 (unlimited).
    pub(crate) fn record_max_memory_unset(&self, unset: bool) {
        self.max_memory_unset.store(u64::from(unset), Ordering::Relaxed);
    }

    /// Whether `maxmemory` was last read as 0 (unlimited): the relay memory threshold and OOM refusals are off.
    pub fn max_memory_unset(&self) -> bool {
        self.max_memory_unset.load(Ordering::Relaxed) == 1
    }

    pub(crate) fn record_memory_poll_failure(&self) {
        self.memory_poll_failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl RedisStats {
    /// Prometheus collectors of these stats (the series in the module docs), `instance` labelling the
    /// acquisition failures like the Go fleet's instance id; `relay_threshold` is the relay memory threshold in
    /// use (`None`: none). Register them once per backend.
    pub fn collectors(
        self: &Arc<Self>,
        instance: &str,
        relay_threshold: Option<f64>,
    ) -> Result<Vec<Box<dyn Collector>>, prometheus::Error> {
        let relay_threshold_gauge = Gauge::new(
            "ha_storage_redis_relay_memory_threshold_ratio",
            "Share of maxmemory above which relay appends are refused so the miner keeps headroom (0 = none: \
             off, no maxmemory check possible)",
        )?;
        relay_threshold_gauge.set(relay_threshold.unwrap_or(0.0));
        let acquire_failures = IntCounterVec::new(
            Opts::new(
                "ha_miner_leader_acquisition_failures_total",
                "Leadership acquisitions that failed, by reason: on a Redis error (redis_oom, redis_error), or \
                 refused because a Go relay miner is live on this Redis (go_miner_active); losing to another \
                 holder is not counted",
            ),
            &["instance", "reason"],
        )?;
        let collector = StatsCollector {
            stats: Arc::clone(self),
            refresh: Mutex::new(()),
            acquire_oom: acquire_failures.with_label_values(&[instance, AcquireFailure::RedisOom.reason()]),
            acquire_error: acquire_failures.with_label_values(&[instance, AcquireFailure::RedisError.reason()]),
            acquire_go_miner: acquire_failures.with_label_values(&[instance, AcquireFailure::GoMinerActive.reason()]),
            acquire_failures,
            consecutive: IntGauge::new(
                "ha_storage_redis_leader_acquisition_consecutive_failures",
                "Failed leadership acquisitions in a row (0 once a campaign reaches Redis again)",
            )?,
            oom_errors: IntCounter::new(
                "ha_storage_redis_oom_errors_total",
                "Redis operations of any kind refused with OOM (maxmemory reached)",
            )?,
            used: IntGauge::new(
                "ha_miner_redis_used_memory_bytes",
                "Redis used_memory at the last INFO MEMORY poll",
            )?,
            max: IntGauge::new(
                "ha_miner_redis_max_memory_bytes",
                "Redis maxmemory at the last INFO MEMORY poll (0 = unlimited)",
            )?,
            ratio: Gauge::new(
                "ha_miner_redis_memory_usage_ratio",
                "Redis used_memory / maxmemory at the last INFO MEMORY poll (0 when unlimited)",
            )?,
            counted_ratio: Gauge::new(
                "ha_storage_redis_memory_counted_ratio",
                "Redis used_memory less mem_not_counted_for_evict (replica output buffers, the AOF buffer) over \
                 maxmemory at the last INFO MEMORY poll: Redis refuses writes at 1, relay appends are refused above \
                 storage.redis.relay_max_memory_ratio of it (0 when unlimited)",
            )?,
            last_poll: Gauge::new(
                "ha_storage_redis_memory_last_poll_timestamp_seconds",
                "Unix time of the last successful INFO MEMORY poll (0 = never); the memory gauges are this old",
            )?,
            poll_failures: IntCounter::new(
                "ha_storage_redis_memory_poll_failures_total",
                "INFO MEMORY polls that failed (Redis unreachable, unparsable reply)",
            )?,
            relays_refused: IntCounter::new(
                "ha_storage_redis_relays_refused_memory_threshold_total",
                "Relays whose relay-log append was refused because Redis used_memory was above the relay memory \
                 threshold (storage.redis.relay_max_memory_ratio of maxmemory)",
            )?,
            not_replicated: IntCounter::new(
                "ha_storage_redis_writes_not_replicated_total",
                "Writes (relay-log appends, session records, write sets, trie batches) applied on the Redis primary \
                 that fewer than storage.redis.wait_replicas replicas acknowledged within wait_timeout_ms: failed, \
                 a failover may lose them",
            )?,
            pending_deleted: IntCounter::new(
                "ha_storage_redis_relay_log_pending_deleted_total",
                "Relay-log entries pending for the miner's consumer found deleted before it acknowledged them \
                 (another process trimmed or deleted them, e.g. the Go relayer's XTRIM MINID): their relays are \
                 lost unless already ingested",
            )?,
            groups_vanished: IntCounter::new(
                "ha_storage_redis_relay_log_groups_vanished_total",
                "Relay streams whose consumer group this process had seen and found gone (the stream was deleted \
                 or expired, e.g. by the Go relayer's EXPIRE): its pending and unread relays went with it",
            )?,
            go_miner_beside: IntGauge::new(
                "ha_storage_redis_go_miner_beside_leader",
                "1 while this process leads and its last lease renewal found a live Go relay miner on this Redis \
                 (both read the relay streams and claim the same sessions; this one keeps leading, /ready fails \
                 with redis_go_miner_beside_leader): stop one of them",
            )?,
            go_miner_beside_renewals: IntCounter::new(
                "ha_storage_redis_go_miner_beside_leader_renewals_total",
                "Lease renewals of this leader that found a live Go relay miner on this Redis",
            )?,
            foreign_pending: IntGauge::new(
                "ha_storage_redis_relay_log_foreign_pending",
                "Relays at risk: relay-stream entries pending for consumers of the group other than this miner's \
                 (a Go miner, a miner under another consumer name), summed over the streams at their last read \
                 round; they go into that consumer's tries, not ours",
            )?,
            taken_by_foreign: IntCounter::new(
                "ha_storage_redis_relay_log_taken_by_foreign_total",
                "Relay-stream entries the group delivered to consumers other than this miner's (a Go miner, a \
                 miner under another consumer name) between two of its read rounds, acknowledged since or still \
                 pending: relays that went into that consumer's tries, not ours",
            )?,
            foreign_consumers: IntGauge::new(
                "ha_storage_redis_relay_log_foreign_consumers",
                "Consumers of the relay streams' group other than this miner's holding pending entries (relays at \
                 risk), summed over the streams at their last read round",
            )?,
            instance_lock_refresh: Gauge::new(
                "ha_storage_redis_instance_lock_refresh_timestamp_seconds",
                "Unix time of the instance-lock refresher's last round (its heartbeat, advancing every 500 ms \
                 busy or idle; 0 = not started: no campaign took the lock yet)",
            )?,
            max_memory_unset: IntGauge::new(
                "ha_storage_redis_max_memory_unset",
                "1 when Redis maxmemory was last read as 0 (unlimited, the default): the relay memory threshold and \
                 OOM refusals are off and the usage gauges read 0; Redis grows until the host kills it",
            )?,
            relay_threshold: relay_threshold_gauge,
            descs: Vec::new(),
        };
        Ok(vec![Box::new(collector.with_descs())])
    }
}

/// Mirrors [`RedisStats`] into Prometheus metrics at scrape time.
struct StatsCollector {
    stats: Arc<RedisStats>,
    /// Serializes refreshes, so two concurrent scrapes never add the same counter delta twice.
    refresh: Mutex<()>,
    acquire_failures: IntCounterVec,
    acquire_oom: IntCounter,
    acquire_error: IntCounter,
    acquire_go_miner: IntCounter,
    consecutive: IntGauge,
    oom_errors: IntCounter,
    used: IntGauge,
    max: IntGauge,
    ratio: Gauge,
    counted_ratio: Gauge,
    last_poll: Gauge,
    poll_failures: IntCounter,
    relays_refused: IntCounter,
    not_replicated: IntCounter,
    pending_deleted: IntCounter,
    groups_vanished: IntCounter,
    go_miner_beside: IntGauge,
    go_miner_beside_renewals: IntCounter,
    foreign_pending: IntGauge,
    taken_by_foreign: IntCounter,
    foreign_consumers: IntGauge,
    instance_lock_refresh: Gauge,
    max_memory_unset: IntGauge,
    relay_threshold: Gauge,
    descs: Vec<Desc>,
}

fn gauge_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Advances a Prometheus counter to `total` (the stats only grow).
fn advance(counter: &IntCounter, total: u64) {
    let cur = counter.get();
    if total > cur {
        counter.inc_by(total - cur);
    }
}

impl StatsCollector {
    fn with_descs(mut self) -> Self {
        self.descs = self.parts().iter().flat_map(|c| c.desc()).cloned().collect();
        self
    }

    fn parts(&self) -> [&dyn Collector; 21] {
        [
            &self.acquire_failures,
            &self.consecutive,
            &self.oom_errors,
            &self.used,
            &self.max,
            &self.ratio,
            &self.counted_ratio,
            &self.last_poll,
            &self.poll_failures,
            &self.relays_refused,
            &self.not_replicated,
            &self.pending_deleted,
            &self.groups_vanished,
            &self.go_miner_beside,
            &self.go_miner_beside_renewals,
            &self.foreign_pending,
            &self.taken_by_foreign,
            &self.foreign_consumers,
            &self.instance_lock_refresh,
            &self.max_memory_unset,
            &self.relay_threshold,
        ]
    }
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        {
            let _one = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
            let s = &self.stats;
            advance(&self.acquire_oom, s.acquire_failures(AcquireFailure::RedisOom));
            advance(&self.acquire_error, s.acquire_failures(AcquireFailure::RedisError));
            advance(
                &self.acquire_go_miner,
                s.acquire_failures(AcquireFailure::GoMinerActive),
            );
            self.consecutive.set(gauge_i64(s.acquire_consecutive_failures()));
            advance(&self.oom_errors, s.oom_errors());
            let m = s.memory();
            self.used.set(gauge_i64(m.used_bytes));
            self.max.set(gauge_i64(m.max_bytes));
            self.ratio.set(m.ratio);
            self.counted_ratio.set(m.counted_ratio);
            self.last_poll.set(m.last_poll_unix_ms as f64 / 1000.0);
            advance(&self.poll_failures, m.poll_failures);
            advance(&self.relays_refused, s.relays_refused_memory_threshold());
            advance(&self.not_replicated, s.writes_not_replicated());
            advance(&self.pending_deleted, s.relay_log_pending_deleted());
            advance(&self.groups_vanished, s.relay_log_groups_vanished());
            self.go_miner_beside.set(i64::from(s.go_miner_beside_leader()));
            advance(&self.go_miner_beside_renewals, s.go_miner_beside_leader_renewals());
            self.foreign_pending.set(gauge_i64(s.relay_log_foreign_pending()));
            advance(&self.taken_by_foreign, s.relay_log_taken_by_foreign());
            self.foreign_consumers.set(gauge_i64(s.relay_log_foreign_consumers()));
            self.instance_lock_refresh
                .set(s.instance_lock_refreshed_unix_ms() as f64 / 1000.0);
            self.max_memory_unset.set(i64::from(s.max_memory_unset()));
        }
        self.parts().iter().flat_map(|c| c.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_failures_by_reason_and_streak() {
        let s = RedisStats::default();
        assert_eq!(s.record_acquire_failure(AcquireFailure::RedisOom), 1);
        assert_eq!(s.record_acquire_failure(AcquireFailure::RedisOom), 2);
        assert_eq!(s.record_acquire_failure(AcquireFailure::RedisError), 3);
        assert_eq!(s.acquire_failures(AcquireFailure::RedisOom), 2);
        assert_eq!(s.acquire_failures(AcquireFailure::RedisError), 1);
        assert_eq!(s.record_acquire_reached(), 3);
        assert_eq!(s.acquire_consecutive_failures(), 0);
        assert_eq!(AcquireFailure::RedisOom.reason(), "redis_oom");
        assert_eq!(AcquireFailure::RedisError.reason(), "redis_error");
    }

    #[test]
    fn acquisition_failure_logs_are_throttled_per_streak() {
        let s = RedisStats::default();
        assert!(s.log_acquire_failure(10_000));
        assert!(!s.log_acquire_failure(10_100));
        assert!(!s.log_acquire_failure(10_999));
        assert!(s.log_acquire_failure(11_000));
        s.record_acquire_reached();
        assert!(s.log_acquire_failure(11_001), "a new streak logs at once");
    }

    #[test]
    fn memory_ratio() {
        let s = RedisStats::default();
        assert_eq!(s.memory(), MemorySnapshot::default());
        let m = s.record_memory(900, 200, 1000);
        assert_eq!(m, s.memory());
        assert!((m.ratio - 0.9).abs() < 1e-9);
        assert!((m.counted_ratio - 0.7).abs() < 1e-9);
        assert_eq!((m.used_bytes, m.counted_bytes, m.max_bytes), (900, 700, 1000));
        assert!(m.last_poll_unix_ms > 0);
        let m = s.record_memory(5, 0, 0);
        assert_eq!((m.ratio, m.counted_ratio), (0.0, 0.0));
        assert_eq!(s.record_memory(5, 9, 10).counted_bytes, 0, "never below zero");
    }

    #[test]
    fn collectors_mirror_the_stats() {
        let s = Arc::new(RedisStats::default());
        let registry = prometheus::Registry::new();
        for c in s.collectors("miner-a", Some(0.9)).unwrap() {
            registry.register(c).unwrap();
        }
        s.record_acquire_failure(AcquireFailure::RedisOom);
        s.record_acquire_failure(AcquireFailure::RedisOom);
        s.record_oom();
        s.record_memory(900, 100, 1000);
        s.record_relay_memory_refusal(3);
        s.record_not_replicated();
        s.record_go_miner_refusal(unix_ms());
        s.record_pending_deleted(4);
        s.record_group_vanished();
        let text = |r: &prometheus::Registry| {
            let mut out = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&r.gather(), &mut out)
                .unwrap();
            out
        };
        // Two scrapes: counters are not added twice.
        let _ = text(&registry);
        let out = text(&registry);
        assert!(
            out.contains(r#"ha_miner_leader_acquisition_failures_total{instance="miner-a",reason="redis_oom"} 2"#),
            "{out}"
        );
        assert!(
            out.contains(r#"ha_miner_leader_acquisition_failures_total{instance="miner-a",reason="redis_error"} 0"#),
            "{out}"
        );
        assert!(
            out.contains("ha_storage_redis_leader_acquisition_consecutive_failures 2"),
            "{out}"
        );
        assert!(out.contains("ha_storage_redis_oom_errors_total 1"), "{out}");
        assert!(out.contains("ha_miner_redis_used_memory_bytes 900"), "{out}");
        assert!(out.contains("ha_miner_redis_max_memory_bytes 1000"), "{out}");
        assert!(out.contains("ha_miner_redis_memory_usage_ratio 0.9"), "{out}");
        assert!(out.contains("ha_storage_redis_memory_counted_ratio 0.8"), "{out}");
        assert!(
            out.contains("ha_storage_redis_relays_refused_memory_threshold_total 3"),
            "{out}"
        );
        assert!(
            out.contains("ha_storage_redis_relay_memory_threshold_ratio 0.9"),
            "{out}"
        );
        assert!(out.contains("ha_storage_redis_writes_not_replicated_total 1"), "{out}");
        assert!(
            out.contains(
                r#"ha_miner_leader_acquisition_failures_total{instance="miner-a",reason="go_miner_active"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains("ha_storage_redis_relay_log_pending_deleted_total 4"),
            "{out}"
        );
        assert!(
            out.contains("ha_storage_redis_relay_log_groups_vanished_total 1"),
            "{out}"
        );
        assert!(
            out.contains("ha_storage_redis_instance_lock_refresh_timestamp_seconds 0\n"),
            "not started: {out}"
        );
        s.record_instance_lock_refresh();
        let ms = s.instance_lock_refreshed_unix_ms();
        assert!(ms > 0);
        let out = text(&registry);
        assert!(
            out.contains(&format!(
                "ha_storage_redis_instance_lock_refresh_timestamp_seconds {}\n",
                ms as f64 / 1000.0
            )),
            "{out}"
        );
    }

    #[test]
    fn go_miner_refusals_are_all_counted_and_logged_every_ten_seconds() {
        let s = RedisStats::default();
        assert!(s.record_go_miner_refusal(10_000), "the first at once");
        assert!(!s.record_go_miner_refusal(19_999));
        assert!(s.record_go_miner_refusal(20_000));
        assert_eq!(s.acquire_failures(AcquireFailure::GoMinerActive), 3);
        assert_eq!(s.acquire_consecutive_failures(), 0, "not a Redis failure");
        s.record_go_miner_gone();
        assert!(s.record_go_miner_refusal(20_001), "a new stretch logs at once");
    }

    #[test]
    fn not_replicated_logs_are_throttled() {
        let s = RedisStats::default();
        assert_eq!((s.record_not_replicated(), s.record_not_replicated()), (1, 2));
        assert!(s.log_not_replicated(10_000));
        assert!(!s.log_not_replicated(10_999));
        assert!(s.log_not_replicated(11_000));
        assert_eq!(s.writes_not_replicated(), 2);
    }
}
