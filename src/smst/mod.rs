//! PURE sparse Merkle sum trie, root- and proof-compatible with pokt-network/smt v0.14.1 as poktroll configures it
//! (spec §5): SHA-256 path hasher, no value hasher, weights and counts, 48-byte digests.
//!
//! Shape in RAM: a compressed binary (crit-bit) trie. Only branching nodes and leaves exist; the canonical trie's
//! single-child inner nodes between a branch and its parent are implied and hashed on the fly ([`hash::wrap_chain`]),
//! so digests equal the canonical trie's. RAM holds structure and digests only (leaf: path, hash, weight = 72 B;
//! branch: 64 B); leaf values (relay bytes, often KBs) live in the [`NodeStore`] and load when a proof needs them.
//! Hashes are computed lazily: inserts mark ancestors dirty and [`Smst::root`] rehashes only dirty branches.
//!
//! Persistence: [`Smst::commit`] writes one [`NodeBatch`] with every changed record (branches and leaf metadata
//! keyed by stable node ids, pending leaf values, the root record) and the deletions of removed nodes;
//! [`Smst::open`] rebuilds the structure from the store (values stay there). No tokio, no IO besides the store.

pub mod hash;
mod proof;

use std::collections::{HashMap, HashSet};

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

#[derive(Debug, Clone, Copy)]
struct Leaf {
    path: [u8; 32],
    hash: [u8; 32],
    weight: u64,
}

#[derive(Debug, Clone, Copy)]
struct Branch {
    hash: [u8; 32],
    sum: u64,
    count: u64,
    left: u32,
    right: u32,
    depth: u16,
    dirty: bool,
}

#[derive(Debug, Clone, Copy)]
enum Link {
    Root,
    Left(usize),
    Right(usize),
}

/// A sparse Merkle sum trie over a node store.
#[derive(Debug)]
pub struct Smst<S: NodeStore> {
    store: S,
    leaves: Vec<Leaf>,
    branches: Vec<Branch>,
    free_leaves: Vec<u32>,
    free_branches: Vec<u32>,
    root: u32,
    /// Values of leaves written since the last commit, by leaf id.
    pending_values: HashMap<u32, Vec<u8>>,
    unsaved_leaves: HashSet<u32>,
    unsaved_branches: HashSet<u32>,
    removed_leaves: HashSet<u32>,
    removed_branches: HashSet<u32>,
    root_dirty: bool,
}

