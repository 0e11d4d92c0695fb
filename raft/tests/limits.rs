//! Bounds on a real 3-node cluster: appends on a leader that lost its quorum fail in bounded time instead of
//! hanging (and blocking every later append on that node); relays of several MiB (a relay carries a request and
//! a response of up to the relayer's body limit each) commit, replicate and catch up although the raft port
//! takes requests of at most 64 MiB, and a relay too large for any raft entry is refused at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, wait_for};
use storage::suite::relay;
use storage::{MinedRelay, StorageError};

const SUPPLIER: &str = "pokt1a";
/// The tests of this file move hundreds of MiB through three in-process nodes (slow in a debug build): one at a
/// time, so their deadlines measure the cluster, not the other tests.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a caller may wait for an append's answer at most. The node answers within its commit deadline (5 s)
/// plus a read-your-writes wait; anything near this is a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

fn big(n: u64, size: usize) -> MinedRelay {
    MinedRelay {
        payload: vec![(n % 251) as u8; size],
        ..relay(SUPPLIER, "s1", n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_appends_on_a_leader_that_lost_quorum_fail_in_bounded_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let s = c.node(l).storage();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (s, stop, ok) = (s.clone(), stop.clone(), ok.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let started = Instant::now();
                match tokio::time::timeout(ANSWER_WITHIN, s.relay_log.append(vec![big(w << 32 | n, 100)])).await {
                    Ok(Ok(_)) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Err(e)) => outcomes.push(Ok((e, started.elapsed()))),
                    Err(_) => {
                        outcomes.push(Err(()));
                        break;
                    }
                }
            }
            outcomes
        }));
    }
    wait_for("appends commit", || async {
        (ok.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;
    // Both followers go away while appends are in flight: the leader cannot commit them any more.
    let followers: Vec<u64> = c.running().map(|n| n.id()).filter(|id| *id != l).collect();
    for id in followers {
        c.stop(id).await;
    }
    let committed = ok.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let mut failed = 0;
    for w in writers {
        for outcome in w.await.unwrap() {
            let (e, took) = outcome.expect("an append on a leader without quorum never answered");
            assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
            assert!(took < ANSWER_WITHIN, "{took:?}");
            failed += 1;
        }
    }
    println!("{committed} appends committed before the followers stopped, {failed} failed after");
    // The node is not wedged: a later append fails in bounded time too (no permit is held by a hung commit).
    let started = Instant::now();
    let r = tokio::time::timeout(ANSWER_WITHIN, s.relay_log.append(vec![big(1 << 40, 100)]))
        .await
        .expect("a later append on the leader without quorum never answered");
    assert!(matches!(r, Err(StorageError::Unavailable(_))), "{r:?}");
    println!("a later append failed after {:?}: {r:?}", started.elapsed());
}

/// Eight relays of 9 MiB in one append (72 MiB, more than the raft port's 64 MiB request limit): they commit (in
/// several entries), and later appends still commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_larger_than_the_raft_request_limit_commits_and_later_appends_still_commit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(3).await;
    let l = c.leader().await;
    let s = c.node(l).storage();
    let relays: Vec<MinedRelay> = (0..8).map(|n| big(n, 9 << 20)).collect();
    let started = Instant::now();
    let ids = tokio::time::timeout(ANSWER_WITHIN * 8, s.relay_log.append(relays))
        .await
        .expect("a 72 MiB append never answered")
        .unwrap();
    println!("72 MiB append committed in {:?}", started.elapsed());
    assert_eq!(ids.len(), 8);
    let small = tokio::time::timeout(ANSWER_WITHIN, s.relay_log.append(vec![big(100, 10)]))
        .await
        .expect("a small append after the large one never answered");
    assert_eq!(small.unwrap().len(), 1);
    // Every node holds all nine.
    c.converged().await;
    for n in c.running() {
        assert_eq!(n.storage().relay_log.backlog(SUPPLIER).await.unwrap().undelivered, 9);
    }
}

/// A relay larger than any raft entry may be is refused at once with a storage error (the relayer refuses the
/// relay), and the node keeps committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_too_large_for_a_raft_entry_is_refused_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(3).await;
    let f = c.follower().await;
    for id in [c.leader().await, f] {
        let s = c.node(id).storage();
        let r = tokio::time::timeout(ANSWER_WITHIN, s.relay_log.append(vec![big(1, 10), big(2, 60 << 20)]))
            .await
            .expect("an oversize relay's append never answered");
        match r {
            Err(StorageError::TooLarge(e)) => assert!(e.contains("too large"), "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(s.relay_log.relay_fits(&big(4, 10)));
        assert!(
            !s.relay_log.relay_fits(&big(5, 60 << 20)),
            "callers can check before appending"
        );
        let ok = tokio::time::timeout(ANSWER_WITHIN, s.relay_log.append(vec![big(3, 10)])).await;
        assert_eq!(ok.expect("a later append never answered").unwrap().len(), 1);
    }
}

/// A follower that was down while 70 entries of 1.5 MiB were committed (more than 64 MiB in the first
/// `max_payload_entries` of them) catches up once restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_on_large_entries() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let f = c.follower().await;
    c.stop(f).await;
    let s = c.node(l).storage();
    for n in 0..70 {
        s.relay_log.append(vec![big(n, 3 << 19)]).await.unwrap();
    }
    let target = c.node(l).status().last_log_index;
    c.restart(f).await;
    let started = Instant::now();
    wait_for("the restarted follower applies the leader's log", || async {
        (c.node(f).status().applied_index >= target).then_some(())
    })
    .await;
    println!("follower {f} caught up in {:?}", started.elapsed());
}
