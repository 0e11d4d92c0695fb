//! Pruning: a settled session leaves only its tombstone in storage and memory, a failed prune is retried, and
//! a relay of a pruned session is acknowledged, not mined, across a restart.

use super::*;

/// A settled session leaves only its tombstone behind: its trie and its relay-log entries are deleted from
/// storage, its record is replaced by the tombstone, and the engine keeps only the tombstone's key, so a miner
/// running for months holds and walks only live sessions. A record persisted as pruned whose deletes did not
/// all happen (the process stopped in between) is pruned again by the next leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_session_is_deleted_from_storage_and_memory_and_a_half_pruned_one_is_pruned_again() {
    let Claimed {
        f,
        mut miner,
        plain,
        schedule,
        ..
    } = claimed(genesis()).await;
    let (supplier, key) = (f.supplier.clone(), f.key.clone());
    assert_eq!(stored_trie(&plain, &supplier, &key.session_id).await, (5, 50));
    let mut settled = None;
    while f.chain.height() <= schedule.settlement + 1 {
        f.chain.produce_block();
        miner.step().await.unwrap();
        if let Some(r) = miner.engine.session(&key) {
            settled = Some(r.clone());
        }
    }
    let settled = settled.unwrap();
    assert_eq!(settled.state, crate::miner::lifecycle::State::Settled);
    assert!(miner.engine.session(&key).is_none(), "forgotten");
    assert!(miner.engine.is_tombstoned(&key));
    assert!(!miner.versions.contains_key(&key));
    assert_session_pruned(&plain, &supplier, &key.session_id).await;
    assert!(
        plain
            .relay_log
            .read(&supplier, "checker", 100)
            .await
            .unwrap()
            .is_empty(),
        "relay-log entries trimmed"
    );

    // The state a crash between persisting `pruned` and the deletes leaves: the record and the trie.
    let mut half = settled;
    half.pruned = true;
    let data = serde_json::to_vec(&half).unwrap();
    let version = plain
        .sessions
        .get(&supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap()
        .version;
    plain
        .sessions
        .put(&supplier, &key.session_id, half.state.as_str(), data, version)
        .await
        .unwrap();
    let store = plain.tries.open(&supplier, &key.session_id).await.unwrap();
    let mut trie = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    trie.insert_relay(&[7; 32], b"relay", 10);
    tokio::task::block_in_place(|| trie.commit()).unwrap();
    drop(trie);
    assert_eq!(stored_trie(&plain, &supplier, &key.session_id).await, (1, 10));

    // The next leader restores it and prunes it at its first block.
    let token = miner.leader_token.unwrap();
    drop(miner);
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    let mut next = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("b"));
    next.step().await.unwrap();
    f.chain.produce_block();
    next.step().await.unwrap();
    assert!(next.engine.is_leader());
    assert!(next.engine.session(&key).is_none(), "pruned again");
    assert!(next.engine.is_tombstoned(&key));
    assert_session_pruned(&plain, &supplier, &key.session_id).await;
}

/// A prune whose storage delete fails (a transient error) is retried: the session's trie, relay-log entries and
/// record do not stay in storage, and the record in memory, until the next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prune_is_retried_until_the_session_is_gone() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let faults = backend.faults().clone();
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    while f.chain.height() < schedule.settlement {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&f.key).unwrap().state,
        crate::miner::lifecycle::State::Settled
    );
    // The prune block: write 1 = the record (pruned = true), write 2 = the relay-log trim, which fails once.
    faults.fail_nth_write(2, StorageError::Unavailable("transient".into()));
    f.chain.produce_block();
    assert!(miner.step().await.is_err());
    assert!(
        miner.engine.session(&f.key).is_some_and(|r| !r.pruned),
        "to be pruned again"
    );
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert!(miner.engine.session(&f.key).is_none(), "pruned");
    assert_session_pruned(&plain, &f.supplier, &f.key.session_id).await;
}

/// A relay of a session the miner already pruned (redelivered, or appended late by a relayer that lags)
/// reaches the log: it is acknowledged and not mined, on the embedded backend and across a restart, because the
/// session's tombstone is stored with its record. Mined, it started a new record that went through the
/// lifecycle again and was counted lost (`claim_window_missed`) for relays the claim had already paid for.
/// Once the tombstone expired, a relay of the session is mined like one of a session never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_of_a_pruned_session_is_acknowledged_not_mined_even_after_a_restart() {
    use std::sync::atomic::Ordering::Relaxed;
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner.redb");
    let mut cfg = config("a");
    cfg.engine.tombstone_blocks = 5;
    let backend = open_redb(&path).await;
    let plain = backend.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    ingest_until_pruned(&f, &plain, &mut miner).await;
    assert_eq!(miner.stats.claims_confirmed.load(Relaxed), 1);

    // Relays 0..3 redelivered and a relay never seen (appended late): acknowledged, nothing mined or counted.
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 7..8))
        .await
        .unwrap();
    for _ in 0..2 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 0, "nothing lost twice");
    assert!(miner.engine.session(&f.key).is_none(), "no new record");
    assert_eq!(miner.stats.claims_sent.load(Relaxed), 1, "nothing claimed twice");
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_sessions_failed_total",
            "claim_window_missed"
        ),
        None
    );
    assert_eq!(miner.stats.relays_after_prune.load(Relaxed), 4);
    assert_eq!(rejected(&telemetry, "session_pruned"), 4);
    let tombstone = assert_session_pruned(&plain, &f.supplier, &f.key.session_id).await;
    let forget_after = tombstone.forget_after.unwrap();
    assert!(f.chain.height() <= forget_after);

    // A restart: the tombstone comes back from storage.
    drop(miner);
    drop(plain);
    drop(backend);
    let backend = open_redb(&path).await;
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg.clone());
    miner.step().await.unwrap();
    assert!(miner.engine.is_tombstoned(&f.key));
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 8..9))
        .await
        .unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert!(miner.engine.session(&f.key).is_none());
    assert_eq!(miner.stats.relays_after_prune.load(Relaxed), 1);

    // Past its bound the tombstone is deleted; a relay after that is mined as one of a session never seen
    // (lost, since its windows are long gone: a relay that late is not a redelivery of anything paid).
    while f.chain.height() <= forget_after {
        f.chain.produce_block();
    }
    miner.step().await.unwrap();
    assert!(!miner.engine.is_tombstoned(&f.key));
    assert!(
        plain.sessions.list(None, None).await.unwrap().is_empty(),
        "tombstone deleted"
    );
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 9..10))
        .await
        .unwrap();
    miner.step().await.unwrap();
    // Its claim said absent once: lost at the next block's lookup (`SessionRecord::claim_absent_at`).
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 0);
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 1);
    assert!(miner.engine.is_tombstoned(&f.key), "lost, pruned, and tombstoned again");
}
