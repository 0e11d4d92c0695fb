//! The Redis backend: the storage contract on Redis, in the Go relay miner's key layout, hardened against the
//! failures the Go fleet hit (silent OOM in leader election, blocking reads stalling everything).
//!
//! # Connections
//! One [`redis::aio::ConnectionManager`] (multiplexed, reconnects with exponential backoff, response and
//! connection timeouts from [`RedisConfig`]) carries every non-blocking command. Blocking stream reads
//! (`XREADGROUP BLOCK`) would stall every command queued behind them on that shared connection, so they run
//! only on a [`BlockingReader`], which owns a dedicated connection whose response timeout exceeds its `BLOCK`.
//! The contract's own [`RelayLog::read`](crate::RelayLog::read) never blocks.
//!
//! Deployment: a standalone URL (`redis://`, `rediss://` with a TLS feature, `unix://`). Sentinel and cluster
//! are not wired: the crate offers them behind its `sentinel` / `cluster-async` features (not enabled in this
//! workspace), and the Lua scripts here touch several keys that do not share a hash tag (lease + token +
//! counter, session record + index sets), so a cluster would need `{...}` hash tags in [`keys`] first. Behind a
//! sentinel-managed primary, point the URL at the current primary (or a proxy that follows it).
//!
//! # Layout and round trips
//! Keys are in [`keys`]. Every batch is one round trip: an append of N relays is one pipeline of N `XADD`s,
//! a trie [`NodeBatch`](crate::NodeBatch) is one `MULTI`/`EXEC` of `HDEL` + `HSET`, compare-and-set is a Lua
//! script. Relay stream entries carry the caller's bytes in field `data` (the Go miner reads only that field)
//! plus `session`, `hash` and `end` so [`RelayLog::trim_session`](crate::RelayLog::trim_session) and readers
//! get the contract's keys back without decoding the payload. Entries written by a Go relayer lack those three
//! fields: they come back with an empty session id and relay hash (the caller decodes them from `data`) and
//! `trim_session` cannot match them.
//!
//! # Beside a Go fleet
//! During a migration the Go relayers and miners may share the Redis: a campaign is refused while a Go miner is
//! live (`go_fleet` module; miner readiness fails with [`NotReady::GoMinerActive`]); a Go miner started while
//! relay-miner leads is seen at the next lease renewal, which keeps the lease (miner readiness fails with
//! [`NotReady::GoMinerBesideLeader`]; the module says why it does not step down); relays pending for a consumer of
//! the group other than ours are counted as relays at risk at every read round; and the relay streams the Go
//! relayer gives a 2 h `EXPIRE` are `PERSIST`ed by appends and reads (`log` module).
//!
//! # Fencing
//! A fenced view ([`crate::Fencing`]) runs its writes as Lua scripts that check the lease and token keys first
//! (`fence` module, which also lists what is not fenced on Redis: stream deliveries).
//!
//! # Durability
//! An append is acknowledged when Redis has applied it. It survives a crash of the Redis server only if the
//! server runs with `appendonly yes` + `appendfsync always` (tested: kill -9 of the server, restart, every
//! acknowledged append is present). With `everysec` up to a second of acknowledged appends can be lost.
//!
//! Replication is asynchronous: a write the primary acknowledged can still be lost when Sentinel promotes a
//! replica that had not received it. [`RedisConfig::wait_replicas`] > 0 makes the writes whose loss costs money
//! (relay-log appends, session records, write sets, trie batches) wait for that many replicas with `WAIT` on a
//! dedicated connection; fewer in time fail an append with [`StorageError::NotReplicated`] and are counted for
//! the miner's writes, which stand (`replicas` module: what it guarantees and what not).
//!
//! Readiness fails while the server runs without AOF (`appendonly no`, the default of a plain `redis-server`:
//! RDB snapshots at best), unless `RedisConfig::require_aof` is off; `appendfsync` other than `always` is a WARN at
//! connect (`health` module).
//!
//! # OOM hardening
//! `OOM command not allowed` maps to [`StorageError::OutOfMemory`] (retryable) everywhere ([`error`]).
//! Leadership acquisitions that fail are counted by reason in [`RedisStats`] and logged at ERROR (OOM) / WARN
//! (other) with the consecutive-failure count; losing to another holder stays at DEBUG. [`RedisBackend::
//! start_memory_monitor`] polls `INFO MEMORY` and warns above the configured ratio;
//! [`RedisBackend::readiness`] answers PING, the eviction policy (`maxmemory-policy` must be `noeviction`, else
//! Redis deletes keys at maxmemory instead of refusing writes) and a small write with a typed [`NotReady`]
//! reason.
//!
//! # Relay memory threshold
//! At `maxmemory` Redis refuses the miner's trie writes too, so relays accepted but not ingested yet could not
//! be claimed (revenue lost, the Go fleet's failure mode). Relay-log appends are therefore refused earlier, with
//! [`StorageError::RelayMemoryThreshold`], while the memory Redis counts against `maxmemory` exceeds
//! [`RedisConfig::relay_max_memory_ratio`] of it: the relayers stop adding, and the miner keeps the rest to ingest what was accepted and to
//! prune (which frees memory; appends then resume on their own). Nothing else is subject to it: tries, session
//! records, leases, acks, trims, deletes and KV writes go on up to `maxmemory` (records and leases beyond it,
//! on Redis ≥ 7).
//!
//! What Redis counts is `used_memory` less `mem_not_counted_for_evict`, as Redis itself decides to refuse writes
//! (`evict.c`): replica output buffers and the AOF buffer are left out. They are transient (a replica's full
//! resync or a slow one, an AOF write postponed while a background fsync is slow) and Redis does not refuse
//! writes for them, so neither do we: counting them refused relays during a replica resync or a slow disk with
//! the dataset far below the threshold (test `redis_relay_threshold`: a replica that does not read its stream
//! takes `used_memory` to 0.6 of `maxmemory` with the dataset at a few percent).
//!
//! The check runs in Redis, in the append itself: one Lua script reads `INFO memory` and either refuses (error
//! `RELAYMEM`) or runs the `XADD`s, so the decision is never older than the append (the 30 s memory poll would
//! let relayers overshoot by rate × size × 30 s, e.g. 1,000 relays/s × 2 KiB × 30 s = 60 MiB) and sees
//! `maxmemory` changed at runtime. Measured on Redis 7.0 (`redis-benchmark` of the script, one 1 KB relay per
//! call, `INFO commandstats`): 13.3 µs of Redis CPU per append against 5.6–6.3 µs with the check off (`INFO
//! memory` alone: 4.0 µs; Lua patterns instead of `string.find`: 17 µs), so +7.3 µs per append, one round trip
//! as before: at 2,000 appends/s, 1.5 % of one Redis core. A script cannot read `INFO` when the command is
//! disabled: checked at connect, logged at WARN, and appends are then refused only at `maxmemory`.
//!
//! Default 0.9 (10 % of `maxmemory` for the miner). What the headroom must hold once appends are refused:
//! - one append past the threshold (scripts run one at a time, so only the last one overshoots): at most
//!   `relay_log.max_batch_relays` (512) relays, 1 MiB at 2 KiB each;
//! - one ingest batch, written to a trie before its stream entries are deleted: at most 16 MiB of relay bytes
//!   (the miner's `INGEST_BATCH_BYTES`);
//! - the rest of the backlog costs nothing net: a relay's trie records took 0.87 of its stream entry's memory
//!   (measured: 2,256 vs 2,591 bytes at a 2,000-byte relay, 605 vs 691 at 500), and its entry is deleted once
//!   ingested; so is a failover's backlog (rate × lease TTL: 60 MiB at 1,000 relays/s × 2 KiB × 30 s, already
//!   in `used_memory` when appends stop);
//! - session records, leases and claims: kilobytes.
//!
//! About 20 MiB: 10 % covers it from `maxmemory` 200 MiB on (a supplier's tries take gigabytes: every relay of
//! its unsettled sessions); below that, lower the ratio.

