//! PURE sparse Merkle sum trie, root- and proof-compatible with pokt-network/smt v0.14.1 as poktroll configures it
//! (spec §5): SHA-256 path hasher, no value hasher, weights and counts, 48-byte digests.
//!
//! Shape in RAM: a compressed binary (crit-bit) trie. Only branching nodes and leaves exist; the canonical trie's
//! single-child inner nodes between a branch and its parent are implied and hashed on the fly ([`hash::wrap_chain`]),
//! so digests equal the canonical trie's. RAM holds structure and digests only; leaf values (relay bytes, often
//! KBs) live in the [`NodeStore`] and load when a proof needs them (until the next commit they sit in one pending
//! byte buffer).
//!
//! Layout, chosen for the insert path (issue #3):
//! - leaves: one arena of `path ‖ hash ‖ weight` (72 B);
//! - branches: a *hot* arena of `left, right, depth, flags` (12 B, the only thing a descent reads, so the whole
//!   structure of a 1e6-leaf trie is ~12 MB and stays in cache) and a parallel *cold* arena of the cached digest
//!   `hash, sum, count` (48 B), touched only by hashing and commit.
//!
//! Bookkeeping lives in the nodes, not in side sets: a branch carries two flags, `DIRTY` (digest stale) and
//! `UNSAVED` (record not yet committed). Any change marks every ancestor on its path with both, so both sets are
//! *ancestor-closed*: a flagged node's parent is flagged too. [`Smst::root`] therefore rehashes by recursing
//! into dirty branches only, and [`Smst::commit`] finds every changed branch by descending into unsaved ones only;
//! an insert costs one descent (recording the path), one crit-bit compare and a few flag writes on cache-hot
//! nodes. A leaf is unsaved exactly when it has a pending value, so leaves need no flag. Only deletions (rare) use
//! sets, of removed ids.
//!
//! Hashing is lazy: a leaf's own hash is computed at insert (its value is at hand then), all inner digests at
//! [`Smst::root`]. Rehashing returns a leaf under each rehashed subtree, so the chain bits of a fresh branch come
//! for free; only a clean branch below a dirty one walks down its leftmost spine (hot arena only) for them.
//!
//! Persistence: [`Smst::commit`] writes one [`NodeBatch`] with every changed record (branches and leaf metadata
//! keyed by stable node ids, pending leaf values, the root record) and the deletions of removed nodes;
//! [`Smst::open`] rebuilds the structure from the store (values stay there). No tokio, no IO besides the store.

pub mod hash;
mod proof;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use storage::{NodeBatch, NodeStore, StorageError};

use self::hash::{DIGEST_LEN, PLACEHOLDER, bit, leaf_digest, leaf_hash, wrap_chain};
use crate::protocol::sha256;

pub use proof::{ClosestProof, ProofError, verify_closest_proof, verify_compact_closest_proof, verify_proof_for_claim};

