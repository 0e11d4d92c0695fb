//! A supplier whose balance pays the `proof_submission_fee` of only some of its proofs due together keeps the
//! most valuable ones: its proofs are sent most valuable first, so the batch the chain refuses at the first proof
//! it cannot pay for (Simulate, naming it) is sent again with the proofs before it (module `submit::refusal`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Three sessions of one supplier, every proof required, worth 2, 4 and 6 relays; the sessions are given those
/// values in the order of their ids, the order the engine hands them to be sent, so the least valuable comes
/// first. Once the claims are on chain the balance is set to 2.5 proof submission fees: two proofs can pay (the
/// handler wants the balance above the fee), the third cannot. The two most valuable are validated; the least
/// valuable is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_short_of_every_proof_fee_lands_the_most_valuable_proofs() {
    const APPS: [&str; 3] = ["app", "app2", "app3"];
    const FEE: u64 = 1_000_000;
    let mut g = genesis_with_apps(&APPS[1..]);
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g.proof_params.proof_submission_fee_upokt = FEE;
    let f = fixture_on(g).await;
    // Enough for every claim's proof fee until the claims are on chain (else the claims are held back, module
    // `afford`).
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = u128::from(FEE) * 10;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    miner.step().await.unwrap();
    let mut sessions = Vec::new();
    for app in APPS {
        let (header, key) = app_session(&f, app).await;
        sessions.push((header, key, app));
    }
    sessions.sort_by(|a, b| a.1.session_id.cmp(&b.1.session_id));
    let mut keys = Vec::new();
    for ((header, key, app), relays) in sessions.into_iter().zip([2, 4, 6]) {
        plain
            .relay_log
            .append(signed_relays(&f, &header, app, 0..relays, 100))
            .await
            .unwrap();
        keys.push(key);
    }
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&keys[0]).unwrap().schedule;
    let mut funded = false;
    while f.chain.height() <= schedule.proof_close {
        f.chain.produce_block();
        if !funded && f.chain.height() >= schedule.claim_close {
            assert_claimed(&f, &keys.iter().collect::<Vec<_>>()).await;
            for key in &keys {
                assert!(
                    miner.engine.session(key).unwrap().proof_sent_at.is_empty(),
                    "no proof sent yet"
                );
            }
            f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = u128::from(FEE) * 5 / 2;
            funded = true;
        }
        miner.step().await.unwrap();
    }
    assert!(funded);
    let status = |key: &SessionKey| {
        let s = f.chain.state();
        let id = (key.session_id.clone(), f.supplier.clone());
        s.settled
            .get(&id)
            .or_else(|| s.claims.get(&id))
            .map(|e| e.claim.proof_validation_status)
    };
    let validated = Some(crate::protocol::wire::ClaimProofStatus::Validated as i32);
    for key in &keys[1..] {
        assert_eq!(
            status(key),
            validated,
            "the 4- and 6-relay proofs: {:?}",
            f.chain.records()
        );
    }
    assert_ne!(
        status(&keys[0]),
        validated,
        "the 2-relay proof: {:?}",
        f.chain.records()
    );
}
