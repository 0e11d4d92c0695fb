//! The proof is judged at end block by the header its message carried (poktroll `newProofFromMsg` stores it as
//! sent; `validateClosestPath` seeds the closest path from its end height), not by the claim's header: tx time
//! only held it to the on-chain session by session id and start height (`queryAndValidateSessionHeader`).

use super::*;

/// The proof message of `proof` with `header` as its session header.
fn proof_msg_with_header(f: &Fixture, header: &wire::SessionHeader, proof: &crate::smst::ClosestProof) -> wire::Any {
    wire::Any::pack(
        wire::MSG_SUBMIT_PROOF_TYPE_URL,
        &wire::MsgSubmitProof {
            supplier_operator_address: f.supplier_address.clone(),
            session_header: Some(header.clone()),
            proof: gob::encode_closest_proof(&proof.compact()),
        },
    )
}

/// A valid proof sent with a header ending one block late (same session id, so it hydrates to the same session)
/// is taken at tx time, fee paid, and found INVALID at end block: its header's end height is in the next session,
/// whose seed block is another one, so the path does not match. The claim expires.
#[tokio::test]
async fn a_proof_header_ending_a_block_late_passes_tx_time_and_is_invalid_at_end_block() {
    let f = fixture(1.0).await;
    let mut trie = trie_with(&f, 3, 10);
    claim_and_reach_seed(&f, &mut trie).await;
    let proof = trie.prove_closest(&seed_path(&f)).unwrap();
    let mut late = f.header.clone();
    late.session_end_block_height += 1;
    let hash = submit(&f, proof_msg_with_header(&f, &late, &proof), &f.supplier).await;
    let height = f.chain.produce_block();
    assert_eq!(
        f.client.get_tx(&hash).await.unwrap().unwrap().code,
        0,
        "taken at tx time"
    );
    let proofs: Vec<MsgRecord> = f
        .chain
        .records()
        .into_iter()
        .filter(|r| r.kind == "proof" && r.height == height)
        .collect();
    assert_eq!(proofs.len(), 2, "{proofs:?}");
    assert_eq!(proofs[0].rejected, None, "tx time");
    assert!(
        proofs[1]
            .rejected
            .as_deref()
            .is_some_and(|r| r.starts_with("end block:")),
        "{proofs:?}"
    );
    assert_eq!(
        on_chain_claim(&f).await.proof_validation_status,
        wire::ClaimProofStatus::Invalid as i32
    );
    advance_to(&f.chain, windows(&f).settlement);
    assert_eq!(expired_reason(&f), "PROOF_INVALID");
}

/// The same proof with the session's own header is VALIDATED at end block and the claim settles.
#[tokio::test]
async fn the_same_proof_with_the_session_header_is_validated() {
    let f = fixture(1.0).await;
    let mut trie = trie_with(&f, 3, 10);
    claim_and_reach_seed(&f, &mut trie).await;
    let proof = trie.prove_closest(&seed_path(&f)).unwrap();
    let rejected = rejection_in_block(&f, proof_msg_with_header(&f, &f.header, &proof), &f.supplier).await;
    assert_eq!(rejected, None);
    assert_eq!(
        on_chain_claim(&f).await.proof_validation_status,
        wire::ClaimProofStatus::Validated as i32
    );
    advance_to(&f.chain, windows(&f).settlement);
    assert!(matches!(f.chain.settlements()[0].2, Settlement::Settled(v) if v > 0));
}
