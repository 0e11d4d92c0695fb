//! The chain decides whether a claim needs a proof with its live proof params, again at settlement (module
//! `requirement`): a session decided "no proof" whose requirement changes while its proof can still be sent is
//! proven, not lost.

use super::*;
use crate::miner::lifecycle::State;
use crate::protocol::wire;
use crate::sim::chain::Settlement;

/// Probability 0 and an unreachable threshold at the seed block: "no proof". Governance then raises the
/// probability to 1 inside the proof window (effective at the next block): the miner checks again, sends the
/// proof, and the settlement, which decides with the new params, pays. Without the re-check the claim expires
/// for want of a proof (the simulator decides at settlement as poktroll does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_required_by_params_changed_in_the_proof_window_is_sent_and_the_claim_settles() {
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = leading().await;
    let (chain, key) = (&f.chain, &f.key);
    while chain.height() < schedule.proof_open {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_eq!(
        miner.engine.session(key).unwrap().state,
        State::Settled,
        "decided: no proof"
    );
    let mut params = chain.state().proof.clone();
    params.proof_request_probability = 1.0;
    chain.set_proof_params(params);
    while chain.height() <= schedule.settlement {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let proofs: Vec<_> = chain.records().into_iter().filter(|r| r.kind == "proof").collect();
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    assert!(proofs[0].rejected.is_none(), "{proofs:?}");
    let settlements = chain.settlements();
    assert_eq!(settlements.len(), 1, "{settlements:?}");
    assert!(
        matches!(settlements[0].2, Settlement::Settled(v) if v > 0),
        "{settlements:?}"
    );
    let text = telemetry.render_metrics();
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ha_miner_relays_lost_total") && !l.ends_with(" 0")),
        "{text}"
    );
}

/// Params that change but still ask no proof cost one check per session and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_changed_without_requiring_a_proof_send_nothing() {
    let Claimed {
        f, mut miner, schedule, ..
    } = claimed(genesis()).await;
    let Fixture { chain, key, .. } = f;
    while chain.height() < schedule.proof_open {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let mut params = chain.state().proof.clone();
    params.proof_submission_fee = Some(wire::Coin {
        denom: "upokt".into(),
        amount: "2".into(),
    });
    chain.set_proof_params(params);
    while chain.height() <= schedule.settlement {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    assert!(chain.records().iter().all(|r| r.kind != "proof"));
    assert!(matches!(chain.settlements()[0].2, Settlement::Settled(v) if v > 0));
    assert!(miner.engine.session(&key).is_none_or(|r| r.state == State::Settled));
}

/// A change too late to act on (after the last height a proof can be sent): the chain, deciding again at
/// settlement, expires the claim. The miner reads the settlement before pruning and counts the loss, instead of
/// taking the session as paid (revenue-loss metrics must not lie).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_expired_by_a_late_params_change_is_counted_lost() {
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = leading().await;
    let (chain, key) = (&f.chain, &f.key);
    // Effective at block proof_close (the settlement's): past proof_close − buffer, the last height a proof can
    // be sent at.
    while chain.height() < schedule.proof_close - 1 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_eq!(miner.engine.session(key).unwrap().state, State::Settled);
    let mut params = chain.state().proof.clone();
    params.proof_request_probability = 1.0;
    chain.set_proof_params(params);
    while chain.height() <= schedule.settlement + 2 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    assert!(
        matches!(&chain.settlements()[..], [(_, _, Settlement::Expired(_))]),
        "{:?}",
        chain.settlements()
    );
    let text = telemetry.render_metrics();
    assert_eq!(
        super::counter(&text, "ha_miner_relays_lost_total", "proof_window_missed"),
        Some(3),
        "{text}"
    );
    assert!(miner.engine.session(key).is_none_or(|r| r.pruned), "pruned");
}
