//! Who submitted in which raft term, sampled from every running node's `/metrics` and raft status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::AdminClient;
use relay_miner::sim::chain::SimChain;

use super::cluster::{Live, TOKEN};
use super::{http_get, metric_sum, submitted};

/// Samples of who submitted in which term: (node, incarnation) → (term, claims + proofs submitted) at the last
/// sample; term → nodes whose submission counters grew within a sampling interval spent wholly in that term.
#[derive(Debug, Default)]
pub struct Submitters {
    pub last: BTreeMap<(u64, u32), (u64, f64)>,
    pub by_term: BTreeMap<u64, BTreeSet<u64>>,
    pub ambiguous: u64,
    pub samples: u64,
    /// Largest (chain height − height the leading miner last handled) seen per node: how far behind the chain
    /// the leader's miner loop runs.
    pub miner_lag: BTreeMap<u64, i64>,
}

impl Submitters {
    /// Asserts that no two nodes submitted in one term, and that the monitor saw a submission at all (a
    /// monitor stopped before the claims and proofs it watches would pass it vacuously).
    pub fn assert_one_per_term(&self) {
        assert!(
            !self.by_term.is_empty(),
            "the monitor saw no submission in {} samples ({} in intervals that spanned a term change): it checked \
             nothing",
            self.samples,
            self.ambiguous
        );
        for (term, nodes) in &self.by_term {
            assert!(nodes.len() <= 1, "term {term}: nodes {nodes:?} all submitted");
        }
    }
}

/// Samples every live node every 30 ms until `stop` (or until its sender is dropped: the test is gone).
pub fn spawn_monitor(
    chain: SimChain,
    live: Live,
    out: Arc<Mutex<Submitters>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !*stop.borrow() && stop.has_changed().is_ok() {
            let nodes: Vec<_> = live.lock().unwrap().clone().into_iter().collect();
            for (id, node) in nodes {
                let client = AdminClient::new(node.raft_addr, TOKEN).with_timeout(Duration::from_millis(300));
                let Ok(before) = client.status().await else { continue };
                let Some(text) = http_get(&node.metrics_url).await else {
                    continue;
                };
                let Ok(after) = client.status().await else { continue };
                let submitted = submitted(&text);
                let mut s = out.lock().unwrap();
                s.samples += 1;
                if metric_sum(&text, "ha_miner_leader_status", &[]) == 1.0 {
                    let handled = metric_sum(&text, "ha_miner_current_block_height", &[]) as i64;
                    let lag = chain.height() - handled;
                    let max = s.miner_lag.entry(id).or_default();
                    *max = (*max).max(lag);
                }
                let term = after.term;
                if let Some((prev_term, prev_submitted)) = s.last.insert((id, node.incarnation), (term, submitted))
                    && submitted > prev_submitted
                {
                    if prev_term == term && before.term == term {
                        s.by_term.entry(term).or_default().insert(id);
                    } else {
                        s.ambiguous += 1;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(30)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}
