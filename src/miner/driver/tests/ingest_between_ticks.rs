//! Ingest rounds between ticks (`MinerConfig::ingest_every`): while a round of the leader took relays within
//! the last tick, relays appended after a tick are in their trie before the next tick.

use super::*;
use crate::miner::lifecycle::{Command, Step};

/// A tick of an hour: only the first tick runs during the test. Its round takes the first relays, so the miner
/// is busy and the extra rounds ingest what is appended afterwards; with `ingest_every` equal to the tick (no
/// extra rounds) the later relays wait for the next tick, an hour away, and the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_leader_ingests_between_ticks() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..5))
        .await
        .unwrap();
    let miner = Miner::new(
        f.client.clone(),
        plain.clone(),
        f.keyring.clone(),
        MinerConfig {
            tick: Duration::from_secs(3600),
            ingest_every: Duration::from_millis(10),
            ..config("a")
        },
    );
    let stats = miner.stats();
    let ingested = move || stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let running = tokio::spawn(miner.run(telemetry.heartbeat("miner"), async {
        let _ = stopped.await;
    }));
    storage::suite::poll_until("the first tick's round", || async { (ingested() == 5).then_some(()) }).await;
    for batch in 1..4u64 {
        plain
            .relay_log
            .append(relays(&f.supplier, &f.header, batch * 5..batch * 5 + 5))
            .await
            .unwrap();
        storage::suite::poll_until("relays appended after the tick, ingested before the next", || async {
            (ingested() == 5 + batch * 5).then_some(())
        })
        .await;
    }
    assert_eq!(
        plain.relay_log.backlog(&f.supplier).await.unwrap().pending,
        0,
        "each acknowledged"
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// A round between ticks first stores the records a failed step left, as a tick does: an eventually durable
/// ingest batch that carried such a record could otherwise let its waiting report run as if it were stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_between_ticks_stores_a_failed_steps_records_first() {
    let (c, mut miner, key, relays) = super::stop_resigns::a_record_a_failed_step_left().await;
    miner.ingest_between_ticks().await.unwrap();
    super::stop_resigns::a_stored_relay_count(&c, &key, |n| assert_eq!(n, relays)).await;
    assert!(miner.unpersisted.is_empty());
}

/// An ingest batch is eventually durable only when nothing else rides on it: no command in its step, no record
/// or report of a failed step waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_batch_is_durable_when_a_command_or_a_waiting_record_rides_on_it() {
    use storage::SetDurability::{Eventual, Immediate};
    let (c, mut miner) = Confirming::new().await;
    let key = c.f.key.clone();
    assert_eq!(miner.ingest_durability(&Step::default()), Eventual);
    let report = Command::RecordUnclaimed {
        key: key.clone(),
        relays: 1,
        compute_units: 10,
        accounted_compute_units: 0,
    };
    let with_command = Step {
        commands: vec![report.clone()],
        changed: Vec::new(),
    };
    assert_eq!(
        miner.ingest_durability(&with_command),
        Immediate,
        "a report runs after it"
    );
    miner.unpersisted.insert(key.clone());
    assert_eq!(miner.ingest_durability(&Step::default()), Immediate, "a record waits");
    miner.unpersisted.clear();
    miner.pending_reports.push(report);
    assert_eq!(miner.ingest_durability(&Step::default()), Immediate, "a report waits");
}
