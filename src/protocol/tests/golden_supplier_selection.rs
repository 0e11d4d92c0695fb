//! Supplier selection for a session (spec §3 "Supplier selection"; poktroll v0.1.35
//! `x/session/keeper/session_hydrator.go` `hydrateSessionSuppliers`, `generateSupplierRandomWeight`,
//! `sortCandidateSupplierConfigsBySupplierWeight`). poktroll's tests pin no selection order (only the count when
//! there are fewer candidates than `num_suppliers_per_session`), so the expected orders come from this Python
//! model of the Go code:
//!
//! ```python
//! import hashlib, struct
//! bh = bytes.fromhex("251665c7cf286a30fbd98acd983c63e9a34efc16496511373405e24eb02a8fb9")
//! pre = b".".join([bh, b"svc1", b"pokt1mdccn4u38eyjdxkk4h0jaddw4n3c72u82m5m9e", struct.pack("<Q", 9)])
//! assert hashlib.sha3_256(pre).hexdigest() == "fea5d6f7544ff6d8af5c22529b2ccf01ed7930b3d454d42dda5ccc0b65b6ebfd"
//! cands = ["pokt1supplier%d" % i for i in range(8)]
//! def weight(op):  # Go: int(binary.BigEndian.Uint64(sha3(pre ‖ "." ‖ op)[:8])), a signed int64
//!     return struct.unpack(">q", hashlib.sha3_256(pre + b"." + op.encode()).digest()[:8])[0]
//! print(sorted(cands, key=lambda c: (weight(c), c.encode())))
//! # signed:   6, 1, 5, 2, 0, 7, 4, 3   (weights -7986098813794980664 … 4479067688934867355)
//! # unsigned: 3, 6, 1, 5, 2, 0, 7, 4   (what reading the 8 bytes as u64 would give)
//! ```
//!
//! The preimage is the session-id preimage of spec §7's first Go-pinned session id (the assert above), so the
//! session part of the seed is anchored to a Go value too.

use crate::protocol::session::{select_suppliers, session_id};

const BLOCK_HASH_9: &str = "251665c7cf286a30fbd98acd983c63e9a34efc16496511373405e24eb02a8fb9";
const APP: &str = "pokt1mdccn4u38eyjdxkk4h0jaddw4n3c72u82m5m9e";

fn candidates() -> Vec<String> {
    (0..8).map(|i| format!("pokt1supplier{i}")).collect()
}

fn names(indices: &[usize]) -> Vec<String> {
    indices.iter().map(|i| format!("pokt1supplier{i}")).collect()
}

fn select(candidates: &[String], n: usize) -> Vec<String> {
    let hash = hex::decode(BLOCK_HASH_9).unwrap();
    select_suppliers(&hash, "svc1", APP, 9, candidates, n)
}

#[test]
fn the_seed_is_the_go_pinned_session_preimage() {
    let hash = hex::decode(BLOCK_HASH_9).unwrap();
    assert_eq!(
        session_id(&hash, "svc1", APP, 9),
        "fea5d6f7544ff6d8af5c22529b2ccf01ed7930b3d454d42dda5ccc0b65b6ebfd"
    );
}

#[test]
fn more_candidates_than_seats_keeps_the_lowest_signed_weights() {
    // Signed: supplier3's weight is the only positive one, so it sorts last; read as u64 it would sort first.
    assert_eq!(select(&candidates(), 3), names(&[6, 1, 5]));
    assert_eq!(select(&candidates(), 7), names(&[6, 1, 5, 2, 0, 7, 4]));
    let mut shuffled = candidates();
    shuffled.rotate_left(3);
    shuffled.swap(0, 5);
    assert_eq!(
        select(&shuffled, 3),
        names(&[6, 1, 5]),
        "independent of the candidates' order"
    );
}

#[test]
fn exactly_as_many_candidates_as_seats_are_sorted_by_weight() {
    // Go returns early only when `len(candidates) < numSuppliersPerSession`; with equality it sorts.
    assert_eq!(select(&candidates(), 8), names(&[6, 1, 5, 2, 0, 7, 4, 3]));
}

#[test]
fn fewer_candidates_than_seats_are_all_kept_in_their_order() {
    let few = names(&[3, 0, 7]);
    assert_eq!(select(&few, 4), few);
}
