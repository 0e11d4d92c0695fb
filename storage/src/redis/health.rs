//! Health of the Redis backend: the `INFO MEMORY` monitor, the eviction-policy check and the readiness probe.
//!
//! The monitor exports `used_memory`, `maxmemory` and their ratio through [`RedisStats::memory`]
//! (with a heartbeat timestamp that advances every successful poll) and warns above `memory_warn_ratio`, so an
//! operator sees OOM coming instead of discovering it hours later. The warning compares what Redis counts
//! against `maxmemory` (`used_memory` less `mem_not_counted_for_evict`: replica output buffers and the AOF
//! buffer), the quantity Redis refuses writes on and the relay memory threshold compares. The readiness probe answers `PING`, the
//! eviction policy and a small write, so `/ready` can go 503 with a typed reason while Redis refuses writes or
//! may drop our data.
//!
//! # Eviction policy
//! Relay-miner needs `maxmemory-policy noeviction`: at `maxmemory` Redis must refuse writes (a typed, counted,
//! retryable [`StorageError::OutOfMemory`]) rather than delete keys. Under `allkeys-*` it silently evicts relay
//! streams, trie nodes and session records (relays lost, proofs impossible); under `volatile-*` it evicts the
//! keys with a TTL: leases, fencing tokens and relay-meter counters. The policy is read from `INFO MEMORY`
//! (`maxmemory_policy`), else from `CONFIG GET maxmemory-policy` (managed Redis often disables `CONFIG`). Any
//! other policy is logged at ERROR when the backend connects and makes readiness fail with
//! [`NotReady::EvictionPolicy`] until it is changed; a policy that can be read neither way is logged at WARN and
//! does not fail readiness (it cannot be verified, which is not the same as known to be wrong).

//!
//! # Persistence
//! An acknowledged relay and the tries of claimed sessions must survive a Redis restart: lost, the relays are
//! unpaid and a claim whose trie is gone cannot be proven (the supplier is slashed). That takes AOF
//! (`appendonly yes`); RDB snapshots lose everything since the last one. The setting is read with `CONFIG GET
//! appendonly` / `appendfsync`, else (`CONFIG` disabled, as on managed Redis) from `INFO persistence`'s
//! `aof_enabled`. AOF off is logged at ERROR at connect and makes readiness fail with [`NotReady::NoAof`] unless
//! [`super::RedisConfig::require_aof`] is off (`storage.redis.allow_without_aof`); `appendfsync` other than
//! `always` (`everysec` loses up to a second of acknowledged writes in a server crash) is a WARN at connect,
//! which with `wait_replicas` 0 also names the failover exposure (a write is acknowledged once the primary
//! applied it; the replica promoted may not have it). `ha_storage_redis_ack_durability` shows the mode read. A
//! setting that can be read neither way is a WARN and does not fail readiness. None of these fails readiness
//! but AOF off: the operator chooses the trade.
//!
//! # Memory limit
//! `maxmemory 0` (Redis's default: unlimited) turns every memory safeguard off without a word: the relay memory
//! threshold never refuses a relay (it is a share of `maxmemory`), Redis never refuses a write with OOM, and the
//! usage gauges read 0. Redis then grows until the host kills it. It is logged at ERROR when the backend connects
//! and shown by `ha_storage_redis_max_memory_unset` (1; kept current by every memory poll). It does not fail
//! readiness: Redis serves every relay meanwhile, and a relayer taken out of rotation would lose them all (the
//! same reason `appendfsync everysec` is a WARN only); alert on the gauge.
//!
//! # Who is not ready
//! `/ready` takes a relayer out of its load balancer's rotation, so a reason that leaves relays servable must not
//! fail the relayer's readiness. [`RedisBackend::readiness`] holds the reasons that concern the relays: Redis
//! unreachable, out of memory or refusing writes (relays refused), an eviction policy that may delete relay
//! streams, no AOF (acknowledged relays lost in a restart). [`RedisBackend::miner_readiness`] holds those that
//! concern this process's miner alone, all three once part of `readiness` (a `relay-miner run` process's
//! relayer was taken out of rotation by them, every relay it would have served lost, while it could serve):
//! - [`NotReady::GoMinerBesideLeader`]: a Go miner went live beside our leading miner; our relayer's relays
//!   still reach the streams (the Go miner's share of them is the miner's problem, not the relayer's).
//! - [`NotReady::GoMinerActive`]: our miner does not campaign while a Go miner is live; relays written meanwhile
//!   are mined by the Go miner (its consumer reads the same streams).
//! - [`NotReady::InstanceInUse`]: another process campaigns under this miner's name; it mines what we record.
//!
//! The node reports the first as its `storage` component and the second as `miner`, which is advisory in a
//! process that also serves relays (the reasons are listed in `/ready`'s body and at `/ready?component=miner`,
//! logged at WARN and in `ha_component_ready{component="miner"}`, besides each alarm's own ERROR log and
//! metrics) and fails `/ready` in a miner-only process (`relay-miner miner`: not ready as a miner, it is not
//! ready at all).

