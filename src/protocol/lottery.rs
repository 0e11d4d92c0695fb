//! The proof requirement (§6.3): claimed uPOKT with exact rationals, the threshold, and the probabilistic lottery
//! seeded from the claim and the proof seed block, which emulates Go's `encoding/binary.Varint` and
//! `math/rand.NewSource(x).Float64()` bit for bit. A wrong prediction costs money either way: a missed required
//! proof is slashed, and a proof that is not required is rejected with its fee burned.

use num_bigint::{BigInt, BigUint};
use num_rational::BigRational;
use num_traits::ToPrimitive as _;

use super::sha256;
use super::wire::ProofParams;

pub use super::wire::ProofRequirementReason;

/// Claimed uPOKT = floor(sum_CU × (2²⁵⁶−1)/int(target) × CUTTM / granularity), one final floor. `None` when the
/// target or granularity is zero.
pub fn claimed_upokt(sum_compute_units: u64, target: &[u8], cuttm: u64, granularity: u64) -> Option<BigUint> {
    if granularity == 0 {
        return None;
    }
    let multiplier = super::difficulty::difficulty_multiplier(target)?;
    let value = BigRational::from_integer(BigInt::from(sum_compute_units))
        * multiplier
        * BigRational::from_integer(BigInt::from(cuttm))
        / BigRational::from_integer(BigInt::from(granularity));
    value.floor().to_integer().to_biguint()
}

/// Decides whether the chain will require a proof for a claim (§6.3): THRESHOLD when `claimed ≥ threshold`, else
/// PROBABILISTIC when `SeededFloat64(SHA256(claim) ‖ seed block hash) ≤ probability`, else NOT_REQUIRED.
/// `claim_bytes` is the gogo-marshaled `Claim{supplier, header, root}` (status omitted).
pub fn proof_requirement(
    claim_bytes: &[u8],
    seed_block_hash: &[u8],
    claimed: &BigUint,
    params: &ProofParams,
) -> ProofRequirementReason {
    let threshold = params
        .proof_requirement_threshold
        .as_ref()
        .and_then(|coin| coin.amount.parse::<BigUint>().ok());
    if threshold.is_some_and(|t| *claimed >= t) {
        return ProofRequirementReason::Threshold;
    }
    let mut seed = sha256(claim_bytes).to_vec();
    seed.extend_from_slice(seed_block_hash);
    if seeded_float64(&seed) <= params.proof_request_probability {
        ProofRequirementReason::Probabilistic
    } else {
        ProofRequirementReason::NotRequired
    }
}

/// Go `binary.Varint` over the bytes: unsigned LEB128 then zig-zag; overflow (more than 10 bytes, or a 10th byte
/// > 1) or a missing terminator yields 0, as Go's callers see it.
pub fn go_varint(bytes: &[u8]) -> i64 {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        if i == 10 {
            return 0;
        }
        if b < 0x80 {
            if i == 9 && b > 1 {
                return 0;
            }
            let unsigned = value | (u64::from(b) << shift);
            let x = (unsigned >> 1) as i64;
            return if unsigned & 1 != 0 { !x } else { x };
        }
        value |= u64::from(b & 0x7f) << shift;
        shift += 7;
    }
    0
}

/// The seed of the lottery's `math/rand` source: `Varint(SHA256(seed))`.
pub fn lottery_seed(seed: &[u8]) -> i64 {
    go_varint(&sha256(seed))
}

/// The lottery sample (§6.3): `rand.New(rand.NewSource(Varint(SHA256(seed)))).Float64()`.
pub fn seeded_float64(seed: &[u8]) -> f64 {
    GoRand::new(lottery_seed(seed)).float64()
}

/// The lottery as `Int63()` (used by the disabled earliest-commit spreading, §3).
pub fn seeded_int63(seed: &[u8]) -> i64 {
    GoRand::new(lottery_seed(seed)).int63()
}

const RNG_LEN: usize = 607;
const RNG_TAP: usize = 273;
const INT32_MAX: i64 = (1 << 31) - 1;

/// The four `rngCooked` entries the first two outputs read (Go `src/math/rand/rng.go`).
fn rng_cooked(i: usize) -> i64 {
    match i {
        332 => 4_287_360_518_296_753_003,
        333 => -4_633_371_852_008_891_965,
        605 => 9_103_922_860_780_351_547,
        606 => 4_152_330_101_494_654_406,
        _ => 0,
    }
}

/// Go's `math/rand` additive lagged Fibonacci source, reduced to what the first two outputs need: only the four
/// vector slots they read are kept (the others are computed and discarded while seeding).
#[derive(Debug, Clone)]
struct GoRand {
    /// vec[332], vec[333], vec[605], vec[606].
    slots: [i64; 4],
    outputs: usize,
}

fn seedrand(x: i32) -> i32 {
    const A: i32 = 48_271;
    const Q: i32 = 44_488;
    const R: i32 = 3_399;
    let hi = x / Q;
    let lo = x % Q;
    let mut x = A.wrapping_mul(lo).wrapping_sub(R.wrapping_mul(hi));
    if x < 0 {
        x = x.wrapping_add(INT32_MAX as i32);
    }
    x
}