pub mod error;
mod fence;
mod go_fleet;
mod health;
pub mod keys;
mod kv;
mod leader;
mod log;
mod records;
mod replicas;
pub mod server;
mod stats;
mod trie;
mod write_set;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use crate::contract::{Fence, Fencing, LeaderInfo};
use crate::{Storage, StorageError};

pub use health::{MemoryMonitor, NotReady, Persistence};
pub use keys::Keys;
pub use leader::{INSTANCE_LOCK_REFRESH, INSTANCE_LOCK_TTL};
pub use log::{BACKLOG_COUNT_CAP, BlockingReader};
pub use replicas::DEFAULT_WAIT_TIMEOUT;
pub use stats::{AcquireFailure, MemorySnapshot, RedisStats};
pub use trie::{INLINE_MAX as TRIE_INLINE_MAX, RedisNodeStore};

/// Default [`RedisConfig::memory_warn_ratio`]: below the relay threshold, so the WARN comes first.
pub const DEFAULT_MEMORY_WARN_RATIO: f64 = 0.8;

/// Default [`RedisConfig::relay_max_memory_ratio`]: 10 % of `maxmemory` kept for the miner (module docs, "Relay
/// memory threshold", for the arithmetic).
pub const DEFAULT_RELAY_MAX_MEMORY_RATIO: f64 = 0.9;

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Server URL, e.g. `redis://127.0.0.1:6379/0`.
    pub url: String,
    /// Base prefix of every key (`ha` like the Go fleet).
    pub base_prefix: String,
    /// Consumer group of the relay streams (`None` = `{base}-miners`, the Go fleet's `ha-miners`).
    pub consumer_group: Option<String>,
    /// Max wait for a reply on the shared connection (the manager reconnects on IO errors).
    pub response_timeout: Duration,
    /// Max wait for a TCP connect + handshake.
    pub connection_timeout: Duration,
    /// Reconnect attempts per outage before a command fails (the next command starts a new round).
    pub reconnect_retries: usize,
    /// Cap of the reconnect backoff.
    pub reconnect_max_delay: Duration,
    /// `BLOCK` of [`BlockingReader`] reads; its connection's response timeout is this plus `response_timeout`.
    pub block_timeout: Duration,
    /// How often a leadership watcher polls the lease (changes made through this backend show at once).
    pub leader_watch_interval: Duration,
    /// Interval of the `INFO MEMORY` monitor.
    pub memory_poll_interval: Duration,
    /// The monitor warns when the memory Redis counts against `maxmemory` (`used_memory` less
    /// `mem_not_counted_for_evict`) over `maxmemory` exceeds this (below `relay_max_memory_ratio`, so the
    /// warning comes before relays are refused).
    pub memory_warn_ratio: f64,
    /// Relay-log appends are refused with [`StorageError::RelayMemoryThreshold`] while the memory Redis counts
    /// against `maxmemory` exceeds this share of it (module docs, "Relay memory threshold"); every other write
    /// goes on up to
    /// `maxmemory`. `1.0` (or more) turns it off: appends are then refused only at `maxmemory`, by Redis (OOM).
    /// Without a `maxmemory` (0) nothing is refused.
    pub relay_max_memory_ratio: f64,
    /// This process' name in the readiness probe key.
    pub instance_id: String,
    /// `COUNT` hint of the `HSCAN` that prefetches a trie namespace.
    pub trie_scan_count: usize,
    /// `rediss://` only: PEM CA certificate(s) the server's certificate must chain to, instead of the system's
    /// roots (`None` = the system's roots). TLS is rustls with the ring provider.
    pub tls_root_cert_pem: Option<Vec<u8>>,
    /// Readiness fails while the server runs without AOF (`appendonly no`; `health` module). `false` accepts it
    /// (logged at WARN at connect): a Redis restart then loses acknowledged relays and claimed tries.
    pub require_aof: bool,
    /// Entries pending for another consumer of the group (a dead one: every relay-miner miner reads as the same
    /// consumer, so these are a Go miner's or a renamed consumer's) idle this long are claimed into the reading
    /// consumer by [`RelayLog::read_pending`](crate::RelayLog::read_pending), at most once per this interval per
    /// stream while there are none left to take (the Go miner's `claim_idle_timeout_ms`). `None`: never.
    pub claim_idle_timeout: Option<Duration>,
    /// Replicas that must acknowledge (Redis `WAIT`) each relay-log append, session record write, write set and
    /// trie batch; fewer within [`RedisConfig::wait_timeout`] fail an append with [`StorageError::NotReplicated`]
    /// and are counted for the miner's writes, which stand (`replicas` module). `0` (default): acknowledged once
    /// the primary has it.
    pub wait_replicas: u32,
    /// How long a covered write waits for `wait_replicas` replicas (must be positive when they are asked for).
    pub wait_timeout: Duration,
}

