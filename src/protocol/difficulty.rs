//! Relay mining difficulty (§4): which relays are volume applicable (go into the trie), the target in effect at a
//! session start, the exact difficulty multiplier, and the chain's per-settlement target update (for cross-checks
//! in the simulator).

use num_bigint::BigUint;
use num_rational::BigRational;
use num_traits::{One as _, Zero as _};

/// The base target: 32 × `ff` (every relay is applicable).
pub const BASE_TARGET: [u8; 32] = [0xff; 32];

/// A relay is volume applicable iff `SHA256(relayBz) < target` as 32-byte big-endian numbers (strict); the chain
/// also requires a 32-byte target.
pub fn is_volume_applicable(relay_hash: &[u8; 32], target: &[u8]) -> bool {
    target.len() == 32 && relay_hash.as_slice() < target
}

/// (2²⁵⁶ − 1), the numerator of the multiplier.
pub fn max_hash_value() -> BigUint {
    (BigUint::one() << 256u32) - BigUint::one()
}

/// Difficulty multiplier = (2²⁵⁶ − 1) / int(target), exact (never rounded before use). A zero target yields
/// `None` (no relay can be applicable, the chain never sets it).
pub fn difficulty_multiplier(target: &[u8]) -> Option<BigRational> {
    let denominator = BigUint::from_bytes_be(target);
    if denominator.is_zero() {
        return None;
    }
    Some(BigRational::new(max_hash_value().into(), denominator.into()))
}

/// The target in effect at `height` from a history of `(effective_height, target)` entries: the latest entry with
/// `effective_height ≤ height`, else the base target.
pub fn target_at_height(history: &[(i64, Vec<u8>)], height: i64) -> Vec<u8> {
    history
        .iter()
        .filter(|(effective, _)| *effective <= height)
        .max_by_key(|(effective, _)| *effective)
        .map(|(_, target)| target.clone())
        .unwrap_or_else(|| BASE_TARGET.to_vec())
}

/// The chain's EMA update at settlement: `ema' = 0.1·relays + 0.9·ema`, truncated to an integer.
pub fn next_ema(previous_ema: u64, relays: u64) -> u64 {
    let ema = (BigUint::from(relays) + BigUint::from(previous_ema) * 9u32) / 10u32;
    u64::try_from(ema).unwrap_or(u64::MAX)
}

/// The chain's new target for an EMA: base when `ema == target_num_relays` (or ema is 0), else
/// floor(base · target_num_relays / ema) with leading zeros trimmed, base when wider than 32 bytes, left-padded.
pub fn target_for_ema(target_num_relays: u64, ema: u64) -> [u8; 32] {
    if ema == target_num_relays || ema == 0 {
        return BASE_TARGET;
    }
    let scaled = max_hash_value() * BigUint::from(target_num_relays) / BigUint::from(ema);
    let bytes = scaled.to_bytes_be();
    if bytes.len() > 32 {
        return BASE_TARGET;
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn applicability_is_strict_and_needs_32_bytes() {
        let target = hex32("00ff000000000000000000000000000000000000000000000000000000000000");
        assert!(is_volume_applicable(
            &hex32("000f000000000000000000000000000000000000000000000000000000000000"),
            &target
        ));
        assert!(!is_volume_applicable(&target, &target));
        assert!(is_volume_applicable(&[0u8; 32], &BASE_TARGET));
        assert!(!is_volume_applicable(&[0u8; 32], &[0xff; 31]));
    }

    #[test]
    fn multipliers_golden() {
        let int = |t: [u8; 32]| difficulty_multiplier(&t).unwrap().to_integer();
        assert_eq!(int(BASE_TARGET), 1.into());
        let mut half = BASE_TARGET;
        half[0] = 0x7f;
        assert_eq!(int(half), 2.into());
        let mut quarter = BASE_TARGET;
        quarter[0] = 0x3f;
        assert_eq!(int(quarter), 4.into());
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(
            difficulty_multiplier(&one).unwrap(),
            BigRational::from_integer(max_hash_value().into())
        );
        assert!(difficulty_multiplier(&[0u8; 32]).is_none());
    }

    #[test]
    fn target_updates_golden() {
        let t = |ema| hex::encode(target_for_ema(50, ema));
        assert!(t(100).starts_with("7fff"), "{}", t(100));
        assert!(t(800).starts_with("0fff"), "{}", t(800));
        assert!(t(6400).starts_with("01ff"), "{}", t(6400));
        assert_eq!(target_for_ema(50, 50), BASE_TARGET);
        assert_eq!(target_for_ema(100, 50), BASE_TARGET, "easier than base clamps to base");
        assert_eq!(next_ema(100, 200), 110);
        assert_eq!(target_at_height(&[(10, vec![1]), (20, vec![2])], 15), vec![1]);
        assert_eq!(target_at_height(&[(10, vec![1]), (20, vec![2])], 20), vec![2]);
        assert_eq!(target_at_height(&[(10, vec![1])], 5), BASE_TARGET.to_vec());
    }
}