fn key(kind: u8, id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(kind);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

const ROOT_KEY: &[u8] = b"R";

impl<S: NodeStore> Smst<S> {
    /// An empty trie writing to `store` (which must not hold another trie).
    pub fn new(store: S) -> Self {
        Self {
            store,
            leaves: Vec::new(),
            branches: Vec::new(),
            free_leaves: Vec::new(),
            free_branches: Vec::new(),
            root: EMPTY,
            pending_values: HashMap::new(),
            unsaved_leaves: HashSet::new(),
            unsaved_branches: HashSet::new(),
            removed_leaves: HashSet::new(),
            removed_branches: HashSet::new(),
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
            hash: [0; 32],
            sum: 0,
            count: 0,
            left: EMPTY,
            right: EMPTY,
            depth: 0,
            dirty: false,
        };
        trie.leaves = vec![placeholder_leaf; leaf_len];
        trie.branches = vec![placeholder_branch; branch_len];
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
                let branch = decode_branch(&bytes).ok_or_else(|| SmstError::Corrupt(format!("branch record {i}")))?;
                let slot = trie
                    .branches
                    .get_mut(i)
                    .ok_or_else(|| SmstError::Corrupt(format!("branch id {i}")))?;
                if seen_branches[i] {
                    return Err(SmstError::Corrupt(format!("branch {i} reachable twice")));
                }
                *slot = branch;
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
        if self.root == EMPTY {
            let id = self.alloc_leaf(new_leaf, value);
            self.root = id | LEAF_FLAG;
            self.root_dirty = true;
            return;
        }
        let closest = self.leaves[index(self.descend_to_leaf(&path))].path;
        let crit = (0..256).find(|&i| bit(&path, i) != bit(&closest, i));
        let Some(crit) = crit else {
            // Same path: overwrite the leaf in place and dirty its ancestors.
            let (leaf_ref, _) = self.walk_marking(&path, 256);
            let id = index(leaf_ref) as u32;
            self.leaves[id as usize] = new_leaf;
            self.pending_values.insert(id, value.to_vec());
            self.unsaved_leaves.insert(id);
            self.root_dirty = true;
            return;
        };
        let (target, link) = self.walk_marking(&path, crit);
        let leaf_ref = self.alloc_leaf(new_leaf, value) | LEAF_FLAG;
        let (left, right) = if bit(&path, crit) {
            (target, leaf_ref)
        } else {
            (leaf_ref, target)
        };
        let branch = Branch {
            hash: [0; 32],
            sum: 0,
            count: 0,
            left,
            right,
            depth: crit as u16,
            dirty: true,
        };
        let branch_ref = self.alloc_branch(branch);
        self.set_link(link, branch_ref);
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
        // Walk again, dirtying every ancestor and remembering the parent branch and the link pointing at it.
        let mut parent: Option<(usize, Link)> = None;
        let mut link_to_r = Link::Root;
        let mut r = self.root;
        while !is_leaf(r) {
            let i = index(r);
            self.branches[i].dirty = true;
            self.unsaved_branches.insert(i as u32);
            let b = self.branches[i];
            parent = Some((i, link_to_r));
            let right = bit(&path, b.depth as usize);
            link_to_r = if right { Link::Right(i) } else { Link::Left(i) };
            r = if right { b.right } else { b.left };
        }
        self.free_leaf(index(r) as u32);
        match parent {
            None => {
                self.root = EMPTY;
                self.root_dirty = true;
            }
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
        let mut put_keys = HashSet::new();
        for &id in &self.unsaved_branches {
            if let Some(b) = self.branches.get(id as usize) {
                let k = key(b'B', id);
                put_keys.insert(k.clone());
                batch.puts.push((k, encode_branch(b)));
            }
        }
        for &id in &self.unsaved_leaves {
            if let Some(l) = self.leaves.get(id as usize) {
                let k = key(b'L', id);
                put_keys.insert(k.clone());
                batch.puts.push((k, encode_leaf(l)));
            }
        }
        for (id, value) in self.pending_values.drain() {
            let k = key(b'V', id);
            put_keys.insert(k.clone());
            batch.puts.push((k, value));
        }
        for &id in &self.removed_branches {
            let k = key(b'B', id);
            if !put_keys.contains(&k) {
                batch.deletes.push(k);
            }
        }
        for &id in &self.removed_leaves {
            for kind in [b'L', b'V'] {
                let k = key(kind, id);
                if !put_keys.contains(&k) {
                    batch.deletes.push(k);
                }
            }
        }
        let mut root = Vec::with_capacity(12);
        root.extend_from_slice(&self.root.to_be_bytes());
        root.extend_from_slice(&(self.leaves.len() as u32).to_be_bytes());
        root.extend_from_slice(&(self.branches.len() as u32).to_be_bytes());
        batch.puts.push((ROOT_KEY.to_vec(), root));
        // Sorted keys: backends write in key order (fast B-tree inserts, deterministic raft entries).
        batch.puts.sort_by(|a, b| a.0.cmp(&b.0));
        batch.deletes.sort();
        self.store.write_batch(batch)?;
        self.unsaved_branches.clear();
        self.unsaved_leaves.clear();
        self.removed_branches.clear();
        self.removed_leaves.clear();
        self.root_dirty = false;
        Ok(())
    }

    /// Whether there are changes not yet committed.
    pub fn has_uncommitted_changes(&self) -> bool {
        self.root_dirty || !self.unsaved_branches.is_empty() || !self.unsaved_leaves.is_empty()
    }

    /// Bytes of RAM held by the structure (arenas at capacity plus uncommitted values).
    pub fn resident_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.branches.capacity() * std::mem::size_of::<Branch>()
            + self.pending_values.values().map(|v| v.capacity() + 32).sum::<usize>()
    }

    // ---- internals ----

    fn alloc_leaf(&mut self, leaf: Leaf, value: &[u8]) -> u32 {
        let id = match self.free_leaves.pop() {
            Some(id) => {
                self.leaves[id as usize] = leaf;
                id
            }
            None => {
                self.leaves.push(leaf);
                (self.leaves.len() - 1) as u32
            }
        };
        self.removed_leaves.remove(&id);
        self.unsaved_leaves.insert(id);
        self.pending_values.insert(id, value.to_vec());
        id
    }

    fn free_leaf(&mut self, id: u32) {
        self.free_leaves.push(id);
        self.unsaved_leaves.remove(&id);
        self.pending_values.remove(&id);
        self.removed_leaves.insert(id);
    }

    fn alloc_branch(&mut self, branch: Branch) -> u32 {
        let id = match self.free_branches.pop() {
            Some(id) => {
                self.branches[id as usize] = branch;
                id
            }
            None => {
                self.branches.push(branch);
                (self.branches.len() - 1) as u32
            }
        };
        self.removed_branches.remove(&id);
        self.unsaved_branches.insert(id);
        id
    }

    fn free_branch(&mut self, id: u32) {
        self.free_branches.push(id);
        self.unsaved_branches.remove(&id);
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

    /// Follows `path` through branches with depth < `limit`, marking them dirty; returns the first node not
    /// followed and the link pointing at it.
    fn walk_marking(&mut self, path: &[u8; 32], limit: usize) -> (u32, Link) {
        let mut link = Link::Root;
        let mut r = self.root;
        while !is_leaf(r) && r != EMPTY {
            let i = index(r);
            let b = self.branches[i];
            if b.depth as usize >= limit {
                break;
            }
            self.branches[i].dirty = true;
            self.unsaved_branches.insert(i as u32);
            let right = bit(path, b.depth as usize);
            link = if right { Link::Right(i) } else { Link::Left(i) };
            r = if right { b.right } else { b.left };
        }
        (r, link)
    }

    /// Any leaf path under `r` (the leftmost), for the bits all leaves of the subtree share.
    fn representative_path(&self, mut r: u32) -> [u8; 32] {
        while !is_leaf(r) {
            r = self.branches[index(r)].left;
        }
        self.leaves[index(r)].path
    }

    /// Digest of the subtree `r` placed at depth `d` (chain levels between `d` and a branch's depth included).
    fn subtree_digest(&mut self, r: u32, d: usize) -> [u8; DIGEST_LEN] {
        if r == EMPTY {
            return PLACEHOLDER;
        }
        if is_leaf(r) {
            let leaf = &self.leaves[index(r)];
            return leaf_digest(leaf.hash, leaf.weight);
        }
        let i = index(r);
        self.rehash_branch(i);
        let b = self.branches[i];
        let mut digest = [0u8; DIGEST_LEN];
        digest[..32].copy_from_slice(&b.hash);
        digest[32..40].copy_from_slice(&b.sum.to_be_bytes());
        digest[40..].copy_from_slice(&b.count.to_be_bytes());
        let depth = b.depth as usize;
        if depth > d {
            let prefix = self.representative_path(r);
            digest = wrap_chain(digest, &prefix, d, depth);
        }
        digest
    }

    fn rehash_branch(&mut self, i: usize) {
        if !self.branches[i].dirty {
            return;
        }
        let b = self.branches[i];
        let depth = b.depth as usize;
        let left = self.subtree_digest(b.left, depth + 1);
        let right = self.subtree_digest(b.right, depth + 1);
        let digest = hash::inner_digest(&left, &right);
        let (sum, count) = hash::sum_count(&digest);
        let slot = &mut self.branches[i];
        slot.hash.copy_from_slice(&digest[..32]);
        slot.sum = sum;
        slot.count = count;
        slot.dirty = false;
    }

    fn leaf_value(&self, id: u32) -> Result<Vec<u8>, SmstError> {
        if let Some(v) = self.pending_values.get(&id) {
            return Ok(v.clone());
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

fn encode_branch(b: &Branch) -> Vec<u8> {
    let mut out = Vec::with_capacity(58);
    out.extend_from_slice(&b.hash);
    out.extend_from_slice(&b.sum.to_be_bytes());
    out.extend_from_slice(&b.count.to_be_bytes());
    out.extend_from_slice(&b.left.to_be_bytes());
    out.extend_from_slice(&b.right.to_be_bytes());
    out.extend_from_slice(&b.depth.to_be_bytes());
    out
}

fn decode_branch(b: &[u8]) -> Option<Branch> {
    if b.len() != 58 {
        return None;
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[..32]);
    Some(Branch {
        hash,
        sum: u64::from_be_bytes(b[32..40].try_into().ok()?),
        count: u64::from_be_bytes(b[40..48].try_into().ok()?),
        left: u32::from_be_bytes(b[48..52].try_into().ok()?),
        right: u32::from_be_bytes(b[52..56].try_into().ok()?),
        depth: u16::from_be_bytes(b[56..58].try_into().ok()?),
        dirty: false,
    })
}

#[cfg(test)]
mod tests;
