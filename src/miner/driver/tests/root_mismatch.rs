//! A trie whose root is not the claim's on chain gets no proof sent.

use super::*;

/// A trie whose root is not the claim's on chain (it should never happen: the claimed trie is frozen) gets no
/// proof sent: it could not verify and would cost its fee. The mismatch is counted and logged at ERROR; the
/// session expires when its proof window closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proof_is_sent_from_a_trie_whose_root_is_not_the_claim_on_chain() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let Claimed {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = claimed(g).await;
    let Fixture { chain, key, .. } = f;
    // The trie changes behind the freeze's back.
    let extra = Sha256::digest(b"not claimed");
    miner
        .tries
        .get_mut(&key)
        .unwrap()
        .trie
        .insert_relay(&extra.into(), b"not claimed", 10);
    // Past the window, no validated proof said at two heights (`SessionRecord::proof_absent_at`).
    while chain.height() <= schedule.proof_close + 1 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    // Lost as a required proof taken as refused (a session needing no proof would have settled), then pruned.
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "proof_not_included"),
        Some(5)
    );
    assert!(miner.engine.session(&key).is_none(), "pruned and forgotten");
    assert!(
        chain.records().iter().all(|r| r.kind != "proof"),
        "no proof reached the chain: {:?}",
        chain.records()
    );
    let text = telemetry.render_metrics();
    assert!(
        text.lines().any(|l| l.starts_with("ha_miner_proof_errors_total")
            && l.contains("reason=\"claim_root_mismatch\"")
            && l.ends_with(" 1")),
        "{text}"
    );
}
