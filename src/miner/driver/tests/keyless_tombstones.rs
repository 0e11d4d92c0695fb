//! Tombstones of suppliers removed from the keys file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// A supplier removed from the keys file, then a restart: its pruned session's tombstone is restored by the
/// leader (only suppliers with a key were restored, so `Forget` never ran for it and it stayed in storage for
/// good) and deleted once its `forget_after` is past, like any other. Not counted as a keyless live session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_suppliers_tombstone_is_deleted_once_past_after_a_restart() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut cfg = config("a");
    cfg.engine.tombstone_blocks = 5;
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg.clone());
    ingest_until_pruned(&f, &plain, &mut miner).await;
    let forget_after = assert_session_pruned(&plain, &f.supplier, &f.key.session_id)
        .await
        .forget_after
        .unwrap();
    drop(miner);

    // Restarted with the supplier's key gone from the keys file.
    let mut restarted = Miner::new(f.client.clone(), plain.clone(), Keyring::new(KeyMap::new()), cfg);
    restarted.step().await.unwrap();
    assert!(restarted.engine.is_leader());
    assert!(restarted.engine.is_tombstoned(&f.key), "restored as a tombstone");
    assert_eq!(
        restarted
            .stats()
            .keyless_sessions
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a tombstone is not a live session"
    );
    assert_eq!(
        plain.sessions.list(Some(&f.supplier), None).await.unwrap().len(),
        1,
        "kept until its bound"
    );
    while f.chain.height() <= forget_after {
        f.chain.produce_block();
    }
    restarted.step().await.unwrap();
    assert!(!restarted.engine.is_tombstoned(&f.key));
    assert!(
        plain.sessions.list(None, None).await.unwrap().is_empty(),
        "the removed supplier's tombstone is deleted"
    );
}
