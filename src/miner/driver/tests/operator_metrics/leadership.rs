//! Leadership changes are counted: gains (`ha_miner_leader_elections_total`), losses
//! (`ha_miner_leader_losses_total`) and failed campaigns by reason (`ha_miner_leader_acquisition_failures_total`),
//! each labelled with the instance the miner campaigns as (as is `ha_miner_leader_status`); on Redis the storage
//! counts the failed campaigns.

use super::*;

/// Instance "a" leads, loses its lease to "b", fails to campaign while storage is down, and leads again: two
/// elections, one loss, one failure `storage_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_gains_losses_and_failed_campaigns_are_counted_per_instance() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let plain = backend.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut a = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let value = |name: &str, labels: &[(&str, &str)]| series(&telemetry.render_metrics(), name, labels);
    let a_label = [("instance", "a")];

    a.step().await.unwrap();
    assert!(a.engine.is_leader());
    assert_eq!(value("ha_miner_leader_elections_total", &a_label), Some(1.0));
    assert_eq!(
        value("ha_miner_leader_status", &a_label),
        Some(1.0),
        "Go's instance label"
    );
    a.step().await.unwrap();
    assert_eq!(
        value("ha_miner_leader_elections_total", &a_label),
        Some(1.0),
        "a renewal is no election"
    );
    assert_eq!(value("ha_miner_leader_losses_total", &a_label), None);

    // "b" takes the lease over: "a" sees it at its next tick.
    let token = a.leader_token.unwrap();
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    let b = plain.leadership.campaign(ELECTION, "b", LEASE).await.unwrap().unwrap();
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    assert_eq!(value("ha_miner_leader_losses_total", &a_label), Some(1.0));
    assert_eq!(value("ha_miner_leader_status", &a_label), Some(0.0));

    // "b" gives it up while storage is down: "a"'s campaign fails, counted by reason.
    assert!(plain.leadership.resign(ELECTION, "b", b).await.unwrap());
    backend
        .faults()
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    let failures = [("instance", "a"), ("reason", "storage_unavailable")];
    assert_eq!(
        value("ha_miner_leader_acquisition_failures_total", &failures),
        Some(1.0)
    );

    backend.faults().refuse_writes(None);
    a.step().await.unwrap();
    assert!(a.engine.is_leader());
    assert_eq!(value("ha_miner_leader_elections_total", &a_label), Some(2.0));
    assert_eq!(value("ha_miner_leader_losses_total", &a_label), Some(1.0));
    assert_eq!(
        value("ha_miner_leader_acquisition_failures_total", &failures),
        Some(1.0),
        "a campaign that won is no failure"
    );
}

/// On Redis the backend counts the failed campaigns under the same name (storage::redis stats): the miner's
/// metrics then leave it out, so both register in the process's one registry; counted by the miner too, the
/// second registration fails (the node would not start).
#[test]
fn on_redis_only_the_storage_counts_failed_campaigns() {
    use crate::miner::metrics::{AcquisitionFailures, MinerMetrics};
    let redis_collectors = || {
        std::sync::Arc::new(storage::redis::RedisStats::default())
            .collectors("a", None)
            .unwrap()
    };
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let on_redis = MinerMetrics::counting(&telemetry, AcquisitionFailures::for_storage_mode("redis")).unwrap();
    assert!(on_redis.leader_acquisition_failures.is_none());
    for collector in redis_collectors() {
        telemetry.register(collector).unwrap();
    }
    assert!(
        telemetry
            .render_metrics()
            .contains("ha_miner_leader_acquisition_failures_total{instance=\"a\",reason=\"redis_oom\"} 0"),
        "the storage's counter is exported"
    );

    for mode in ["embedded", "raft"] {
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let m = MinerMetrics::counting(&telemetry, AcquisitionFailures::for_storage_mode(mode)).unwrap();
        assert!(m.leader_acquisition_failures.is_some(), "{mode}: the miner counts them");
        assert!(
            redis_collectors().into_iter().any(|c| telemetry.register(c).is_err()),
            "{mode}: one name registered twice fails"
        );
    }
}
