//! A relay-log entry the miner cannot read is skipped and does not stop the claims.

use super::*;

/// A relay-log entry the miner cannot read (its payload does not decode, or its relay hash is not 32 bytes) is
/// logged, counted, acknowledged and skipped. Left in the log it would fail every ingest round, and with it the
/// block handling: no claim or proof of any supplier would go out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_relay_log_entry_is_skipped_and_does_not_stop_the_claims() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    miner.step().await.unwrap();
    let unreadable = |payload: Vec<u8>| MinedRelay {
        supplier: f.supplier.clone(),
        session_id: f.header.session_id.clone(),
        session_end_height: u64::try_from(f.header.session_end_block_height).unwrap(),
        relay_hash: vec![0; 32],
        payload,
    };
    let mut short_hash = relays(&f.supplier, &f.header, 9..10).remove(0);
    let mut message = MinedRelayMessage::decode(short_hash.payload.as_slice()).unwrap();
    message.relay_hash.truncate(31);
    short_hash.payload = message.encode_to_vec();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    plain
        .relay_log
        .append(vec![unreadable(vec![0xff, 0xff, 0xff]), short_hash])
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 3..5))
        .await
        .unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    assert_eq!(
        miner.stats.relays_unreadable.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let text = telemetry.render_metrics();
    assert!(
        text.lines().any(|l| l.starts_with("ha_miner_relays_rejected_total")
            && l.contains("reason=\"undecodable\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() <= schedule.claim_open {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let claim = f
        .client
        .claim_at(&f.key.session_id, &f.supplier, None)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(u64::from_be_bytes(claim.root_hash[40..48].try_into().unwrap()), 5);
}
