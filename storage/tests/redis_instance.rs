//! Two processes campaigning under one instance name (the default `miner-{hostname}` on one host): before the
//! instance lock, the second was handed the first one's lease and fencing token, and both led. Two backends on
//! one real `redis-server` act as the two processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use storage::Fencing as _;
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{INSTANCE_LOCK_TTL, NotReady, RedisBackend, RedisConfig};

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
    // The miner's reason alone: the storage readiness a relayer's `/ready` follows is unaffected.
    b.readiness().await.unwrap();
    match b.miner_readiness() {
        Err(e @ NotReady::InstanceInUse(_)) => {
            assert!(e.miner_only());
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
    a.miner_readiness().unwrap();
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
    c.miner_readiness().unwrap();

    // The first process shuts down gracefully: the second takes over under the name at once, in a new term (the
    // first one's token no longer passes the fence).
    a.release_instances().await;
    let taken = b
        .storage()
        .leadership
        .campaign(ELECTION, NAME, ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(taken > token.unwrap());
    let stale = a.fenced(storage::Fence::new(ELECTION, NAME, token.unwrap()));
    assert!(matches!(
        stale.kv.set("k", b"v".to_vec(), None).await,
        Err(storage::StorageError::Fenced(_))
    ));
    drop(a);
    assert_eq!(b.instance_in_use(), None);
    b.readiness().await.unwrap();
    b.miner_readiness().unwrap();
}

/// The lock outlives its lease's renewals (refreshed by the backend's own task), and a crashed process' lock lapses
/// long before its lease: the restart under the same name leads again well within the lease TTL, in a new term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_process_keeps_its_name_between_renewals_and_a_crashed_ones_lapses_before_its_lease() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let (a, b) = (process(&server).await, process(&server).await);
    let ttl = Duration::from_secs(60);
    let first = a
        .storage()
        .leadership
        .campaign(ELECTION, NAME, ttl)
        .await
        .unwrap()
        .unwrap();
    // Live and never renewing: still refused after several lock TTLs.
    let until = std::time::Instant::now() + 3 * INSTANCE_LOCK_TTL;
    while std::time::Instant::now() < until {
        assert_eq!(
            b.storage().leadership.campaign(ELECTION, NAME, ttl).await.unwrap(),
            None
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Crashed: no release, the lease (60 s) still live.
    drop(a);
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

/// A restart after a crash in the same pid namespace (two systemd units, the same container) finds its
/// predecessor's lock held by a pid that is gone: it takes the lock over at once, in a new term. (A holder on
/// another host, another boot id, is never taken for dead: unit test in `storage::redis::leader`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_of_a_dead_pid_in_this_pid_namespace_is_taken_over_at_once() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns.to_str().unwrap().trim_start_matches("pid:[").trim_end_matches(']');
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let lock = format!("ha:miner:instance_lock:{NAME}");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let boot = boot.trim();
    let holder = format!("{boot}:{ns}:{dead}:0123456789abcdef");
    server.command(&["SET", &lock, &holder, "PX", "60000"]).unwrap();
    server
        .command(&["SET", "ha:miner:leader:miner", NAME, "PX", "60000"])
        .unwrap();
    server
        .command(&["SET", "ha:miner:leader:miner:token", "7", "PX", "60000"])
        .unwrap();
    server.command(&["SET", "ha:miner:leader:miner:fencing", "7"]).unwrap();

    let b = process(&server).await;
    let token = b
        .storage()
        .leadership
        .campaign(ELECTION, NAME, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(token, Some(8), "taken over at once, in a new term");
    assert_eq!(b.instance_in_use(), None);
    // A live holder in this namespace (this very process' pid under another nonce) is waited out.
    let live = format!("{boot}:{ns}:{}:fedcba9876543210", std::process::id());
    server.command(&["SET", &lock, &live, "PX", "60000"]).unwrap();
    let c = process(&server).await;
    assert_eq!(
        c.storage()
            .leadership
            .campaign(ELECTION, NAME, Duration::from_secs(30))
            .await
            .unwrap(),
        None
    );
    assert_eq!(c.instance_in_use().as_deref(), Some(NAME));
}

/// The instance-lock refresher beats: its last round, exported as
/// `ha_storage_redis_instance_lock_refresh_timestamp_seconds`, is 0 until a campaign starts it, then advances every
/// round although nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_lock_refresher_beats() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let a = process(&server).await;
    assert_eq!(
        a.stats().instance_lock_refreshed_unix_ms(),
        0,
        "not started before a campaign"
    );
    a.storage()
        .leadership
        .campaign(ELECTION, NAME, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("leads");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut first = 0;
    loop {
        let now = a.stats().instance_lock_refreshed_unix_ms();
        if first == 0 {
            first = now;
        } else if now > first {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresher heartbeat did not advance (first {first})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exported: f64 = common::metrics(&a)
        .lines()
        .find_map(|l| l.strip_prefix("ha_storage_redis_instance_lock_refresh_timestamp_seconds "))
        .expect("exported")
        .parse()
        .unwrap();
    assert!(exported * 1000.0 >= first as f64, "{exported} vs {first}");
}
