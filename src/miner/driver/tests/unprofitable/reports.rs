//! A skipped claim is counted (`ha_miner_claims_skipped_total{reason="unprofitable"}`,
//! `ha_miner_claims_skipped_upokt_total`) once the record that ends its session (`Discarded`) is stored, by the
//! engine's report (`Command::RecordClaimSkipped`), as a loss is. Counted when the skip was decided, a record write
//! refused then (fenced: another instance leads) left the stored record `Claiming`, and the next leader claimed
//! the session: the fleet reported it both skipped and claimed.
//!
//! The write refused is the skip's own: the miner's leadership confirmation before the claim is built into a tx
//! is held, and the second storage write from then on (the first is that confirmation) is made to fail.

use super::*;
use std::sync::atomic::Ordering::SeqCst;

/// The state of the fixture's session record in storage.
async fn stored_state(s: &Sessions) -> String {
    let stored = s
        .plain
        .sessions
        .get(&s.f.key.supplier, &s.f.key.session_id)
        .await
        .unwrap();
    stored.expect("the session has a record").state
}

/// One step at the claim window's opening whose skip's record write fails with `error`: the step's leadership
/// confirmation before the claim is built is held until the write after it is set to fail.
async fn step_failing_the_skips_write(
    s: &mut Sessions,
    error: StorageError,
) -> Result<(), crate::miner::driver::MinerError> {
    let (view, faults) = (s.view.clone(), s.faults.clone());
    let held = view.hold.write().await;
    let before = view.renewals.load(SeqCst);
    view.hold_from.store(before, SeqCst);
    let release = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while view.renewals.load(SeqCst) <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the miner never confirmed its leadership"
            );
            tokio::task::yield_now().await;
        }
        // Write 1 is the held confirmation itself, write 2 the record that ends the skipped session.
        faults.fail_nth_write(2, error);
        drop(held);
    };
    let (result, ()) = tokio::join!(s.miner.step(), release);
    view.hold_from.store(0, SeqCst);
    result
}

/// The fixture's session (2,100 uPOKT ≤ 0.25 × 10,000) is skipped in memory while its record says `Claiming`.
fn assert_skipped_but_not_stored(s: &Sessions, stored: &str) {
    assert_eq!(
        s.miner.engine.session(&s.f.key).map(|r| r.state),
        Some(State::Discarded),
        "the claim was skipped"
    );
    assert_eq!(stored, "claiming", "the skip's record was not stored");
    assert_eq!(
        (s.skipped(), s.skipped_upokt()),
        (None, None),
        "counted before its record was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_whose_record_write_failed_is_counted_once_the_retry_stores_it() {
    let mut s = at_claim_open(SkipUnprofitableClaims::ExpectedCost, 10_000, u64::MAX, false).await;
    let result = step_failing_the_skips_write(&mut s, StorageError::Unavailable("test: storage down".into())).await;
    assert!(result.is_err(), "the failed record write is reported");
    let stored = stored_state(&s).await;
    assert_skipped_but_not_stored(&s, &stored);

    // The next step stores the record, then counts the skip with its value.
    s.miner.step().await.unwrap();
    assert_eq!(stored_state(&s).await, "discarded");
    assert_eq!((s.skipped(), s.skipped_upokt()), (Some(1), Some(2_100)));

    // Through the claim window: pruned, never claimed, counted once.
    let before = s.balance();
    while s.f.chain.height() <= s.schedule.claim_close + 2 {
        s.f.chain.produce_block();
        s.miner.step().await.unwrap();
    }
    assert_not_claimed(&s.f, &s.f.key).await;
    assert_eq!(s.balance(), before, "no claim tx paid for");
    assert_eq!((s.skipped(), s.skipped_upokt()), (Some(1), Some(2_100)), "counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_a_deposed_leader_could_not_store_is_not_counted_and_the_next_leader_claims_the_session() {
    let mut s = at_claim_open(SkipUnprofitableClaims::ExpectedCost, 10_000, u64::MAX, false).await;
    let token = s.miner.leader_token.expect("a leads");
    let result =
        step_failing_the_skips_write(&mut s, StorageError::Fenced("test: another instance leads".into())).await;
    assert!(
        result.is_ok(),
        "a fenced write ends the leadership, not the step: {result:?}"
    );
    assert!(!s.miner.engine.is_leader(), "a is deposed");
    let stored = stored_state(&s).await;
    assert_eq!(stored, "claiming", "the skip's record was not stored");
    assert_eq!(
        (s.skipped(), s.skipped_upokt()),
        (None, None),
        "the deposed leader counted it"
    );

    // Instance "b" takes over: the session it restores is inherited (its claim window opened before b led), so
    // it is claimed whatever its worth (module `profit`).
    assert!(s.plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    let b_telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut b = Miner::new(s.f.client.clone(), s.plain.clone(), s.f.keyring.clone(), config("b"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&b_telemetry).unwrap())
        .with_claim_policy(SkipUnprofitableClaims::ExpectedCost);
    b.step().await.unwrap();
    assert!(b.engine.is_leader(), "b leads");
    while s.f.chain.height() <= s.schedule.claim_close {
        s.f.chain.produce_block();
        b.step().await.unwrap();
        s.miner.step().await.unwrap();
    }
    assert!(!s.miner.engine.is_leader(), "a follows");
    assert_claimed(&s.f, &[&s.f.key]).await;
    // The fleet claimed the session and reported no skip.
    assert_eq!((skipped(&b_telemetry), skipped_upokt(&b_telemetry)), (None, None));
    assert_eq!((s.skipped(), s.skipped_upokt()), (None, None));
}
