//! Ring signature verification with fixed-base tables for hot keys (the relayer's largest CPU cost).
//!
//! The LSAG verification of §2.5 computes, per ring member, `L = s·G + c·P` and `R = s·H_p(P) + c·I`. Across
//! requests, G is constant, P and H_p(P) are ring members (an application and its gateways: a small, hot set),
//! and the key image I is fixed per signer (a gateway signs all its relays with the same I). For such points a
//! precomputed table of `j·16^w·Q` (w < 64, 1 ≤ j ≤ 15; ~84 KiB each) turns a scalar multiplication into at most
//! 64 mixed additions with no doublings, about 2× cheaper than the variable-base two-point linear combination.
//!
//! Tables are built only for keys seen in [`HOT_AFTER`] successful verifications (so a flood of one-off keys
//! never costs table builds), and at most [`MAX_TABLES`] are kept (the set is cleared when full; memory stays
//! below ~11 MiB). A key without a table takes the variable-base path. Results are identical to
//! [`crate::protocol::ring::RingSignature::verify`] (differential test below), which remains the reference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use k256::elliptic_curve::group::Curve as _;
use k256::elliptic_curve::group::GroupEncoding as _;
use k256::elliptic_curve::ops::Reduce as _;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

use super::{HpCache, RingError, RingSignature, hash_to_scalar};

/// Successful verifications a key must take part in before it gets a table.
pub const HOT_AFTER: u32 = 8;
/// Tables kept at most.
pub const MAX_TABLES: usize = 128;
/// Keys whose use is counted at most (the counters are cleared when full).
const MAX_COUNTED: usize = 65_536;

/// `j·16^w·Q` for w in 0..64 and j in 1..=15, affine, at index `w·15 + j − 1`.
struct Table(Box<[AffinePoint]>);

impl Table {
    fn new(q: ProjectivePoint) -> Self {
        let mut points = Vec::with_capacity(64 * 15);
        let mut base = q;
        for _ in 0..64 {
            let mut acc = base;
            for _ in 1..=15 {
                points.push(acc);
                acc += base;
            }
            base = acc; // 16·base
        }
        let mut affine = vec![AffinePoint::IDENTITY; points.len()];
        ProjectivePoint::batch_normalize(&points, &mut affine);
        Self(affine.into_boxed_slice())
    }

    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes = k.to_bytes();
        let mut acc = ProjectivePoint::IDENTITY;
        for (i, b) in bytes.iter().rev().enumerate() {
            for (half, nibble) in [(0, usize::from(b & 0x0f)), (1, usize::from(b >> 4))] {
                if nibble != 0 {
                    acc += &self.0[(2 * i + half) * 15 + nibble - 1];
                }
            }
        }
        acc
    }
}

#[derive(Default)]
struct State {
    tables: HashMap<[u8; 33], Arc<Table>>,
    uses: HashMap<[u8; 33], u32>,
}

/// The verifier (one per relayer; cheap to share).
#[derive(Default)]
pub struct FastRing {
    state: Mutex<State>,
}

fn generator_table() -> &'static Table {
    static G: OnceLock<Table> = OnceLock::new();
    G.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
}

fn reduce(bytes: &[u8]) -> Scalar {
    let mut array = FieldBytes::default();
    array.copy_from_slice(bytes);
    Scalar::reduce(&array)
}

impl FastRing {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn table(&self, key: &[u8; 33]) -> Option<Arc<Table>> {
        self.state().tables.get(key).cloned()
    }

    /// `k·Q` with Q's table when it has one.
    fn mul(&self, key: &[u8; 33], point: &ProjectivePoint, k: &Scalar) -> ProjectivePoint {
        match self.table(key) {
            Some(t) => t.mul(k),
            None => *point * k,
        }
    }

