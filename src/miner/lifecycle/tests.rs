//! Tests of the pure lifecycle engine: events in, commands out, no clock or IO.

use super::*;

// Default shared params, session 1..10: claim [12,16], proof [16,20], seed 15 (spec §3 example).
pub(super) const SCHEDULE: Schedule = Schedule {
    session_start: 7,
    session_end: 10,
    claim_open: 12,
    claim_close: 16,
    proof_open: 16,
    proof_close: 20,
    settlement: 21,
};

/// A leader engine (no claim delay) holding sessions `keys`, each 5 relays and 50 compute units of [`SCHEDULE`].
pub(super) fn leading_engine_with(keys: &[&SessionKey]) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        claim_delay_blocks: 0,
        ..EngineConfig::default()
    });
    engine.handle(Event::Leadership { leader: true });
    for k in keys {
        engine.handle(Event::RelaysIngested {
            key: (*k).clone(),
            service_id: "anvil".into(),
            application_address: "pokt1app".into(),
            schedule: SCHEDULE,
            relays: 5,
            compute_units: 50,
        });
    }
    engine
}

/// A leader engine (no claim delay) whose session `k` (5 relays, 50 compute units, [`SCHEDULE`]) had its claim
/// sent at block 12 and is looked up at 13 (the commands of block 13 are checked).
pub(super) fn claim_sent_at_12(k: &SessionKey) -> Engine {
    let mut e = Engine::new(EngineConfig {
        claim_delay_blocks: 0,
        ..EngineConfig::default()
    });
    e.handle(Event::Leadership { leader: true });
    e.handle(Event::RelaysIngested {
        key: k.clone(),
        service_id: "anvil".into(),
        application_address: "pokt1app".into(),
        schedule: SCHEDULE,
        relays: 5,
        compute_units: 50,
    });
    e.handle(Event::NewBlock { height: 12 });
    let step = e.handle(Event::NewBlock { height: 13 });
    assert_eq!(step.commands, vec![Command::LookupOnChain { key: k.clone() }]);
    e
}

/// The chain answers that `k`'s proof is validated: the session is proved, reported once and pruned.
pub(super) fn proof_validated_and_pruned(e: &mut Engine, k: &SessionKey) {
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: true,
    });
    assert_eq!(
        step.commands,
        vec![
            Command::RecordProofValidated {
                key: k.clone(),
                service_id: "anvil".into()
            },
            Command::Prune { key: k.clone() }
        ]
    );
}

pub(super) fn key(supplier: &str, session: &str) -> SessionKey {
    SessionKey {
        supplier: supplier.into(),
        session_id: session.into(),
    }
}

pub(super) fn ingest(engine: &mut Engine, k: &SessionKey, relays: u64) -> Step {
    engine.handle(Event::RelaysIngested {
        key: k.clone(),
        service_id: "anvil".into(),
        application_address: "pokt1app".into(),
        schedule: SCHEDULE,
        relays,
        compute_units: relays * 10,
    })
}

/// Claims at `claim_open`: the heights of these tests predate the claim delay, which
/// `a_claims_first_send_waits_the_claim_delay_but_never_past_the_buffer` covers.
pub(super) fn at_open() -> EngineConfig {
    EngineConfig {
        claim_delay_blocks: 0,
        ..EngineConfig::default()
    }
}

pub(super) fn leader_engine() -> Engine {
    let mut engine = Engine::new(at_open());
    engine.handle(Event::Leadership { leader: true });
    engine
}

pub(super) fn block(engine: &mut Engine, height: i64) -> Vec<Command> {
    engine.handle(Event::NewBlock { height }).commands
}

