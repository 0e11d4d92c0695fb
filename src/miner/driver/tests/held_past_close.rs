//! A claim tx a mempool holds past its window's close (a congested node at the shared claim heights) must not
//! land after it: its messages would fail there and its fee be paid for nothing. Unordered txs (the default)
//! carry the window's close as `timeout_height` as ordered ones do, so the chain refuses such a tx for free.

use super::rebroadcast::{balance, included_txs_of};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_claim_held_past_its_window_is_refused_without_a_fee() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
    let held = std::mem::take(&mut f.chain.state().mempool);
    assert_eq!(held.len(), 1, "the claim tx");
    let hash = crate::chain::tx::tx_hash(&held[0]);
    // The miner is not stepped meanwhile: only the held tx could land.
    while f.chain.height() <= schedule.claim_close {
        f.chain.produce_block();
    }
    let before = balance(&f.chain, &f.supplier);
    f.chain.state().mempool.push(held[0].clone());
    f.chain.produce_block();

    let result = f.chain.state().txs.get(&hash).map(|r| (r.code, r.log.clone()));
    let (code, log) = result.expect("the block ran the held tx");
    assert_eq!(code, 30, "refused for its timeout height: {log}");
    assert_eq!(balance(&f.chain, &f.supplier), before, "no fee paid");
    assert_eq!(included_txs_of(&f.chain, &f.supplier).len(), 1, "in the block, refused");
    assert!(
        f.chain.records().iter().all(|r| r.kind != "claim"),
        "no claim message ran after the window: {:?}",
        f.chain.records()
    );
}
