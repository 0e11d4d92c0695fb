//! A loss report waiting for its record (its ingest batch's write failed) runs as soon as any write stores that
//! record. Left for the next tick's `persist_pending`, it was dropped if the miner lost the leadership first, and
//! the next leader, restoring the record already moved, never reported the loss.

use super::*;
use crate::miner::lifecycle::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_loss_report_runs_when_a_later_write_stores_its_record_and_survives_a_deposal() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let faults = backend.faults().clone();
    let plain = backend.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    // The claim goes out, lands, and a lookup confirms it before the proof seed block.
    while miner.engine.session(&f.key).unwrap().state != State::Claimed {
        assert!(
            f.chain.height() < schedule.proof_seed_height() - 1,
            "claim not confirmed in time"
        );
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    while f.chain.height() < schedule.proof_seed_height() - 1 {
        f.chain.produce_block();
    }
    miner.step().await.unwrap();
    let lost = |telemetry: &crate::telemetry::Telemetry| {
        counter(
            &telemetry.render_metrics(),
            "ha_miner_relays_lost_total",
            "relays_after_claim",
        )
    };
    assert_eq!(lost(&telemetry), None);

    // A late relay whose ingest batch cannot be written: its loss report waits with the record. The same step
    // handles the proof seed block, whose requirement check changes the record and writes it whole.
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..6))
        .await
        .unwrap();
    faults.fail_write_sets(1, StorageError::Unavailable("test: the ingest batch is refused".into()));
    f.chain.produce_block();
    assert!(miner.step().await.is_err(), "the failed ingest is reported");
    let stored: crate::miner::lifecycle::SessionRecord =
        serde_json::from_slice(&stored_data(&plain, &f.key).await).unwrap();
    assert!(
        stored.proof_required.is_some(),
        "the requirement check wrote the record: {stored:?}"
    );
    assert_eq!(lost(&telemetry), Some(1), "reported once its record is stored");

    // Deposed before the next tick, then leading again: the restored record has the loss accounted, and it is
    // not reported again.
    miner.leave_leader_mode();
    for _ in 0..3 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert!(miner.engine.is_leader());
    assert_eq!(lost(&telemetry), Some(1));
}