/// Errors of trie operations.
#[derive(Debug, thiserror::Error)]
pub enum SmstError {
    /// The node store failed.
    #[error("trie store: {0}")]
    Store(#[from] StorageError),
    /// A stored record is malformed or missing (the store does not hold what this trie wrote).
    #[error("trie store is inconsistent: {0}")]
    Corrupt(String),
    /// Proving against an empty trie.
    #[error("cannot prove against an empty trie")]
    Empty,
}

const EMPTY: u32 = u32::MAX;
const LEAF_FLAG: u32 = 1 << 31;

fn is_leaf(r: u32) -> bool {
    r != EMPTY && r & LEAF_FLAG != 0
}

fn index(r: u32) -> usize {
    (r & !LEAF_FLAG) as usize
}

/// Branch flag: the cached digest is stale.
const DIRTY: u8 = 1;
/// Branch flag: the stored record is stale.
const UNSAVED: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Leaf {
    path: [u8; 32],
    hash: [u8; 32],
    weight: u64,
}

/// The structural part of a branch (what descents read).
#[derive(Debug, Clone, Copy)]
struct Branch {
    left: u32,
    right: u32,
    depth: u16,
    flags: u8,
}

/// The cached digest of a branch (valid when the branch is not `DIRTY`).
#[derive(Debug, Clone, Copy, Default)]
struct BranchHash {
    hash: [u8; 32],
    sum: u64,
    count: u64,
}

impl BranchHash {
    fn digest(&self) -> [u8; DIGEST_LEN] {
        let mut digest = [0u8; DIGEST_LEN];
        digest[..32].copy_from_slice(&self.hash);
        digest[32..40].copy_from_slice(&self.sum.to_be_bytes());
        digest[40..].copy_from_slice(&self.count.to_be_bytes());
        digest
    }
}

#[derive(Debug, Clone, Copy)]
enum Link {
    Root,
    Left(usize),
    Right(usize),
}

/// Hasher for node ids (dense `u32`s): one multiply, no SipHash (ids are not attacker-chosen).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = (self.0 ^ u64::from(id)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

/// Pending buffers larger than this are released at commit rather than kept for reuse.
const KEEP_PENDING_BYTES: usize = 4 << 20;
/// Pending-value maps with more slots than this are released at commit rather than kept for reuse.
const KEEP_PENDING_IDS: usize = 1 << 16;

/// A sparse Merkle sum trie over a node store.
#[derive(Debug)]
pub struct Smst<S: NodeStore> {
    store: S,
    leaves: Vec<Leaf>,
    branches: Vec<Branch>,
    branch_hashes: Vec<BranchHash>,
    free_leaves: Vec<u32>,
    free_branches: Vec<u32>,
    root: u32,
    /// Values of leaves written since the last commit: leaf id → range in `pending_bytes`.
    pending_values: HashMap<u32, (usize, usize), IdBuild>,
    pending_bytes: Vec<u8>,
    removed_leaves: HashSet<u32, IdBuild>,
    removed_branches: HashSet<u32, IdBuild>,
    /// Branches on the current insert's path (reused buffer).
    path_scratch: Vec<u32>,
    root_dirty: bool,
}

fn key(kind: u8, id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(kind);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

const ROOT_KEY: &[u8] = b"R";

/// The first bit where `a` and `b` differ, MSB-first.
fn crit_bit(a: &[u8; 32], b: &[u8; 32]) -> Option<usize> {
    for (i, (x, y)) in a.chunks_exact(8).zip(b.chunks_exact(8)).enumerate() {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        let diff = u64::from_be_bytes(wx) ^ u64::from_be_bytes(wy);
        if diff != 0 {
            return Some(i * 64 + diff.leading_zeros() as usize);
        }
    }
    None
}

impl<S: NodeStore> Smst<S> {
    /// An empty trie writing to `store` (which must not hold another trie).
    pub fn new(store: S) -> Self {
        Self {
            store,
            leaves: Vec::new(),
            branches: Vec::new(),
            branch_hashes: Vec::new(),
            free_leaves: Vec::new(),
            free_branches: Vec::new(),
            root: EMPTY,
            pending_values: HashMap::default(),
            pending_bytes: Vec::new(),
            removed_leaves: HashSet::default(),
            removed_branches: HashSet::default(),
            path_scratch: Vec::new(),
            root_dirty: false,
        }
    }

    /// Reopens the trie last committed to `store` (an empty trie when the store holds none).
    pub fn open(store: S) -> Result<Self, SmstError> {
        let mut trie = Self::new(store);
        let Some(record) = trie.store.get(ROOT_KEY)? else {
            return Ok(trie);
        };
        if record.len() != 12 {
            return Err(SmstError::Corrupt("root record".into()));
        }
        let word = |i: usize| u32::from_be_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
        let (root, leaf_len, branch_len) = (word(0), word(4) as usize, word(8) as usize);
        let placeholder_leaf = Leaf {
            path: [0; 32],
            hash: [0; 32],
            weight: 0,
        };
        let placeholder_branch = Branch {
            left: EMPTY,
            right: EMPTY,
            depth: 0,
            flags: 0,
        };
        trie.leaves = vec![placeholder_leaf; leaf_len];
        trie.branches = vec![placeholder_branch; branch_len];
        trie.branch_hashes = vec![BranchHash::default(); branch_len];
        let mut seen_leaves = vec![false; leaf_len];
        let mut seen_branches = vec![false; branch_len];
        let mut stack = vec![root];
        while let Some(r) = stack.pop() {
            if r == EMPTY {
                continue;
            }
            let i = index(r);
            if is_leaf(r) {
                let bytes = trie
                    .store
                    .get(&key(b'L', i as u32))?
                    .ok_or_else(|| SmstError::Corrupt(format!("leaf {i}")))?;
                let slot = trie
                    .leaves
                    .get_mut(i)
                    .ok_or_else(|| SmstError::Corrupt(format!("leaf id {i}")))?;
                *slot = decode_leaf(&bytes).ok_or_else(|| SmstError::Corrupt(format!("leaf record {i}")))?;
                seen_leaves[i] = true;
            } else {
                let bytes = trie
                    .store
                    .get(&key(b'B', i as u32))?
                    .ok_or_else(|| SmstError::Corrupt(format!("branch {i}")))?;
                let (branch, hash) =
                    decode_branch(&bytes).ok_or_else(|| SmstError::Corrupt(format!("branch record {i}")))?;
                if i >= branch_len {
                    return Err(SmstError::Corrupt(format!("branch id {i}")));
                }
                if seen_branches[i] {
                    return Err(SmstError::Corrupt(format!("branch {i} reachable twice")));
                }
                trie.branches[i] = branch;
                trie.branch_hashes[i] = hash;
                seen_branches[i] = true;
                stack.push(branch.left);
                stack.push(branch.right);
            }
        }
        trie.free_leaves = (0..leaf_len as u32).filter(|i| !seen_leaves[*i as usize]).collect();
        trie.free_branches = (0..branch_len as u32).filter(|i| !seen_branches[*i as usize]).collect();
        trie.root = root;
        Ok(trie)
    }

    /// The store (e.g. to inspect what a commit wrote).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Inserts or overwrites the leaf of `key` (path = SHA256(key)) with `value` and `weight`.
    pub fn update(&mut self, key: &[u8], value: &[u8], weight: u64) {
        let path = sha256(key);
        let hash = leaf_hash(&path, value, weight);
        let new_leaf = Leaf { path, hash, weight };
        self.root_dirty = true;
        if self.root == EMPTY {
            let id = self.alloc_leaf(new_leaf, value);
            self.root = id | LEAF_FLAG;
            return;
        }
        // One descent to the closest leaf, remembering the branches passed (their depths ascend).
        let mut trail = std::mem::take(&mut self.path_scratch);
        trail.clear();
        let mut r = self.root;
        while !is_leaf(r) {
            let i = index(r);
            trail.push(i as u32);
            let b = &self.branches[i];
            r = if bit(&path, b.depth as usize) { b.right } else { b.left };
        }
        let leaf_id = index(r) as u32;
        match crit_bit(&path, &self.leaves[leaf_id as usize].path) {
            None => {
                // Same path: overwrite the leaf in place and flag all its ancestors.
                self.mark(&trail);
                self.leaves[leaf_id as usize] = new_leaf;
                self.set_pending(leaf_id, value);
            }
            Some(crit) => {
                // The new branch goes above the first branch on the trail that is deeper than the crit bit.
                let above = trail.partition_point(|&i| (self.branches[i as usize].depth as usize) < crit);
                let (target, link) = match above.checked_sub(1) {
                    None => (self.root, Link::Root),
                    Some(p) => {
                        let parent = trail[p] as usize;
                        let b = &self.branches[parent];
                        if bit(&path, b.depth as usize) {
                            (b.right, Link::Right(parent))
                        } else {
                            (b.left, Link::Left(parent))
                        }
                    }
                };
                self.mark(&trail[..above]);
                let leaf_ref = self.alloc_leaf(new_leaf, value) | LEAF_FLAG;
                let (left, right) = if bit(&path, crit) {
                    (target, leaf_ref)
                } else {
                    (leaf_ref, target)
                };
                let branch_ref = self.alloc_branch(Branch {
                    left,
                    right,
                    depth: crit as u16,
                    flags: DIRTY | UNSAVED,
                });
                self.set_link(link, branch_ref);
            }
        }
        self.path_scratch = trail;
    }

    /// Inserts a mined relay (§5): key = relay hash, value = relay bytes, weight = compute units per relay.
    pub fn insert_relay(&mut self, relay_hash: &[u8; 32], relay_bytes: &[u8], weight: u64) {
        self.update(relay_hash, relay_bytes, weight);
    }

    /// Removes the leaf of `key`; returns whether it existed.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let path = sha256(key);
        if self.root == EMPTY || self.leaves[index(self.descend_to_leaf(&path))].path != path {
            return false;
        }
        // Walk again, flagging every ancestor and remembering the parent branch and the link pointing at it.
        let mut parent: Option<(usize, Link)> = None;
        let mut link_to_r = Link::Root;
        let mut r = self.root;
        while !is_leaf(r) {
            let i = index(r);
            self.branches[i].flags = DIRTY | UNSAVED;
            let b = self.branches[i];
            parent = Some((i, link_to_r));
            let right = bit(&path, b.depth as usize);
            link_to_r = if right { Link::Right(i) } else { Link::Left(i) };
            r = if right { b.right } else { b.left };
        }
        self.free_leaf(index(r) as u32);
        self.root_dirty = true;
        match parent {
            None => self.root = EMPTY,
            Some((p, link_to_parent)) => {
                let b = self.branches[p];
                let sibling = if b.left == r { b.right } else { b.left };
                self.set_link(link_to_parent, sibling);
                self.free_branch(p as u32);
            }
        }
        true
    }

    /// The value and weight stored for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>, SmstError> {
        let path = sha256(key);
        if self.root == EMPTY {
            return Ok(None);
        }
        let r = self.descend_to_leaf(&path);
        let leaf = self.leaves[index(r)];
        if leaf.path != path {
            return Ok(None);
        }
        Ok(Some((self.leaf_value(index(r) as u32)?, leaf.weight)))
    }

