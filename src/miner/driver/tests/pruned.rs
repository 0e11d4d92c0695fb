//! Relays of pruned sessions reaching the ingest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// A relay of a pruned session that is also too large to prove is counted as `session_pruned`, the reason it
/// is not mined (the session is gone whatever the relay's size), not as `too_large_to_prove`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_relay_of_a_pruned_session_is_counted_as_pruned() {
    use std::sync::atomic::Ordering::Relaxed;
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = miner_proving_4k(&f, plain.clone(), &telemetry);
    ingest_until_pruned(&f, &plain, &mut miner).await;
    assert!(miner.engine.is_tombstoned(&f.key));

    let relay = resized(relays(&f.supplier, &f.header, 9..10).remove(0), 4097, 9);
    plain.relay_log.append(vec![relay]).await.unwrap();
    miner.step().await.unwrap();

    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert!(miner.engine.session(&f.key).is_none(), "no new record");
    assert_eq!(miner.stats.relays_after_prune.load(Relaxed), 1);
    assert_eq!(miner.stats.relays_too_large.load(Relaxed), 0);
    assert_eq!(rejected(&telemetry, "session_pruned"), 1);
    assert_eq!(rejected(&telemetry, "too_large_to_prove"), 0);
}
