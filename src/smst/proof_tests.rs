//! Closest-proof verification against what the chain accepts (smt v0.14.1 `validateBasic` and
//! `hashSumSerialization`, spec §5 and §5.4 (17)): SiblingData as an extension encoding (`02…`) is hashed as its
//! inner-chain expansion, and SiblingData with no side nodes is not checked. The extension encodings are built
//! here from the leaf set alone (the canonical shape of §5), not from the prover.

use storage::MemoryNodeStore;

use super::hash::{DIGEST_LEN, PLACEHOLDER, bit, inner_digest, leaf_digest, leaf_hash};
use super::*;
use crate::protocol::sha256;

/// The canonical digest of the subtree at `depth` holding `set` (§5 "Canonical shape").
fn canonical(set: &[([u8; 32], [u8; DIGEST_LEN])], depth: usize) -> [u8; DIGEST_LEN] {
    match set.len() {
        0 => PLACEHOLDER,
        1 => set[0].1,
        _ => {
            let (right, left): (Vec<_>, Vec<_>) = set.iter().partition(|(p, _)| bit(p, depth));
            inner_digest(&canonical(&left, depth + 1), &canonical(&right, depth + 1))
        }
    }
}

/// `02 ‖ [start, end] ‖ path ‖ child ‖ sum ‖ count` (spec §5, smt `encodeSumExtensionNode`).
fn extension(start: u8, end: u8, path: &[u8; 32], child: &[u8; DIGEST_LEN]) -> Vec<u8> {
    let mut enc = vec![2, start, end];
    enc.extend_from_slice(path);
    enc.extend_from_slice(child);
    enc.extend_from_slice(&child[32..]);
    enc
}

struct Case {
    trie: Smst<MemoryNodeStore>,
    proof: ClosestProof,
    /// The `02` encoding of the deepest sibling, a single-child chain from the proof's depth down to where the
    /// sibling's leaves branch.
    ext: Vec<u8>,
}

/// A trie of 64 keys and a proof path whose deepest sibling is a single-child chain (its leaves share bits
/// beyond the proof's depth), with the sibling's extension encoding built from the leaves it holds.
fn case() -> Case {
    let mut trie = Smst::new(MemoryNodeStore::new());
    let mut leaves = Vec::new();
    for i in 0..64u64 {
        let (key, value, weight) = (format!("key{i}"), format!("value{i}"), i + 1);
        trie.update(key.as_bytes(), value.as_bytes(), weight);
        let path = sha256(key.as_bytes());
        leaves.push((path, leaf_digest(leaf_hash(&path, value.as_bytes(), weight), weight)));
    }
    for i in 0..10_000u32 {
        let path = sha256(format!("path{i}").as_bytes());
        let proof = trie.prove_closest(&path).unwrap();
        let depth = proof.depth as usize;
        if depth == 0 {
            continue;
        }
        let closest: [u8; 32] = proof.closest_path.clone().try_into().unwrap();
        // The sibling's leaves: the closest path's bits above depth − 1, the other way at depth − 1.
        let sibling: Vec<_> = leaves
            .iter()
            .filter(|(p, _)| {
                (0..depth - 1).all(|b| bit(p, b) == bit(&closest, b)) && bit(p, depth - 1) != bit(&closest, depth - 1)
            })
            .copied()
            .collect();
        if sibling.len() < 2 {
            continue;
        }
        // Where the sibling's leaves first differ: the chain runs from `depth` to there.
        let branch = (depth..256)
            .find(|b| sibling.iter().any(|(p, _)| bit(p, *b) != bit(&sibling[0].0, *b)))
            .unwrap();
        if branch == depth {
            continue;
        }
        assert_eq!(canonical(&sibling, depth).as_slice(), proof.side_nodes[0].as_slice());
        let child = canonical(&sibling, branch);
        let ext = extension(depth as u8, branch as u8, &sibling[0].0, &child);
        return Case { trie, proof, ext };
    }
    panic!("no proof path whose deepest sibling is a single-child chain");
}

/// Through gob and decompaction, as the chain receives it.
fn verify_on_the_wire(proof: &ClosestProof, root: &[u8]) -> Result<ClosestProof, ProofError> {
    verify_compact_closest_proof(&crate::protocol::gob::encode_closest_proof(&proof.compact()), root)
}

