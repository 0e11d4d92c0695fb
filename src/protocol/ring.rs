//! LSAG ring signatures over secp256k1, byte-exact with poktroll's ring-go v0.2.0 + go-dleq (§2.4–2.5),
//! implemented from the spec (the Go libraries are LGPL; nothing is translated from them).
//!
//! Gateways and applications sign relay requests with a ring made of the application's key and its delegated
//! gateways' keys; the chain and the relay miner check (1) the LSAG equations over the request signable hash and
//! (2) that every key embedded in the signature belongs to the application's expected ring (set membership only:
//! order, size and duplicates are not checked, §2.4). Two quirks matter for money:
//! - H_s left-aligns short scalars (go-dleq): a canonical implementation is rejected for ~0.78 % of relays;
//! - H_p re-hashes the digest on failure and picks the even Y.
//!
//! Verification is the relayer's hot path: H_p of each ring member is cached ([`HpCache`]), and each round is one
//! variable-time two-point linear combination (all inputs are public).

pub mod fast;
mod hash;
mod jacobian;
mod membership;

use k256::elliptic_curve::group::GroupEncoding as _;
use k256::elliptic_curve::ops::{LinearCombination as _, Reduce as _};
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

pub use hash::{HpCache, hash_to_curve, hash_to_scalar};
pub use membership::{
    PLACEHOLDER_SECRET, expected_ring_addresses, placeholder_address, placeholder_public_key, placeholder_signing_key,
    verify_membership,
};

/// Serialized size of one ring member: its scalar s_i (32) and compressed key P_i (33).
const MEMBER_BYTES: usize = 32 + 33;
/// Serialized size of the header: u32 ring size, c0 (32), key image (33).
const HEADER_BYTES: usize = 4 + 32 + 33;

/// Why a ring signature was refused or could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Fewer bytes than the header or than the ring size announces.
    #[error("ring signature truncated: {len} bytes, need {needed}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// A ring of size 0 (Go would panic).
    #[error("ring signature has an empty ring")]
    EmptyRing,
    /// A point is not a valid 33-byte compressed secp256k1 point.
    #[error("ring signature point {index} is not a valid compressed point")]
    BadPoint {
        /// 0 = key image, i + 1 = ring member i.
        index: usize,
    },
    /// The LSAG equations do not close.
    #[error("ring signature does not verify")]
    Invalid,
    /// Signing needs at least two ring members.
    #[error("ring signing needs at least 2 members, got {0}")]
    RingTooSmall(usize),
    /// The signing key's public key is not in the ring.
    #[error("the signing key is not a member of the ring")]
    SignerNotInRing,
    /// The caller-provided randomness has the wrong shape.
    #[error("signing randomness must give one s_i per ring member except the signer")]
    BadRandomness,
    /// H_p found no point after 128 tries (unreachable in practice).
    #[error("hash to curve failed after 128 tries")]
    HashToCurve,
    /// H_s produced a left-aligned value ≥ n (Go panics; probability ≈ 2⁻¹²⁸).
    #[error("challenge hash out of range")]
    ChallengeOutOfRange,
    /// A ring member is not in the application's expected ring (§2.4).
    #[error("ring member {0} is not in the application's ring")]
    NotAMember(String),
    /// An address of the application's expected ring has no public key on chain (§2.4 step 4): the ring cannot
    /// be built, so no signature over it is accepted (poktroll's ring client fails the whole ring).
    #[error("ring address {0} has no public key on chain")]
    MemberWithoutPublicKey(String),
}

/// A decoded LSAG signature: challenge c0, key image, and per-member (s_i, P_i).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSignature {
    c0: Scalar,
    key_image: AffinePoint,
    key_image_bytes: [u8; 33],
    s: Vec<Scalar>,
    ring: Vec<AffinePoint>,
    ring_bytes: Vec<[u8; 33]>,
}

fn parse_point(bytes: &[u8], index: usize) -> Result<(AffinePoint, [u8; 33]), RingError> {
    let array = point_bytes(bytes, index)?;
    Ok((decompress(&array, index)?, array))
}

fn reduce_scalar(bytes: &[u8]) -> Scalar {
    let mut array = FieldBytes::default();
    array.copy_from_slice(bytes);
    Scalar::reduce(&array)
}

fn compress(point: &ProjectivePoint) -> [u8; 33] {
    let mut out = [0u8; 33];
    out.copy_from_slice(&point.to_affine().to_bytes());
    out
}

/// challenge(m, L, R) = H_s(m ‖ compress(L) ‖ compress(R)) (§2.5).
fn challenge(message: &[u8; 32], l: &ProjectivePoint, r: &ProjectivePoint) -> Result<Scalar, RingError> {
    let mut input = [0u8; 32 + 33 + 33];
    input[..32].copy_from_slice(message);
    input[32..65].copy_from_slice(&compress(l));
    input[65..].copy_from_slice(&compress(r));
    hash_to_scalar(&input)
}

