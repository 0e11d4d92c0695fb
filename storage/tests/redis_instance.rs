//! Two processes campaigning under one instance name (the default `miner-{hostname}` on one host): before the
//! instance lock, the second was handed the first one's lease and fencing token, and both led. Two backends on
//! one real `redis-server` act as the two processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{NotReady, RedisBackend, RedisConfig};

const ELECTION: &str = "miner";
const NAME: &str = "miner-sharedhost";

async fn process(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_under_a_name_in_use_does_not_lead_and_is_not_ready() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let (a, b) = (process(&server).await, process(&server).await);
    let ttl = Duration::from_secs(30);

    let token = a.storage().leadership.campaign(ELECTION, NAME, ttl).await.unwrap();
    assert!(token.is_some());
    assert_eq!(
        b.storage().leadership.campaign(ELECTION, NAME, ttl).await.unwrap(),
        None,
        "the second process must not get the first one's lease and token"
    );
    assert_eq!(b.instance_in_use().as_deref(), Some(NAME));
    match b.readiness().await {
        Err(e @ NotReady::InstanceInUse(_)) => {
            assert_eq!(e.reason(), "redis_instance_in_use");
            assert!(e.to_string().contains(NAME), "{e}");
        }
        other => panic!("expected InstanceInUse, got {other:?}"),
    }
    // Its renewal of that token (had it got it some other way) is refused too.
    assert!(
        !b.storage()
            .leadership
            .renew(ELECTION, NAME, token.unwrap(), ttl)
            .await
            .unwrap()
    );
    // The first process is unaffected.
    assert!(
        a.storage()
            .leadership
            .renew(ELECTION, NAME, token.unwrap(), ttl)
            .await
            .unwrap()
    );
    assert_eq!(a.instance_in_use(), None);
    a.readiness().await.unwrap();
    // Another name on the same server is just a follower.
    let c = process(&server).await;
    assert_eq!(
        c.storage()
            .leadership
            .campaign(ELECTION, "miner-other", ttl)
            .await
            .unwrap(),
        None
    );
    assert_eq!(c.instance_in_use(), None);
    c.readiness().await.unwrap();

    // The first process shuts down gracefully: the second takes over under the name at once.
    a.release_instances().await;
    drop(a);
    assert_eq!(
        b.storage().leadership.campaign(ELECTION, NAME, ttl).await.unwrap(),
        token
    );
    assert_eq!(b.instance_in_use(), None);
    b.readiness().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_lock_of_a_crashed_process_expires_with_its_lease() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let (a, b) = (process(&server).await, process(&server).await);
    let ttl = Duration::from_millis(300);
    let first = a
        .storage()
        .leadership
        .campaign(ELECTION, NAME, ttl)
        .await
        .unwrap()
        .unwrap();
    // Crashed: no release.
    drop(a);
    assert_eq!(
        b.storage().leadership.campaign(ELECTION, NAME, ttl).await.unwrap(),
        None
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(t) = b.storage().leadership.campaign(ELECTION, NAME, ttl).await.unwrap() {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "lock never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(second > first, "a new term after the crashed process' lease expired");
    assert_eq!(b.instance_in_use(), None);
}
