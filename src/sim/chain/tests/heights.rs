//! Values that change over heights (poktroll v0.1.35): the at-height queries answer from the simulator's history,
//! claims and proofs are judged with the session-start compute units and difficulty, the proof requirement with
//! the live proof params (again at settlement), and a ring member without an on-chain key fails the ring.

use super::*;

/// Compute units per relay, difficulty and shared params changed by the knobs: live in the next block, in the
/// at-height answers from the next session start (the grid anchored there), over gRPC.
#[tokio::test]
async fn at_height_queries_answer_from_the_history() {
    let f = fixture(0.0).await;
    let h = f.chain.height();
    let w = windows(&f);
    assert!(h < w.end, "the fixture stands inside its session");
    let mut hard = [0xffu8; 32];
    hard[0] = 0x0f;
    f.chain.set_compute_units_per_relay("anvil", 25).unwrap();
    f.chain.set_relay_mining_difficulty("anvil", hard).unwrap();
    let mut shared = f.chain.state().shared.clone();
    shared.num_blocks_per_session = 7;
    f.chain.set_shared_params(shared).unwrap();
    assert!(f.chain.set_compute_units_per_relay("nope", 1).is_err());
    assert!(f.chain.set_compute_units_per_relay("anvil", 0).is_err());
    // Nothing before the next block; a height the node has not reached is not answered (`Behind`).
    assert_eq!(f.client.compute_units_at("anvil", h).await.unwrap(), 10);
    assert!(matches!(
        f.client.compute_units_at("anvil", h + 100).await,
        Err(crate::chain::query::ChainError::Behind { .. })
    ));
    f.chain.produce_block();
    let next = w.end + 1;
    {
        let s = f.chain.state();
        assert_eq!(s.services["anvil"].compute_units_per_relay, 25, "live");
        assert_eq!(s.targets["anvil"], hard.to_vec(), "live");
        assert_eq!(
            s.shared.num_blocks_per_session, 10,
            "live until the next session starts"
        );
    }
    // A node answers a session start's entry once it committed the block before it.
    while f.chain.height() < next - 1 {
        f.chain.produce_block();
    }
    for (height, cupr, target) in [(w.start, 10, [0xff; 32]), (w.end, 10, [0xff; 32]), (next, 25, hard)] {
        assert_eq!(
            f.client.compute_units_at("anvil", height).await.unwrap(),
            cupr,
            "at {height}"
        );
        assert_eq!(
            f.client.difficulty_target_at("anvil", height).await.unwrap(),
            target.to_vec(),
            "at {height}"
        );
    }
    // The other service is untouched.
    assert_eq!(f.client.compute_units_at("other", next).await.unwrap(), 5);
    assert_eq!(
        f.client.shared_params_at(w.end).await.unwrap().num_blocks_per_session,
        10
    );
    let anchored = f.client.shared_params_at(next).await.unwrap();
    assert_eq!(
        (
            anchored.num_blocks_per_session,
            anchored.session_grid_anchor_height,
            anchored.session_number_at_anchor
        ),
        (7, next, 2)
    );
    advance_to(&f.chain, next);
    assert_eq!(
        f.chain.state().shared.num_blocks_per_session,
        7,
        "promoted at its height"
    );
    // Sessions from there on are 7 blocks long.
    let (_, app, _) = actor(&key_hex("app")).unwrap();
    let session = f.client.session(&app, "anvil", next).await.unwrap();
    let header = session.header.unwrap();
    assert_eq!(
        (header.session_start_block_height, header.session_end_block_height),
        (next, next + 6)
    );
}

/// A claim is checked against the compute units per relay of its session start: a change in the middle of the
/// session does not refuse a claim weighted with the old value, and refuses one weighted with the new.
#[tokio::test]
async fn a_claim_is_checked_with_the_session_start_compute_units() {
    let f = fixture(0.0).await;
    f.chain.set_compute_units_per_relay("anvil", 20).unwrap();
    f.chain.produce_block();
    assert!(f.chain.height() <= f.header.session_end_block_height);
    let w = windows(&f);
    advance_to(&f.chain, w.claim_open - 1);
    let mut live = trie_with(&f, 3, 20);
    let rejected = rejection_in_block(&f, claim_msg(&f, &f.header, &live.root()), &f.supplier).await;
    let reason = rejected.unwrap();
    assert!(reason.contains("compute units per relay 10"), "{reason}");
    let mut start = trie_with(&f, 3, 10);
    let rejected = rejection_in_block(&f, claim_msg(&f, &f.header, &start.root()), &f.supplier).await;
    assert_eq!(rejected, None);
    advance_to(&f.chain, w.settlement);
    let expected = crate::protocol::lottery::claimed_upokt(30, &[0xff; 32], 42_000_000, 1_000_000).unwrap();
    let expected = num_traits::ToPrimitive::to_u128(&expected).unwrap();
    assert_eq!(f.chain.settlements()[0].2, Settlement::Settled(expected));
}