#[test]
pub(super) fn happy_path_without_proof_claims_once_and_prunes_after_settlement() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 5);
    assert!(block(&mut e, 11).is_empty(), "no claim before the window opens");
    assert_eq!(
        block(&mut e, 12),
        vec![Command::SubmitClaims {
            supplier: "s1".into(),
            keys: vec![k.clone()]
        }]
    );
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![k.clone()],
        outcome: TxOutcome::Broadcast,
    });
    assert_eq!(block(&mut e, 13), vec![Command::LookupOnChain { key: k.clone() }]);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    assert_eq!(e.session(&k).unwrap().state, State::Claimed);
    assert!(block(&mut e, 14).is_empty(), "seed block 15 does not exist yet");
    assert_eq!(
        block(&mut e, 15),
        vec![Command::CheckProofRequirement { key: k.clone() }]
    );
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: false,
    });
    assert_eq!(e.session(&k).unwrap().state, State::Settled);
    assert!(step.commands.is_empty());
    assert!(block(&mut e, 21).is_empty());
    // The chain decides again at settlement: read what it did before pruning.
    assert_eq!(block(&mut e, 22), vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::Settled {
        key: k.clone(),
        outcome: crate::chain::settlement::SettlementOutcome::Settled { proof_required: false },
    });
    assert_eq!(step.commands, vec![Command::Prune { key: k.clone() }]);
    assert!(e.session(&k).is_some_and(|r| r.pruned));
    e.bury(&k);
    assert!(e.session(&k).is_none());
    assert!(e.is_tombstoned(&k));
    assert!(block(&mut e, 23).is_empty(), "a pruned session is not pruned again");
}

/// The requirement is known at the seed block (`proof_open − 1`), but the proof is sent only once block
/// `proof_open` is committed: a node simulates and checks a tx at its last committed height, where poktroll
/// refuses a proof below the window's open (as poktroll's own relayer, which waits for block `proof_open`).
#[test]
pub(super) fn required_proof_is_sent_once_the_proof_window_opened_and_confirmed_by_claim_status() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 1);
    block(&mut e, 12);
    block(&mut e, 13);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    assert_eq!(
        block(&mut e, 15),
        vec![Command::CheckProofRequirement { key: k.clone() }]
    );
    let step = e.handle(Event::ProofRequirement {
        key: k.clone(),
        required: true,
    });
    assert_eq!(
        step.commands,
        vec![Command::RecordProofRequired { key: k.clone() }],
        "no proof sent at the seed block"
    );
    assert_eq!(
        block(&mut e, 16),
        vec![Command::SubmitProofs {
            supplier: "s1".into(),
            keys: vec![k.clone()]
        }]
    );
    assert_eq!(block(&mut e, 17), vec![Command::LookupOnChain { key: k.clone() }]);
    proof_validated_and_pruned(&mut e, &k);
    assert_eq!(e.session(&k).unwrap().state, State::Proved);
}

#[test]
pub(super) fn ingest_totals_survive_a_lost_record_and_redelivery() {
    // The first process committed a trie of 2 relays and died before persisting the record; the restarted
    // one rebuilds the record from the redelivered relays, which the trie already holds.
    let k = key("pokt1sup", "s1");
    let mut e = leader_engine();
    ingest(&mut e, &k, 2);
    assert_eq!(e.session(&k).unwrap().relays, 2);
    // Redelivering the same relays again reports the same totals: counted once, not twice.
    ingest(&mut e, &k, 2);
    assert_eq!(e.session(&k).unwrap().relays, 2);
    assert_eq!(e.session(&k).unwrap().compute_units, 20);
    ingest(&mut e, &k, 3);
    assert_eq!(e.session(&k).unwrap().relays, 3);
    // Claimed, not discarded, when the window opens.
    let commands = block(&mut e, SCHEDULE.claim_open);
    assert!(
        !commands.iter().any(|c| matches!(c, Command::RecordDiscard { .. })),
        "{commands:?}"
    );
}

