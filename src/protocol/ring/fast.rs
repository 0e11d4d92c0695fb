//! Ring signature verification with fixed-base tables for hot keys (the relayer's largest CPU cost).
//!
//! The LSAG verification of §2.5 computes, per ring member, `L = s·G + c·P` and `R = s·H_p(P) + c·I`. Across
//! requests, G is constant, P and H_p(P) are ring members (an application and its gateways: a small, hot set),
//! and the key image I is fixed per signer (a gateway signs all its relays with the same I). For such points a
//! precomputed table of `j·256^w·Q` (w < 32, 1 ≤ j ≤ 128, plus `256^32·Q`; ~320 KiB each) and the scalar in
//! signed base-256 digits (each in −128..=127) turn a scalar multiplication into at most 33 mixed additions with
//! no doublings (the variable-base path does 256 doublings and ~50 additions).
//!
//! Everything verified is public (signature, ring keys, message), so the arithmetic is variable-time (the
//! private `jacobian` module; nothing here may be reused on secrets): table entries are affine field-element pairs;
//! each of L and R is one sum of the entries both its products select (≤ 66 terms), added into one Jacobian
//! accumulator (incomplete mixed additions, 8M + 3S, special cases branched on; no addition of two products);
//! L and R are converted to affine together with one variable-time inversion, then compressed and hashed (the
//! challenge of §2.5). This replaced k256's complete projective additions and constant-time `batch_normalize`:
//! ~30 % less time per verification.
//!
//! The signature is taken as [`RawRingSignature`]: a point with a table is never decompressed (it was when its
//! table was built; same bytes, same point), so a verification with warm tables does no square roots at all.
//! Tables are built only for keys seen in [`HOT_AFTER`] successful verifications (so a flood of one-off keys
//! never costs table builds), and at most [`MAX_TABLES`] are kept (the least recently used one is dropped;
//! memory stays below ~21 MiB). A key without a table takes the variable-base path (k256's constant-time
//! multiplication, its product then added to the accumulator). Results are identical to
//! [`crate::protocol::ring::RingSignature::verify`] (differential tests below), which remains the reference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use k256::elliptic_curve::group::Curve as _;
use k256::{AffinePoint, ProjectivePoint, Scalar};

use super::jacobian::{self, Affine, Terms};
use super::{HpCache, RawRingSignature, RingError, decompress, hash_to_scalar};

/// Successful verifications a key must take part in before it gets a table.
pub const HOT_AFTER: u32 = 8;
/// Tables kept at most.
pub const MAX_TABLES: usize = 64;
/// Keys whose use is counted at most (the counters are cleared when full).
const MAX_COUNTED: usize = 65_536;
/// Base-256 windows of a 256-bit scalar.
const WINDOWS: usize = 32;
/// Table entries per window: |digit| ≤ 128.
const PER_WINDOW: usize = 128;

/// `j·256^w·Q` for w in 0..32 and j in 1..=128 at index `w·128 + j − 1`, then `256^32·Q` (the final carry);
/// affine, so each lookup is a mixed addition. No entry is the identity: Q ≠ O has prime order n and every
/// multiplier (`j·256^w` ≤ 2^255, and `2^256 mod n`) is nonzero mod n.
struct Table(Box<[Affine]>);

impl Table {
    /// Built with k256 (rare: once per hot key); `None` for the identity (which no decompressed point or H_p is).
    fn new(q: ProjectivePoint) -> Option<Self> {
        let mut points = Vec::with_capacity(WINDOWS * PER_WINDOW + 1);
        let mut base = q;
        for _ in 0..WINDOWS {
            let mut acc = base;
            points.push(acc);
            for _ in 1..PER_WINDOW {
                acc += base;
                points.push(acc);
            }
            base = acc + acc; // 2·128·base = 256·base
        }
        points.push(base);
        let mut affine = vec![AffinePoint::IDENTITY; points.len()];
        ProjectivePoint::batch_normalize(&points, &mut affine);
        let entries: Option<Box<[Affine]>> = affine.iter().map(Affine::from_k256).collect();
        entries.map(Self)
    }