use std::time::Duration;

use super::RedisBackend;
use super::stats::MemorySnapshot;
use crate::StorageError;

/// Why Redis storage is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// `PING` failed: no connection, timeout.
    #[error("redis unreachable: {0}")]
    Unreachable(String),
    /// The probe write was refused with `OOM command not allowed`.
    #[error("redis out of memory: {0}")]
    OutOfMemory(String),
    /// The probe write failed otherwise (read-only replica, ACL, ...).
    #[error("redis refuses writes: {0}")]
    WriteRejected(String),
    /// `maxmemory-policy` is not `noeviction` (the value): Redis may delete our keys at `maxmemory`.
    #[error(
        "redis maxmemory-policy is {0}, must be noeviction: at maxmemory Redis would evict relay streams, tries, \
         session records, leases or meter counters instead of refusing writes (set `maxmemory-policy noeviction`)"
    )]
    EvictionPolicy(String),
    /// Another live process campaigns under this miner's instance name (the name): this one does not lead.
    #[error(
        "another live process campaigns under this miner's instance name {0}: this process does not lead; give \
         each process its own `storage.redis.consumer_name`"
    )]
    InstanceInUse(String),
    /// The server runs without AOF (`appendonly no`): a Redis restart loses acknowledged relays and claimed tries.
    #[error(
        "redis runs without AOF (appendonly no): a Redis restart loses acknowledged relays and the tries of claimed \
         sessions (unprovable claims are slashed); set `appendonly yes` (`appendfsync always` for no loss at all), \
         or accept the risk with storage.redis.allow_without_aof"
    )]
    NoAof,
    /// A Go relay miner is live on this Redis (the keys found, module `go_fleet`): this miner does not campaign.
    #[error(
        "a Go relay miner is live on this Redis ({0}): this miner does not lead while it is (both would consume \
         the relay streams and claim the same sessions); stop the Go miners once the sessions they claimed are \
         settled"
    )]
    GoMinerActive(String),
    /// A Go relay miner went live on this Redis while this process leads (the keys found, module `go_fleet`):
    /// it keeps leading, so the sessions it holds are claimed and proved, and fails readiness until one of the
    /// two is stopped.
    #[error(
        "a Go relay miner is live on this Redis while this miner leads ({0}): both read the relay streams (relays \
         split between their tries) and claim the same sessions (fees paid twice); this miner keeps leading so \
         the sessions it holds are claimed and proved; stop the Go miner"
    )]
    GoMinerBesideLeader(String),
}

impl NotReady {
    /// Whether the reason concerns this process's miner alone (module docs, "Who is not ready"):
    /// [`NotReady::InstanceInUse`], [`NotReady::GoMinerActive`], [`NotReady::GoMinerBesideLeader`]. Answered by
    /// [`RedisBackend::miner_readiness`], never by [`RedisBackend::readiness`].
    pub fn miner_only(&self) -> bool {
        matches!(
            self,
            Self::InstanceInUse(_) | Self::GoMinerActive(_) | Self::GoMinerBesideLeader(_)
        )
    }
}

/// The server's persistence settings as far as they can be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Persistence {
    /// AOF on (`appendonly yes` / `aof_enabled:1`); `None` when neither `CONFIG GET` nor `INFO` said.
    pub aof: Option<bool>,
    /// `appendfsync` (`always`, `everysec`, `no`); `None` when `CONFIG GET` is refused (INFO does not show it).
    pub appendfsync: Option<String>,
}

