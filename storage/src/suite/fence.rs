//! Fencing checks: a fenced view's writes pass for the live holder and token, and are refused with
//! [`StorageError::Fenced`] (changing nothing) for a stale token, another candidate, after a takeover and after
//! resigning.

use std::time::Duration;

use super::{Fixture, poll_until, relay};
use crate::contract::{EntryId, Fence, LogAck, RecordWrite, TrieWrite, WriteSet};
use crate::nodes::NodeBatch;
use crate::{Storage, StorageError};

const LONG: Duration = Duration::from_secs(60);
const ELECTION: &str = "miner";
const SUP: &str = "pokt1fence";

fn is_fenced<T: std::fmt::Debug>(what: &str, r: Result<T, StorageError>) {
    match r {
        Err(StorageError::Fenced(msg)) => assert!(!msg.is_empty()),
        other => panic!("{what}: expected Fenced, got {other:?}"),
    }
}

fn node(k: u8, tag: &str) -> NodeBatch {
    NodeBatch {
        puts: vec![(vec![k; 32], tag.as_bytes().to_vec())],
        deletes: Vec::new(),
    }
}

/// What a deposed leader could change, read back through the unfenced view.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    session: Option<(String, Vec<u8>, u64)>,
    kv: Option<Vec<u8>>,
    node_present: bool,
    pending_ids: Vec<EntryId>,
    backlog: crate::contract::Backlog,
}

