//! The block subscription's counters ([`SubscriptionStats`]) on `/metrics`, read from its atomics at scrape time
//! (one source of truth; the subscription task pays nothing for it).
//!
//! | series | type | Go name? |
//! |---|---|---|
//! | `ha_cache_block_events_received_total` (NewBlock events received on the websocket) | counter | yes |
//! | `ha_cache_block_events_published_total` (blocks handed to the consumer, each height once) | counter | yes |
//! | `ha_block_subscription_events_dropped_total{reason=duplicate\|cache_full}` | counter | ours |
//! | `ha_block_subscription_fills_total` (blocks fetched by height: gaps, polling, cache overflow) | counter | ours |
//! | `ha_block_subscription_reconnects_total`, `..._connect_failures_total` (websocket) | counter | ours |
//! | `ha_block_subscription_rpc_errors_total` (failed `status` polls and `block` fetches) | counter | ours |
//! | `ha_block_subscription_bad_messages_total`, `..._polls_total` | counter | ours |
//! | `ha_block_subscription_tip_height` (highest height known to exist) | gauge | ours |
//! | `ha_block_subscription_websocket_connected` (1 while subscribed) | gauge | ours |
//! | `ha_block_subscription_heartbeat_timestamp_seconds` (the task's last iteration, at least every `poll_interval`) | gauge | ours |
//!
//! Why the drops are not the Go fleet's `ha_cache_block_events_dropped_total{channel}`: that one counts events
//! lost because a consumer channel was full (a wedged consumer; alerts fire on any non-zero value). This
//! subscription never drops an event for a slow consumer: a duplicate was already delivered or cached, and an
//! event that found the cache full is fetched again by height (a fill) when the consumer gets there. Counting
//! them under the Go name would page for a benign event; every drop is counted here under its own reason.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts};

use super::SubscriptionStats;

/// Mirrors one subscription's [`SubscriptionStats`] into Prometheus at scrape time. Register one per
/// subscription (the node has one).
pub struct SubscriptionCollector {
    stats: Arc<SubscriptionStats>,
    /// Serializes refreshes, so two concurrent scrapes never add the same counter delta twice.
    refresh: Mutex<()>,
    received: IntCounter,
    published: IntCounter,
    dropped: IntCounterVec,
    dropped_duplicate: IntCounter,
    dropped_cache_full: IntCounter,
    fills: IntCounter,
    reconnects: IntCounter,
    connect_failures: IntCounter,
    rpc_errors: IntCounter,
    bad_messages: IntCounter,
    polls: IntCounter,
    tip: IntGauge,
    connected: IntGauge,
    heartbeat: Gauge,
    descs: Vec<Desc>,
}

/// Advances a Prometheus counter to `total` (the stats only grow).
fn advance(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

impl SubscriptionCollector {
    /// A collector of `stats` (a [`super::BlockStream::stats`]).
    pub fn new(stats: Arc<SubscriptionStats>) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let dropped = IntCounterVec::new(
            Opts::new(
                "ha_block_subscription_events_dropped_total",
                "NewBlock events not kept, by reason: duplicate (height already delivered or cached), cache_full \
                 (the consumer lags; the block is fetched by height later). Neither loses a height",
            ),
            &["reason"],
        )?;
        let collector = Self {
            received: counter(
                "ha_cache_block_events_received_total",
                "NewBlock events received from the CometBFT websocket",
            )?,
            published: counter(
                "ha_cache_block_events_published_total",
                "Blocks handed to the consumer (every height once, in order)",
            )?,
            dropped_duplicate: dropped.with_label_values(&["duplicate"]),
            dropped_cache_full: dropped.with_label_values(&["cache_full"]),
            dropped,
            fills: counter(
                "ha_block_subscription_fills_total",
                "Blocks fetched by height because no event supplied them (gaps, polling, cache overflow)",
            )?,
            reconnects: counter(
                "ha_block_subscription_reconnects_total",
                "Successful websocket connections after the first",
            )?,
            connect_failures: counter(
                "ha_block_subscription_connect_failures_total",
                "Failed websocket connection attempts",
            )?,
            rpc_errors: counter(
                "ha_block_subscription_rpc_errors_total",
                "Failed status polls and block fetches",
            )?,
            bad_messages: counter(
                "ha_block_subscription_bad_messages_total",
                "Unparseable websocket messages ignored",
            )?,
            polls: counter("ha_block_subscription_polls_total", "status polls made")?,
            tip: IntGauge::new(
                "ha_block_subscription_tip_height",
                "Highest block height the subscription knows to exist",
            )?,
            connected: IntGauge::new(
                "ha_block_subscription_websocket_connected",
                "1 while the NewBlock websocket is subscribed, 0 while polling",
            )?,
            heartbeat: Gauge::new(
                "ha_block_subscription_heartbeat_timestamp_seconds",
                "Unix time of the subscription task's last iteration (advances at least every poll interval, \
                 idle too)",
            )?,
            stats,
            refresh: Mutex::new(()),
            descs: Vec::new(),
        };
        Ok(collector.with_descs())
    }

    fn with_descs(mut self) -> Self {
        self.descs = self.parts().iter().flat_map(|c| c.desc()).cloned().collect();
        self
    }

    fn parts(&self) -> [&dyn Collector; 12] {
        [
            &self.received,
            &self.published,
            &self.dropped,
            &self.fills,
            &self.reconnects,
            &self.connect_failures,
            &self.rpc_errors,
            &self.bad_messages,
            &self.polls,
            &self.tip,
            &self.connected,
            &self.heartbeat,
        ]
    }
}

