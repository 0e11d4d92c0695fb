//! Bounds on a real 3-node cluster: appends on a leader that lost its quorum fail in bounded time instead of
//! hanging (and blocking every later append on that node).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, wait_for};
use storage::suite::relay;
use storage::{MinedRelay, StorageError};

const SUPPLIER: &str = "pokt1a";
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
