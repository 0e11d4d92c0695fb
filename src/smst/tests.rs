use std::collections::BTreeMap;

use proptest::prelude::*;
use storage::MemoryNodeStore;

use super::hash::{PLACEHOLDER, bit, inner_digest, leaf_digest, leaf_hash};
use super::*;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../tests/vectors/protocol-test-vectors.json")).unwrap()
}

fn trie() -> Smst<MemoryNodeStore> {
    Smst::new(MemoryNodeStore::new())
}

const TEN: [(&str, &str, u64); 10] = [
    ("foo", "oof", 3),
    ("bar", "rab", 6),
    ("baz", "zab", 9),
    ("bin", "nib", 12),
    ("fiz", "zif", 15),
    ("fob", "bof", 18),
    ("testKey", "testValue", 21),
    ("testKey2", "testValue2", 24),
    ("testKey3", "testValue3", 27),
    ("testKey4", "testValue4", 30),
];

fn ten_key_trie() -> Smst<MemoryNodeStore> {
    let mut t = trie();
    for (k, v, w) in TEN {
        t.update(k.as_bytes(), v.as_bytes(), w);
    }
    t
}

/// The canonical shape of §5, computed recursively over the whole leaf set.
fn naive_root(leaves: &BTreeMap<[u8; 32], (Vec<u8>, u64)>) -> [u8; 48] {
    fn go(set: &[([u8; 32], [u8; 48])], depth: usize) -> [u8; 48] {
        match set.len() {
            0 => PLACEHOLDER,
            1 => set[0].1,
            _ => {
                let (right, left): (Vec<_>, Vec<_>) = set.iter().partition(|(p, _)| bit(p, depth));
                inner_digest(&go(&left, depth + 1), &go(&right, depth + 1))
            }
        }
    }
    let set: Vec<_> = leaves
        .iter()
        .map(|(p, (v, w))| (*p, leaf_digest(leaf_hash(p, v, *w), *w)))
        .collect();
    go(&set, 0)
}