/// A ring signature split into its fields without decompressing any point: what the relayer's hot path parses
/// ([`fast::FastRing`] decompresses only the points it has no table for). Same framing rules as
/// [`RingSignature::from_bytes`]; points are only checked to carry a compressed-point prefix, their validity is
/// checked when they are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRingSignature {
    /// c0, reduced mod n.
    pub c0: Scalar,
    /// The key image's 33-byte encoding.
    pub key_image: [u8; 33],
    /// s_i, reduced mod n.
    pub s: Vec<Scalar>,
    /// P_i's 33-byte encodings, in signature order (duplicates kept).
    pub ring: Vec<[u8; 33]>,
}

fn point_bytes(bytes: &[u8], index: usize) -> Result<[u8; 33], RingError> {
    let array: [u8; 33] = bytes.try_into().map_err(|_| RingError::BadPoint { index })?;
    // Only SEC1 compressed encodings are points on the wire (the all-zero identity encoding is not).
    if array[0] != 0x02 && array[0] != 0x03 {
        return Err(RingError::BadPoint { index });
    }
    Ok(array)
}

impl RawRingSignature {
    /// Splits `bytes` (§2.5 framing: `u32_be(n) ‖ c0 ‖ I ‖ (s_i ‖ P_i)*`, trailing bytes ignored, n = 0 refused);
    /// never panics or over-allocates.
    pub fn parse(bytes: &[u8]) -> Result<Self, RingError> {
        let truncated = |needed| RingError::Truncated {
            len: bytes.len(),
            needed,
        };
        let header = bytes.get(..HEADER_BYTES).ok_or_else(|| truncated(HEADER_BYTES))?;
        let n = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if n == 0 {
            return Err(RingError::EmptyRing);
        }
        let needed = n
            .checked_mul(MEMBER_BYTES)
            .and_then(|m| m.checked_add(HEADER_BYTES))
            .unwrap_or(usize::MAX);
        let body = bytes.get(HEADER_BYTES..needed).ok_or_else(|| truncated(needed))?;
        let key_image = point_bytes(&header[36..69], 0)?;
        let mut s = Vec::with_capacity(n);
        let mut ring = Vec::with_capacity(n);
        for (i, member) in body.chunks_exact(MEMBER_BYTES).enumerate() {
            s.push(reduce_scalar(&member[..32]));
            ring.push(point_bytes(&member[32..], i + 1)?);
        }
        Ok(Self {
            c0: reduce_scalar(&header[4..36]),
            key_image,
            s,
            ring,
        })
    }
}

/// Decompresses a point whose prefix [`point_bytes`] already checked.
fn decompress(raw: &[u8; 33], index: usize) -> Result<AffinePoint, RingError> {
    Option::<AffinePoint>::from(AffinePoint::from_bytes(&(*raw).into())).ok_or(RingError::BadPoint { index })
}

