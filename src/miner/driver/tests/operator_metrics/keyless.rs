//! Live sessions of suppliers without a key are on /metrics: `ha_miner_keyless_sessions{supplier}`.

use super::*;

/// A restarted leader whose keys file lost the supplier's key lists its live session: the gauge shows 1 for that
/// supplier; once the key is back, its sessions are restored and the series goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sessions_of_a_supplier_without_a_key_are_a_gauge_per_supplier() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    drop(miner);

    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let keyring = Keyring::new(KeyMap::new());
    let mut restarted = Miner::new(f.client.clone(), plain.clone(), keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    restarted.step().await.unwrap();
    assert!(restarted.engine.is_leader());
    let keyless = || {
        series(
            &telemetry.render_metrics(),
            "ha_miner_keyless_sessions",
            &[("supplier", f.supplier.as_str())],
        )
    };
    assert_eq!(keyless(), Some(1.0));

    keyring.replace(f.keyring.snapshot().as_ref().clone());
    restarted.step().await.unwrap();
    assert!(restarted.engine.session(&f.key).is_some(), "restored with its key");
    assert_eq!(keyless(), None, "no keyless session left");
}