    /// Appends the terms of `k·Q` to `terms`: k's little-endian bytes recoded as signed digits
    /// `d_w ∈ [−128, 127]` (a byte ≥ 128 becomes `byte − 256` and carries one into the next window), one entry
    /// `±|d_w|·256^w·Q` per nonzero digit (negation is free in affine form), at most 33; `None` if `terms` is full.
    fn push_terms(&self, k: &Scalar, terms: &mut Terms) -> Option<()> {
        let bytes = k.to_bytes();
        let mut carry = 0i16;
        for w in 0..WINDOWS {
            let v = i16::from(bytes[31 - w]) + carry;
            let digit = if v >= 128 {
                carry = 1;
                v - 256
            } else {
                carry = 0;
                v
            };
            if digit != 0 {
                let index = w * PER_WINDOW + usize::from(digit.unsigned_abs()) - 1;
                terms.push(self.0.get(index)?, digit < 0)?;
            }
        }
        if carry != 0 {
            terms.push(self.0.get(WINDOWS * PER_WINDOW)?, false)?;
        }
        Some(())
    }
}

struct Entry {
    table: Arc<Table>,
    last_used: u64,
}

#[derive(Default)]
struct State {
    tables: HashMap<[u8; 33], Entry>,
    uses: HashMap<[u8; 33], u32>,
    clock: u64,
}

impl State {
    fn lookup(&mut self, key: &[u8; 33]) -> Option<Arc<Table>> {
        self.clock += 1;
        let clock = self.clock;
        self.tables.get_mut(key).map(|e| {
            e.last_used = clock;
            Arc::clone(&e.table)
        })
    }

    fn insert(&mut self, key: [u8; 33], table: Arc<Table>) {
        if self.tables.len() >= MAX_TABLES
            && let Some(oldest) = self.tables.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k)
        {
            self.tables.remove(&oldest);
        }
        self.clock += 1;
        let last_used = self.clock;
        self.tables.insert(key, Entry { table, last_used });
    }
}

/// The verifier (one per relayer; cheap to share).
#[derive(Default)]
pub struct FastRing {
    state: Mutex<State>,
}

/// The generator's table (`None` is impossible: G is not the identity; the caller then falls back to k256).
fn generator_table() -> Option<&'static Table> {
    static G: OnceLock<Option<Table>> = OnceLock::new();
    G.get_or_init(|| Table::new(ProjectivePoint::GENERATOR)).as_ref()
}

/// A point of the signature (or G): its table, or (no table) its decompressed value.
enum Base<'a> {
    Table(&'a Table),
    Point(ProjectivePoint),
}

impl Base<'_> {
    /// Appends the terms of `k·self` to `terms` (with a table, one per nonzero digit; without, the product
    /// computed by k256, unless it is the identity). Never full: `terms` takes two products of ≤ 33 terms.
    fn push_terms(&self, k: &Scalar, terms: &mut Terms) -> Result<(), RingError> {
        let pushed = match self {
            Self::Table(t) => t.push_terms(k, terms),
            Self::Point(p) => match Affine::from_k256(&(p * k).to_affine()) {
                Some(product) => terms.push(&product, false),
                None => Some(()), // the identity: nothing to add
            },
        };
        pushed.ok_or(RingError::Invalid)
    }
}

