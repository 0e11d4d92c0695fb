//! Counters and gauges of the Redis backend, readable by the caller (the metrics layer exports them later).
//!
//! The Go fleet's failure this exists for: the leader died, the standby's acquisition failed with
//! `OOM command not allowed` for hours, logged at DEBUG, with no metric. Here every failed acquisition is
//! counted by reason ([`AcquireFailure`]) and the consecutive-failure streak is kept, and the memory monitor
//! publishes used / max / ratio with a heartbeat timestamp.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a leadership acquisition (campaign) failed. "Someone else holds it" is not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcquireFailure {
    /// Redis refused the write: `OOM command not allowed` (maxmemory reached with `noeviction`).
    RedisOom,
    /// Any other Redis error (unreachable, timeout, script error, ...).
    RedisError,
}

impl AcquireFailure {
    /// The metric label value: `redis_oom` or `redis_error`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::RedisOom => "redis_oom",
            Self::RedisError => "redis_error",
        }
    }
}

/// Live counters of one backend (shared by its clones).
#[derive(Debug, Default)]
pub struct RedisStats {
    acquire_failures_oom: AtomicU64,
    acquire_failures_error: AtomicU64,
    acquire_consecutive_failures: AtomicU64,
    oom_errors: AtomicU64,
    memory_used_bytes: AtomicU64,
    memory_max_bytes: AtomicU64,
    memory_ratio_bits: AtomicU64,
    memory_last_poll_unix_ms: AtomicU64,
    memory_poll_failures: AtomicU64,
}

/// A point-in-time copy of the memory gauges.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MemorySnapshot {
    /// `used_memory` from `INFO MEMORY`, bytes.
    pub used_bytes: u64,
    /// `maxmemory` from `INFO MEMORY`, bytes (0 = unlimited).
    pub max_bytes: u64,
    /// `used / max` (0.0 when `max` is 0).
    pub ratio: f64,
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
        }
    }

    /// Failed acquisitions in a row (reset by a campaign that reached Redis, won or not).
    pub fn acquire_consecutive_failures(&self) -> u64 {
        self.acquire_consecutive_failures.load(Ordering::Relaxed)
    }

    /// Operations of any kind refused with `OOM`, since start.
    pub fn oom_errors(&self) -> u64 {
        self.oom_errors.load(Ordering::Relaxed)
    }

    /// The memory gauges of the last `INFO MEMORY` poll.
    pub fn memory(&self) -> MemorySnapshot {
        MemorySnapshot {
            used_bytes: self.memory_used_bytes.load(Ordering::Relaxed),
            max_bytes: self.memory_max_bytes.load(Ordering::Relaxed),
            ratio: f64::from_bits(self.memory_ratio_bits.load(Ordering::Relaxed)),
            last_poll_unix_ms: self.memory_last_poll_unix_ms.load(Ordering::Relaxed),
            poll_failures: self.memory_poll_failures.load(Ordering::Relaxed),
        }
    }

    /// Records one failed acquisition; returns the consecutive-failure count including it.
    pub(crate) fn record_acquire_failure(&self, reason: AcquireFailure) -> u64 {
        match reason {
            AcquireFailure::RedisOom => &self.acquire_failures_oom,
            AcquireFailure::RedisError => &self.acquire_failures_error,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.acquire_consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records an acquisition that reached Redis; returns the streak it ended.
    pub(crate) fn record_acquire_reached(&self) -> u64 {
        self.acquire_consecutive_failures.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn record_oom(&self) {
        self.oom_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_memory(&self, used: u64, max: u64) -> f64 {
        let ratio = if max == 0 { 0.0 } else { used as f64 / max as f64 };
        self.memory_used_bytes.store(used, Ordering::Relaxed);
        self.memory_max_bytes.store(max, Ordering::Relaxed);
        self.memory_ratio_bits.store(ratio.to_bits(), Ordering::Relaxed);
        self.memory_last_poll_unix_ms.store(unix_ms(), Ordering::Relaxed);
        ratio
    }

    pub(crate) fn record_memory_poll_failure(&self) {
        self.memory_poll_failures.fetch_add(1, Ordering::Relaxed);
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
    fn memory_ratio() {
        let s = RedisStats::default();
        assert_eq!(s.memory(), MemorySnapshot::default());
        assert!((s.record_memory(900, 1000) - 0.9).abs() < 1e-9);
        let m = s.memory();
        assert_eq!((m.used_bytes, m.max_bytes), (900, 1000));
        assert!(m.last_poll_unix_ms > 0);
        assert_eq!(s.record_memory(5, 0), 0.0);
    }
}
