//! Test-only fault hooks of the watchdog's process tests (`tests/integration/raft_miner_hung.rs`): a miner loop
//! that hangs in a real `relay-miner run` process, and a hung bound short enough for a test to wait out.
//!
//! Set through `RELAY_MINER_TEST_*` environment variables, read once at start (a process that has one set logs
//! so at WARN): a hang cannot be brought about from outside the process while its chain reads work, and the real
//! bound is minutes. Never set them in production.
//!
//! - [`HANG_MINER_FILE`]`=<path>`: once that file exists, the miner's future is never polled again: its loop
//!   stops where it awaits, as on an await that never returns (its heartbeat and its counters stop; it holds what
//!   it held). The file is looked for at each poll of the miner's future (every tick at least).
//! - [`HUNG_AFTER_MS`]`=<ms>`: the miner counts as hung after this long without progress, instead of
//!   `choice::hung_after`.

use std::future::Future;
use std::path::PathBuf;
use std::task::Poll;
use std::time::Duration;

/// The file whose existence hangs the miner loop.
pub const HANG_MINER_FILE: &str = "RELAY_MINER_TEST_HANG_MINER_FILE";
/// The hung bound in milliseconds.
pub const HUNG_AFTER_MS: &str = "RELAY_MINER_TEST_HUNG_AFTER_MS";

/// The test faults armed in this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TestFaults {
    /// [`HANG_MINER_FILE`].
    pub hang_miner_file: Option<PathBuf>,
    /// [`HUNG_AFTER_MS`].
    pub hung_after: Option<Duration>,
}

impl TestFaults {
    /// The faults the process environment arms (none normally); a WARN names each one armed, an ERROR a value
    /// that does not parse (ignored).
    pub(crate) fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let hang_miner_file = var(HANG_MINER_FILE).filter(|v| !v.is_empty()).map(PathBuf::from);
        let hung_after = var(HUNG_AFTER_MS).and_then(|v| match v.trim().parse::<u64>() {
            // At least a second: 0 would publish this node stalled at once and hand the leadership off at
            // every slot, should the variable ever be set outside a test.
            Ok(ms) => Some(Duration::from_millis(ms.max(1_000))),
            Err(e) => {
                tracing::error!(variable = HUNG_AFTER_MS, value = v, error = %e, "test fault ignored: not a number");
                None
            }
        });
        let faults = Self {
            hang_miner_file,
            hung_after,
        };
        if faults != Self::default() {
            tracing::warn!(faults = ?faults, "test faults armed (RELAY_MINER_TEST_*): never in production");
        }
        faults
    }

    /// `miner` (the miner's loop), hanging for good once [`HANG_MINER_FILE`] exists when armed; as it is
    /// otherwise.
    pub(crate) fn hangable<F>(&self, miner: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let file = self.hang_miner_file.clone();
        async move {
            let Some(file) = file else {
                return miner.await;
            };
            let mut miner = std::pin::pin!(miner);
            let mut hung = false;
            std::future::poll_fn(|cx| {
                if !hung && file.exists() {
                    hung = true;
                    tracing::error!(file = %file.display(), "test fault: the miner loop hangs from now on");
                }
                if hung {
                    // Never polled again: the loop stays where it awaits. The wakers it registered may still call
                    // here; they find it hung.
                    return Poll::Pending;
                }
                miner.as_mut().poll(cx)
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn faults_come_from_their_variables_only() {
        assert_eq!(TestFaults::from_vars(|_| None), TestFaults::default());
        let vars = |name: &str| match name {
            HANG_MINER_FILE => Some("/tmp/hang".to_string()),
            HUNG_AFTER_MS => Some("2500".to_string()),
            _ => None,
        };
        assert_eq!(
            TestFaults::from_vars(vars),
            TestFaults {
                hang_miner_file: Some(PathBuf::from("/tmp/hang")),
                hung_after: Some(Duration::from_millis(2500)),
            }
        );
        let bad = |name: &str| (name == HUNG_AFTER_MS).then(|| "soon".to_string());
        assert_eq!(TestFaults::from_vars(bad), TestFaults::default());
    }

    /// A loop counting its iterations stops counting once the file exists, and stays stopped after it is gone.
    #[tokio::test]
    async fn the_loop_stops_once_the_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hang");
        let faults = TestFaults {
            hang_miner_file: Some(file.clone()),
            hung_after: None,
        };
        let count = Arc::new(AtomicU64::new(0));
        let looping = {
            let count = Arc::clone(&count);
            async move {
                loop {
                    count.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let task = tokio::spawn(faults.hangable(looping));
        let counted = |at_least: u64| {
            let count = Arc::clone(&count);
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while count.load(Ordering::Relaxed) < at_least {
                    assert!(tokio::time::Instant::now() < deadline, "the loop does not run");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        counted(3).await;
        std::fs::write(&file, b"").unwrap();
        // Hung at its next poll (its next 5 ms sleep's end): the count stops within a few of them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let stopped = loop {
            let seen = count.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            if count.load(Ordering::Relaxed) == seen {
                break seen;
            }
            assert!(tokio::time::Instant::now() < deadline, "the loop never stopped");
        };
        std::fs::remove_file(&file).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count.load(Ordering::Relaxed), stopped, "hung for good");
        assert!(!task.is_finished());
        task.abort();
    }
}
