//! The opposite of `proof_params`: a proof required at the seed block that governance makes not required
//! before it lands. The chain refuses it ("proof not required", poktroll `ErrProofNotRequired`, with its live
//! proof params) and settles the claim without a proof: the miner checks the requirement again instead of
//! sending the proof at every block, ends the session `Settled` (not `Proved`) and counts nothing lost. The
//! proof counted required is counted not required after all. With a fixed `transaction.gas_limit` (no Simulate
//! to refuse it for free) the requirement is checked before the broadcast: the proof is never sent, no fee paid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::rebroadcast::{balance, included_txs_of, supplier_rewards};
use super::*;
use crate::miner::lifecycle::State;
use crate::protocol::wire::{self, method::SIMULATE};
use crate::sim::chain::Settlement;

/// Probability 1 and threshold 0 at the seed block (a proof required); governance then sets probability 0 and
/// an unreachable threshold, effective at `proof_open`, the first height the proof is sent at. The miner runs
/// to the settlement + 2, reading the settlement from the chain's events when `settlements`, else from claim
/// lookups alone, with `gas_limit` (`transaction.gas_limit`, 0: simulated). Returns the miner's metrics, the
/// proof's Simulate requests, and the stored tombstone; asserts that no tx of the supplier failed in its block
/// (a proof refused at DeliverTx pays its fee) and that what it paid is the claim's tx's fee.
async fn a_proof_made_unrequired_before_it_is_sent(settlements: bool, gas_limit: u64) -> (String, u64, SessionRecord) {
    let f = fixture_on(proving_genesis(&[])).await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    let funds = balance(&f.chain, &f.supplier);
    let mut t = leading_configured(f, fixed_gas_config(gas_limit), relays, settlements).await;
    t.until_proof_seed().await;
    let chain = t.f.chain.clone();
    let mut params = chain.state().proof.clone();
    params.proof_request_probability = 0.0;
    params.proof_requirement_threshold = Some(wire::Coin {
        denom: "upokt".into(),
        amount: u64::MAX.to_string(),
    });
    chain.set_proof_params(params);
    let simulations = chain.grpc_calls(SIMULATE);
    t.blocks_through(t.schedule.settlement + 2).await;
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
    let (f, miner) = (&t.f, &t.miner);
    assert!(miner.engine.session(&f.key).is_none(), "pruned");
    assert_eq!(
        failed_in_block(&chain),
        Vec::<String>::new(),
        "no tx failed in its block"
    );
    let txs = included_txs_of(&chain, &f.supplier);
    assert_eq!(txs.len(), 1, "the claim's tx alone: {txs:?}");
    assert_eq!(
        funds + supplier_rewards(&chain, &f.supplier) - balance(&chain, &f.supplier),
        txs[0].1,
        "the claim's fee alone"
    );
    assert_eq!(
        (
            miner.stats.proofs_required.load(std::sync::atomic::Ordering::Relaxed),
            miner
                .stats
                .proofs_not_required_after_all
                .load(std::sync::atomic::Ordering::Relaxed)
        ),
        (1, 1)
    );
    let tombstone = assert_session_pruned(&t.plain, &f.supplier, &f.key.session_id).await;
    (t.telemetry.render_metrics(), simulations, tombstone)
}

/// What every run asserts: the session settled without a proof, nothing counted proven or lost, the proof
/// counted required and then not required after all (proofs owed: none).
fn assert_settled_without_proof(text: &str, tombstone: &SessionRecord) {
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
    let supplier = "supplier=\"";
    assert_eq!(
        super::settled::series(text, "ha_miner_proof_requirement_required_total", &[supplier]),
        Some(1),
        "{text}"
    );
    assert_eq!(
        super::settled::series(
            text,
            "ha_miner_proof_requirement_not_required_after_all_total",
            &[supplier]
        ),
        Some(1),
        "{text}"
    );
}

/// With the chain's settlement events: read as settled without a proof, not as a validated proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_made_unrequired_is_not_resent_and_the_settlement_is_not_counted_proven() {
    let (text, simulations, tombstone) = a_proof_made_unrequired_before_it_is_sent(true, 0).await;
    assert_eq!(
        simulations, 1,
        "one proof attempt (refused at Simulate, no fee), not one per block"
    );
    assert_settled_without_proof(&text, &tombstone);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ha_miner_claims_settled_by_status_total")
                && l.contains("status=\"settled\"")
                && l.ends_with(" 1")),
        "{text}"
    );
}

/// Without settlement events (no CometBFT client): the claim gone past the settlement ends the session settled
/// without a proof, its settlement unknown (not paid: nothing read says so), not as a proof never included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_made_unrequired_is_not_counted_lost_without_settlement_events() {
    let (text, simulations, tombstone) = a_proof_made_unrequired_before_it_is_sent(false, 0).await;
    assert_eq!(
        simulations, 1,
        "one proof attempt (refused at Simulate, no fee), not one per block"
    );
    assert_settled_without_proof(&text, &tombstone);
    assert!(tombstone.settlement_unknown, "{tombstone:?}");
}

/// With a fixed `transaction.gas_limit` Simulate is skipped, and CheckTx does not run the proof's message: sent,
/// the proof was refused in its block with its fee paid. The requirement is checked right before: not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_made_unrequired_is_not_broadcast_without_simulate() {
    let (text, simulations, tombstone) = a_proof_made_unrequired_before_it_is_sent(true, 400_000).await;
    assert_eq!(simulations, 0, "Simulate is skipped");
    assert_settled_without_proof(&text, &tombstone);
}
