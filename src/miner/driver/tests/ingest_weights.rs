//! Every relay is weighted with the chain's compute units per relay at its session's start (module `ingest`),
//! not with what its relay-log entry says: in a mixed fleet a relayer may weigh with another value.

use super::*;

/// `relays` as a relayer weighing them with `compute_units_per_relay` appends them.
fn weighted(relays: Vec<MinedRelay>, compute_units_per_relay: u64) -> Vec<MinedRelay> {
    relays
        .into_iter()
        .map(|mut relay| {
            let mut message = MinedRelayMessage::decode(relay.payload.as_slice()).unwrap();
            message.compute_units_per_relay = compute_units_per_relay;
            relay.payload = message.encode_to_vec();
            relay
        })
        .collect()
}

/// A session whose log mixes entries of three relayers: one weighing with the service's 10 compute units, one
/// with a stale 7 and one that read the service's new 25 (a `MsgAddService` during the session; the chain keeps
/// weighing this session's relays with the value at its start). The claim's sum is its count × 10, which the
/// chain checks (§6.1) and takes; trusting the entries, the sum was 5 × 10 + 2 × 7 + 2 × 25 and the claim was
/// refused, the session lost. The 4 entries whose weight differs are counted and the chain's value is read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_of_a_mixed_fleet_are_weighted_with_the_chains_compute_units_and_the_claim_is_taken() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    // The service's compute units change in the next block; the session started before.
    f.chain.set_compute_units_per_relay("anvil", 25).unwrap();
    f.chain.produce_block();
    plain
        .relay_log
        .append(weighted(relays(&f.supplier, &f.header, 10..12), 7))
        .await
        .unwrap();
    plain
        .relay_log
        .append(weighted(relays(&f.supplier, &f.header, 20..22), 25))
        .await
        .unwrap();
    let cupr_reads = || {
        f.chain
            .grpc_calls(crate::protocol::wire::method::COMPUTE_UNITS_PER_RELAY_AT_HEIGHT)
    };
    let reads_before = cupr_reads();
    // The fixture's 5 relays at 10 each, then the claim window.
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key]).await;
    let claim = f
        .client
        .claim_at(&f.key.session_id, &f.supplier, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        crate::smst::hash::root_sum_count(&claim.root_hash),
        Some((90, 9)),
        "every relay weighs the chain's 10 compute units"
    );
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!((record.relays, record.compute_units), (9, 90));
    assert_eq!(
        miner
            .stats()
            .relays_reweighted
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    let text = telemetry.render_metrics();
    let reweighted: u64 = text
        .lines()
        .filter(|l| l.starts_with("ha_miner_relays_reweighted_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(reweighted, 4, "{text}");
    assert_eq!(cupr_reads() - reads_before, 1, "read once for the session");
}
