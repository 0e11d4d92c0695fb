//! Entries pending for another consumer of the group (a dead Go miner, a renamed consumer) are taken over by
//! `read_pending` once idle past `claim_idle_timeout` (`storage.redis.claim_idle_timeout_ms`); before,
//! `RelayLog::claim` was never called and such relays were never mined.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::suite;

async fn backend(server: &RedisServer, idle: Option<Duration>) -> RedisBackend {
    let mut cfg = RedisConfig::new(server.url());
    cfg.claim_idle_timeout = idle;
    RedisBackend::connect(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_dead_consumer_left_pending_are_taken_over_once_idle() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    // 2 s: "not idle long enough" below is checked after a second backend connected; on a loaded machine that
    // can take longer than a few hundred milliseconds, and the entries would rightly be taken over already.
    let idle = Duration::from_secs(2);
    let dead = backend(&server, None).await;
    let relays: Vec<_> = (0..5).map(|i| suite::relay("pokt1a", "s1", i)).collect();
    let ids = dead.storage().relay_log.append(relays).await.unwrap();
    // A Go miner read them and died.
    assert_eq!(
        dead.storage()
            .relay_log
            .read("pokt1a", "miner-go-1234", 10)
            .await
            .unwrap()
            .len(),
        5
    );

    let b = backend(&server, Some(idle)).await;
    let s = b.storage();
    // Not idle long enough: left alone.
    assert!(
        s.relay_log
            .read_pending("pokt1a", "miner", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Never without the setting.
    let off = backend(&server, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            off.storage()
                .relay_log
                .read_pending("pokt1a", "miner", 10)
                .await
                .unwrap()
                .is_empty(),
            "taken over with claim_idle_timeout unset"
        );
        let got = s.relay_log.read_pending("pokt1a", "miner", 10).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "never taken over");
    };
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(s.relay_log.ack("pokt1a", &ids).await.unwrap(), 5);
    assert_eq!(s.relay_log.backlog("pokt1a").await.unwrap().pending, 0);
}
