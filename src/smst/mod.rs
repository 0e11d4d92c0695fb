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
//! Bookkeeping lives in the nodes, not in side sets: a branch carries a `DIRTY` flag (digest stale). Any change
//! marks every ancestor on its path, so the flagged set is *ancestor-closed*: a flagged node's parent is flagged
//! too, and [`Smst::root`] rehashes by recursing into dirty branches only. An insert costs one descent (recording
//! the path), one crit-bit compare and a few flag writes on cache-hot nodes. Leaf count and weight sum are kept as
//! running totals, so [`Smst::count`] and [`Smst::sum`] hash nothing.
//!
//! Hashing is lazy: a leaf's own hash is computed at insert (its value is at hand then), all inner digests at
//! [`Smst::root`]. Rehashing returns a leaf under each rehashed subtree, so the chain bits of a fresh branch come
//! for free; only a clean branch below a dirty one walks down its leftmost spine (hot arena only) for them.
//!
//! Persistence: only leaves are stored. A crit-bit trie is determined by its set of leaf paths, so branches and
//! their digests are derived data: [`Smst::open`] rebuilds the branches from the stored leaves (one pass in
//! path order) and the first [`Smst::root`] rehashes them. [`Smst::commit`] writes one [`NodeBatch`] with the
//! leaves changed since the last commit (`L` + id: path, hash, weight; `V` + id: the value), deletions of
//! removed leaves, and the root record (`R`: the leaf id bound).
//! Leaf ids are allocated densely and reused, so the records of a commit are mostly appends in key order.
//!
//! Why not branches too: every insert changes the digest of each of its ~log2(n) ancestors, at random places
//! in the store. Persisting them cost ~21 branch records per relay at 1e6 leaves, written every ingest round
//! (100 ms), which made the miner the largest writer on the disk the relay WAL `fdatasync`s on (and the largest
//! user of Redis memory and raft log bytes in those modes). Now a relay costs two records, and hashing happens
//! once per claim or proof instead of once per ingest round.
//!
//! Store format: the root record is 8 bytes (`leaf id bound u32 ‖ format 2 u32`). Format 1 (12 bytes: root ref,
//! leaf bound, branch bound, plus `B` branch records) is still read: its leaves are the same, its branch records
//! are ignored and go when the namespace is deleted. A binary that knows only format 1 refuses format 2 (the
//! root record's length), it does not misread it. No tokio, no IO besides the store.

pub mod hash;
mod proof;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use storage::{NodeBatch, NodeStore, StorageError};

use self::hash::{DIGEST_LEN, PLACEHOLDER, bit, leaf_digest, leaf_hash, wrap_chain};
use crate::protocol::sha256;

