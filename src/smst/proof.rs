//! Closest proofs (§5.1–5.4): generation by greedy descent, compaction into the gob wire struct and back, and
//! verification exactly as the chain does it (§5.4 step 17, including what it does *not* check: key/path
//! consistency and Depth == #SideNodes; SiblingData is any node encoding, an extension `02…` hashed as its
//! inner-chain expansion, and is not checked at all without side nodes).

use storage::NodeStore;

use super::hash::{self, DIGEST_LEN, PLACEHOLDER, bit, inner_digest, inner_encoding, leaf_encoding};
use super::{Smst, SmstError, index, is_leaf};
use crate::protocol::gob::{SparseCompactMerkleClosestProof, SparseCompactMerkleProof};
use crate::protocol::sha256;

/// A decompacted closest proof (`SparseMerkleClosestProof`), with Go's loose field types so verification can
/// apply the chain's checks to whatever a gob stream carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosestProof {
    /// The path proven against (32 bytes when well formed).
    pub path: Vec<u8>,
    /// Depths at which the descent went to the other child, ascending.
    pub flipped_bits: Vec<u64>,
    /// Depth of the leaf found.
    pub depth: u64,
    /// Path of the leaf found.
    pub closest_path: Vec<u8>,
    /// The leaf's stored value: `value ‖ weight ‖ count`.
    pub closest_value_hash: Vec<u8>,
    /// Sibling digests, deepest first (placeholders as 48 zero bytes).
    pub side_nodes: Vec<Vec<u8>>,
    /// Encoding of the deepest sibling node, if any.
    pub sibling_data: Option<Vec<u8>>,
}

/// Room a proof tx needs beyond its relay's bytes (spec §5.3, §5.4): the closest proof's side nodes (at most 256
/// digests of 48 bytes, 12 KiB, in a trie of any size), flipped bits, path, bitmask and leaf encoding, the gob type
/// definitions, the session header, supplier address and the tx's body, fee, signer info and signature (< 1 KiB).
/// `SiblingData` is not counted: a proof goes without it when it would not fit (the miner's `proof_message`).
pub const MAX_PROOF_OVERHEAD_BYTES: usize = 16 * 1024;

/// The largest relay (`relay_bytes`: request and response) a proof of which fits a tx of `max_tx_bytes`. A larger
/// relay must not be counted into a claim: if the chain picked it for the proof, no node would take the proof tx,
/// and the supplier would be slashed for the missing proof.
pub fn max_provable_relay_bytes(max_tx_bytes: usize) -> usize {
    max_tx_bytes.saturating_sub(MAX_PROOF_OVERHEAD_BYTES)
}

/// Why a proof is refused (the chain's reason, §5.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The gob bytes do not decode.
    #[error("proof does not decode: {0}")]
    Decode(String),
    /// A §5.3 limit or a §5.4 well-formedness check failed.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The flipped path does not lead to the closest path.
    #[error("closest path does not match the proof path with its flipped bits")]
    PathMismatch,
    /// SiblingData does not hash to the deepest side node.
    #[error("sibling data does not match the deepest side node")]
    SiblingMismatch,
    /// The proof's path is not the one the chain derives from the seed block and session id (§5.2).
    #[error("proof path is not the path derived from the seed block and session id")]
    WrongPath,
    /// The recomputed root differs from the claimed root.
    #[error("recomputed root does not match the claim root")]
    RootMismatch,
}

