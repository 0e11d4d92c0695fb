//! A session whose stored trie cannot be read (malformed records: damaged, or another program's under the same
//! key) does not stop its supplier's ingest: its relays are acknowledged and counted
//! (`ha_miner_relays_rejected_total{reason="trie_unreadable"}`), and the relays of the supplier's other sessions,
//! behind them in the log, are ingested. Before, the batch failed at that session's first relay, was read again
//! first in every round, and no later session of the supplier was ever claimed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_of_a_session_whose_trie_cannot_be_read_do_not_stop_the_suppliers_ingest() {
    let f = fixture_on(genesis_with_apps(&["app2"])).await;
    let (other, other_key) = app_session(&f, "app2").await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    lead(&mut miner).await;
    // The first session's trie holds a root record this miner never wrote.
    let mut store = plain.tries.open(&f.supplier, &f.key.session_id).await.unwrap();
    store
        .write_batch(storage::NodeBatch {
            puts: vec![(b"R".to_vec(), vec![1, 2, 3])],
            deletes: Vec::new(),
        })
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &other, 10..14))
        .await
        .unwrap();

    miner.ingest().await.unwrap();
    let backlog = plain.relay_log.backlog(&f.supplier).await.unwrap();
    assert_eq!(backlog.undelivered + backlog.pending, 0, "every entry acknowledged");
    assert_eq!(
        miner.engine.session(&other_key).unwrap().relays,
        4,
        "the other session ingested"
    );
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_relays_rejected_total",
            "trie_unreadable"
        ),
        Some(3)
    );
}
