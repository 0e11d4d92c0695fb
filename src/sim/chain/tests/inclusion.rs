//! The inclusion knobs: a tx CheckTx admitted lands `inclusion_delay_blocks` blocks late, judged by the state of
//! the block that includes it, and is checked again after each block while it waits (CometBFT's recheck); a tx
//! `drop_accepted_txs` drops is answered code 0 and never included, and its same bytes are taken anew.

use super::*;

/// The supplier's spendable balance.
fn balance(f: &Fixture) -> u128 {
    f.chain.state().accounts[&f.supplier_address].balance
}

/// With a delay of n blocks, a claim taken at height h is in block h + 1 + n, not before; while it waits the node
/// has it (its same bytes: code 19) and it is in no block.
#[tokio::test]
async fn a_delayed_tx_lands_that_many_blocks_late() {
    for delay in 1..=3 {
        let f = fixture(0.0).await;
        let w = windows(&f);
        advance_to(&f.chain, w.claim_open - 1);
        f.chain.state().inclusion_delay_blocks = delay;
        let tx = signed_tx(&f, claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root()), &f.supplier).await;
        let taken = f.chain.height();
        assert_eq!(f.client.broadcast(tx.tx_bytes.clone()).await.unwrap().code, 0);
        while f.chain.height() < taken + delay {
            f.chain.produce_block();
            assert!(
                f.client.get_tx(&tx.hash).await.unwrap().is_none(),
                "delay {delay}: not yet"
            );
            assert_eq!(f.chain.state().mempool.len(), 1, "delay {delay}: still waiting");
            assert_eq!(f.client.broadcast(tx.tx_bytes.clone()).await.unwrap().code, 19);
        }
        f.chain.produce_block();
        let result = f.client.get_tx(&tx.hash).await.unwrap().unwrap();
        assert_eq!((result.height, result.code), (taken + 1 + delay, 0), "delay {delay}");
        assert_eq!(last_record(&f.chain, "claim").rejected, None);
        assert!(f.chain.state().mempool.is_empty());
        assert!(f.chain.state().included_not_before.is_empty());
    }
}

/// A claim (no timeout height) taken at the last height whose next block is inside the claim window and held one
/// block lands after the window: its message fails in that block with the chain's reason, and its fee is paid.
#[tokio::test]
async fn a_claim_delayed_past_its_window_fails_in_its_block_and_pays_its_fee() {
    let f = fixture(0.0).await;
    let w = windows(&f);
    advance_to(&f.chain, w.claim_close - 1);
    f.chain.state().inclusion_delay_blocks = 1;
    let tx = signed_tx(&f, claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root()), &f.supplier).await;
    let before = balance(&f);
    assert_eq!(f.client.broadcast(tx.tx_bytes).await.unwrap().code, 0);
    f.chain.produce_block();
    assert!(
        f.client.get_tx(&tx.hash).await.unwrap().is_none(),
        "held past the close"
    );
    f.chain.produce_block();
    let result = f.client.get_tx(&tx.hash).await.unwrap().unwrap();
    assert_eq!(result.height, w.claim_close + 1);
    assert_ne!(result.code, 0);
    let reason = last_record(&f.chain, "claim").rejected.unwrap();
    assert!(reason.contains("outside the claim window"), "{reason}");
    assert_eq!(balance(&f), before - 1, "the fee is paid");
    assert!(
        f.client
            .claim(&f.header.session_id, &f.supplier_address)
            .await
            .unwrap()
            .is_none()
    );
}

/// A waiting unordered tx whose timeout passes is dropped by the recheck after the block that passes it: never
/// included, and gone from the mempool.
#[tokio::test]
async fn a_waiting_unordered_tx_whose_timeout_passed_leaves_the_mempool() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    f.chain.state().inclusion_delay_blocks = 1000;
    let tx = signed_tx_ttl(
        &f,
        claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root()),
        &f.supplier,
        1,
    )
    .await;
    assert_eq!(f.client.broadcast(tx.tx_bytes).await.unwrap().code, 0);
    let taken = f.chain.height();
    // 50 ms blocks: 1 s is 20 blocks.
    while !f.chain.state().mempool.is_empty() {
        f.chain.produce_block();
        assert!(f.chain.height() < taken + 40, "never rechecked out");
    }
    // The check compares whole seconds: dropped within the second its timeout falls in.
    assert!(f.chain.height() > taken + 5, "kept while its timeout allows");
    assert!(f.client.get_tx(&tx.hash).await.unwrap().is_none());
    assert!(f.chain.state().included_not_before.is_empty());
}

