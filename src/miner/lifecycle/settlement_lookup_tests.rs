//! A session decided "no proof required" is looked up past its settlement (height 21 here) until a lookup
//! *answers*: a lookup asked that failed (no event back) is asked again, and the session is pruned as paid only
//! on the chain's word. Bounded: [`SETTLED_LOOKUP_BLOCKS`] lookups and [`SETTLEMENT_WAIT_BLOCKS`] past the
//! settlement, then the settlement is given up as unknown (reported, neither paid nor lost).

use super::requirement_tests::{decided_not_required, key};
use super::*;
use crate::chain::settlement::SettlementOutcome;

const SETTLEMENT: i64 = 21;

fn lookup(k: &SessionKey) -> Vec<Command> {
    vec![Command::LookupOnChain { key: k.clone() }]
}

fn unknown_and_pruned(k: &SessionKey) -> Vec<Command> {
    vec![
        Command::RecordSettlementUnknown {
            key: k.clone(),
            service_id: "anvil".into(),
        },
        Command::Prune { key: k.clone() },
    ]
}

/// First seen long past its settlement (a process back from a long stop): the lookups that fail (block results
/// pruned, the node unreachable) do not let it be pruned as paid; asked at every block, it is given up as unknown
/// after [`SETTLED_LOOKUP_BLOCKS`] of them. Before, it was pruned as paid at the block after the first lookup.
#[test]
fn failed_lookups_long_past_the_settlement_end_as_unknown_not_paid() {
    let k = key();
    let mut e = decided_not_required();
    let late = SETTLEMENT + SETTLEMENT_WAIT_BLOCKS + 10;
    for h in late..late + SETTLED_LOOKUP_BLOCKS {
        let step = e.handle(Event::NewBlock { height: h });
        assert_eq!(step.commands, lookup(&k), "block {h}: asked again, not pruned");
        assert_eq!(step.changed, vec![k.clone()], "the lookups asked are stored");
    }
    let record = e.session(&k).unwrap();
    assert_eq!(i64::from(record.settlement_lookups), SETTLED_LOOKUP_BLOCKS);
    assert!(!record.settlement_seen && !record.settlement_unknown);
    let step = e.handle(Event::NewBlock {
        height: late + SETTLED_LOOKUP_BLOCKS,
    });
    assert_eq!(step.commands, unknown_and_pruned(&k));
    let record = e.session(&k).unwrap();
    assert_eq!(record.state, State::Settled);
    assert!(record.settlement_unknown && record.pruned);
    assert!(
        e.handle(Event::NewBlock {
            height: late + SETTLED_LOOKUP_BLOCKS + 1
        })
        .commands
        .is_empty(),
        "reported once"
    );
}

/// The first lookup fails, the second reads the settlement: the chain expired the claim, counted lost. Before,
/// the failed lookup counted as the one lookup and the session was pruned as paid before the second.
#[test]
fn a_claim_expired_at_settlement_is_lost_when_a_later_lookup_answers() {
    let k = key();
    let mut e = decided_not_required();
    let late = SETTLEMENT + SETTLEMENT_WAIT_BLOCKS + 10;
    assert_eq!(e.handle(Event::NewBlock { height: late }).commands, lookup(&k));
    assert_eq!(e.handle(Event::NewBlock { height: late + 1 }).commands, lookup(&k));
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
}

/// A node behind that still shows the claim past the settlement did not answer either: asked again.
#[test]
fn a_claim_still_shown_past_the_settlement_is_no_answer() {
    let k = key();
    let mut e = decided_not_required();
    let late = SETTLEMENT + SETTLEMENT_WAIT_BLOCKS + 10;
    assert_eq!(e.handle(Event::NewBlock { height: late }).commands, lookup(&k));
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: true,
        proof_validated: false,
    });
    assert!(step.commands.is_empty(), "{:?}", step.commands);
    assert_eq!(e.handle(Event::NewBlock { height: late + 1 }).commands, lookup(&k));
    // The claim gone with no settlement events to read (no CometBFT client): the decision stands, pruned.
    let step = e.handle(Event::OnChain {
        key: k.clone(),
        claim_exists: false,
        proof_validated: false,
    });
    assert_eq!(step.commands, vec![Command::Prune { key: k.clone() }]);
    let record = e.session(&k).unwrap();
    assert!(record.settlement_seen && !record.settlement_unknown);
}

/// Looked up from the block after the settlement, the lookups failing: not given up before
/// [`SETTLEMENT_WAIT_BLOCKS`] past it (the lookup waits as long for a CometBFT node behind or unreachable),
/// then reported unknown. Before, it was pruned as paid [`SETTLED_LOOKUP_BLOCKS`] blocks past the settlement.
#[test]
fn failed_lookups_from_the_settlement_on_wait_for_a_node_behind_then_end_as_unknown() {
    let k = key();
    let mut e = decided_not_required();
    assert!(e.handle(Event::NewBlock { height: SETTLEMENT }).commands.is_empty());
    for h in SETTLEMENT + 1..=SETTLEMENT + SETTLEMENT_WAIT_BLOCKS {
        assert_eq!(
            e.handle(Event::NewBlock { height: h }).commands,
            lookup(&k),
            "block {h}"
        );
    }
    assert_eq!(
        e.handle(Event::NewBlock {
            height: SETTLEMENT + SETTLEMENT_WAIT_BLOCKS + 1
        })
        .commands,
        unknown_and_pruned(&k)
    );
}

/// The settlement block was read and holds no event of the claim: given up as unknown at once (asking again
/// reads the same block), not taken as paid.
#[test]
fn a_settlement_block_without_the_claim_ends_the_session_as_unknown() {
    let k = key();
    let mut e = decided_not_required();
    assert_eq!(
        e.handle(Event::NewBlock { height: SETTLEMENT + 1 }).commands,
        lookup(&k)
    );
    let step = e.handle(Event::SettlementUnknown { key: k.clone() });
    assert_eq!(step.commands, unknown_and_pruned(&k));
    assert_eq!(step.changed, vec![k.clone()]);
}

/// The lookups asked are counted in the stored record: a restarted process does not ask them all again. A record
/// that asked none keeps the format older binaries write.
#[test]
fn the_lookups_asked_survive_a_restart() {
    let k = key();
    let mut e = decided_not_required();
    let fresh = serde_json::to_string(e.session(&k).unwrap()).unwrap();
    assert!(!fresh.contains("settlement_lookups") && !fresh.contains("settlement_unknown"));
    let late = SETTLEMENT + SETTLEMENT_WAIT_BLOCKS + 10;
    for h in late..late + SETTLED_LOOKUP_BLOCKS {
        e.handle(Event::NewBlock { height: h });
    }
    let stored: SessionRecord = serde_json::from_str(&serde_json::to_string(e.session(&k).unwrap()).unwrap()).unwrap();
    let mut restarted = Engine::new(EngineConfig::default());
    restarted.handle(Event::Leadership { leader: true });
    restarted.restore(stored);
    assert_eq!(
        restarted
            .handle(Event::NewBlock {
                height: late + SETTLED_LOOKUP_BLOCKS + 5
            })
            .commands,
        unknown_and_pruned(&k)
    );
}
