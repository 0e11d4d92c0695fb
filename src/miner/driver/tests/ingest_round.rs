//! One ingest round under steady load: it takes the log as it is and leaves what arrives meanwhile to the next
//! tick.

use super::*;

/// One ingest round takes the log as it is and leaves what arrives meanwhile to the next tick: under steady
/// load it used to chase the log in batches of a few relays, each with its own trie commit, record write and
/// ack (~1,100 durable commits per second at 2,000 relays/s), until the relayer paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_round_stops_at_the_first_partial_batch_instead_of_chasing_new_appends() {
    let Fixture {
        client,
        supplier,
        header,
        keyring,
        key,
        ..
    } = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), keyring, config("a"));
    lead(&mut miner).await;
    // Every read of new entries appends 5 more relays behind it (from 600 on): the busy relayer.
    let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let next = Mutex::new(600u64);
    let (count, busy_supplier, busy_header) = (reads.clone(), supplier.clone(), header.clone());
    let appends = AfterRead::appending(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut next = next.lock().unwrap();
        *next += 5;
        relays(&busy_supplier, &busy_header, *next - 5..*next)
    });
    hook_relay_log(&mut miner, Some(appends));
    let ingested = |m: &Miner| m.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let reads = || reads.load(std::sync::atomic::Ordering::Relaxed);

    plain
        .relay_log
        .append(relays(&supplier, &header, 0..600))
        .await
        .unwrap();
    // Read 1: a full batch of 512 (5 more arrive); read 2: the remaining 88 + those 5, fewer than a full batch,
    // so the round ends; the 5 that arrived during read 2 wait.
    miner.step().await.unwrap();
    assert_eq!((ingested(&miner), reads()), (605, 2));
    assert_eq!(
        plain.relay_log.backlog(&supplier).await.unwrap(),
        Backlog {
            undelivered: 5,
            pending: 0
        }
    );
    assert_eq!(miner.engine.session(&key).unwrap().relays, 605);
    // The next tick takes them (and again leaves the 5 that arrived while it read).
    miner.step().await.unwrap();
    assert_eq!((ingested(&miner), reads()), (610, 3));
    assert_eq!(miner.engine.session(&key).unwrap().relays, 610);
}
