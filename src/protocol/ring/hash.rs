//! The two hashes of the ring signature (§2.5) and the H_p cache.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use k256::elliptic_curve::bigint::{ArrayEncoding as _, U256, U512};
use k256::elliptic_curve::ops::Reduce as _;
use k256::elliptic_curve::point::DecompressPoint as _;
use k256::elliptic_curve::subtle::Choice;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha3::Digest as _;

use super::RingError;

/// H_s with the go-dleq left-align quirk (§2.5): v = SHA3-512(input) mod n; v's minimal big-endian bytes are
/// right-padded with zeros to 32 bytes (v·256^(32−len)); the result must be < n (else Go panics: an error here).
pub fn hash_to_scalar(input: &[u8]) -> Result<Scalar, RingError> {
    let digest = sha3::Sha3_512::digest(input);
    let v = Scalar::reduce(&U512::from_be_slice(&digest));
    let canonical = v.to_bytes();
    let leading_zeros = canonical.iter().take_while(|b| **b == 0).count();
    if leading_zeros == 0 {
        return Ok(v);
    }
    let mut aligned = FieldBytes::default();
    aligned[..32 - leading_zeros].copy_from_slice(&canonical[leading_zeros..]);
    let scalar: Option<Scalar> = k256::elliptic_curve::PrimeField::from_repr(aligned).into();
    scalar.ok_or(RingError::ChallengeOutOfRange)
}

/// The secp256k1 field modulus p.
const FIELD_MODULUS: U256 = U256::from_be_hex("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f");

/// H_p (§2.5): h = SHA3-256(compressed P); up to 128 times: X = int(h) mod p; if X³+7 is a square, return (X, even
/// Y); else h = SHA3-256(h).
pub fn hash_to_curve(compressed: &[u8; 33]) -> Result<ProjectivePoint, RingError> {
    let mut h: [u8; 32] = sha3::Sha3_256::digest(compressed).into();
    for _ in 0..128 {
        // X = int(h) mod p: a 256-bit value is below 2p, so one conditional subtraction reduces it.
        let mut x = U256::from_be_slice(&h);
        if x >= FIELD_MODULUS {
            x = x.wrapping_sub(&FIELD_MODULUS);
        }
        let x_bytes = FieldBytes::from(x.to_be_byte_array());
        let point: Option<AffinePoint> = AffinePoint::decompress(&x_bytes, Choice::from(0)).into();
        if let Some(point) = point {
            return Ok(ProjectivePoint::from(point));
        }
        h = sha3::Sha3_256::digest(h).into();
    }
    Err(RingError::HashToCurve)
}

/// A bounded, thread-safe cache of H_p per ring member key. Ring members repeat across relays (an application
/// and its few gateways), so after warm-up verification never re-hashes to the curve.
#[derive(Debug)]
pub struct HpCache {
    entries: RwLock<HashMap<[u8; 33], ProjectivePoint>>,
    capacity: usize,
}

impl HpCache {
    /// A cache holding at most `capacity` keys (cleared when full: keys of active apps re-enter at once).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The process-wide cache (100 000 keys ≈ 13 MB).
    pub fn global() -> &'static HpCache {
        static GLOBAL: OnceLock<HpCache> = OnceLock::new();
        GLOBAL.get_or_init(|| HpCache::new(100_000))
    }

    /// H_p of `raw` (whose decoded point is `_point`), from the cache or computed and inserted.
    pub fn get_or_compute(&self, raw: &[u8; 33], _point: &AffinePoint) -> Result<ProjectivePoint, RingError> {
        let cached = match self.entries.read() {
            Ok(map) => map.get(raw).copied(),
            Err(poisoned) => poisoned.into_inner().get(raw).copied(),
        };
        if let Some(hp) = cached {
            return Ok(hp);
        }
        let hp = hash_to_curve(raw)?;
        let mut map = match self.entries.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(*raw, hp);
        Ok(hp)
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        match self.entries.read() {
            Ok(map) => map.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
