//! What the relay WAL's latency is made of, as Prometheus metrics: with durable acknowledgement every relay
//! waits for its record's `fdatasync`, so these say whether a slow relay was the disk or the queue in front of it.
//!
//! - `ha_storage_wal_queue_seconds`: an append from its request to the WAL thread taking it (the sync in flight
//!   when it arrived, plus the thread's wake-up);
//! - `ha_storage_wal_write_seconds`: one record's `pwrite` + `fdatasync` (the disk);
//! - `ha_storage_wal_checkpoint_seconds`: a checkpoint's durable redb commit, from request to reply (segments
//!   wait for it before they are recycled);
//! - `ha_storage_wal_records_total` / `ha_storage_wal_relays_total`: records written and the relays in them
//!   (their ratio is the group size);
//! - `ha_storage_wal_write_failures_total`: writes (a record's `pwrite` + `fdatasync`, or the rollover to a new
//!   segment) that failed, failing their appends (`/ready` is red until a write succeeds again).
//!
//! Owned by the backend (several databases in one process never share or double-register them) and handed to
//! the process's registry through [`crate::redb::RedbBackend::wal_stats`]. Measured on the 2-vCPU VM of
//! BENCHMARKS.md at 2,000 relays/s: queue p50 ~50 µs / p99 0.4–0.8 ms, write p50 ~0.17 ms / p99 0.5–1.0 ms.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter};

/// Bounds (seconds) of the queue and write histograms: a quiet disk syncs in ~0.1–0.2 ms, so the low end is
/// fine-grained.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// The relay WAL's metrics (cheap to clone; clones share the values).
#[derive(Clone)]
pub struct WalStats {
    queue: Histogram,
    write: Histogram,
    checkpoint: Histogram,
    records: IntCounter,
    relays: IntCounter,
    write_failures: IntCounter,
}

impl std::fmt::Debug for WalStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalStats")
            .field("records", &self.records.get())
            .field("relays", &self.relays.get())
            .finish_non_exhaustive()
    }
}

fn histogram(name: &str, help: &str) -> Result<Histogram, prometheus::Error> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
}

impl WalStats {
    /// Fresh, unregistered metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            queue: histogram(
                "ha_storage_wal_queue_seconds",
                "Relay WAL appends: from the request to the WAL thread taking it (the sync in flight, the wake-up)",
            )?,
            write: histogram(
                "ha_storage_wal_write_seconds",
                "Relay WAL records: one pwrite + fdatasync (what a durable acknowledgement waits for on the disk)",
            )?,
            checkpoint: histogram(
                "ha_storage_wal_checkpoint_seconds",
                "Relay WAL checkpoints: the durable redb commit, from request to reply",
            )?,
            records: IntCounter::new("ha_storage_wal_records_total", "Relay WAL records written and synced")?,
            relays: IntCounter::new("ha_storage_wal_relays_total", "Relays in the relay WAL records written")?,
            write_failures: IntCounter::new(
                "ha_storage_wal_write_failures_total",
                "Relay WAL writes (record pwrite + fdatasync, or segment rollover) that failed their appends",
            )?,
        })
    }

    /// The collectors to register with a Prometheus registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.queue.clone()),
            Box::new(self.write.clone()),
            Box::new(self.checkpoint.clone()),
            Box::new(self.records.clone()),
            Box::new(self.relays.clone()),
            Box::new(self.write_failures.clone()),
        ]
    }

    pub(crate) fn queued(&self, waited: Duration) {
        self.queue.observe(waited.as_secs_f64());
    }

    /// A record of `relays` relays written and synced in `took`.
    pub(crate) fn written(&self, relays: usize, took: Duration) {
        self.write.observe(took.as_secs_f64());
        self.records.inc();
        self.relays.inc_by(relays as u64);
    }

    pub(crate) fn write_failed(&self) {
        self.write_failures.inc();
    }

    pub(crate) fn checkpointed(&self, took: Duration) {
        self.checkpoint.observe(took.as_secs_f64());
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records.get()
    }

    /// Relays in the records written so far.
    pub fn relays(&self) -> u64 {
        self.relays.get()
    }

    /// Appends taken by the WAL thread so far (each observed in the queue histogram).
    pub fn appends(&self) -> u64 {
        self.queue.get_sample_count()
    }

    /// Writes that failed so far.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.get()
    }

    /// Checkpoints completed (successfully or not) so far.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoint.get_sample_count()
    }
}