impl FastRing {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Verifies `signature` over `message`, exactly as [`crate::protocol::ring::RingSignature::verify`] does on
    /// the same bytes (including refusing a point that is not on the curve).
    pub fn verify(&self, signature: &RawRingSignature, message: &[u8; 32]) -> Result<(), RingError> {
        let n = signature.ring.len();
        if n == 0 || signature.s.len() != n {
            return Err(RingError::Invalid);
        }
        // Every table this verification can use, under one lock.
        let (image_table, member_tables) = {
            let mut state = self.state();
            let image = state.lookup(&signature.key_image);
            let members: Vec<_> = signature
                .ring
                .iter()
                .map(|raw| (state.lookup(raw), state.lookup(&hp_key(raw))))
                .collect();
            (image, members)
        };
        let image = match image_table.as_deref() {
            Some(t) => Base::Table(t),
            None => Base::Point(ProjectivePoint::from(decompress(&signature.key_image, 0)?)),
        };
        let g = generator_table().map_or(Base::Point(ProjectivePoint::GENERATOR), Base::Table);
        let mut c = signature.c0;
        for (i, ((raw, s), (p_table, hp_table))) in
            signature.ring.iter().zip(&signature.s).zip(&member_tables).enumerate()
        {
            let (p, hp) = match (p_table.as_deref(), hp_table.as_deref()) {
                (Some(p), Some(hp)) => (Base::Table(p), Base::Table(hp)),
                (p_table, hp_table) => {
                    let point = decompress(raw, i + 1)?;
                    let p = p_table.map_or(Base::Point(ProjectivePoint::from(point)), Base::Table);
                    let hp = match hp_table {
                        Some(t) => Base::Table(t),
                        None => Base::Point(HpCache::global().get_or_compute(raw, &point)?),
                    };
                    (p, hp)
                }
            };
            // L = s·G + c·P and R = s·H_p(P) + c·I (§2.5), each one sum of affine terms (≤ 66).
            let (mut l_terms, mut r_terms) = (Terms::new(), Terms::new());
            g.push_terms(s, &mut l_terms)?;
            p.push_terms(&c, &mut l_terms)?;
            hp.push_terms(s, &mut r_terms)?;
            image.push_terms(&c, &mut r_terms)?;
            let (l, r) = (l_terms.sum(), r_terms.sum());
            // Z ≠ 0 for every finite point, so the inversion cannot fail.
            let [l_bytes, r_bytes] = jacobian::compress(&[l, r]).ok_or(RingError::Invalid)?;
            // challenge(m, L, R) = H_s(m ‖ compress(L) ‖ compress(R)) (§2.5).
            let mut input = [0u8; 32 + 33 + 33];
            input[..32].copy_from_slice(message);
            input[32..65].copy_from_slice(&l_bytes);
            input[65..].copy_from_slice(&r_bytes);
            c = hash_to_scalar(&input).map_err(|_| RingError::Invalid)?;
        }
        if c != signature.c0 {
            return Err(RingError::Invalid);
        }
        self.count_use(signature);
        Ok(())
    }

