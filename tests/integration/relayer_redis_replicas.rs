//! The relayer on Redis with replica acknowledgement (`storage.redis.wait_replicas`; storage crate,
//! `redis::replicas` module), over real sockets with the harness of [`crate::relayer`] on a real primary and
//! replica: while the replica is hung (SIGSTOP) a relay's append is not acknowledged by it, so the gateway gets
//! `storage_error` (9, 503) and later relays are refused before the backend, as for any failed append; once the
//! replica is back, relays are served again without a restart.

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

use crate::relayer::{Net, error_code, eventually};
use crate::relayer_guards::metric_sum;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_are_refused_while_the_replica_does_not_acknowledge_and_served_once_it_does() {
    let primary = RedisServer::start(ServerOptions::default()).unwrap();
    let replica = RedisServer::start_replica_of(&primary, ServerOptions::default()).unwrap();
    let cfg = RedisConfig {
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(500),
        ..RedisConfig::new(primary.url())
    };
    let redis = RedisBackend::connect(cfg).await.unwrap();
    let mut net = Net::new(1_000_000_000).await;
    net.storage = redis.storage();
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let backend = |t| metric_sum(t, "ha_relayer_backend_requests_total", "service_id=\"anvil\"");

    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, error_code(&response)), (200, None), "{response:?}");
    assert_eq!(net.recorded().await, 1);

    replica.pause().unwrap();
    // The relay's append reached the primary only: not acknowledged, the gateway gets the storage error.
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, error_code(&response)), (503, Some(9)), "{response:?}");
    assert_eq!(redis.stats().writes_not_replicated(), 1);
    // The next ones are refused before the backend (one a second is let through to find out).
    let served = backend(&r.telemetry);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(3))).await;
    assert_eq!((status, error_code(&response)), (503, Some(9)), "{response:?}");
    assert_eq!(
        backend(&r.telemetry),
        served,
        "the backend worked for a relay that could not be kept"
    );

    replica.resume().unwrap();
    replica.wait_replica_online(&primary).unwrap();
    let mut id = 100;
    eventually("relays served again", || {
        id += 1;
        let request = net.request(&header, &net.ours.1, Net::rpc(id));
        let (net, url) = (&net, &r.url);
        async move { net.send(url, &request).await.0 == 200 }
    })
    .await;
    // Relay 1, relay 2 (on the primary although refused) and the one served again.
    assert_eq!(net.recorded().await, 3);
}
