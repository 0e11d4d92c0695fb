//! The sync task forgets an entry once its session's claim window opened and nothing is left to sync; a charge
//! that took the entry from the meter before that is not lost with it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A KV over the memory backend whose first read waits until `released`; counts the reads.
struct HeldFirstRead {
    inner: Arc<dyn storage::KvStore>,
    reads: AtomicUsize,
    released: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl storage::KvStore for HeldFirstRead {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, storage::StorageError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = self.released.subscribe().wait_for(|r| *r).await;
        }
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), storage::StorageError> {
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, storage::StorageError> {
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, storage::StorageError> {
        self.inner.increment(key, delta, ttl).await
    }
    async fn increment_once(
        &self,
        key: &str,
        op: &storage::IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, storage::StorageError> {
        self.inner.increment_once(key, op, delta, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, storage::StorageError> {
        self.inner.delete(key).await
    }
}

/// A session's first charge takes its new entry from the meter, then waits for the session's total; meanwhile
/// the sync task (past the session's claim window) reads that total, finds nothing to sync and forgets the
/// entry. The charge then lands in an entry no sync sees: before, its compute units never reached storage (the
/// other relayers sharing the session never counted them). Now the charge sees the entry forgotten and takes a
/// new one, which the next sync sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_on_an_entry_forgotten_meanwhile_is_synced() {
    let store = storage::MemoryBackend::new().storage();
    let kv = Arc::new(HeldFirstRead {
        inner: Arc::clone(&store.kv),
        reads: 0.into(),
        released: watch::Sender::new(false),
    });
    // Past the session's claim window (`forget_at_height` 100), syncing every 5 ms.
    let (_height, rx) = watch::channel(200);
    let m = RelayMeter::spawn(
        kv.clone(),
        FailBehavior::Open,
        Duration::from_secs(60),
        Duration::from_millis(5),
        rx,
        Arc::new(NoObserver),
    );
    let budget = Budget {
        limit_compute_units: 100,
        forget_at_height: 100,
    };
    let charging = tokio::spawn({
        let m = m.clone();
        async move { m.charge(&key(), budget, 10).await.map(Charge::commit) }
    });
    // The charge took the entry and waits for the total; the sync task reads it too and forgets the entry.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while kv.reads.load(Ordering::SeqCst) < 2 || !m.inner.entries().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync task never forgot the entry"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    kv.released.send_replace(true);
    charging.await.unwrap().unwrap();
    m.sync().await;
    assert_eq!(
        store.kv.get(&storage_key(&key())).await.unwrap(),
        Some(b"10".to_vec()),
        "the charge reached storage"
    );
}
