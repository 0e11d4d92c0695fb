//! State-machine tests: deterministic apply (identical snapshots on two replicas), op semantics at apply
//! (leases across terms, TTLs on the leader clock, CAS), snapshot round trip, and decoders on garbage input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use futures::stream;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

use super::StateMachine;
use crate::types::{Entry, FenceRecord, LogId, Op, OpResult, RelayRecord, Request, Response, decode, lease_token};

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(openraft::vote::leader_id_std::CommittedLeaderId::new(term), index)
}

fn entry(term: u64, index: u64, now_ms: u64, ops: Vec<Op>) -> Entry {
    Entry::new_normal(log_id(term, index), Request { now_ms, ops })
}

async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) {
    let items: Vec<_> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.unwrap();
}

/// Applies one entry directly and returns its results.
fn apply_one(sm: &StateMachine, term: u64, index: u64, now_ms: u64, ops: Vec<Op>) -> Vec<OpResult> {
    let resp: Vec<Response> = super::apply_batch(&sm.inner.db, &[entry(term, index, now_ms, ops)]).unwrap();
    resp.into_iter().next().unwrap().results
}

fn relay(supplier: &str, session: &str, n: u8) -> RelayRecord {
    RelayRecord {
        supplier: supplier.into(),
        session_id: session.into(),
        session_end_height: 10,
        relay_hash: vec![n; 32],
        payload: vec![n; 100],
    }
}

fn workload() -> Vec<Entry> {
    let mut es = Vec::new();
    let mut i = 1;
    for t in 1..=3u64 {
        for k in 0..5u8 {
            es.push(entry(
                t,
                i,
                1_000 * i,
                vec![
                    Op::Append(vec![relay("a", "s1", k), relay("b", "s1", k), relay("a", "s2", k)]),
                    Op::KvIncrement {
                        key: "ctr".into(),
                        delta: 2,
                        ttl_ms: Some(50_000),
                    },
                    Op::SessionPut {
                        supplier: "a".into(),
                        session_id: format!("s{k}"),
                        state: "active".into(),
                        data: vec![k],
                        expected_version: 0,
                    },
                    Op::TrieBatch {
                        supplier: "a".into(),
                        session_id: "s1".into(),
                        puts: vec![(vec![k; 32], vec![t as u8; 40])],
                        deletes: vec![vec![k.wrapping_sub(1); 32]],
                    },
                    Op::Campaign {
                        election: "g".into(),
                        candidate: format!("n{t}"),
                        ttl_ms: 10_000,
                    },
                ],
            ));
            i += 1;
        }
        es.push(entry(
            t,
            i,
            1_000 * i,
            vec![Op::TrimSession {
                supplier: "a".into(),
                session_id: "s2".into(),
            }],
        ));
        i += 1;
    }
    es
}

