//! Relays acknowledged without being mined (too large to prove, unreadable) are counted once, when their batch
//! is written: a batch whose write fails stays pending and is read again, and must not count them again.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_rejected_in_a_batch_whose_write_failed_are_counted_once_when_it_is_written() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let backend = MemoryBackend::new();
    let faults = backend.faults().clone();
    let plain = backend.storage();
    let mut miner = miner_proving_4k(&f, plain.clone(), &telemetry);
    miner.step().await.unwrap();
    let mut batch = relays(&f.supplier, &f.header, 0..3);
    // Relay 1: too large to prove. Relay 2: a payload that does not decode.
    batch[1] = resized(batch[1].clone(), 4097, 1);
    batch[2].payload = vec![0xff; 7];
    plain.relay_log.append(batch).await.unwrap();

    faults.fail_write_sets(2, StorageError::Unavailable("test: storage refuses".into()));
    for round in 0..2 {
        assert!(miner.step().await.is_err(), "round {round}: the batch's write fails");
        assert_eq!(
            miner.stats.relays_too_large.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "round {round}: nothing counted for a batch not written"
        );
    }
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 1, "only relay 0 is mined");
    let stats = &miner.stats;
    assert_eq!(stats.relays_too_large.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.relays_unreadable.load(std::sync::atomic::Ordering::Relaxed), 1);
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_rejected_total", "too_large_to_prove"),
        Some(1)
    );
    assert_eq!(counter(&text, "ha_miner_relays_rejected_total", "undecodable"), Some(1));
}
