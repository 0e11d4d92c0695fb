//! The claim keeps the header its message carried (poktroll `CreateClaim`: "use the session header from the
//! message, not the queried session"), after only the session id and the supplier's membership were checked
//! against the session hydrated at the header's start height (`queryAndValidateSessionHeader`); a proof is then
//! held to that stored header field by field (§5.4 step 10, `validateSessionClaim`).

use super::*;

/// A header naming the session's second block as its start still hydrates to the same session (same id, the
/// supplier in it): the chain takes the claim and stores that header as sent, not the on-chain one. The proof,
/// which must carry the on-chain header, then fails step 10 against it.
#[tokio::test]
async fn the_claim_stores_the_header_of_its_message() {
    let f = fixture(1.0).await;
    let mut trie = trie_with(&f, 3, 10);
    let w = windows(&f);
    let mut sent = f.header.clone();
    sent.session_start_block_height += 1;
    assert!(sent.session_start_block_height < sent.session_end_block_height);
    advance_to(&f.chain, w.claim_open - 1);
    let rejected = rejection_in_block(&f, claim_msg(&f, &sent, &trie.root()), &f.supplier).await;
    assert_eq!(rejected, None, "{:?}", f.chain.records());
    let stored = on_chain_claim(&f).await;
    assert_eq!(
        stored.session_header,
        Some(sent.clone()),
        "the message's header, as sent"
    );
    assert_ne!(stored.session_header, Some(f.header.clone()));

    advance_to(&f.chain, w.proof_seed_height());
    let proof = trie.prove_closest(&seed_path(&f)).unwrap();
    let rejected = rejection_in_block(&f, closest_proof_msg(&f, &proof), &f.supplier)
        .await
        .unwrap_or_default();
    assert_eq!(
        rejected,
        format!(
            "claim session start height {} does not match proof session start height {}: invalid session start \
             height",
            sent.session_start_block_height, f.header.session_start_block_height
        )
    );
}

/// The claim window is placed by the message's end height: a header ending a block after the session (the
/// next session's first block; its session id and supplier still check out at the start height) puts the claim
/// in the next session's claim window, so at this session's window it is refused.
#[tokio::test]
async fn the_claim_window_comes_from_the_message_end_height() {
    let f = fixture(0.0).await;
    let mut trie = trie_with(&f, 2, 10);
    let w = windows(&f);
    let mut sent = f.header.clone();
    sent.session_end_block_height += 1;
    advance_to(&f.chain, w.claim_open);
    let rejected = rejection_in_block(&f, claim_msg(&f, &sent, &trie.root()), &f.supplier)
        .await
        .unwrap_or_default();
    assert!(rejected.contains("outside the claim window"), "{rejected}");
    // The on-chain header in the same window is taken.
    let rejected = rejection_in_block(&f, claim_msg(&f, &f.header, &trie.root()), &f.supplier).await;
    assert_eq!(rejected, None);
    assert_eq!(on_chain_claim(&f).await.session_header, Some(f.header.clone()));
}