#[test]
pub(super) fn relays_that_reach_the_trie_after_the_claim_are_recorded_unclaimed_once() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 1);
    assert!(matches!(block(&mut e, 12)[..], [Command::SubmitClaims { .. }]));
    // A relay validated in the grace period lands after the root was built: nothing to say before the claim
    // on chain shows what it covers.
    assert!(ingest(&mut e, &k, 2).commands.is_empty());
    assert_eq!(block(&mut e, 13), vec![Command::LookupOnChain { key: k.clone() }]);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    let step = e.handle(Event::ClaimOnChain {
        key: k.clone(),
        relays: 1,
        compute_units: 10,
    });
    assert_eq!(
        step.commands,
        vec![Command::RecordUnclaimed {
            key: k.clone(),
            relays: 1,
            compute_units: 20,
            accounted_compute_units: 10,
        }]
    );
    assert_eq!(step.changed, vec![k.clone()], "the accounting is persisted");
    // Told again by a later lookup, or the same relays redelivered: recorded once.
    let again = e.handle(Event::ClaimOnChain {
        key: k.clone(),
        relays: 1,
        compute_units: 10,
    });
    assert!(again.commands.is_empty(), "{again:?}");
    assert!(ingest(&mut e, &k, 2).commands.is_empty());
    // One more after the confirmation is recorded when it is ingested.
    assert_eq!(
        ingest(&mut e, &k, 3).commands,
        vec![Command::RecordUnclaimed {
            key: k.clone(),
            relays: 1,
            compute_units: 30,
            accounted_compute_units: 20,
        }]
    );
    // The accounting survives a restart (persisted with the record); records written before it existed load.
    let record = e.session(&k).unwrap().clone();
    let back: SessionRecord = serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(back.accounted, Some((3, 30)));
    let mut old = serde_json::to_value(&record).unwrap();
    old.as_object_mut().unwrap().remove("accounted");
    let old: SessionRecord = serde_json::from_value(old).unwrap();
    assert_eq!(old.accounted, None);
}

#[test]
pub(super) fn a_claim_covering_every_relay_records_nothing_unclaimed() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    block(&mut e, 12);
    block(&mut e, 13);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    let step = e.handle(Event::ClaimOnChain {
        key: k.clone(),
        relays: 2,
        compute_units: 20,
    });
    assert!(step.commands.is_empty(), "{step:?}");
    assert_eq!(e.session(&k).unwrap().accounted, Some((2, 20)));
}

#[test]
pub(super) fn zero_relay_session_is_discarded_not_lost() {
    let mut e = leader_engine();
    let k = key("s1", "empty");
    ingest(&mut e, &k, 0);
    let commands = block(&mut e, 12);
    assert_eq!(
        commands,
        vec![
            Command::RecordDiscard { key: k.clone() },
            Command::Prune { key: k.clone() }
        ]
    );
    assert_eq!(e.session(&k).unwrap().state, State::Discarded);
}

#[test]
pub(super) fn ha_conflict_is_looked_up_and_not_counted_as_loss() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 3);
    block(&mut e, 12);
    let step = e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![k.clone()],
        outcome: TxOutcome::HaConflict("account sequence mismatch".into()),
    });
    assert_eq!(step.commands, vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    assert!(step.commands.iter().all(|c| !matches!(c, Command::RecordLoss { .. })));
    assert_eq!(e.session(&k).unwrap().state, State::Claimed);
}

#[test]
pub(super) fn a_claim_that_lands_late_is_not_paid_for_twice() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    assert!(matches!(block(&mut e, 12)[..], [Command::SubmitClaims { .. }]));
    // Included a block late: not there at 13, there at 14.
    assert_eq!(block(&mut e, 13), vec![Command::LookupOnChain { key: k.clone() }]);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(block(&mut e, 14), vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    assert!(step.commands.iter().all(|c| !matches!(c, Command::SubmitClaims { .. })));
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![12]);
    assert_eq!(e.session(&k).unwrap().state, State::Claimed);
}

/// The claim send of `k` (supplier "s1") the engine commands.
pub(super) fn submit_claim(k: &SessionKey) -> Command {
    Command::SubmitClaims {
        supplier: "s1".into(),
        keys: vec![k.clone()],
    }
}

/// The chain's answer to a lookup of `k`: no claim.
pub(super) fn claim_not_there(e: &mut Engine, k: &SessionKey) -> Step {
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    })
}