/// `aof_enabled` from an `INFO persistence` reply.
fn parse_info_aof(info: &str) -> Option<bool> {
    match info.lines().find_map(|l| l.strip_prefix("aof_enabled:"))?.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

impl NotReady {
    /// A stable label for metrics and logs: `redis_unreachable`, `redis_oom`, `redis_write_rejected`,
    /// `redis_eviction_policy`, `redis_instance_in_use`, `redis_no_aof`, `redis_go_miner_active`,
    /// `redis_go_miner_beside_leader`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "redis_unreachable",
            Self::OutOfMemory(_) => "redis_oom",
            Self::WriteRejected(_) => "redis_write_rejected",
            Self::EvictionPolicy(_) => "redis_eviction_policy",
            Self::InstanceInUse(_) => "redis_instance_in_use",
            Self::NoAof => "redis_no_aof",
            Self::GoMinerActive(_) => "redis_go_miner_active",
            Self::GoMinerBesideLeader(_) => "redis_go_miner_beside_leader",
        }
    }
}

/// The running memory monitor; dropping it stops the task.
#[derive(Debug)]
pub struct MemoryMonitor {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MemoryMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The only `maxmemory-policy` relay-miner accepts.
pub(crate) const REQUIRED_POLICY: &str = "noeviction";

/// `maxmemory_policy` from an `INFO MEMORY` reply.
fn parse_info_policy(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `(used_memory, mem_not_counted_for_evict, maxmemory)` from an `INFO MEMORY` reply; a reply without
/// `mem_not_counted_for_evict` (older servers) counts all of `used_memory`.
fn parse_info_memory(info: &str) -> Option<(u64, u64, u64)> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        field("used_memory")?,
        field("mem_not_counted_for_evict").unwrap_or(0),
        field("maxmemory")?,
    ))
}

impl RedisBackend {
    /// Polls `INFO MEMORY` once, updates the gauges and warns above the configured ratio.
    pub async fn poll_memory(&self) -> Result<MemorySnapshot, StorageError> {
        let stats = &self.inner.stats;
        let info: String = match redis::cmd("INFO").arg("MEMORY").query_async(&mut self.conn()).await {
            Ok(s) => s,
            Err(e) => {
                stats.record_memory_poll_failure();
                return Err(self.err("INFO MEMORY", e));
            }
        };
        let Some((used, not_counted, max)) = parse_info_memory(&info) else {
            stats.record_memory_poll_failure();
            return Err(StorageError::Corrupt(
                "redis INFO MEMORY: used_memory/maxmemory missing".into(),
            ));
        };
        // Warnings compare what Redis counts against maxmemory, as the relay threshold does (module docs of
        // `redis`, "Relay memory threshold"): replica output buffers and the AOF buffer are left out.
        let ratio = stats.record_memory(used, not_counted, max).counted_ratio;
        if self.relay_memory_threshold().is_none() {
            self.detect_memory_gate(false).await;
        }
        let warn_ratio = self.config().memory_warn_ratio;
        if max > 0 && ratio > warn_ratio {
            let relay_threshold = self.relay_memory_threshold();
            if relay_threshold.is_some_and(|t| ratio > t) {
                tracing::error!(
                    used_bytes = used,
                    not_counted_bytes = not_counted,
                    max_bytes = max,
                    ratio,
                    relay_threshold,
                    "redis memory above the relay threshold: relays are refused (relayers answer \
                     redis_memory_threshold) until the miner's ingest and pruning bring it below; raise maxmemory \
                     if it stays there"
                );
            } else {
                tracing::warn!(
                    used_bytes = used,
                    not_counted_bytes = not_counted,
                    max_bytes = max,
                    ratio,
                    threshold = warn_ratio,
                    relay_threshold,
                    "redis memory above the warning threshold; relays are refused above the relay threshold, every \
                     write but session records and leases at maxmemory"
                );
            }
        }
        Ok(stats.memory())
    }

