//! On Redis above its relay memory threshold (storage crate, `redis` module docs), relays are refused but the
//! miner's own writes are not: it ingests what was accepted (trie batches, records, acks) and claims it, on a real
//! `redis-server`; relays are taken again once the memory is freed.

use super::*;
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_relay_threshold_the_miner_ingests_and_claims_what_was_accepted() {
    let f = fixture().await;
    let server = RedisServer::start(ServerOptions::max_memory(16 << 20)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.relay_max_memory_ratio = 0.5;
    let redis = RedisBackend::connect(cfg).await.unwrap();
    let plain = redis.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    lead(&mut miner).await;

    // Relays accepted below the threshold, then other sessions' tries take Redis above it.
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..5))
        .await
        .unwrap();
    let mut fill = plain.tries.open(&f.supplier, "other-session").await.unwrap();
    let mut next = 0u32;
    while redis.poll_memory().await.unwrap().counted_ratio < 0.6 {
        fill = tokio::task::spawn_blocking(move || {
            let puts = (next..next + 64)
                .map(|i| (i.to_be_bytes().to_vec(), vec![b'v'; 4096]))
                .collect();
            fill.write_batch(storage::NodeBatch { puts, deletes: vec![] }).unwrap();
            fill
        })
        .await
        .unwrap();
        next += 64;
        assert!(next < 1 << 16, "memory never rose");
    }
    drop(fill);
    match plain.relay_log.append(relays(&f.supplier, &f.header, 5..8)).await {
        Err(StorageError::RelayMemoryThreshold(_)) => {}
        other => panic!("expected the relay threshold, got {other:?}"),
    }

    // The miner ingests the accepted relays above the threshold and claims them when the window opens.
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() < schedule.claim_open {
        f.chain.produce_block();
    }
    miner.step().await.unwrap();
    let record = miner.engine.session(&f.key).unwrap().clone();
    assert_eq!(record.claim_sent_at.len(), 1, "{record:?}");
    assert_eq!(record.relays, 5);
    assert_eq!(
        plain.relay_log.backlog(&f.supplier).await.unwrap().pending,
        0,
        "every accepted relay acknowledged"
    );
    assert!(
        redis.poll_memory().await.unwrap().counted_ratio > 0.5,
        "still above the threshold"
    );
    assert_eq!(redis.stats().oom_errors(), 0);

    // Memory freed (the other session pruned): relays are taken again.
    plain
        .tries
        .delete_namespace(&f.supplier, "other-session")
        .await
        .unwrap();
    storage::suite::poll_until("memory below the threshold", || {
        let redis = redis.clone();
        async move { (redis.poll_memory().await.unwrap().counted_ratio < 0.5).then_some(()) }
    })
    .await;
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 8..9))
        .await
        .unwrap();
}
