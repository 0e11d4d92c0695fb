//! Miners whose leadership view lags (a raft node's applied view between ticks): [`LaggingView`], and
//! [`Confirming`], a leader over one that ingested and reached the claim window, for the tests of the
//! confirmation a leader asks for before each submission.

use super::*;

/// A leadership view that can lag: once frozen, `leader()` keeps answering what it was frozen with (a raft
/// node's applied view between ticks); campaign, renew and resign always reach the storage. Renewals can be
/// held (write-lock `hold`), as a raft commit is while its leader is cut off; `renewals` counts those started.
pub(super) struct LaggingView {
    pub(super) inner: Arc<dyn Leadership>,
    pub(super) frozen: Mutex<Option<Option<LeaderInfo>>>,
    pub(super) hold: tokio::sync::RwLock<()>,
    pub(super) renewals: std::sync::atomic::AtomicUsize,
    /// Renewals numbered (from 0) below this one are never held.
    pub(super) hold_from: std::sync::atomic::AtomicUsize,
}

impl LaggingView {
    pub(super) fn over(inner: Arc<dyn Leadership>) -> Self {
        Self {
            inner,
            frozen: Mutex::new(None),
            hold: tokio::sync::RwLock::new(()),
            renewals: std::sync::atomic::AtomicUsize::new(0),
            hold_from: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(super) fn set(&self, v: Option<Option<LeaderInfo>>) {
        *self.frozen.lock().unwrap() = v;
    }
}

pub(super) type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

// `Leadership` is an `async_trait` trait; this crate does not depend on `async_trait`, so the impl is written
// in the form the macro expands to.
impl Leadership for LaggingView {
    fn campaign<'s, 'e, 'c, 'a>(
        &'s self,
        election: &'e str,
        candidate: &'c str,
        ttl: Duration,
    ) -> Answer<'a, Option<u64>>
    where
        's: 'a,
        'e: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.inner.campaign(election, candidate, ttl)
    }

    fn renew<'s, 'e, 'c, 'a>(
        &'s self,
        election: &'e str,
        candidate: &'c str,
        token: u64,
        ttl: Duration,
    ) -> Answer<'a, bool>
    where
        's: 'a,
        'e: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            let n = self.renewals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n >= self.hold_from.load(std::sync::atomic::Ordering::SeqCst) {
                let _held = self.hold.read().await;
                return self.inner.renew(election, candidate, token, ttl).await;
            }
            self.inner.renew(election, candidate, token, ttl).await
        })
    }

    fn resign<'s, 'e, 'c, 'a>(&'s self, election: &'e str, candidate: &'c str, token: u64) -> Answer<'a, bool>
    where
        's: 'a,
        'e: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.inner.resign(election, candidate, token)
    }

    fn leader<'s, 'e, 'a>(&'s self, election: &'e str) -> Answer<'a, Option<LeaderInfo>>
    where
        's: 'a,
        'e: 'a,
        Self: 'a,
    {
        let frozen = self.frozen.lock().unwrap().clone();
        match frozen {
            Some(v) => Box::pin(std::future::ready(Ok(v))),
            None => self.inner.leader(election),
        }
    }

    fn watch<'s, 'e, 'a>(&'s self, election: &'e str) -> Answer<'a, watch::Receiver<Option<LeaderInfo>>>
    where
        's: 'a,
        'e: 'a,
        Self: 'a,
    {
        self.inner.watch(election)
    }
}

/// A leader miner (with metrics) whose leadership goes through a [`LaggingView`] over a memory backend, after
/// ingesting relays 0..5 and with the chain at the claim window's opening.
pub(super) struct Confirming {
    pub(super) f: Fixture,
    pub(super) plain: storage::Storage,
    /// The fault plan of `plain`'s memory backend.
    pub(super) faults: storage::memory::Faults,
    pub(super) view: Arc<LaggingView>,
    pub(super) telemetry: crate::telemetry::Telemetry,
    pub(super) schedule: crate::miner::lifecycle::Schedule,
}

