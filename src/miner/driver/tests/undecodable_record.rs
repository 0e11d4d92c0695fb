//! A session record this binary cannot decode (a newer version's, after a rollback; damaged bytes) is skipped
//! when the leader restores its supplier: it failed the whole restore before, so no instance could take the
//! leadership and no supplier's claims or proofs were sent.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_does_not_keep_the_miner_from_leading_and_claiming() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    plain
        .sessions
        .put(
            &f.supplier,
            &"e".repeat(64),
            "active",
            b"{\"state\":\"from_the_future\"".to_vec(),
            0,
        )
        .await
        .unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    assert!(miner.engine.is_leader());
    for _ in 0..2 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_claimed(&f, &[&f.key]).await;
}