#[test]
fn golden_roots() {
    let v = vectors();
    assert_eq!(
        hex::encode(ten_key_trie().root()),
        v["smst"]["smt_test_10keys_nil_vh"]["root"].as_str().unwrap()
    );
    let mut one = trie();
    one.update(b"foo", b"bar", 5);
    assert_eq!(
        hex::encode(one.root()),
        v["smst"]["one_leaf_foo_bar_w5_nil_vh"]["root"].as_str().unwrap()
    );
    assert_eq!(hex::encode(trie().root()), v["smst"]["empty_root"].as_str().unwrap());
    // The smt test helper hashes values with SHA-256: store SHA256(value) to reproduce its root.
    let mut four = trie();
    for i in 1..=4u64 {
        let value = crate::protocol::sha256(format!("testValue{i}").as_bytes());
        four.update(format!("testKey{i}").as_bytes(), &value, i);
    }
    assert_eq!(
        hex::encode(four.root()),
        v["smst"]["smt_test_4keys_sha256_vh"]["root"].as_str().unwrap()
    );
    let proof = four.prove_closest(&crate::protocol::sha256(b"testKey1")).unwrap();
    assert_eq!(
        hex::encode(&proof.side_nodes[0]),
        v["smst"]["smt_test_4keys_sha256_vh"]["testKey1_sidenode0"]
            .as_str()
            .unwrap()
    );
    let mut sums = trie();
    for i in 0..10u64 {
        sums.update(format!("key{i}").as_bytes(), format!("value{i}").as_bytes(), i);
    }
    assert_eq!((sums.sum(), sums.count()), (45, 10));
    // relay_e2e: one relay leaf of weight 10.
    let e = &v["relay_e2e"];
    let mut relay = trie();
    let hash: [u8; 32] = hex::decode(e["relay_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    relay.insert_relay(&hash, &hex::decode(e["relay_bytes"].as_str().unwrap()).unwrap(), 10);
    assert_eq!(hex::encode(relay.root()), e["smst_root_1leaf_w10"].as_str().unwrap());
}

#[test]
fn golden_closest_proof_and_gob() {
    let v = &vectors()["smst"]["smt_test_10keys_nil_vh"];
    let mut t = ten_key_trie();
    let path: [u8; 32] = hex::decode(v["path"].as_str().unwrap()).unwrap().try_into().unwrap();
    let proof = t.prove_closest(&path).unwrap();
    assert_eq!(proof.flipped_bits, vec![3, 6]);
    assert_eq!(proof.depth, 8);
    assert_eq!(hex::encode(&proof.closest_path), v["closest_path"].as_str().unwrap());
    assert_eq!(
        hex::encode(&proof.closest_value_hash),
        v["closest_value_hash"].as_str().unwrap()
    );
    let sides: Vec<String> = proof.side_nodes.iter().map(hex::encode).collect();
    let expected: Vec<String> = v["side_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(sides, expected);
    assert_eq!(
        hex::encode(proof.sibling_data.as_ref().unwrap()),
        v["sibling_data"].as_str().unwrap()
    );
    let compact = proof.compact();
    assert_eq!(compact.closest_proof.as_ref().unwrap().bit_mask, vec![0x78]);
    let gob = crate::protocol::gob::encode_closest_proof(&compact);
    assert_eq!(
        hex::encode(&gob),
        v["gob_SparseCompactMerkleClosestProof"].as_str().unwrap()
    );
    let root = t.root();
    verify_compact_closest_proof(&gob, &root).unwrap();
}

#[test]
fn golden_relay_e2e_proof() {
    let e = &vectors()["relay_e2e"];
    let mut t = trie();
    let hash: [u8; 32] = hex::decode(e["relay_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    t.insert_relay(&hash, &hex::decode(e["relay_bytes"].as_str().unwrap()).unwrap(), 10);
    let path: [u8; 32] = hex::decode(e["proof_path"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let proof = t.prove_closest(&path).unwrap();
    assert_eq!(
        (proof.depth, proof.flipped_bits.len(), proof.side_nodes.len()),
        (0, 0, 0)
    );
    let gob = crate::protocol::gob::encode_closest_proof(&proof.compact());
    assert_eq!(hex::encode(&gob), e["proof_gob"].as_str().unwrap());
    verify_compact_closest_proof(&gob, &t.root()).unwrap();
}

#[test]
fn reopen_from_store_gives_same_root_and_proofs() {
    let mut t = ten_key_trie();
    t.commit().unwrap();
    t.update(b"late", b"arrival", 7);
    assert!(t.delete(b"bar"));
    t.commit().unwrap();
    let root = t.root();
    let path = crate::protocol::sha256(b"anything");
    let proof = t.prove_closest(&path).unwrap();
    let store = t.store().clone();
    let mut reopened = Smst::open(store).unwrap();
    assert_eq!(reopened.root(), root);
    assert_eq!(reopened.prove_closest(&path).unwrap(), proof);
    assert_eq!(reopened.get(b"late").unwrap(), Some((b"arrival".to_vec(), 7)));
    assert_eq!(reopened.get(b"bar").unwrap(), None);
    assert!(reopened.contains(b"late") && reopened.contains(b"foo"));
    assert!(!reopened.contains(b"bar") && !reopened.contains(b"never"));
    reopened.update(b"after", b"reopen", 1);
    let mut reference = t;
    reference.update(b"after", b"reopen", 1);
    assert_eq!(reopened.root(), reference.root());
}

#[test]
fn commits_after_reopen_write_every_changed_node() {
    // A reopened trie starts with all flags clear; its later commits must still reach every changed node.
    let mut t = trie();
    for i in 0..300u32 {
        t.update(&i.to_be_bytes(), &i.to_le_bytes(), u64::from(i));
    }
    t.commit().unwrap();
    let mut reopened = Smst::open(t.store().clone()).unwrap();
    for i in (0..300u32).step_by(3) {
        assert!(reopened.delete(&i.to_be_bytes()));
        assert!(t.delete(&i.to_be_bytes()));
    }
    for i in 300..400u32 {
        reopened.update(&i.to_be_bytes(), b"v", 1);
        t.update(&i.to_be_bytes(), b"v", 1);
    }
    reopened.update(&1u32.to_be_bytes(), b"overwritten", 9);
    t.update(&1u32.to_be_bytes(), b"overwritten", 9);
    reopened.commit().unwrap();
    assert!(!reopened.has_uncommitted_changes());
    let mut again = Smst::open(reopened.store().clone()).unwrap();
    assert_eq!(again.root(), t.root());
    assert_eq!(
        again.get(&1u32.to_be_bytes()).unwrap(),
        Some((b"overwritten".to_vec(), 9))
    );
    assert_eq!(again.count(), 300 - 100 + 100);
}

/// A memory store that keeps the last batch written and can refuse the next write.
#[derive(Debug, Default, Clone)]
struct WatchedStore {
    inner: MemoryNodeStore,
    last: Option<NodeBatch>,
    fail_next: bool,
}

impl NodeStore for WatchedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(key)
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(StorageError::Unavailable("refused by the test".into()));
        }
        self.last = Some(batch.clone());
        self.inner.write_batch(batch)
    }
}

fn relay_key(i: u32) -> [u8; 32] {
    crate::protocol::sha256(&i.to_be_bytes())
}

#[test]
fn a_commit_writes_two_records_per_changed_leaf_and_no_branch() {
    // 10,000 leaves: an insert changes ~14 ancestors, none of which is written (only leaves are stored).
    let mut t = Smst::new(WatchedStore::default());
    for i in 0..10_000u32 {
        t.insert_relay(&relay_key(i), &i.to_le_bytes(), 7);
    }
    t.commit().unwrap();
    let root_before = t.root();
    for i in 10_000..10_100u32 {
        t.insert_relay(&relay_key(i), b"new relay", 7);
    }
    t.update(&relay_key(5), b"overwritten", 9);
    assert!(t.delete(&relay_key(6)));
    t.commit().unwrap();
    let batch = t.store().last.clone().unwrap();
    let kinds = |records: &[Vec<u8>]| {
        let mut counts = BTreeMap::new();
        for k in records {
            *counts.entry(k[0]).or_insert(0) += 1;
        }
        counts
    };
    let put_keys: Vec<Vec<u8>> = batch.puts.iter().map(|(k, _)| k.clone()).collect();
    // 100 inserts + 1 overwrite: one leaf record and one value each; plus the root record.
    assert_eq!(kinds(&put_keys), BTreeMap::from([(b'L', 101), (b'R', 1), (b'V', 101)]));
    assert_eq!(kinds(&batch.deletes), BTreeMap::from([(b'L', 1), (b'V', 1)]));
    let root_record = batch.puts.iter().find(|(k, _)| k == b"R").unwrap();
    assert_eq!(root_record.1, [10_100u32.to_be_bytes(), 2u32.to_be_bytes()].concat());
    // Totals without hashing, equal to what the root digest says.
    assert_eq!((t.count(), t.sum()), (10_099, 10_099 * 7 + 2));
    let root = t.root();
    assert_ne!(root, root_before);
    assert_eq!(hash::sum_count(&root), (10_099 * 7 + 2, 10_099));
    let mut reopened = Smst::open(t.store().clone()).unwrap();
    assert_eq!((reopened.count(), reopened.sum()), (10_099, 10_099 * 7 + 2));
    assert_eq!(reopened.root(), root);
}

#[test]
fn a_refused_commit_keeps_its_changes_for_the_next_one() {
    let mut t = Smst::new(WatchedStore::default());
    for i in 0..50u32 {
        t.insert_relay(&relay_key(i), b"v", 1);
    }
    t.commit().unwrap();
    for i in 50..80u32 {
        t.insert_relay(&relay_key(i), b"w", 2);
    }
    assert!(t.delete(&relay_key(3)));
    t.store.fail_next = true;
    assert!(matches!(t.commit(), Err(SmstError::Store(_))));
    assert!(t.has_uncommitted_changes());
    // The store still holds the first commit only.
    assert_eq!(Smst::open(t.store().clone()).unwrap().count(), 50);
    t.commit().unwrap();
    assert!(!t.has_uncommitted_changes());
    let mut reopened = Smst::open(t.store().clone()).unwrap();
    assert_eq!(reopened.count(), 79);
    assert_eq!(reopened.root(), t.root());
    assert_eq!(reopened.get(&relay_key(3)).unwrap(), None);
    assert_eq!(reopened.get(&relay_key(60)).unwrap(), Some((b"w".to_vec(), 2)));
}

#[test]
fn a_format_1_store_opens_to_the_same_trie() {
    // Format 1 kept branch records (`B` + id) and a 12-byte root record (root ref, leaf bound, branch bound). Its
    // leaf records are format 2's, so the leaves are re-linked and the branch records ignored.
    let mut t = ten_key_trie();
    t.commit().unwrap();
    let root = t.root();
    let mut store = t.store().clone();
    let mut batch = NodeBatch::default();
    let format_1_root = [7u32.to_be_bytes(), 10u32.to_be_bytes(), 9u32.to_be_bytes()].concat();
    batch.puts.push((b"R".to_vec(), format_1_root));
    batch.puts.push((key(b'B', 0), vec![0xAB; 58]));
    store.write_batch(batch).unwrap();
    let mut reopened = Smst::open(store).unwrap();
    assert_eq!(reopened.root(), root);
    assert_eq!(reopened.get(b"baz").unwrap(), Some((b"zab".to_vec(), 9)));
    let path = crate::protocol::sha256(b"probe");
    assert_eq!(reopened.prove_closest(&path).unwrap(), t.prove_closest(&path).unwrap());
    // Its next commit writes format 2.
    reopened.update(b"next", b"commit", 1);
    reopened.commit().unwrap();
    let record = reopened.store().get(b"R").unwrap().unwrap();
    assert_eq!(record, [11u32.to_be_bytes(), 2u32.to_be_bytes()].concat());
}

#[test]
fn a_malformed_store_is_refused_with_corrupt() {
    let mut t = ten_key_trie();
    t.commit().unwrap();
    let corrupt = |edit: NodeBatch| {
        let mut store = t.store().clone();
        store.write_batch(edit).unwrap();
        matches!(Smst::open(store), Err(SmstError::Corrupt(_)))
    };
    let put = |k: Vec<u8>, v: Vec<u8>| NodeBatch {
        puts: vec![(k, v)],
        deletes: Vec::new(),
    };
    // A root record of another length or an unknown format number.
    assert!(corrupt(put(b"R".to_vec(), vec![0; 5])));
    assert!(corrupt(put(
        b"R".to_vec(),
        [10u32.to_be_bytes(), 3u32.to_be_bytes()].concat()
    )));
    // A leaf record of the wrong size.
    assert!(corrupt(put(key(b'L', 4), vec![1; 71])));
    // Two leaves with one path.
    let copy = t.store().get(&key(b'L', 2)).unwrap().unwrap();
    assert!(corrupt(put(key(b'L', 5), copy)));
}

#[test]
fn proof_of_empty_trie_is_an_error() {
    assert!(matches!(trie().prove_closest(&[0; 32]), Err(SmstError::Empty)));
}

#[derive(Debug, Clone)]
enum Op {
    Update(u8, Vec<u8>, u64),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40), 0u64..1000).prop_map(|(k, v, w)| Op::Update(k, v, w)),
        1 => any::<u8>().prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_naive_reference_and_proofs_verify(ops in proptest::collection::vec(op(), 1..120), probe in any::<[u8; 32]>(), commit_every in 1usize..40) {
        let mut t = trie();
        let mut model: BTreeMap<[u8; 32], (Vec<u8>, u64)> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Update(k, v, w) => {
                    t.update(&[*k], v, *w);
                    model.insert(crate::protocol::sha256(&[*k]), (v.clone(), *w));
                }
                Op::Delete(k) => {
                    let existed = model.remove(&crate::protocol::sha256(&[*k])).is_some();
                    prop_assert_eq!(t.delete(&[*k]), existed);
                }
            }
            if i % commit_every == 0 {
                t.commit().unwrap();
            }
        }
        let root = t.root();
        prop_assert_eq!(root, naive_root(&model));
        let sum: u64 = model.values().map(|(_, w)| *w).sum();
        prop_assert_eq!((t.sum(), t.count()), (sum, model.len() as u64));
        if !model.is_empty() {
            let proof = t.prove_closest(&probe).unwrap();
            let gob = crate::protocol::gob::encode_closest_proof(&proof.compact());
            prop_assert!(verify_compact_closest_proof(&gob, &root).is_ok());
            // The closest leaf minimizes leafPath XOR probe.
            let best = model.keys().min_by_key(|p| p.iter().zip(probe.iter()).map(|(a, b)| a ^ b).collect::<Vec<_>>()).unwrap();
            prop_assert_eq!(proof.closest_path.as_slice(), best.as_slice());
        }
        t.commit().unwrap();
        let mut reopened = Smst::open(t.store().clone()).unwrap();
        prop_assert_eq!((reopened.sum(), reopened.count()), (sum, model.len() as u64));
        prop_assert_eq!(reopened.root(), root);
    }

    #[test]
    fn insert_order_does_not_matter(keys in proptest::collection::btree_set(any::<u16>(), 1..60), seed in any::<u64>()) {
        let mut ordered: Vec<u16> = keys.into_iter().collect();
        let mut a = trie();
        for k in &ordered {
            a.update(&k.to_be_bytes(), &k.to_le_bytes(), u64::from(*k));
        }
        let n = ordered.len();
        for i in 0..n {
            ordered.swap(i, (seed as usize).wrapping_mul(i + 7) % n);
        }
        let mut b = trie();
        for k in &ordered {
            b.update(&k.to_be_bytes(), &k.to_le_bytes(), u64::from(*k));
        }
        prop_assert_eq!(a.root(), b.root());
    }

    #[test]
    fn any_single_byte_mutation_of_a_proof_fails(index in 0usize..2000, delta in 1u8..=255) {
        let mut t = ten_key_trie();
        let root = t.root();
        let path = crate::protocol::sha256(b"probe");
        let proof = t.prove_closest(&path).unwrap();
        let mut gob = crate::protocol::gob::encode_closest_proof(&proof.compact());
        let original = crate::protocol::gob::decode_closest_proof(&gob).unwrap();
        let i = 287 + index % (gob.len() - 287);
        gob[i] = gob[i].wrapping_add(delta);
        // A mutation that only changes Depth is excluded: the chain does not check Depth against the side nodes
        // (§5.4), so a smaller depth consistent with the flips verifies there too and changes nothing the chain
        // pays for. (Found by decoding, not by searching for the field's bytes: the field header depends on
        // which fields before it gob omitted, e.g. no flipped bits.)
        if let Ok(mutated) = crate::protocol::gob::decode_closest_proof(&gob) {
            let mut only_depth = original.clone();
            only_depth.depth = mutated.depth.clone();
            prop_assume!(mutated != only_depth);
        }
        prop_assert!(verify_proof_for_claim(&gob, &root, &path).is_err(), "mutation at {} passed", i);
    }
}

/// `rewrite` stages a leaf's records again, unchanged, for a store that lost them: the next commit writes them
/// back and the root stays; a value that is not the leaf's, or a key with no leaf, stages nothing.
#[test]
fn rewrite_writes_a_leaf_back_without_changing_the_root() {
    let mut t = ten_key_trie();
    t.commit().unwrap();
    let root = t.root();
    assert!(!t.rewrite(b"foo", b"not-oof"));
    assert!(!t.rewrite(b"absent", b"oof"));
    assert!(!t.has_uncommitted_changes());
    assert!(t.rewrite(b"foo", b"oof"));
    assert_eq!(t.root(), root);
    let batch = t.pending_batch();
    assert!(batch.deletes.is_empty());
    assert!(batch.puts.iter().any(|(_, v)| v.as_slice() == b"oof"), "{batch:?}");
    assert_eq!(batch.puts.len(), 3, "leaf record, value and root record: {batch:?}");
    t.commit().unwrap();
    assert_eq!(t.root(), root);
    assert_eq!(t.count(), 10);
}
