//! Write-set checks ([`crate::WriteSets`]): trie batches, records and acks applied together; a record's version
//! mismatch writes nothing; a set naming a key twice is refused; an eventually durable set reads the same at
//! once. (Fencing: the `fence` checks.)

use super::{Fixture, relay};
use crate::contract::{LogAck, RecordWrite, SetDurability, TrieWrite, WriteSet};
use crate::nodes::NodeBatch;
use crate::{Storage, StorageError};

const SUP: &str = "pokt1ws";

fn puts(tag: &str, keys: &[u8]) -> NodeBatch {
    NodeBatch {
        puts: keys
            .iter()
            .map(|k| (vec![*k; 5], format!("{tag}-{k}").into_bytes()))
            .collect(),
        deletes: Vec::new(),
    }
}

fn record(session: &str, state: &str, expected_version: u64) -> RecordWrite {
    RecordWrite {
        supplier: SUP.into(),
        session_id: session.into(),
        state: state.into(),
        data: format!("{session}-{state}").into_bytes(),
        expected_version,
    }
}

fn trie(namespace: &str, batch: NodeBatch) -> TrieWrite {
    TrieWrite {
        supplier: SUP.into(),
        namespace: namespace.into(),
        batch,
    }
}

/// The node `key` of namespace `ns`, through a store opened now.
async fn node(s: &Storage, ns: &str, key: u8) -> Option<Vec<u8>> {
    let store = s.tries.open(SUP, ns).await.unwrap();
    tokio::task::spawn_blocking(move || store.get(&[key; 5]).unwrap())
        .await
        .unwrap()
}

/// A set of two sessions' trie batches (one namespace open before, whose handle must see the write), two
/// records (one new, one moved on) and an ack is applied whole; a set whose one record is stale writes none of
/// its parts; duplicates are refused; an empty set is a no-op.
pub async fn write_sets(f: Fixture) {
    let s = &f.storage;
    let ws = &s.write_sets;
    assert_eq!(ws.write(WriteSet::default()).await.unwrap(), Default::default());
    s.relay_log
        .append((0..3).map(|n| relay(SUP, "s1", n)).collect())
        .await
        .unwrap();
    let delivered = s.relay_log.read(SUP, "miner", 3).await.unwrap();
    let ids: Vec<_> = delivered.iter().map(|e| e.id).collect();
    assert_eq!(s.sessions.put(SUP, "s1", "active", b"v1".to_vec(), 0).await.unwrap(), 1);
    // Tries are written through `TrieStore::open`ed namespaces (redb allocates them there).
    let mut s1 = s.tries.open(SUP, "s1").await.unwrap();
    let s1 = tokio::task::spawn_blocking(move || {
        s1.write_batch(puts("old", &[1, 2])).unwrap();
        s1
    })
    .await
    .unwrap();
    drop(s.tries.open(SUP, "s2/late").await.unwrap());

    let outcome = ws
        .write(WriteSet {
            tries: vec![
                trie(
                    "s1",
                    NodeBatch {
                        puts: vec![(vec![3; 5], b"new-3".to_vec())],
                        deletes: vec![vec![1; 5]],
                    },
                ),
                trie("s2/late", puts("late", &[7])),
            ],
            records: vec![record("s1", "claiming", 1), record("s2", "active", 0)],
            acks: vec![LogAck {
                supplier: SUP.into(),
                ids: ids[..2].to_vec(),
            }],
            // Eventual durability changes nothing a reader sees: everything below is visible at once.
            durability: SetDurability::Eventual,
        })
        .await
        .unwrap();
    assert_eq!(outcome.versions, vec![2, 1]);
    assert_eq!(outcome.acked, 2);
    let s1 = tokio::task::spawn_blocking(move || {
        assert_eq!(s1.get(&[1; 5]).unwrap(), None, "the open handle sees the delete");
        assert_eq!(s1.get(&[2; 5]).unwrap().as_deref(), Some(&b"old-2"[..]));
        assert_eq!(s1.get(&[3; 5]).unwrap().as_deref(), Some(&b"new-3"[..]), "and the put");
        s1
    })
    .await
    .unwrap();
    assert_eq!(node(s, "s2/late", 7).await.as_deref(), Some(&b"late-7"[..]));
    let r1 = s.sessions.get(SUP, "s1").await.unwrap().unwrap();
    assert_eq!(
        (r1.state.as_str(), r1.data.as_slice(), r1.version),
        ("claiming", &b"s1-claiming"[..], 2)
    );
    let r2 = s.sessions.get(SUP, "s2").await.unwrap().unwrap();
    assert_eq!((r2.state.as_str(), r2.version), ("active", 1));
    let listed: Vec<_> = s
        .sessions
        .list(Some(SUP), Some("claiming"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(listed, vec!["s1".to_owned()], "the state index follows the record");
    let pending: Vec<_> = s
        .relay_log
        .read_pending(SUP, "miner", 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, ids[2..].to_vec(), "acknowledged entries are not redelivered");

    // One stale record: nothing of the set is written.
    let stale = WriteSet {
        tries: vec![trie("s1", puts("stale", &[9]))],
        records: vec![record("s2", "claiming", 1), record("s1", "claimed", 1)],
        acks: vec![LogAck {
            supplier: SUP.into(),
            ids: ids[2..].to_vec(),
        }],
        durability: SetDurability::Eventual,
    };
    match ws.write(stale).await {
        Err(StorageError::Conflict(_)) => {}
        other => panic!("stale record: expected Conflict, got {other:?}"),
    }
    let s1 = tokio::task::spawn_blocking(move || {
        assert_eq!(s1.get(&[9; 5]).unwrap(), None, "no trie write of a refused set");
        s1
    })
    .await
    .unwrap();
    assert_eq!(node(s, "s1", 9).await, None);
    assert_eq!(
        s.sessions.get(SUP, "s2").await.unwrap().unwrap().version,
        1,
        "no record of a refused set"
    );
    assert_eq!(s.sessions.get(SUP, "s1").await.unwrap().unwrap().version, 2);
    assert_eq!(
        s.relay_log.backlog(SUP).await.unwrap().pending,
        1,
        "no ack of a refused set"
    );

    // A key twice is refused before anything is written.
    let twice = WriteSet {
        records: vec![record("s2", "claiming", 1), record("s2", "claimed", 2)],
        ..Default::default()
    };
    assert!(matches!(ws.write(twice).await, Err(StorageError::Backend(_))));
    assert_eq!(s.sessions.get(SUP, "s2").await.unwrap().unwrap().version, 1);

    // Records alone, and an ack alone.
    let outcome = ws
        .write(WriteSet {
            records: vec![record("s1", "claimed", 2), record("s2", "claiming", 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome.versions, vec![3, 2]);
    let outcome = ws
        .write(WriteSet {
            acks: vec![LogAck {
                supplier: SUP.into(),
                ids: ids.clone(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome.acked, 1, "only the entry still pending");
    assert_eq!(s.relay_log.backlog(SUP).await.unwrap().pending, 0);
    drop(s1);
}
