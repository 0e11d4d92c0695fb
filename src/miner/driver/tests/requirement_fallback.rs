//! The requirement check before a broadcast without Simulate (`Miner::still_required`), when it cannot be made:
//! with a fixed `transaction.gas_limit` the proof's requirement is checked again right before it is built, so no
//! fee is paid for a proof the chain refuses in its block; a check whose chain read fails (here the node answers
//! the proof params query `UNAVAILABLE`, the simulator's fault switch) sends the proof all the same, as a fee for a
//! proof the chain may refuse costs less than a required proof never sent (a slash). Its other side, a check that
//! says "not required" (the proof not sent, no fee), is `unrequired_proof`'s
//! `a_proof_made_unrequired_is_not_broadcast_without_simulate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::rebroadcast::included_txs_of;
use super::*;
use crate::protocol::wire::method::{PROOF_PARAMS, SIMULATE};
use crate::sim::chain::Settlement;

/// A proof required at its seed block (probability 1, threshold 0), sent with a fixed gas limit at `proof_open`
/// while the node fails one proof params read, the one of that check: the proof leaves at that block, lands, and
/// the chain pays the claim; no tx of the supplier failed in its block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_whose_requirement_cannot_be_checked_again_is_sent_and_lands() {
    let f = fixture_on(proving_genesis(&[])).await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    let mut t = leading_configured(f, fixed_gas_config(400_000), relays, true).await;
    t.until_proof_seed().await;

    let chain = t.f.chain.clone();
    chain.fail_grpc_next(PROOF_PARAMS, 1);
    chain.produce_block();
    t.miner.step().await.unwrap();
    assert_eq!(chain.grpc_faults_pending(PROOF_PARAMS), 0, "the check's read failed");
    assert_eq!(
        t.miner.engine.session(&t.f.key).unwrap().proof_sent_at,
        vec![t.schedule.proof_open],
        "sent at proof_open all the same"
    );
    assert_eq!(chain.state().mempool.len(), 1, "the node took it");

    t.blocks_through(t.schedule.settlement + 2).await;
    let proofs: Vec<_> = chain.records().into_iter().filter(|r| r.kind == "proof").collect();
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    assert_eq!(proofs[0].rejected, None, "the chain took the proof");
    assert!(
        matches!(&chain.settlements()[..], [(_, _, Settlement::Settled(v))] if *v > 0),
        "the chain paid the claim: {:?}",
        chain.settlements()
    );
    assert_eq!(chain.grpc_calls(SIMULATE), 0, "Simulate is skipped");
    assert_eq!(
        failed_in_block(&chain),
        Vec::<String>::new(),
        "no tx failed in its block"
    );
    let txs = included_txs_of(&chain, &t.f.supplier);
    assert_eq!(txs.len(), 2, "the claim's tx and the proof's: {txs:?}");
}
