//! A claim found on chain is counted (`ha_miner_claim_inclusion_outcome_total{included}`,
//! `ha_miner_upokt_claimed_total`, `claims_confirmed`) once the record that moves the session to `Claimed` is
//! stored, like a loss (module `confirmed`). Counted when the lookup saw it, a record write that failed and a
//! deposal before it was retried counted it twice: the stored record is still `Claiming`, so whoever leads next
//! (this process again, or another instance) looks the claim up and confirms it once more.

use super::*;
use crate::miner::lifecycle::State;

/// The value of counter `name`'s first series whose labels contain `label`.
fn series(telemetry: &crate::telemetry::Telemetry, name: &str, label: &str) -> Option<u64> {
    telemetry
        .render_metrics()
        .lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// What `telemetry` and `stats` say was confirmed: (claims included, uPOKT claimed, `claims_confirmed`).
fn confirmed(telemetry: &crate::telemetry::Telemetry, miner: &Miner) -> (Option<u64>, Option<u64>, u64) {
    (
        series(telemetry, "ha_miner_claim_inclusion_outcome_total", "included"),
        series(telemetry, "ha_miner_upokt_claimed_total", "anvil"),
        miner.stats.claims_confirmed.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// The state of the fixture's session record in storage.
async fn stored_state(c: &Confirming) -> String {
    let stored = c
        .plain
        .sessions
        .get(&c.f.key.supplier, &c.f.key.session_id)
        .await
        .unwrap();
    stored.expect("the session has a record").state
}

/// One step whose leadership read says another instance leads (the miner is deposed), then one leading again
/// in the same process (it reloads everything from storage).
async fn depose_and_lead_again(c: &Confirming, miner: &mut Miner) {
    c.view.set(Some(None));
    miner.step().await.unwrap();
    assert!(!miner.engine.is_leader(), "deposed");
    c.view.set(None);
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader(), "leads again");
}

/// The miner sends the claim at the window's opening, the chain includes it, and the next step's lookup finds
/// it while storage refuses writes: the session is `Claimed` in memory, still `Claiming` in storage, and nothing
/// is counted yet. Returns the claim's uPOKT value (5 relays of 10 compute units).
async fn found_while_the_record_cannot_be_stored(c: &Confirming, miner: &mut Miner) -> u64 {
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&c.f.key).unwrap().claim_sent_at.len(),
        1,
        "claim sent"
    );
    c.f.chain.produce_block();
    assert_claimed(&c.f, &[&c.f.key]).await;
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    assert!(miner.step().await.is_err(), "the record's write fails");
    c.faults.refuse_writes(None);
    assert_eq!(miner.engine.session(&c.f.key).unwrap().state, State::Claimed);
    assert_eq!(stored_state(c).await, "claiming");
    assert_eq!(
        confirmed(&c.telemetry, miner),
        (None, None, 0),
        "counted before its record was stored"
    );
    miner
        .upokt("anvil", c.schedule.session_end, 50)
        .await
        .expect("the claim can be valued")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_confirmed_while_its_record_could_not_be_stored_is_counted_once_when_the_miner_leads_again() {
    let (c, mut miner) = Confirming::new().await;
    let value = found_while_the_record_cannot_be_stored(&c, &mut miner).await;

    // Deposed before the record could be stored, then leading again in the same process: the record is restored
    // from storage (`Claiming`), the claim is looked up again and found, and this time its record is stored.
    depose_and_lead_again(&c, &mut miner).await;
    assert_eq!(miner.engine.session(&c.f.key).unwrap().state, State::Claimed);
    assert_eq!(stored_state(&c).await, "claimed");
    assert_eq!(confirmed(&c.telemetry, &miner), (Some(1), Some(value), 1));
    for _ in 0..3 {
        c.f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_eq!(
        confirmed(&c.telemetry, &miner),
        (Some(1), Some(value), 1),
        "counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_confirmed_by_a_leader_deposed_before_its_record_was_stored_is_counted_once_across_the_fleet() {
    let (c, mut a) = Confirming::new().await;
    let value = found_while_the_record_cannot_be_stored(&c, &mut a).await;

    // Instance "b" takes over: it restores the record (`Claiming`), finds the claim and counts it.
    c.hand_the_leadership_to_b(a.leader_token.expect("a leads")).await;
    let b_telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut b = Miner::new(c.f.client.clone(), c.plain.clone(), c.f.keyring.clone(), config("b"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&b_telemetry).unwrap());
    b.step().await.unwrap();
    assert!(b.engine.is_leader(), "b leads");
    assert_eq!(stored_state(&c).await, "claimed");
    assert_eq!(confirmed(&b_telemetry, &b), (Some(1), Some(value), 1));

    // "a" learns it is deposed and drops its unstored change with its report: the fleet counted the claim once.
    a.step().await.unwrap();
    assert!(!a.engine.is_leader(), "a is deposed");
    assert_eq!(
        confirmed(&c.telemetry, &a),
        (None, None, 0),
        "the deposed leader counted it"
    );
    c.f.chain.produce_block();
    a.step().await.unwrap();
    b.step().await.unwrap();
    assert_eq!(confirmed(&c.telemetry, &a), (None, None, 0));
    assert_eq!(confirmed(&b_telemetry, &b), (Some(1), Some(value), 1), "counted once");
}

/// The same for a proof found required (`ha_miner_proof_requirement_required_total`, `proofs_required`): the
/// requirement check's record (`Claimed` → `Proving`) cannot be stored, the miner is deposed and leads again,
/// checks again and counts the requirement once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_found_required_while_its_record_could_not_be_stored_is_counted_once() {
    let (c, mut miner) = Confirming::new().await;
    let mut params = c.f.chain.state().proof.clone();
    params.proof_request_probability = 1.0;
    c.f.chain.set_proof_params(params);
    let required = |miner: &Miner| {
        (
            series(&c.telemetry, "ha_miner_proof_requirement_required_total", &c.f.supplier),
            miner.stats.proofs_required.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    // The claim is sent, included and confirmed; blocks up to the one before the proof seed block.
    miner.step().await.unwrap();
    while c.f.chain.height() < c.schedule.proof_seed_height() - 1 {
        c.f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_eq!(stored_state(&c).await, "claimed");
    c.f.chain.produce_block();
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    assert!(miner.step().await.is_err(), "the record's write fails");
    c.faults.refuse_writes(None);
    assert_eq!(miner.engine.session(&c.f.key).unwrap().state, State::Proving);
    assert_eq!(stored_state(&c).await, "claimed");
    assert_eq!(required(&miner), (None, 0), "counted before its record was stored");

    depose_and_lead_again(&c, &mut miner).await;
    assert_eq!(stored_state(&c).await, "proving");
    assert_eq!(required(&miner), (Some(1), 1));
    c.f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(required(&miner), (Some(1), 1), "counted once");
}
