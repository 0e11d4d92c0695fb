//! The settlement metrics of a cluster against what the simulator chain settled.
//!
//! The leading miner counts each settlement of its suppliers' claims from the settlement block's events
//! (`ha_miner_claims_settled_by_status_total{supplier,service_id,status}` and
//! `ha_miner_relays_settled_by_status_total`, module docs of `src/miner/driver/settled.rs`): at most once per
//! session across processes and leaders (its counted mark is stored before the counters move), and at all unless
//! its leader dies between the mark and the count. Summed over a cluster's nodes, those counters are therefore
//! exactly the chain's settlements when no process died, and at most them otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use relay_miner::sim::chain::{Settlement, SimChain};
use relay_miner::smst::hash::root_sum_count;

use super::metric_sum;

/// The `status` label values of the settlement metrics (`settled.rs`, fn `status`).
pub const STATUSES: [&str; 4] = ["settled", "proven", "expired", "discarded"];

/// Settled claims and their relays, per `status` label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByStatus {
    /// Claims per status.
    pub claims: BTreeMap<&'static str, u64>,
    /// Relays (the claims' root counts) per status.
    pub relays: BTreeMap<&'static str, u64>,
}

impl ByStatus {
    /// Every claim, whatever its status.
    pub fn total_claims(&self) -> u64 {
        self.claims.values().sum()
    }

    /// Whether every count of `self` is at least that of `other`.
    pub fn covers(&self, other: &ByStatus) -> bool {
        let ge = |a: &BTreeMap<&str, u64>, b: &BTreeMap<&str, u64>| {
            b.iter().all(|(k, v)| a.get(k).copied().unwrap_or(0) >= *v)
        };
        ge(&self.claims, &other.claims) && ge(&self.relays, &other.relays)
    }

    /// `self − base`, per status (saturating: a node restarted since `base` was read starts again at zero).
    pub fn minus(&self, base: &ByStatus) -> ByStatus {
        let sub = |a: &BTreeMap<&'static str, u64>, b: &BTreeMap<&'static str, u64>| {
            a.iter()
                .map(|(k, v)| (*k, v.saturating_sub(b.get(k).copied().unwrap_or(0))))
                .collect()
        };
        ByStatus {
            claims: sub(&self.claims, &base.claims),
            relays: sub(&self.relays, &base.relays),
        }
    }
}

/// The status label the miner gives a settlement the simulator made (`settled.rs`, fn `status`): a paid claim is
/// `proven` when a proof was required, `settled` when not.
fn status_of(outcome: &Settlement, proof_required: bool) -> &'static str {
    match outcome {
        Settlement::Settled(_) if proof_required => "proven",
        Settlement::Settled(_) => "settled",
        Settlement::Expired(_) => "expired",
        Settlement::Discarded(_) => "discarded",
    }
}

/// What the chain settled, per status, from its `skip`-th settlement on (settlements are recorded in the order
/// the chain made them; `skip = 0`: all of them). Also returns how many settlements the chain has made so far.
pub fn chain_settled(chain: &SimChain, skip: usize) -> (ByStatus, usize) {
    // `state()` holds the simulator's lock: read what is needed and release it.
    let state = chain.state();
    let mut by = ByStatus::default();
    for status in STATUSES {
        by.claims.insert(status, 0);
        by.relays.insert(status, 0);
    }
    for (session, supplier, outcome) in state.settlements.iter().skip(skip) {
        let entry = state.settled.get(&(session.clone(), supplier.clone()));
        let required = entry.and_then(|e| e.proof_required).unwrap_or(false);
        // The root's relay count (its sum and count, §5).
        let relays = entry
            .and_then(|e| root_sum_count(&e.claim.root_hash))
            .map_or(0, |(_, count)| count);
        let status = status_of(outcome, required);
        *by.claims.entry(status).or_default() += 1;
        *by.relays.entry(status).or_default() += relays;
    }
    (by, state.settlements.len())
}

/// The settlement counters of one node's `/metrics` text, per status.
pub fn node_settled(text: &str) -> ByStatus {
    let mut by = ByStatus::default();
    for status in STATUSES {
        let of = |name: &str| metric_sum(text, name, &[("status", status)]) as u64;
        by.claims.insert(status, of("ha_miner_claims_settled_by_status_total"));
        by.relays.insert(status, of("ha_miner_relays_settled_by_status_total"));
    }
    by
}

/// The settlement counters summed over the nodes of `metrics` (node id → `/metrics` text).
pub fn cluster_settled(metrics: &BTreeMap<u64, String>) -> ByStatus {
    let mut sum = ByStatus::default();
    for text in metrics.values() {
        let node = node_settled(text);
        for (k, v) in node.claims {
            *sum.claims.entry(k).or_default() += v;
        }
        for (k, v) in node.relays {
            *sum.relays.entry(k).or_default() += v;
        }
    }
    sum
}

/// Each node's settlement series (`*_settled_by_status_total`, `ha_miner_settlements_unread_total`, upokt
/// earned), as its `/metrics` prints them: shown before the settlement assertions.
pub fn print_settled_series(metrics: &BTreeMap<u64, String>) {
    const SERIES: [&str; 4] = [
        "ha_miner_claims_settled_by_status_total",
        "ha_miner_relays_settled_by_status_total",
        "ha_miner_upokt_earned_total",
        "ha_miner_settlements_unread_total",
    ];
    for (id, text) in metrics {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| SERIES.iter().any(|s| l.starts_with(&format!("{s}{{"))))
            .collect();
        println!("node {id} settlement series: {lines:#?}");
    }
}

/// Polls (every 50 ms, up to `limit`) the summed settlement counters that `scrape_all` reads until, less
/// `base`, they cover `want`, and returns the metrics read last (when covered, or at `limit`: the caller asserts,
/// after its other money assertions). The leader counts a session at the first block it processes at or after
/// the session's settlement height, so the counters trail the chain by a block or so. Counters only grow: a
/// double count covers `want` at once, and the caller's comparison catches it.
pub async fn await_counted<F, Fut>(
    limit: Duration,
    base: &ByStatus,
    want: &ByStatus,
    mut scrape_all: F,
) -> BTreeMap<u64, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BTreeMap<u64, String>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        let metrics = scrape_all().await;
        if cluster_settled(&metrics).minus(base).covers(want) || std::time::Instant::now() >= deadline {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