impl<S: NodeStore> Smst<S> {
    /// The closest proof for `path` (§5.1): descend, taking the child on the path's bit and recording a flip
    /// where that child is empty; side nodes deepest first; SiblingData = encoding of the deepest sibling.
    pub fn prove_closest(&mut self, path: &[u8; 32]) -> Result<ClosestProof, SmstError> {
        if self.root == super::EMPTY {
            return Err(SmstError::Empty);
        }
        self.root();
        let mut r = self.root;
        let mut depth = 0usize;
        let mut sides: Vec<[u8; DIGEST_LEN]> = Vec::new();
        let mut flips = Vec::new();
        let mut deepest_sibling = None;
        while !is_leaf(r) {
            let b = self.branches[index(r)];
            let branch_depth = b.depth as usize;
            if branch_depth > depth {
                let prefix = self.representative_path(r);
                for level in depth..branch_depth {
                    sides.push(PLACEHOLDER);
                    if bit(path, level) != bit(&prefix, level) {
                        flips.push(level as u64);
                    }
                }
            }
            let (next, other) = if bit(path, branch_depth) {
                (b.right, b.left)
            } else {
                (b.left, b.right)
            };
            sides.push(self.subtree_digest(other, branch_depth + 1));
            deepest_sibling = Some(other);
            depth = branch_depth + 1;
            r = next;
        }
        let leaf_id = index(r) as u32;
        let leaf = self.leaves[leaf_id as usize];
        let value = self.leaf_value(leaf_id)?;
        let mut closest_value_hash = value;
        closest_value_hash.extend_from_slice(&leaf.weight.to_be_bytes());
        closest_value_hash.extend_from_slice(&1u64.to_be_bytes());
        let sibling_data = match deepest_sibling {
            None => None,
            Some(sibling) => Some(self.node_encoding_at(sibling, depth)?),
        };
        sides.reverse();
        Ok(ClosestProof {
            path: path.to_vec(),
            flipped_bits: flips,
            depth: depth as u64,
            closest_path: leaf.path.to_vec(),
            closest_value_hash,
            side_nodes: sides.iter().map(|s| s.to_vec()).collect(),
            sibling_data,
        })
    }

    /// The encoding of the canonical node at `depth` for subtree `r`: a leaf, an inner node, or (when the
    /// subtree branches deeper) the first inner node of its single-child chain. The chain hashes all three the
    /// same way (extension nodes are hashed as their inner-chain expansion, §5.4).
    fn node_encoding_at(&mut self, r: u32, depth: usize) -> Result<Vec<u8>, SmstError> {
        if is_leaf(r) {
            let leaf = self.leaves[index(r)];
            let value = self.leaf_value(index(r) as u32)?;
            return Ok(leaf_encoding(&leaf.path, &value, leaf.weight));
        }
        let b = self.branches[index(r)];
        if b.depth as usize == depth {
            let left = self.subtree_digest(b.left, depth + 1);
            let right = self.subtree_digest(b.right, depth + 1);
            return Ok(inner_encoding(&left, &right).to_vec());
        }
        let child = self.subtree_digest(r, depth + 1);
        let prefix = self.representative_path(r);
        let enc = if bit(&prefix, depth) {
            inner_encoding(&PLACEHOLDER, &child)
        } else {
            inner_encoding(&child, &PLACEHOLDER)
        };
        Ok(enc.to_vec())
    }
}

/// Minimal big-endian bytes of `v` (0 ⇒ `[0]`), the compact encoding of depths and flips (§5.3).
fn int_bytes(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    bytes[first..].to_vec()
}

