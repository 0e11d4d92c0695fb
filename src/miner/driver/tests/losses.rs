//! Loss reports: counted once their record is stored, and in relays and compute units even when their uPOKT
//! value cannot be computed.

use super::*;

/// A loss whose uPOKT value cannot be computed (the chain query failed) still counts its relays and compute
/// units exactly; the uPOKT counter does not move (the shortfall is logged at ERROR instead of adding 0).
#[tokio::test]
async fn a_loss_that_cannot_be_valued_counts_relays_and_compute_units_but_no_upokt() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    // Nothing listens there: the client is never used by count_loss.
    let client = Arc::new(ChainClient::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap());
    let miner = Miner::new(
        client,
        MemoryBackend::new().storage(),
        Keyring::new(KeyMap::new()),
        config("a"),
    )
    .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let key = SessionKey {
        supplier: "pokt1supplier".into(),
        session_id: "s1".into(),
    };
    miner.count_loss(&key, "anvil", "claim_window_missed", 7, 70, None);
    miner.count_loss(&key, "anvil", "claim_window_missed", 1, 10, Some(42));
    let text = telemetry.render_metrics();
    let value = |name: &str| counter(&text, name, "claim_window_missed");
    assert_eq!(value("ha_miner_relays_lost_total"), Some(8));
    assert_eq!(value("ha_miner_compute_units_lost_total"), Some(80));
    assert_eq!(
        value("ha_miner_upokt_lost_total"),
        Some(42),
        "only the valued loss adds uPOKT"
    );
}

/// The engine emits a loss report once, when it changes the session in memory. When the record saying so
/// cannot be stored (storage refuses writes), the report waits with it and runs once the record is stored at a
/// later iteration: not dropped with the failed iteration, not counted twice. A miner that loses its leadership
/// first drops both: the next leader moves the stored record itself and reports the loss once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_is_reported_once_its_record_is_stored_even_when_the_first_write_fails() {
    use crate::miner::lifecycle::{Command, LossReason, Step};
    let (c, mut miner) = Confirming::new().await;
    let lost =
        |c: &Confirming, reason: &str| counter(&c.telemetry.render_metrics(), "ha_miner_relays_lost_total", reason);
    let loss = |reason: LossReason| Step {
        changed: vec![c.f.key.clone()],
        commands: vec![Command::RecordLoss {
            key: c.f.key.clone(),
            reason,
            relays: 5,
            compute_units: 50,
        }],
    };
    // The record change a loss comes with (a record equal to the stored one, `queried_at` aside, is not
    // written again).
    let change = |miner: &mut Miner| {
        let mut record = miner.engine.session(&c.f.key).unwrap().clone();
        record.relays += 1;
        miner.engine.restore(record);
    };
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    change(&mut miner);
    assert!(miner.execute(loss(LossReason::ClaimWindowMissed)).await.is_err());
    assert_eq!(
        lost(&c, "claim_window_missed"),
        None,
        "reported before its record was stored"
    );
    assert!(miner.persist_pending().await.is_err(), "storage still refuses");
    assert_eq!(lost(&c, "claim_window_missed"), None);
    c.faults.refuse_writes(None);
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5), "reported once stored");
    miner.persist_pending().await.unwrap();
    miner.step().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5), "reported once");

    // Not stored, then the leadership is lost: nothing is reported by this miner.
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    change(&mut miner);
    assert!(miner.execute(loss(LossReason::ClaimNotIncluded)).await.is_err());
    miner.leave_leader_mode();
    c.faults.refuse_writes(None);
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_not_included"), None, "a deposed miner reported a loss");
}