    /// The 48-byte root digest (`hash ‖ sum ‖ count`); 48 zero bytes when empty.
    pub fn root(&mut self) -> [u8; DIGEST_LEN] {
        self.subtree_digest(self.root, 0)
    }

    /// Total weight of all leaves.
    pub fn sum(&mut self) -> u64 {
        hash::sum_count(&self.root()).0
    }

    /// Number of leaves.
    pub fn count(&mut self) -> u64 {
        hash::sum_count(&self.root()).1
    }

    /// Writes every change since the last commit as one batch: changed branch and leaf records, pending values,
    /// the root record, and deletions of removed nodes.
    pub fn commit(&mut self) -> Result<(), SmstError> {
        self.root();
        let mut batch = NodeBatch::default();
        // Unsaved branches are ancestor-closed: descend into them only.
        let mut stack = Vec::new();
        if self.root != EMPTY && !is_leaf(self.root) {
            stack.push(index(self.root));
        }
        while let Some(i) = stack.pop() {
            let b = self.branches[i];
            if b.flags & UNSAVED == 0 {
                continue;
            }
            self.branches[i].flags &= !UNSAVED;
            batch
                .puts
                .push((key(b'B', i as u32), encode_branch(&b, &self.branch_hashes[i])));
            for child in [b.left, b.right] {
                if child != EMPTY && !is_leaf(child) {
                    stack.push(index(child));
                }
            }
        }
        for (&id, &(start, end)) in &self.pending_values {
            if let Some(l) = self.leaves.get(id as usize) {
                batch.puts.push((key(b'L', id), encode_leaf(l)));
            }
            batch
                .puts
                .push((key(b'V', id), self.pending_bytes[start..end].to_vec()));
        }
        // Reused ids leave the removed sets when reallocated, so no key is both put and deleted.
        for &id in &self.removed_branches {
            batch.deletes.push(key(b'B', id));
        }
        for &id in &self.removed_leaves {
            batch.deletes.push(key(b'L', id));
            batch.deletes.push(key(b'V', id));
        }
        let mut root = Vec::with_capacity(12);
        root.extend_from_slice(&self.root.to_be_bytes());
        root.extend_from_slice(&(self.leaves.len() as u32).to_be_bytes());
        root.extend_from_slice(&(self.branches.len() as u32).to_be_bytes());
        batch.puts.push((ROOT_KEY.to_vec(), root));
        // Sorted keys: backends write in key order (fast B-tree inserts, deterministic raft entries).
        batch.puts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        batch.deletes.sort_unstable();
        if let Err(e) = self.store.write_batch(batch) {
            // Nothing was written: flag the whole structure unsaved again so the next commit rewrites it.
            self.mark_all_unsaved();
            return Err(e.into());
        }
        // Reuse the pending buffers for the next round unless a large round left them big.
        if self.pending_bytes.capacity() > KEEP_PENDING_BYTES {
            self.pending_bytes = Vec::new();
        } else {
            self.pending_bytes.clear();
        }
        if self.pending_values.capacity() > KEEP_PENDING_IDS {
            self.pending_values = HashMap::default();
        } else {
            self.pending_values.clear();
        }
        self.removed_branches.clear();
        self.removed_leaves.clear();
        self.root_dirty = false;
        Ok(())
    }

