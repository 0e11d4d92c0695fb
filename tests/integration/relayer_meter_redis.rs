//! The relay meter over a real `redis-server` whose reply to a sync is lost after the server applied it: the
//! server is stopped (SIGSTOP) while the sync's script is sent, the client gives up at its response timeout,
//! and the server runs the script once continued. The next sync counts those compute units once (it used to add
//! them again, and every relayer sharing the session believed the app consumed more than it had).

use std::sync::Arc;
use std::time::Duration;

use relay_miner::config::FailBehavior;
use relay_miner::relayer::RelayMeter;
use relay_miner::relayer::meter::{Budget, MeterKey, MeterObserver};
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::suite::poll_until;

struct NoObserver;
impl MeterObserver for NoObserver {
    fn storage_error(&self, _: &'static str) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_redis_reply_was_lost_counts_once() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let cfg = RedisConfig {
        response_timeout: Duration::from_millis(300),
        ..RedisConfig::new(server.url())
    };
    let backend = RedisBackend::connect(cfg).await.unwrap();
    let (_height, rx) = tokio::sync::watch::channel(0);
    let meter = RelayMeter::spawn(
        backend.storage().kv,
        // Failing closed: a relay is refused while the last sync failed, which tells when a sync succeeded.
        FailBehavior::Closed,
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        rx,
        Arc::new(NoObserver),
    );
    let key = MeterKey {
        session_id: "sess-1".into(),
        supplier: "pokt1sup".into(),
    };
    let wire = "ha:cache:meter:sess-1:pokt1sup:consumed";
    let budget = Budget {
        limit_compute_units: 20,
        forget_at_height: 100,
    };
    // A first sync loads the script: the stopped server must get the script call itself.
    meter.charge(&key, budget, 10).await.unwrap().commit();
    meter.sync().await;
    assert_eq!(server.command(&["GET", wire]).unwrap(), "$2\r\n10\r\n");

    meter.charge(&key, budget, 5).await.unwrap().commit();
    server.pause().unwrap();
    meter.sync().await; // fails at the response timeout
    server.resume().unwrap();
    poll_until("the stopped sync is applied", || async {
        (server.command(&["GET", wire]).unwrap() == "$2\r\n15\r\n").then_some(())
    })
    .await;
    assert!(meter.exhausted(&key, 6), "the unconfirmed 5 counts locally meanwhile");

    // The next successful sync (the client may still be reconnecting after the timeout).
    poll_until("a sync succeeds", || async {
        meter.sync().await;
        meter.precheck(&key, 0).is_ok().then_some(())
    })
    .await;
    assert_eq!(
        server.command(&["GET", wire]).unwrap(),
        "$2\r\n15\r\n",
        "the lost sync is counted once"
    );
    assert!(!meter.exhausted(&key, 5), "15 of 20 consumed");
    assert!(meter.exhausted(&key, 6));
}
