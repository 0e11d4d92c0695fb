//! When claims are sent and what a send's outcome does: a node's refusal repeats at the next block without
//! using up the re-send, only a send that may have left freezes the claimed trie, and the first send waits the
//! claim delay but never past the buffer.

use super::tests::*;
use super::*;

/// A node that refuses a claim before its mempool (Simulate or CheckTx: no fee paid, often transient, e.g. the
/// node's committed state one block behind its latest block at `claim_open`) does not end the session's sends:
/// the send is taken back and repeated at the next block without using up the one re-send, the chain is asked
/// at once whether another instance's claim is there, and a final loss counts as `claim_not_included`.
#[test]
fn a_refused_claim_is_repeated_at_the_next_block_and_keeps_its_re_send() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let claim = Command::SubmitClaims {
        supplier: "s1".into(),
        keys: vec![k.clone()],
    };
    let outcome = |e: &mut Engine, outcome: TxOutcome| {
        e.handle(Event::TxOutcome {
            kind: TxKind::Claim,
            keys: vec![k.clone()],
            outcome,
        })
    };
    assert_eq!(block(&mut e, 12), vec![claim.clone()]);
    let refused = outcome(&mut e, TxOutcome::Refused("claim outside the claim window".into()));
    assert_eq!(
        refused.commands,
        vec![Command::LookupOnChain { key: k.clone() }],
        "another instance's claim may be there"
    );
    let record = e.session(&k).unwrap();
    assert!(record.claim_sent_at.is_empty(), "taken back");
    assert!(record.claim_reached_node, "a node answered");
    let answer = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert!(answer.commands.is_empty(), "not repeated in the same block: {answer:?}");

    assert_eq!(block(&mut e, 13), vec![claim.clone()], "repeated at the next block");
    outcome(&mut e, TxOutcome::Broadcast);
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![13]);
    // Not on chain two blocks later: the one re-send is still there.
    assert_eq!(block(&mut e, 14), vec![Command::LookupOnChain { key: k.clone() }]);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(block(&mut e, 15), vec![Command::LookupOnChain { key: k.clone() }]);
    let resend = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(resend.commands, vec![claim]);
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![13, 15]);

    // Refused at every block: tried at each one the window allows, lost as not included.
    assert_eq!(
        claim_window_with_every_broadcast(TxOutcome::Refused("mempool is full".into())),
        (LossReason::ClaimNotIncluded, vec![12, 13, 14, 15])
    );
    // Refused because another instance's claim is already there: found by the lookup, no loss.
    let mut e = leader_engine();
    ingest(&mut e, &k, 2);
    let answers = Answers {
        claim: TxOutcome::Refused("claim already exists".into()),
        claim_on_chain: true,
        proof: TxOutcome::Broadcast,
    };
    let (claims, _) = run_blocks(&mut e, 12..=13, &answers);
    assert_eq!(claims, vec![12]);
    assert_eq!(e.session(&k).unwrap().state, State::Claimed);
}

/// The claimed trie freezes when a claim may be on chain, not when one is merely decided: a send that
/// certainly never left (`NotSent`: deposed before it left, deadline passed, message not buildable) thaws it
/// again, so a grace-period relay ingested before the repeat is carried by the repeated claim instead of being
/// counted lost. Every other outcome (a broadcast, a transport failure that may have reached the node, a
/// refusal, a conflict) freezes it for good, also after later `NotSent` repeats.
#[test]
fn only_a_claim_send_that_may_have_left_freezes_the_trie() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let outcome = |e: &mut Engine, outcome: TxOutcome| {
        e.handle(Event::TxOutcome {
            kind: TxKind::Claim,
            keys: vec![k.clone()],
            outcome,
        })
    };
    assert!(!e.session(&k).unwrap().is_claim_built(), "active: not frozen");
    block(&mut e, 12);
    assert!(
        e.session(&k).unwrap().is_claim_built(),
        "frozen while the send is in flight (its claim_sent_at entry)"
    );
    let step = outcome(&mut e, TxOutcome::NotSent("this miner no longer leads".into()));
    let record = e.session(&k).unwrap();
    assert!(record.claim_sent_at.is_empty() && !record.claim_built);
    assert!(!record.is_claim_built(), "a send that never left thaws the trie");
    assert!(step.changed.contains(&k), "the taken-back send is stored");
    // The grace relay reaches the trie before the repeat: the repeated claim covers it.
    ingest(&mut e, &k, 3);
    block(&mut e, 13);
    outcome(&mut e, TxOutcome::Retryable("transport: deadline exceeded".into()));
    let record = e.session(&k).unwrap();
    assert!(record.claim_sent_at.is_empty(), "an ambiguous send is taken back too");
    assert!(record.claim_built, "but the claim may be on chain: frozen for good");
    block(&mut e, 14);
    let step = outcome(&mut e, TxOutcome::NotSent("the window's deadline passed".into()));
    assert!(
        e.session(&k).unwrap().is_claim_built(),
        "a later send that never left does not thaw it"
    );
    assert!(!step.changed.is_empty());
    for other in [
        TxOutcome::Broadcast,
        TxOutcome::Refused("mempool is full".into()),
        TxOutcome::HaConflict("claim exists".into()),
        TxOutcome::Rejected("no key".into()),
    ] {
        let mut e = leader_engine();
        ingest(&mut e, &k, 1);
        block(&mut e, 12);
        outcome(&mut e, other.clone());
        assert!(e.session(&k).unwrap().claim_built, "{other:?} freezes the trie");
    }
}

/// The first claim send waits `claim_delay_blocks` after `claim_open` so relays accepted just before it (a
/// relayer a block behind, a slow backend) are in the claimed trie; a window too short for the delay sends at
/// the last height the buffer allows.
#[test]
fn a_claims_first_send_waits_the_claim_delay_but_never_past_the_buffer() {
    let submits = |commands: &[Command]| commands.iter().any(|c| matches!(c, Command::SubmitClaims { .. }));
    let mut e = Engine::new(EngineConfig::default());
    assert_eq!(EngineConfig::default().claim_delay_blocks, 1);
    e.handle(Event::Leadership { leader: true });
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let commands = block(&mut e, 12);
    assert!(!submits(&commands), "not at claim_open: {commands:?}");
    assert_eq!(e.session(&k).unwrap().state, State::Claiming);
    assert!(!e.session(&k).unwrap().is_claim_built(), "the trie still takes relays");
    ingest(&mut e, &k, 3);
    assert_eq!(
        e.session(&k).unwrap().relays,
        3,
        "a grace relay reached the trie before the claim"
    );
    let commands = block(&mut e, 13);
    assert!(submits(&commands), "one block later: {commands:?}");
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![13]);

    // A delay longer than the window: sent at claim_close − buffer (15), not never.
    let mut e = Engine::new(EngineConfig {
        claim_delay_blocks: 10,
        ..EngineConfig::default()
    });
    e.handle(Event::Leadership { leader: true });
    ingest(&mut e, &k, 2);
    for h in 12..15 {
        assert!(!submits(&block(&mut e, h)), "too early at {h}");
    }
    assert!(submits(&block(&mut e, 15)));
}