    /// After a successful verification: counts the use of each key without a table and builds the tables of
    /// those that just became hot (outside the lock; every point here was decompressed successfully above).
    fn count_use(&self, signature: &RawRingSignature) {
        let mut keys: Vec<([u8; 33], Option<[u8; 33]>)> = signature
            .ring
            .iter()
            .flat_map(|raw| [(*raw, None), (hp_key(raw), Some(*raw))])
            .collect();
        keys.push((signature.key_image, None));
        let hot: Vec<([u8; 33], Option<[u8; 33]>)> = {
            let mut state = self.state();
            if state.uses.len() > MAX_COUNTED {
                state.uses.clear();
            }
            keys.into_iter()
                .filter(|(key, _)| {
                    if state.tables.contains_key(key) {
                        return false;
                    }
                    let count = state.uses.entry(*key).or_insert(0);
                    *count += 1;
                    *count == HOT_AFTER
                })
                .collect()
        };
        for (key, hp_of) in hot {
            let point = match hp_of {
                None => decompress(&key, 0).map(ProjectivePoint::from),
                Some(raw) => decompress(&raw, 0).and_then(|p| HpCache::global().get_or_compute(&raw, &p)),
            };
            if let Some(table) = point.ok().and_then(Table::new) {
                let table = Arc::new(table);
                let mut state = self.state();
                state.uses.remove(&key);
                state.insert(key, table);
            }
        }
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
    use k256::elliptic_curve::group::GroupEncoding as _;
    use k256::elliptic_curve::ops::Reduce as _;
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::address;
    use crate::protocol::ring::{RingSignature, challenge, compress, hash_to_curve};

    /// `Σ k_i·Q_i` by tables, compressed.
    fn table_sum(products: &[(&Table, Scalar)]) -> [u8; 33] {
        let mut terms = Terms::new();
        for (table, k) in products {
            table.push_terms(k, &mut terms).unwrap();
        }
        jacobian::compress(&[terms.sum()]).unwrap()[0]
    }

    /// `k·Q` by `table`, compressed.
    fn table_mul(table: &Table, k: &Scalar) -> [u8; 33] {
        table_sum(&[(table, *k)])
    }

    fn scalar_from_bytes(bytes: [u8; 32]) -> Scalar {
        Scalar::reduce(&k256::FieldBytes::from(bytes))
    }

    /// Builds the tables of every key of `bytes` (members, their H_p, the key image) at once, as if hot.
    fn warm(fast: &FastRing, bytes: &[u8]) {
        let sig = RingSignature::from_bytes(bytes).unwrap();
        let mut state = fast.state();
        for raw in sig.ring() {
            let point = decompress(raw, 0).unwrap();
            state.insert(*raw, Arc::new(Table::new(ProjectivePoint::from(point)).unwrap()));
            state.insert(hp_key(raw), Arc::new(Table::new(hash_to_curve(raw).unwrap()).unwrap()));
        }
        let image = decompress(&sig.key_image(), 0).unwrap();
        state.insert(
            sig.key_image(),
            Arc::new(Table::new(ProjectivePoint::from(image)).unwrap()),
        );
    }

    fn fast_verify(fast: &FastRing, bytes: &[u8], message: &[u8; 32]) -> Result<(), RingError> {
        fast.verify(&RawRingSignature::parse(bytes)?, message)
    }

    fn reference_verify(bytes: &[u8], message: &[u8; 32]) -> Result<(), RingError> {
        RingSignature::from_bytes(bytes)?.verify(message)
    }

    /// `n` signing keys derived from `seed` and their compressed public keys.
    fn keys_and_ring(n: u8, seed: u8) -> (Vec<k256::ecdsa::SigningKey>, Vec<[u8; 33]>) {
        let keys: Vec<_> = (0..n)
            .map(|i| address::signing_key_from_hex(&hex::encode(crate::protocol::sha256(&[i, seed]))).unwrap())
            .collect();
        let ring = keys
            .iter()
            .map(|k| address::compressed_public_key(k.verifying_key()))
            .collect();
        (keys, ring)
    }

    #[test]
    fn agrees_with_the_reference_verifier() {
        let (keys, ring) = keys_and_ring(3, 0);
        let fast = FastRing::default();
        // Cold (no tables), then hot (tables for members, their H_p and the key image).
        for round in 0..(HOT_AFTER as usize + 4) {
            let message = crate::protocol::sha256(&round.to_be_bytes());
            let secret = k256::Scalar::reduce(&keys[1].to_bytes());
            let members = if round % 2 == 0 { &ring[..2] } else { &ring[..] };
            let bytes = RingSignature::sign(members, &message, &secret).unwrap().to_bytes();
            assert!(reference_verify(&bytes, &message).is_ok());
            assert!(fast_verify(&fast, &bytes, &message).is_ok(), "round {round}");
            // Tampered: every byte of c0, the key image, an s_i and a P_i, one bit each.
            for flip in (4..bytes.len()).step_by(3) {
                let mut bad = bytes.clone();
                bad[flip] ^= 1 << (flip % 8);
                assert_eq!(
                    reference_verify(&bad, &message).is_ok(),
                    fast_verify(&fast, &bad, &message).is_ok(),
                    "round {round} flip {flip}"
                );
            }
            let other = crate::protocol::sha256(b"other");
            assert!(fast_verify(&fast, &bytes, &other).is_err());
        }
        // Tables were built for the hot keys (the two members always present, their H_p, the key image).
        assert!(fast.state().tables.len() >= 5, "{}", fast.state().tables.len());
    }

    #[test]
    fn a_point_off_the_curve_is_refused_cold_and_hot() {
        let (keys, ring) = keys_and_ring(2, 9);
        let fast = FastRing::default();
        let secret = k256::Scalar::reduce(&keys[0].to_bytes());
        // An x with no curve point: 0x02 ‖ 0x00…05 (x³ + 7 = 132 is not a square mod p).
        let mut off_curve = [0u8; 33];
        off_curve[0] = 0x02;
        off_curve[32] = 5;
        assert!(Option::<AffinePoint>::from(AffinePoint::from_bytes(&off_curve.into())).is_none());
        for round in 0..(HOT_AFTER as usize + 2) {
            let message = crate::protocol::sha256(&[round as u8]);
            let bytes = RingSignature::sign(&ring, &message, &secret).unwrap().to_bytes();
            assert!(fast_verify(&fast, &bytes, &message).is_ok());
            let mut bad_member = bytes.clone();
            bad_member[69 + 65 + 32..69 + 65 * 2].copy_from_slice(&off_curve);
            assert!(matches!(
                fast_verify(&fast, &bad_member, &message),
                Err(RingError::BadPoint { index: 2 })
            ));
            let mut bad_image = bytes.clone();
            bad_image[36..69].copy_from_slice(&off_curve);
            assert!(matches!(
                fast_verify(&fast, &bad_image, &message),
                Err(RingError::BadPoint { index: 0 })
            ));
        }
    }

    #[test]
    fn table_multiplication_matches_scalar_multiplication() {
        let q = ProjectivePoint::GENERATOR * Scalar::from(7u64);
        let table = Table::new(q).unwrap();
        let mut scalars = vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(0x80u64),
            Scalar::from(0xffu64),
            Scalar::from(0x7fffu64),
            Scalar::from(0xdead_beefu64),
            -Scalar::ONE,
            -Scalar::from(0x80u64),
        ];
        // Every byte 0xff or 0x80 (carry chains through all windows), and hashes.
        scalars.push(Scalar::reduce(&k256::FieldBytes::from([0xffu8; 32])));
        scalars.push(Scalar::reduce(&k256::FieldBytes::from([0x80u8; 32])));
        for i in 0..64u8 {
            scalars.push(Scalar::reduce(&k256::FieldBytes::from(crate::protocol::sha256(&[i]))));
        }
        for k in scalars {
            assert_eq!(table_mul(&table, &k), compress(&(q * k)), "{:?}", k.to_bytes());
        }
    }