fn bytes_int(b: &[u8]) -> Result<u64, ProofError> {
    if b.len() > 2 {
        return Err(ProofError::Malformed("flipped bit or depth wider than 2 bytes"));
    }
    Ok(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

impl ClosestProof {
    /// Compacts (§5.3): placeholders removed from the side nodes and marked in the bit mask.
    pub fn compact(&self) -> SparseCompactMerkleClosestProof {
        let n = self.side_nodes.len();
        let mut bit_mask = vec![0u8; n.div_ceil(8)];
        let mut side_nodes = Vec::new();
        for (i, node) in self.side_nodes.iter().enumerate() {
            if node.as_slice() == PLACEHOLDER.as_slice() {
                bit_mask[i / 8] |= 0x80 >> (i % 8);
            } else {
                side_nodes.push(node.clone());
            }
        }
        SparseCompactMerkleClosestProof {
            path: self.path.clone(),
            flipped_bits: self.flipped_bits.iter().map(|f| int_bytes(*f)).collect(),
            depth: int_bytes(self.depth),
            closest_path: self.closest_path.clone(),
            closest_value_hash: self.closest_value_hash.clone(),
            closest_proof: Some(SparseCompactMerkleProof {
                side_nodes,
                non_membership_leaf_data: Vec::new(),
                bit_mask,
                num_side_nodes: n as i64,
                sibling_data: self.sibling_data.clone().unwrap_or_default(),
            }),
        }
    }

    /// Decompacts with the §5.3 limits: a ClosestProof present, flips and depth ≤ 2 bytes, 0 ≤ NumSideNodes ≤ 256,
    /// len(BitMask) == ceil(N/8), #SideNodes == N − popcount(BitMask), NonMembershipLeafData empty or ≥ 33 bytes.
    pub fn decompact(compact: &SparseCompactMerkleClosestProof) -> Result<Self, ProofError> {
        let flipped_bits = compact
            .flipped_bits
            .iter()
            .map(|b| bytes_int(b))
            .collect::<Result<Vec<_>, _>>()?;
        let depth = bytes_int(&compact.depth)?;
        // smt v0.14.1 decompacts `*proof.ClosestProof` unguarded: a proof without one panics the chain's
        // handler and the MsgSubmitProof fails (gob always sends the struct when it is set, even all-zero).
        let inner = compact
            .closest_proof
            .clone()
            .ok_or(ProofError::Malformed("ClosestProof absent"))?;
        // smt `SparseMerkleProof.validateBasic`: leaf data shorter than a leaf's prefix and path (1 + 32 bytes)
        // is "invalid non-membership leaf data size" (an empty one is none at all).
        if (1..=32).contains(&inner.non_membership_leaf_data.len()) {
            return Err(ProofError::Malformed("invalid non-membership leaf data size"));
        }
        let n = usize::try_from(inner.num_side_nodes)
            .ok()
            .filter(|n| *n <= 256)
            .ok_or(ProofError::Malformed("NumSideNodes out of range"))?;
        if inner.bit_mask.len() != n.div_ceil(8) {
            return Err(ProofError::Malformed("BitMask length does not match NumSideNodes"));
        }
        let placeholders: usize = inner.bit_mask.iter().map(|b| b.count_ones() as usize).sum();
        if n > 0 && inner.side_nodes.len() + placeholders != n {
            return Err(ProofError::Malformed(
                "side node count does not match NumSideNodes and BitMask",
            ));
        }
        let mut given = inner.side_nodes.iter();
        let mut side_nodes = Vec::with_capacity(n);
        for i in 0..n {
            if inner.bit_mask[i / 8] & (0x80 >> (i % 8)) != 0 {
                side_nodes.push(PLACEHOLDER.to_vec());
            } else {
                side_nodes.push(
                    given
                        .next()
                        .cloned()
                        .ok_or(ProofError::Malformed("missing side node"))?,
                );
            }
        }
        let sibling_data = (!inner.sibling_data.is_empty()).then(|| inner.sibling_data.clone());
        Ok(Self {
            path: compact.path.clone(),
            flipped_bits,
            depth,
            closest_path: compact.closest_path.clone(),
            closest_value_hash: compact.closest_value_hash.clone(),
            side_nodes,
            sibling_data,
        })
    }
}

/// Length of an extension encoding's fixed head: prefix `02`, path bounds (2 bytes), path (32 bytes).
const EXTENSION_HEAD_LEN: usize = 1 + 2 + 32;

/// The digest the chain computes from `SiblingData` (smt v0.14.1 `hashSumSerialization`, spec §5 and §5.4 (17)):
/// an extension encoding `02 ‖ [start, end] ‖ path ‖ child digest ‖ sum ‖ count` is hashed as the chain of inner
/// nodes with empty siblings it stands for (`extensionNode.expand`: bits `end−1` down to `start` of its path
/// wrap the child digest; its own sum and count are not read; with `end ≤ start` the child digest itself);
/// any other encoding (leaf `00`, inner `01`) as `SHA256(data) ‖ its last 16 bytes` (sum, count). `None` where
/// the chain could not slice the bytes (shorter than its layout needs), or for an extension whose child digest is
/// not 48 bytes but needs wrapping (no node of a real trie).
pub fn sibling_digest(data: &[u8]) -> Option<Vec<u8>> {
    if data.first() == Some(&2) {
        if data.len() < EXTENSION_HEAD_LEN + 16 {
            return None;
        }
        let (start, end) = (usize::from(data[1]), usize::from(data[2]));
        let path: [u8; 32] = data[3..EXTENSION_HEAD_LEN].try_into().ok()?;
        let child = &data[EXTENSION_HEAD_LEN..data.len() - 16];
        if end <= start {
            return Some(child.to_vec());
        }
        let child: [u8; DIGEST_LEN] = child.try_into().ok()?;
        return Some(hash::wrap_chain(child, &path, start, end).to_vec());
    }
    if data.len() < 16 {
        return None;
    }
    let mut digest = sha256(data).to_vec();
    digest.extend_from_slice(&data[data.len() - 16..]);
    Some(digest)
}

/// A side node as the chain folds it: copied into a 48-byte buffer (smt `verifyProofWithUpdates`), so a shorter
/// one is zero-padded and a longer one cut (their sizes are only checked when SiblingData is checked).
fn fold_digest(node: &[u8]) -> [u8; DIGEST_LEN] {
    let mut digest = [0u8; DIGEST_LEN];
    let n = node.len().min(DIGEST_LEN);
    digest[..n].copy_from_slice(&node[..n]);
    digest
}

/// Verifies a decompacted closest proof against a 48-byte claim root exactly as the chain does (§5.4 step 17).
pub fn verify_closest_proof(proof: &ClosestProof, root: &[u8]) -> Result<(), ProofError> {
    let path: [u8; 32] = proof
        .path
        .as_slice()
        .try_into()
        .map_err(|_| ProofError::Malformed("path is not 32 bytes"))?;
    if proof.depth > 256 {
        return Err(ProofError::Malformed("depth above 256"));
    }
    let closest: [u8; 32] = proof
        .closest_path
        .as_slice()
        .try_into()
        .map_err(|_| ProofError::Malformed("closest path is not 32 bytes"))?;
    let mut flipped = path;
    for &f in &proof.flipped_bits {
        if f > proof.depth {
            return Err(ProofError::Malformed("flipped bit beyond depth"));
        }
        if f < 256 {
            flipped[f as usize / 8] ^= 0x80 >> (f % 8);
        }
    }
    for i in 0..proof.depth as usize {
        if bit(&flipped, i) != bit(&closest, i) {
            return Err(ProofError::PathMismatch);
        }
    }
    if proof.side_nodes.len() > 256 {
        return Err(ProofError::Malformed("more than 256 side nodes"));
    }
    // SiblingData is checked only when present with side nodes (smt `validateBasic`: skipped when nil or when
    // there are no side nodes); then every side node must be 48 bytes and the data must hash to the deepest.
    if let Some(sibling) = proof.sibling_data.as_ref().filter(|_| !proof.side_nodes.is_empty()) {
        if proof.side_nodes.iter().any(|n| n.len() != DIGEST_LEN) {
            return Err(ProofError::Malformed("side node is not 48 bytes"));
        }
        if sibling_digest(sibling).as_deref() != Some(proof.side_nodes[0].as_slice()) {
            return Err(ProofError::SiblingMismatch);
        }
    }
    let value = &proof.closest_value_hash;
    if value.len() < 16 {
        return Err(ProofError::Malformed("closest value shorter than its weight and count"));
    }
    let mut enc = Vec::with_capacity(1 + 32 + value.len());
    enc.push(0);
    enc.extend_from_slice(&closest);
    enc.extend_from_slice(value);
    let mut current = [0u8; DIGEST_LEN];
    current[..32].copy_from_slice(&sha256(&enc));
    current[32..].copy_from_slice(&value[value.len() - 16..]);
    let n = proof.side_nodes.len();
    for (i, node) in proof.side_nodes.iter().enumerate() {
        let node = fold_digest(node);
        current = if bit(&closest, n - 1 - i) {
            inner_digest(&node, &current)
        } else {
            inner_digest(&current, &node)
        };
    }
    if current.as_slice() == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Decodes gob proof bytes (as in `MsgSubmitProof.proof`), decompacts and verifies against `root`.
pub fn verify_compact_closest_proof(proof_bytes: &[u8], root: &[u8]) -> Result<ClosestProof, ProofError> {
    let compact =
        crate::protocol::gob::decode_closest_proof(proof_bytes).map_err(|e| ProofError::Decode(e.to_string()))?;
    let proof = ClosestProof::decompact(&compact)?;
    verify_closest_proof(&proof, root)?;
    Ok(proof)
}

/// The chain's full proof check for a claim (§5.4 steps 4 and 16–17): decode, decompact, the proof path must
/// equal `expected_path` (SHA256(seed block hash ‖ session id)), and the closest proof must verify against the
/// claim root.
pub fn verify_proof_for_claim(
    proof_bytes: &[u8],
    root: &[u8],
    expected_path: &[u8; 32],
) -> Result<ClosestProof, ProofError> {
    let proof = verify_compact_closest_proof(proof_bytes, root)?;
    if proof.path.as_slice() != expected_path.as_slice() {
        return Err(ProofError::WrongPath);
    }
    Ok(proof)
}

#[cfg(test)]
#[path = "proof_tests.rs"]
mod tests;
