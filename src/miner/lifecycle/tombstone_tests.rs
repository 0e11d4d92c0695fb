//! Tombstones: a relay of a pruned (lost or proved) session reaching the log later starts no second record,
//! claim, proof or loss until the tombstone is forgotten.

use super::tests::*;
use super::*;

/// A session lost for good: the loss is recorded once, the session pruned, and a relay of it that reaches the
/// log afterwards (redelivered, or appended late by a lagging relayer) is not mined into a new record, which
/// would run the lifecycle again and record the same loss a second time. The tombstone is forgotten
/// `tombstone_blocks` after the settlement height; a relay after that is mined like one of a session never seen.
#[test]
fn a_relay_of_a_pruned_session_is_not_mined_again_until_its_tombstone_expires() {
    let mut e = Engine::new(EngineConfig::default());
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    block(&mut e, 16);
    e.handle(Event::Leadership { leader: true });
    // Absent at two heights past the window (`claim_absent_at`): lost at the second.
    let mut step = Step::default();
    for h in 17..=18 {
        assert_eq!(block(&mut e, h), vec![Command::LookupOnChain { key: k.clone() }]);
        step = e.handle(Event::OnChain {
            key: k.clone(),
            claim_exists: false,
            proof_validated: false,
        });
    }
    assert_eq!(losses(&step.commands), vec![(LossReason::ClaimWindowMissed, 2, 20)]);
    assert_eq!(step.commands.last(), Some(&Command::Prune { key: k.clone() }));
    let tombstone = e.tombstone(&k).unwrap();
    assert!(tombstone.pruned);
    assert_eq!(
        tombstone.forget_after,
        Some(SCHEDULE.settlement + TOMBSTONE_BLOCKS),
        "kept past the settlement height, not the prune height"
    );
    e.bury(&k);

    // The same relays again, and a third one: nothing is mined, nothing is recorded, nothing is asked.
    let step = ingest(&mut e, &k, 3);
    assert_eq!(step, Step::default());
    assert!(e.session(&k).is_none());
    let forget_after = SCHEDULE.settlement + TOMBSTONE_BLOCKS;
    for h in 19..=forget_after {
        assert!(block(&mut e, h).is_empty(), "block {h}");
        if h % 50 == 0 {
            assert_eq!(ingest(&mut e, &k, 1), Step::default());
        }
    }
    assert!(e.is_tombstoned(&k));

    // Past its bound the tombstone goes (asked again at every block until the driver did it).
    assert_eq!(
        block(&mut e, forget_after + 1),
        vec![Command::Forget { key: k.clone() }]
    );
    assert_eq!(
        block(&mut e, forget_after + 2),
        vec![Command::Forget { key: k.clone() }]
    );
    assert!(e.forget(&k).is_none(), "no live record behind a tombstone");
    assert!(!e.is_tombstoned(&k));
    assert!(block(&mut e, forget_after + 3).is_empty());
    // A relay now is one of a session without a record: mined, and lost as ever once its windows passed.
    let step = ingest(&mut e, &k, 1);
    assert_eq!(step.commands, vec![Command::LookupOnChain { key: k.clone() }]);
    assert_eq!(e.session(&k).unwrap().state, State::Claiming);
}

/// A proved session is pruned as soon as its proof is validated, while its claim is still on chain: a late
/// relay mined into a new record would look the claim up, find it, and build a proof from a one-relay trie
/// whose root is not the claim's (`claim_root_mismatch`). With the tombstone nothing happens.
#[test]
fn a_late_relay_of_a_proved_session_starts_no_second_claim_or_proof() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    claimed_on_chain(&mut e, &k);
    block(&mut e, 15);
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    block(&mut e, 16);
    proof_validated_and_pruned(&mut e, &k);
    e.bury(&k);
    assert_eq!(ingest(&mut e, &k, 4), Step::default());
    for h in 17..=30 {
        assert!(block(&mut e, h).is_empty(), "block {h}");
    }
    assert!(e.session(&k).is_none());
}

