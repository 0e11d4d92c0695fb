//! `TxOutcome::Waiting`: a re-send that found the earlier tx still in the node's mempool cache (the driver's
//! module `submit::resend`) left nothing new, so it does not use up the re-send, but the claim may be on chain,
//! so the trie stays frozen.

use super::tests::{ingest, leader_engine};
use super::*;

fn key() -> SessionKey {
    SessionKey {
        supplier: "s1".into(),
        session_id: "a".into(),
    }
}

fn claim_outcome(e: &mut Engine, outcome: TxOutcome) -> Step {
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![key()],
        outcome,
    })
}

fn not_on_chain(e: &mut Engine) -> Step {
    e.handle(Event::OnChain {
        key: key(),
        claim_exists: false,
        proof_validated: false,
    })
}

fn resend() -> Command {
    Command::SubmitClaims {
        supplier: "s1".into(),
        keys: vec![key()],
    }
}

/// Claim window [12, 16], buffer 1: sent at 12, re-sent at 14; the re-send waiting, the re-send comes again at 15,
/// the last sending height, and is made there; the trie stays frozen throughout.
#[test]
fn a_waiting_resend_is_taken_back_and_made_at_the_next_block() {
    let mut e = leader_engine();
    let k = key();
    ingest(&mut e, &k, 2);
    e.handle(Event::NewBlock { height: 12 });
    claim_outcome(&mut e, TxOutcome::Broadcast);
    e.handle(Event::NewBlock { height: 14 });
    assert_eq!(not_on_chain(&mut e).commands, vec![resend()]);
    let step = claim_outcome(&mut e, TxOutcome::Waiting("code 19".into()));
    let record = e.session(&k).unwrap();
    assert_eq!(record.claim_sent_at, [12], "the re-send is taken back");
    assert!(
        record.claim_built && record.is_claim_built(),
        "frozen: a claim may be on chain"
    );
    assert!(record.claim_reached_node);
    assert!(step.changed.contains(&k), "the taken-back re-send is stored");
    assert!(
        !step.commands.contains(&resend()),
        "not again at this height: {:?}",
        step.commands
    );
    assert!(not_on_chain(&mut e).commands.is_empty(), "not again at the same height");
    e.handle(Event::NewBlock { height: 15 });
    assert_eq!(
        not_on_chain(&mut e).commands,
        vec![resend()],
        "the re-send is still there"
    );
    claim_outcome(&mut e, TxOutcome::Broadcast);
    assert_eq!(e.session(&k).unwrap().claim_sent_at, [12, 15]);
    e.handle(Event::NewBlock { height: 16 });
    assert!(not_on_chain(&mut e).commands.is_empty(), "the re-send is used up");
}

/// A waiting outcome for a claim whose trie was not yet frozen by an outcome (only by its in-flight send) freezes
/// it, unlike `NotSent`.
#[test]
fn a_waiting_outcome_freezes_the_trie() {
    let mut e = leader_engine();
    let k = key();
    ingest(&mut e, &k, 2);
    e.handle(Event::NewBlock { height: 12 });
    claim_outcome(&mut e, TxOutcome::Waiting("code 19".into()));
    let record = e.session(&k).unwrap();
    assert!(record.claim_sent_at.is_empty());
    assert!(record.claim_built, "frozen for good");
}