/// Seen in the raft chaos test: the leader recorded its claim at 14 (window closes at 16, buffer 1) and was
/// killed before the tx reached the chain; the new leader's lookup at 15 said "not there", but a re-send had
/// to wait until 16, past the buffer, so the session was lost as `claim_not_included`.
#[test]
pub(super) fn a_predecessors_unconfirmed_send_is_repeated_at_once_by_the_new_leader() {
    let k = key("s1", "a");
    let mut old = leader_engine();
    ingest(&mut old, &k, 2);
    for h in 12..14 {
        block(&mut old, h);
    }
    // The old leader's miner ran late: its first send is at 14.
    let mut late = old.session(&k).unwrap().clone();
    late.claim_sent_at = vec![14];
    let claim = submit_claim(&k);
    let not_there = |e: &mut Engine| claim_not_there(e, &k);
    // A new leader restores the record: at 15 it asks the chain and re-sends at once.
    let mut new = Engine::new(at_open());
    new.restore(late.clone());
    new.handle(Event::Leadership { leader: true });
    assert_eq!(block(&mut new, 15), vec![Command::LookupOnChain { key: k.clone() }]);
    assert_eq!(not_there(&mut new).commands, vec![claim.clone()]);
    assert_eq!(new.session(&k).unwrap().claim_sent_at, vec![14, 15]);
    // Its own send is not repeated a block later (it may just land late).
    assert!(
        block(&mut new, 16)
            .iter()
            .all(|c| !matches!(c, Command::SubmitClaims { .. }))
    );
    assert!(not_there(&mut new).commands.is_empty());
    // The leader that sent at 14 itself keeps the two-block rule: no re-send at 15.
    let mut same = Engine::new(at_open());
    same.handle(Event::Leadership { leader: true });
    ingest(&mut same, &k, 2);
    for h in 12..14 {
        block(&mut same, h);
    }
    assert_eq!(same.session(&k).unwrap().claim_sent_at, vec![12]);
    // Leadership lost and regained: its own earlier send now counts as a predecessor's.
    same.handle(Event::Leadership { leader: false });
    same.handle(Event::Leadership { leader: true });
    assert_eq!(block(&mut same, 14), vec![Command::LookupOnChain { key: k.clone() }]);
    assert_eq!(not_there(&mut same).commands, vec![claim]);
}

/// A new leader's repeat of a predecessor's send that did not leave (no answer, not sent, refused before a
/// mempool) is taken back, so it is not its own send: still inherited, the session is sent again at the next
/// block even though the predecessor used up the re-sends. Counted as its own, the session waited for a re-send
/// its budget no longer allowed, and the claim (or the proof: a slash) was lost at the window's close.
#[test]
pub(super) fn a_new_leaders_repeat_that_did_not_leave_is_repeated_at_the_next_block() {
    let k = key("s1", "a");
    // Sends allowed up to the window's close (16), so the test has a block after the failed repeat.
    let config = EngineConfig {
        submission_buffer_blocks: 0,
        ..at_open()
    };
    let mut old = Engine::new(config);
    old.handle(Event::Leadership { leader: true });
    ingest(&mut old, &k, 2);
    block(&mut old, 12);
    // The predecessor sent at 12 and again at 14 (its one re-send), then died before the tx left.
    let mut spent = old.session(&k).unwrap().clone();
    spent.claim_sent_at = vec![12, 14];
    let claim = submit_claim(&k);
    let not_there = |e: &mut Engine| claim_not_there(e, &k).commands;
    for outcome in [
        TxOutcome::NotSent("not leader".into()),
        TxOutcome::Retryable("no answer".into()),
        TxOutcome::Refused("CheckTx code 32".into()),
    ] {
        let mut new = Engine::new(config);
        new.restore(spent.clone());
        new.handle(Event::Leadership { leader: true });
        assert_eq!(block(&mut new, 15), vec![Command::LookupOnChain { key: k.clone() }]);
        assert_eq!(not_there(&mut new), vec![claim.clone()]);
        new.handle(Event::TxOutcome {
            kind: TxKind::Claim,
            keys: vec![k.clone()],
            outcome: outcome.clone(),
        });
        assert_eq!(
            new.session(&k).unwrap().claim_sent_at,
            vec![12, 14],
            "{outcome:?}: taken back"
        );
        assert!(block(&mut new, 16).contains(&Command::LookupOnChain { key: k.clone() }));
        assert_eq!(
            not_there(&mut new),
            vec![claim.clone()],
            "{outcome:?}: sent again at 16"
        );
        // Once it left, the new leader's send is its own: not repeated a block later.
        new.handle(Event::TxOutcome {
            kind: TxKind::Claim,
            keys: vec![k.clone()],
            outcome: TxOutcome::Broadcast,
        });
        assert_eq!(new.session(&k).unwrap().claim_sent_at, vec![12, 14, 16]);
    }
}

