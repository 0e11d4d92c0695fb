//! A claim said absent past its window is lost only when the chain says so at two heights
//! ([`SessionRecord::claim_absent_at`]): the lookup reads the node's latest state while the height comes from
//! another call, so behind a lagging or load-balanced endpoint a claim included at `claim_close` can read as
//! absent at `claim_close + 1`. Expired and pruned on that one answer, the session could not be proven. The same
//! for a required proof read unvalidated past its window ([`SessionRecord::proof_absent_at`]): a false loss.

use super::tests::{SCHEDULE, ingest, leader_engine};
use super::*;

fn key() -> SessionKey {
    SessionKey {
        supplier: "s1".into(),
        session_id: "a".into(),
    }
}

/// A leader engine whose session (5 relays, 50 compute units, [`SCHEDULE`]: claim window [12, 16]) had its
/// claim sent at 12 and taken by a node; the lookups inside the window got no answer (a node that kept failing).
fn claim_sent_unconfirmed_through_the_window() -> Engine {
    let mut e = leader_engine();
    ingest(&mut e, &key(), 5);
    let step = e.handle(Event::NewBlock { height: 12 });
    assert!(step.commands.iter().any(|c| matches!(c, Command::SubmitClaims { .. })));
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![key()],
        outcome: TxOutcome::Broadcast,
    });
    for h in 13..=SCHEDULE.claim_close {
        e.handle(Event::NewBlock { height: h });
    }
    e
}

/// A new block: its commands must be exactly one lookup of the session.
fn block_asks_lookup(e: &mut Engine, height: i64) {
    let step = e.handle(Event::NewBlock { height });
    assert_eq!(
        step.commands,
        vec![Command::LookupOnChain { key: key() }],
        "a lookup is asked at {height}"
    );
}

fn answer(e: &mut Engine, claim_exists: bool) -> Step {
    e.handle(Event::OnChain {
        key: key(),
        claim_exists,
        proof_validated: false,
    })
}

fn losses(step: &Step) -> usize {
    step.commands
        .iter()
        .filter(|c| matches!(c, Command::RecordLoss { .. }))
        .count()
}

fn prunes(step: &Step) -> usize {
    step.commands
        .iter()
        .filter(|c| matches!(c, Command::Prune { .. }))
        .count()
}

/// The claim landed at `claim_close` but the lookup at `claim_close + 1` read a node a block behind: the session
/// stays `Claiming` (nothing lost, nothing pruned), is looked up again at the next block, found, and then goes
/// on as any claimed session: its proof requirement is checked and a required proof is sent in its window.
#[test]
fn a_claim_read_absent_once_past_the_window_and_then_found_is_claimed_not_lost() {
    let mut e = claim_sent_unconfirmed_through_the_window();
    let close = SCHEDULE.claim_close;

    block_asks_lookup(&mut e, close + 1);
    let step = answer(&mut e, false);
    assert_eq!(losses(&step), 0, "one absent answer is no loss: {step:?}");
    assert_eq!(prunes(&step), 0, "nor a prune: {step:?}");
    assert!(step.changed.contains(&key()), "the first absence is stored");
    let record = e.session(&key()).unwrap();
    assert_eq!(record.state, State::Claiming);
    assert_eq!(record.claim_absent_at, Some(close + 1));
    assert!(!record.pruned);

    block_asks_lookup(&mut e, close + 2);
    let step = answer(&mut e, true);
    assert_eq!(losses(&step), 0, "{step:?}");
    assert_eq!(prunes(&step), 0, "{step:?}");
    assert!(
        step.commands
            .iter()
            .any(|c| matches!(c, Command::RecordClaimConfirmed { .. })),
        "{step:?}"
    );
    assert_eq!(e.session(&key()).unwrap().state, State::Claimed);

    // Past the seed block (15): the requirement is checked at the next block, and a required proof is sent.
    let step = e.handle(Event::NewBlock { height: close + 3 });
    assert_eq!(step.commands, vec![Command::CheckProofRequirement { key: key() }]);
    let step = e.handle(Event::ProofRequirement {
        key: key(),
        required: true,
    });
    assert_eq!(
        step.commands,
        vec![
            Command::RecordProofRequired { key: key() },
            Command::SubmitProofs {
                supplier: "s1".into(),
                keys: vec![key()]
            }
        ]
    );
    assert_eq!(e.session(&key()).unwrap().state, State::Proving);
}

/// Absent at two heights past the window: expired at the second, with one loss, pruned in that step, and
/// never reported again.
#[test]
fn a_claim_read_absent_at_two_heights_past_the_window_is_lost_once_and_pruned() {
    let mut e = claim_sent_unconfirmed_through_the_window();
    let close = SCHEDULE.claim_close;

    block_asks_lookup(&mut e, close + 1);
    let first = answer(&mut e, false);
    // A second answer at the same height (another lookup of this block) is not a second height.
    let same_height = answer(&mut e, false);
    assert_eq!(losses(&first) + losses(&same_height), 0);
    assert_eq!(prunes(&first) + prunes(&same_height), 0);
    assert_eq!(e.session(&key()).unwrap().state, State::Claiming);

    block_asks_lookup(&mut e, close + 2);
    let step = answer(&mut e, false);
    assert_eq!(
        step.commands,
        vec![
            Command::RecordLoss {
                key: key(),
                reason: LossReason::ClaimNotIncluded,
                relays: 5,
                compute_units: 50
            },
            Command::Prune { key: key() }
        ]
    );
    assert_eq!(
        e.session(&key()).unwrap().state,
        State::Expired(LossReason::ClaimNotIncluded)
    );
    for h in close + 3..=close + 6 {
        let step = e.handle(Event::NewBlock { height: h });
        assert!(step.commands.is_empty(), "nothing more at {h}: {step:?}");
    }
}

