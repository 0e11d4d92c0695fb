//! Fault injection for the relay WAL's tests: the segment `pwrite`, its `fdatasync`, the apply of a record to
//! redb (after a write or during recovery), the reply of a checkpoint and the redb writer's durable commits run
//! through a [`FaultHook`], which in test builds may replace the call's result with an error.
//!
//! Why here and not a mock: the crash-safety claims (a failed write is not acknowledged and burns its
//! sequences; a failed apply leaves the record in the WAL and makes the WAL unavailable until a reopen
//! recovers it) are about real files and a real redb underneath; only one result is swapped.
//!
//! In non-test builds [`FaultHook`] is a zero-sized type whose [`FaultHook::run`] just calls the closure, so
//! it costs nothing.

/// Where a fault can be injected; each names the record concerned by its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Site {
    /// The `pwrite` of the record into the active segment.
    Write(u64),
    /// The `fdatasync` after that write.
    Sync(u64),
    /// Applying the record to redb, inside the redb writer's transaction (the WAL thread's hand-off, not
    /// recovery).
    Apply(u64),
    /// Applying the record to redb during recovery at open (all pending records share one transaction).
    Recover(u64),
    /// The reply of the checkpoint covering records up to this one: the durable commit happens, only what the
    /// WAL thread hears of it is replaced (as when the commit's `fsync` reported an error).
    CheckpointReply(u64),
    /// The WAL thread took the reply of a checkpoint that succeeded, covering records up to this one, and
    /// recycled what it could: only observed (its fault is ignored), so tests can wait for that point.
    CheckpointTaken(u64),
    /// The commit of a durable transaction by the redb writer (any op's, not only the WAL's): a fault aborts it
    /// instead, as an I/O error of the commit (a full disk) would.
    DurableCommit,
}

#[cfg(test)]
pub(crate) use enabled::{Fault, FaultHook};

#[cfg(not(test))]
pub(crate) use disabled::FaultHook;

#[cfg(test)]
mod enabled {
    use std::sync::Arc;

    use super::Site;

    /// What an injected fault does to the call.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// The call is not made; an error is returned instead.
        Instead,
        /// The call is made (its effect may reach the disk or the transaction) and its result is replaced
        /// with an error.
        After,
    }

    type Decide = dyn Fn(Site) -> Option<Fault> + Send + Sync;

    /// Asks a test's closure, at each [`Site`], whether to inject a [`Fault`] (the closure may also block, to
    /// hold a thread at a known point).
    #[derive(Clone)]
    pub(crate) struct FaultHook(Option<Arc<Decide>>);

    impl std::fmt::Debug for FaultHook {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0.is_some() {
                "FaultHook(set)"
            } else {
                "FaultHook(none)"
            })
        }
    }

    impl FaultHook {
        /// The hook that never injects anything.
        pub(crate) fn none() -> Self {
            Self(None)
        }

        /// A hook asking `decide` at every site.
        pub(crate) fn new(decide: impl Fn(Site) -> Option<Fault> + Send + Sync + 'static) -> Self {
            Self(Some(Arc::new(decide)))
        }

        /// Runs `call` at `site`, or not, as the test's closure decides; an injected failure is
        /// `injected("injected fault at …")`.
        pub(crate) fn run<T, E>(
            &self,
            site: Site,
            call: impl FnOnce() -> Result<T, E>,
            injected: impl FnOnce(String) -> E,
        ) -> Result<T, E> {
            let Some(decide) = &self.0 else {
                return call();
            };
            match decide(site) {
                None => call(),
                Some(Fault::Instead) => Err(injected(format!("injected fault instead of {site:?}"))),
                Some(Fault::After) => {
                    let _ = call();
                    Err(injected(format!("injected fault after {site:?}")))
                }
            }
        }
    }
}

#[cfg(not(test))]
mod disabled {
    use super::Site;

    /// No faults outside tests (zero-sized).
    #[derive(Debug, Clone)]
    pub(crate) struct FaultHook;

    impl FaultHook {
        /// The hook that never injects anything.
        pub(crate) fn none() -> Self {
            Self
        }

        /// Runs `call`.
        #[inline(always)]
        pub(crate) fn run<T, E>(
            &self,
            _site: Site,
            call: impl FnOnce() -> Result<T, E>,
            _injected: impl FnOnce(String) -> E,
        ) -> Result<T, E> {
            call()
        }
    }
}
