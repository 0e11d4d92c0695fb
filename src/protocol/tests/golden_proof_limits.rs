//! Proof decode limits (spec §5.3 "Limits checked on decode", §5.4 (4) and (17)): crafted closest proofs at and
//! just past each limit that smt v0.14.1 (`proofs.go`: `SparseCompactMerkleClosestProof.validateBasic`,
//! `SparseCompactMerkleProof.validateBasic`, `DecompactProof`, `SparseMerkleClosestProof.validateBasic`,
//! `SparseMerkleProof.validateBasic`, `VerifyClosestProof`) puts on `MsgSubmitProof.proof` as poktroll v0.1.35
//! decodes it (`x/proof/keeper/proof_validation.go`: gob `Unmarshal`, `DecompactClosestProof`, then at
//! EndBlock `VerifyClosestProof` against the claim root). Limits: Depth and each FlippedBits entry at most
//! `minBytes(256)` = 2 bytes; 0 ≤ NumSideNodes ≤ 256; len(BitMask) == ceil(N/8); N > 0 ⇒ #SideNodes ==
//! N − popcount(BitMask); Path 32 bytes; Depth ≤ 256; every flip ≤ Depth; with SiblingData every side node 48
//! bytes and SiblingData hashing to SideNodes[0]; ClosestValueHash at least its 16 bytes of sum and count; a
//! present NonMembershipLeafData at least 33 bytes; ClosestProof present.
//!
//! The bytes and roots are in `proof_limits.jsonl`, written by `proof_limits.py` (beside this file; gob from the
//! encoding/gob spec and the root folded as smt does, hashlib only). Every accepted case verifies against the
//! root the model computed; every rejected case differs from an accepted one only in the limit it crosses (or
//! carries that accepted proof's root), so a rejection can only come from the limit. The lines are in the
//! conformance format (`smst_verify_proof`) and also pass `relay-miner conformance`.

use serde_json::Value;

use crate::smst::verify_compact_closest_proof;

fn parse(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn vectors() -> Vec<Value> {
    parse(include_str!("proof_limits.jsonl"))
}

fn hex_field(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap()).unwrap()
}

/// Checks each vector as the chain would; returns the disagreements.
fn disagreements(vectors: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    for v in vectors {
        let outcome = verify_compact_closest_proof(&hex_field(v, "proof"), &hex_field(v, "root"));
        let valid = v["valid"].as_bool().unwrap();
        if outcome.is_ok() != valid {
            failures.push(format!("{}: expected valid={valid}, got {outcome:?}", v["note"]));
        }
        if let Ok(proof) = &outcome {
            assert_eq!(proof.path, hex_field(v, "path"), "{}", v["note"]);
        }
        assert_eq!(crate::conformance::check_vector(v).is_ok(), outcome.is_ok() == valid);
    }
    failures
}

#[test]
fn every_limit_is_accepted_at_and_rejected_past_it() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 27);
    let failures = disagreements(&vectors);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Two limits smt enforces on the proof's inner `ClosestProof` (`smst::ClosestProof::decompact` refuses both): a
/// proof without one (smt dereferences the nil pointer in `SparseCompactMerkleProof.validateBasic`: the panic
/// fails the tx) and a `NonMembershipLeafData` of 1..=32 bytes (`SparseMerkleProof.validateBasic`: "invalid
/// non-membership leaf data size", the proof is INVALID at EndBlock). Only the simulator's verdict on a hostile
/// proof and `relay-miner conformance` depend on them; the miner never builds such a proof.
#[test]
fn inner_proof_limits() {
    let vectors = parse(include_str!("proof_limits_divergent.jsonl"));
    assert_eq!(vectors.len(), 2);
    let failures = disagreements(&vectors);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
