//! One ingest round under steady load: it takes the log as it is and leaves what arrives meanwhile to the next
//! tick.

use super::*;

/// The relay log of a relayer that keeps serving while the miner ingests: every read of new entries appends
/// `per_read` more relays behind it (after the read), as appends land while a batch is being committed.
struct BusyRelayer {
    inner: Arc<dyn storage::RelayLog>,
    supplier: String,
    header: SessionHeader,
    per_read: u64,
    next: Mutex<u64>,
    reads: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl storage::RelayLog for BusyRelayer {
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<storage::EntryId>, StorageError> {
        self.inner.append(relays).await
    }
    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<storage::LogEntry>, StorageError> {
        let out = self.inner.read(supplier, consumer, max).await?;
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let from = {
            let mut next = self.next.lock().unwrap();
            *next += self.per_read;
            *next - self.per_read
        };
        let more = relays(&self.supplier, &self.header, from..from + self.per_read);
        self.inner.append(more).await?;
        Ok(out)
    }
    async fn read_pending(
        &self,
        supplier: &str,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<storage::LogEntry>, StorageError> {
        self.inner.read_pending(supplier, consumer, max).await
    }
    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<storage::LogEntry>, StorageError> {
        self.inner.claim(supplier, consumer, min_idle, max).await
    }
    async fn ack(&self, supplier: &str, ids: &[storage::EntryId]) -> Result<u64, StorageError> {
        self.inner.ack(supplier, ids).await
    }
    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        self.inner.trim_session(supplier, session_id).await
    }
    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        self.inner.backlog(supplier).await
    }
}

/// One ingest round takes the log as it is and leaves what arrives meanwhile to the next tick: under steady
/// load it used to chase the log in batches of a few relays, each with its own trie commit, record write and
/// ack (~1,100 durable commits per second at 2,000 relays/s), until the relayer paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_round_stops_at_the_first_partial_batch_instead_of_chasing_new_appends() {
    let Fixture {
        client,
        supplier,
        header,
        keyring,
        key,
        ..
    } = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), keyring, config("a"));
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
    // The miner reads through its fenced view (made when it became leader); the busy relayer goes in there.
    let fenced = miner.fenced.as_mut().unwrap();
    let busy = Arc::new(BusyRelayer {
        inner: fenced.relay_log.clone(),
        supplier: supplier.clone(),
        header: header.clone(),
        per_read: 5,
        next: Mutex::new(600),
        reads: Default::default(),
    });
    fenced.relay_log = busy.clone();
    let ingested = |m: &Miner| m.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let reads = || busy.reads.load(std::sync::atomic::Ordering::Relaxed);

    plain
        .relay_log
        .append(relays(&supplier, &header, 0..600))
        .await
        .unwrap();
    // Read 1: a full batch of 512 (5 more arrive); read 2: the remaining 88 + those 5, fewer than a full batch,
    // so the round ends; the 5 that arrived during read 2 wait.
    miner.step().await.unwrap();
    assert_eq!((ingested(&miner), reads()), (605, 2));
    assert_eq!(
        plain.relay_log.backlog(&supplier).await.unwrap(),
        Backlog {
            undelivered: 5,
            pending: 0
        }
    );
    assert_eq!(miner.engine.session(&key).unwrap().relays, 605);
    // The next tick takes them (and again leaves the 5 that arrived while it read).
    miner.step().await.unwrap();
    assert_eq!((ingested(&miner), reads()), (610, 3));
    assert_eq!(miner.engine.session(&key).unwrap().relays, 610);
}
