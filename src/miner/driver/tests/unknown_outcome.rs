//! A claim send whose outcome is unknown keeps the claimed trie frozen.

use super::*;

/// A claim broadcast whose outcome is unknown (the node may have admitted the tx, the client saw a transport
/// error) is taken back and repeated, but the claim may be on chain already: the claimed trie stays frozen. A
/// relay ingested before the repeat goes to the late trie, so the root on chain stays the trie's root and the
/// proof can be built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_send_with_an_unknown_outcome_keeps_the_claimed_trie_frozen() {
    use crate::miner::lifecycle::{Event, TxKind, TxOutcome};
    let Claimed {
        f,
        mut miner,
        plain,
        on_chain,
        ..
    } = claimed(genesis()).await;
    let key = f.key.clone();
    // What `send` feeds the engine when BroadcastTx fails at the transport after the node took the tx.
    let step = miner.engine.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![key.clone()],
        outcome: TxOutcome::Retryable("transport: deadline exceeded".into()),
    });
    miner.execute(step).await.unwrap();
    let record = miner.engine.session(&key).unwrap();
    assert!(record.claim_sent_at.is_empty(), "send taken back");
    assert!(record.claim_built, "but the claim was built");
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..6))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let open = miner.tries.get_mut(&key).unwrap();
    assert_eq!(
        open.trie.root().to_vec(),
        on_chain.root_hash,
        "the claimed trie did not change"
    );
    assert_eq!(
        open.late.as_ref().map(|l| l.count()),
        Some(1),
        "the late relay went to the late trie"
    );
}