    /// Whether there are changes not yet committed.
    pub fn has_uncommitted_changes(&self) -> bool {
        self.root_dirty || !self.pending_values.is_empty()
    }

    /// Bytes of RAM held by the structure (arenas at capacity plus uncommitted values).
    pub fn resident_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.branches.capacity() * std::mem::size_of::<Branch>()
            + self.branch_hashes.capacity() * std::mem::size_of::<BranchHash>()
            + (self.free_leaves.capacity() + self.free_branches.capacity()) * 4
            + self.pending_bytes.capacity()
            + self.pending_values.capacity() * (4 + 16 + 1)
    }

    // ---- internals ----

    /// Flags the branches `ids` dirty and unsaved.
    fn mark(&mut self, ids: &[u32]) {
        for &i in ids {
            self.branches[i as usize].flags = DIRTY | UNSAVED;
        }
    }

    /// After a failed store write: every live branch unsaved (pending values and removed sets are still held).
    fn mark_all_unsaved(&mut self) {
        for b in &mut self.branches {
            b.flags |= UNSAVED;
        }
    }

    fn set_pending(&mut self, id: u32, value: &[u8]) {
        let start = self.pending_bytes.len();
        self.pending_bytes.extend_from_slice(value);
        self.pending_values.insert(id, (start, self.pending_bytes.len()));
    }

    fn alloc_leaf(&mut self, leaf: Leaf, value: &[u8]) -> u32 {
        let id = match self.free_leaves.pop() {
            Some(id) => {
                self.leaves[id as usize] = leaf;
                self.removed_leaves.remove(&id);
                id
            }
            None => {
                self.leaves.push(leaf);
                (self.leaves.len() - 1) as u32
            }
        };
        self.set_pending(id, value);
        id
    }

    fn free_leaf(&mut self, id: u32) {
        self.free_leaves.push(id);
        self.pending_values.remove(&id);
        self.removed_leaves.insert(id);
    }

    fn alloc_branch(&mut self, branch: Branch) -> u32 {
        match self.free_branches.pop() {
            Some(id) => {
                self.branches[id as usize] = branch;
                self.removed_branches.remove(&id);
                id
            }
            None => {
                self.branches.push(branch);
                self.branch_hashes.push(BranchHash::default());
                (self.branches.len() - 1) as u32
            }
        }
    }

    fn free_branch(&mut self, id: u32) {
        self.free_branches.push(id);
        self.removed_branches.insert(id);
    }

    fn set_link(&mut self, link: Link, target: u32) {
        self.root_dirty = true;
        match link {
            Link::Root => self.root = target,
            Link::Left(p) => self.branches[p].left = target,
            Link::Right(p) => self.branches[p].right = target,
        }
    }

    /// Follows `path` from the root to a leaf (the trie must not be empty).
    fn descend_to_leaf(&self, path: &[u8; 32]) -> u32 {
        let mut r = self.root;
        while !is_leaf(r) && r != EMPTY {
            let b = &self.branches[index(r)];
            r = if bit(path, b.depth as usize) { b.right } else { b.left };
        }
        r
    }

    /// Some leaf under `r` (the leftmost): its path carries the bits all leaves of the subtree share.
    fn representative_leaf(&self, mut r: u32) -> usize {
        while !is_leaf(r) {
            r = self.branches[index(r)].left;
        }
        index(r)
    }

    /// Any leaf path under `r` (the leftmost), for the bits all leaves of the subtree share.
    fn representative_path(&self, r: u32) -> [u8; 32] {
        self.leaves[self.representative_leaf(r)].path
    }

    /// Digest of the subtree `r` placed at depth `d` (chain levels between `d` and a branch's depth included).
    fn subtree_digest(&mut self, r: u32, d: usize) -> [u8; DIGEST_LEN] {
        self.digest_and_leaf(r, d).0
    }

    /// [`Self::subtree_digest`], rehashing dirty branches, plus a leaf id under `r` when one was at hand (`EMPTY`
    /// otherwise), so a dirty parent's chain bits need no walk.
    fn digest_and_leaf(&mut self, r: u32, d: usize) -> ([u8; DIGEST_LEN], u32) {
        if r == EMPTY {
            return (PLACEHOLDER, EMPTY);
        }
        if is_leaf(r) {
            let leaf = &self.leaves[index(r)];
            return (leaf_digest(leaf.hash, leaf.weight), index(r) as u32);
        }
        let i = index(r);
        let b = self.branches[i];
        let depth = b.depth as usize;
        let (mut digest, mut leaf) = if b.flags & DIRTY != 0 {
            let (left, leaf) = self.digest_and_leaf(b.left, depth + 1);
            let (right, _) = self.digest_and_leaf(b.right, depth + 1);
            let digest = hash::inner_digest(&left, &right);
            let (sum, count) = hash::sum_count(&digest);
            let mut h = [0u8; 32];
            h.copy_from_slice(&digest[..32]);
            self.branch_hashes[i] = BranchHash { hash: h, sum, count };
            self.branches[i].flags &= !DIRTY;
            (digest, leaf)
        } else {
            (self.branch_hashes[i].digest(), EMPTY)
        };
        if depth > d {
            if leaf == EMPTY {
                leaf = self.representative_leaf(r) as u32;
            }
            let prefix = self.leaves[leaf as usize].path;
            digest = wrap_chain(digest, &prefix, d, depth);
        }
        (digest, leaf)
    }

    fn leaf_value(&self, id: u32) -> Result<Vec<u8>, SmstError> {
        if let Some(&(start, end)) = self.pending_values.get(&id) {
            return Ok(self.pending_bytes[start..end].to_vec());
        }
        self.store
            .get(&key(b'V', id))?
            .ok_or_else(|| SmstError::Corrupt(format!("value of leaf {id}")))
    }
}

