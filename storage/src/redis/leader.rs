//! Leadership on Redis: a lease key per election (`{base}:miner:global_leader` for `"global"`, value = holder
//! name as in the Go fleet), a fencing token per term drawn with `INCR` from a never-expiring counter key, and
//! the current term's token stored next to the lease with the same `PX`.
//!
//! Acquire is a Lua script doing the lease's `SET NX PX` after the `INCR`, atomically (no token is drawn for a
//! lease that is not taken, and a refused write changes nothing). Renew and release are Lua compare-and-renew /
//! compare-and-release on (holder, token). Tokens strictly increase across leaders for as long as the counter
//! key lives (it has no TTL; wiping Redis resets it, like wiping any fencing store).
//!
//! Instance lock: two processes campaigning under one candidate name (the default name is `miner-{hostname}`,
//! so two units on one host, or two hostNetwork pods) would both be handed the lease (its value is the name)
//! and its token, and both would submit and write. Every campaign and renewal therefore also takes or refreshes
//! `{base}:miner:instance_lock:{name}` = this process' nonce, in the same script, and a task of the backend
//! refreshes it every [`INSTANCE_LOCK_REFRESH`] ([`INSTANCE_LOCK_TTL`]). A process finding another nonce there
//! does not campaign (its renewals are refused), logs at ERROR naming the instance when it first sees it and
//! fails the miner's readiness ([`super::NotReady::InstanceInUse`]). The lease keeps its term only for the lock's holder: a
//! process taking a free lock under a name whose lease is still live (a restart after a crash) starts a new term,
//! so any earlier process's fenced writes are refused. A gracefully closed process releases its locks
//! ([`RedisBackend::release_instances`]); after a crash the restart campaigns once the lock lapsed (at most
//! [`INSTANCE_LOCK_TTL`]). The lease value stays the plain name (the Go layout).
//!
//! A live Go miner on the same Redis refuses every campaign (module `go_fleet`): the campaign script checks the
//! Go miner's keys first and touches nothing when it finds one. The renewal script checks them too, after
//! renewing: a Go miner started while this process leads does not end its lease, it is reported (`go_fleet`
//! says why).
//!
//! The refresher's last round is its heartbeat, `ha_storage_redis_instance_lock_refresh_timestamp_seconds`
//! ([`RedisStats::instance_lock_refreshed_unix_ms`](super::RedisStats::instance_lock_refreshed_unix_ms)).
//!
//! Failed acquisitions are counted by reason (`redis_oom`, `redis_error`) in [`RedisStats`](super::RedisStats)
//! and logged at ERROR (OOM) or WARN (other) with the consecutive-failure count, the first of a streak at once
//! and then at most once a second; losing to a live holder is normal and logged at DEBUG. Watchers poll the
//! lease every `leader_watch_interval` and see changes made through this backend at once.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use tokio::sync::watch;

use super::go_fleet::{GO_MINER_CHECK, GO_MINER_LIVE, GO_MINER_LIVE_FN, RENEWED_BESIDE_GO_MINER};
use super::stats::AcquireFailure;
use super::{RedisBackend, lock, millis};
use crate::StorageError;
use crate::contract::{LeaderInfo, Leadership};

/// KEYS: lease, token, counter, instance lock, then the Go miner's keys of [`GO_MINER_CHECK`]. ARGV: candidate,
/// ttl ms, nonce, lock ttl ms, Go instance key prefix. Returns the holder's token, 0 when busy, -1 when another
/// process holds the candidate's instance lock, [`GO_MINER_LIVE`] (-2, nothing touched) when a Go miner is live. A lease under the candidate's
/// name keeps its term (token) only for the process that holds the instance lock: a process taking a free lock
/// (a restart after a crash, or a process whose lock lapsed) starts a new term, so fenced writes of any earlier
/// process under that name are refused from then on.
const CAMPAIGN_BODY: &str = r"
local owner = redis.call('GET', KEYS[4])
if owner and owner ~= ARGV[3] then
  return -1
elseif owner then
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
else
  redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
end
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] and owner then
  local t = redis.call('GET', KEYS[2])
  if t then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
    return tonumber(t)
  end
elseif cur and cur ~= ARGV[1] then
  return 0
