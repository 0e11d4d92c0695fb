//! `ha_miner_fee_refusals_total`: CheckTx refusals of a claim's fee (code 13), by whether the miner sent the tx
//! again at the fee the refusal named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// `ha_miner_fee_refusals_total{supplier, result}` in `text` (0 when the series does not exist).
fn fee_refusals(text: &str, supplier: &str, result: &str) -> u64 {
    text.lines()
        .find(|l| {
            l.starts_with("ha_miner_fee_refusals_total")
                && l.contains(&format!("supplier=\"{supplier}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// One claim send at `claim_open` to a node charging `minimum` whose `Config` cannot be read (so the first
/// send goes at the configured price and is refused): (the fixture, the claim on chain, the metrics' text).
async fn claim_refused_by_a_node_charging(minimum: &str) -> (Fixture, Option<crate::protocol::wire::Claim>, String) {
    let f = fixture().await;
    f.chain.set_minimum_gas_prices(minimum).unwrap();
    f.chain.state().node_config_unavailable = true;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    f.chain.produce_block();
    let claim = f.client.claim_at(&f.key.session_id, &f.supplier, None).await.unwrap();
    (f, claim, telemetry.render_metrics())
}

/// A refusal whose required fee is within `transaction.max_gas_price` is counted once as `resent`, and the
/// re-sent claim lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_refusal_followed_by_a_resend_is_counted_as_resent() {
    let (f, claim, text) = claim_refused_by_a_node_charging("0.01upokt").await;
    assert!(claim.is_some(), "claim included: {:?}", f.chain.records());
    assert_eq!(fee_refusals(&text, &f.supplier, "resent"), 1, "{text}");
    assert_eq!(fee_refusals(&text, &f.supplier, "not_resent"), 0);
}

/// A refusal naming a fee above `transaction.max_gas_price` is not followed by a re-send: counted as
/// `not_resent`, and nothing reaches a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_refusal_above_the_cap_is_counted_as_not_resent() {
    let (f, claim, text) = claim_refused_by_a_node_charging("11upokt").await;
    assert!(claim.is_none());
    assert_eq!(fee_refusals(&text, &f.supplier, "not_resent"), 1, "{text}");
    assert_eq!(fee_refusals(&text, &f.supplier, "resent"), 0);
}
