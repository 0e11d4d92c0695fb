//! Fencing on a real 3-node cluster: a deposed raft leader's miner keeps its old token and keeps writing (it has
//! not noticed yet); every one of those writes is refused at apply, identically on every node, both before and
//! after the new leader's miner campaigned, while the new leader's writes pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Cluster, wait_for};
use storage::suite::relay;
use storage::{Fence, NodeBatch, Storage, StorageError};

const SUP: &str = "pokt1fence";
const ELECTION: &str = "miner";
const TTL: Duration = Duration::from_secs(60);

fn fenced<T: std::fmt::Debug>(what: &str, r: Result<T, StorageError>) {
    assert!(
        matches!(r, Err(StorageError::Fenced(_))),
        "{what}: expected Fenced, got {r:?}"
    );
}

fn node_batch(k: u8, tag: &str) -> NodeBatch {
    NodeBatch {
        puts: vec![(vec![k; 32], tag.as_bytes().to_vec())],
        deletes: Vec::new(),
    }
}

async fn write_node(s: &Storage, k: u8, tag: &str) -> Result<(), StorageError> {
    let mut store = s.tries.open(SUP, "s1").await?;
    let batch = node_batch(k, tag);
    tokio::task::spawn_blocking(move || store.write_batch(batch))
        .await
        .unwrap()
}

/// Every write a deposed miner would make, through its stale fenced view.
async fn all_refused(stale: &Storage, pending: &[storage::EntryId]) {
    fenced(
        "session put",
        stale.sessions.put(SUP, "s1", "stale", b"x".to_vec(), 1).await,
    );
    fenced("session delete", stale.sessions.delete(SUP, "s1", None).await);
    fenced("ack", stale.relay_log.ack(SUP, pending).await);
    fenced("trim", stale.relay_log.trim_session(SUP, "s1").await);
    fenced("trie delete", stale.tries.delete_namespace(SUP, "s1").await);
    fenced("kv set", stale.kv.set("k", b"stale".to_vec(), None).await);
    fenced("read", stale.relay_log.read(SUP, "miner", 10).await);
    fenced("read pending", stale.relay_log.read_pending(SUP, "miner", 10).await);
}

/// What one node holds of the state a deposed miner could have damaged.
#[derive(Debug, PartialEq, Eq)]
struct NodeState {
    record: Option<(String, Vec<u8>, u64)>,
    nodes: Vec<Option<Vec<u8>>>,
    relay_hashes: Vec<Vec<u8>>,
    kv: Option<Vec<u8>>,
}

async fn state_of(s: &Storage) -> NodeState {
    let record = s
        .sessions
        .get(SUP, "s1")
        .await
        .unwrap()
        .map(|r| (r.state, r.data, r.version));
    let store = s.tries.open(SUP, "s1").await.unwrap();
    let nodes = tokio::task::spawn_blocking(move || (1..=3u8).map(|k| store.get(&[k; 32]).unwrap()).collect())
        .await
        .unwrap();
    // Every entry still in the log, through a probe consumer (delivery state is node-local: on A the entries
    // its miner read are pending for "miner" and are claimed here; elsewhere they are undelivered).
    let mut entries = s.relay_log.read(SUP, "probe", 100).await.unwrap();
    entries.extend(s.relay_log.claim(SUP, "probe", Duration::ZERO, 100).await.unwrap());
    let mut relay_hashes: Vec<Vec<u8>> = entries.into_iter().map(|e| e.relay.relay_hash).collect();
    relay_hashes.sort();
    let kv = s.kv.get("k").await.unwrap();
    NodeState {
        record,
        nodes,
        relay_hashes,
        kv,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leaders_fenced_writes_are_refused_on_every_node() {
    let c = Cluster::start(3).await;
    let a = c.leader().await;
    let plain_a = c.node(a).storage();
    let token_a = plain_a
        .leadership
        .campaign(ELECTION, "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    let miner_a = plain_a.fenced(Fence::new(ELECTION, "node-a", token_a));

    // A's miner at work while it leads: the relayer appends, the miner reads, writes a trie node and a record,
    // acknowledges one entry.
    plain_a
        .relay_log
        .append((0..5).map(|n| relay(SUP, "s1", n)).collect())
        .await
        .unwrap();
    let got = miner_a.relay_log.read(SUP, "miner", 10).await.unwrap();
    assert_eq!(got.len(), 5);
    let ids: Vec<_> = got.iter().map(|e| e.id).collect();
    write_node(&miner_a, 1, "a").await.unwrap();
    assert_eq!(
        miner_a
            .sessions
            .put(SUP, "s1", "active", b"a".to_vec(), 0)
            .await
            .unwrap(),
        1
    );
    miner_a.kv.set("k", b"a".to_vec(), None).await.unwrap();
    assert_eq!(miner_a.relay_log.ack(SUP, &ids[..1]).await.unwrap(), 1);
    c.converged().await;

    // Another node takes raft leadership in a new term; A's process lives on with its delivered entries and
    // its old token.
    let b = c.follower().await;
    let term_a = c.node(a).status().term;
    let mut tries = 0;
    let b = wait_for("a new leader in a later term", || {
        tries += 1;
        let node = c.node(b);
        async move {
            if tries % 40 == 1 {
                node.raft().trigger().elect(false).await.unwrap();
            }
            let s = node.status();
            (s.leader_id == Some(b) && node.is_leader() && s.term > term_a).then_some(b)
        }
    })
    .await;
    assert_eq!(c.leader().await, b);

    // Before B's miner campaigns: the lease A's miner holds was granted in an older term and is void.
    all_refused(&miner_a, &ids[1..]).await;
    fenced("trie batch", write_node(&miner_a, 2, "stale").await);

    // B's miner campaigns and writes; A's miner is still refused.
    let plain_b = c.node(b).storage();
    let token_b = plain_b
        .leadership
        .campaign(ELECTION, "node-b", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(token_b > token_a, "token {token_b} after {token_a}");
    let miner_b = plain_b.fenced(Fence::new(ELECTION, "node-b", token_b));
    all_refused(&miner_a, &ids[1..]).await;
    fenced("trie batch", write_node(&miner_a, 2, "stale").await);
    assert_eq!(
        miner_b
            .sessions
            .put(SUP, "s1", "claiming", b"b".to_vec(), 1)
            .await
            .unwrap(),
        2
    );
    write_node(&miner_b, 3, "b").await.unwrap();

    // Every node holds exactly what the legitimate leaders wrote.
    c.converged().await;
    let expected = NodeState {
        record: Some(("claiming".to_owned(), b"b".to_vec(), 2)),
        nodes: vec![Some(b"a".to_vec()), None, Some(b"b".to_vec())],
        relay_hashes: {
            let mut h: Vec<Vec<u8>> = (1..5).map(|n| relay(SUP, "s1", n).relay_hash).collect();
            h.sort();
            h
        },
        kv: Some(b"a".to_vec()),
    };
    for n in c.running() {
        assert_eq!(state_of(&n.storage()).await, expected, "node {}", n.id());
    }
    c.shutdown().await;
}
