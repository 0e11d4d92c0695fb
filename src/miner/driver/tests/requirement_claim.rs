//! The proof requirement is decided from the claim as the chain holds it (module `requirement`), not from the
//! local trie's root, which differs when another or an older leader built the claim or the trie was rebuilt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::miner::lifecycle::State;
use crate::sim::chain::Settlement;

/// Probability 0 and a threshold of 10,000 upokt. The claim on chain holds the 5 relays of 10 compute units
/// (50 CU, 2,100 upokt at 42 upokt per CU): below the threshold, no proof required, and the chain pays it without
/// one. The local trie then holds one more relay of 1,000 CU behind the freeze's back (a trie other than the one
/// that built the claim): from its root the threshold is met. Decided from the claim on chain, the session needs
/// no proof and settles; decided from the local root it would be "required", its proof unprovable (another
/// root), and the session counted lost while the chain pays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requirement_is_decided_from_the_claim_on_chain_not_the_local_root() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 0.0;
    g.proof_params.proof_requirement_threshold_upokt = 10_000;
    let Claimed {
        f,
        mut miner,
        telemetry,
        schedule,
        on_chain,
        ..
    } = claimed(g).await;
    let Fixture { chain, key, .. } = f;
    assert_eq!(
        crate::smst::hash::sum_count(&on_chain.root_hash.clone().try_into().unwrap()),
        (50, 5),
        "the claim on chain: 50 CU"
    );
    let extra = Sha256::digest(b"not claimed");
    miner
        .tries
        .get_mut(&key)
        .unwrap()
        .trie
        .insert_relay(&extra.into(), b"not claimed", 1_000);
    while chain.height() < schedule.proof_open {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let record = miner.engine.session(&key).unwrap();
    assert_eq!(
        (record.state, record.proof_required),
        (State::Settled, Some(false)),
        "no proof required by the claim on chain"
    );
    while chain.height() <= schedule.settlement + 2 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    assert!(
        matches!(&chain.settlements()[..], [(_, _, Settlement::Settled(v))] if *v > 0),
        "the chain paid the claim: {:?}",
        chain.settlements()
    );
    assert!(chain.records().iter().all(|r| r.kind != "proof"));
    let text = telemetry.render_metrics();
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ha_miner_relays_lost_total") && !l.ends_with(" 0")),
        "nothing counted lost: {text}"
    );
    assert_eq!(
        counter(&text, "ha_miner_proof_errors_total", "claim_root_mismatch"),
        None,
        "{text}"
    );
}
