//! The claim hold while the driver's ingest has not read a supplier's relay log up to now
//! ([`Engine::set_ingest_caught_up`]).

use super::*;

use super::tests::leading_engine_with as engine_with;

fn key(supplier: &str) -> SessionKey {
    SessionKey {
        supplier: supplier.into(),
        session_id: "a".into(),
    }
}

fn claims(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::SubmitClaims { supplier, .. } => Some(supplier.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_claim_waits_for_its_suppliers_ingest_only_and_is_sent_once_caught_up() {
    let (behind, current) = (key("s1"), key("s2"));
    let mut e = engine_with(&[&behind, &current]);
    e.set_ingest_caught_up("s1", false);
    e.set_ingest_caught_up("s2", true);
    assert_eq!(claims(&e.handle(Event::NewBlock { height: 12 }).commands), ["s2"]);
    assert!(e.session(&behind).unwrap().claim_sent_at.is_empty());
    assert_eq!(e.session(&behind).unwrap().state, State::Claiming);
    e.set_ingest_caught_up("s1", true);
    assert_eq!(claims(&e.handle(Event::NewBlock { height: 13 }).commands), ["s1"]);
    assert_eq!(e.session(&behind).unwrap().claim_sent_at, [13]);
}

#[test]
fn a_held_claim_is_sent_at_the_last_height_that_leaves_a_resend() {
    let k = key("s1");
    let mut e = engine_with(&[&k]);
    e.set_ingest_caught_up("s1", false);
    assert!(claims(&e.handle(Event::NewBlock { height: 12 }).commands).is_empty());
    // claim_close − buffer = 15, and a re-send needs 2 blocks after the first send: the hold ends at 13 (a claim
    // of what was ingested beats none, and one tx that does not land must not lose the session).
    assert_eq!(claims(&e.handle(Event::NewBlock { height: 13 }).commands), ["s1"]);
    // Not on chain two blocks later: sent again, within the buffer.
    for height in [14, 15] {
        e.handle(Event::NewBlock { height });
        e.handle(Event::OnChain {
            key: k.clone(),
            claim_exists: false,
            proof_validated: false,
        });
    }
    assert_eq!(
        e.session(&k).unwrap().claim_sent_at,
        [13, 15],
        "re-sent at the last height allowed"
    );
}

#[test]
fn a_new_leadership_forgets_what_the_last_one_knew_of_the_ingest() {
    let mut e = engine_with(&[]);
    e.set_ingest_caught_up("s1", false);
    assert_eq!(e.ingest_caught_up("s1"), Some(false));
    e.handle(Event::Leadership { leader: false });
    assert_eq!(e.ingest_caught_up("s1"), None);
}