/// A proof's relay must meet the difficulty target of the session start: a harder target set in the middle of
/// the session (live at once) does not make the proof of a relay mined against the old one fail.
#[tokio::test]
async fn a_proof_is_checked_against_the_session_start_target() {
    let f = fixture(1.0).await;
    let mut trie = trie_with(&f, 3, 10);
    f.chain.set_relay_mining_difficulty("anvil", [0; 32]).unwrap();
    f.chain.produce_block();
    assert_eq!(f.chain.state().targets["anvil"], vec![0; 32]);
    claim_and_reach_seed(&f, &mut trie).await;
    let proof = trie.prove_closest(&seed_path(&f)).unwrap();
    assert_eq!(
        rejection_in_block(&f, closest_proof_msg(&f, &proof), &f.supplier).await,
        None
    );
    let records = f.chain.records();
    assert!(records.iter().all(|r| r.rejected.is_none()), "{records:?}");
    advance_to(&f.chain, windows(&f).settlement);
    assert!(matches!(f.chain.settlements()[0].2, Settlement::Settled(v) if v > 0));
}

/// The proof requirement is decided with the live proof params, at the proof and again at settlement (the
/// chain keeps no history of them): a claim whose (invalid) proof was required when it was submitted settles
/// when the params no longer require one at settlement, and a claim that needed none needs one once the
/// threshold drops below its worth.
#[tokio::test]
async fn the_proof_requirement_is_decided_again_at_settlement_with_the_live_params() {
    let f = fixture(1.0).await;
    let mut trie = trie_with(&f, 2, 10);
    claim_and_reach_seed(&f, &mut trie).await;
    let claim = on_chain_claim(&f).await;
    assert_eq!(validate::proof_required(&f.chain.state(), &claim), Some(true));
    let mut proof = trie.prove_closest(&seed_path(&f)).unwrap();
    let last = proof.side_nodes.len() - 1;
    proof.side_nodes[last][0] ^= 1;
    let rejected = rejection_in_block(&f, closest_proof_msg(&f, &proof), &f.supplier).await;
    assert!(
        rejected.is_some_and(|r| r.starts_with("end block: ")),
        "invalid at end block"
    );
    assert_eq!(
        on_chain_claim(&f).await.proof_validation_status,
        wire::ClaimProofStatus::Invalid as i32
    );
    let mut params = f.chain.state().proof.clone();
    params.proof_request_probability = 0.0;
    f.chain.set_proof_params(params.clone());
    assert_eq!(
        validate::proof_required(&f.chain.state(), &claim),
        Some(true),
        "before the next block"
    );
    f.chain.produce_block();
    assert_eq!(validate::proof_required(&f.chain.state(), &claim), Some(false));
    advance_to(&f.chain, windows(&f).settlement);
    assert!(matches!(f.chain.settlements()[0].2, Settlement::Settled(v) if v > 0));

    // The other way round: not required at the proof window, required at settlement.
    let f = fixture(0.0).await;
    let mut trie = trie_with(&f, 2, 10);
    claim_and_reach_seed(&f, &mut trie).await;
    let claim = on_chain_claim(&f).await;
    assert_eq!(validate::proof_required(&f.chain.state(), &claim), Some(false));
    params.proof_requirement_threshold = Some(wire::Coin {
        denom: "upokt".into(),
        amount: "1".into(),
    });
    f.chain.set_proof_params(params);
    f.chain.produce_block();
    assert_eq!(validate::proof_required(&f.chain.state(), &claim), Some(true));
    advance_to(&f.chain, windows(&f).settlement);
    assert!(matches!(&f.chain.settlements()[0].2, Settlement::Expired(r) if r == "required proof missing"));
}

/// The application delegates to a second gateway that has no public key on chain. A relay signed by the first
/// gateway over the ring [app, first gateway] is a valid LSAG, but the chain builds the ring of every delegate
/// and fails it as a whole when a member has no key (poktroll `pkg/crypto/rings`): the proof is INVALID and the
/// claim expires, as a relayer that refuses such relays expects.
#[tokio::test]
async fn a_ring_member_without_a_public_key_makes_the_proof_invalid() {
    let mut g = genesis(1.0);
    g.gateways.push(GenesisGateway {
        key_hex: key_hex("keyless gateway"),
        stake_upokt: 1_000_000,
    });
    g.applications[0].delegate_to = vec![0, 1];
    let f = fixture_on(g).await;
    let (_, keyless, _) = actor(&key_hex("keyless gateway")).unwrap();
    f.chain.state().accounts.get_mut(&keyless).unwrap().pubkey = None;
    let mut trie = trie_with(&f, 2, 10);
    claim_and_reach_seed(&f, &mut trie).await;
    let proof = trie.prove_closest(&seed_path(&f)).unwrap();
    let rejected = rejection_in_block(&f, closest_proof_msg(&f, &proof), &f.supplier).await;
    let reason = rejected.unwrap();
    assert!(
        reason.contains("ring member") && reason.contains(&keyless) && reason.contains("no public key"),
        "{reason}"
    );
    assert_eq!(
        on_chain_claim(&f).await.proof_validation_status,
        wire::ClaimProofStatus::Invalid as i32
    );
    advance_to(&f.chain, windows(&f).settlement);
    assert!(matches!(&f.chain.settlements()[0].2, Settlement::Expired(r) if r == "proof invalid"));
}