/// Tombstones are records like any other: stored, they come back as tombstones after a restart. Live records
/// keep the format older binaries write (no `forget_after`), and records older binaries wrote load: one
/// persisted as pruned before its deletes finished is pruned again.
#[test]
fn tombstones_survive_a_restart_and_records_of_older_binaries_load() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 1);
    let live = serde_json::to_string(e.session(&k).unwrap()).unwrap();
    assert!(!live.contains("forget_after"), "{live}");
    block(&mut e, 12);
    block(&mut e, 13);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    block(&mut e, 15);
    e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: false,
    });
    assert_eq!(block(&mut e, 22), vec![Command::LookupOnChain { key: k.clone() }]);
    // Without settlement events (no CometBFT client): the claim is gone, the decision stands.
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(step.commands, vec![Command::Prune { key: k.clone() }]);
    let stored = serde_json::to_vec(&e.tombstone(&k).unwrap()).unwrap();

    let mut restarted = leader_engine();
    restarted.restore(serde_json::from_slice(&stored).unwrap());
    assert!(restarted.is_tombstoned(&k));
    assert!(restarted.session(&k).is_none());
    assert_eq!(ingest(&mut restarted, &k, 2), Step::default());
    assert!(block(&mut restarted, 23).is_empty());
    assert!(block(&mut restarted, 22 + TOMBSTONE_BLOCKS).is_empty());
    assert_eq!(
        block(&mut restarted, 23 + TOMBSTONE_BLOCKS),
        vec![Command::Forget { key: k.clone() }]
    );

    // A settled record persisted as pruned by an older binary (no `forget_after`, no `claim_built`, no
    // `claimed`): the deletes may not have finished, so it is pruned again, and then leaves a tombstone.
    let older = r#"{"key":{"supplier":"s1","session_id":"b"},"service_id":"anvil","application_address":"pokt1app",
        "schedule":{"session_start":7,"session_end":10,"claim_open":12,"claim_close":16,"proof_open":16,
        "proof_close":20,"settlement":21},"state":"Settled","relays":1,"compute_units":10,"claim_sent_at":[12],
        "proof_sent_at":[],"claim_reached_node":true,"proof_reached_node":false,"proof_required":false,
        "queried_at":15,"pruned":true,"accounted":[1,10]}"#;
    let b = key("s1", "b");
    let mut upgraded = leader_engine();
    upgraded.restore(serde_json::from_str(older).unwrap());
    assert!(!upgraded.is_tombstoned(&b));
    // Its settlement never seen: looked up (far past it) until a lookup answers, then pruned.
    assert_eq!(
        block(&mut upgraded, 40),
        vec![Command::LookupOnChain { key: b.clone() }]
    );
    let answered = upgraded.handle(Event::OnChain {
        key: b.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(answered.commands, vec![Command::Prune { key: b.clone() }]);
    upgraded.bury(&b);
    assert!(upgraded.is_tombstoned(&b));
    assert_eq!(ingest(&mut upgraded, &b, 1), Step::default());
}

/// A discarded session leaves no tombstone: none of its relays was paid or counted, so a relay of it that
/// arrives later is mined as new (and claimed, or counted lost, like any other).
#[test]
fn a_discarded_session_leaves_no_tombstone() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 0);
    let commands = block(&mut e, 12);
    assert_eq!(
        commands,
        vec![
            Command::RecordDiscard { key: k.clone() },
            Command::Prune { key: k.clone() }
        ]
    );
    assert!(e.tombstone(&k).is_none());
    e.bury(&k);
    assert!(!e.is_tombstoned(&k));
    let step = ingest(&mut e, &k, 1);
    assert_eq!(
        step.commands,
        vec![Command::SubmitClaims {
            supplier: "s1".into(),
            keys: vec![k.clone()]
        }]
    );
}