fn encode_leaf(l: &Leaf) -> Vec<u8> {
    let mut out = Vec::with_capacity(72);
    out.extend_from_slice(&l.path);
    out.extend_from_slice(&l.hash);
    out.extend_from_slice(&l.weight.to_be_bytes());
    out
}

fn decode_leaf(b: &[u8]) -> Option<Leaf> {
    if b.len() != 72 {
        return None;
    }
    let mut path = [0u8; 32];
    let mut hash = [0u8; 32];
    path.copy_from_slice(&b[..32]);
    hash.copy_from_slice(&b[32..64]);
    Some(Leaf {
        path,
        hash,
        weight: u64::from_be_bytes(b[64..72].try_into().ok()?),
    })
}

fn encode_branch(b: &Branch, h: &BranchHash) -> Vec<u8> {
    let mut out = Vec::with_capacity(58);
    out.extend_from_slice(&h.hash);
    out.extend_from_slice(&h.sum.to_be_bytes());
    out.extend_from_slice(&h.count.to_be_bytes());
    out.extend_from_slice(&b.left.to_be_bytes());
    out.extend_from_slice(&b.right.to_be_bytes());
    out.extend_from_slice(&b.depth.to_be_bytes());
    out
}

fn decode_branch(b: &[u8]) -> Option<(Branch, BranchHash)> {
    if b.len() != 58 {
        return None;
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[..32]);
    let branch = Branch {
        left: u32::from_be_bytes(b[48..52].try_into().ok()?),
        right: u32::from_be_bytes(b[52..56].try_into().ok()?),
        depth: u16::from_be_bytes(b[56..58].try_into().ok()?),
        flags: 0,
    };
    let digest = BranchHash {
        hash,
        sum: u64::from_be_bytes(b[32..40].try_into().ok()?),
        count: u64::from_be_bytes(b[40..48].try_into().ok()?),
    };
    Some((branch, digest))
}

#[cfg(test)]
mod tests;
