//! The relay log the driver's tests put under a leader ([`hook_relay_log`]): everything goes to the log it wraps,
//! except that its reads (`read`, `read_pending`, `claim`) fail while a test says so, for every supplier or one,
//! switched at run time ([`ReadFaults`]: a miner that cannot keep up with its log, a supplier whose log storage
//! cannot read), and that it can append behind each read of new entries ([`AfterRead`]: a relayer serving while
//! the miner ingests). One wrapper, so each test states only what it changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::{Backlog, EntryId, LogEntry, MinedRelay, RelayLog, StorageError};

use crate::miner::driver::Miner;

/// Whose reads a [`HookedLog`] refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(in crate::miner::driver) enum Failing {
    /// Nobody's: every read goes through.
    #[default]
    None,
    /// Every supplier's.
    All,
    /// This supplier's only.
    Supplier(String),
}

/// The switch of a [`HookedLog`]'s read failures, held by the test (clones share it).
#[derive(Debug, Clone, Default)]
pub(in crate::miner::driver) struct ReadFaults(Arc<Mutex<Failing>>);

impl ReadFaults {
    /// From now on the reads of `failing` fail (`StorageError::Unavailable("read refused")`).
    pub(in crate::miner::driver) fn set(&self, failing: Failing) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = failing;
    }

    fn check(&self, supplier: &str) -> Result<(), StorageError> {
        let fails = match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Failing::None => false,
            Failing::All => true,
            Failing::Supplier(s) => s == supplier,
        };
        if fails {
            return Err(StorageError::Unavailable("read refused".into()));
        }
        Ok(())
    }
}

type Appends = Box<dyn Fn() -> Vec<MinedRelay> + Send + Sync>;
type Then = Box<dyn Fn() + Send + Sync>;

/// What a [`HookedLog`] does after every successful read of new entries: it appends what `appends` returns (after
/// the read, as a relayer's appends land while a batch is being committed) and, when that was not nothing, runs
/// `then` (e.g. the chain producing a block).
pub(in crate::miner::driver) struct AfterRead {
    appends: Appends,
    then: Then,
}

impl AfterRead {
    /// Appends what `appends` returns after each read, nothing else.
    pub(in crate::miner::driver) fn appending(appends: impl Fn() -> Vec<MinedRelay> + Send + Sync + 'static) -> Self {
        Self {
            appends: Box::new(appends),
            then: Box::new(|| {}),
        }
    }

    /// Also runs `then` after each read that appended something.
    pub(in crate::miner::driver) fn then(self, then: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            then: Box::new(then),
            ..self
        }
    }
}

/// The relay log `inner` with a test's read failures and appends (module docs).
struct HookedLog {
    inner: Arc<dyn RelayLog>,
    faults: ReadFaults,
    after_read: Option<AfterRead>,
}

/// Puts a [`HookedLog`] over the relay log of `miner`'s fenced view (made when it became leader: the miner reads
/// through it), appending as `after_read` says, and returns the switch of its read failures (none fail yet).
pub(in crate::miner::driver) fn hook_relay_log(miner: &mut Miner, after_read: Option<AfterRead>) -> ReadFaults {
    let faults = ReadFaults::default();
    let fenced = miner.fenced.as_mut().expect("a leader's fenced view");
    fenced.relay_log = Arc::new(HookedLog {
        inner: fenced.relay_log.clone(),
        faults: faults.clone(),
        after_read,
    });
    faults
}

#[async_trait::async_trait]
impl RelayLog for HookedLog {
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError> {
        self.inner.append(relays).await
    }
    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        self.faults.check(supplier)?;
        let out = self.inner.read(supplier, consumer, max).await?;
        if let Some(after) = &self.after_read {
            let more = (after.appends)();
            if !more.is_empty() {
                self.inner.append(more).await?;
                (after.then)();
            }
        }
        Ok(out)
    }
    async fn read_pending(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        self.faults.check(supplier)?;
        self.inner.read_pending(supplier, consumer, max).await
    }
    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.faults.check(supplier)?;
        self.inner.claim(supplier, consumer, min_idle, max).await
    }
    async fn ack(&self, supplier: &str, ids: &[EntryId]) -> Result<u64, StorageError> {
        self.inner.ack(supplier, ids).await
    }
    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        self.inner.trim_session(supplier, session_id).await
    }
    async fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        self.inner.session_relay_hashes(supplier, session_id).await
    }
    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        self.inner.backlog(supplier).await
    }
    async fn suppliers(&self) -> Result<Vec<String>, StorageError> {
        self.inner.suppliers().await
    }
}