    #[test]
    fn least_recently_used_table_is_dropped_when_full() {
        let mut state = State::default();
        let table = Arc::new(Table(Box::new([])));
        for i in 0..MAX_TABLES {
            state.insert([i as u8; 33], Arc::clone(&table));
        }
        assert!(state.lookup(&[0u8; 33]).is_some());
        state.insert([0xee; 33], Arc::clone(&table));
        assert_eq!(state.tables.len(), MAX_TABLES);
        assert!(state.lookup(&[0u8; 33]).is_some(), "recently used kept");
        assert!(state.lookup(&[1u8; 33]).is_none(), "least recently used dropped");
    }

    /// Scalars whose digits make the accumulator meet its own point or its opposite when two multiplications
    /// share one accumulator (as L = s·G + c·P and R = s·H_p(P) + c·I do).
    fn special_scalars() -> Vec<Scalar> {
        let mut scalars = vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(2u64),
            Scalar::from(0x7fu64),
            Scalar::from(0x80u64),  // digits −128, +1: partial sums −128·Q then 128·Q
            Scalar::from(0x100u64), // one digit in window 1
            Scalar::from(0x8080u64),
            -Scalar::ONE, // n − 1
            -Scalar::from(0x80u64),
            -Scalar::from(0x100u64),
            scalar_from_bytes([0xff; 32]),
            scalar_from_bytes([0x80; 32]),
        ];
        for i in 0..6u8 {
            scalars.push(scalar_from_bytes(crate::protocol::sha256(&[b'k', i])));
        }
        scalars
    }

    #[test]
    fn one_accumulator_for_two_products_matches_k256_in_every_special_case() {
        // The same table twice: with s = c = 0x100 the second product's only addition meets the accumulator's own
        // point (P + P: doubling); with s = c = 0x80 (digits −128, +1) the accumulator goes −128·Q, 128·Q, then
        // 128·Q + (−128·Q) = identity (P + (−P)) and restarts from it; with c = n − s the sum is the identity, so
        // its last addition is P + (−P). Tables of Q and 3·Q: c = −s/3 cancels across the two tables.
        let q = ProjectivePoint::GENERATOR * Scalar::from(5u64);
        let q3 = q * Scalar::from(3u64);
        let (tq, tq3) = (Table::new(q).unwrap(), Table::new(q3).unwrap());
        let scalars = special_scalars();
        let mut pairs = Vec::new();
        for s in &scalars {
            for c in &scalars {
                pairs.push((*s, *c));
            }
            pairs.push((*s, -*s));
            pairs.push((*s, *s));
        }
        for (s, c) in pairs {
            assert_eq!(
                table_sum(&[(&tq, s), (&tq, c)]),
                compress(&(q * (s + c))),
                "{s:?} {c:?}"
            );
            assert_eq!(
                table_sum(&[(&tq, s), (&tq3, c)]),
                compress(&(q * s + q3 * c)),
                "{s:?} {c:?}"
            );
            // s·Q + c·(3Q) with c = −s/3: the identity.
            let c = -s * Scalar::from(3u64).invert().unwrap();
            assert_eq!(table_sum(&[(&tq, s), (&tq3, c)]), jacobian::IDENTITY_BYTES, "{s:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn table_multiplication_matches_k256_on_random_scalars(k in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            static TABLE: OnceLock<(ProjectivePoint, Table)> = OnceLock::new();
            let (q, table) = TABLE.get_or_init(|| {
                let q = ProjectivePoint::GENERATOR * Scalar::from(0x1234_5678u64);
                (q, Table::new(q).unwrap())
            });
            let (k, c) = (scalar_from_bytes(k), scalar_from_bytes(c));
            prop_assert_eq!(table_mul(table, &k), compress(&(*q * k)));
            // Two products in one sum, as L and R are computed.
            prop_assert_eq!(
                table_sum(&[(generator_table().unwrap(), k), (table, c)]),
                compress(&(ProjectivePoint::GENERATOR * k + *q * c))
            );
        }
    }

    /// A valid signature over ring `[a, b]` (signer a) whose nonce is 0 (so the signer's L and R are the
    /// identity) and, with `decoy_l_identity`, whose decoy s is −c·b (so the decoy's L is the identity too).
    fn signature_with_identities(
        ring: &[[u8; 33]],
        secrets: &[Scalar],
        message: &[u8; 32],
        decoy_l_identity: bool,
    ) -> Vec<u8> {
        // The challenge after the signer (index 0) with nonce u = 0: H_s(m ‖ O ‖ O).
        let c1 = challenge(message, &ProjectivePoint::IDENTITY, &ProjectivePoint::IDENTITY).unwrap();
        let s1 = if decoy_l_identity {
            -c1 * secrets[1]
        } else {
            Scalar::from(99u64)
        };
        let sig = RingSignature::sign_with(ring, message, &secrets[0], &Scalar::ZERO, &[None, Some(s1)]).unwrap();
        sig.to_bytes()
    }

    #[test]
    fn identity_l_and_r_hash_exactly_as_the_reference_cold_and_hot() {
        let (keys, ring) = keys_and_ring(2, 3);
        let secrets: Vec<Scalar> = keys.iter().map(|k| Scalar::reduce(&k.to_bytes())).collect();
        // [a, b]: signer's L and R identity, decoy's L identity (R not). [a, a]: every L and R identity.
        let duplicate = [ring[0], ring[0]];
        let same_secrets = [secrets[0], secrets[0]];
        for (ring, secrets, decoy) in [
            (&ring[..], &secrets[..], false),
            (&ring[..], &secrets[..], true),
            (&duplicate[..], &same_secrets[..], true),
        ] {
            let fast = FastRing::default();
            for round in 0..3u8 {
                let message = crate::protocol::sha256(&[b'i', round]);
                let bytes = signature_with_identities(ring, secrets, &message, decoy);
                assert!(reference_verify(&bytes, &message).is_ok());
                assert!(fast_verify(&fast, &bytes, &message).is_ok(), "cold, decoy {decoy}");
                let mut bad = bytes.clone();
                bad[10] ^= 1;
                assert!(fast_verify(&fast, &bad, &message).is_err());
                warm(&fast, &bytes);
                assert!(fast_verify(&fast, &bytes, &message).is_ok(), "hot, decoy {decoy}");
                assert!(fast_verify(&fast, &bad, &message).is_err());
            }
        }
        // The identity's encoding hashed by the reference is what the fast path writes.
        assert_eq!(compress(&ProjectivePoint::IDENTITY), jacobian::IDENTITY_BYTES);
    }
}
