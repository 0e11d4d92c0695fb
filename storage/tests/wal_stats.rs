//! The relay WAL's metrics count what it did: one queue observation per append, one write per record with the
//! relays in it, one observation per checkpoint; and they reach a Prometheus registry under their names.
//! Real redb files and WAL segments in temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use storage::suite;
use storage::{RedbBackend, RedbConfig};

fn config(dir: &tempfile::TempDir, wal: bool) -> RedbConfig {
    let mut c = RedbConfig::new(dir.path().join("stats.redb"));
    c.relay_wal = wal;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_record_and_checkpoint_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir, true);
    // A checkpoint after every record (at most one in flight), and none by the clock.
    cfg.wal_checkpoint_bytes = 1;
    cfg.wal_checkpoint_interval = Duration::from_secs(3600);
    let b = RedbBackend::open(cfg).await.unwrap();
    let stats = b.wal_stats().expect("the WAL is on");
    assert_eq!(b.readiness().await, Ok(()));
    assert_eq!((stats.appends(), stats.records(), stats.relays()), (0, 0, 0));

    // One at a time: each append is a record of its own.
    let log = b.storage().relay_log;
    let mut i = 0u64;
    for n in [1u64, 2, 5] {
        let batch: Vec<_> = (i..i + n).map(|k| suite::relay("sup", "s1", k)).collect();
        i += n;
        assert_eq!(log.append(batch).await.unwrap().len() as u64, n);
    }
    assert_eq!((stats.appends(), stats.records(), stats.relays()), (3, 3, 8));

    // Concurrent appends may share records: every append and relay is counted, records between 1 and 20.
    let tasks: Vec<_> = (0..20u64)
        .map(|k| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![suite::relay("sup", "s1", 100 + k)]).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 1);
    }
    assert_eq!(stats.appends(), 23);
    assert_eq!(stats.relays(), 28);
    let concurrent_records = stats.records() - 3;
    assert!(
        (1..=20).contains(&concurrent_records),
        "{concurrent_records} records for 20 concurrent appends"
    );

    // Checkpoints follow the records; each completed one is observed once.
    suite::poll_until("a checkpoint completed", || async {
        (stats.checkpoints() >= 1).then_some(())
    })
    .await;
    assert!(stats.checkpoints() <= stats.records());

    // The same values under their names in a registry (what `/metrics` serves).
    let registry = prometheus::Registry::new();
    for c in stats.collectors() {
        registry.register(c).unwrap();
    }
    let families = registry.gather();
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} not exported"))
    };
    let histogram_count = |name: &str| family(name).get_metric()[0].get_histogram().get_sample_count();
    let counter = |name: &str| family(name).get_metric()[0].get_counter().get_value();
    assert_eq!(histogram_count("ha_storage_wal_queue_seconds"), 23);
    assert_eq!(histogram_count("ha_storage_wal_write_seconds"), stats.records());
    assert_eq!(counter("ha_storage_wal_records_total"), stats.records() as f64);
    assert_eq!(counter("ha_storage_wal_relays_total"), 28.0);
    assert_eq!(
        histogram_count("ha_storage_wal_checkpoint_seconds"),
        stats.checkpoints()
    );
}

#[tokio::test]
async fn without_the_wal_there_are_no_wal_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(config(&dir, false)).await.unwrap();
    assert!(b.wal_stats().is_none());
    assert_eq!(b.readiness().await, Ok(()));
    // Appends still work (a durable redb commit each).
    let ids = b
        .storage()
        .relay_log
        .append(vec![suite::relay("sup", "s1", 1)])
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
}
