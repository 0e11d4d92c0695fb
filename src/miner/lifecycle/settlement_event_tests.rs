//! The settlement block's events decide a session whatever state the miner left it in (paid, proven, expired,
//! discarded), and a session whose proof requirement cannot be computed is decided once its proof window closed.

use super::tests::*;
use super::*;

/// A proof re-sent at the last block before the close lands in the block that settles the session, where
/// poktroll validates it, pays the claim and deletes it: the lookup finds no claim any more, and the settlement
/// event says it was paid. Proved, nothing lost.
#[test]
fn a_proof_included_in_the_settlement_block_is_proved_by_the_settlement_event_not_lost() {
    use crate::chain::settlement::SettlementOutcome;
    let mut e = leader_engine();
    let k = key("s1", "a");
    claimed_on_chain(&mut e, &k);
    block(&mut e, 15);
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    assert_eq!(e.session(&k).unwrap().state, State::Proving);
    // The node never took the proof until the last block it could be sent at.
    for h in 16..=18 {
        block(&mut e, h);
        e.handle(Event::TxOutcome {
            kind: TxKind::Proof,
            keys: vec![k.clone()],
            outcome: TxOutcome::Retryable("node unreachable".into()),
        });
    }
    assert_eq!(
        block(&mut e, 19),
        vec![Command::SubmitProofs {
            supplier: "s1".into(),
            keys: vec![k.clone()]
        }]
    );
    e.handle(Event::TxOutcome {
        kind: TxKind::Proof,
        keys: vec![k.clone()],
        outcome: TxOutcome::Broadcast,
    });
    assert_eq!(block(&mut e, 20), vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::Settled {
        key: k.clone(),
        outcome: SettlementOutcome::Settled { proof_required: true },
    });
    assert!(losses(&step.commands).is_empty(), "{step:?}");
    assert_eq!(e.session(&k).unwrap().state, State::Proved);
    assert!(step.commands.contains(&Command::Prune { key: k.clone() }), "{step:?}");

    // Read as "claim not found" instead (no settlement events) at two heights past the window
    // (`SessionRecord::proof_absent_at`), the same session is lost.
    let mut blind = leader_engine();
    claimed_on_chain(&mut blind, &k);
    block(&mut blind, 15);
    blind.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    block(&mut blind, 16);
    blind.handle(Event::TxOutcome {
        kind: TxKind::Proof,
        keys: vec![k.clone()],
        outcome: TxOutcome::Broadcast,
    });
    let mut commands = Vec::new();
    for h in 21..=22 {
        commands.extend(block(&mut blind, h));
        commands.extend(
            blind
                .handle(Event::OnChain {
                    key: k.clone(),
                    claim_exists: false,
                    proof_validated: false,
                })
                .commands,
        );
        if h == 21 {
            assert!(losses(&commands).is_empty(), "said once: {commands:?}");
        }
    }
    assert_eq!(losses(&commands), vec![(LossReason::ProofNotIncluded, 5, 50)]);
}

/// The settlement event decides a session whatever state the miner left it in: an expired claim loses what
/// the claim pays for (a proof that reached a node: `proof_not_included`; none: `proof_window_missed`), a
/// discarded one is `settlement_discarded`, a paid one without a required proof is `Settled`.
#[test]
fn settlement_events_end_sessions_as_paid_expired_or_discarded() {
    use crate::chain::settlement::SettlementOutcome;
    let expired = SettlementOutcome::Expired {
        reason: "PROOF_MISSING".into(),
    };
    let cases: [(bool, SettlementOutcome, Option<LossReason>, State); 4] = [
        (
            false,
            expired.clone(),
            Some(LossReason::ProofWindowMissed),
            State::Expired(LossReason::ProofWindowMissed),
        ),
        (
            true,
            expired,
            Some(LossReason::ProofNotIncluded),
            State::Expired(LossReason::ProofNotIncluded),
        ),
        (
            false,
            SettlementOutcome::Discarded { error: "boom".into() },
            Some(LossReason::SettlementDiscarded),
            State::Expired(LossReason::SettlementDiscarded),
        ),
        (
            false,
            SettlementOutcome::Settled { proof_required: false },
            None,
            State::Settled,
        ),
    ];
    for (proof_sent, outcome, loss, state) in cases {
        let mut e = leader_engine();
        let k = key("s1", "a");
        claimed_on_chain(&mut e, &k);
        if proof_sent {
            block(&mut e, 15);
            e.handle(Event::ProofRequirement {
                key: k.clone(),
                required: true,
            });
            block(&mut e, 16);
            e.handle(Event::TxOutcome {
                kind: TxKind::Proof,
                keys: vec![k.clone()],
                outcome: TxOutcome::Broadcast,
            });
        }
        block(&mut e, 20);
        let step = e.handle(Event::Settled {
            key: k.clone(),
            outcome: outcome.clone(),
        });
        let expected: Vec<_> = loss.into_iter().map(|r| (r, 5, 50)).collect();
        assert_eq!(losses(&step.commands), expected, "{outcome:?}");
        assert_eq!(e.session(&k).unwrap().state, state, "{outcome:?}");
        // Once decided, a repeated event changes nothing.
        let again = e.handle(Event::Settled {
            key: k.clone(),
            outcome,
        });
        assert!(losses(&again.commands).is_empty());
    }
}

/// A claimed session whose proof requirement could never be computed (its trie unreadable) stops asking for it
/// once the proof window closed: the lookup decides, by the settlement event when the chain has one, and as a
/// missed proof window when the claim is simply gone.
#[test]
fn a_claimed_session_whose_requirement_check_keeps_failing_is_decided_after_the_window() {
    use crate::chain::settlement::SettlementOutcome;
    let mut e = leader_engine();
    let k = key("s1", "a");
    claimed_on_chain(&mut e, &k);
    for h in 15..=20 {
        // The check is asked every block and never answered.
        assert_eq!(
            block(&mut e, h),
            vec![Command::CheckProofRequirement { key: k.clone() }]
        );
    }
    assert_eq!(block(&mut e, 21), vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::Settled {
        key: k.clone(),
        outcome: SettlementOutcome::Settled { proof_required: false },
    });
    assert_eq!(e.session(&k).unwrap().state, State::Settled, "{step:?}");

    let mut e = leader_engine();
    claimed_on_chain(&mut e, &k);
    for h in 15..=21 {
        block(&mut e, h);
    }
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(losses(&step.commands), vec![(LossReason::ProofWindowMissed, 5, 50)]);
}
