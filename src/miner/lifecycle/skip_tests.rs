//! Claims the driver skips as not worth their cost ([`Event::ClaimSkipped`]): only a claim that never left ends
//! the session, unclaimed and pruned with a tombstone, and is reported ([`Command::RecordClaimSkipped`], run by the
//! driver once the record is stored); a session whose claim may be on chain goes on, unreported.

use super::*;

use super::tests::leading_engine_with as engine_with;

fn key(session: &str) -> SessionKey {
    SessionKey {
        supplier: "s1".into(),
        session_id: session.into(),
    }
}

#[test]
fn a_skipped_first_claim_ends_the_session_unclaimed_and_pruned_with_a_tombstone() {
    let k = key("a");
    let mut e = engine_with(&[&k]);
    e.handle(Event::NewBlock { height: 12 });
    assert_eq!(e.session(&k).unwrap().claim_sent_at, [12]);
    let step = e.handle(Event::ClaimSkipped {
        claims: vec![(k.clone(), 2_100)],
    });
    let record = e.session(&k).unwrap();
    assert_eq!(record.state, State::Discarded);
    assert!(record.claim_sent_at.is_empty() && record.pruned, "{record:?}");
    assert!(step.changed.contains(&k));
    assert!(step.commands.contains(&Command::Prune { key: k.clone() }));
    assert!(
        !step
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordLoss { .. } | Command::RecordDiscard { .. })),
        "no loss and no discard recorded: {:?}",
        step.commands
    );
    assert!(e.tombstone(&k).is_some(), "its relays were served: a tombstone is kept");
    let report = Command::RecordClaimSkipped {
        key: k.clone(),
        service_id: e.session(&k).unwrap().service_id.clone(),
        value_upokt: 2_100,
    };
    assert_eq!(
        step.commands.iter().filter(|c| c.is_report()).collect::<Vec<_>>(),
        [&report],
        "reported once, with its value, as the record changes"
    );
    assert_eq!(report.report_key(), Some(&k));
}

#[test]
fn a_claim_that_may_be_on_chain_is_not_ended_by_a_skip() {
    let k = key("a");
    let mut e = engine_with(&[&k]);
    e.handle(Event::NewBlock { height: 12 });
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![k.clone()],
        outcome: TxOutcome::Retryable("no answer".into()),
    });
    assert!(e.session(&k).unwrap().claim_built);
    e.handle(Event::NewBlock { height: 13 });
    let step = e.handle(Event::ClaimSkipped {
        claims: vec![(k.clone(), 2_100)],
    });
    assert_eq!(e.session(&k).unwrap().state, State::Claiming);
    assert!(
        !step.commands.iter().any(|c| c.is_report()),
        "not skipped, not reported: {:?}",
        step.commands
    );
}

#[test]
fn a_send_recorded_at_an_earlier_height_is_not_ended_by_a_skip() {
    // A record restored with a send stored before a crash: that claim may have left.
    let k = key("a");
    let mut e = engine_with(&[&k]);
    e.handle(Event::NewBlock { height: 12 });
    e.handle(Event::NewBlock { height: 13 });
    assert!(!e.session(&k).unwrap().claim_never_left(13));
    let step = e.handle(Event::ClaimSkipped {
        claims: vec![(k.clone(), 2_100)],
    });
    assert_eq!(e.session(&k).unwrap().state, State::Claiming);
    assert!(
        !step.commands.iter().any(|c| c.is_report()),
        "not skipped, not reported: {:?}",
        step.commands
    );
}
