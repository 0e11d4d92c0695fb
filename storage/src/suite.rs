//! The conformance suite every backend runs (memory, redb, Redis, raft).
//!
//! Each check is a public async function taking a fresh [`Fixture`]; [`run_all`] runs every check, each on a new
//! fixture from the caller's factory. Backend test files call either (see `storage/tests/`). Checks panic on
//! failure (this is test-support code). Time-based checks use short TTLs and poll with deadlines, never a bare
//! sleep as synchronisation, so they hold on a slow, shared machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod disk;
mod fence;
mod kv;
mod kv_once;
mod leader;
mod log;
mod log_suppliers;
mod records;
mod write_set;

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use crate::Storage;

pub use disk::{Tmpfs, fill};
pub use fence::{fencing_stale_token, fencing_takeover};
pub use kv::{kv_basics, kv_ttl};
pub use kv_once::{kv_increment_once, kv_increment_once_ttl, once};
pub use leader::{leadership_exclusive, leadership_takeover};
pub use log::{
    relay, relay_log_concurrent_appends, relay_log_order, relay_log_redelivery, relay_log_trim_session, trie_namespaces,
};
pub use log_suppliers::relay_log_suppliers;
pub use records::session_cas;
pub use write_set::write_sets;

/// One backend under test plus whatever must live as long as it (a temp dir, a server process).
pub struct Fixture {
    /// The backend's contract bundle.
    pub storage: Storage,
    /// Dropped after the check (e.g. `tempfile::TempDir`).
    pub guard: Box<dyn Any + Send>,
}

impl Fixture {
    /// A fixture that needs no guard.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            guard: Box::new(()),
        }
    }

    /// A fixture keeping `guard` alive.
    pub fn with_guard(storage: Storage, guard: impl Any + Send) -> Self {
        Self {
            storage,
            guard: Box::new(guard),
        }
    }
}

/// Deadline for every poll loop of the suite.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` every 10 ms until it returns `Some`, panicking after [`DEADLINE`] with `what`.
pub async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens the redb backend with `config`, retrying while an earlier in-process handle of the same file is still
/// shutting its threads down (redb then answers "already open"); any other failure panics.
pub async fn reopen_redb(config: crate::RedbConfig) -> crate::RedbBackend {
    poll_until("the database can be reopened", || {
        let config = config.clone();
        async move {
            match crate::RedbBackend::open(config).await {
                Ok(b) => Some(b),
                Err(crate::StorageError::Backend(msg)) if msg.contains("already open") => None,
                Err(e) => panic!("reopen failed: {e}"),
            }
        }
    })
    .await
}

/// Runs every check, each on a fresh fixture from `factory`.
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture>,
{
    relay_log_order(factory().await).await;
    relay_log_redelivery(factory().await).await;
    relay_log_trim_session(factory().await).await;
    relay_log_concurrent_appends(factory().await).await;
    relay_log_suppliers(factory().await).await;
    trie_namespaces(factory().await).await;
    session_cas(factory().await).await;
    write_sets(factory().await).await;
    leadership_exclusive(factory().await).await;
    leadership_takeover(factory().await).await;
    fencing_stale_token(factory().await).await;
    fencing_takeover(factory().await).await;
    kv_basics(factory().await).await;
    kv_ttl(factory().await).await;
    kv_increment_once(factory().await).await;
    kv_increment_once_ttl(factory().await).await;
}