impl RedisConfig {
    /// Defaults for `url`: prefix `ha`, 3 s response / 2 s connect timeouts, 6 reconnect attempts up to 2 s
    /// apart, 2 s `BLOCK`, 500 ms leader watch, 30 s memory poll warning above 80 %, relay appends refused
    /// above 90 % of `maxmemory` ([`DEFAULT_RELAY_MAX_MEMORY_RATIO`]).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            base_prefix: "ha".to_owned(),
            consumer_group: None,
            response_timeout: Duration::from_secs(3),
            connection_timeout: Duration::from_secs(2),
            reconnect_retries: 6,
            reconnect_max_delay: Duration::from_secs(2),
            block_timeout: Duration::from_secs(2),
            leader_watch_interval: Duration::from_millis(500),
            memory_poll_interval: Duration::from_secs(30),
            memory_warn_ratio: DEFAULT_MEMORY_WARN_RATIO,
            relay_max_memory_ratio: DEFAULT_RELAY_MAX_MEMORY_RATIO,
            instance_id: format!("relay-miner-{}", std::process::id()),
            trie_scan_count: 1000,
            tls_root_cert_pem: None,
            require_aof: true,
            claim_idle_timeout: Some(Duration::from_secs(60)),
            wait_replicas: 0,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
        }
    }

    /// The same settings under another base prefix.
    pub fn with_prefix(mut self, base: impl Into<String>) -> Self {
        self.base_prefix = base.into();
        self
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: RedisConfig,
    pub(crate) client: redis::Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) stats: Arc<RedisStats>,
    /// Streams whose consumer group this process has created or seen (saves an `XGROUP CREATE` per read).
    pub(crate) groups: Mutex<HashSet<String>>,
    /// Leadership watch channels by election (a poll task per entry while it has receivers).
    pub(crate) watchers: Mutex<HashMap<String, watch::Sender<Option<LeaderInfo>>>>,
    /// In-memory mirrors of open trie namespaces, shared by every handle of a namespace in this process.
    pub(crate) mirrors: Mutex<HashMap<String, Weak<trie::Mirror>>>,
    /// This process' nonce in the instance locks of the candidate names it campaigns under (`leader` module).
    pub(crate) nonce: String,
    /// Candidate names whose instance lock this process took (released by [`RedisBackend::release_instances`]).
    pub(crate) instances: Mutex<HashSet<String>>,
    /// A candidate name another live process campaigns under (its instance lock holds another nonce): this
    /// process must not lead under it, and miner readiness fails with [`NotReady::InstanceInUse`].
    pub(crate) instance_conflict: Mutex<Option<String>>,
    /// The live Go miner (the keys found) the last campaign was refused for (module `go_fleet`): miner
    /// readiness fails with [`NotReady::GoMinerActive`] while it is set.
    pub(crate) go_miner: Mutex<Option<String>>,
    /// The live Go miner (the keys found) the last renewal of this process' lease found beside it (module
    /// `go_fleet`): miner readiness fails with [`NotReady::GoMinerBesideLeader`] while it is set.
    pub(crate) go_miner_beside: Mutex<Option<String>>,
    /// Entries pending for foreign consumers of each relay stream's group and their number, by stream, at its
    /// last read round (module `go_fleet`).
    pub(crate) foreign: Mutex<HashMap<String, (u64, u64)>>,
    /// When the relay streams were last found with `SCAN` (module `log::suppliers`); `None` before the first.
    pub(crate) suppliers_swept: Mutex<Option<std::time::Instant>>,
    /// The last token a campaign of this process was granted, by election: a campaign granted another one
    /// gained the leadership, and the next relay-log listing sweeps (module `log::suppliers`).
    pub(crate) tokens_granted: Mutex<HashMap<String, u64>>,
    /// What the last read round of each relay stream saw of its group (module `log::taken`).
    pub(crate) group_reads: Mutex<log::GroupReadsByStream>,
    /// Whether the instance lock refresher runs (`leader` module).
    pub(crate) refresher_started: std::sync::atomic::AtomicBool,
    /// When `read_pending` last looked for idle entries of other consumers, by stream (`log` module).
    pub(crate) reclaimed: Mutex<HashMap<String, std::time::Instant>>,
    /// Whether the server runs scripts with flags (Redis ≥ 7): the `allow-oom` twins are used (`fence` module).
    pub(crate) script_flags: std::sync::atomic::AtomicBool,
    /// Whether a script can read `INFO memory` (checked at connect): relay appends then check the relay memory
    /// threshold (`log` module); when it cannot (INFO disabled), appends are refused only at `maxmemory`.
    pub(crate) memory_gate: std::sync::atomic::AtomicBool,
    /// The dedicated connection of the writes that wait for replicas (`replicas` module).
    pub(crate) acked: replicas::AckedConn,
    /// The persistence settings read at connect (`health` module), for `ha_storage_redis_ack_durability`.
    pub(crate) persistence: Mutex<Option<Persistence>>,
}

