//! Tests of the relay meter: charges, refunds, budgets and their sync with storage.

#![allow(clippy::unwrap_used)]
use super::*;

mod budget;
mod forget;
mod inflation;
mod lost_reply;

struct NoObserver;
impl MeterObserver for NoObserver {
    fn storage_error(&self, _: &'static str) {}
}

fn key() -> MeterKey {
    MeterKey {
        session_id: "s1".into(),
        supplier: "pokt1sup".into(),
    }
}

fn meter(kv: Arc<dyn storage::KvStore>, fail: FailBehavior) -> RelayMeter {
    let (_tx, rx) = watch::channel(0);
    RelayMeter::spawn(
        kv,
        fail,
        Duration::from_secs(60),
        Duration::from_secs(3600),
        rx,
        Arc::new(NoObserver),
    )
}

#[test]
fn budget_is_the_suppliers_share_of_the_stake() {
    // 1000 uPOKT, 2 suppliers → 500 uPOKT; 42 uPOKT per CU (42e6 / 1e6) → 11 CU (no inflation: see tests/inflation.rs).
    let b = Budget::from_stake(1000, None, 2, 1, InflationPerClaim::ZERO, 42_000_000, 1_000_000, 10);
    assert_eq!(b.limit_compute_units, 11);
}

fn shared(blocks: u64, offsets: [u64; 4]) -> crate::protocol::wire::SharedParams {
    crate::protocol::wire::SharedParams {
        num_blocks_per_session: blocks,
        claim_window_open_offset_blocks: offsets[0],
        claim_window_close_offset_blocks: offsets[1],
        proof_window_open_offset_blocks: offsets[2],
        proof_window_close_offset_blocks: offsets[3],
        ..Default::default()
    }
}

#[test]
fn pending_sessions_round_up_and_count_the_current_one() {
    // Mainnet-like: 60-block sessions, 9 blocks from session end to proof window close → 1 + current.
    assert_eq!(pending_sessions(&shared(60, [1, 4, 0, 4])), 2);
    // Exactly one session of windows: 1 + current; one block more rounds up.
    assert_eq!(pending_sessions(&shared(10, [1, 4, 1, 4])), 2);
    assert_eq!(pending_sessions(&shared(10, [1, 4, 2, 4])), 3);
    // 4-block sessions, 9 blocks: ceil(9 / 4) = 3, + current.
    assert_eq!(pending_sessions(&shared(4, [1, 4, 0, 4])), 4);
}

/// With mainnet-like params the stake pays two sessions at once: a supplier's budget in one is half of its
/// share of the stake, and the meter refuses at that half.
#[tokio::test]
async fn the_meter_refuses_at_the_share_of_one_of_the_pending_sessions() {
    let params = shared(60, [1, 4, 0, 4]);
    // 1,200 uPOKT, 2 suppliers → 600 each; 2 pending sessions → 300; 10 uPOKT per CU → 30 CU.
    let budget = Budget::from_stake(
        1_200,
        None,
        2,
        pending_sessions(&params),
        InflationPerClaim::ZERO,
        10_000_000,
        1_000_000,
        100,
    );
    assert_eq!(budget.limit_compute_units, 30);
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Open);
    for _ in 0..3 {
        m.charge(&key(), budget, 10).await.unwrap().commit();
    }
    assert!(matches!(
        m.charge(&key(), budget, 10).await,
        Err(MeterError::OverServiced {
            consumed: 30,
            limit: 30,
            ..
        })
    ));
}

#[tokio::test]
async fn refuses_over_service_and_refunds() {
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Open);
    let budget = Budget {
        limit_compute_units: 25,
        forget_at_height: 100,
    };
    let a = m.charge(&key(), budget, 10).await.unwrap();
    m.charge(&key(), budget, 10).await.unwrap().commit();
    assert!(matches!(
        m.charge(&key(), budget, 10).await,
        Err(MeterError::OverServiced {
            consumed: 20,
            limit: 25,
            ..
        })
    ));
    assert!(m.exhausted(&key(), 10));
    a.refund();
    assert!(!m.exhausted(&key(), 10));
    m.charge(&key(), budget, 10).await.unwrap().commit();
    m.sync().await;
    assert_eq!(store.kv.get(&storage_key(&key())).await.unwrap(), Some(b"20".to_vec()));
}

#[tokio::test]
async fn a_dropped_charge_is_refunded_and_a_committed_one_kept() {
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Open);
    let budget = Budget {
        limit_compute_units: 10,
        forget_at_height: 100,
    };
    let refunds = prometheus::IntCounter::new("refunds", "abandoned charges refunded").unwrap();
    let abandoned = m
        .charge(&key(), budget, 10)
        .await
        .unwrap()
        .count_abandoned_in(refunds.clone());
    assert!(m.exhausted(&key(), 10));
    drop(abandoned);
    assert!(!m.exhausted(&key(), 10));
    assert_eq!(refunds.get(), 1, "an abandoned charge's refund is counted");
    // Neither an explicit refund nor a commit counts as abandoned.
    m.charge(&key(), budget, 10)
        .await
        .unwrap()
        .count_abandoned_in(refunds.clone())
        .refund();
    m.charge(&key(), budget, 10)
        .await
        .unwrap()
        .count_abandoned_in(refunds.clone())
        .commit();
    assert!(m.exhausted(&key(), 10));
    assert_eq!(refunds.get(), 1);
    m.sync().await;
    assert_eq!(store.kv.get(&storage_key(&key())).await.unwrap(), Some(b"10".to_vec()));
}