    /// Starts polling `INFO MEMORY` every `memory_poll_interval` (first poll immediately).
    pub fn start_memory_monitor(&self) -> MemoryMonitor {
        let backend = self.clone();
        let interval = self.config().memory_poll_interval.max(Duration::from_millis(10));
        MemoryMonitor {
            task: tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = backend.poll_memory().await {
                        tracing::warn!(error = %e, "redis memory poll failed");
                    }
                }
            }),
        }
    }

    /// The server's `maxmemory-policy`: from `INFO MEMORY`, else `CONFIG GET maxmemory-policy`. `Ok(None)` when
    /// neither answers it (commands disabled or renamed, as on some managed Redis); `Err` when Redis cannot be
    /// reached.
    pub async fn eviction_policy(&self) -> Result<Option<String>, StorageError> {
        match redis::cmd("INFO")
            .arg("MEMORY")
            .query_async::<String>(&mut self.conn())
            .await
        {
            Ok(info) => {
                if let Some(policy) = parse_info_policy(&info) {
                    return Ok(Some(policy));
                }
            }
            Err(e) => {
                if let e @ StorageError::Unavailable(_) = self.err("INFO MEMORY", e) {
                    return Err(e);
                }
            }
        }
        match redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async::<Vec<String>>(&mut self.conn())
            .await
        {
            // The reply is `[name, value]`.
            Ok(pair) => Ok(pair.into_iter().nth(1).filter(|v| !v.is_empty())),
            Err(e) => match self.err("CONFIG GET maxmemory-policy", e) {
                e @ StorageError::Unavailable(_) => Err(e),
                e => {
                    tracing::debug!(error = %e, "redis maxmemory-policy cannot be read with CONFIG GET");
                    Ok(None)
                }
            },
        }
    }

    /// Reads the eviction policy once and logs it: ERROR naming the setting when it is not `noeviction`, WARN
    /// when it cannot be read. Called at connect; readiness keeps checking it.
    pub async fn check_eviction_policy(&self) {
        match self.eviction_policy().await {
            Ok(Some(policy)) if policy == REQUIRED_POLICY => {
                tracing::debug!(policy, "redis maxmemory-policy is noeviction");
            }
            Ok(Some(policy)) => tracing::error!(
                setting = "maxmemory-policy",
                policy,
                required = REQUIRED_POLICY,
                "redis maxmemory-policy is not noeviction: at maxmemory Redis evicts keys (relay streams, tries, \
                 session records under allkeys-*; leases, fencing tokens and meter counters under volatile-*); \
                 storage reports not ready until `maxmemory-policy noeviction` is set"
            ),
            Ok(None) => tracing::warn!(
                setting = "maxmemory-policy",
                required = REQUIRED_POLICY,
                "redis maxmemory-policy cannot be read (INFO MEMORY has no maxmemory_policy and CONFIG GET is \
                 refused); make sure the server runs with `maxmemory-policy noeviction`"
            ),
            Err(e) => tracing::warn!(error = %e, "redis maxmemory-policy could not be checked at connect"),
        }
    }

    /// The server's `maxmemory` (0: unlimited): from `INFO MEMORY`, else `CONFIG GET maxmemory`. `Ok(None)` when
    /// neither answers it; `Err` when Redis cannot be reached.
    pub async fn max_memory(&self) -> Result<Option<u64>, StorageError> {
        match redis::cmd("INFO")
            .arg("MEMORY")
            .query_async::<String>(&mut self.conn())
            .await
        {
            Ok(info) => {
                if let Some((_, _, max)) = parse_info_memory(&info) {
                    return Ok(Some(max));
                }
            }
            Err(e) => {
                if let e @ StorageError::Unavailable(_) = self.err("INFO MEMORY", e) {
                    return Err(e);
                }
            }
        }
        Ok(self.config_get("maxmemory").await?.and_then(|v| v.parse().ok()))
    }

    /// Reads `maxmemory` once at connect (module docs, "Memory limit"): ERROR when it is 0, and the
    /// `ha_storage_redis_max_memory_unset` gauge set (every memory poll keeps it current); DEBUG when it cannot
    /// be read.
    pub async fn check_max_memory(&self) {
        match self.max_memory().await {
            Ok(Some(0)) => {
                self.inner.stats.record_max_memory_unset(true);
                tracing::error!(
                    setting = "maxmemory",
                    value = 0,
                    "redis maxmemory is 0 (unlimited, the default): the relay memory threshold and every refusal at maxmemory are off, the memory gauges read 0; Redis grows until the host kills it (every relayer and miner stalls, the writes since the last fsync are lost). Set `maxmemory` (with `maxmemory-policy noeviction`) below the memory the host gives Redis"
                );
            }
            Ok(Some(max)) => {
                self.inner.stats.record_max_memory_unset(false);
                tracing::debug!(max, "redis maxmemory is set");
            }
            Ok(None) => tracing::debug!("redis maxmemory cannot be read (INFO and CONFIG GET refused)"),
            Err(e) => tracing::warn!(error = %e, "redis maxmemory could not be checked at connect"),
        }
    }

    /// One `CONFIG GET` setting: `Ok(None)` when refused or empty, `Err` only when Redis cannot be reached.
    async fn config_get(&self, name: &str) -> Result<Option<String>, StorageError> {
        match redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async::<Vec<String>>(&mut self.conn())
            .await
        {
            Ok(pair) => Ok(pair.into_iter().nth(1).filter(|v| !v.is_empty())),
            Err(e) => match self.err("CONFIG GET", e) {
                e @ StorageError::Unavailable(_) => Err(e),
                e => {
                    tracing::debug!(setting = name, error = %e, "redis setting cannot be read with CONFIG GET");
                    Ok(None)
                }
            },
        }
    }

    /// The server's persistence settings: `CONFIG GET appendonly` / `appendfsync`, else `INFO persistence`'s
    /// `aof_enabled` (module docs). `Err` only when Redis cannot be reached.
    pub async fn persistence(&self) -> Result<Persistence, StorageError> {
        let mut aof = self.config_get("appendonly").await?.map(|v| v == "yes");
        if aof.is_none() {
            match redis::cmd("INFO")
                .arg("persistence")
                .query_async::<String>(&mut self.conn())
                .await
            {
                Ok(info) => aof = parse_info_aof(&info),
                Err(e) => {
                    if let e @ StorageError::Unavailable(_) = self.err("INFO persistence", e) {
                        return Err(e);
                    }
                }
            }
        }
        let appendfsync = self.config_get("appendfsync").await?;
        Ok(Persistence { aof, appendfsync })
    }

    /// Reads the persistence settings once and logs them (module docs): ERROR when AOF is off (WARN when
    /// [`super::RedisConfig::require_aof`] is off), WARN when `appendfsync` is not `always` or a setting cannot be
    /// read. Called at connect; readiness keeps checking AOF.
    pub async fn check_persistence(&self) {
        let p = match self.persistence().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "redis persistence could not be checked at connect");
                return;
            }
        };
        *super::lock(&self.inner.persistence) = Some(p.clone());
        match p.aof {
            Some(true) => {}
            Some(false) if self.config().require_aof => tracing::error!(
                setting = "appendonly",
                value = "no",
                "redis runs without AOF: a Redis restart loses acknowledged relays and the tries of claimed \
                 sessions (their claims cannot be proven: slashed); storage reports not ready until \
                 `appendonly yes` is set (or storage.redis.allow_without_aof accepts the risk)"
            ),
            Some(false) => tracing::warn!(
                setting = "appendonly",
                value = "no",
                "redis runs without AOF, accepted by storage.redis.allow_without_aof: a Redis restart loses \
                 acknowledged relays and the tries of claimed sessions"
            ),
            None => tracing::warn!(
                setting = "appendonly",
                "redis persistence cannot be read (CONFIG GET refused, INFO persistence without aof_enabled); make \
                 sure the server runs with `appendonly yes`"
            ),
        }
        if p.aof != Some(false) {
            match p.appendfsync.as_deref() {
                Some("always") => {}
                Some(other) if self.config().wait_replicas == 0 => tracing::warn!(
                    setting = "appendfsync",
                    value = other,
                    wait_replicas = 0,
                    "redis acknowledges a write once the primary applied it (appendfsync is not always and \
                     storage.redis.wait_replicas is 0): a crash of the Redis server loses the writes of up to the \
                     last second (everysec) or more (no), and a failover to a replica loses what it had not \
                     replicated yet (min-replicas-to-write is not checked); acknowledged relays, trie writes and \
                     stored txs included. `appendfsync always` and/or wait_replicas > 0 close these"
                ),
                Some(other) => tracing::warn!(
                    setting = "appendfsync",
                    value = other,
                    "redis appendfsync is not always: a crash of the Redis server loses the writes of up to the \
                     last second (everysec) or more (no), acknowledged relays included"
                ),
                None => tracing::debug!("redis appendfsync cannot be read (CONFIG GET refused)"),
            }
        }
    }

    /// Readiness of the storage as a relayer needs it: `PING`, the eviction policy (must be `noeviction` when it
    /// can be read), AOF (when required), then a small write (`SET {base}:miner:ready_probe:{instance} PX
    /// 30000`). Logs the reason at WARN when not ready. The reasons that concern the miner alone are in
    /// [`RedisBackend::miner_readiness`] (module docs, "Who is not ready").
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let res = self.probe().await;
        if let Err(e) = &res {
            tracing::warn!(reason = e.reason(), error = %e, "redis storage not ready");
        }
        res
    }

    /// Readiness of this process's miner (module docs, "Who is not ready"): [`NotReady::InstanceInUse`] while
    /// another live process campaigns under its instance name, [`NotReady::GoMinerBesideLeader`] while it leads
    /// beside a live Go miner, [`NotReady::GoMinerActive`] while its campaigns are refused for one. No I/O: the
    /// state the miner's campaigns and renewals left.
    pub fn miner_readiness(&self) -> Result<(), NotReady> {
        if let Some(name) = self.instance_in_use() {
            return Err(NotReady::InstanceInUse(name));
        }
        self.go_miner_readiness()
    }

    async fn probe(&self) -> Result<(), NotReady> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map_err(|e| NotReady::Unreachable(self.err("PING", e).to_string()))?;
        match self.eviction_policy().await {
            Ok(Some(policy)) if policy != REQUIRED_POLICY => return Err(NotReady::EvictionPolicy(policy)),
            Ok(_) => {}
            Err(e) => return Err(NotReady::Unreachable(e.to_string())),
        }
        if self.config().require_aof {
            match self.persistence().await {
                Ok(Persistence { aof: Some(false), .. }) => return Err(NotReady::NoAof),
                Ok(_) => {}
                Err(e) => return Err(NotReady::Unreachable(e.to_string())),
            }
        }
        let res = redis::cmd("SET")
            .arg(self.keys().ready_probe(&self.config().instance_id))
            .arg(super::stats::unix_ms())
            .arg("PX")
            .arg(30_000u64)
            .query_async::<()>(&mut self.conn())
            .await;
        match res.map_err(|e| self.err("readiness write", e)) {
            Ok(()) => Ok(()),
            Err(StorageError::OutOfMemory(m)) => Err(NotReady::OutOfMemory(m)),
            Err(StorageError::Unavailable(m)) => Err(NotReady::Unreachable(m)),
            Err(e) => Err(NotReady::WriteRejected(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_memory() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:2097152\r\n\
                    maxmemory_human:2.00M\r\nmaxmemory_policy:noeviction\r\n";
        assert_eq!(parse_info_memory(info), Some((1_048_576, 0, 2_097_152)));
        let with_buffers = "used_memory:900\r\nmem_not_counted_for_evict:300\r\nmaxmemory:1000\r\n";
        assert_eq!(parse_info_memory(with_buffers), Some((900, 300, 1000)));
        assert_eq!(parse_info_memory("used_memory:1\r\n"), None);
        assert_eq!(parse_info_memory("used_memory:x\r\nmaxmemory:0\r\n"), None);
        assert_eq!(parse_info_policy(info).as_deref(), Some("noeviction"));
        assert_eq!(
            parse_info_policy("maxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\n").as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(parse_info_policy("used_memory:1\r\n"), None);
    }

    #[test]
    fn parses_info_persistence() {
        assert_eq!(
            parse_info_aof("# Persistence\r\nloading:0\r\naof_enabled:1\r\n"),
            Some(true)
        );
        assert_eq!(parse_info_aof("aof_enabled:0\r\n"), Some(false));
        assert_eq!(parse_info_aof("loading:0\r\n"), None);
    }

    #[test]
    fn reasons_are_stable() {
        assert_eq!(NotReady::OutOfMemory(String::new()).reason(), "redis_oom");
        assert_eq!(NotReady::Unreachable(String::new()).reason(), "redis_unreachable");
        assert_eq!(NotReady::WriteRejected(String::new()).reason(), "redis_write_rejected");
        assert_eq!(
            NotReady::EvictionPolicy(String::new()).reason(),
            "redis_eviction_policy"
        );
        assert_eq!(NotReady::GoMinerActive(String::new()).reason(), "redis_go_miner_active");
        assert_eq!(
            NotReady::GoMinerBesideLeader(String::new()).reason(),
            "redis_go_miner_beside_leader"
        );
    }
}
