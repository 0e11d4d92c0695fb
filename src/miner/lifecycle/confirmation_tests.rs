//! The reports of what the chain confirmed ([`Command::RecordClaimConfirmed`], [`Command::RecordProofValidated`],
//! [`Command::RecordProofRequired`]): emitted once, in the step that moves the session, so the driver counts
//! them once that step's record is stored (as it does losses).

use super::tests::{SCHEDULE, claim_sent_at_12};
use super::*;
use crate::chain::settlement::SettlementOutcome;

fn key() -> SessionKey {
    SessionKey {
        supplier: "s1".into(),
        session_id: "a".into(),
    }
}

/// A leader engine whose session (5 relays, 50 compute units) had its claim sent at 12 and is looked up at 13.
fn claim_sent() -> Engine {
    claim_sent_at_12(&key())
}

/// The reports of `step`, in order.
fn reports(step: &Step) -> Vec<Command> {
    step.commands.iter().filter(|c| c.is_report()).cloned().collect()
}

fn reports_of(step: Step) -> Vec<Command> {
    reports(&step)
}

fn on_chain(e: &mut Engine, claim_exists: bool, proof_validated: bool) -> Step {
    e.handle(Event::OnChain {
        key: key(),
        claim_exists,
        proof_validated,
    })
}

fn confirmed(compute_units: u64) -> Command {
    Command::RecordClaimConfirmed {
        key: key(),
        service_id: "anvil".into(),
        session_end: SCHEDULE.session_end,
        compute_units,
    }
}

fn validated() -> Command {
    Command::RecordProofValidated {
        key: key(),
        service_id: "anvil".into(),
    }
}

/// The claim is reported with what its root pays for (4 relays, 40 compute units: a relay reached the trie
/// after the claim was built), in the step that moves the session, and not again at the next lookups.
#[test]
fn a_claim_found_on_chain_is_reported_once_with_what_its_root_pays_for() {
    let mut e = claim_sent();
    let mut step = e.handle(Event::ClaimOnChain {
        key: key(),
        relays: 4,
        compute_units: 40,
    });
    step.merge(on_chain(&mut e, true, false));
    assert_eq!(e.session(&key()).unwrap().state, State::Claimed);
    assert!(
        step.changed.contains(&key()),
        "the report comes with its record's change"
    );
    let reports = reports(&step);
    assert!(reports.contains(&confirmed(40)), "{reports:?}");
    assert_eq!(
        reports
            .iter()
            .filter(|c| matches!(c, Command::RecordClaimConfirmed { .. }))
            .count(),
        1
    );
    // Looked up again (a settlement past the proof window, an answer repeated): nothing more to report.
    assert!(reports_of(on_chain(&mut e, true, false)).is_empty());
}

/// Without the claim's totals (the chain did not say), the trie's are what it is valued at.
#[test]
fn a_claim_found_without_its_totals_is_valued_at_the_tries() {
    let mut e = claim_sent();
    assert_eq!(reports_of(on_chain(&mut e, true, false)), vec![confirmed(50)]);
}

/// A lookup that does not find the claim reports nothing (a re-send, or a loss once the window closed).
#[test]
fn a_claim_not_found_is_not_reported_confirmed() {
    let mut e = claim_sent();
    assert!(reports_of(on_chain(&mut e, false, false)).is_empty());
    e.handle(Event::NewBlock { height: 17 });
    assert!(
        reports_of(on_chain(&mut e, false, false)).is_empty(),
        "absent once past the window"
    );
    e.handle(Event::NewBlock { height: 18 });
    let reports = reports_of(on_chain(&mut e, false, false));
    assert!(
        matches!(reports.as_slice(), [Command::RecordLoss { .. }]),
        "{reports:?}"
    );
}

/// The driver restores the stored record when it leads again: a session whose confirmation was not stored is
/// still `Claiming` there, and the engine confirms (and reports) it again. The driver ran no report for the
/// change it could not store, so the claim is counted once.
#[test]
fn a_restored_record_still_claiming_is_confirmed_and_reported_again() {
    let mut e = claim_sent();
    let stored = e.session(&key()).unwrap().clone();
    assert_eq!(reports_of(on_chain(&mut e, true, false)), vec![confirmed(50)]);
    let mut next = Engine::new(EngineConfig {
        claim_delay_blocks: 0,
        ..EngineConfig::default()
    });
    next.restore(stored);
    next.handle(Event::Leadership { leader: true });
    next.handle(Event::NewBlock { height: 14 });
    assert_eq!(reports_of(on_chain(&mut next, true, false)), vec![confirmed(50)]);
}

/// A proof found required is reported when the session goes to `Proving`; "not required" reports nothing.
#[test]
fn a_proof_found_required_is_reported_once() {
    for required in [true, false] {
        let mut e = claim_sent();
        on_chain(&mut e, true, false);
        let step = e.handle(Event::NewBlock { height: 15 });
        assert_eq!(step.commands, vec![Command::CheckProofRequirement { key: key() }]);
        let step = e.handle(Event::ProofRequirement { key: key(), required });
        let expected = if required {
            vec![Command::RecordProofRequired { key: key() }]
        } else {
            vec![]
        };
        assert_eq!(reports(&step), expected, "required: {required}");
        // An answer repeated (a check asked twice) moves nothing and reports nothing.
        let again = e.handle(Event::ProofRequirement { key: key(), required });
        assert!(reports(&again).is_empty(), "required: {required}");
    }
}

/// A proof found validated is reported when the session goes to `Proved`, once.
#[test]
fn a_proof_found_validated_is_reported_once() {
    let mut e = claim_sent();
    on_chain(&mut e, true, false);
    e.handle(Event::NewBlock { height: 15 });
    e.handle(Event::ProofRequirement {
        key: key(),
        required: true,
    });
    e.handle(Event::NewBlock { height: 16 });
    e.handle(Event::TxOutcome {
        kind: TxKind::Proof,
        keys: vec![key()],
        outcome: TxOutcome::Broadcast,
    });
    e.handle(Event::NewBlock { height: 17 });
    assert!(
        reports_of(on_chain(&mut e, true, false)).is_empty(),
        "not validated yet"
    );
    let step = on_chain(&mut e, true, true);
    assert_eq!(e.session(&key()).unwrap().state, State::Proved);
    assert_eq!(reports(&step), vec![validated()]);
    assert!(reports_of(on_chain(&mut e, true, true)).is_empty());
}

/// A claim the miner first learns about from its settlement (it settled before the lookup found it) is
/// confirmed in that step; a paid claim that needed a proof is proved too, and an expired one lost as well.
#[test]
fn a_claim_first_seen_settled_is_confirmed_with_its_outcome() {
    let settled = |outcome: SettlementOutcome| {
        let mut e = claim_sent();
        e.handle(Event::NewBlock { height: 22 });
        let mut step = e.handle(Event::ClaimOnChain {
            key: key(),
            relays: 5,
            compute_units: 50,
        });
        step.merge(e.handle(Event::Settled { key: key(), outcome }));
        reports(&step)
    };
    assert_eq!(
        settled(SettlementOutcome::Settled { proof_required: false }),
        vec![confirmed(50)]
    );
    assert_eq!(
        settled(SettlementOutcome::Settled { proof_required: true }),
        vec![confirmed(50), validated()]
    );
    let expired = settled(SettlementOutcome::Expired {
        reason: "PROOF_MISSING".into(),
    });
    assert!(
        matches!(
            expired.as_slice(),
            [c, Command::RecordLoss { reason: LossReason::ProofWindowMissed, .. }] if *c == confirmed(50)
        ),
        "{expired:?}"
    );
}
