//! First sends and re-sends are counted apart: `ha_miner_{claims,proofs}_submitted_total` count a session's first
//! send a node took, `ha_miner_{claim,proof}_rebroadcasts_total{result}` the re-sends.

use super::*;

/// A claim tx and then a proof tx the node answered code 0 for and then dropped: each is sent again two blocks
/// later and lands. One submitted and one re-send each, not two submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_claim_and_proof_count_once_as_submitted_and_once_as_rebroadcast() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g.shared_params.claim_window_close_offset_blocks = 8;
    g.shared_params.proof_window_close_offset_blocks = 8;
    let f = fixture_on(g).await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = leading_with(f, MemoryBackend::new().storage(), relays).await;
    while f.chain.height() < schedule.settlement + 2 {
        f.chain.produce_block();
        let height = f.chain.height();
        if height == schedule.claim_open || height == schedule.proof_open {
            f.chain.state().drop_accepted_txs = 1;
        }
        miner.step().await.unwrap();
    }
    assert!(
        matches!(
            f.chain.settlements().as_slice(),
            [(_, _, crate::sim::chain::Settlement::Settled(_))]
        ),
        "claimed, proved and paid: {:?}",
        f.chain.records()
    );
    assert_eq!(miner.stats.claims_sent.load(std::sync::atomic::Ordering::Relaxed), 2);
    let text = telemetry.render_metrics();
    let session = [("supplier", f.supplier.as_str()), ("service_id", "anvil")];
    let resent = [
        ("supplier", f.supplier.as_str()),
        ("service_id", "anvil"),
        ("result", "broadcast"),
    ];
    for kind in ["claim", "proof"] {
        assert_eq!(
            series(&text, &format!("ha_miner_{kind}s_submitted_total"), &session),
            Some(1.0),
            "{kind}: the first send"
        );
        assert_eq!(
            series(&text, &format!("ha_miner_{kind}_rebroadcasts_total"), &resent),
            Some(1.0),
            "{kind}: the re-send"
        );
    }
}
