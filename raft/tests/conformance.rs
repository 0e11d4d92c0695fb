//! The storage contract's conformance suite through a 3-node raft cluster: data checks through a follower
//! (writes forwarded to the leader, reads local after apply), leadership checks on the leader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;

use common::Cluster;
use storage::suite::{self, Fixture};

async fn on_follower<F, Fut>(check: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let c = Cluster::start(3).await;
    let f = c.follower().await;
    check(Fixture::new(c.node(f).storage())).await;
    c.shutdown().await;
}

async fn on_leader<F, Fut>(check: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let c = Cluster::start(3).await;
    let l = c.leader().await;
    check(Fixture::new(c.node(l).storage())).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_log_through_follower() {
    on_follower(suite::relay_log_order).await;
    on_follower(suite::relay_log_redelivery).await;
    on_follower(suite::relay_log_trim_session).await;
    on_follower(suite::relay_log_concurrent_appends).await;
    on_follower(suite::relay_log_suppliers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_tries_kv_through_follower() {
    on_follower(suite::trie_namespaces).await;
    on_follower(suite::session_cas).await;
    on_follower(suite::write_sets).await;
    on_follower(suite::kv_basics).await;
    on_follower(suite::kv_ttl).await;
}

/// Increments applied at most once: one replicated op, deduplicated at apply on every node alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_increment_once_through_follower() {
    on_follower(suite::kv_increment_once).await;
    on_follower(suite::kv_increment_once_ttl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_checks_on_leader() {
    on_leader(suite::relay_log_order).await;
    on_leader(suite::session_cas).await;
    on_leader(suite::write_sets).await;
    on_leader(suite::trie_namespaces).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_on_raft_leader() {
    on_leader(suite::leadership_exclusive).await;
    on_leader(suite::leadership_takeover).await;
}

/// Fenced writes are checked at apply against the replicated lease (through the leader: campaigns need it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_on_raft_leader() {
    on_leader(suite::fencing_stale_token).await;
    on_leader(suite::fencing_takeover).await;
}

/// A follower never wins an election's lease: leadership is raft leadership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_cannot_campaign() {
    let c = Cluster::start(3).await;
    let f = c.follower().await;
    let s = c.node(f).storage();
    let ttl = std::time::Duration::from_secs(60);
    assert_eq!(s.leadership.campaign("global", "follower", ttl).await.unwrap(), None);
    let l = c.leader().await;
    let token = c
        .node(l)
        .storage()
        .leadership
        .campaign("global", "leader", ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        raft::token_term(token),
        c.node(l).status().term,
        "the token carries the raft term"
    );
    // Every node sees the holder once applied.
    c.converged().await;
    let info = s.leadership.leader("global").await.unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.token), ("leader", token));
    assert!(
        !s.leadership.renew("global", "leader", token, ttl).await.unwrap(),
        "renew only on the raft leader"
    );
    c.shutdown().await;
}
