//! A step whose record writes fail part way: the losses of the records that were stored are reported at once,
//! so a miner deposed before it could store the rest does not take them with it (the next leader restores those
//! records already moved and would never report them); the others wait for their records.
//!
//! A step's records are one write set (all or nothing); they are written one by one, and can be stored in
//! part, only after the set conflicted: here a record another instance wrote (`conflicting`).

use super::*;
use crate::miner::lifecycle::{Command, LossReason, Step};

fn lost(c: &Confirming, reason: &str) -> Option<u64> {
    counter(&c.telemetry.render_metrics(), "ha_miner_relays_lost_total", reason)
}

/// Two sessions of the supplier whose records change in one step, each with its loss (`claim_window_missed` for
/// the first, `claim_not_included` for the second).
fn two_losses(c: &Confirming, miner: &mut Miner) -> (SessionKey, SessionKey, Step) {
    let first = c.f.key.clone();
    let mut record = miner.engine.session(&first).unwrap().clone();
    record.relays += 1;
    miner.engine.restore(record.clone());
    let mut other = record;
    other.key.session_id = "f".repeat(64);
    let second = other.key.clone();
    miner.engine.restore(other);
    let loss = |key: &SessionKey, reason| Command::RecordLoss {
        key: key.clone(),
        reason,
        relays: 5,
        compute_units: 50,
    };
    let step = Step {
        changed: vec![first.clone(), second.clone()],
        commands: vec![
            loss(&first, LossReason::ClaimWindowMissed),
            loss(&second, LossReason::ClaimNotIncluded),
        ],
    };
    (first, second, step)
}

/// A record of `key` written by another instance (version 1), which this miner's write set conflicts with.
async fn conflicting(c: &Confirming, key: &SessionKey) {
    c.plain
        .sessions
        .put(
            &key.supplier,
            &key.session_id,
            "active",
            b"another instance".to_vec(),
            0,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_records_are_one_write_stored_whole_or_not_at_all() {
    let (c, mut miner) = Confirming::new().await;
    let (first, second, step) = two_losses(&c, &mut miner);
    let stored = |key: &SessionKey| {
        let (plain, key) = (c.plain.clone(), key.clone());
        async move { plain.sessions.get(&key.supplier, &key.session_id).await.unwrap() }
    };
    let first_before = stored(&first).await.unwrap().version;
    c.faults
        .fail_nth_write(1, StorageError::Unavailable("test: storage down".into()));
    assert!(miner.execute(step).await.is_err());
    assert_eq!(
        stored(&first).await.unwrap().version,
        first_before,
        "nothing of the failed set stored"
    );
    assert!(stored(&second).await.is_none());
    assert_eq!(
        lost(&c, "claim_window_missed"),
        None,
        "reported before its record was stored"
    );
    assert_eq!(lost(&c, "claim_not_included"), None);
    // The retry stores both in one write and reports both.
    let writes = c.faults.writes();
    miner.persist_pending().await.unwrap();
    assert_eq!(c.faults.writes() - writes, 1, "two records, one storage write");
    assert_eq!(stored(&first).await.unwrap().version, first_before + 1);
    assert_eq!(stored(&second).await.unwrap().version, 1);
    assert_eq!(lost(&c, "claim_window_missed"), Some(5));
    assert_eq!(lost(&c, "claim_not_included"), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_of_records_stored_before_a_failed_write_are_reported_even_if_the_leadership_is_lost() {
    let (c, mut miner) = Confirming::new().await;
    let (first, second, step) = two_losses(&c, &mut miner);
    // The set conflicts (write 1), the first record is stored one by one (2), the second's write fails (3).
    conflicting(&c, &second).await;
    c.faults
        .fail_nth_write(3, StorageError::Unavailable("test: storage down".into()));
    assert!(miner.execute(step).await.is_err());
    assert_eq!(
        lost(&c, "claim_window_missed"),
        Some(5),
        "the stored record's loss is reported at once"
    );
    assert_eq!(
        lost(&c, "claim_not_included"),
        None,
        "reported before its record was stored"
    );
    let stored = |key: &SessionKey| {
        let (plain, key) = (c.plain.clone(), key.clone());
        async move { plain.sessions.get(&key.supplier, &key.session_id).await.unwrap() }
    };
    assert!(stored(&first).await.is_some());
    assert_eq!(
        stored(&second).await.unwrap().data,
        b"another instance",
        "the second record is not this miner's"
    );

    // Deposed before the second record could be stored: this miner reports nothing more, and nothing twice.
    miner.leave_leader_mode();
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5));
    assert_eq!(lost(&c, "claim_not_included"), None, "a deposed miner reported a loss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_stores_part_of_the_waiting_records_reports_only_theirs() {
    let (c, mut miner) = Confirming::new().await;
    let (_, _, step) = two_losses(&c, &mut miner);
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    assert!(miner.execute(step).await.is_err());
    c.faults.refuse_writes(None);
    assert_eq!(lost(&c, "claim_window_missed"), None);
    // The retry's set conflicts (write 1), then it stores the first of the two records one by one (the waiting
    // set is ordered by key; 2) and fails on the other (3).
    let (first, second) = (
        c.f.key.clone(),
        SessionKey {
            supplier: c.f.key.supplier.clone(),
            session_id: "f".repeat(64),
        },
    );
    assert!(first < second, "the fixture's session sorts first");
    conflicting(&c, &second).await;
    c.faults
        .fail_nth_write(3, StorageError::Unavailable("test: storage down".into()));
    assert!(miner.persist_pending().await.is_err());
    let reported = [lost(&c, "claim_window_missed"), lost(&c, "claim_not_included")];
    assert_eq!(
        reported.iter().filter(|r| **r == Some(5)).count(),
        1,
        "exactly the stored record's loss: {reported:?}"
    );
    // The next retry stores the other one and reports it; nothing twice.
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5));
    assert_eq!(lost(&c, "claim_not_included"), Some(5));
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5));
    assert_eq!(lost(&c, "claim_not_included"), Some(5));
}
