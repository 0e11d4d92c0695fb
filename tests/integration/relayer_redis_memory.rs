//! The relayer on Redis above its relay memory threshold (`storage.redis.relay_max_memory_ratio`; storage crate,
//! `redis` module docs), over real sockets with the harness of [`crate::relayer`] on a real `redis-server`: once
//! the miner's tries take Redis above the threshold, relays are refused as `redis_memory_threshold` (19, 503),
//! not recorded, and after the first refusal not served by the backend either; once the miner prunes, relays are
//! served and recorded again without a restart.

use storage::NodeBatch;
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

use crate::relayer::{Net, error_code, eventually};
use crate::relayer_guards::metric_sum;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_are_refused_above_the_threshold_and_taken_again_after_pruning() {
    let server = RedisServer::start(ServerOptions::max_memory(16 << 20)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    let redis = RedisBackend::connect(cfg).await.unwrap();
    let mut net = Net::new(1_000_000_000).await;
    net.storage = redis.storage();
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let backend = |t| metric_sum(t, "ha_relayer_backend_requests_total", "service_id=\"anvil\"");
    let refused = |t| {
        metric_sum(
            t,
            "ha_relayer_relays_rejected_total",
            "reason=\"redis_memory_threshold\"",
        )
    };

    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, error_code(&response)), (200, None), "{response:?}");
    assert_eq!(net.recorded().await, 1);

    // The miner's tries (its writes are never held back) take Redis above half of maxmemory.
    let mut fill = net.storage.tries.open("pokt1fill", "s1").await.unwrap();
    let mut next = 0u32;
    while redis.poll_memory().await.unwrap().counted_ratio < 0.6 {
        fill = tokio::task::spawn_blocking(move || {
            let puts = (next..next + 64)
                .map(|i| (i.to_be_bytes().to_vec(), vec![b'v'; 4096]))
                .collect();
            fill.write_batch(NodeBatch { puts, deletes: vec![] }).unwrap();
            fill
        })
        .await
        .unwrap();
        next += 64;
        assert!(next < 1 << 16, "memory never rose");
    }
    drop(fill);

    // The first relay finds out at its append (the backend answered it, the gateway gets the refusal); the next
    // ones are refused before the backend.
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, error_code(&response)), (503, Some(19)), "{response:?}");
    let served = backend(&r.telemetry);
    for id in 3..6 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!((status, error_code(&response)), (503, Some(19)), "{response:?}");
    }
    assert_eq!(
        backend(&r.telemetry),
        served,
        "the backend did not work for relays that could not be kept"
    );
    assert_eq!(refused(&r.telemetry), 4);
    assert_eq!(net.recorded().await, 1, "nothing recorded above the threshold");
    assert_eq!(redis.stats().relays_refused_memory_threshold(), 1);
    assert_eq!(redis.stats().oom_errors(), 0);

    // The session is pruned: memory falls below the threshold, relays are served and recorded again.
    net.storage.tries.delete_namespace("pokt1fill", "s1").await.unwrap();
    eventually("memory below the threshold (UNLINK frees in the background)", || {
        let redis = redis.clone();
        async move { redis.poll_memory().await.unwrap().counted_ratio < 0.5 }
    })
    .await;
    let mut id = 100;
    eventually("relays served again", || {
        id += 1;
        let request = net.request(&header, &net.ours.1, Net::rpc(id));
        let (net, url) = (&net, &r.url);
        async move { net.send(url, &request).await.0 == 200 }
    })
    .await;
    assert_eq!(net.recorded().await, 2);
}
