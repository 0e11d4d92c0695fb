//! Node encodings and digests of the sparse Merkle sum trie as pokt-network/smt v0.14.1 computes them with
//! poktroll's spec (SHA-256 path hasher, no value hasher, sum trie) — spec §5.
//!
//! A digest is 48 bytes: `SHA256(encoding) ‖ sum(u64 BE) ‖ count(u64 BE)`; the empty subtree is 48 zero bytes.

use sha2::{Digest, Sha256};

use crate::protocol::sha256;

/// Size of a digest.
pub const DIGEST_LEN: usize = 48;
/// The empty-subtree placeholder digest.
pub const PLACEHOLDER: [u8; DIGEST_LEN] = [0u8; DIGEST_LEN];

/// Bit `i` of a path, MSB-first (bit i = byte i/8, mask 0x80 >> (i % 8)); 1 = right.
#[inline]
pub fn bit(path: &[u8; 32], i: usize) -> bool {
    path[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Sum and count of a digest (its last 16 bytes).
#[inline]
pub fn sum_count(digest: &[u8; DIGEST_LEN]) -> (u64, u64) {
    let mut s = [0u8; 8];
    let mut c = [0u8; 8];
    s.copy_from_slice(&digest[32..40]);
    c.copy_from_slice(&digest[40..48]);
    (u64::from_be_bytes(s), u64::from_be_bytes(c))
}

/// Sum and count of a root as a chain message carries it (`root_hash` bytes); `None` unless it is a whole
/// digest (48 bytes).
pub fn root_sum_count(root: &[u8]) -> Option<(u64, u64)> {
    <&[u8; DIGEST_LEN]>::try_from(root).ok().map(sum_count)
}

fn digest_of(hash: [u8; 32], sum: u64, count: u64) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    out[..32].copy_from_slice(&hash);
    out[32..40].copy_from_slice(&sum.to_be_bytes());
    out[40..].copy_from_slice(&count.to_be_bytes());
    out
}

/// Leaf encoding: `00 ‖ path ‖ value ‖ weight ‖ count=1` (the stored value hash is `value ‖ weight ‖ 1`).
pub fn leaf_encoding(path: &[u8; 32], value: &[u8], weight: u64) -> Vec<u8> {
    let mut enc = Vec::with_capacity(1 + 32 + value.len() + 16);
    enc.push(0);
    enc.extend_from_slice(path);
    enc.extend_from_slice(value);
    enc.extend_from_slice(&weight.to_be_bytes());
    enc.extend_from_slice(&1u64.to_be_bytes());
    enc
}

/// Hash part of a leaf digest: SHA-256 of [`leaf_encoding`], streamed (no copy of the value).
pub fn leaf_hash(path: &[u8; 32], value: &[u8], weight: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(path);
    h.update(value);
    h.update(weight.to_be_bytes());
    h.update(1u64.to_be_bytes());
    h.finalize().into()
}

/// Leaf digest from its hash.
pub fn leaf_digest(hash: [u8; 32], weight: u64) -> [u8; DIGEST_LEN] {
    digest_of(hash, weight, 1)
}

/// Inner encoding: `01 ‖ left ‖ right ‖ sum ‖ count` with sum/count the children's totals.
pub fn inner_encoding(left: &[u8; DIGEST_LEN], right: &[u8; DIGEST_LEN]) -> [u8; 1 + 2 * DIGEST_LEN + 16] {
    let (ls, lc) = sum_count(left);
    let (rs, rc) = sum_count(right);
    let mut enc = [0u8; 1 + 2 * DIGEST_LEN + 16];
    enc[0] = 1;
    enc[1..49].copy_from_slice(left);
    enc[49..97].copy_from_slice(right);
    enc[97..105].copy_from_slice(&ls.wrapping_add(rs).to_be_bytes());
    enc[105..].copy_from_slice(&lc.wrapping_add(rc).to_be_bytes());
    enc
}

/// Length of an inner encoding.
const INNER_LEN: usize = 1 + 2 * DIGEST_LEN + 16;

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 of a 113-byte inner encoding, padded by hand into its two blocks and fed straight to the compression
/// function (the hot path of `root()`: no streaming buffer).
fn sha256_inner(enc: &[u8; INNER_LEN]) -> [u8; 32] {
    let mut blocks = [[0u8; 64]; 2];
    blocks[0].copy_from_slice(&enc[..64]);
    blocks[1][..INNER_LEN - 64].copy_from_slice(&enc[64..]);
    blocks[1][INNER_LEN - 64] = 0x80;
    blocks[1][56..].copy_from_slice(&((INNER_LEN as u64) * 8).to_be_bytes());
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, &blocks);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Inner digest of two children.
pub fn inner_digest(left: &[u8; DIGEST_LEN], right: &[u8; DIGEST_LEN]) -> [u8; DIGEST_LEN] {
    let enc = inner_encoding(left, right);
    let mut out = [0u8; DIGEST_LEN];
    out[..32].copy_from_slice(&sha256_inner(&enc));
    out[32..].copy_from_slice(&enc[97..]);
    out
}

/// The digest of a node given its encoding (leaf `00` or inner `01`), as the chain hashes `SiblingData`: the
/// SHA-256 of the encoding followed by the encoding's last 16 bytes (sum, count). `None` for other prefixes or
/// encodings too short to carry sum and count.
pub fn digest_of_encoding(encoding: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    match encoding.first() {
        Some(0) if encoding.len() >= 1 + 32 + 16 => {}
        Some(1) if encoding.len() == 1 + 2 * DIGEST_LEN + 16 => {}
        _ => return None,
    }
    let mut out = [0u8; DIGEST_LEN];
    out[..32].copy_from_slice(&sha256(encoding));
    out[32..].copy_from_slice(&encoding[encoding.len() - 16..]);
    Some(out)
}

/// Wraps the digest of a subtree whose leaves all share bits `from..to` of `path` into the chain of inner nodes
/// with empty siblings that the canonical trie has at depths `to−1` down to `from` (spec §5 "Canonical shape").
pub fn wrap_chain(mut digest: [u8; DIGEST_LEN], path: &[u8; 32], from: usize, to: usize) -> [u8; DIGEST_LEN] {
    for depth in (from..to).rev() {
        digest = if bit(path, depth) {
            inner_digest(&PLACEHOLDER, &digest)
        } else {
            inner_digest(&digest, &PLACEHOLDER)
        };
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_padded_inner_hash_is_sha256() {
        for seed in 0u8..32 {
            let mut enc = [0u8; INNER_LEN];
            for (i, b) in enc.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(seed.wrapping_mul(97));
            }
            assert_eq!(sha256_inner(&enc), sha256(&enc));
        }
    }
}