    /// Verifies `signature` (its serialized form `bytes`, already parsed by [`RingSignature::from_bytes`]) over
    /// `message`, exactly as [`RingSignature::verify`] does.
    pub fn verify(&self, bytes: &[u8], signature: &RingSignature, message: &[u8; 32]) -> Result<(), RingError> {
        let ring = signature.ring();
        let n = ring.len();
        if bytes.len() < 69 + 65 * n {
            return Err(RingError::Invalid);
        }
        let c0 = reduce(&bytes[4..36]);
        let image_bytes = signature.key_image();
        let image: Option<AffinePoint> = AffinePoint::from_bytes(&image_bytes.into()).into();
        let image = ProjectivePoint::from(image.ok_or(RingError::Invalid)?);
        let g = generator_table();
        let mut c = c0;
        for (i, raw) in ring.iter().enumerate() {
            let offset = 69 + 65 * i;
            let s = reduce(&bytes[offset..offset + 32]);
            let point: Option<AffinePoint> = AffinePoint::from_bytes(&(*raw).into()).into();
            let point = ProjectivePoint::from(point.ok_or(RingError::Invalid)?);
            let hp = HpCache::global().get_or_compute(raw, &point.to_affine())?;
            let hp_key = hp_key(raw);
            let l = g.mul(&s) + self.mul(raw, &point, &c);
            let r = self.mul(&hp_key, &hp, &s) + self.mul(&image_bytes, &image, &c);
            let mut affine = [AffinePoint::IDENTITY; 2];
            ProjectivePoint::batch_normalize(&[l, r], &mut affine);
            let mut input = [0u8; 32 + 33 + 33];
            input[..32].copy_from_slice(message);
            input[32..65].copy_from_slice(&affine[0].to_bytes());
            input[65..].copy_from_slice(&affine[1].to_bytes());
            c = hash_to_scalar(&input).map_err(|_| RingError::Invalid)?;
        }
        if c != c0 {
            return Err(RingError::Invalid);
        }
        // Valid: count the keys' use and build tables for the hot ones (outside the lock).
        let mut keys: Vec<([u8; 33], ProjectivePoint)> = Vec::new();
        for raw in ring {
            if let Some(p) = Option::<AffinePoint>::from(AffinePoint::from_bytes(&(*raw).into())) {
                keys.push((*raw, ProjectivePoint::from(p)));
                if let Ok(hp) = HpCache::global().get_or_compute(raw, &p) {
                    keys.push((hp_key(raw), hp));
                }
            }
        }
        keys.push((image_bytes, image));
        let hot: Vec<([u8; 33], ProjectivePoint)> = {
            let mut state = self.state();
            if state.uses.len() > MAX_COUNTED {
                state.uses.clear();
            }
            keys.into_iter()
                .filter(|(k, _)| {
                    if state.tables.contains_key(k) {
                        return false;
                    }
                    let count = state.uses.entry(*k).or_insert(0);
                    *count += 1;
                    *count == HOT_AFTER
                })
                .collect()
        };
        for (key, point) in hot {
            let table = Arc::new(Table::new(point));
            let mut state = self.state();
            if state.tables.len() >= MAX_TABLES {
                state.tables.clear();
            }
            state.tables.insert(key, table);
        }
        Ok(())
    }
}

/// Cache key of H_p(P): P's encoding with a prefix byte no compressed point has.
fn hp_key(raw: &[u8; 33]) -> [u8; 33] {
    let mut key = *raw;
    key[0] ^= 0x80;
    key
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::address;

    #[test]
    fn agrees_with_the_reference_verifier() {
        let keys: Vec<_> = (0..3u8)
            .map(|i| address::signing_key_from_hex(&hex::encode(crate::protocol::sha256(&[i]))).unwrap())
            .collect();
        let ring: Vec<[u8; 33]> = keys
            .iter()
            .map(|k| address::compressed_public_key(k.verifying_key()))
            .collect();
        let fast = FastRing::default();
        for round in 0..(HOT_AFTER as usize + 4) {
            let message = crate::protocol::sha256(&round.to_be_bytes());
            let secret = k256::Scalar::reduce(&keys[1].to_bytes());
            let members = if round % 2 == 0 { &ring[..2] } else { &ring[..] };
            let bytes = RingSignature::sign(members, &message, &secret).unwrap().to_bytes();
            let sig = RingSignature::from_bytes(&bytes).unwrap();
            assert!(sig.verify(&message).is_ok());
            assert!(fast.verify(&bytes, &sig, &message).is_ok(), "round {round}");
            // Tampered: c0, an s_i, the message.
            for flip in [5usize, 69 + 7, 69 + 65 + 3] {
                let mut bad = bytes.clone();
                bad[flip] ^= 1;
                if let Ok(sig) = RingSignature::from_bytes(&bad) {
                    assert_eq!(sig.verify(&message).is_ok(), fast.verify(&bad, &sig, &message).is_ok());
                    assert!(fast.verify(&bad, &sig, &message).is_err());
                }
            }
            let other = crate::protocol::sha256(b"other");
            assert!(fast.verify(&bytes, &sig, &other).is_err());
        }
        // Tables were built for the hot keys (the two members always present, their H_p, the key image).
        assert!(fast.state().tables.len() >= 5, "{}", fast.state().tables.len());
    }

    #[test]
    fn table_multiplication_matches_scalar_multiplication() {
        let q = ProjectivePoint::GENERATOR * Scalar::from(7u64);
        let table = Table::new(q);
        for k in [Scalar::ZERO, Scalar::ONE, Scalar::from(0xdead_beefu64), -Scalar::ONE] {
            assert_eq!(table.mul(&k), q * k);
        }
    }
}
