//! `ha_chain_cache_entries{cache}`: how many entries each of the chain client's caches holds, read when
//! Prometheus scrapes (no bookkeeping on the relay path). Every cache is bounded (lessons.md), and this is how an
//! operator sees what the bound costs: a relayer's memory follows the sessions and applications it serves.

use std::sync::{Arc, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};

use super::query::ChainClient;

/// The cache-size gauges of one [`ChainClient`] (holds it weakly: the gauges never keep a client alive).
pub struct CacheGauges {
    client: Weak<ChainClient>,
    entries: IntGaugeVec,
}

impl CacheGauges {
    /// Gauges of `client`, to register with the process's registry.
    pub fn new(client: &Arc<ChainClient>) -> Result<Self, prometheus::Error> {
        let entries = IntGaugeVec::new(
            Opts::new(
                "ha_chain_cache_entries",
                "Entries held by each chain-read cache (expired entries not yet swept included)",
            ),
            &["cache"],
        )?;
        Ok(Self {
            client: Arc::downgrade(client),
            entries,
        })
    }
}

impl Collector for CacheGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.entries.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(client) = self.client.upgrade() {
            for (cache, n) in client.cache_entries() {
                self.entries
                    .with_label_values(&[cache])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.entries.collect()
    }
}