#[tokio::test]
async fn storage_failures_fail_open_or_closed() {
    let backend = storage::MemoryBackend::new();
    let store = backend.storage();
    let budget = Budget {
        limit_compute_units: 1000,
        forget_at_height: 100,
    };
    let closed = meter(Arc::clone(&store.kv), FailBehavior::Closed);
    let open = meter(Arc::clone(&store.kv), FailBehavior::Open);
    let other = MeterKey {
        session_id: "s2".into(),
        ..key()
    };
    closed.charge(&key(), budget, 10).await.unwrap().commit();
    open.charge(&other, budget, 10).await.unwrap().commit();
    backend
        .faults()
        .refuse_writes(Some(storage::StorageError::OutOfMemory("full".into())));
    closed.sync().await;
    open.sync().await;
    assert!(matches!(
        closed.charge(&key(), budget, 10).await,
        Err(MeterError::Unavailable(_))
    ));
    assert!(closed.precheck(&key(), 1).is_err());
    open.charge(&other, budget, 10).await.unwrap().commit();
    backend.faults().refuse_writes(None);
    closed.sync().await;
    open.sync().await;
    closed.charge(&key(), budget, 10).await.unwrap().commit();
    // Nothing charged while storage failed was lost.
    assert_eq!(store.kv.get(&storage_key(&other)).await.unwrap(), Some(b"20".to_vec()));
}

/// A KV whose reads fail (after a delay, like a storage timeout) while `down`; counts the reads.
struct FlakyKv {
    inner: Arc<dyn storage::KvStore>,
    down: std::sync::atomic::AtomicBool,
    gets: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl storage::KvStore for FlakyKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, storage::StorageError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(storage::StorageError::Unavailable("down".into()));
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
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(storage::StorageError::Unavailable("down".into()));
        }
        self.inner.increment(key, delta, ttl).await
    }
    async fn increment_once(
        &self,
        key: &str,
        op: &storage::IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, storage::StorageError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(storage::StorageError::Unavailable("down".into()));
        }
        self.inner.increment_once(key, op, delta, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, storage::StorageError> {
        self.inner.delete(key).await
    }
}

/// Failing open, the first charges of a session share one failed read of its total (they do not retry it one
/// after the other, a storage timeout each), go on from local counts, and the sync brings in the shared total once storage
/// answers again. Failing closed, the relay is refused and the next one reads again.
#[tokio::test]
async fn a_failed_first_load_is_read_once_when_failing_open() {
    let store = storage::MemoryBackend::new().storage();
    let kv = Arc::new(FlakyKv {
        inner: Arc::clone(&store.kv),
        down: true.into(),
        gets: 0.into(),
    });
    let m = meter(kv.clone(), FailBehavior::Open);
    let budget = Budget {
        limit_compute_units: 1100,
        forget_at_height: 100,
    };
    let charges: Vec<_> = (0..100)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.charge(&key(), budget, 1).await.map(Charge::commit) })
        })
        .collect();
    for charge in charges {
        charge.await.unwrap().unwrap();
    }
    m.charge(&key(), budget, 1).await.unwrap().commit();
    // One read by the charges (the sync task's immediate first tick may read once more; its next is an hour
    // away). Before, each of the 101 charges read again after the previous one failed.
    let reads = kv.gets.load(std::sync::atomic::Ordering::SeqCst);
    assert!(reads <= 2, "{reads} reads for one session");
    // Another relayer consumed 990 meanwhile: the next successful sync adds ours (101) and reads the total.
    store.kv.increment(&storage_key(&key()), 990, None).await.unwrap();
    kv.down.store(false, std::sync::atomic::Ordering::SeqCst);
    m.sync().await;
    assert_eq!(
        store.kv.get(&storage_key(&key())).await.unwrap(),
        Some(b"1091".to_vec())
    );
    assert!(m.exhausted(&key(), 10));
    assert!(!m.exhausted(&key(), 9));

    kv.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let closed = meter(kv.clone(), FailBehavior::Closed);
    let other = MeterKey {
        session_id: "s2".into(),
        ..key()
    };
    let before = kv.gets.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2 {
        assert!(matches!(
            closed.charge(&other, budget, 1).await,
            Err(MeterError::Unavailable(_))
        ));
    }
    let reads = kv.gets.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(reads >= 2, "closed: each relay reads again ({reads})");
}

#[tokio::test]
async fn two_meters_share_the_total() {
    let store = storage::MemoryBackend::new().storage();
    let budget = Budget {
        limit_compute_units: 30,
        forget_at_height: 100,
    };
    let m1 = meter(Arc::clone(&store.kv), FailBehavior::Open);
    let m2 = meter(Arc::clone(&store.kv), FailBehavior::Open);
    for _ in 0..2 {
        m1.charge(&key(), budget, 10).await.unwrap().commit();
    }
    m1.sync().await;
    m2.charge(&key(), budget, 10).await.unwrap().commit();
    assert!(m2.charge(&key(), budget, 10).await.is_err());
    m2.sync().await;
    m1.sync().await;
    assert!(m1.charge(&key(), budget, 10).await.is_err());
}

/// The sync loop beats its heartbeat every round, with no session to sync too (architecture.md: every
/// background loop exports a heartbeat that advances while idle).
#[tokio::test]
async fn the_sync_loop_beats_its_heartbeat_while_idle() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let store = storage::MemoryBackend::new().storage();
    let (_tx, rx) = watch::channel(0);
    let _meter = RelayMeter::spawn(
        Arc::clone(&store.kv),
        FailBehavior::Open,
        Duration::from_secs(60),
        Duration::from_millis(10),
        rx,
        Arc::new(NoObserver),
    )
    .with_heartbeat(telemetry.heartbeat("relay_meter_sync"));
    telemetry.assert_heartbeat_advances("relay_meter_sync").await;
}
