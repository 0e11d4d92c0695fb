//! Storage at its memory limit (Redis at `maxmemory`: trie writes refused, session records and acks still
//! written, module `persist`): a trie whose ingest batch could not be written is rolled back to what storage
//! holds, so the session's claim is still recorded and sent, from that trie, before its window closes. The
//! relays rolled back stay pending in the relay log and come in after the claim, counted as relays after it.

use super::*;

/// The session's record as storage holds it.
async fn stored_record(plain: &storage::Storage, supplier: &str, session_id: &str) -> SessionRecord {
    let record = plain.sessions.get(supplier, session_id).await.unwrap().unwrap();
    serde_json::from_slice(&record.data).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_sent_from_the_stored_trie_while_storage_refuses_trie_writes() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let plain = backend.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    // Relays 0..5 ingested and committed.
    let schedule = ingest_until(&f, &plain, &mut miner, |_| 0).await;
    assert_eq!(stored_trie(&plain, &f.supplier, &f.key.session_id).await, (5, 50));

    // Storage reaches its memory limit while relays 5..8 wait in the log: their batch is read, its write refused.
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..8))
        .await
        .unwrap();
    let oom = StorageError::OutOfMemory("test: OOM command not allowed when used memory > 'maxmemory'".into());
    backend.faults().refuse_trie_writes(Some(oom));
    assert!(miner.step().await.is_err(), "the ingest round failed");
    assert_eq!(
        miner.tries.get(&f.key).map(|open| open.trie.count()),
        Some(8),
        "the refused batch's relays are in the trie in memory"
    );

    // The claim window opens and closes while storage stays full: the claim is still sent in time.
    let buffer = miner.config.engine.submission_buffer_blocks;
    while f.chain.height() <= schedule.claim_close - buffer {
        let _ = miner.step().await;
        f.chain.produce_block();
        // A stored record never counts relays its trie does not hold in storage.
        let stored = stored_trie(&plain, &f.supplier, &f.key.session_id).await;
        let record = stored_record(&plain, &f.supplier, &f.key.session_id).await;
        assert!(
            record.relays <= stored.0,
            "record {record:?} beyond the stored trie {stored:?}"
        );
    }
    let claim = f.client.claim_at(&f.key.session_id, &f.supplier, None).await.unwrap();
    let claim = claim.unwrap_or_else(|| panic!("no claim on chain: {:?}", f.chain.records()));
    let (sum, count) = crate::smst::hash::root_sum_count(&claim.root_hash).unwrap();
    assert_eq!((count, sum), (5, 50), "the claim is the stored trie's");
    // A restart (or the proof) builds the same root from storage.
    let store = plain.tries.open(&f.supplier, &f.key.session_id).await.unwrap();
    let mut reopened = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    assert_eq!(reopened.root().to_vec(), claim.root_hash);

    // Memory is freed: the relays rolled back come in after the claim, outside the claimed trie, counted once.
    backend.faults().refuse_trie_writes(None);
    for _ in 0..3 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    let late = super::super::ingest::late_namespace(&f.key.session_id);
    assert_eq!(stored_trie(&plain, &f.supplier, &late).await, (3, 30));
    assert_eq!(stored_trie(&plain, &f.supplier, &f.key.session_id).await, (5, 50));
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 8);
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "relays_after_claim"),
        Some(3),
        "{text}"
    );
}

/// An ingest batch whose write set conflicted is written part by part; when storage then refuses its tries for
/// want of memory, they are rolled back, the records are written from them and the entries stay pending: the
/// miner goes on handling blocks (it used to fail every iteration on the record write), and the relays come in
/// once storage takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_batch_whose_tries_are_refused_leaves_its_entries_pending_and_blocks_handled() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until(&f, &plain, &mut miner, |_| 0).await;

    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..8))
        .await
        .unwrap();
    backend
        .faults()
        .fail_write_sets(1, StorageError::Conflict("test: a record moved".into()));
    backend
        .faults()
        .refuse_trie_writes(Some(StorageError::OutOfMemory("test: OOM".into())));
    assert!(miner.step().await.is_err(), "the batch's tries were refused");
    let backlog = plain.relay_log.backlog(&f.supplier).await.unwrap();
    assert_eq!(backlog.pending, 3, "the batch is not acknowledged: {backlog:?}");
    assert_eq!(miner.tries.get(&f.key).map(|open| open.trie.count()), Some(5));
    let record = stored_record(&plain, &f.supplier, &f.key.session_id).await;
    assert_eq!(record.relays, 5, "the record counts the stored trie");

    // Still out of memory: the next blocks are handled all the same.
    for _ in 0..2 {
        f.chain.produce_block();
        assert!(miner.step().await.is_err(), "ingest still fails");
        assert_eq!(miner.engine.height(), f.chain.height(), "the block was handled");
    }

    backend.faults().refuse_trie_writes(None);
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(stored_trie(&plain, &f.supplier, &f.key.session_id).await, (8, 80));
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 8);
}