impl Collector for SubscriptionCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        {
            let _one = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
            let s = self.stats.snapshot();
            advance(&self.received, s.ws_events);
            advance(&self.published, s.delivered);
            advance(&self.dropped_duplicate, s.duplicates);
            advance(&self.dropped_cache_full, s.cache_overflows);
            advance(&self.fills, s.fills);
            advance(&self.reconnects, s.reconnects);
            advance(&self.connect_failures, s.connect_failures);
            advance(&self.rpc_errors, s.rpc_errors);
            advance(&self.bad_messages, s.bad_messages);
            advance(&self.polls, s.polls);
            self.tip.set(s.tip);
            self.connected.set(i64::from(s.ws_connected));
            self.heartbeat.set(s.heartbeat_unix_ms as f64 / 1000.0);
        }
        self.parts().iter().flat_map(|c| c.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Every counter appears under its name with the atomics' values, scrape after scrape (not added twice).
    #[test]
    fn every_counter_is_exported_with_its_value() {
        let stats = Arc::new(SubscriptionStats::default());
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(SubscriptionCollector::new(Arc::clone(&stats)).unwrap()))
            .unwrap();
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&stats.ws_events, 11);
        set(&stats.delivered, 12);
        set(&stats.duplicates, 3);
        set(&stats.cache_overflows, 4);
        set(&stats.fills, 5);
        set(&stats.reconnects, 6);
        set(&stats.connect_failures, 7);
        set(&stats.rpc_errors, 8);
        set(&stats.bad_messages, 9);
        set(&stats.polls, 10);
        set(&stats.heartbeat_unix_ms, 1_700_000_000_500);
        stats.tip.store(42, Ordering::Relaxed);
        stats.ws_connected.store(true, Ordering::Relaxed);
        let text = || {
            let mut out = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&registry.gather(), &mut out)
                .unwrap();
            out
        };
        let _ = text();
        let out = text();
        for line in [
            "ha_cache_block_events_received_total 11",
            "ha_cache_block_events_published_total 12",
            "ha_block_subscription_events_dropped_total{reason=\"duplicate\"} 3",
            "ha_block_subscription_events_dropped_total{reason=\"cache_full\"} 4",
            "ha_block_subscription_fills_total 5",
            "ha_block_subscription_reconnects_total 6",
            "ha_block_subscription_connect_failures_total 7",
            "ha_block_subscription_rpc_errors_total 8",
            "ha_block_subscription_bad_messages_total 9",
            "ha_block_subscription_polls_total 10",
            "ha_block_subscription_tip_height 42",
            "ha_block_subscription_websocket_connected 1",
            "ha_block_subscription_heartbeat_timestamp_seconds 1700000000.5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing `{line}` in:\n{out}");
        }
    }
}