end
local t = redis.call('INCR', KEYS[3])
if cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], t, 'PX', ARGV[2])
return t
";
static CAMPAIGN: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{GO_MINER_LIVE_FN}{GO_MINER_CHECK}{CAMPAIGN_BODY}")));
/// [`CAMPAIGN`] for servers that know script flags: run at `maxmemory` too (module docs of `fence`).
static CAMPAIGN_OOM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{GO_MINER_LIVE_FN}{GO_MINER_CHECK}{CAMPAIGN_BODY}",
        super::fence::ALLOW_OOM
    ))
});

/// KEYS: instance lock. ARGV: the dead holder's nonce. Deletes the lock if it still holds that nonce.
static DROP_DEAD_INSTANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Whether the process that wrote `nonce` (`{boot id}:{pid namespace}:{pid}:{random}`, see `process_nonce`) is
/// known to be dead: it ran on this host since its last boot (same boot id), in this process' pid namespace (a
/// known one), and its pid is gone. A holder on another host, in another namespace (another container), of an
/// older nonce format, or whose pid was reused reads as alive; its lock is then waited out.
fn holder_is_dead(nonce: &str) -> bool {
    let mut parts = nonce.splitn(4, ':');
    let (Some(boot), Some(ns), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let own = super::pid_namespace();
    let own_boot = super::boot_id();
    own != 0
        && own_boot != "0"
        && boot == own_boot
        && ns.parse::<u64>().ok() == Some(own)
        && pid.parse::<u32>().is_ok_and(|pid| pid != std::process::id())
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// How long an instance lock outlives its last refresh: a restart after a crash campaigns at most this long
/// after the crash. Refreshed every [`INSTANCE_LOCK_REFRESH`] by a task of the backend (and by every campaign and
/// renewal), independently of the lease's renewals.
pub const INSTANCE_LOCK_TTL: Duration = Duration::from_secs(2);

/// Interval of the instance lock refresh.
pub const INSTANCE_LOCK_REFRESH: Duration = Duration::from_millis(500);

/// KEYS: instance lock. ARGV: nonce, lock ttl ms. 1 = refreshed (re-set when it had lapsed), -1 = another process
/// holds it.
static REFRESH_INSTANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return -1
elseif owner then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.pcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
",
    )
});

/// KEYS: lease, token, instance lock, then Go's global leader key, its token key and Go's active set. ARGV:
/// candidate, token, ttl ms, nonce, lock ttl ms, Go's instance key prefix. 1 = renewed,
/// [`RENEWED_BESIDE_GO_MINER`] (2) = renewed and a Go miner is live (module `go_fleet`: the lease is kept), 0 = not
/// the holder, -1 = another process holds the candidate's instance lock. Only `PEXPIRE`s an existing lock (Redis
/// allows it at maxmemory, so a sitting leader keeps renewing under OOM); a missing one is re-set where memory
/// allows.
const RENEW_BODY: &str = r"
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[4] then
  return -1
end
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  if owner then
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
  else
    redis.pcall('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  if go_miner_live(KEYS[4], KEYS[5], KEYS[6], ARGV[6]) then return 2 end
  return 1
end
return 0
";
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{GO_MINER_LIVE_FN}{RENEW_BODY}")));
/// [`RENEW`] for servers that know script flags: run at `maxmemory` too (module docs of `fence`).
static RENEW_OOM: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{}{GO_MINER_LIVE_FN}{RENEW_BODY}", super::fence::ALLOW_OOM)));

/// KEYS: lease, token. ARGV: candidate, token. 1 = released.
static RESIGN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
",
    )
});

/// KEYS: instance lock. ARGV: nonce. Deletes the lock if this process holds it.
static RELEASE_INSTANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

impl RedisBackend {
    /// Records the answer of a campaign or renewal about `candidate`'s instance lock: `in_use` when another
    /// process holds it (logged at ERROR when first seen), else this process holds it.
    fn instance_lock_answer(&self, election: &str, candidate: &str, in_use: bool) {
        let mut conflict = lock(&self.inner.instance_conflict);
        if in_use {
            if conflict.as_deref() != Some(candidate) {
                tracing::error!(
                    election,
                    instance = candidate,
                    lock = self.keys().instance_lock(candidate),
                    "another live process campaigns under this miner's instance name: this process does not \
                     lead and is not ready until it is gone (give each process its own \
                     `storage.redis.consumer_name`; the default `miner-{{hostname}}` is shared by processes on one \
                     host)"
                );
                *conflict = Some(candidate.to_owned());
            }
            return;
        }
        if conflict.as_deref() == Some(candidate) {
            tracing::info!(instance = candidate, "instance name free again; campaigning");
            *conflict = None;
        }
        drop(conflict);
        lock(&self.inner.instances).insert(candidate.to_owned());
        self.start_instance_refresher();
    }

