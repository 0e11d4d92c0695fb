//! A leadership confirmation must hold when it is returned. A raft leader that proposed a lease renewal and
//! was cut off before hearing the acknowledgements waits for the commit; the entry reached a follower, so a
//! later leader commits it and openraft answers the deposed node's proposal with the old term's result. Before
//! the fix that answer was "renewed", and the deposed node's miner submitted claims next to the new leader's
//! (seen in `raft_partition`: two claims broadcast by the healed old leader, rejected outside their window).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, DEADLINE, MuteProxy, free_addr, wait_for};

const ELECTION: &str = "miner";
const TTL: Duration = Duration::from_secs(60);

/// Three nodes, each reached through a [`MuteProxy`] (the membership holds the proxies' addresses), with the
/// given election timeout (else the default).
async fn proxied_cluster(election_timeout: Option<(Duration, Duration)>) -> (Cluster, BTreeMap<u64, MuteProxy>) {
    let listen: BTreeMap<u64, std::net::SocketAddr> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut proxies = BTreeMap::new();
    for (id, addr) in &listen {
        proxies.insert(*id, MuteProxy::start(*addr).await);
    }
    let advertise: BTreeMap<u64, String> = proxies.iter().map(|(id, p)| (*id, p.addr().to_string())).collect();
    let c = Cluster::start_with(3, |cfg| {
        cfg.listen = listen[&cfg.node_id];
        cfg.advertise = Some(advertise[&cfg.node_id].clone());
        if let Some(timeout) = election_timeout {
            cfg.election_timeout = timeout;
        }
    })
    .await;
    (c, proxies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_committed_after_its_proposer_was_deposed_confirms_nothing() {
    // Every node is reached through a proxy (the membership holds the proxies' addresses).
    let (mut c, proxies) = proxied_cluster(None).await;
    let a = c.leader().await;
    let storage_a = c.node(a).storage();
    let token = storage_a
        .leadership
        .campaign(ELECTION, "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(
        storage_a
            .leadership
            .renew(ELECTION, "node-a", token, TTL)
            .await
            .unwrap(),
        "a renewal by the leading node confirms its leadership"
    );

    // Only A and B remain; B's answers to A are lost, so A cannot commit anything alone.
    let mut others = (1..=3).filter(|id| *id != a);
    let (b, gone) = (others.next().unwrap(), others.next().unwrap());
    c.stop(gone).await;
    c.converged().await;
    proxies[&b].mute(true);
    let term_a = c.node(a).status().term;
    let last = c.node(a).status().last_log_index;
    let renewal = {
        let storage_a = storage_a.clone();
        tokio::spawn(async move { storage_a.leadership.renew(ELECTION, "node-a", token, TTL).await })
    };
    wait_for("the renewal entry reaches B", || async {
        (c.node(b).status().last_log_index > last).then_some(())
    })
    .await;
    assert!(!renewal.is_finished(), "A committed without B's answers");

    // B is elected with A's vote (A's lease on B lapses without answers) and commits its term's first entry,
    // and with it A's renewal, which A then applies as B's follower.
    let mut tries = 0;
    wait_for("B leads in a later term", || {
        tries += 1;
        let node = c.node(b);
        async move {
            if tries % 40 == 1 {
                node.raft().trigger().elect(false).await.unwrap();
            }
            let s = node.status();
            (s.leader_id == Some(b) && node.is_leader() && s.term > term_a).then_some(())
        }
    })
    .await;
    let renewed = tokio::time::timeout(DEADLINE, renewal).await.unwrap().unwrap();
    // The answer came from applying the entry (metrics follow the answer by a moment).
    wait_for("A applies its renewal", || async {
        (c.node(a).status().applied_index > last).then_some(())
    })
    .await;
    assert_eq!(
        renewed,
        Ok(false),
        "a renewal committed by the next leader confirmed the deposed node's leadership"
    );
    assert!(storage_a.leadership.leader(ELECTION).await.unwrap().is_none());
    c.shutdown().await;
}

/// A leader whose quorum acknowledgement is merely late (its only reachable follower answers slowly, as on a
/// loaded host) is confirmed once the next acknowledgement arrives instead of being told at once that it does
/// not lead: the miner's check before a claim would otherwise skip a claim due now. A leader whose
/// acknowledgements stay away is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_on_a_leader_whose_quorum_acknowledgement_is_late_waits_for_it() {
    // A lease (the lower election timeout) long enough that a late acknowledgement is told apart from the
    // scheduling noise of a loaded test host.
    let (mut c, proxies) = proxied_cluster(Some((Duration::from_millis(500), Duration::from_millis(1500)))).await;
    let a = c.leader().await;
    let storage_a = c.node(a).storage();
    let token = storage_a
        .leadership
        .campaign(ELECTION, "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    // Only A and B remain, so every acknowledgement of A's leadership is B's.
    let mut others = (1..=3).filter(|id| *id != a);
    let (b, gone) = (others.next().unwrap(), others.next().unwrap());
    c.stop(gone).await;
    c.converged().await;
    let term = c.node(a).status().term;
    let unconfirmed = |c: &Cluster| {
        let s = c.node(a).status();
        s.state == "Leader" && s.term == term && !c.node(a).is_leader()
    };

    // B's answers stay away: A, still the raft leader, cannot confirm its leadership and is refused.
    proxies[&b].mute(true);
    wait_for("A's quorum acknowledgement is older than the lease", || async {
        unconfirmed(&c).then_some(())
    })
    .await;
    assert_eq!(
        storage_a.leadership.renew(ELECTION, "node-a", token, TTL).await,
        Ok(false),
        "a leader without acknowledgements confirmed its leadership"
    );

    // B's answers are late, not gone: a renewal asked while A is unconfirmed waits for the next one.
    wait_for("A is still unconfirmed", || async { unconfirmed(&c).then_some(()) }).await;
    let renewal = {
        let storage_a = storage_a.clone();
        tokio::spawn(async move { storage_a.leadership.renew(ELECTION, "node-a", token, TTL).await })
    };
    proxies[&b].mute(false);
    let renewed = tokio::time::timeout(DEADLINE, renewal).await.unwrap().unwrap();
    assert_eq!(
        renewed,
        Ok(true),
        "a late acknowledgement was taken for a lost leadership"
    );
    assert_eq!(c.node(a).status().term, term);
    c.shutdown().await;
}

/// A leader whose followers answer every RPC later than openraft's heartbeat deadline (the heartbeat interval,
/// 50 ms), as on a loaded host, while its writes keep committing (an append with entries gets a second or more):
/// no heartbeat answer counts, but openraft 0.10 counts every answered replication request as a quorum
/// acknowledgement (`ReplicationContext::notify_heartbeat_progress`, stamped with the request's sending time),
/// so a leader whose writes commit keeps leading and confirms its lease renewals at once. The miner's
/// leadership on a busy loaded cluster relies on that; pinned here so an openraft upgrade that stops doing it
/// fails a test instead of the chaos runs (what still fails under load is a round trip longer than the lease:
/// see `Core::lease`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_heartbeat_answers_are_late_is_confirmed_by_its_commits() {
    // A lease (the lower election timeout) far above the delayed round trip of a commit.
    let (c, proxies) = proxied_cluster(Some((Duration::from_millis(1000), Duration::from_millis(2500)))).await;
    let a = c.leader().await;
    let storage_a = c.node(a).storage();
    let token = storage_a
        .leadership
        .campaign(ELECTION, "node-a", TTL)
        .await
        .unwrap()
        .unwrap();
    let term = c.node(a).status().term;

    // Every answer to A comes 120 ms late: heartbeats reach the followers (no election), their answers miss
    // openraft's heartbeat deadline.
    for (id, proxy) in &proxies {
        if *id != a {
            proxy.delay(Duration::from_millis(120));
        }
    }
    wait_for(
        "A's last counted quorum acknowledgement is older than the lease",
        || async { (!c.node(a).is_leader()).then_some(()) },
    )
    .await;
    assert!(!c.node(a).is_leader(), "heartbeat answers after their deadline counted");

    // A write commits (about one delayed round trip): its answered appends acknowledged A's leadership.
    storage_a.kv.set("probe", b"1".to_vec(), None).await.unwrap();
    assert!(
        c.node(a).is_leader(),
        "a commit by the leader did not count as a quorum acknowledgement"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        storage_a.leadership.renew(ELECTION, "node-a", token, TTL).await,
        Ok(true),
        "a leader whose writes commit could not renew its lease"
    );
    // Confirmed by the write's and the renewal's own appends, not after waiting out the upper election timeout.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "renewal took {:?}",
        started.elapsed()
    );
    assert_eq!(c.node(a).status().term, term, "the late answers caused an election");
    for proxy in proxies.values() {
        proxy.delay(Duration::ZERO);
    }
    c.shutdown().await;
}

/// A cluster of one voter (a new cluster before its other nodes are added, or one run alone on purpose): its
/// leader is its own quorum, so it takes, renews and holds the lease, and is ready, for as long as it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_cluster_takes_and_renews_the_lease() {
    let c = Cluster::start(1).await;
    let node = c.node(1);
    let leadership = node.storage().leadership;
    let token = leadership.campaign(ELECTION, "m1", TTL).await.unwrap();
    let token = token.expect("the only voter takes the lease");
    for round in 0..4 {
        // Longer than the leader lease (150 ms): a confirmation then needs a fresh quorum acknowledgement.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            leadership.renew(ELECTION, "m1", token, TTL).await.unwrap(),
            "renewal {round} refused; status {:?}",
            node.status()
        );
        assert_eq!(node.readiness(), Ok(()), "round {round}");
        assert!(node.is_leader(), "round {round}");
    }
    c.shutdown().await;
}
