//! The claims' history by height, so a `Claim` query can be answered as of a height: pinned by the request
//! (`x-cosmos-block-height`, as cosmos-sdk reads a query from the state committed at that height) or the height
//! of a lagging node ([`super::ChainState::query_lag_blocks`]). Without it, every node would answer from the
//! latest state, and a miner reading claims through a load balancer whose backends lag could not be tested.
//!
//! The history is taken at the end of each block ([`ClaimHistory::record`]): every claim created, updated (its
//! proof validation status) or removed (settled, expired) in that block gets an entry at its height. A claim a
//! test wrote straight into the state without a block has no entry and is answered from the latest state.

use std::collections::BTreeMap;

use super::ClaimEntry;
use crate::protocol::wire;

/// Blocks an entry of a removed claim is kept past its removal: older heights are not asked about (a node
/// prunes its old states too), and a long `relay-miner sim` run must not keep every claim it ever saw.
const REMOVED_KEPT_BLOCKS: i64 = 1000;

/// A claim's changes: the height of each and the claim from then on (`None`: removed), oldest first.
type Changes = Vec<(i64, Option<wire::Claim>)>;

/// Per (session id, supplier): the claim as of each height it changed at.
#[derive(Debug, Default, Clone)]
pub struct ClaimHistory {
    entries: BTreeMap<(String, String), Changes>,
}

impl ClaimHistory {
    /// Records the claims as block `height` left them (`claims`): an entry for each one that changed.
    pub fn record(&mut self, height: i64, claims: &BTreeMap<(String, String), ClaimEntry>) {
        for (key, entry) in claims {
            let history = self.entries.entry(key.clone()).or_default();
            if history.last().and_then(|(_, c)| c.as_ref()) != Some(&entry.claim) {
                history.push((height, Some(entry.claim.clone())));
            }
        }
        for (key, history) in &mut self.entries {
            if !claims.contains_key(key) && history.last().is_some_and(|(_, c)| c.is_some()) {
                history.push((height, None));
            }
        }
        self.entries.retain(|_, history| {
            history
                .last()
                .is_none_or(|(at, claim)| claim.is_some() || *at + REMOVED_KEPT_BLOCKS > height)
        });
    }

    /// The claim of `key` as of `height`: `None` when the history has no entry for it (answer from the latest
    /// state), `Some(None)` when it did not exist at that height.
    pub fn at(&self, key: &(String, String), height: i64) -> Option<Option<&wire::Claim>> {
        let history = self.entries.get(key)?;
        Some(
            history
                .iter()
                .rev()
                .find(|(at, _)| *at <= height)
                .and_then(|(_, claim)| claim.as_ref()),
        )
    }
}

impl super::ChainState {
    /// The claim of (session id, supplier) as of `height` (`None`: the latest state), as a node answering a
    /// `Claim` query at that height finds it.
    pub fn claim_at(&self, key: &(String, String), height: Option<i64>) -> Option<wire::Claim> {
        let latest = || self.claims.get(key).map(|e| e.claim.clone());
        match height {
            Some(h) if h < self.height => match self.claim_history.at(key, h) {
                Some(claim) => claim.cloned(),
                None => latest(),
            },
            _ => latest(),
        }
    }
}
