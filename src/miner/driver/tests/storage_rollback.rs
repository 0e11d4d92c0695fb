//! Storage that went back to an older session record than the leader last wrote (lost acknowledged writes: a
//! Redis failover the client did not see, a restored backup): the leader counts it in
//! `ha_miner_storage_rollback_detected_total{store}`, keeps leading and writes its own record over the older one
//! (module `persist`); a conflict with a newer record (a write that landed before this term) is not counted.

use super::*;

/// The value of `ha_miner_storage_rollback_detected_total{store="memory"}` (`None`: not served).
fn rollbacks(telemetry: &crate::telemetry::Telemetry) -> Option<u64> {
    telemetry
        .render_metrics()
        .lines()
        .find(|l| l.starts_with("ha_miner_storage_rollback_detected_total{store=\"memory\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Asserts that storage holds the leader's record of `key` (not what was written under it); returns its version.
async fn assert_leaders(miner: &Miner, plain: &storage::Storage, key: &SessionKey) -> u64 {
    let stored = plain
        .sessions
        .get(&key.supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap();
    let record: SessionRecord = serde_json::from_slice(&stored.data).unwrap();
    let leaders = miner.engine.session(key).unwrap();
    assert_eq!(
        (&record.key, record.relays, record.state),
        (&leaders.key, leaders.relays, leaders.state)
    );
    stored.version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_stored_record_than_the_leaders_is_counted_and_written_over() {
    let Claimed {
        f,
        mut miner,
        plain,
        telemetry,
        ..
    } = claimed(genesis()).await;
    assert_eq!(rollbacks(&telemetry), Some(0), "served at 0 before any rollback");
    let key = f.key.clone();
    let leaders = plain
        .sessions
        .get(&key.supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        leaders.version >= 2,
        "the leader wrote the record more than once: {}",
        leaders.version
    );

    // A conflict with a newer record than the leader wrote (another instance's write that landed before this
    // term, as the write path assumes): overwritten, not a rollback.
    plain
        .sessions
        .put(
            &key.supplier,
            &key.session_id,
            "active",
            b"newer".to_vec(),
            leaders.version,
        )
        .await
        .unwrap();
    miner.stored.remove(&key);
    assert_eq!(
        miner
            .persist(std::slice::from_ref(&key), &mut Vec::new())
            .await
            .unwrap(),
        1
    );
    assert_eq!(rollbacks(&telemetry), Some(0), "a newer record is no rollback");
    assert_leaders(&miner, &plain, &key).await;

    // Storage goes back to its first version of the record: older than the leader's last write.
    plain
        .sessions
        .delete(&key.supplier, &key.session_id, None)
        .await
        .unwrap();
    plain
        .sessions
        .put(&key.supplier, &key.session_id, "active", b"an older copy".to_vec(), 0)
        .await
        .unwrap();
    miner.stored.remove(&key);
    assert_eq!(
        miner
            .persist(std::slice::from_ref(&key), &mut Vec::new())
            .await
            .unwrap(),
        1
    );
    assert_eq!(rollbacks(&telemetry), Some(1), "{}", telemetry.render_metrics());

    // The decision is unchanged: still leading, the leader's record stored over the older one.
    assert!(miner.engine.is_leader());
    assert_eq!(assert_leaders(&miner, &plain, &key).await, 2, "written over version 1");
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
    assert_eq!(rollbacks(&telemetry), Some(1), "counted once");
}