async fn snapshot_bytes(sm: &mut StateMachine) -> Vec<u8> {
    let mut b = sm.get_snapshot_builder().await;
    let snap = b.build_snapshot().await.unwrap();
    let mut out = Vec::new();
    let mut f = snap.snapshot;
    f.read_to_end(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_applying_the_same_entries_are_identical() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = StateMachine::open(d1.path()).unwrap();
    let mut b = StateMachine::open(d2.path()).unwrap();
    let es = workload();
    apply(&mut a, es.clone()).await;
    // The other replica applies the same entries in different batch sizes.
    for chunk in es.chunks(4) {
        apply(&mut b, chunk.to_vec()).await;
    }
    let (sa, sb) = (snapshot_bytes(&mut a).await, snapshot_bytes(&mut b).await);
    assert!(sa.len() > 1000);
    assert_eq!(sa, sb, "snapshots of two replicas are byte-identical");

    // A third replica installs the snapshot and reads the same state.
    let d3 = tempfile::tempdir().unwrap();
    let mut c = StateMachine::open(d3.path()).unwrap();
    let snap = a.get_current_snapshot().await.unwrap().unwrap();
    c.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
    assert_eq!(c.applied_state().await.unwrap(), a.applied_state().await.unwrap());
    assert_eq!(snapshot_bytes(&mut c).await, sa);
    let r = c.reader();
    assert_eq!(r.kv("ctr", 0).unwrap().as_deref(), Some(&b"30"[..]));
    assert_eq!(r.relays_after("a", 0, 100).unwrap().len(), 15, "s2 entries trimmed");
    assert_eq!(r.session("a", "s3").unwrap().unwrap().version, 1);

    // Reopening from disk finds the newest snapshot.
    drop((c, r));
    let mut c2 = StateMachine::open(d3.path()).unwrap();
    assert_eq!(c2.get_current_snapshot().await.unwrap().unwrap().meta, snap.meta);
}

#[test]
fn leases_are_void_in_a_later_term_and_tokens_increase() {
    let d = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(d.path()).unwrap();
    let campaign = |c: &str| Op::Campaign {
        election: "g".into(),
        candidate: c.into(),
        ttl_ms: 60_000,
    };
    let t1 = lease_token(1, 1);
    assert_eq!(
        apply_one(&sm, 1, 1, 1000, vec![campaign("x")]),
        vec![OpResult::Token(Some(t1))]
    );
    assert_eq!(
        apply_one(&sm, 1, 2, 1001, vec![campaign("y")]),
        vec![OpResult::Token(None)],
        "held in term 1"
    );
    assert_eq!(
        apply_one(&sm, 1, 3, 1002, vec![campaign("x")]),
        vec![OpResult::Token(Some(t1))],
        "holder keeps"
    );
    // New raft term: the old lease is void even though its TTL has not run out.
    let t2 = lease_token(2, 1);
    assert_eq!(
        apply_one(&sm, 2, 4, 1003, vec![campaign("y")]),
        vec![OpResult::Token(Some(t2))]
    );
    assert!(t2 > t1);
    let renew = |c: &str, t| Op::Renew {
        election: "g".into(),
        candidate: c.into(),
        token: t,
        ttl_ms: 1,
    };
    assert_eq!(
        apply_one(&sm, 2, 5, 1004, vec![renew("x", t1)]),
        vec![OpResult::Bool(false)]
    );
    assert_eq!(
        apply_one(&sm, 2, 6, 1005, vec![renew("y", t2)]),
        vec![OpResult::Bool(true)]
    );
    // Expired (ttl 1 ms on the leader clock): another candidate gets the next token of the same term.
    assert_eq!(
        apply_one(&sm, 2, 7, 1010, vec![campaign("z")]),
        vec![OpResult::Token(Some(lease_token(2, 2)))]
    );
    let resign = Op::Resign {
        election: "g".into(),
        candidate: "z".into(),
        token: lease_token(2, 2),
    };
    assert_eq!(apply_one(&sm, 2, 8, 1011, vec![resign]), vec![OpResult::Bool(true)]);
    assert_eq!(sm.reader().lease_holder("g", 2, 1012).unwrap(), None);
}

#[test]
fn fenced_ops_apply_only_for_the_live_holder_in_the_entry_term() {
    let d = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(d.path()).unwrap();
    let campaign = Op::Campaign {
        election: "miner".into(),
        candidate: "x".into(),
        ttl_ms: 1_000,
    };
    let t1 = lease_token(1, 1);
    assert_eq!(
        apply_one(&sm, 1, 1, 1000, vec![campaign]),
        vec![OpResult::Token(Some(t1))]
    );
    let put = |v: u64, data: u8| Op::SessionPut {
        supplier: "a".into(),
        session_id: "s".into(),
        state: "active".into(),
        data: vec![data],
        expected_version: v,
    };
    let fenced = |candidate: &str, token: u64, op: Op| Op::Fenced {
        fence: FenceRecord {
            election: "miner".into(),
            candidate: candidate.into(),
            token,
        },
        op: Box::new(op),
    };
    let refused = |r: &[OpResult]| matches!(r, [OpResult::Fenced(_)]);
    // The holder, in its term, before expiry: applied (the inner op's own result).
    assert_eq!(
        apply_one(&sm, 1, 2, 1500, vec![fenced("x", t1, put(0, 1))]),
        vec![OpResult::Version(1)]
    );
    // Wrong token, other candidate, unknown election, after expiry (entry clock), in a later term: refused.
    assert!(refused(&apply_one(
        &sm,
        1,
        3,
        1500,
        vec![fenced("x", t1 + 1, put(1, 2))]
    )));
    assert!(refused(&apply_one(&sm, 1, 4, 1500, vec![fenced("y", t1, put(1, 2))])));
    let other = Op::Fenced {
        fence: FenceRecord {
            election: "other".into(),
            candidate: "x".into(),
            token: t1,
        },
        op: Box::new(put(1, 2)),
    };
    assert!(refused(&apply_one(&sm, 1, 5, 1500, vec![other])));
    assert!(refused(&apply_one(&sm, 1, 6, 2000, vec![fenced("x", t1, put(1, 2))])));
    assert!(refused(&apply_one(&sm, 2, 7, 1500, vec![fenced("x", t1, put(1, 2))])));
    // Nothing the refused ops carried was written; an unfenced op next to a refused one in the same entry is.
    let rec = sm.reader().session("a", "s").unwrap().unwrap();
    assert_eq!((rec.version, rec.data), (1, vec![1]));
    assert_eq!(
        apply_one(&sm, 2, 8, 1500, vec![fenced("x", t1, put(1, 3)), put(1, 4)])[1],
        OpResult::Version(2)
    );
    assert_eq!(sm.reader().session("a", "s").unwrap().unwrap().data, vec![4]);
}

#[test]
fn ttl_and_cas_use_the_entry_clock() {
    let d = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(d.path()).unwrap();
    let set = Op::KvSetIfAbsent {
        key: "k".into(),
        value: b"1".to_vec(),
        ttl_ms: Some(100),
    };
    assert_eq!(
        apply_one(&sm, 1, 1, 1000, vec![set.clone()]),
        vec![OpResult::Bool(true)]
    );
    assert_eq!(
        apply_one(&sm, 1, 2, 1099, vec![set.clone()]),
        vec![OpResult::Bool(false)]
    );
    assert_eq!(
        apply_one(&sm, 1, 3, 1100, vec![set]),
        vec![OpResult::Bool(true)],
        "expired at 1100"
    );
    assert_eq!(sm.reader().kv("k", 1199).unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(sm.reader().kv("k", 1200).unwrap(), None);
    let put = |v| Op::SessionPut {
        supplier: "a".into(),
        session_id: "s".into(),
        state: "x".into(),
        data: vec![],
        expected_version: v,
    };
    let r = apply_one(&sm, 1, 4, 0, vec![put(0), put(0), put(1), put(1)]);
    assert!(matches!(r[1], OpResult::Conflict(_)));
    assert!(matches!(r[3], OpResult::Conflict(_)));
    assert_eq!((&r[0], &r[2]), (&OpResult::Version(1), &OpResult::Version(2)));
    let r = apply_one(
        &sm,
        1,
        5,
        0,
        vec![
            Op::KvSet {
                key: "n".into(),
                value: b"x".to_vec(),
                ttl_ms: None,
            },
            Op::KvIncrement {
                key: "n".into(),
                delta: 1,
                ttl_ms: None,
            },
        ],
    );
    assert!(matches!(r[1], OpResult::Error(_)));
    assert_eq!(
        sm.reader().kv("n", 0).unwrap().as_deref(),
        Some(&b"x"[..]),
        "failed op writes nothing"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Garbage never panics a decoder: it is a typed error (or, by chance, a valid value).
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = decode::<Request>(&bytes);
        let _ = decode::<Entry>(&bytes);
        let _ = decode::<crate::wire::WireError>(&bytes);
        let _ = decode::<crate::network::SnapshotChunk>(&bytes);
        let _ = decode::<Result<crate::admin::Status, crate::wire::WireError>>(&bytes);
        let _ = decode::<super::apply::LeaseValue>(&bytes);
    }

    /// A mutated request either decodes to some request or fails; an intact one round-trips.
    #[test]
    fn request_round_trip_and_mutation(n in 0u8..20, flip in 0usize..4096, bit in 0u8..8) {
        let req = Request { now_ms: 42, ops: vec![Op::Append((0..n).map(|k| relay("a", "s", k)).collect())] };
        let mut bytes = crate::types::encode(&req).unwrap();
        proptest::prop_assert_eq!(decode::<Request>(&bytes).unwrap(), req);
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        let _ = decode::<Request>(&bytes);
    }
}

#[test]
fn garbage_snapshot_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(d.path()).unwrap();
    for garbage in [vec![], vec![1, 2, 3], vec![0xff; 64], vec![4, 0, 0, 0, 9, 9, 9, 9]] {
        let p = d.path().join("g");
        std::fs::write(&p, &garbage).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        assert!(super::snapshot::install(&sm.inner.db, &mut f).is_err(), "{garbage:?}");
    }
}

/// Every `(key, value)` of the KV table, in key order.
fn kv_table(sm: &StateMachine) -> Vec<(String, Vec<u8>)> {
    use redb::{ReadableDatabase, ReadableTable};
    let txn = sm.inner.db.begin_read().unwrap();
    let table = txn.open_table(super::apply::KV).unwrap();
    table
        .iter()
        .unwrap()
        .map(|i| {
            let (k, v) = i.unwrap();
            (k.value().to_owned(), v.value().to_vec())
        })
        .collect()
}

/// Expired KV entries (one relay-meter key per application and session) are deleted by later KV writes at apply,
/// once expired by the leader-stamped clock plus a grace, and the same way on every replica: the table and the
/// snapshots do not grow with every session the cluster served.
#[test]
fn kv_writes_sweep_expired_entries_identically_on_every_replica() {
    use super::apply::KV_SWEEP_GRACE_MS as GRACE;
    use super::sweep::SWEEP_SCAN;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replicas = [
        StateMachine::open(da.path()).unwrap(),
        StateMachine::open(db.path()).unwrap(),
    ];
    let incr = |key: String, ttl_ms: u64| Op::KvIncrement {
        key,
        delta: 1,
        ttl_ms: Some(ttl_ms),
    };
    let old: Vec<Op> = (0..100).map(|i| incr(format!("meter:{i:03}"), 1_000)).collect();
    let live = || vec![incr("meter:live".into(), 3_600_000)];
    for sm in &replicas {
        apply_one(sm, 1, 1, 1_000, old.clone());
        // Expired (at 2,000) but within the grace: kept.
        apply_one(sm, 1, 2, 2_000 + GRACE - 1, live());
        assert_eq!(kv_table(sm).len(), 101);
        // Past the grace: each write of the live key deletes the expired keys among the next SWEEP_SCAN.
        apply_one(sm, 1, 3, 2_000 + GRACE, live());
        assert_eq!(kv_table(sm).len(), 101 - SWEEP_SCAN);
        for index in 4..8 {
            apply_one(sm, 1, index, 2_000 + GRACE, live());
        }
    }
    let [a, b] = &replicas;
    assert_eq!(kv_table(a), vec![("meter:live".to_owned(), kv_table(a)[0].1.clone())]);
    assert_eq!(
        a.reader().kv("meter:live", 2_000 + GRACE).unwrap().as_deref(),
        Some(&b"6"[..])
    );
    assert_eq!(kv_table(a), kv_table(b), "every replica deletes the same keys");
}

/// A snapshot file cut short (after its meta frame, inside a length prefix, inside a record, or just before its
/// end frame) is an error on install, never a complete but partial state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_snapshot_file_is_refused_on_install() {
    let d1 = tempfile::tempdir().unwrap();
    let mut a = StateMachine::open(d1.path()).unwrap();
    apply(&mut a, workload()).await;
    let bytes = snapshot_bytes(&mut a).await;
    let d = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(d.path()).unwrap();
    let mut cuts = vec![bytes.len() / 2, bytes.len() - 1];
    // Right after the meta frame, and two bytes into the next length prefix, wherever the meta frame ends.
    for start in 0..bytes.len().min(16) {
        if let Some(len) = bytes.get(start..start + 4) {
            let meta_end = start + 4 + u32::from_le_bytes(len.try_into().unwrap()) as usize;
            if meta_end < bytes.len() {
                cuts.extend([meta_end, meta_end + 2]);
            }
        }
    }
    for cut in cuts {
        let p = d.path().join("cut");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let r = super::snapshot::install(&sm.inner.db, &mut f);
        assert!(r.is_err(), "a snapshot cut at {cut} of {} bytes installed", bytes.len());
    }
    // The intact file installs.
    let p = d.path().join("whole");
    std::fs::write(&p, &bytes).unwrap();
    super::snapshot::install(&sm.inner.db, &mut std::fs::File::open(&p).unwrap()).unwrap();
    assert_eq!(sm.reader().relays_after("a", 0, 100).unwrap().len(), 15);
}

/// The current snapshot is asked for (a lagging follower) while builds finish on another task, each replacing
/// and deleting the file before it: every ask gets an open file. The path was read under the lock and opened
/// after it, so a build finishing in between made the ask fail (`NotFound`), which stopped the raft core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_snapshot_opens_while_builds_replace_it() {
    let d = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(d.path()).unwrap();
    apply(&mut sm, workload()).await;
    snapshot_bytes(&mut sm).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let builder = {
        let mut sm = sm.clone();
        let done = done.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                let mut b = sm.get_snapshot_builder().await;
                b.build_snapshot().await.unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut asks = 0u64;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let snap = sm.get_current_snapshot().await;
        assert!(
            matches!(snap, Ok(Some(_))),
            "ask {asks}: {:?}",
            snap.map(|s| s.map(|s| s.meta))
        );
        asks += 1;
        tokio::task::yield_now().await;
    }
    builder.await.unwrap();
    assert!(asks > 0);
}
