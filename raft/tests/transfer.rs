//! Leadership transfer on a real 3-node cluster on 127.0.0.1: the admin command hands the leadership to the
//! named voter (or the most caught-up one) in the next term, writes go on through the new leader with nothing
//! lost, bad targets are refused with the reason, and a leader's hand-off before it stops makes the next leader
//! known well before an election timeout would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, SUPPLIER, TOKEN, holds, wait_for};
use raft::{AdminClient, AdminError};
use storage::suite::relay;

fn admin(c: &Cluster, id: u64) -> AdminClient {
    AdminClient::new(c.node(id).local_addr().to_string(), TOKEN).with_timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_hands_the_leadership_to_a_voter_and_writes_go_on() {
    let c = Cluster::start(3).await;
    let l1 = c.leader().await;
    let term1 = c.node(l1).status().term;
    let s = c.node(l1).storage();
    s.relay_log
        .append((0..50).map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
    drop(s);

    // Named target, asked through a follower (the client follows it to the leader).
    let target = c.running().map(|n| n.id()).find(|id| *id != l1).unwrap();
    let via = c
        .running()
        .map(|n| n.id())
        .find(|id| *id != l1 && *id != target)
        .unwrap();
    assert_eq!(admin(&c, via).transfer_leader(Some(target)).await.unwrap(), target);
    assert_eq!(c.leader().await, target);
    let term2 = c.node(target).status().term;
    assert!(term2 > term1, "term {term2} after {term1}");
    assert!(!c.node(l1).is_leader());
    // The new leader takes writes; nothing from before is lost anywhere.
    let s = c.node(target).storage();
    s.relay_log
        .append((50..100).map(|n| relay(SUPPLIER, "s1", n)).collect())
        .await
        .unwrap();
    for n in c.running() {
        holds(n, 100).await;
    }
    drop(s);

    // Default target: some other voter, in a later term again.
    let l3 = admin(&c, target).transfer_leader(None).await.unwrap();
    assert_ne!(l3, target);
    assert_eq!(c.leader().await, l3);
    assert!(c.node(l3).status().term > term2);

    // Bad targets are refused with the reason, and the leadership stays where it is.
    match admin(&c, l3).transfer_leader(Some(l3)).await {
        Err(AdminError::Invalid(why)) => assert!(why.contains("already leads"), "{why}"),
        other => panic!("transfer to the leader itself: {other:?}"),
    }
    match admin(&c, l3).transfer_leader(Some(9)).await {
        Err(AdminError::Invalid(why)) => assert!(why.contains("not a voter"), "{why}"),
        other => panic!("transfer to a non-member: {other:?}"),
    }
    assert_eq!(c.leader().await, l3);
    c.shutdown().await;
}

/// A leader that hands off before it stops: the next leader is known within the hand-off (no election timeout,
/// whose lower bound is 150 ms, to wait for), and the remaining pair takes writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_off_first() {
    let mut c = Cluster::start(3).await;
    let l1 = c.leader().await;
    let term1 = c.node(l1).status().term;
    let t0 = Instant::now();
    let next = c.node(l1).hand_off(Duration::from_secs(5)).await.expect("handed off");
    let handed = t0.elapsed();
    c.stop(l1).await;
    assert_ne!(next, l1);
    assert_eq!(c.leader().await, next);
    assert!(c.node(next).status().term > term1);
    println!("hand-off: leader {l1} → {next} in {handed:?}");
    let s = c.node(next).storage();
    let ids = s
        .relay_log
        .append((0..10).map(|n| relay(SUPPLIER, "s2", n)).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), 10);
    drop(s);
    // A follower has nothing to hand off.
    let follower = c.running().map(|n| n.id()).find(|id| *id != next).unwrap();
    assert_eq!(c.node(follower).hand_off(Duration::from_secs(1)).await, None);
    wait_for("the follower still follows", || async {
        (c.node(follower).status().leader_id == Some(next)).then_some(())
    })
    .await;
    c.shutdown().await;
}
