//! Live sessions of suppliers whose key is no longer in the keys file.

use super::*;

/// Live sessions in storage whose supplier's key is no longer in the keys file (removed, then a restart) cannot
/// be claimed: the leader says so when it takes the leadership (ERROR log, `keyless_sessions`), and keeps the
/// records, so adding the key back restores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_reports_live_sessions_of_suppliers_without_a_key() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    assert_eq!(
        miner.stats().keyless_sessions.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    drop(miner);

    let mut restarted = Miner::new(
        f.client.clone(),
        plain.clone(),
        Keyring::new(KeyMap::new()),
        config("a"),
    );
    restarted.step().await.unwrap();
    assert!(restarted.engine.is_leader());
    assert_eq!(
        restarted
            .stats()
            .keyless_sessions
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Named for the raft watchdog, which hands the leadership to a node holding the key; a follower lacks nothing.
    let lacking = |m: &Miner| m.stats().keyless_suppliers.lock().unwrap().clone();
    assert_eq!(
        lacking(&restarted),
        std::collections::BTreeSet::from([f.supplier.clone()])
    );
    assert!(
        restarted.engine.session(&f.key).is_none(),
        "not restored without its key"
    );
    assert!(
        plain
            .sessions
            .get(&f.supplier, &f.key.session_id)
            .await
            .unwrap()
            .is_some(),
        "the record is kept"
    );
    restarted.leave_leader_mode();
    assert!(lacking(&restarted).is_empty());
}