    /// Starts (once per backend) the task refreshing this process' instance locks every
    /// [`INSTANCE_LOCK_REFRESH`]; it ends with the backend.
    fn start_instance_refresher(&self) {
        if self
            .inner
            .refresher_started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INSTANCE_LOCK_REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let backend = RedisBackend { inner, fence: None };
                backend.refresh_instances().await;
                // The refresher's heartbeat (exported by the stats collector): a refresh that hangs stalls it.
                backend.inner.stats.record_instance_lock_refresh();
            }
        });
    }

    async fn refresh_instances(&self) {
        let names: Vec<String> = lock(&self.inner.instances).iter().cloned().collect();
        for name in names {
            let res: Result<i64, _> = REFRESH_INSTANCE
                .key(self.keys().instance_lock(&name))
                .arg(&self.inner.nonce)
                .arg(millis(INSTANCE_LOCK_TTL))
                .invoke_async(&mut self.conn())
                .await;
            match res {
                Ok(-1) => {
                    lock(&self.inner.instances).remove(&name);
                    self.instance_lock_answer("", &name, true);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(instance = name, error = %e, "instance lock refresh failed"),
            }
        }
    }

    /// The candidate name another live process campaigns under while this one does too, if any.
    pub fn instance_in_use(&self) -> Option<String> {
        lock(&self.inner.instance_conflict).clone()
    }

    /// Releases the instance locks this process holds (graceful shutdown), so a restart under the same name
    /// campaigns at once instead of waiting for them to expire.
    pub async fn release_instances(&self) {
        let names: Vec<String> = lock(&self.inner.instances).drain().collect();
        for name in names {
            let res: Result<i64, _> = RELEASE_INSTANCE
                .key(self.keys().instance_lock(&name))
                .arg(&self.inner.nonce)
                .invoke_async(&mut self.conn())
                .await;
            if let Err(e) = res {
                tracing::warn!(instance = name, error = %e, "releasing the instance lock failed; it expires");
            }
        }
    }

    async fn read_leader(&self, election: &str) -> Result<Option<LeaderInfo>, StorageError> {
        let (holder, token): (Option<String>, Option<u64>) = redis::pipe()
            .cmd("GET")
            .arg(self.keys().lease(election))
            .cmd("GET")
            .arg(self.keys().lease_token(election))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("GET leader", e))?;
        // A holder without our token key (e.g. a Go miner) is reported with token 0.
        Ok(holder.map(|holder| LeaderInfo {
            holder,
            token: token.unwrap_or(0),
        }))
    }

    /// Publishes `info` to local watchers of `election`, if any.
    fn publish(&self, election: &str, info: Option<LeaderInfo>) {
        if let Some(tx) = lock(&self.inner.watchers).get(election) {
            tx.send_if_modified(|cur| {
                let changed = *cur != info;
                if changed {
                    *cur = info;
                }
                changed
            });
        }
    }

    fn spawn_watch_poller(&self, election: String, tx: watch::Sender<Option<LeaderInfo>>) {
        let backend = self.clone();
        let interval = self.config().leader_watch_interval;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = tx.closed() => {}
                }
                {
                    let mut watchers = lock(&backend.inner.watchers);
                    if tx.receiver_count() == 0 {
                        if watchers.get(&election).is_some_and(|t| t.same_channel(&tx)) {
                            watchers.remove(&election);
                        }
                        return;
                    }
                }
                match backend.read_leader(&election).await {
                    Ok(info) => backend.publish(&election, info),
                    Err(e) => tracing::debug!(election, error = %e, "leader watch poll failed"),
                }
            }
        });
    }
}