impl GoRand {
    fn new(seed: i64) -> Self {
        let mut seed = seed % INT32_MAX;
        if seed < 0 {
            seed += INT32_MAX;
        }
        if seed == 0 {
            seed = 89_482_311;
        }
        let mut x = seed as i32;
        let mut slots = [0i64; 4];
        for i in -20i64..RNG_LEN as i64 {
            x = seedrand(x);
            if i >= 0 {
                let mut u = i64::from(x) << 40;
                x = seedrand(x);
                u ^= i64::from(x) << 20;
                x = seedrand(x);
                u ^= i64::from(x);
                let index = i as usize;
                let slot = match index {
                    332 => Some(0),
                    333 => Some(1),
                    605 => Some(2),
                    606 => Some(3),
                    _ => None,
                };
                if let Some(slot) = slot {
                    slots[slot] = u ^ rng_cooked(index);
                }
            }
        }
        debug_assert_eq!(RNG_LEN - RNG_TAP, 334);
        Self { slots, outputs: 0 }
    }

    /// `Uint64()` for the first two calls: vec[333]+vec[606], then vec[332]+vec[605] (feed 334→333→332, tap
    /// 0→606→605). Later calls would need the whole vector; the lottery never makes them (a third output is needed
    /// only if two consecutive Float64 draws are exactly 1.0).
    fn uint64(&mut self) -> u64 {
        let x = match self.outputs {
            0 => self.slots[1].wrapping_add(self.slots[3]),
            _ => self.slots[0].wrapping_add(self.slots[2]),
        };
        self.outputs += 1;
        x as u64
    }

    fn int63(&mut self) -> i64 {
        (self.uint64() & (u64::MAX >> 1)) as i64
    }

    fn float64(&mut self) -> f64 {
        loop {
            let f = self.int63() as f64 / (1u64 << 63) as f64;
            if f < 1.0 || self.outputs >= 2 {
                return f.min(f64::from_bits(0x3fef_ffff_ffff_ffff));
            }
        }
    }

    /// Go `Int31n` for tests of the source against well-known outputs.
    #[cfg(test)]
    fn int31n(&mut self, n: i32) -> i32 {
        let int31 = |r: &mut Self| (r.int63() >> 32) as i32;
        if n & (n - 1) == 0 {
            return int31(self) & (n - 1);
        }
        let max = ((1u32 << 31) - 1 - (1u32 << 31) % n as u32) as i32;
        let mut v = int31(self);
        while v > max {
            v = int31(self);
        }
        v % n
    }
}