impl Confirming {
    pub(super) async fn new() -> (Self, Miner) {
        let f = fixture().await;
        let backend = MemoryBackend::new();
        let faults = backend.faults().clone();
        let plain = backend.storage();
        let view = Arc::new(LaggingView::over(plain.leadership.clone()));
        let mut storage = plain.clone();
        storage.leadership = view.clone();
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let mut miner = Miner::new(f.client.clone(), storage, f.keyring.clone(), config("a"))
            .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
        let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
        let c = Self {
            f,
            plain,
            faults,
            view,
            telemetry,
            schedule,
        };
        (c, miner)
    }

    /// Runs one step whose leadership confirmation before the claim is held until `meanwhile` ran.
    pub(super) async fn step_holding_the_confirmation(
        &self,
        miner: Miner,
        meanwhile: impl AsyncFnOnce(&Self),
    ) -> Miner {
        self.step_holding_the_nth_confirmation(miner, 1, meanwhile).await
    }

    /// Runs one step whose `n`th leadership confirmation (1: the one before the claim is built into a tx; 2: the
    /// last one right before the tx leaves) is held until `meanwhile` ran; the ones before pass.
    pub(super) async fn step_holding_the_nth_confirmation(
        &self,
        mut miner: Miner,
        n: usize,
        meanwhile: impl AsyncFnOnce(&Self),
    ) -> Miner {
        let held = self.view.hold.write().await;
        let before = self.view.renewals.load(std::sync::atomic::Ordering::SeqCst);
        self.view
            .hold_from
            .store(before + n - 1, std::sync::atomic::Ordering::SeqCst);
        let stalled = tokio::spawn(async move {
            miner.step().await.unwrap();
            miner
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.view.renewals.load(std::sync::atomic::Ordering::SeqCst) < before + n {
            assert!(
                std::time::Instant::now() < deadline,
                "the miner never confirmed its leadership"
            );
            tokio::task::yield_now().await;
        }
        meanwhile(self).await;
        drop(held);
        let miner = stalled.await.unwrap();
        self.view.hold_from.store(0, std::sync::atomic::Ordering::SeqCst);
        miner
    }

    /// Instance "a" (token `token`) resigns and instance "b" takes the leadership.
    pub(super) async fn hand_the_leadership_to_b(&self, token: u64) {
        assert!(self.plain.leadership.resign(ELECTION, "a", token).await.unwrap());
        let b = self
            .plain
            .leadership
            .campaign(ELECTION, "b", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(b.is_some(), "b did not get the leadership");
    }

    /// `ha_miner_claim_errors_total{reason}`.
    pub(super) fn claim_errors(&self, reason: &str) -> Option<u64> {
        self.telemetry
            .render_metrics()
            .lines()
            .find(|l| l.starts_with("ha_miner_claim_errors_total") && l.contains(&format!("reason=\"{reason}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The engine decided to send the claim at the window's opening, no node was reached, and the error counter
    /// took it once under `reason` (never as `retryable`, a node's refusal). A send no node took is taken back
    /// (the record holds no send), so it is repeated at the next block if the window still allows.
    pub(super) fn assert_decided_but_not_sent(&self, miner: &Miner, reason: &str) {
        let record = miner.engine.session(&self.f.key).unwrap();
        assert_eq!(record.claim_sent_at, Vec::<i64>::new(), "the send was taken back");
        assert!(!record.claim_reached_node, "the claim was broadcast ({reason})");
        assert!(
            !record.is_claim_built(),
            "a claim that never left froze the trie ({reason})"
        );
        assert_eq!(self.claim_errors(reason), Some(1));
        assert_eq!(self.claim_errors("retryable"), None);
    }

    pub(super) fn no_claim_on_chain(&self) {
        assert!(
            self.f.chain.records().iter().all(|r| r.kind != "claim"),
            "a claim reached the chain: {:?}",
            self.f.chain.records()
        );
    }
}