impl RedisBackend {
    /// One run of [`CAMPAIGN`]: the holder's token, 0 when busy, -1 when another process holds the name's lock.
    async fn campaign_once(&self, election: &str, candidate: &str, ttl: Duration) -> Result<i64, redis::RedisError> {
        let script: &Script = if self.script_flags() { &CAMPAIGN_OOM } else { &CAMPAIGN };
        script
            .key(self.keys().lease(election))
            .key(self.keys().lease_token(election))
            .key(self.keys().lease_counter(election))
            .key(self.keys().instance_lock(candidate))
            .key(self.keys().lease(super::keys::GLOBAL_ELECTION))
            .key(self.keys().lease_token(super::keys::GLOBAL_ELECTION))
            .key(self.keys().go_active_set())
            .arg(candidate)
            .arg(millis(ttl))
            .arg(&self.inner.nonce)
            .arg(millis(INSTANCE_LOCK_TTL))
            .arg(self.keys().go_instance_prefix())
            .invoke_async(&mut self.conn())
            .await
    }

    /// Logs the end of a streak of failed acquisitions (a campaign reached Redis again).
    fn acquire_reached(&self, election: &str, candidate: &str) {
        let streak = self.inner.stats.record_acquire_reached();
        if streak > 0 {
            tracing::warn!(
                election,
                candidate,
                failed_attempts = streak,
                "leadership acquisition reaches Redis again"
            );
        }
    }

    /// Counts, logs and maps the answer of [`CAMPAIGN`].
    fn campaign_outcome(
        &self,
        election: &str,
        candidate: &str,
        res: Result<i64, redis::RedisError>,
    ) -> Result<Option<u64>, StorageError> {
        let stats = &self.inner.stats;
        match res {
            Ok(token) => {
                self.acquire_reached(election, candidate);
                self.no_go_miner(election, candidate);
                self.instance_lock_answer(election, candidate, token < 0);
                let Ok(token) = u64::try_from(token) else {
                    return Ok(None);
                };
                if token == 0 {
                    tracing::debug!(election, candidate, "leadership held by another candidate");
                    return Ok(None);
                }
                if lock(&self.inner.tokens_granted).insert(election.to_owned(), token) != Some(token) {
                    // Gained: a new leader lists the streams others wrote since the last sweep at its first
                    // listing, not up to `SWEEP_EVERY` later (module `log::suppliers`).
                    *lock(&self.inner.suppliers_swept) = None;
                }
                self.publish(
                    election,
                    Some(LeaderInfo {
                        holder: candidate.to_owned(),
                        token,
                    }),
                );
                Ok(Some(token))
            }
            Err(e) => {
                let err = self.err("leader acquire", e);
                let reason = if matches!(err, StorageError::OutOfMemory(_)) {
                    AcquireFailure::RedisOom
                } else {
                    AcquireFailure::RedisError
                };
                let consecutive_failures = stats.record_acquire_failure(reason);
                if !stats.log_acquire_failure(super::stats::unix_ms()) {
                    // Counted above; logged at most once a second (the streak count says how many).
                } else if reason == AcquireFailure::RedisOom {
                    tracing::error!(
                        election,
                        candidate,
                        reason = reason.reason(),
                        consecutive_failures,
                        error = %err,
                        "leadership acquisition refused: Redis is out of memory (maxmemory reached); \
                         no leader can be elected until memory is freed"
                    );
                } else {
                    tracing::warn!(
                        election,
                        candidate,
                        reason = reason.reason(),
                        consecutive_failures,
                        error = %err,
                        "leadership acquisition failed"
                    );
                }
                Err(err)
            }
        }
    }
}

