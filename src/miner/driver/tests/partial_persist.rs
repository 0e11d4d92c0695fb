//! A step whose record writes fail part way: the losses of the records that were stored are reported at once,
//! so a miner deposed before it could store the rest does not take them with it (the next leader restores those
//! records already moved and would never report them); the others wait for their records.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_of_records_stored_before_a_failed_write_are_reported_even_if_the_leadership_is_lost() {
    let (c, mut miner) = Confirming::new().await;
    let (first, second, step) = two_losses(&c, &mut miner);
    // The first record is stored, the second write fails.
    c.faults
        .fail_nth_write(2, StorageError::Unavailable("test: storage down".into()));
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
    assert!(stored(&second).await.is_none());

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
    // The retry stores one of the two records (the waiting set is ordered by key), then fails.
    c.faults
        .fail_nth_write(2, StorageError::Unavailable("test: storage down".into()));
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
