//! The conformance suite and fault injection on the memory backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use storage::suite::{self, Fixture};
use storage::{MemoryBackend, StorageError};

fn fixture() -> Fixture {
    Fixture::new(MemoryBackend::new().storage())
}

#[tokio::test]
async fn conformance() {
    suite::run_all(|| async { fixture() }).await;
}

#[tokio::test(start_paused = true)]
async fn conformance_time_based_under_paused_clock() {
    suite::kv_ttl(fixture()).await;
    suite::kv_increment_once_ttl(fixture()).await;
    suite::leadership_takeover(fixture()).await;
    suite::fencing_takeover(fixture()).await;
}

#[tokio::test]
async fn fail_nth_write_and_refuse_writes() {
    let mem = MemoryBackend::new();
    let s = mem.storage();
    mem.faults().fail_nth_write(2, StorageError::OutOfMemory("full".into()));
    s.relay_log.append(vec![suite::relay("a", "s", 1)]).await.unwrap();
    let err = s.relay_log.append(vec![suite::relay("a", "s", 2)]).await.unwrap_err();
    assert!(matches!(err, StorageError::OutOfMemory(_)) && err.is_retryable());
    s.relay_log.append(vec![suite::relay("a", "s", 3)]).await.unwrap();
    let got = s.relay_log.read("a", "c", 10).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.relay.relay_hash.clone()).collect::<Vec<_>>(),
        vec![
            suite::relay("a", "s", 1).relay_hash,
            suite::relay("a", "s", 3).relay_hash
        ]
    );

    mem.faults()
        .refuse_writes(Some(StorageError::OutOfMemory("maxmemory".into())));
    assert!(s.kv.set("k", b"v".to_vec(), None).await.unwrap_err().is_retryable());
    assert!(
        s.leadership
            .campaign("global", "me", Duration::from_secs(5))
            .await
            .unwrap_err()
            .is_retryable()
    );
    let mut ns = s.tries.open("a", "s").await.unwrap();
    assert!(
        ns.write_batch(storage::NodeBatch {
            puts: vec![(vec![1], vec![2])],
            deletes: vec![]
        })
        .is_err()
    );
    assert_eq!(s.kv.get("k").await.unwrap(), None, "reads still work");
    mem.faults().refuse_writes(None);
    s.kv.set("k", b"v".to_vec(), None).await.unwrap();
    assert_eq!(mem.faults().writes(), 7);
}

#[tokio::test]
async fn stall_release_and_crash_lose_only_unacknowledged_writes() {
    let mem = MemoryBackend::new();
    let s = mem.storage();
    s.relay_log.append(vec![suite::relay("a", "s", 0)]).await.unwrap();
    mem.faults().stall_writes();
    let log = s.relay_log.clone();
    let stalled = tokio::spawn(async move { log.append(vec![suite::relay("a", "s", 1)]).await });
    mem.faults().wait_stalled(1).await;
    assert_eq!(
        s.relay_log.backlog("a").await.unwrap().undelivered,
        1,
        "stalled write not applied yet"
    );
    mem.faults().release_writes();
    stalled.await.unwrap().unwrap();
    assert_eq!(s.relay_log.backlog("a").await.unwrap().undelivered, 2);

    mem.faults().stall_writes();
    let mut lost = Vec::new();
    for n in 2..5 {
        let log = s.relay_log.clone();
        lost.push(tokio::spawn(async move {
            log.append(vec![suite::relay("a", "s", n)]).await
        }));
    }
    mem.faults().wait_stalled(3).await;
    mem.faults().crash();
    for h in lost {
        let err = h.await.unwrap().unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)));
    }
    let got = s.relay_log.read("a", "c", 10).await.unwrap();
    assert_eq!(got.len(), 2, "acknowledged writes survive, the stalled tail is lost");
    s.relay_log.append(vec![suite::relay("a", "s", 9)]).await.unwrap();
}