#[test]
pub(super) fn unconfirmed_claim_is_resent_once_then_lost_once_after_the_window() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let claim = Command::SubmitClaims {
        supplier: "s1".into(),
        keys: vec![k.clone()],
    };
    assert_eq!(block(&mut e, 12), vec![claim.clone()]);
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![k.clone()],
        outcome: TxOutcome::Broadcast,
    });
    assert_eq!(block(&mut e, 13), vec![Command::LookupOnChain { key: k.clone() }]);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    // At 14 the engine asks the chain first; only its "not there" answer triggers the re-send.
    assert_eq!(block(&mut e, 14), vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(step.commands, vec![claim], "re-sent once inside the window");
    let mut losses = 0;
    for h in 15..=20 {
        for c in block(&mut e, h) {
            if let Command::LookupOnChain { key } = c {
                let step = e.handle(Event::OnChain {
                    key,
                    claim_exists: false,
                    proof_validated: false,
                });
                losses += step
                    .commands
                    .iter()
                    .filter(|c| matches!(c, Command::RecordLoss { .. }))
                    .count();
                assert!(step.commands.iter().all(|c| !matches!(c, Command::SubmitClaims { .. })));
            }
        }
    }
    assert_eq!(losses, 1);
    assert_eq!(
        e.session(&k).unwrap().state,
        State::Expired(LossReason::ClaimNotIncluded)
    );
    assert_eq!(e.session(&k).unwrap().claim_sent_at, vec![12, 14]);
}

