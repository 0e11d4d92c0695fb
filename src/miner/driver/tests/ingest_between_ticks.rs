//! Ingest rounds between ticks (`MinerConfig::ingest_every`): while a round of the leader took relays within
//! the last tick, relays appended after a tick are in their trie before the next tick.

use super::*;

/// A tick of an hour: only the first tick runs during the test. Its round takes the first relays, so the miner
/// is busy and the extra rounds ingest what is appended afterwards; with `ingest_every` equal to the tick (no
/// extra rounds) the later relays wait for the next tick, an hour away, and the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_leader_ingests_between_ticks() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..5))
        .await
        .unwrap();
    let miner = Miner::new(
        f.client.clone(),
        plain.clone(),
        f.keyring.clone(),
        MinerConfig {
            tick: Duration::from_secs(3600),
            ingest_every: Duration::from_millis(10),
            ..config("a")
        },
    );
    let stats = miner.stats();
    let ingested = move || stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let running = tokio::spawn(miner.run(telemetry.heartbeat("miner"), async {
        let _ = stopped.await;
    }));
    storage::suite::poll_until("the first tick's round", || async { (ingested() == 5).then_some(()) }).await;
    for batch in 1..4u64 {
        plain
            .relay_log
            .append(relays(&f.supplier, &f.header, batch * 5..batch * 5 + 5))
            .await
            .unwrap();
        storage::suite::poll_until("relays appended after the tick, ingested before the next", || async {
            (ingested() == 5 + batch * 5).then_some(())
        })
        .await;
    }
    assert_eq!(
        plain.relay_log.backlog(&f.supplier).await.unwrap().pending,
        0,
        "each acknowledged"
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}
