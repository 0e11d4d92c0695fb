//! The storage error type shared by every backend.

/// Every storage method returns this; [`StorageError::is_retryable`] says whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The store refuses writes because it is out of memory (Redis `OOM command not allowed`). Retryable: writes
    /// resume once memory is freed.
    #[error("storage out of memory: {0}")]
    OutOfMemory(String),
    /// The store refuses relay-log appends because its memory is above the relay threshold, kept below its
    /// hard limit so the miner can still ingest what was accepted and prune (Redis: `used_memory` above
    /// `storage.redis.relay_max_memory_ratio` of `maxmemory`). Only appends get it; every other write goes on.
    /// Retryable: appends resume once the miner's ingest and pruning bring memory below the threshold.
    #[error("storage memory above the relay threshold: {0}")]
    RelayMemoryThreshold(String),
    /// The backend could not be reached or the connection dropped. Retryable.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The data read back is not what this version wrote. Not retryable.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure. Not retryable.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A compare-and-set precondition failed (stale version, lease held by someone else). Not retryable as is:
    /// re-read, then decide.
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// A fenced write was refused because its fence's candidate no longer holds the election with its token
    /// (a deposed leader). Nothing was written. Not retryable: the caller must stop acting as the leader.
    #[error("storage fenced: {0}")]
    Fenced(String),
    /// This one write is larger than the backend can hold (a raft entry's limit); nothing was written. Says
    /// nothing about the store's health: smaller writes succeed. Not retryable as is.
    #[error("storage refuses the write as too large: {0}")]
    TooLarge(String),
    /// The write was applied by the Redis primary, but fewer replicas than asked
    /// (`storage.redis.wait_replicas`) acknowledged it within the wait timeout (Redis `WAIT`): a failover that
    /// promotes a replica without it loses it, so it is not acknowledged. It may still be on the primary (and
    /// stay if no failover happens). Retryable: writes are acknowledged again once the replicas catch up.
    #[error(
        "storage write not acknowledged by replicas: {what}: {got} of {asked} replicas acknowledged it in time \
         (applied on the primary only; a failover may lose it)"
    )]
    NotReplicated {
        /// The write (`relay-log append`, `session record`, ...).
        what: String,
        /// Replicas asked for (`wait_replicas`).
        asked: u32,
        /// Replicas that acknowledged it within the timeout.
        got: u32,
    },
}

impl StorageError {
    /// Whether retrying the same call can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::OutOfMemory(_) | Self::RelayMemoryThreshold(_) | Self::Unavailable(_) | Self::NotReplicated { .. }
        )
    }
}
