//! Sends no node took or that never landed: what is repeated, when the re-send is used up, and the loss reason
//! a session ends with (`*_window_missed`, `*_not_included`), counted once.

use super::tests::*;
use super::*;

#[test]
fn a_claim_no_node_ever_took_is_lost_as_window_missed_not_as_not_included() {
    // Every broadcast failed before a node answered (node unreachable): the claim never left this miner. Each
    // failed send is taken back, so it is tried at every block the window allows, not only twice.
    assert_eq!(
        claim_window_with_every_broadcast(TxOutcome::Retryable("connection refused".into())),
        (LossReason::ClaimWindowMissed, vec![12, 13, 14, 15])
    );
    // A node took it (mempool) but no block included it: sent, then re-sent once after a lookup said "not there".
    assert_eq!(
        claim_window_with_every_broadcast(TxOutcome::Broadcast),
        (LossReason::ClaimNotIncluded, vec![12, 14])
    );
    // Records written before the field existed keep the label they would have had.
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let mut old = serde_json::to_value(e.session(&k).unwrap()).unwrap();
    assert_eq!(old["claim_reached_node"], false);
    old.as_object_mut().unwrap().remove("claim_reached_node");
    old.as_object_mut().unwrap().remove("proof_reached_node");
    let old: SessionRecord = serde_json::from_value(old).unwrap();
    assert!(old.claim_reached_node && old.proof_reached_node);
}

#[test]
fn a_proof_no_node_ever_took_is_lost_as_window_missed() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let answers = Answers {
        claim: TxOutcome::Broadcast,
        claim_on_chain: true,
        proof: TxOutcome::Retryable("node unreachable".into()),
    };
    let (_, proofs) = run_blocks(&mut e, 12..=22, &answers);
    // Proof window [16, 20], send buffer 1: tried at every block from the window's open on.
    assert_eq!(
        proofs,
        vec![16, 17, 18, 19],
        "a proof no node took is tried again at the next block"
    );
    let record = e.session(&k).unwrap();
    assert!(record.proof_sent_at.is_empty(), "no send took place");
    assert_eq!(record.state, State::Expired(LossReason::ProofWindowMissed));
}

#[test]
fn a_send_no_node_took_is_repeated_at_the_next_block_and_does_not_use_up_the_re_send() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let submit = |e: &mut Engine, h: i64| {
        let commands = block(e, h);
        assert!(
            commands.contains(&Command::SubmitClaims {
                supplier: "s1".into(),
                keys: vec![k.clone()]
            }),
            "claim due at {h}: {commands:?}"
        );
    };
    let outcome = |e: &mut Engine, outcome: TxOutcome| {
        e.handle(Event::TxOutcome {
            kind: TxKind::Claim,
            keys: vec![k.clone()],
            outcome,
        })
    };
    submit(&mut e, 12);
    outcome(
        &mut e,
        TxOutcome::Retryable("a chain query failed while building the claim".into()),
    );
    assert!(e.session(&k).unwrap().claim_sent_at.is_empty());
    submit(&mut e, 13);
    outcome(&mut e, TxOutcome::Broadcast);
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![13]);
    // Not on chain at 15: the one re-send is still available.
    block(&mut e, 14);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    let commands = block(&mut e, 15);
    assert!(
        commands.contains(&Command::LookupOnChain { key: k.clone() }),
        "{commands:?}"
    );
    let resend = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(
        resend.commands,
        vec![Command::SubmitClaims {
            supplier: "s1".into(),
            keys: vec![k.clone()]
        }]
    );
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![13, 15]);
}

/// A proof-stage loss loses what the claim on chain pays for. Relays that reached the trie after the claim was
/// built were recorded (`RecordUnclaimed`) when the claim was found; they are not counted a second time.
#[test]
fn a_failed_proof_loses_the_claim_and_does_not_count_the_late_relays_again() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 5);
    block(&mut e, 12);
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![k.clone()],
        outcome: TxOutcome::Broadcast,
    });
    ingest(&mut e, &k, 6);
    block(&mut e, 13);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    let late = e.handle(Event::ClaimOnChain {
        key: k.clone(),
        relays: 5,
        compute_units: 50,
    });
    assert!(
        matches!(late.commands.as_slice(), [Command::RecordUnclaimed { relays: 1, .. }]),
        "{late:?}"
    );
    // Proof required and never validated: lost when the proof window closes.
    let answers = Answers {
        claim: TxOutcome::Broadcast,
        claim_on_chain: true,
        proof: TxOutcome::Broadcast,
    };
    // Lost when said at two heights past the proof window (`SessionRecord::proof_absent_at`).
    run_blocks(&mut e, 14..=20, &answers);
    let mut commands = Vec::new();
    for h in 21..=22 {
        let asked = block(&mut e, h);
        assert!(asked.contains(&Command::LookupOnChain { key: k.clone() }), "{asked:?}");
        commands.extend(asked);
        commands.extend(
            e.handle(Event::OnChain {
                key: k.clone(),
                claim_exists: true,
                proof_validated: false,
            })
            .commands,
        );
    }
    let losses: Vec<Command> = commands
        .into_iter()
        .filter(|c| matches!(c, Command::RecordLoss { .. }))
        .collect();
    assert_eq!(
        losses,
        vec![Command::RecordLoss {
            key: k.clone(),
            reason: LossReason::ProofNotIncluded,
            relays: 5,
            compute_units: 50,
        }]
    );
    // Records written before the claim's totals were kept lose the trie's totals, as before.
    let mut old = serde_json::to_value(e.session(&k).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("claimed");
    let old: SessionRecord = serde_json::from_value(old).unwrap();
    assert_eq!(old.claimed, None);
}
