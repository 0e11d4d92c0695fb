//! A leading miner stopped gracefully stores what its last step could not and gives its lease up: a standby on
//! the same storage leads at its next tick, not once the lease (60 s in these tests) expires.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_gives_its_lease_up_and_a_standby_leads_at_once() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut a = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    a.step().await.unwrap();
    assert!(a.engine.is_leader());
    let mut b = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("b"));
    b.step().await.unwrap();
    assert!(!b.engine.is_leader(), "a holds the lease");

    // `run` with its shutdown already resolved: the final ingest, then the lease is given up.
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    a.run(telemetry.heartbeat("miner"), std::future::ready(())).await;
    assert_eq!(plain.leadership.leader(ELECTION).await.unwrap(), None);
    b.step().await.unwrap();
    assert!(b.engine.is_leader(), "the standby leads at its next tick");
}

/// Records a failed step could not store (`unpersisted`) are stored by the stopping leader before it gives its
/// lease up, instead of being left for the next leader to rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_stores_the_records_a_failed_step_left() {
    let (c, miner, key, relays) = a_record_a_failed_step_left().await;
    miner.run(c.telemetry.heartbeat("miner"), std::future::ready(())).await;
    a_stored_relay_count(&c, &key, |n| assert_eq!(n, relays)).await;
    assert_eq!(
        c.plain.leadership.leader(ELECTION).await.unwrap(),
        None,
        "and the lease is given up"
    );
}

/// A miner whose session record (7 relays more than stored) a failed step could not store (`unpersisted`):
/// the fixture, the miner, the session and its relay count in memory.
pub(super) async fn a_record_a_failed_step_left() -> (Confirming, Miner, SessionKey, u64) {
    let (c, mut miner) = Confirming::new().await;
    let key = c.f.key.clone();
    let mut record = miner.engine.session(&key).unwrap().clone();
    record.relays += 7;
    let relays = record.relays;
    miner.engine.restore(record);
    miner.unpersisted.insert(key.clone());
    a_stored_relay_count(&c, &key, |n| assert_ne!(n, relays)).await;
    (c, miner, key, relays)
}

pub(super) async fn a_stored_relay_count(c: &Confirming, key: &SessionKey, check: impl FnOnce(u64)) {
    let stored = c
        .plain
        .sessions
        .get(&key.supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&stored.data).unwrap();
    check(value["relays"].as_u64().unwrap());
}
