//! Per-node raft activity counters the gauges of openraft's metrics cannot show: how long replicated writes
//! take, how many snapshots this node built, installed and sent, and whether write sets are on. Owned by the node (so several nodes in one
//! process never share or double-register them) and handed to the process's Prometheus registry by
//! [`crate::RaftNode::stats`].

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

/// Bounds of the write-latency histogram (seconds).
const WRITE_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The node's raft activity metrics.
#[derive(Clone)]
pub struct RaftStats {
    append_latency: Histogram,
    snapshots: IntCounterVec,
    identity_refusals: IntCounterVec,
    write_sets_enabled: IntGauge,
}

impl std::fmt::Debug for RaftStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStats")
            .field("writes", &self.append_latency.get_sample_count())
            .finish_non_exhaustive()
    }
}

impl RaftStats {
    /// Fresh, unregistered metrics: `ha_raft_append_latency_seconds` (a storage write from proposal to applied
    /// on this node, forwarding to the leader included), `ha_raft_snapshots_total{event=built|installed|sent}`,
    /// `ha_raft_identity_refusals_total{peer}` and `ha_raft_write_sets_enabled` (see [`crate::features`]).
    pub fn new() -> Result<Self, prometheus::Error> {
        let append_latency = Histogram::with_opts(
            HistogramOpts::new(
                "ha_raft_append_latency_seconds",
                "Replicated storage writes: proposal (forwarded to the leader if needed) to applied on this node",
            )
            .buckets(WRITE_BUCKETS.to_vec()),
        )?;
        let snapshots = IntCounterVec::new(
            Opts::new(
                "ha_raft_snapshots_total",
                "Snapshots this node built, installed from the leader, or sent",
            ),
            &["event"],
        )?;
        let identity_refusals = IntCounterVec::new(
            Opts::new(
                "ha_raft_identity_refusals_total",
                "Raft RPCs refused because their sender is another incarnation of a known node id (its data \
                 directory was wiped or replaced), by sender",
            ),
            &["peer"],
        )?;
        let write_sets_enabled = IntGauge::new(
            "ha_raft_write_sets_enabled",
            "1 when this node is the raft leader and proposes write sets (an ingest batch, a record set) as one \
             entry: every member advertised the write-set feature; 0 while some member (an older build, or one \
             not heard from since its restart) lacks it and write sets are written one entry per part, and on \
             followers (the leader decides)",
        )?;
        Ok(Self {
            append_latency,
            snapshots,
            identity_refusals,
            write_sets_enabled,
        })
    }

    /// The collectors to register with a Prometheus registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.append_latency.clone()),
            Box::new(self.snapshots.clone()),
            Box::new(self.identity_refusals.clone()),
            Box::new(self.write_sets_enabled.clone()),
        ]
    }

    pub(crate) fn write_done(&self, took: Duration) {
        self.append_latency.observe(took.as_secs_f64());
    }

    pub(crate) fn identity_refused(&self, peer: u64) {
        self.identity_refusals.with_label_values(&[&peer.to_string()]).inc();
    }

    /// RPCs refused from `peer` as another incarnation of its id.
    pub fn identity_refusals(&self, peer: u64) -> u64 {
        self.identity_refusals.with_label_values(&[&peer.to_string()]).get()
    }

    pub(crate) fn write_sets_enabled(&self, on: bool) {
        self.write_sets_enabled.set(i64::from(on));
    }

    /// The value of `ha_raft_write_sets_enabled`.
    pub fn write_sets_on(&self) -> bool {
        self.write_sets_enabled.get() == 1
    }

    pub(crate) fn snapshot(&self, event: &str) {
        self.snapshots.with_label_values(&[event]).inc();
    }

    /// Writes observed so far.
    pub fn writes(&self) -> u64 {
        self.append_latency.get_sample_count()
    }

    /// Snapshots counted for `event` (`built`, `installed`, `sent`).
    pub fn snapshots(&self, event: &str) -> u64 {
        self.snapshots.with_label_values(&[event]).get()
    }
}