#[test]
pub(super) fn missed_window_without_leadership_is_recorded_once_with_its_reason() {
    let mut e = Engine::new(at_open());
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    for h in 12..=16 {
        assert!(
            block(&mut e, h)
                .iter()
                .all(|c| !matches!(c, Command::SubmitClaims { .. })),
            "followers never submit"
        );
    }
    e.handle(Event::Leadership { leader: true });
    let commands = block(&mut e, 17);
    assert_eq!(commands, vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert!(step.commands.is_empty(), "absent once past the window: asked again");
    assert_eq!(block(&mut e, 18), vec![Command::LookupOnChain { key: k.clone() }]);
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(
        step.commands[0],
        Command::RecordLoss {
            key: k.clone(),
            reason: LossReason::ClaimWindowMissed,
            relays: 2,
            compute_units: 20
        }
    );
    assert!(
        block(&mut e, 19)
            .iter()
            .all(|c| !matches!(c, Command::RecordLoss { .. }))
    );
}

#[test]
pub(super) fn claims_are_batched_per_supplier() {
    let mut e = leader_engine();
    for (s, id) in [("s1", "a"), ("s1", "b"), ("s2", "c")] {
        ingest(&mut e, &key(s, id), 1);
    }
    let commands = block(&mut e, 12);
    assert_eq!(
        commands,
        vec![
            Command::SubmitClaims {
                supplier: "s1".into(),
                keys: vec![key("s1", "a"), key("s1", "b")]
            },
            Command::SubmitClaims {
                supplier: "s2".into(),
                keys: vec![key("s2", "c")]
            },
        ]
    );
}

#[test]
pub(super) fn records_round_trip_and_restore_continues() {
    let mut e = leader_engine();
    let k = key("s1", "a");
    let step = ingest(&mut e, &k, 4);
    assert_eq!(step.changed, vec![k.clone()]);
    block(&mut e, 12);
    let json = serde_json::to_vec(e.session(&k).unwrap()).unwrap();
    let record: SessionRecord = serde_json::from_slice(&json).unwrap();
    let mut restarted = leader_engine();
    restarted.restore(record);
    assert_eq!(restarted.session(&k).unwrap().state, State::Claiming);
    assert_eq!(
        block(&mut restarted, 13),
        vec![Command::LookupOnChain { key: k }],
        "no duplicate claim after restart"
    );
}

/// How the node and chain answer the engine's commands in [`run_blocks`].
pub(super) struct Answers {
    /// Outcome of every claim broadcast.
    pub(super) claim: TxOutcome,
    /// Whether a lookup finds the claim on chain.
    pub(super) claim_on_chain: bool,
    /// Outcome of every proof broadcast (a proof is always required).
    pub(super) proof: TxOutcome,
}

/// Feeds blocks `heights` to `e`, answering each command it emits as `answers` says (never a validated proof);
/// returns the heights at which claims and proofs were submitted.
pub(super) fn run_blocks(
    e: &mut Engine,
    heights: std::ops::RangeInclusive<i64>,
    answers: &Answers,
) -> (Vec<i64>, Vec<i64>) {
    let (mut claims, mut proofs) = (Vec::new(), Vec::new());
    for h in heights {
        let mut queue = block(e, h);
        let mut handled = 0;
        while !queue.is_empty() {
            handled += 1;
            assert!(
                handled < 100,
                "the engine keeps emitting commands at height {h}: {queue:?}"
            );
            let c = queue.remove(0);
            let event = match c {
                Command::SubmitClaims { keys, .. } => {
                    claims.push(h);
                    Event::TxOutcome {
                        kind: TxKind::Claim,
                        keys,
                        outcome: answers.claim.clone(),
                    }
                }
                Command::SubmitProofs { keys, .. } => {
                    proofs.push(h);
                    Event::TxOutcome {
                        kind: TxKind::Proof,
                        keys,
                        outcome: answers.proof.clone(),
                    }
                }
                Command::LookupOnChain { key } => Event::OnChain {
                    key,
                    claim_exists: answers.claim_on_chain,
                    proof_validated: false,
                },
                Command::CheckProofRequirement { key } => Event::ProofRequirement { key, required: true },
                _ => continue,
            };
            queue.extend(e.handle(event).commands);
        }
    }
    (claims, proofs)
}

/// Runs a leader engine through a claim window (default params: claim window [12, 16], send buffer 1) in which
/// every claim broadcast gets `outcome` and the chain never holds the claim; returns the reason the session
/// expired with and the heights at which claims were submitted.
pub(super) fn claim_window_with_every_broadcast(outcome: TxOutcome) -> (LossReason, Vec<i64>) {
    let mut e = leader_engine();
    let k = key("s1", "a");
    ingest(&mut e, &k, 2);
    let answers = Answers {
        claim: outcome,
        claim_on_chain: false,
        proof: TxOutcome::Broadcast,
    };
    let (claims, _) = run_blocks(&mut e, 12..=20, &answers);
    let record = e.session(&k).unwrap();
    match record.state {
        State::Expired(reason) => (reason, claims),
        other => panic!("not expired: {other:?}"),
    }
}

/// A session claimed on chain (the claim found by the lookup at 13, covering 5 relays of 10 compute units).
pub(super) fn claimed_on_chain(e: &mut Engine, k: &SessionKey) {
    ingest(e, k, 5);
    block(e, 12);
    e.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![k.clone()],
        outcome: TxOutcome::Broadcast,
    });
    block(e, 13);
    e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    e.handle(Event::ClaimOnChain {
        key: k.clone(),
        relays: 5,
        compute_units: 50,
    });
    assert_eq!(e.session(k).unwrap().state, State::Claimed);
}

pub(super) fn losses(commands: &[Command]) -> Vec<(LossReason, u64, u64)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::RecordLoss {
                reason,
                relays,
                compute_units,
                ..
            } => Some((*reason, *relays, *compute_units)),
            _ => None,
        })
        .collect()
}
