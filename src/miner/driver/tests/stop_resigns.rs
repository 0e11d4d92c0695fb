//! A leading miner stopped gracefully gives its lease up: a standby on the same storage leads at its next tick,
//! not once the lease (60 s in these tests) expires.

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