#[async_trait]
impl Leadership for RedisBackend {
    async fn campaign(&self, election: &str, candidate: &str, ttl: Duration) -> Result<Option<u64>, StorageError> {
        let first = self.campaign_once(election, candidate, ttl).await;
        if matches!(first, Ok(GO_MINER_LIVE)) {
            self.acquire_reached(election, candidate);
            return Ok(self.go_miner_refusal(election, candidate).await);
        }
        if !matches!(first, Ok(-1)) {
            return self.campaign_outcome(election, candidate, first);
        }
        // A restart after a crash finds its predecessor's lock: taken over at once when that process is known
        // dead (same pid namespace, pid gone), in a new term like any free lock.
        let lock_key = self.keys().instance_lock(candidate);
        let holder: Option<String> = redis::cmd("GET")
            .arg(&lock_key)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("GET instance lock", e))?;
        if let Some(holder) = holder.filter(|h| holder_is_dead(h)) {
            let _: i64 = DROP_DEAD_INSTANCE
                .key(&lock_key)
                .arg(&holder)
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| self.err("instance lock takeover", e))?;
            tracing::info!(
                instance = candidate,
                previous = holder,
                "instance lock of a dead process under this name taken over"
            );
            let again = self.campaign_once(election, candidate, ttl).await;
            if matches!(again, Ok(GO_MINER_LIVE)) {
                self.acquire_reached(election, candidate);
                return Ok(self.go_miner_refusal(election, candidate).await);
            }
            return self.campaign_outcome(election, candidate, again);
        }
        self.campaign_outcome(election, candidate, first)
    }

    async fn renew(&self, election: &str, candidate: &str, token: u64, ttl: Duration) -> Result<bool, StorageError> {
        let script: &Script = if self.script_flags() { &RENEW_OOM } else { &RENEW };
        let renewed: i64 = script
            .key(self.keys().lease(election))
            .key(self.keys().lease_token(election))
            .key(self.keys().instance_lock(candidate))
            .key(self.keys().lease(super::keys::GLOBAL_ELECTION))
            .key(self.keys().lease_token(super::keys::GLOBAL_ELECTION))
            .key(self.keys().go_active_set())
            .arg(candidate)
            .arg(token)
            .arg(millis(ttl))
            .arg(&self.inner.nonce)
            .arg(millis(INSTANCE_LOCK_TTL))
            .arg(self.keys().go_instance_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| {
                let err = self.err("leader renew", e);
                tracing::warn!(election, candidate, error = %err, "leadership renewal failed");
                err
            })?;
        if renewed != 0 {
            self.instance_lock_answer(election, candidate, renewed < 0);
        }
        match renewed {
            RENEWED_BESIDE_GO_MINER => self.go_miner_beside_leader_found(election, candidate).await,
            1 => self.go_miner_beside_leader_gone(election, candidate, "a renewal found no live Go miner"),
            _ => {
                self.go_miner_beside_leader_gone(election, candidate, "this process no longer leads");
                self.forget_all_foreign_consumers();
            }
        }
        Ok(renewed == 1 || renewed == RENEWED_BESIDE_GO_MINER)
    }

    async fn resign(&self, election: &str, candidate: &str, token: u64) -> Result<bool, StorageError> {
        let released: i64 = RESIGN
            .key(self.keys().lease(election))
            .key(self.keys().lease_token(election))
            .arg(candidate)
            .arg(token)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("leader release", e))?;
        if released == 1 {
            self.publish(election, None);
            self.go_miner_beside_leader_gone(election, candidate, "this process resigned");
            self.forget_all_foreign_consumers();
        }
        Ok(released == 1)
    }

    async fn leader(&self, election: &str) -> Result<Option<LeaderInfo>, StorageError> {
        self.read_leader(election).await
    }

    async fn watch(&self, election: &str) -> Result<watch::Receiver<Option<LeaderInfo>>, StorageError> {
        let current = self.read_leader(election).await?;
        let mut watchers = lock(&self.inner.watchers);
        if let Some(tx) = watchers.get(election) {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = watch::channel(current);
        watchers.insert(election.to_owned(), tx.clone());
        drop(watchers);
        self.spawn_watch_poller(election.to_owned(), tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::holder_is_dead;

    /// A pid no process has (above the kernel's largest `pid_max`).
    const GONE: u32 = 4_194_305;

    #[test]
    fn only_a_holder_of_this_host_and_pid_namespace_whose_pid_is_gone_is_dead() {
        let (boot, ns) = (super::super::boot_id(), super::super::pid_namespace());
        if boot == "0" || ns == 0 {
            return; // no /proc: nothing is ever taken as dead, which the other cases below also show
        }
        assert!(holder_is_dead(&format!("{boot}:{ns}:{GONE}:ab")));
        // Another host: the init pid namespace has the same inode on every Linux host, the boot id differs.
        assert!(!holder_is_dead(&format!("other-boot:{ns}:{GONE}:ab")));
        // Another pid namespace (another container), this very process, a live process, an older nonce format.
        assert!(!holder_is_dead(&format!("{boot}:{}:{GONE}:ab", ns + 1)));
        assert!(!holder_is_dead(&format!("{boot}:{ns}:{}:ab", std::process::id())));
        assert!(!holder_is_dead(&format!("{boot}:{ns}:1:ab")));
        assert!(!holder_is_dead(&format!("{ns}:{GONE}:ab")));
    }
}
