//! A session decided "no proof required" is checked again when the chain's proof params change while its proof
//! can still be sent ([`Event::ProofParamsChanged`]): poktroll decides with its live params at settlement too.

use super::*;

use super::tests::claim_sent_at_12;

pub(super) fn key() -> SessionKey {
    SessionKey {
        supplier: "s1".into(),
        session_id: "a".into(),
    }
}

/// A leader engine whose session is claimed and decided "no proof" at the seed block 15 (proof window [16, 20]).
pub(super) fn decided_not_required() -> Engine {
    let k = key();
    let mut e = claim_sent_at_12(&k);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    let step = e.handle(Event::NewBlock { height: 15 });
    assert_eq!(step.commands, vec![Command::CheckProofRequirement { key: k.clone() }]);
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: false,
    });
    assert_eq!(e.session(&k).unwrap().state, State::Settled);
    e
}

#[test]
fn a_params_change_in_the_proof_window_checks_again_and_a_proof_now_required_is_sent() {
    let k = key();
    let mut e = decided_not_required();
    assert!(e.proof_requirement_revisable());
    assert!(e.handle(Event::NewBlock { height: 16 }).commands.is_empty());
    let step = e.handle(Event::ProofParamsChanged);
    assert_eq!(step.commands, vec![Command::CheckProofRequirement { key: k.clone() }]);
    let again = e.handle(Event::ProofParamsChanged);
    assert!(again.commands.is_empty(), "one check per block");
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    assert_eq!(
        step.commands,
        vec![
            Command::RecordProofRequired { key: k.clone() },
            Command::SubmitProofs {
                supplier: "s1".into(),
                keys: vec![k.clone()]
            }
        ]
    );
    let record = e.session(&k).unwrap();
    assert_eq!((record.state, record.proof_required), (State::Proving, Some(true)));
    assert_eq!(record.proof_sent_at, [16]);
    assert!(!e.proof_requirement_revisable());
}

#[test]
fn a_check_that_still_says_no_proof_changes_nothing() {
    let k = key();
    let mut e = decided_not_required();
    e.handle(Event::NewBlock { height: 17 });
    e.handle(Event::ProofParamsChanged);
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: false,
    });
    assert!(step.commands.is_empty());
    assert_eq!(e.session(&k).unwrap().state, State::Settled);
    assert!(e.proof_requirement_revisable());
}

/// Past `proof_close − buffer` no proof could be sent: nothing is checked, and a late answer changes nothing.
#[test]
fn past_the_last_proof_send_height_nothing_is_revisable() {
    let k = key();
    let mut e = decided_not_required();
    e.handle(Event::NewBlock { height: 19 });
    assert!(e.proof_requirement_revisable(), "19 = proof_close − buffer");
    e.handle(Event::NewBlock { height: 20 });
    assert!(!e.proof_requirement_revisable());
    assert!(e.handle(Event::ProofParamsChanged).commands.is_empty());
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    assert_eq!(e.session(&k).unwrap().state, State::Settled);
}

/// A change seen at the last height a proof can be sent (`proof_close − buffer`) still sends it in the same step.
#[test]
fn a_proof_required_at_the_last_send_height_is_sent_in_the_same_step() {
    let k = key();
    let mut e = decided_not_required();
    e.handle(Event::NewBlock { height: 19 });
    assert_eq!(
        e.handle(Event::ProofParamsChanged).commands,
        vec![Command::CheckProofRequirement { key: k.clone() }]
    );
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    assert_eq!(
        step.commands,
        vec![
            Command::RecordProofRequired { key: k.clone() },
            Command::SubmitProofs {
                supplier: "s1".into(),
                keys: vec![k.clone()]
            }
        ]
    );
    assert_eq!(e.session(&k).unwrap().proof_sent_at, [19]);
}

