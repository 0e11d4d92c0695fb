//! What a leader refuses or hands on, with real nodes on 127.0.0.1:
//! - membership changes that would leave the cluster unable to commit (`membership_guard`): promoting a learner
//!   that is not caught up, removing a voter while the new voter set has no acknowledging majority;
//! - the application health each member publishes on its raft port (`app_health`), and a hand-off to a chosen
//!   voter (`RaftNode::hand_off_to`), which the relay miner's watchdog uses when the leader's miner is stuck.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Cluster, TOKEN, free_addr, wait_for};
use raft::{AdminClient, AdminError, AppHealth, NodeInfo};

fn voters(st: &raft::Status) -> Vec<u64> {
    st.voters.iter().map(|(id, _)| *id).collect()
}

/// A learner that never caught up (nothing listens at its address, so the leader knows no matched index for it)
/// is not promoted: made a voter it would acknowledge nothing, and 3 of the 4 voters would be needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_that_is_not_caught_up_is_not_promoted() {
    let c = Cluster::start(3).await;
    let l = c.leader().await;
    let admin = AdminClient::new(c.addrs[&l].to_string(), TOKEN).with_timeout(Duration::from_secs(10));
    admin
        .add_learner(4, NodeInfo::new(free_addr().to_string()))
        .await
        .unwrap();
    let committed = c.node(l).status().committed_index.unwrap();
    let refused = admin.promote(4).await;
    let Err(AdminError::Invalid(why)) = &refused else {
        panic!("promotion of a learner that is not caught up: {refused:?}");
    };
    assert!(why.contains("learner 4 is not caught up"), "{why}");
    assert!(why.contains("matched log index is unknown"), "{why}");
    assert!(why.contains(&format!("committed index is {committed}")), "{why}");
    let st = c.node(l).status();
    assert_eq!(voters(&st), vec![1, 2, 3], "{st:?}");
    assert!(st.learners.iter().any(|(id, _)| *id == 4), "{st:?}");
    c.shutdown().await;
}

/// With one voter down, removing another live voter would need both remaining ones (the leader and the down one)
/// to commit the joint config: refused, the membership untouched. Removing the down voter itself goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_is_not_removed_while_the_new_voters_cannot_commit() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != l).collect();
    let (down, live) = (others[0], others[1]);
    c.stop(down).await;
    let admin = AdminClient::new(c.addrs[&l].to_string(), TOKEN).with_timeout(Duration::from_secs(10));
    // Asked once the leader's heartbeat metrics show the stopped voter silent for longer than the guard's
    // freshness (the upper election timeout, 300 ms): asked sooner, its last acknowledgement still counts.
    wait_for("the leader sees the stopped voter silent", || async {
        use openraft::Instant as _;
        use openraft::async_runtime::watch::WatchReceiver as _;
        let m = c.node(l).raft().metrics();
        let m = m.borrow_watched();
        let last = (*m.heartbeat.as_ref()?.get(&down)?)?;
        (last.elapsed() > Duration::from_millis(400)).then_some(())
    })
    .await;
    let refused = admin.remove(live).await;
    let Err(AdminError::Invalid(refused)) = refused else {
        panic!("removing voter {live} with voter {down} down: {refused:?}");
    };
    assert!(refused.contains(&format!("removing voter {live}")), "{refused}");
    assert!(refused.contains(&format!("[{down}] not answering")), "{refused}");
    let st = c.node(l).status();
    assert_eq!(voters(&st), vec![1, 2, 3], "{st:?}");
    // Still writable: no joint config was proposed.
    c.node(l)
        .storage()
        .relay_log
        .append(vec![storage::suite::relay(common::SUPPLIER, "s1", 1)])
        .await
        .unwrap();
    admin.remove(down).await.unwrap();
    let st = wait_for("the down voter leaves", || async {
        let st = c.node(l).status();
        (voters(&st).len() == 2).then_some(st)
    })
    .await;
    let mut expected = vec![l, live];
    expected.sort_unstable();
    assert_eq!(voters(&st), expected);
    c.shutdown().await;
}

/// Each member serves what its application published; the leader reads its peers' and hands off to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_app_health_is_read_and_leadership_handed_to_a_chosen_voter() {
    let c = Cluster::start(3).await;
    let l = c.leader().await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != l).collect();
    let healthy = AppHealth {
        chain_height: 42,
        progressed_ms_ago: Some(5),
        block_time_ms: Some(1000),
        stalled: false,
        suppliers: Some(vec!["pokt1supplier".into()]),
    };
    c.node(others[1]).set_app_health(healthy.clone());
    let mut seen = c.node(l).peer_app_health(Duration::from_secs(1)).await;
    seen.sort_by_key(|(id, _)| *id);
    let seen: Vec<(u64, Option<AppHealth>)> = seen.into_iter().map(|(id, r)| (id, r.unwrap())).collect();
    let mut expected = vec![(others[0], None), (others[1], Some(healthy))];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(seen, expected);
    // On a follower a hand-off is refused; on the leader it moves the leadership to the named voter.
    assert!(
        c.node(others[0])
            .hand_off_to(others[1], Duration::from_secs(5))
            .await
            .is_err()
    );
    let to = c.node(l).hand_off_to(others[1], Duration::from_secs(5)).await.unwrap();
    assert_eq!(to, others[1]);
    assert_eq!(c.leader().await, others[1]);
    c.shutdown().await;
}
