//! Relay logs of suppliers this miner has no key for: made visible, never trimmed.
//!
//! Ingest reads the logs of the suppliers in the miner's keys file only (module `ingest`). A relayer with another
//! keys file (Redis: relayer pods with a newer secret, or Go relayers during a migration; raft: each node's own
//! keys file) appends relays for a supplier the leader has no key for: nobody mines them and nobody trims them,
//! so the log grows (on Redis, in memory). Nothing is lost yet, the relays are still in the log, but only while
//! someone knows they are there (architecture.md: loss is recorded, never silent). So once per block the leader
//! lists the suppliers whose logs hold entries ([`storage::RelayLog::suppliers`]) and, for each one without a
//! key:
//!
//! - sets `ha_miner_consumer_lag{supplier}` from its backlog, as for the keyed suppliers, and
//!   `ha_miner_relay_log_unowned_entries{supplier}` to the same count (undelivered + pending), whose series is
//!   removed once the supplier has a key (its lag is then the keyed suppliers' loop's) or its log is empty (the
//!   lag's series too then);
//! - logs an ERROR naming the supplier, once per supplier per leadership term: at the first block of a term that
//!   finds its entries, or later in the term when they first appear.
//!
//! The entries are left where they are: the key may still come (the keys file is hot-reloaded), and then ingest
//! mines them like any other. A failed listing or backlog read never fails the block (WARN; the gauges keep
//! their last values).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use prometheus::IntGaugeVec;

use super::*;

/// `ha_miner_relay_log_unowned_entries{supplier}`, and what the leader reported of the suppliers it counts (kept
/// with the gauge, which every leader's block observation updates; clones share it).
#[derive(Clone)]
pub(in crate::miner) struct UnownedLogs {
    entries: IntGaugeVec,
    seen: Arc<Mutex<Seen>>,
}

/// What [`UnownedLogs`] remembers between blocks.
#[derive(Debug, Default)]
struct Seen {
    /// The leadership token of the term `reported` belongs to.
    term: Option<u64>,
    /// Suppliers whose ERROR was logged in that term.
    reported: BTreeSet<String>,
    /// Suppliers with a series in the gauge (and a lag series set on their behalf).
    shown: BTreeSet<String>,
}

impl UnownedLogs {
    /// Wraps the registered gauge (label `supplier`); nothing reported yet.
    pub(in crate::miner) fn new(entries: IntGaugeVec) -> Self {
        Self {
            entries,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Poisoned only by a panic elsewhere; the sets stay usable (worst case an ERROR repeated).
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A saturating `u64` → gauge value.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Miner {
    /// The leader's once-per-block look at the relay logs of suppliers without a key (module docs).
    pub(super) async fn observe_unowned_logs(&self, m: &MinerMetrics) {
        let log = &self.storage.relay_log;
        let listed = match log.suppliers().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot list the suppliers of the relay log: relays of suppliers without a key are not counted \
                     at this block (ha_miner_relay_log_unowned_entries keeps its last values)"
                );
                return;
            }
        };
        // Entries of each keyless supplier; `None`: its backlog could not be read.
        let mut counts: BTreeMap<String, Option<u64>> = BTreeMap::new();
        for supplier in listed.into_iter().filter(|s| !self.signers.contains_key(s)) {
            let read = log.backlog(&supplier).await;
            self.progressed();
            let count = match read {
                Ok(b) => Some(b.undelivered.saturating_add(b.pending)),
                Err(e) => {
                    tracing::warn!(
                        supplier,
                        error = %e,
                        "cannot read the relay-log backlog of a supplier without a key; its gauges keep their \
                         last values"
                    );
                    None
                }
            };
            counts.insert(supplier, count);
        }
        let unowned = &m.unowned;
        let mut seen = unowned.seen();
        if seen.term != self.leader_token {
            seen.term = self.leader_token;
            seen.reported.clear();
        }
        let mut shown = BTreeSet::new();
        for (supplier, count) in counts {
            match count {
                // Emptied between the listing and the backlog read: as if not listed.
                Some(0) => continue,
                // Unreadable now: its series stay as they were, if it had any.
                None => {
                    if seen.shown.contains(&supplier) {
                        shown.insert(supplier);
                    }
                    continue;
                }
                Some(n) => {
                    m.consumer_lag.with_label_values(&[&supplier]).set(gauge_value(n));
                    unowned.entries.with_label_values(&[&supplier]).set(gauge_value(n));
                    if seen.reported.insert(supplier.clone()) {
                        tracing::error!(
                            supplier,
                            entries = n,
                            "relays for supplier {supplier} are in the relay log but this miner has no key for \
                             it: not mined. They are kept (never trimmed) and mined once its key is in the keys \
                             file; until then the log grows (ha_miner_relay_log_unowned_entries)"
                        );
                    }
                    shown.insert(supplier);
                }
            }
        }
        for gone in seen.shown.difference(&shown) {
            // Errors only say the series did not exist.
            let _ = unowned.entries.remove_label_values(&[gone]);
            if !self.signers.contains_key(gone) {
                let _ = m.consumer_lag.remove_label_values(&[gone]);
            }
        }
        seen.shown = shown;
    }
}
