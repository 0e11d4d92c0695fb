//! What this node's miner is working on and what it did, as the watchdog reads them: the suppliers and live
//! sessions one iteration of its loop covers (the hung bound grows with them, `choice::hung_after`) and a count
//! of the work it did (progress inside an iteration that has not completed yet, `choice::Pulse`).
//!
//! Read from what the miner already publishes: its `ha_miner_sessions{state}` and per-supplier
//! `ha_miner_session_block_processing_lag{supplier}` gauges (set at each block it handles while leading) and its
//! [`MinerStats`] counters. The miner needs no channel of its own to the watchdog, and a hung miner's last
//! published work is what it was doing when it hung.

use std::sync::atomic::Ordering;

use prometheus::Registry;

use super::choice::Work;
use crate::miner::driver::MinerStats;

/// The session states a block's work still reads the chain for (the others: settled, discarded, expired, and
/// the pruned tombstones).
const LIVE_STATES: [&str; 5] = ["active", "claiming", "claimed", "proving", "proved"];

/// The work one iteration of the miner covers: the suppliers it signs for (those it published a block
/// processing lag for, at least the `keys` of this node's keyring) and the live sessions it published.
pub(crate) fn work(registry: &Registry, keys: usize) -> Work {
    let mut suppliers = keys;
    let mut sessions = 0.0_f64;
    for family in registry.gather() {
        match family.name() {
            "ha_miner_sessions" => {
                sessions += family
                    .get_metric()
                    .iter()
                    .filter(|m| {
                        m.get_label()
                            .iter()
                            .any(|l| l.name() == "state" && LIVE_STATES.contains(&l.value()))
                    })
                    .map(|m| m.get_gauge().get_value().max(0.0))
                    .sum::<f64>();
            }
            "ha_miner_session_block_processing_lag" => suppliers = suppliers.max(family.get_metric().len()),
            _ => {}
        }
    }
    Work {
        suppliers: u32::try_from(suppliers).unwrap_or(u32::MAX),
        // A float from a gauge of counts: `as` saturates (and a NaN reads 0).
        sessions: sessions as u32,
    }
}

/// A count that changes whenever the miner did a piece of work: the sum of its [`MinerStats`] counters (relays
/// ingested or skipped, claims and proofs sent, claims confirmed, proof requirements decided, sessions settled,
/// lost, discarded or pruned, fenced writes). Only the miner writes them, so a change is the miner moving on.
pub(crate) fn done(stats: &MinerStats) -> u64 {
    [
        &stats.relays_ingested,
        &stats.relays_unreadable,
        &stats.relays_too_large,
        &stats.relays_after_prune,
        &stats.relays_reweighted,
        &stats.relays_late,
        &stats.claims_sent,
        &stats.proofs_sent,
        &stats.claims_confirmed,
        &stats.proofs_required,
        &stats.proofs_not_required_after_all,
        &stats.settlements_unknown,
        &stats.sessions_lost,
        &stats.sessions_discarded,
        &stats.sessions_done,
        &stats.fenced_writes,
        &stats.steps_done,
    ]
    .into_iter()
    .fold(0_u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus::{IntGaugeVec, Opts};

    /// The gauges as the miner registers them (`miner::metrics`).
    fn registry() -> (Registry, IntGaugeVec, IntGaugeVec) {
        let registry = Registry::new();
        let sessions = IntGaugeVec::new(Opts::new("ha_miner_sessions", "h"), &["state"]).unwrap();
        let lag = IntGaugeVec::new(Opts::new("ha_miner_session_block_processing_lag", "h"), &["supplier"]).unwrap();
        registry.register(Box::new(sessions.clone())).unwrap();
        registry.register(Box::new(lag.clone())).unwrap();
        (registry, sessions, lag)
    }

    #[test]
    fn the_work_is_the_suppliers_and_the_sessions_with_chain_work_left() {
        let (registry, sessions, lag) = registry();
        assert_eq!(
            work(&registry, 2),
            Work {
                suppliers: 2,
                sessions: 0
            },
            "nothing published: the keyring"
        );
        for (state, n) in [
            ("active", 3),
            ("claiming", 1),
            ("claimed", 2),
            ("proving", 1),
            ("proved", 4),
            ("pruned", 100),
            ("settled", 7),
            ("discarded", 5),
            ("expired", 6),
        ] {
            sessions.with_label_values(&[state]).set(n);
        }
        for supplier in ["pokt1a", "pokt1b", "pokt1c"] {
            lag.with_label_values(&[supplier]).set(0);
        }
        assert_eq!(
            work(&registry, 2),
            Work {
                suppliers: 3,
                sessions: 11
            }
        );
        assert_eq!(
            work(&registry, 5).suppliers,
            5,
            "keys added since the last block count at once"
        );
    }

    #[test]
    fn any_counted_work_changes_the_count() {
        let stats = MinerStats::default();
        let before = done(&stats);
        stats.claims_sent.fetch_add(1, Ordering::Relaxed);
        let after = done(&stats);
        assert_ne!(before, after);
        stats.relays_ingested.fetch_add(5, Ordering::Relaxed);
        assert_eq!(done(&stats), after + 5);
    }
}
