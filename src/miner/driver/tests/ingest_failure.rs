//! A failing ingest round does not stop the block's work: the block is handled (proofs of claimed sessions need
//! no ingest), the supplier's claim is held while its log is not caught up, and goes out, whole, once a round
//! catches up.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_ingest_round_does_not_stop_the_block_and_holds_the_claim_until_caught_up() {
    let (c, mut miner) = Confirming::new().await;
    // More relays of the session wait in the log; the next write (the ingest round's read, which delivers them)
    // fails.
    c.plain
        .relay_log
        .append(relays(&c.f.supplier, &c.f.header, 5..8))
        .await
        .unwrap();
    c.faults
        .fail_nth_write(1, StorageError::Unavailable("test: storage refuses".into()));
    let before = miner.engine.height();
    let result = miner.step().await;
    assert!(result.is_err(), "the failed round is reported");
    assert_eq!(
        miner.engine.height(),
        c.f.chain.height(),
        "the block was handled (was {before})"
    );
    let record = miner.engine.session(&c.f.key).unwrap().clone();
    assert!(
        record.claim_sent_at.is_empty(),
        "a claim was built while relays waited in the log: {record:?}"
    );
    // The next rounds catch up; the claim goes out with every relay.
    miner.step().await.unwrap();
    c.f.chain.produce_block();
    miner.step().await.unwrap();
    let record = miner.engine.session(&c.f.key).unwrap().clone();
    assert_eq!(record.claim_sent_at.len(), 1, "{record:?}");
    assert_eq!(record.relays, 8, "the claim covers the relays of the failed round");
}