async fn observe(s: &Storage, consumer: &str) -> Observed {
    let session = s
        .sessions
        .get(SUP, "s1")
        .await
        .unwrap()
        .map(|r| (r.state, r.data, r.version));
    let kv = s.kv.get("fence-k").await.unwrap();
    let store = s.tries.open(SUP, "s1").await.unwrap();
    let node_present = tokio::task::spawn_blocking(move || store.get(&[9; 32]).unwrap().is_some())
        .await
        .unwrap();
    let backlog = s.relay_log.backlog(SUP).await.unwrap();
    // read_pending of the holder's consumer is idempotent for what we compare (ids), so it is safe to observe.
    let pending_ids = s
        .relay_log
        .read_pending(SUP, consumer, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    Observed {
        session,
        kv,
        node_present,
        pending_ids,
        backlog,
    }
}

/// Every fenced write of `view` is refused and changes nothing observable through `plain`.
async fn assert_all_refused(plain: &Storage, view: &Storage, pending: &[EntryId], consumer: &str) {
    let before = observe(plain, consumer).await;
    is_fenced(
        "session put",
        view.sessions.put(SUP, "s1", "stale", b"x".to_vec(), 2).await,
    );
    is_fenced("session delete", view.sessions.delete(SUP, "s1", None).await);
    is_fenced("kv set", view.kv.set("fence-k", b"stale".to_vec(), None).await);
    is_fenced("kv increment", view.kv.increment("fence-n", 1, None).await);
    is_fenced("kv delete", view.kv.delete("fence-k").await);
    is_fenced("ack", view.relay_log.ack(SUP, pending).await);
    is_fenced("trim", view.relay_log.trim_session(SUP, "s1").await);
    is_fenced("append", view.relay_log.append(vec![relay(SUP, "s1", 99)]).await);
    is_fenced("delete namespace", view.tries.delete_namespace(SUP, "s1").await);
    let version = before.session.as_ref().map_or(0, |(_, _, v)| *v);
    is_fenced(
        "write set",
        view.write_sets
            .write(WriteSet {
                tries: vec![TrieWrite {
                    supplier: SUP.into(),
                    namespace: "s1".into(),
                    batch: node(9, "stale"),
                }],
                records: vec![RecordWrite {
                    supplier: SUP.into(),
                    session_id: "s1".into(),
                    state: "stale".into(),
                    data: b"x".to_vec(),
                    expected_version: version,
                }],
                acks: vec![LogAck {
                    supplier: SUP.into(),
                    ids: pending.to_vec(),
                }],
                // The fence is checked whatever the durability (an ingest batch is eventually durable).
                durability: crate::SetDurability::Eventual,
            })
            .await,
    );
    if plain.backend == "redis" {
        // Redis fences trie batches (the store is opened unfenced: `open` is a prefetch) but not deliveries
        // (see `storage::redis` fence docs): every miner reads as one consumer, so nothing moves to another.
        let mut store = view.tries.open(SUP, "s1").await.unwrap();
        let r = tokio::task::spawn_blocking(move || store.write_batch(node(9, "stale")))
            .await
            .unwrap();
        is_fenced("trie batch", r);
    } else {
        is_fenced("read", view.relay_log.read(SUP, consumer, 10).await);
        is_fenced("read pending", view.relay_log.read_pending(SUP, consumer, 10).await);
        is_fenced("claim", view.relay_log.claim(SUP, consumer, Duration::ZERO, 10).await);
        is_fenced("trie open", view.tries.open(SUP, "s1").await.map(drop));
    }
    assert_eq!(
        observe(plain, consumer).await,
        before,
        "a refused write changed nothing"
    );
}

/// Seeds a session record, a KV value, a trie node and two delivered, unacknowledged entries through `view`
/// (the holder's fenced view); returns the pending ids.
async fn seed_as_holder(view: &Storage, consumer: &str) -> Vec<EntryId> {
    view.relay_log
        .append((0..3).map(|n| relay(SUP, "s1", n)).collect())
        .await
        .unwrap();
    let got = view.relay_log.read(SUP, consumer, 2).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        view.sessions
            .put(SUP, "s1", "active", b"one".to_vec(), 0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        view.sessions
            .put(SUP, "s1", "claiming", b"two".to_vec(), 1)
            .await
            .unwrap(),
        2
    );
    view.kv.set("fence-k", b"holder".to_vec(), None).await.unwrap();
    assert_eq!(view.kv.increment("fence-n", 2, None).await.unwrap(), 2);
    let mut store = view.tries.open(SUP, "s1").await.unwrap();
    tokio::task::spawn_blocking(move || store.write_batch(node(9, "holder")))
        .await
        .unwrap()
        .unwrap();
    got.iter().map(|e| e.id).collect()
}

/// The live holder's fenced writes pass; a stale token and another candidate are refused with nothing changed;
/// once the holder resigns its own fence is refused too.
pub async fn fencing_stale_token(f: Fixture) {
    let s = &f.storage;
    let consumer = "miner";
    let token = s.leadership.campaign(ELECTION, "a", LONG).await.unwrap().unwrap();
    let holder = s.fenced(Fence::new(ELECTION, "a", token));
    assert_eq!(holder.fence(), Some(&Fence::new(ELECTION, "a", token)));
    assert_eq!(s.fence(), None, "the plain view stays unfenced");
    let pending = seed_as_holder(&holder, consumer).await;

    assert_all_refused(s, &s.fenced(Fence::new(ELECTION, "a", token + 1)), &pending, consumer).await;
    assert_all_refused(s, &s.fenced(Fence::new(ELECTION, "b", token)), &pending, consumer).await;
    assert_all_refused(
        s,
        &s.fenced(Fence::new("other-election", "a", token)),
        &pending,
        consumer,
    )
    .await;

    // The holder still writes: ack one entry, move the record on.
    assert_eq!(holder.relay_log.ack(SUP, &pending[..1]).await.unwrap(), 1);
    assert_eq!(
        holder
            .sessions
            .put(SUP, "s1", "claimed", b"three".to_vec(), 2)
            .await
            .unwrap(),
        3
    );
    // The plain view keeps working without leadership (the relayer's appends).
    s.relay_log.append(vec![relay(SUP, "s2", 7)]).await.unwrap();

    assert!(s.leadership.resign(ELECTION, "a", token).await.unwrap());
    assert_all_refused(s, &holder, &pending[1..], consumer).await;
    let rec = s.sessions.get(SUP, "s1").await.unwrap().unwrap();
    assert_eq!((rec.state.as_str(), rec.version), ("claimed", 3));
}

/// A holder that stops renewing is taken over; its fence (old token) is refused on every write, the new
/// holder's passes, and the new holder sees exactly the state the old one left.
pub async fn fencing_takeover(f: Fixture) {
    let s = &f.storage;
    let consumer = "miner";
    let old = s.leadership.campaign(ELECTION, "old", LONG).await.unwrap().unwrap();
    let old_view = s.fenced(Fence::new(ELECTION, "old", old));
    let pending = seed_as_holder(&old_view, consumer).await;
    assert!(
        s.leadership
            .renew(ELECTION, "old", old, Duration::from_millis(300))
            .await
            .unwrap()
    );
    let new = poll_until("the new candidate takes over", || async {
        s.leadership.campaign(ELECTION, "new", LONG).await.unwrap()
    })
    .await;
    assert!(new > old);
    assert_all_refused(s, &old_view, &pending, consumer).await;

    let new_view = s.fenced(Fence::new(ELECTION, "new", new));
    let rec = new_view.sessions.get(SUP, "s1").await.unwrap().unwrap();
    assert_eq!(
        (rec.state.as_str(), rec.data.as_slice(), rec.version),
        ("claiming", &b"two"[..], 2)
    );
    assert_eq!(
        new_view
            .sessions
            .put(SUP, "s1", "claimed", b"new".to_vec(), 2)
            .await
            .unwrap(),
        3
    );
    new_view.kv.set("fence-k", b"new".to_vec(), None).await.unwrap();
    let mut store = new_view.tries.open(SUP, "s1").await.unwrap();
    tokio::task::spawn_blocking(move || store.write_batch(node(10, "new")))
        .await
        .unwrap()
        .unwrap();
    new_view.tries.delete_namespace(SUP, "s1").await.unwrap();
    assert_eq!(
        new_view.relay_log.trim_session(SUP, "s1").await.unwrap(),
        3,
        "nothing the old holder delivered was acknowledged or trimmed"
    );
    // Still refused after the new holder's writes.
    is_fenced("old put", old_view.sessions.put(SUP, "s1", "x", Vec::new(), 3).await);
}
