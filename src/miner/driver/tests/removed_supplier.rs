//! A supplier removed from the keys file while its sessions are live is still claimed and proved by the process
//! that holds its key (`Miner::sync_suppliers`), also after this process loses and regains the leadership (a
//! storage error on a renewal is enough: `leave_leader_mode`, then `reload_from_storage`). Rebuilt from the keys
//! file alone, the signers lost that key, its sessions were not restored, and their claims and proofs were never
//! sent: the reward lost, a required proof slashed.

use super::*;
use crate::miner::lifecycle::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_suppliers_live_session_is_still_claimed_after_the_leadership_comes_back() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    // Removed while its session waits for its claim: kept.
    f.keyring.replace(KeyMap::new());
    miner.sync_suppliers().await.unwrap();
    assert!(miner.signers.contains_key(&f.supplier), "kept while a session is live");

    // The leadership is lost (a failed renewal) and won again at the next iteration: everything reloads.
    miner.leave_leader_mode();
    lead(&mut miner).await;
    assert!(
        miner.engine.session(&f.key).is_some(),
        "the removed supplier's live session is restored with the key this process holds"
    );
    for _ in 0..3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_claimed(&f, &[&f.key]).await;
    assert!(matches!(
        miner.engine.session(&f.key).unwrap().state,
        State::Claimed | State::Settled
    ));
}

/// The same when the first reload after the leadership came back fails (storage in trouble, as when the renewal
/// failed): the held key is kept for the next attempt, which restores and claims the session. Dropped with the
/// failed reload, it was gone for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_suppliers_key_survives_a_failed_reload() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    f.keyring.replace(KeyMap::new());
    miner.sync_suppliers().await.unwrap();
    assert!(miner.signers.contains_key(&f.supplier));

    miner.leave_leader_mode();
    backend
        .faults()
        .fail_session_lists(1, StorageError::Unavailable("test: storage in trouble".into()));
    let _ = miner.step().await;
    assert!(
        miner.signers.contains_key(&f.supplier),
        "kept through the failed reload"
    );
    for _ in 0..4 {
        f.chain.produce_block();
        let _ = miner.step().await;
        if miner.engine.session(&f.key).is_some() {
            break;
        }
    }
    assert!(miner.engine.is_leader());
    assert!(miner.engine.session(&f.key).is_some(), "restored by the next reload");
    for _ in 0..3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_claimed(&f, &[&f.key]).await;
}

/// A supplier removed from the keys file with relays in its log not ingested yet (a session the engine does not
/// know, so no live session) keeps its key until they are: they are ingested and claimed. Dropped at once (no live
/// session was the only test), its relays were left to the unowned-entries gauge, never claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_supplier_with_relays_not_ingested_yet_keeps_its_key_until_they_are_claimed() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    lead(&mut miner).await;
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..5))
        .await
        .unwrap();
    // Removed before an ingest round read its relays.
    f.keyring.replace(KeyMap::new());
    miner.sync_suppliers().await.unwrap();
    assert!(miner.engine.session(&f.key).is_none(), "not ingested yet");
    assert!(
        miner.signers.contains_key(&f.supplier),
        "kept while its log holds relays not ingested"
    );
    let schedule = loop {
        miner.step().await.unwrap();
        if let Some(session) = miner.engine.session(&f.key) {
            break session.schedule;
        }
        f.chain.produce_block();
    };
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    while f.chain.height() < schedule.claim_open + 3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_claimed(&f, &[&f.key]).await;
}
