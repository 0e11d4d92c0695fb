//! On Redis, a lease check or renewal that fails (Redis hung past the response timeout: an AOF rewrite's fork, a
//! reconnect) is no answer: the miner keeps leader mode and its open tries while the lease it last renewed surely
//! holds, so no reload of every trie follows when Redis answers again; once that time may have passed without an
//! answer, it leaves leader mode.

use super::*;
use std::time::Instant;
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_leader_mode_and_the_open_tries_until_the_lease_may_have_expired() {
    let f = fixture().await;
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.response_timeout = Duration::from_millis(300);
    cfg.connection_timeout = Duration::from_millis(300);
    let plain = RedisBackend::connect(cfg).await.unwrap().storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = leader_on(&f, &plain, &telemetry).await;
    let counted = |name: &str| settled::series(&telemetry.render_metrics(), name, &["instance=\"a\""]);
    assert!(miner.tries.contains_key(&f.key));
    assert_eq!(counted("ha_miner_leader_elections_total"), Some(1));
    let lease = miner.config.lease;
    let ago = |d: Duration| Instant::now().checked_sub(d).unwrap();

    // A renewal is due (half the lease since the last one) and Redis hangs: it fails after the response timeout.
    miner.last_renewal = Some(ago(lease / 2));
    server.pause().unwrap();
    miner.campaign().await;
    server.resume().unwrap();
    assert!(miner.engine.is_leader(), "a failed renewal is no loss");
    assert!(miner.tries.contains_key(&f.key), "the open tries are kept");
    assert_eq!(counted("ha_miner_leader_losses_total"), None);

    // Redis answers again: the lease is renewed, nothing is reloaded, and ingest goes on on the same trie.
    miner.campaign().await;
    assert!(miner.last_renewal.unwrap().elapsed() < lease / 4, "renewed");
    assert!(miner.engine.is_leader());
    assert_eq!(counted("ha_miner_leader_elections_total"), Some(1), "no reload");
    deliver(&plain, &mut miner, relays(&f.supplier, &f.header, 5..8)).await;
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 8);
    assert_eq!(counted("ha_miner_leader_elections_total"), Some(1));

    // A renewal that fails once the lease last renewed may have expired (past lease − lease / 4) ends leader mode.
    miner.last_renewal = Some(ago(lease * 4 / 5));
    server.pause().unwrap();
    miner.campaign().await;
    server.resume().unwrap();
    assert!(!miner.engine.is_leader());
    assert!(miner.tries.is_empty());
    assert_eq!(counted("ha_miner_leader_losses_total"), Some(1));
}