#[test]
fn an_extension_encoding_of_the_deepest_sibling_verifies_as_its_inner_chain() {
    let Case { mut trie, proof, ext } = case();
    let root = trie.root();
    // What the prover writes: the `01` encoding of the chain's first inner node.
    assert_eq!(proof.sibling_data.as_ref().unwrap()[0], 1);
    verify_on_the_wire(&proof, &root).unwrap();
    assert_eq!(sibling_digest(&ext).unwrap().as_slice(), proof.side_nodes[0].as_slice());
    let with_ext = ClosestProof {
        sibling_data: Some(ext.clone()),
        ..proof.clone()
    };
    let verified = verify_on_the_wire(&with_ext, &root).unwrap();
    assert_eq!(verified.sibling_data, Some(ext.clone()));
    // The chain hashes the expansion only: the extension's own sum and count are not read.
    let mut other_sums = ext.clone();
    let n = other_sums.len();
    other_sums[n - 16..].copy_from_slice(&[0xab; 16]);
    verify_on_the_wire(
        &ClosestProof {
            sibling_data: Some(other_sums),
            ..proof.clone()
        },
        &root,
    )
    .unwrap();
    // Another chain (one bit shorter, or a path with another bit inside the chain) is another node.
    let mut shorter = ext.clone();
    shorter[2] -= 1;
    let mut other_path = ext.clone();
    let d = usize::from(ext[1]);
    other_path[3 + d / 8] ^= 0x80 >> (d % 8);
    for wrong in [shorter, other_path] {
        let err = verify_on_the_wire(
            &ClosestProof {
                sibling_data: Some(wrong),
                ..proof.clone()
            },
            &root,
        )
        .unwrap_err();
        assert_eq!(err, ProofError::SiblingMismatch);
    }
}

#[test]
fn an_empty_extension_chain_hashes_to_its_child_digest() {
    let Case { proof, .. } = case();
    // `[d, d]`: no inner node to expand, the digest is the child's bytes as given.
    let side: [u8; DIGEST_LEN] = proof.side_nodes[0].clone().try_into().unwrap();
    let ext = extension(7, 7, &[0u8; 32], &side);
    assert_eq!(sibling_digest(&ext).unwrap(), side.to_vec());
    // Too short for the chain's slicing: no digest, never a match.
    assert_eq!(sibling_digest(&ext[..50]), None);
    assert_eq!(sibling_digest(&[1u8; 15]), None);
}

#[test]
fn sibling_data_without_side_nodes_is_not_checked() {
    let mut one = Smst::new(MemoryNodeStore::new());
    one.update(b"only", b"leaf", 4);
    let root = one.root();
    let proof = one.prove_closest(&sha256(b"anything")).unwrap();
    assert!(proof.side_nodes.is_empty() && proof.sibling_data.is_none());
    // Any bytes, even ones that hash to nothing: with no side node the chain skips the check.
    for data in [vec![0xee; 3], vec![2; 60], vec![1; 113]] {
        let with_data = ClosestProof {
            sibling_data: Some(data.clone()),
            ..proof.clone()
        };
        let verified = verify_on_the_wire(&with_data, &root).unwrap();
        assert_eq!(verified.sibling_data, Some(data));
    }
}

#[test]
fn sibling_data_that_hashes_elsewhere_is_refused_and_side_nodes_must_then_be_48_bytes() {
    let Case { mut trie, proof, .. } = case();
    let root = trie.root();
    let mut wrong = proof.sibling_data.clone().unwrap();
    wrong[1] ^= 1;
    let err = verify_on_the_wire(
        &ClosestProof {
            sibling_data: Some(wrong),
            ..proof.clone()
        },
        &root,
    )
    .unwrap_err();
    assert_eq!(err, ProofError::SiblingMismatch);
    // A short side node: refused as malformed when SiblingData is checked; folded zero-padded (and so not
    // matching the root here) when it is not.
    let mut short = proof.clone();
    let last = short.side_nodes.len() - 1;
    short.side_nodes[last].truncate(40);
    assert_eq!(
        verify_closest_proof(&short, &root).unwrap_err(),
        ProofError::Malformed("side node is not 48 bytes")
    );
    short.sibling_data = None;
    assert_eq!(
        verify_closest_proof(&short, &root).unwrap_err(),
        ProofError::RootMismatch
    );
}
