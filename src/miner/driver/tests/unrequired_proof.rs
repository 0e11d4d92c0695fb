//! The opposite of `proof_params`: a proof required at the seed block that governance makes not required
//! before it lands. The chain refuses it ("proof not required", poktroll `ErrProofNotRequired`, with its live
//! proof params) and settles the claim without a proof: the miner checks the requirement again instead of
//! sending the proof at every block, ends the session `Settled` (not `Proved`) and counts nothing lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::miner::lifecycle::State;
use crate::protocol::wire::{self, method::SIMULATE};
use crate::sim::chain::Settlement;

/// Probability 1 and threshold 0 at the seed block (a proof required); governance then sets probability 0 and
/// an unreachable threshold, effective at `proof_open`, the first height the proof is sent at. The miner runs
/// to the settlement + 2, reading the settlement from the chain's events when `settlements`, else from claim
/// lookups alone. Returns the miner's metrics, the proof's Simulate requests, and the stored tombstone.
async fn a_proof_made_unrequired_before_it_is_sent(settlements: bool) -> (String, u64, SessionRecord) {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let f = fixture_on(g).await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    let plain = MemoryBackend::new().storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = if settlements {
        settling_miner(&f, &plain, &telemetry, "a")
    } else {
        Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
            .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap())
    };
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
    plain.relay_log.append(relays).await.unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    let chain = &f.chain;
    while chain.height() < schedule.proof_open - 1 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!(
        (record.state, record.proof_required),
        (State::Proving, Some(true)),
        "required at the seed block"
    );
    assert!(record.proof_sent_at.is_empty(), "not sent before proof_open");
    let mut params = chain.state().proof.clone();
    params.proof_request_probability = 0.0;
    params.proof_requirement_threshold = Some(wire::Coin {
        denom: "upokt".into(),
        amount: u64::MAX.to_string(),
    });
    chain.set_proof_params(params);
    let simulations = chain.grpc_calls(SIMULATE);
    while chain.height() <= schedule.settlement + 2 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let simulations = chain.grpc_calls(SIMULATE) - simulations;
    assert!(
        chain.records().iter().all(|r| r.kind != "proof"),
        "{:?}",
        chain.records()
    );
    assert!(
        matches!(&chain.settlements()[..], [(_, _, Settlement::Settled(v))] if *v > 0),
        "the chain paid the claim: {:?}",
        chain.settlements()
    );
    assert!(miner.engine.session(&f.key).is_none(), "pruned");
    let tombstone = assert_session_pruned(&plain, &f.supplier, &f.key.session_id).await;
    (telemetry.render_metrics(), simulations, tombstone)
}

/// What both runs assert: one proof attempt (refused at Simulate, no fee), the session settled without a proof,
/// nothing counted proven or lost.
fn assert_settled_without_proof(text: &str, simulations: u64, tombstone: &SessionRecord) {
    assert_eq!(simulations, 1, "one proof attempt, not one per block");
    assert_eq!(
        (tombstone.state, tombstone.proof_required),
        (State::Settled, Some(false)),
        "{tombstone:?}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ha_miner_proof_inclusion_outcome_total") && !l.ends_with(" 0")),
        "no proof validated: {text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ha_miner_") && l.contains("_lost_total") && !l.ends_with(" 0")),
        "nothing lost: {text}"
    );
    assert_eq!(
        counter(text, "ha_miner_proof_errors_total", "not_required"),
        Some(1),
        "{text}"
    );
}

/// With the chain's settlement events: read as settled without a proof, not as a validated proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_made_unrequired_is_not_resent_and_the_settlement_is_not_counted_proven() {
    let (text, simulations, tombstone) = a_proof_made_unrequired_before_it_is_sent(true).await;
    assert_settled_without_proof(&text, simulations, &tombstone);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ha_miner_claims_settled_by_status_total")
                && l.contains("status=\"settled\"")
                && l.ends_with(" 1")),
        "{text}"
    );
}

/// Without settlement events (no CometBFT client): the claim gone past the settlement is taken as settled
/// without a proof, not as a proof that was never included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_made_unrequired_is_not_counted_lost_without_settlement_events() {
    let (text, simulations, tombstone) = a_proof_made_unrequired_before_it_is_sent(false).await;
    assert_settled_without_proof(&text, simulations, &tombstone);
}
