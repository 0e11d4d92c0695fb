//! The version gate of increments applied at most once (`Op::KvIncrementOnce`, feature `kv-once`) on a 3-node
//! loopback cluster: while a member runs a build without it (here node 3 started advertising write sets only),
//! `increment_once` answers `Conflict` on every node and proposes nothing, so that member never receives an entry
//! it cannot decode and stays up; plain increments go on. Once it is upgraded, `increment_once` is replicated
//! and applied on every node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Cluster, wait_for};
use raft::FeatureSet;
use storage::suite::once;
use storage::{IncrementOnce, StorageError};

const OLD: u64 = 3;
const TTL: Option<Duration> = Some(Duration::from_secs(600));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_kv_once_gets_none_and_it_resumes_once_upgraded() {
    let mut c = Cluster::start_with(3, |cfg| {
        if cfg.node_id == OLD {
            cfg.features = FeatureSet::WRITE_SET;
        }
    })
    .await;
    let op = IncrementOnce {
        writer: "relayer-a".into(),
        seq: 1,
    };
    let l = c.leader().await;
    let before = c.node(l).status().last_log_index;
    for id in 1..=3 {
        match c.node(id).storage().kv.increment_once("m", &op, 5, TTL).await {
            Err(StorageError::Conflict(why)) => assert!(why.contains(&format!("node {OLD}")), "node {id}: {why}"),
            other => panic!("node {id}: increment_once while node {OLD} lacks kv-once: {other:?}"),
        }
    }
    assert_eq!(
        c.node(c.leader().await).status().last_log_index,
        before,
        "nothing proposed"
    );
    assert_eq!(
        c.node(1).storage().kv.increment("m", 2, TTL).await.unwrap(),
        2,
        "plain increments go on"
    );
    c.converged().await;
    assert_eq!(c.node(OLD).stopped(), None, "node {OLD} stays up");
    assert_eq!(
        c.node(OLD).storage().kv.get("m").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );

    // Node 3 upgraded: restarted advertising every feature of this build.
    c.stop(OLD).await;
    c.restart(OLD).await;
    let kv = c.node(1).storage().kv;
    assert_eq!(once(kv.as_ref(), "m", &op, 5, TTL).await.unwrap(), 7);
    assert_eq!(once(kv.as_ref(), "m", &op, 5, TTL).await.unwrap(), 7, "applied once");
    c.converged().await;
    for id in 1..=3 {
        assert_eq!(c.node(id).stopped(), None, "node {id} up");
        wait_for(&format!("node {id} applied the increment"), || async {
            (c.node(id).storage().kv.get("m").await.unwrap().as_deref() == Some(&b"7"[..])).then_some(())
        })
        .await;
    }
    c.shutdown().await;
}
