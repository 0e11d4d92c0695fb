//! A session record this binary cannot decode (a newer version's, after a rollback; damaged bytes) is skipped
//! when the leader restores its supplier: it failed the whole restore before, so no instance could take the
//! leadership and no supplier's claims or proofs were sent. Skipped records are shown on
//! `ha_miner_session_records_undecodable{supplier}` (the log line alone is easily missed).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_does_not_keep_the_miner_from_leading_and_claiming() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    plain
        .sessions
        .put(
            &f.supplier,
            &"e".repeat(64),
            "active",
            b"{\"state\":\"from_the_future\"".to_vec(),
            0,
        )
        .await
        .unwrap();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    assert!(miner.engine.is_leader());
    let gauge = |telemetry: &crate::telemetry::Telemetry| {
        let text = telemetry.render_metrics();
        text.lines()
            .find(|l| l.starts_with("ha_miner_session_records_undecodable{"))
            .map(|l| {
                (
                    l.contains(&format!("supplier=\"{}\"", f.supplier)),
                    l.rsplit(' ').next().unwrap().to_owned(),
                )
            })
    };
    assert_eq!(
        gauge(&telemetry),
        Some((true, "1".to_owned())),
        "the skipped record is shown"
    );
    for _ in 0..2 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_claimed(&f, &[&f.key]).await;

    // Once the record is gone (a newer binary handled the session, or an operator removed it), the next restore
    // (a leadership gain) shows 0.
    assert!(plain.sessions.delete(&f.supplier, &"e".repeat(64), None).await.unwrap());
    miner.restore_supplier(&f.supplier).await.unwrap();
    assert_eq!(gauge(&telemetry), Some((true, "0".to_owned())));
}