/// Decided "no proof", the chain expired the claim at settlement anyway (it decided again with other params):
/// the settlement lookup counts the loss instead of taking the session as paid; then it is pruned.
#[test]
fn a_claim_the_chain_expired_at_settlement_is_lost_not_paid() {
    use crate::chain::settlement::SettlementOutcome;
    let k = key();
    let mut e = decided_not_required();
    assert!(e.handle(Event::NewBlock { height: 21 }).commands.is_empty());
    assert_eq!(
        e.handle(Event::NewBlock { height: 22 }).commands,
        vec![Command::LookupOnChain { key: k.clone() }]
    );
    let step = e.handle(Event::Settled {
        key: k.clone(),
        outcome: SettlementOutcome::Expired {
            reason: "PROOF_MISSING".into(),
        },
    });
    assert_eq!(
        step.commands,
        vec![
            Command::RecordLoss {
                key: k.clone(),
                reason: LossReason::ProofWindowMissed,
                relays: 5,
                compute_units: 50,
            },
            Command::Prune { key: k.clone() },
        ]
    );
    assert_eq!(
        e.session(&k).unwrap().state,
        State::Expired(LossReason::ProofWindowMissed)
    );
}

/// A session whose claim is on chain and whose proof was found required at the seed block (height 15).
fn decided_required(k: &SessionKey) -> Engine {
    let mut e = claim_sent_at_12(k);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    e.handle(Event::NewBlock { height: 15 });
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    e
}

/// The chain refuses `k`'s proof as not required (`TxOutcome::NotRequired`).
fn refused_as_not_required(e: &mut Engine, k: &SessionKey) -> Step {
    e.handle(Event::TxOutcome {
        kind: TxKind::Proof,
        keys: vec![k.clone()],
        outcome: TxOutcome::NotRequired("proof not required".into()),
    })
}

/// The other way round: required at the seed block, then refused by the chain as not required (its live params
/// changed). The proof is not sent again at every block: the requirement is checked again, the session ends
/// `Settled` (still watched while its proof can be sent), and the settlement is not taken as a validated proof.
#[test]
fn a_proof_refused_as_not_required_is_checked_again_not_resent() {
    let k = key();
    let mut e = decided_required(&k);
    let step = e.handle(Event::NewBlock { height: 16 });
    assert_eq!(
        step.commands,
        vec![Command::SubmitProofs {
            supplier: "s1".into(),
            keys: vec![k.clone()]
        }]
    );
    let step = refused_as_not_required(&mut e, &k);
    assert_eq!(step.commands, vec![Command::CheckProofRequirement { key: k.clone() }]);
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: false,
    });
    assert_eq!(
        step.commands,
        vec![Command::RecordProofNotRequired { key: k.clone() }],
        "counted required at the seed block: the correction is counted once"
    );
    assert_eq!(step.changed, vec![k.clone()]);
    let record = e.session(&k).unwrap();
    assert_eq!((record.state, record.proof_required), (State::Settled, Some(false)));
    assert!(record.proof_sent_at.is_empty(), "the refused send was taken back");
    assert!(e.proof_requirement_revisable(), "watched while a proof can be sent");
    assert!(
        e.handle(Event::NewBlock { height: 17 }).commands.is_empty(),
        "not re-sent"
    );
    // Params that require it again before the last send height: proven after all.
    assert_eq!(
        e.handle(Event::ProofParamsChanged).commands,
        vec![Command::CheckProofRequirement { key: k.clone() }]
    );
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    assert!(step.commands.contains(&Command::SubmitProofs {
        supplier: "s1".into(),
        keys: vec![k.clone()]
    }));
}

/// Refused as not required and found so: the chain's settlement without a proof is not a validated proof.
#[test]
fn a_session_found_not_required_after_a_refusal_settles_without_a_proof() {
    use crate::chain::settlement::SettlementOutcome;
    let k = key();
    let mut e = decided_required(&k);
    e.handle(Event::NewBlock { height: 16 });
    refused_as_not_required(&mut e, &k);
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: false,
    });
    for height in 17..=21 {
        e.handle(Event::NewBlock { height });
    }
    let step = e.handle(Event::Settled {
        key: k.clone(),
        outcome: SettlementOutcome::Settled { proof_required: false },
    });
    assert!(
        !step
            .commands
            .iter()
            .any(|c| matches!(c, Command::RecordProofValidated { .. } | Command::RecordLoss { .. })),
        "{:?}",
        step.commands
    );
    let record = e.session(&k).unwrap();
    assert_eq!(record.state, State::Settled);
    assert!(record.settlement_seen);
}