impl RingSignature {
    /// Deserializes with the reference's leniencies (§2.5): scalars reduced mod n, points must be valid
    /// compressed points, trailing bytes ignored, n = 0 refused; never panics or over-allocates.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RingError> {
        let raw = RawRingSignature::parse(bytes)?;
        let key_image = decompress(&raw.key_image, 0)?;
        let mut ring = Vec::with_capacity(raw.ring.len());
        for (i, member) in raw.ring.iter().enumerate() {
            ring.push(decompress(member, i + 1)?);
        }
        Ok(Self {
            c0: raw.c0,
            key_image,
            key_image_bytes: raw.key_image,
            s: raw.s,
            ring,
            ring_bytes: raw.ring,
        })
    }

    /// Serializes as `u32_be(n) ‖ c0 ‖ I ‖ (s_i ‖ P_i)*` (69 + 65n bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + MEMBER_BYTES * self.ring.len());
        out.extend_from_slice(&(self.ring.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.c0.to_bytes());
        out.extend_from_slice(&self.key_image_bytes);
        for (s, p) in self.s.iter().zip(&self.ring_bytes) {
            out.extend_from_slice(&s.to_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// The ring members' 33-byte compressed keys, in signature order (duplicates kept).
    pub fn ring(&self) -> &[[u8; 33]] {
        &self.ring_bytes
    }

    /// The key image I = x·H_p(P_signer), compressed.
    pub fn key_image(&self) -> [u8; 33] {
        self.key_image_bytes
    }

    /// Verifies the LSAG equations over `message` (§2.5 Verify), with H_p values from `cache`.
    pub fn verify_with(&self, message: &[u8; 32], cache: &HpCache) -> Result<(), RingError> {
        let image = ProjectivePoint::from(self.key_image);
        let mut c = self.c0;
        for ((s, point), raw) in self.s.iter().zip(&self.ring).zip(&self.ring_bytes) {
            let hp = cache.get_or_compute(raw, point)?;
            let l = ProjectivePoint::lincomb_vartime(&[
                (ProjectivePoint::GENERATOR, *s),
                (ProjectivePoint::from(*point), c),
            ]);
            let r = ProjectivePoint::lincomb_vartime(&[(hp, *s), (image, c)]);
            c = challenge(message, &l, &r).map_err(|_| RingError::Invalid)?;
        }
        if c == self.c0 { Ok(()) } else { Err(RingError::Invalid) }
    }

    /// Verifies with the process-wide H_p cache.
    pub fn verify(&self, message: &[u8; 32]) -> Result<(), RingError> {
        self.verify_with(message, HpCache::global())
    }

    /// Signs `message` with explicit randomness: `u` is the nonce, `decoys[i]` the s_i of every member except the
    /// signer (`None` at the signer's index). Used by tests and conformance vectors; real signing draws them from
    /// a CSPRNG ([`RingSignature::sign`]).
    pub fn sign_with(
        ring: &[[u8; 33]],
        message: &[u8; 32],
        secret: &Scalar,
        u: &Scalar,
        decoys: &[Option<Scalar>],
    ) -> Result<Self, RingError> {
        let n = ring.len();
        if n < 2 {
            return Err(RingError::RingTooSmall(n));
        }
        if decoys.len() != n {
            return Err(RingError::BadRandomness);
        }
        let mut points = Vec::with_capacity(n);
        for (i, raw) in ring.iter().enumerate() {
            points.push(parse_point(raw, i + 1)?.0);
        }
        let public = (ProjectivePoint::GENERATOR * secret).to_affine();
        let j = points
            .iter()
            .position(|p| *p == public)
            .ok_or(RingError::SignerNotInRing)?;
        if decoys.iter().enumerate().any(|(i, d)| d.is_some() == (i == j)) {
            return Err(RingError::BadRandomness);
        }
        let cache = HpCache::global();
        let hp_j = cache.get_or_compute(&ring[j], &points[j])?;
        let image = hp_j * secret;
        let mut c = vec![Scalar::ZERO; n];
        c[(j + 1) % n] = challenge(message, &(ProjectivePoint::GENERATOR * u), &(hp_j * u))?;
        let mut s = vec![Scalar::ZERO; n];
        let mut i = (j + 1) % n;
        while i != j {
            let s_i = decoys[i].ok_or(RingError::BadRandomness)?;
            s[i] = s_i;
            let hp_i = cache.get_or_compute(&ring[i], &points[i])?;
            let l = ProjectivePoint::lincomb(&[
                (ProjectivePoint::GENERATOR, s_i),
                (ProjectivePoint::from(points[i]), c[i]),
            ]);
            let r = ProjectivePoint::lincomb(&[(hp_i, s_i), (image, c[i])]);
            c[(i + 1) % n] = challenge(message, &l, &r)?;
            i = (i + 1) % n;
        }
        s[j] = *u - c[j] * secret;
        let key_image = image.to_affine();
        let mut key_image_bytes = [0u8; 33];
        key_image_bytes.copy_from_slice(&key_image.to_bytes());
        Ok(Self {
            c0: c[0],
            key_image,
            key_image_bytes,
            s,
            ring: points,
            ring_bytes: ring.to_vec(),
        })
    }

    /// Signs `message` with fresh CSPRNG randomness (retrying in the ≈2⁻¹²⁸ case of an out-of-range challenge).
    pub fn sign(ring: &[[u8; 33]], message: &[u8; 32], secret: &Scalar) -> Result<Self, RingError> {
        loop {
            let u = random_scalar();
            let decoys: Vec<Option<Scalar>> = ring
                .iter()
                .map(|raw| {
                    let is_signer = parse_point(raw, 0)
                        .map(|(p, _)| p == (ProjectivePoint::GENERATOR * secret).to_affine())
                        .unwrap_or(false);
                    (!is_signer).then(random_scalar)
                })
                .collect();
            // When the signer's key appears several times, only its first occurrence signs.
            let decoys = first_signer_only(decoys);
            match Self::sign_with(ring, message, secret, &u, &decoys) {
                Err(RingError::ChallengeOutOfRange) => continue,
                other => return other,
            }
        }
    }
}

fn first_signer_only(mut decoys: Vec<Option<Scalar>>) -> Vec<Option<Scalar>> {
    let mut seen = false;
    for d in decoys.iter_mut() {
        if d.is_none() {
            if seen {
                *d = Some(random_scalar());
            }
            seen = true;
        }
    }
    decoys
}

fn random_scalar() -> Scalar {
    let mut wide = [0u8; 64];
    rand::Rng::fill(&mut rand::rng(), &mut wide[..]);
    Scalar::reduce(&k256::elliptic_curve::bigint::U512::from_be_slice(&wide))
}

/// Decodes and verifies the ring signature of a relay request over its signable hash (§2.1); returns the parsed
/// signature so the caller can check membership against the application's ring (§2.4).
pub fn verify_relay_ring_signature(signature: &[u8], message: &[u8; 32]) -> Result<RingSignature, RingError> {
    let parsed = RingSignature::from_bytes(signature)?;
    parsed.verify(message)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests;
