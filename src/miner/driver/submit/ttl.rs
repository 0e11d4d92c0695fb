//! How long an unordered tx stays valid: its `timeout_timestamp` after the tip's block time.
//!
//! cosmos-sdk refuses an unordered tx in a block whose time is past its timeout (`TxTimeoutHeightDecorator`,
//! `ErrTxTimeout`: no fee, but nothing landed), and CometBFT stamps a block with (about) the time the block before
//! it was committed. So a tx whose timeout is the tip's time + 120 s can land, with 60 s blocks (Pocket mainnet's
//! `timeout_commit` is 1 min), only in the next block or the one after; a block full at a window's open (every
//! supplier's claims or proofs at once) and both sends of a claim miss, and with 5-minute blocks (Beta testnet)
//! no tx ever lands. The Go relay miner and poktroll's own client size the timeout from the window for that reason.
//!
//! The window bounds inclusion anyway: every claim and proof tx carries the window's close as `timeout_height`,
//! so a long timeout never lets a tx land late. The timeout therefore covers the blocks up to that height at the
//! chain's recent pace (with margin), at least `transaction.tx_timeout_default_seconds` and at most
//! [`MAX_TX_TIMEOUT_SECS`](crate::config::MAX_TX_TIMEOUT_SECS) (the SDK refuses more than 10 min). Pure: the
//! caller gives a tip seen some blocks before (`crate::chain::pace`; no block is read).

use crate::chain::tx::Timestamp;

/// The time to live, in seconds, of an unordered tx signed at the tip (`tip_height` at `tip_time`) whose
/// `timeout_height` is `timeout_height` (0: none), a tip `reference` (height, time) seen below it giving the
/// pace: `configured` at least, enough for the blocks up to `timeout_height` plus two, with a quarter more, at the
/// pace; [`MAX_TX_TIMEOUT_SECS`](crate::config::MAX_TX_TIMEOUT_SECS) when the pace is unknown (the timeout height
/// bounds inclusion); `configured` without a timeout height.
pub(in crate::miner::driver) fn unordered_ttl_secs(
    configured: i64,
    tip_height: i64,
    tip_time: Timestamp,
    reference: Option<(i64, Timestamp)>,
    timeout_height: u64,
) -> i64 {
    let max = i64::try_from(crate::config::MAX_TX_TIMEOUT_SECS).unwrap_or(540);
    let configured = configured.min(max);
    let Ok(timeout_height) = i64::try_from(timeout_height) else {
        return configured;
    };
    if timeout_height == 0 {
        return configured;
    }
    let nanos = |t: Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let pace = reference.and_then(|(height, time)| {
        let blocks = i128::from(tip_height.checked_sub(height).filter(|b| *b > 0)?);
        let elapsed = nanos(tip_time) - nanos(time);
        (elapsed > 0).then_some(elapsed / blocks)
    });
    let Some(per_block) = pace else {
        return max;
    };
    let blocks = i128::from(timeout_height.saturating_sub(tip_height).max(0)) + 2;
    let needed = (blocks * per_block * 5 / 4 + 999_999_999) / 1_000_000_000;
    i64::try_from(needed).unwrap_or(i64::MAX).clamp(configured, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    /// Blocks of `secs` seconds: the tip at height 100, the reference 10 blocks below.
    fn ttl(secs: i64, timeout_height: u64) -> i64 {
        unordered_ttl_secs(120, 100, at(100 * secs), Some((90, at(90 * secs))), timeout_height)
    }

    /// Short blocks (tests, localnet): the configured 120 s, already far more than the window needs.
    #[test]
    fn short_blocks_keep_the_configured_ttl() {
        assert_eq!(ttl(1, 104), 120);
        assert_eq!(ttl(6, 104), 120, "(4 + 2) × 6 s × 1.25 = 45 s");
    }

    /// Mainnet's ~60 s blocks: a window closing 4 blocks on needs (4 + 2) × 60 × 1.25 = 450 s, not 120 (which
    /// the block after next is already past); a wider one or 5-minute blocks get the SDK's bound less a minute.
    #[test]
    fn long_blocks_cover_the_window_up_to_the_sdk_bound() {
        assert_eq!(ttl(60, 104), 450);
        assert_eq!(ttl(62, 101), 233, "(1 + 2) × 62 × 1.25 = 232.5, rounded up");
        assert_eq!(ttl(60, 110), 540);
        assert_eq!(ttl(300, 101), 540);
    }

    /// An unknown pace (no block below the tip, times not increasing) takes the bound; no timeout height keeps
    /// the configured TTL; a configured TTL above the bound is cut to it; a tip past the timeout height needs
    /// two blocks.
    #[test]
    fn edges() {
        assert_eq!(unordered_ttl_secs(120, 1, at(10), None, 5), 540);
        assert_eq!(unordered_ttl_secs(120, 100, at(10), Some((90, at(10))), 105), 540);
        assert_eq!(unordered_ttl_secs(120, 100, at(10), Some((100, at(5))), 105), 540);
        assert_eq!(unordered_ttl_secs(120, 100, at(6000), Some((90, at(5400))), 0), 120);
        assert_eq!(unordered_ttl_secs(900, 100, at(100), Some((90, at(90))), 104), 540);
        assert_eq!(ttl(100, 90), 250, "(0 + 2) × 100 × 1.25");
    }
}