/// A nonce unique to this backend: `{boot id}:{pid namespace}:{pid}:{random}` (the boot id is the kernel's
/// `/proc/sys/kernel/random/boot_id`, the pid namespace the inode of `/proc/self/ns/pid`; `0` when unreadable).
/// The first three let a process tell that the holder of an instance lock on its own host and in its own pid
/// namespace is dead (`leader` module): the init pid namespace has the same inode on every Linux host, so without
/// the boot id a process on another host looked dead; the last is the process' wall clock nanos hashed with std's
/// per-process random keys.
fn process_nonce() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    format!(
        "{}:{}:{}:{:016x}",
        boot_id(),
        pid_namespace(),
        std::process::id(),
        h.finish()
    )
}

/// The kernel's boot id (a UUID, new at every boot of every host), `0` when unreadable.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().replace(':', ""))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into())
}

/// The inode of this process' pid namespace (`/proc/self/ns/pid` links to `pid:[inode]`), 0 when unreadable.
pub(crate) fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            l.to_str()?
                .strip_prefix("pid:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
}

/// The Redis backend (cheap to clone; clones share connections, stats and caches).
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
    /// The fence of this view's writes (`None` = unfenced; see the `fence` module for what it covers).
    pub(crate) fence: Option<Arc<Fence>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("base_prefix", &self.inner.cfg.base_prefix)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned map only follows a panic elsewhere; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedisBackend {
    /// Connects (must run inside a tokio runtime). Fails with [`StorageError::Unavailable`] when the server
    /// cannot be reached within the connection timeout and retries.
    pub async fn connect(cfg: RedisConfig) -> Result<Self, StorageError> {
        let client = match &cfg.tls_root_cert_pem {
            None => redis::Client::open(cfg.url.as_str()),
            Some(pem) => redis::Client::build_with_tls(
                cfg.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|e| StorageError::Backend(format!("redis url {:?}: {e}", cfg.url)))?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(cfg.response_timeout))
            .set_connection_timeout(Some(cfg.connection_timeout))
            .set_number_of_retries(cfg.reconnect_retries)
            .set_max_delay(cfg.reconnect_max_delay);
        let conn = client
            .get_connection_manager_with_config(mgr_cfg)
            .await
            .map_err(|e| error::map("connect", e))?;
        let keys = Keys::new(&cfg.base_prefix, cfg.consumer_group.as_deref());
        let backend = Self {
            inner: Arc::new(Inner {
                cfg,
                client,
                conn,
                keys,
                stats: Arc::default(),
                groups: Mutex::default(),
                watchers: Mutex::default(),
                mirrors: Mutex::default(),
                nonce: process_nonce(),
                instances: Mutex::default(),
                instance_conflict: Mutex::default(),
                go_miner: Mutex::default(),
                go_miner_beside: Mutex::default(),
                foreign: Mutex::default(),
                suppliers_swept: Mutex::default(),
                tokens_granted: Mutex::default(),
                group_reads: Mutex::default(),
                refresher_started: std::sync::atomic::AtomicBool::new(false),
                reclaimed: Mutex::default(),
                script_flags: std::sync::atomic::AtomicBool::new(false),
                memory_gate: std::sync::atomic::AtomicBool::new(false),
                acked: replicas::AckedConn::default(),
                persistence: Mutex::default(),
            }),
            fence: None,
        };
        // Redis ≥ 7 runs flagged scripts: session records and leadership are then written at maxmemory too.
        backend.detect_script_flags().await;
        // Whether relay appends can check the relay memory threshold in Redis (INFO readable by scripts).
        backend.detect_memory_gate(true).await;
        // A wrong eviction policy is an ERROR now, not a surprise at maxmemory (readiness keeps failing on it).
        backend.check_eviction_policy().await;
        // And an unlimited maxmemory, which turns every memory safeguard off.
        backend.check_max_memory().await;
        // So is running without AOF (a restart loses acknowledged relays and claimed tries).
        backend.check_persistence().await;
        // And a primary with fewer replicas than every covered write waits for.
        backend.check_replicas().await;
        Ok(backend)
    }

    /// Whether the server runs flagged scripts (Redis ≥ 7; read at connect).
    pub fn script_flags(&self) -> bool {
        self.inner.script_flags.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs the plain scripts from now on, as against Redis before 7 (session records and leadership refused at
    /// `maxmemory`); for tests of that behaviour on a newer server.
    pub fn without_script_flags(self) -> Self {
        self.inner
            .script_flags
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Reads the server's version (`INFO server`): Redis ≥ 7 takes the `allow-oom` flag on the few scripts that
    /// must write at `maxmemory` (session records, leadership). Older or unreadable: the plain scripts, refused
    /// at `maxmemory` like every write.
    async fn detect_script_flags(&self) {
        let info: Result<String, _> = redis::cmd("INFO").arg("server").query_async(&mut self.conn()).await;
        let major = info.ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .and_then(|v| v.trim().split('.').next()?.parse::<u32>().ok())
        });
        let flags = major.is_some_and(|m| m >= 7);
        self.inner
            .script_flags
            .store(flags, std::sync::atomic::Ordering::Relaxed);
        if !flags {
            tracing::warn!(
                version = ?major,
                "redis before 7 (or its version unreadable): session records and leadership cannot be written at                  maxmemory, so no claim or proof is sent while Redis is out of memory"
            );
        }
    }

    /// Whether a script can read `INFO memory` (module docs, "Relay memory threshold"); logged at WARN when it
    /// cannot while a relay threshold is configured.
    /// Probes whether scripts can read `INFO memory` ([`log::MEMORY_PROBE`]) and turns the relay memory threshold
    /// on or off accordingly. Run at connect (`first`) and again by every memory poll while it is off, so a probe
    /// that failed for a passing reason (Redis still loading its AOF after a restart, a timeout) does not leave
    /// the threshold off for the life of the process. Logged when the state changes, and at connect.
    pub(crate) async fn detect_memory_gate(&self, first: bool) {
        if self.config().relay_max_memory_ratio >= 1.0 {
            return;
        }
        let probe: Result<i64, _> = log::MEMORY_PROBE.invoke_async(&mut self.conn()).await;
        let readable = matches!(probe, Ok(1));
        let was = self
            .inner
            .memory_gate
            .swap(readable, std::sync::atomic::Ordering::Relaxed);
        match probe {
            Ok(1) if !was && !first => tracing::info!(
                relay_max_memory_ratio = self.config().relay_max_memory_ratio,
                "redis INFO is readable by scripts again: relay appends are held below the relay memory threshold"
            ),
            Ok(1) => {}
            Ok(_) if first || was => tracing::warn!(
                relay_max_memory_ratio = self.config().relay_max_memory_ratio,
                "redis INFO cannot be read by scripts (disabled or renamed): relay appends are not held below the \
                 relay memory threshold and are refused only at maxmemory, where the miner's trie writes are \
                 refused too"
            ),
            Ok(_) => {}
            Err(e) if first || was => tracing::warn!(
                error = %e,
                "cannot probe whether redis scripts read INFO: the relay memory threshold is off until a memory \
                 poll's probe succeeds"
            ),
            Err(_) => {}
        }
    }

    /// The relay memory threshold relay appends check in Redis (`None`: off, or `INFO` not readable there).
    pub fn relay_memory_threshold(&self) -> Option<f64> {
        let ratio = self.config().relay_max_memory_ratio;
        (ratio < 1.0 && self.inner.memory_gate.load(std::sync::atomic::Ordering::Relaxed)).then_some(ratio)
    }

    /// The bundle of every contract trait served by this backend.
    pub fn storage(&self) -> Storage {
        Storage::from_backend("redis", Arc::new(self.clone()), self.fence.as_deref().cloned())
    }

    /// Counters and gauges (leadership failures by reason, OOM errors, memory).
    pub fn stats(&self) -> Arc<RedisStats> {
        Arc::clone(&self.inner.stats)
    }

    /// Prometheus collectors of [`RedisBackend::stats`] (leadership acquisition failures by reason, OOM
    /// refusals, memory gauges and the monitor's heartbeat; names in the `stats` module), labelled with this
    /// backend's `instance_id`. Register them once per backend with the process's registry.
    ///
    /// Plus `ha_storage_redis_ack_durability{aof,appendfsync,wait_replicas}` (1): what an acknowledged write has
    /// survived when Redis answers, as read at connect (`unknown` where Redis did not say): `appendfsync
    /// everysec` loses up to a second of them in a Redis crash, `wait_replicas` 0 what a failover's replica had
    /// not received (module `health`).
    pub fn collectors(&self) -> Result<Vec<Box<dyn prometheus::core::Collector>>, prometheus::Error> {
        let mut collectors = self
            .inner
            .stats
            .collectors(&self.inner.cfg.instance_id, self.relay_memory_threshold())?;
        let durability = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "ha_storage_redis_ack_durability",
                "1, labelled with what a write Redis acknowledged has survived, as read at connect: aof \
                 (appendonly), appendfsync (everysec: a Redis crash loses up to its last second of writes) and \
                 storage.redis.wait_replicas (0: a failover loses what the promoted replica had not received)",
            ),
            &["aof", "appendfsync", "wait_replicas"],
        )?;
        let p = lock(&self.inner.persistence).clone().unwrap_or_default();
        let aof = match p.aof {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        durability
            .with_label_values(&[
                aof,
                p.appendfsync.as_deref().unwrap_or("unknown"),
                &self.inner.cfg.wait_replicas.to_string(),
            ])
            .set(1);
        collectors.push(Box::new(durability));
        Ok(collectors)
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.cfg
    }

    /// A clone of the shared connection.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Maps an error, counting OOM refusals.
    pub(crate) fn err(&self, what: &str, e: redis::RedisError) -> StorageError {
        let mapped = error::map(what, e);
        if matches!(mapped, StorageError::OutOfMemory(_)) {
            self.inner.stats.record_oom();
        }
        mapped
    }
}

impl Fencing for RedisBackend {
    fn fenced(&self, fence: Fence) -> Storage {
        Self {
            inner: self.inner.clone(),
            fence: Some(Arc::new(fence)),
        }
        .storage()
    }
}

/// Milliseconds of a duration for `PX` / `BLOCK` arguments, at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