/// The first absence is part of the stored record: a miner restarted (or a new leader) between the two answers
/// expires the session at its first absent answer at a later height, not one later still; a record written
/// before the field existed reads without it and waits for two answers.
#[test]
fn the_first_absence_survives_a_restart_and_older_records_read_without_it() {
    let mut e = claim_sent_unconfirmed_through_the_window();
    let close = SCHEDULE.claim_close;
    block_asks_lookup(&mut e, close + 1);
    answer(&mut e, false);
    let stored = serde_json::to_value(e.session(&key()).unwrap()).unwrap();
    assert_eq!(stored["claim_absent_at"], close + 1);

    let mut restarted = Engine::new(EngineConfig::default());
    restarted.restore(serde_json::from_value(stored.clone()).unwrap());
    restarted.handle(Event::Leadership { leader: true });
    block_asks_lookup(&mut restarted, close + 2);
    assert_eq!(losses(&answer(&mut restarted, false)), 1);

    let mut older = stored;
    older.as_object_mut().unwrap().remove("claim_absent_at");
    let record: SessionRecord = serde_json::from_value(older).unwrap();
    assert_eq!(record.claim_absent_at, None);
    let mut restarted = Engine::new(EngineConfig::default());
    restarted.restore(record);
    restarted.handle(Event::Leadership { leader: true });
    block_asks_lookup(&mut restarted, close + 2);
    assert_eq!(losses(&answer(&mut restarted, false)), 0, "first answer of this record");
    block_asks_lookup(&mut restarted, close + 3);
    assert_eq!(losses(&answer(&mut restarted, false)), 1);

    // A record that never saw an absence does not write the field (the format older binaries read).
    let fresh = claim_sent_unconfirmed_through_the_window();
    let value = serde_json::to_value(fresh.session(&key()).unwrap()).unwrap();
    assert!(value.get("claim_absent_at").is_none(), "{value}");
}

/// A required proof included at `proof_close` (validated and settled in that block) read at `proof_close + 1`
/// from a node a block behind: the claim still there, its proof not validated. Not counted lost on that one
/// answer: the next block's lookup reads the settlement, and the session is proved.
#[test]
fn a_proof_read_unvalidated_once_past_the_window_is_proved_by_the_next_lookup_not_lost() {
    use crate::chain::settlement::SettlementOutcome;
    let mut e = leader_engine();
    ingest(&mut e, &key(), 5);
    e.handle(Event::NewBlock { height: 12 });
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![key()],
        outcome: TxOutcome::Broadcast,
    });
    block_asks_lookup(&mut e, 13);
    answer(&mut e, true);
    e.handle(Event::NewBlock { height: 14 });
    let step = e.handle(Event::NewBlock {
        height: SCHEDULE.proof_seed_height(),
    });
    assert_eq!(step.commands, vec![Command::CheckProofRequirement { key: key() }]);
    e.handle(Event::ProofRequirement {
        key: key(),
        required: true,
    });
    let step = e.handle(Event::NewBlock {
        height: SCHEDULE.proof_open,
    });
    assert!(
        step.commands.iter().any(|c| matches!(c, Command::SubmitProofs { .. })),
        "{step:?}"
    );
    e.handle(Event::TxOutcome {
        kind: TxKind::Proof,
        keys: vec![key()],
        outcome: TxOutcome::Broadcast,
    });
    // The lookups inside the window got no answer.
    for h in SCHEDULE.proof_open + 1..=SCHEDULE.proof_close {
        e.handle(Event::NewBlock { height: h });
    }

    block_asks_lookup(&mut e, SCHEDULE.proof_close + 1);
    let stale = answer(&mut e, true);
    assert_eq!(losses(&stale), 0, "{stale:?}");
    assert_eq!(prunes(&stale), 0, "{stale:?}");
    assert_eq!(e.session(&key()).unwrap().state, State::Proving);
    assert_eq!(
        e.session(&key()).unwrap().proof_absent_at,
        Some(SCHEDULE.proof_close + 1)
    );

    block_asks_lookup(&mut e, SCHEDULE.proof_close + 2);
    let step = e.handle(Event::Settled {
        key: key(),
        outcome: SettlementOutcome::Settled { proof_required: true },
    });
    assert_eq!(losses(&step), 0, "{step:?}");
    assert_eq!(e.session(&key()).unwrap().state, State::Proved);
    assert!(
        step.commands
            .iter()
            .any(|c| matches!(c, Command::RecordProofValidated { .. })),
        "{step:?}"
    );
    assert_eq!(prunes(&step), 1, "{step:?}");
}
