//! The order of a leader's iteration: the chain's tip is read before the ingest round, so a claim made due by a
//! block is built from tries holding every relay the log held when the miner learnt of that block.

use super::*;

/// A relay appended during an ingest round, after the round read its supplier's log, and before the block that
/// makes the session's claim due, is in the claim. With the tip read after the ingest round (as it was), the
/// iteration saw that block, built the claim from the tries as the round left them and sent it without the
/// relay, which then went to the late trie and was counted lost (`relays_after_claim`): seen in the
/// `raft_partition` process test, where a slow round (2 s, raft writes while a follower was cut off) straddled
/// a relay committed a second before the block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_appended_before_the_claim_block_during_an_ingest_round_is_in_the_claim() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    let schedule = ingest_until(&f, &plain, &mut miner, |s| s.claim_open - 1).await;
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at, Vec::<i64>::new());

    // A relayer that saw the height before `claim_open` appends relay 5 while a round is under way (after the
    // round read the supplier's log), then the chain produces block `claim_open`. Once.
    let late = Mutex::new(Some(relays(&f.supplier, &f.header, 5..6)));
    let chain = f.chain.clone();
    let appends = AfterRead::appending(move || late.lock().unwrap().take().unwrap_or_default()).then(move || {
        chain.produce_block();
    });
    hook_relay_log(&mut miner, Some(appends));
    // The round reads the log, the relay is appended, then block `claim_open` comes.
    for _ in 0..3 {
        miner.step().await.unwrap();
    }
    assert_eq!(f.chain.height(), schedule.claim_open);
    f.chain.produce_block();
    miner.step().await.unwrap();
    let claim = f.client.claim_at(&f.key.session_id, &f.supplier, None).await.unwrap();
    let claim = claim.unwrap_or_else(|| panic!("no claim on chain: {:?}", f.chain.records()));
    let (_, count) = crate::smst::hash::root_sum_count(&claim.root_hash).unwrap();
    assert_eq!(count, 6, "the relay appended before the claim's block is in the claim");
    let open = miner.tries.get_mut(&f.key).unwrap();
    assert!(open.late.is_none(), "nothing went to the late trie");
}