/// Lossless conversion helper for metrics: claimed uPOKT as f64 (saturating).
pub fn upokt_as_f64(value: &BigUint) -> f64 {
    value.to_f64().unwrap_or(f64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::Coin;

    #[test]
    fn go_math_rand_well_known_outputs() {
        assert_eq!(GoRand::new(1).float64(), 0.6046602879796196);
        let mut r = GoRand::new(42);
        assert_eq!((r.int31n(100), r.int31n(100)), (5, 87));
    }

    #[test]
    fn varint_emulation() {
        assert_eq!(go_varint(&[0x15]), -11);
        assert_eq!(go_varint(&[0x02]), 1);
        assert_eq!(go_varint(&[0x80, 0x01]), 64);
        assert_eq!(go_varint(&[0x80; 11]), 0, "more than 10 bytes overflows");
        assert_eq!(
            go_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            0,
            "10th byte > 1"
        );
        assert_eq!(go_varint(&[0x80, 0x80]), 0, "no terminator");
    }

    /// The `relay_e2e` vector.
    fn e2e() -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/protocol-test-vectors.json")).unwrap();
        v["relay_e2e"].clone()
    }

    /// Proof params with `probability` and a 20 POKT threshold.
    fn threshold_params(probability: f64) -> ProofParams {
        ProofParams {
            proof_request_probability: probability,
            proof_requirement_threshold: Some(Coin {
                denom: "upokt".into(),
                amount: "20000000".into(),
            }),
            ..Default::default()
        }
    }

    /// §6.3: the lottery hashes the gogo encoding of `Claim{supplier = 1, header = 2, root = 3}` with the status
    /// (field 4) left out; the vector's claim bytes (and their hash) come from Go. `MsgCreateClaim` has the same
    /// three fields (§1.3), so the message the miner sends carries the same bytes; `MsgSubmitProof` differs only
    /// in field 3 (the gob proof). A wrong encoding would mispredict the requirement (a missed proof is slashed)
    /// with every test still passing, since the simulator encodes claims with the same structs.
    #[test]
    fn relay_e2e_claim_bytes_are_gogos() {
        use prost::Message as _;

        use crate::protocol::wire::{Claim, MsgCreateClaim, MsgSubmitProof, SessionHeader};
        let e = &e2e();
        let field = |name: &str| hex::decode(e[name].as_str().unwrap()).unwrap();
        let header_bytes = field("session_header");
        let header = SessionHeader::decode(header_bytes.as_slice()).unwrap();
        let supplier = e["supplier_addr"].as_str().unwrap().to_string();
        let root = field("smst_root_1leaf_w10");
        let claim = Claim {
            supplier_operator_address: supplier.clone(),
            session_header: Some(header.clone()),
            root_hash: root.clone(),
            proof_validation_status: 0,
        };
        assert_eq!(hex::encode(claim.encode_to_vec()), e["claim_bytes"].as_str().unwrap());
        assert_eq!(
            hex::encode(sha256(&claim.encode_to_vec())),
            e["claim_hash"].as_str().unwrap()
        );
        let msg = MsgCreateClaim {
            supplier_operator_address: supplier.clone(),
            session_header: Some(header.clone()),
            root_hash: root,
        };
        assert_eq!(hex::encode(msg.encode_to_vec()), e["claim_bytes"].as_str().unwrap());
        // MsgSubmitProof assembled by hand from §1.3's field numbers: 0a len addr ‖ 12 len header ‖ 1a len proof
        // (the 1,046-byte gob: a two-byte varint length).
        let proof = field("proof_gob");
        assert_eq!(proof.len(), 1046);
        let mut expected = vec![0x0a, supplier.len() as u8];
        expected.extend_from_slice(supplier.as_bytes());
        expected.extend_from_slice(&[0x12, header_bytes.len() as u8]);
        expected.extend_from_slice(&header_bytes);
        expected.extend_from_slice(&[0x1a, 0x96, 0x08]);
        expected.extend_from_slice(&proof);
        let msg = MsgSubmitProof {
            supplier_operator_address: supplier,
            session_header: Some(header),
            proof,
        };
        assert_eq!(msg.encode_to_vec(), expected);
    }

    /// §6.3: `sample ≤ probability` is PROBABILISTIC, so at equality (the e2e sample 0.9088601354745546) a proof
    /// is required; a hair below it is not.
    #[test]
    fn a_sample_equal_to_the_probability_requires_a_proof() {
        let e = &e2e();
        let claim = hex::decode(e["claim_bytes"].as_str().unwrap()).unwrap();
        let seed_hash = hex::decode(e["proof_seed_block_hash"].as_str().unwrap()).unwrap();
        let sample: f64 = e["proof_req_sample"].as_str().unwrap().parse().unwrap();
        let mut params = threshold_params(sample);
        let small = BigUint::from(10u32);
        assert_eq!(
            proof_requirement(&claim, &seed_hash, &small, &params),
            ProofRequirementReason::Probabilistic
        );
        params.proof_request_probability = f64::from_bits(sample.to_bits() - 1);
        assert_eq!(
            proof_requirement(&claim, &seed_hash, &small, &params),
            ProofRequirementReason::NotRequired
        );
    }

    #[test]
    fn relay_e2e_lottery_golden() {
        let e = &e2e();
        let claim = hex::decode(e["claim_bytes"].as_str().unwrap()).unwrap();
        let seed_hash = hex::decode(e["proof_seed_block_hash"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(sha256(&claim)), e["claim_hash"].as_str().unwrap());
        let mut seed = sha256(&claim).to_vec();
        seed.extend_from_slice(&seed_hash);
        assert_eq!(hex::encode(sha256(&seed)), e["proof_req_seed_sha256"].as_str().unwrap());
        assert_eq!(lottery_seed(&seed), -11);
        assert_eq!(seeded_float64(&seed), 0.9088601354745546);

        let mut params = threshold_params(0.25);
        let small = BigUint::from(10u32);
        assert_eq!(
            proof_requirement(&claim, &seed_hash, &small, &params),
            ProofRequirementReason::NotRequired
        );
        params.proof_request_probability = 0.95;
        assert_eq!(
            proof_requirement(&claim, &seed_hash, &small, &params),
            ProofRequirementReason::Probabilistic
        );
        let big = BigUint::from(20_000_000u32);
        assert_eq!(
            proof_requirement(&claim, &seed_hash, &big, &params),
            ProofRequirementReason::Threshold
        );
    }

    #[test]
    fn claimed_upokt_exact() {
        // Base difficulty, main-net params: 0.14599 uPOKT per CU → 10 relays × 100 CU = 145.99 → 145.
        assert_eq!(
            claimed_upokt(1000, &[0xff; 32], 145_990, 1_000_000),
            Some(BigUint::from(145u32))
        );
        let mut half = [0xffu8; 32];
        half[0] = 0x7f;
        // Multiplier is 2 + 1/(2^255−1): 1000 CU × 42e6 / 1e6 × (2 + ε) = 84000 + tiny → 84000.
        assert_eq!(
            claimed_upokt(1000, &half, 42_000_000, 1_000_000),
            Some(BigUint::from(84_000u32))
        );
        assert_eq!(claimed_upokt(1, &[0u8; 32], 1, 1), None);
        assert_eq!(claimed_upokt(1, &[0xff; 32], 1, 0), None);
    }
}
