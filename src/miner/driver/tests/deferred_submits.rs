//! Claims and proofs a step decided but never ran, because that step's record write failed (`Miner::defer`):
//! the engine had recorded them as sent, so they must be taken back (`TxOutcome::NotSent`) or the session waits
//! out a re-send spacing for a send that never left, and spends its one re-send on it: a second failure and
//! the claim is lost, or the proof missing (a slash).

use super::*;
use crate::miner::lifecycle::{Command, Event, State};

/// The miner over a fresh memory backend, with the fixture's relays ingested and the claim window open: its
/// next step sends the claim.
async fn claim_due() -> (Fixture, storage::memory::MemoryBackend, Miner) {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    (f, backend, miner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_dropped_with_its_failed_record_write_is_sent_at_the_next_block() {
    let (f, backend, mut miner) = claim_due().await;
    // The block's step decides the claim; its records' write fails.
    let step = miner.engine.handle(Event::NewBlock {
        height: f.chain.height(),
    });
    assert!(
        step.commands.iter().any(|c| matches!(c, Command::SubmitClaims { .. })),
        "{step:?}"
    );
    backend
        .faults()
        .fail_nth_write(1, StorageError::Unavailable("test: storage down".into()));
    assert!(
        miner.execute(step).await.is_err(),
        "the step's records could not be stored"
    );
    assert!(f.chain.state().mempool.is_empty(), "so its claim did not leave");
    assert_eq!(
        miner.engine.session(&f.key).unwrap().claim_sent_at,
        Vec::<i64>::new(),
        "and is not counted as sent"
    );
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(f.chain.state().mempool.len(), 1, "sent at the next block");
    assert_eq!(
        miner.engine.session(&f.key).unwrap().claim_sent_at,
        vec![f.chain.height()]
    );
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert!(matches!(
        miner.engine.session(&f.key).unwrap().state,
        State::Claimed | State::Settled
    ));
}
