//! The chain's recent pace, from the tips the node's status gave ([`ChainClient::tip`](super::query::ChainClient::tip)):
//! (height, block time) samples of the last blocks seen, so the miner can size an unordered tx's timeout to its
//! window at the chain's block time without reading a block (a whole block can be MBs once proofs are in it).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::protocol::wire::BlockTime;

/// Tips kept (distinct heights, increasing).
const KEPT: usize = 16;

/// How far back, in blocks, [`TipPace::reference`] looks for its sample.
pub const PACE_BLOCKS: i64 = 10;

/// The last tips seen, by increasing height.
#[derive(Debug, Default)]
pub struct TipPace {
    tips: Mutex<VecDeque<(i64, BlockTime)>>,
}

impl TipPace {
    /// Records the tip `height` at `time`; a height not above the last one (a lagging node behind a load balancer,
    /// or the same tip again) is not.
    pub fn observe(&self, height: i64, time: BlockTime) {
        let Ok(mut tips) = self.tips.lock() else {
            return;
        };
        if tips.back().is_some_and(|(last, _)| *last >= height) {
            return;
        }
        if tips.len() == KEPT {
            tips.pop_front();
        }
        tips.push_back((height, time));
    }

    /// A tip seen below `height` to measure the pace against: the oldest within [`PACE_BLOCKS`] of it, else the
    /// newest below it; `None` when none was seen.
    pub fn reference(&self, height: i64) -> Option<(i64, BlockTime)> {
        let tips = self.tips.lock().ok()?;
        let mut below = tips.iter().filter(|(h, _)| *h < height);
        let newest = below.clone().next_back().copied();
        below.find(|(h, _)| *h >= height - PACE_BLOCKS).copied().or(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> BlockTime {
        BlockTime { seconds, nanos: 0 }
    }

    #[test]
    fn the_reference_is_the_oldest_tip_within_the_pace_window() {
        let pace = TipPace::default();
        assert_eq!(pace.reference(5), None);
        for h in [3, 5, 5, 4, 8, 14, 20] {
            pace.observe(h, at(h * 60));
        }
        assert_eq!(pace.reference(20), Some((14, at(840))), "20 − 10 ≤ 14");
        assert_eq!(
            pace.reference(14),
            Some((5, at(300))),
            "the lagging 4 and the repeated 5 were not kept"
        );
        assert_eq!(
            pace.reference(30),
            Some((20, at(1200))),
            "none within 10 blocks: the newest below"
        );
        assert_eq!(pace.reference(3), None);
    }

    #[test]
    fn at_most_kept_tips() {
        let pace = TipPace::default();
        for h in 1..=100 {
            pace.observe(h, at(h));
        }
        assert_eq!(pace.tips.lock().unwrap().len(), KEPT);
        assert_eq!(pace.reference(101), Some((91, at(91))));
    }
}