pub use proof::{
    ClosestProof, MAX_PROOF_OVERHEAD_BYTES, ProofError, max_provable_relay_bytes, verify_closest_proof,
    verify_compact_closest_proof, verify_proof_for_claim,
};

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
/// Format number in the root record (see the module docs).
const FORMAT: u32 = 2;

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
    /// Branches on the current insert's path (reused buffer).
    path_scratch: Vec<u32>,
    /// Number of leaves and sum of their weights (what the root digest's count and sum will say).
    count: u64,
    weight: u64,
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
            path_scratch: Vec::new(),
            count: 0,
            weight: 0,
        }
    }

    /// Reopens the trie last committed to `store` (an empty trie when the store holds none): loads every stored
    /// leaf and links it in; digests are computed by the first [`Self::root`].
    pub fn open(store: S) -> Result<Self, SmstError> {
        let mut trie = Self::new(store);
        let Some(record) = trie.store.get(ROOT_KEY)? else {
            return Ok(trie);
        };
        let word = |i: usize| u32::from_be_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
        let leaf_len = match record.len() {
            8 if word(4) == FORMAT => word(0),
            // Format 1: root ref, leaf bound, branch bound.
            12 => word(4),
            _ => return Err(SmstError::Corrupt("root record".into())),
        };
        if leaf_len >= LEAF_FLAG {
            return Err(SmstError::Corrupt(format!("leaf id bound {leaf_len}")));
        }
        let mut live = Vec::with_capacity(leaf_len as usize);
        for id in 0..leaf_len {
            let Some(bytes) = trie.store.get(&key(b'L', id))? else {
                trie.leaves.push(Leaf {
                    path: [0; 32],
                    hash: [0; 32],
                    weight: 0,
                });
                trie.free_leaves.push(id);
                continue;
            };
            let leaf = decode_leaf(&bytes).ok_or_else(|| SmstError::Corrupt(format!("leaf record {id}")))?;
            trie.leaves.push(leaf);
            trie.count += 1;
            trie.weight = trie.weight.wrapping_add(leaf.weight);
            live.push(id);
        }
        live.sort_unstable_by(|a, b| trie.leaves[*a as usize].path.cmp(&trie.leaves[*b as usize].path));
        trie.build_sorted(&live)?;
        // Reuse low ids first, as a trie that never closed would.
        trie.free_leaves.reverse();
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
        let (trail, closest) = self.descend(&path);
        match closest {
            None => {
                let id = self.alloc_leaf(new_leaf, value);
                self.root = id | LEAF_FLAG;
                self.count += 1;
                self.weight = self.weight.wrapping_add(weight);
            }
            Some(closest) => match crit_bit(&path, &self.leaves[closest as usize].path) {
                None => {
                    // Same path: overwrite the leaf in place and flag all its ancestors.
                    self.mark(&trail);
                    let old = std::mem::replace(&mut self.leaves[closest as usize], new_leaf);
                    self.weight = self.weight.wrapping_sub(old.weight).wrapping_add(weight);
                    self.set_pending(closest, value);
                }
                Some(crit) => {
                    let leaf_ref = self.alloc_leaf(new_leaf, value) | LEAF_FLAG;
                    self.link(&trail, crit, &path, leaf_ref);
                    self.count += 1;
                    self.weight = self.weight.wrapping_add(weight);
                }
            },
        }
        self.path_scratch = trail;
    }

    /// Inserts a mined relay (§5): key = relay hash, value = relay bytes, weight = compute units per relay.
    pub fn insert_relay(&mut self, relay_hash: &[u8; 32], relay_bytes: &[u8], weight: u64) {
        self.update(relay_hash, relay_bytes, weight);
    }

    /// Stages the leaf of `key` to be written again, unchanged, at the next commit, when `value` is its value (the
    /// leaf's hash says so); returns whether it was staged. No digest changes (the root stays what it was).
    ///
    /// Why: a store may lose records this trie committed (a Redis failover the client did not see rolls back its
    /// last writes) while this trie still holds their leaves; the relays are delivered again, and a trie that
    /// must not change any more (its claim may be on chain) writes their records back this way, so a proof can
    /// still read them and a reopened trie has the same root.
    pub fn rewrite(&mut self, key: &[u8], value: &[u8]) -> bool {
        let path = sha256(key);
        if self.root == EMPTY {
            return false;
        }
        let id = index(self.descend_to_leaf(&path));
        let leaf = self.leaves[id];
        if leaf.path != path || leaf.hash != leaf_hash(&path, value, leaf.weight) {
            return false;
        }
        self.set_pending(id as u32, value);
        true
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
            self.branches[i].flags = DIRTY;
            let b = self.branches[i];
            parent = Some((i, link_to_r));
            let right = bit(&path, b.depth as usize);
            link_to_r = if right { Link::Right(i) } else { Link::Left(i) };
            r = if right { b.right } else { b.left };
        }
        let removed = self.leaves[index(r)];
        self.count -= 1;
        self.weight = self.weight.wrapping_sub(removed.weight);
        self.free_leaf(index(r) as u32);
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

    /// Whether a leaf of `key` exists (structure only: no value is loaded).
    pub fn contains(&self, key: &[u8]) -> bool {
        let path = sha256(key);
        self.root != EMPTY && self.leaves[index(self.descend_to_leaf(&path))].path == path
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

    /// Total weight of all leaves (as the root digest's sum; kept as a running total, nothing is hashed).
    pub fn sum(&self) -> u64 {
        self.weight
    }

    /// Number of leaves (as the root digest's count; kept as a running total, nothing is hashed).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes every change since the last commit as one batch: the records and values of changed leaves, the
    /// deletions of removed ones, and the root record. Nothing is hashed.
    pub fn commit(&mut self) -> Result<(), SmstError> {
        let batch = self.pending_batch();
        // On failure nothing was written and the pending values and removed ids are still here for the next try.
        self.store.write_batch(batch)?;
        self.mark_committed();
        Ok(())
    }

    /// The batch [`Smst::commit`] would write now, for a caller that writes it to the store's backend itself
    /// (several tries and other writes in one storage write, `storage::WriteSets`) and then calls
    /// [`Smst::mark_committed`]. Changes nothing.
    pub fn pending_batch(&self) -> NodeBatch {
        let mut batch = NodeBatch::default();
        for (&id, &(start, end)) in &self.pending_values {
            if let Some(l) = self.leaves.get(id as usize) {
                batch.puts.push((key(b'L', id), encode_leaf(l)));
            }
            batch
                .puts
                .push((key(b'V', id), self.pending_bytes[start..end].to_vec()));
        }
        // Reused ids leave the removed set when reallocated, so no key is both put and deleted.
        for &id in &self.removed_leaves {
            batch.deletes.push(key(b'L', id));
            batch.deletes.push(key(b'V', id));
        }
        let mut root = Vec::with_capacity(8);
        root.extend_from_slice(&(self.leaves.len() as u32).to_be_bytes());
        root.extend_from_slice(&FORMAT.to_be_bytes());
        batch.puts.push((ROOT_KEY.to_vec(), root));
        // Sorted keys: backends write in key order (fast B-tree inserts, deterministic raft entries).
        batch.puts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        batch.deletes.sort_unstable();
        batch
    }

    /// Records that the batch of [`Smst::pending_batch`], taken with no change since, is durable in the store:
    /// the pending values are dropped (later reads of them go to the store). Calling it for a batch that was
    /// not written loses those changes from storage.
    pub fn mark_committed(&mut self) {
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
        self.removed_leaves.clear();
    }

    /// Whether there are changes not yet committed.
    pub fn has_uncommitted_changes(&self) -> bool {
        !self.pending_values.is_empty() || !self.removed_leaves.is_empty()
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

    /// Flags the branches `ids` dirty.
    fn mark(&mut self, ids: &[u32]) {
        for &i in ids {
            self.branches[i as usize].flags = DIRTY;
        }
    }

    /// Builds the structure of an empty trie from leaves sorted by path, in one pass: the trie over sorted keys
    /// is the one whose branch between neighbours `i − 1` and `i` sits at their crit bit, with shallower
    /// branches above deeper ones. A stack holds the right spine (depths increasing); each new leaf hangs under
    /// a new branch at its crit bit with its neighbour, taking over the spine below that depth as its left
    /// subtree. Linear, no descents (a reopen used to insert leaf by leaf, one random descent each).
    fn build_sorted(&mut self, sorted: &[u32]) -> Result<(), SmstError> {
        let Some((&first, rest)) = sorted.split_first() else {
            return Ok(());
        };
        self.root = first | LEAF_FLAG;
        let mut spine: Vec<u32> = Vec::new();
        let mut previous = first;
        for &id in rest {
            let (a, b) = (&self.leaves[previous as usize].path, &self.leaves[id as usize].path);
            let crit = crit_bit(a, b)
                .ok_or_else(|| SmstError::Corrupt(format!("leaf {id} repeats the path of leaf {previous}")))?;
            let mut below = None;
            while let Some(&top) = spine.last() {
                if (self.branches[top as usize].depth as usize) < crit {
                    break;
                }
                below = spine.pop();
            }
            // The subtree that goes left of the new branch: the spine below its depth, else the previous leaf
            // (the right child of the spine's top), else the whole trie (a single leaf so far).
            let left = match (below, spine.last()) {
                (Some(b), _) => b,
                (None, Some(&top)) => self.branches[top as usize].right,
                (None, None) => self.root,
            };
            let branch = self.alloc_branch(Branch {
                left,
                right: id | LEAF_FLAG,
                depth: crit as u16,
                flags: DIRTY,
            });
            match spine.last() {
                Some(&top) => self.branches[top as usize].right = branch,
                None => self.root = branch,
            }
            spine.push(branch);
            previous = id;
        }
        Ok(())
    }

    /// One descent along `path` to the closest leaf (`None` when the trie is empty), returning the branches
    /// passed (their depths ascend) in the reused scratch buffer, which the caller hands back.
    fn descend(&mut self, path: &[u8; 32]) -> (Vec<u32>, Option<u32>) {
        let mut trail = std::mem::take(&mut self.path_scratch);
        trail.clear();
        if self.root == EMPTY {
            return (trail, None);
        }
        let mut r = self.root;
        while !is_leaf(r) {
            let i = index(r);
            trail.push(i as u32);
            let b = &self.branches[i];
            r = if bit(path, b.depth as usize) { b.right } else { b.left };
        }
        (trail, Some(index(r) as u32))
    }

    /// Links `leaf_ref` (whose path is `path`) into the trie under a new branch at bit `crit`, where `path` first
    /// differs from the closest leaf found by the descent that recorded `trail`.
    fn link(&mut self, trail: &[u32], crit: usize, path: &[u8; 32], leaf_ref: u32) {
        // The new branch goes above the first branch on the trail that is deeper than the crit bit.
        let above = trail.partition_point(|&i| (self.branches[i as usize].depth as usize) < crit);
        let (target, link) = match above.checked_sub(1) {
            None => (self.root, Link::Root),
            Some(p) => {
                let parent = trail[p] as usize;
                let b = &self.branches[parent];
                if bit(path, b.depth as usize) {
                    (b.right, Link::Right(parent))
                } else {
                    (b.left, Link::Left(parent))
                }
            }
        };
        self.mark(&trail[..above]);
        let (left, right) = if bit(path, crit) {
            (target, leaf_ref)
        } else {
            (leaf_ref, target)
        };
        let branch_ref = self.alloc_branch(Branch {
            left,
            right,
            depth: crit as u16,
            flags: DIRTY,
        });
        self.set_link(link, branch_ref);
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
    }

    fn set_link(&mut self, link: Link, target: u32) {
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

#[cfg(test)]
mod tests;
