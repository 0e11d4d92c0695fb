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
fn proof_validated_and_pruned(e: &mut Engine, k: &SessionKey) {
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

fn key(supplier: &str, session: &str) -> SessionKey {
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
fn at_open() -> EngineConfig {
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

fn block(engine: &mut Engine, height: i64) -> Vec<Command> {
    engine.handle(Event::NewBlock { height }).commands
}

#[test]
fn happy_path_without_proof_claims_once_and_prunes_after_settlement() {
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
fn required_proof_is_sent_once_the_proof_window_opened_and_confirmed_by_claim_status() {
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
fn ingest_totals_survive_a_lost_record_and_redelivery() {
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
fn relays_that_reach_the_trie_after_the_claim_are_recorded_unclaimed_once() {
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
fn a_claim_covering_every_relay_records_nothing_unclaimed() {
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
fn zero_relay_session_is_discarded_not_lost() {
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
fn ha_conflict_is_looked_up_and_not_counted_as_loss() {
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
fn a_claim_that_lands_late_is_not_paid_for_twice() {
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
fn submit_claim(k: &SessionKey) -> Command {
    Command::SubmitClaims {
        supplier: "s1".into(),
        keys: vec![k.clone()],
    }
}

/// The chain's answer to a lookup of `k`: no claim.
fn claim_not_there(e: &mut Engine, k: &SessionKey) -> Step {
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
fn a_predecessors_unconfirmed_send_is_repeated_at_once_by_the_new_leader() {
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
fn a_new_leaders_repeat_that_did_not_leave_is_repeated_at_the_next_block() {
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
fn unconfirmed_claim_is_resent_once_then_lost_once_after_the_window() {
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
fn missed_window_without_leadership_is_recorded_once_with_its_reason() {
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
fn claims_are_batched_per_supplier() {
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
fn records_round_trip_and_restore_continues() {
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
struct Answers {
    /// Outcome of every claim broadcast.
    claim: TxOutcome,
    /// Whether a lookup finds the claim on chain.
    claim_on_chain: bool,
    /// Outcome of every proof broadcast (a proof is always required).
    proof: TxOutcome,
}

/// Feeds blocks `heights` to `e`, answering each command it emits as `answers` says (never a validated proof);
/// returns the heights at which claims and proofs were submitted.
fn run_blocks(e: &mut Engine, heights: std::ops::RangeInclusive<i64>, answers: &Answers) -> (Vec<i64>, Vec<i64>) {
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
fn claim_window_with_every_broadcast(outcome: TxOutcome) -> (LossReason, Vec<i64>) {
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

/// A session claimed on chain (the claim found by the lookup at 13, covering 5 relays of 10 compute units).
fn claimed_on_chain(e: &mut Engine, k: &SessionKey) {
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

fn losses(commands: &[Command]) -> Vec<(LossReason, u64, u64)> {
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
    assert_eq!(block(&mut upgraded, 40), vec![Command::Prune { key: b.clone() }]);
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
