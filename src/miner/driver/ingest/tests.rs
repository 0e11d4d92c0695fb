//! Bounded ingest rounds against the chain simulator and the memory backend: a backlog larger than one round is
//! ingested over several ticks with blocks handled in between, each relay once, and the session's claim is held
//! until its relay log is read up to now.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use storage::{Backlog, MemoryBackend};

use super::{INGEST_BATCH, INGEST_PROBE, INGEST_ROUND_BATCHES};
use crate::keys::{KeyMap, Keyring};
use crate::miner::driver::Miner;
use crate::miner::driver::tests::{config, genesis, key_hex, relays, serve_grpc};
use crate::miner::lifecycle::SessionKey;
use crate::sim::chain::{SimChain, actor};

mod counted;
mod oversized_read;
mod rounds;

async fn backlog(plain: &storage::Storage, supplier: &str) -> u64 {
    let Backlog { undelivered, pending } = plain.relay_log.backlog(supplier).await.unwrap();
    undelivered + pending
}

/// One round reads at most `INGEST_ROUND_BATCHES` batches of at most `INGEST_BATCH` entries; this backlog takes
/// more than two rounds. Each round's step handles the chain's new
/// block (the lease is renewed and proofs go out meanwhile), the claim due at `claim_open` waits until the log
/// is read up to now, and the claim on chain covers every relay exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_ingested_over_several_rounds_with_blocks_handled_between_and_the_claim_waits_for_it() {
    let chain = SimChain::new(genesis()).unwrap();
    let (client, header) = serve_grpc(&chain).await;
    let (supplier_key, supplier, _) = actor(&key_hex("supplier")).unwrap();
    let keyring = Keyring::new(KeyMap::from([(supplier.clone(), supplier_key)]));
    let key = SessionKey {
        supplier: supplier.clone(),
        session_id: header.session_id.clone(),
    };

    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client.clone(), plain.clone(), keyring, config("a"));
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());

    // At most a round's batches, the first a probe unless the last round caught up (as the empty one before did).
    let round = (INGEST_ROUND_BATCHES * INGEST_BATCH) as u64;
    const { assert!(INGEST_PROBE < INGEST_BATCH) };
    let total = 2 * round + 800;
    plain
        .relay_log
        .append(relays(&supplier, &header, 0..total))
        .await
        .unwrap();
    let ingested = |m: &Miner| m.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed);

    // Round 1: bounded, the block handled, the rest left for the next tick.
    chain.produce_block();
    miner.step().await.unwrap();
    let left = backlog(&plain, &supplier).await;
    assert!(left >= total - round, "one round ingested at most {round}, {left} left");
    assert_eq!(ingested(&miner), total - left);
    assert_eq!(miner.engine.height(), chain.height(), "the block was handled");
    let schedule = miner.engine.session(&key).unwrap().schedule;
    assert!(chain.height() < schedule.claim_open);

    // Round 2 at the claim window's open: the block is handled, the claim held (the log still has its relays).
    while chain.height() < schedule.claim_open {
        chain.produce_block();
    }
    miner.step().await.unwrap();
    assert!(backlog(&plain, &supplier).await > 0);
    assert_eq!(miner.engine.height(), chain.height());
    let record = miner.engine.session(&key).unwrap();
    assert!(
        record.claim_sent_at.is_empty(),
        "claim held while relays wait in the log"
    );
    assert_eq!(miner.engine.ingest_caught_up(&supplier), Some(false));

    // Later rounds drain the log (no new block: nothing is claimed meanwhile).
    for _ in 0..100 {
        if backlog(&plain, &supplier).await == 0 {
            break;
        }
        miner.step().await.unwrap();
    }
    assert_eq!(backlog(&plain, &supplier).await, 0);
    miner.step().await.unwrap();
    assert_eq!(miner.engine.ingest_caught_up(&supplier), Some(true));
    assert_eq!(ingested(&miner), total, "each entry ingested once");
    assert_eq!(miner.engine.session(&key).unwrap().relays, total);
    assert!(miner.engine.session(&key).unwrap().claim_sent_at.is_empty());

    // The next block sends the claim, built from the whole session.
    chain.produce_block();
    assert!(chain.height() < schedule.claim_close);
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&key).unwrap().claim_sent_at.len(), 1);
    chain.produce_block();
    let on_chain = client
        .claim_at(&key.session_id, &supplier, None)
        .await
        .unwrap()
        .expect("claim included");
    let root: [u8; 48] = on_chain.root_hash.as_slice().try_into().unwrap();
    assert_eq!(crate::smst::hash::sum_count(&root), (total * 10, total));
}