/// Waiting ordered txs are rechecked in order against the committed sequence after each block: the signer's next
/// tx is taken with the sequence after theirs (without the recheck, CheckTx would expect the committed one), and
/// both land in order.
#[tokio::test]
async fn waiting_ordered_txs_keep_their_sequences_across_blocks() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    f.chain.state().inclusion_delay_blocks = 2;
    let claim = claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root());
    let first = ordered_tx(&f, claim.clone(), 0).await;
    let taken = f.chain.height();
    assert_eq!(f.client.broadcast(first.tx_bytes).await.unwrap().code, 0);
    f.chain.produce_block();
    let second = ordered_tx_at(&f, claim, 1, 0).await;
    let answer = f.client.broadcast(second.tx_bytes).await.unwrap();
    assert_eq!(answer.code, 0, "the sequence after the waiting one: {answer:?}");
    advance_to(&f.chain, taken + 4);
    let first = f.client.get_tx(&first.hash).await.unwrap().unwrap();
    let second = f.client.get_tx(&second.hash).await.unwrap().unwrap();
    assert_eq!((first.height, first.code), (taken + 3, 0), "{first:?}");
    assert_eq!((second.height, second.code), (taken + 4, 0), "{second:?}");
}

/// A tx dropped after CheckTx took it (answered code 0) is never included; its same bytes broadcast again are taken
/// anew and land.
#[tokio::test]
async fn a_dropped_tx_is_never_included_and_its_bytes_are_taken_again() {
    let f = fixture(0.0).await;
    advance_to(&f.chain, windows(&f).claim_open);
    f.chain.state().drop_accepted_txs = 1;
    let tx = signed_tx(&f, claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root()), &f.supplier).await;
    assert_eq!(f.client.broadcast(tx.tx_bytes.clone()).await.unwrap().code, 0);
    assert!(f.chain.state().mempool.is_empty(), "dropped");
    assert_eq!(f.chain.state().drop_accepted_txs, 0);
    f.chain.produce_block();
    f.chain.produce_block();
    assert!(f.client.get_tx(&tx.hash).await.unwrap().is_none(), "never included");
    assert_eq!(f.client.broadcast(tx.tx_bytes).await.unwrap().code, 0, "taken anew");
    f.chain.produce_block();
    assert_eq!(f.client.get_tx(&tx.hash).await.unwrap().unwrap().code, 0);
    assert_eq!(last_record(&f.chain, "claim").rejected, None);
}

/// A tx paying less than the validators' price (`min_inclusion_gas_prices`, above the node's: none here) passes
/// CheckTx (code 0) and stays in the mempool (its same bytes: code 19), in no block, for as long as the price
/// holds; its fee is not charged. Once the price allows it, the next block includes it.
#[tokio::test]
async fn a_tx_below_the_validators_price_stays_in_the_mempool_and_in_no_block() {
    let f = fixture(0.0).await;
    let w = windows(&f);
    advance_to(&f.chain, w.claim_open - 1);
    // 1upokt for 500,000 gas is 0.000002upokt per gas.
    f.chain.state().min_inclusion_gas_prices =
        crate::sim::chain::fees::parse_minimum_gas_prices("0.00001upokt").unwrap();
    let tx = signed_tx(&f, claim_msg(&f, &f.header, &trie_with(&f, 2, 10).root()), &f.supplier).await;
    let before = balance(&f);
    assert_eq!(f.client.broadcast(tx.tx_bytes.clone()).await.unwrap().code, 0);
    for _ in 0..3 {
        f.chain.produce_block();
        assert!(f.client.get_tx(&tx.hash).await.unwrap().is_none());
        assert_eq!(f.chain.state().mempool.len(), 1, "still waiting");
        assert_eq!(f.client.broadcast(tx.tx_bytes.clone()).await.unwrap().code, 19);
    }
    assert_eq!(balance(&f), before, "no fee charged");
    f.chain.state().min_inclusion_gas_prices =
        crate::sim::chain::fees::parse_minimum_gas_prices("0.000002upokt").unwrap();
    let height = f.chain.produce_block();
    let result = f.client.get_tx(&tx.hash).await.unwrap().unwrap();
    assert_eq!((result.height, result.code), (height, 0));
    assert!(f.chain.state().mempool.is_empty());
}
