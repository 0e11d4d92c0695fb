//! Replica acknowledgement of the writes whose loss in a failover costs money ([`RedisConfig::wait_replicas`]).
//!
//! Redis replicates asynchronously: a write is acknowledged once the primary applied it, and a primary that
//! crashes before its replicas received it loses it when Sentinel promotes one of them. What that costs: a relay
//! acknowledged to a gateway (served, never claimed), a session record holding the tx about to be broadcast (the
//! next leader sends a second tx: a second fee, a duplicate claim), a write set's tries and records (a claim whose
//! trie is gone cannot be proven: slashed). With `wait_replicas` > 0, each of these writes is followed by Redis
//! `WAIT wait_replicas wait_timeout_ms` on the connection the write went on. Fewer replicas than asked within the
//! timeout are counted (`ha_storage_redis_writes_not_replicated_total`, WARN at most once a second); a relay-log
//! append then fails as [`StorageError::NotReplicated`], so the relayer refuses the batch's relays (its storage
//! error) instead of telling gateways they are kept. The miner's writes (records, tries, write sets) stand
//! (`RedisBackend::replicated_best_effort`): failing them stopped every claim and proof for as long as a replica
//! was out (a claim lost, a required proof slashed), against the rarer primary crash in that time, which costs
//! at most a second tx (a lookup runs before any re-send).
//!
//! Covered: relay-log appends (one `WAIT` per append, i.e. per group-commit batch, not per relay), session record
//! puts and deletes (a delete lost in a failover resurrects a pruned session), write sets (but the
//! [`SetDurability::Eventual`](crate::SetDurability::Eventual) ones, which a crash may lose too: the miner redoes
//! them), trie batches. Not
//! covered: leadership (a lease lost in a failover is re-campaigned: the fenced writes of a holder the new primary
//! does not know fail `FENCED`, and the fence compares candidate and token, so a reused token of another candidate
//! does not pass), acks and trims (a lost ack redelivers an entry, which ingest handles), KV (relay meter counts),
//! stream deliveries. A write that failed its `WAIT` was applied on the primary: it stays there (a relay is still
//! mined, a record still read) unless a failover loses it, and this process' trie mirrors hold it, as they hold
//! what the primary holds.
//!
//! # What it guarantees, what not
//! `WAIT` is not strong consistency. It says that `wait_replicas` replicas had received (and applied) the write
//! when it returned; nothing stops Sentinel from promoting another replica, one that lacked the write. So set
//! `wait_replicas` to the number of replicas Sentinel may promote (every replica with a non-zero
//! `replica-priority`), or set `min-replicas-to-write` / `min-replicas-max-lag` on the server so a primary cut off
//! from its replicas stops taking writes at all. A replica that acknowledged a write can still lose it if it
//! crashes before its own AOF fsync (`appendfsync always` on replicas too). A replica that has just finished a
//! full sync acknowledges nothing until its first `REPLCONF ACK` (sent once a second) lets the primary stream to
//! it: measured on Redis 7.0, writes in that window (up to a second) fail although the replica is listed online,
//! and succeed afterwards. And the check costs: each covered write waits one more round trip to the primary plus
//! the replicas' acknowledgement. Measured on one host (release build, Redis 7.0, one local replica, AOF
//! `everysec` on both, 2,000 sequential appends of 8 relays, then 500 record puts, two rounds each): append p50
//! 107–144 µs → 225–313 µs, p99 0.19–0.73 ms → 2.8–4.4 ms; record put p50 64–131 µs → 153–182 µs, p99
//! 0.14–0.24 ms → 0.26–4.5 ms. A replica across a network adds its round trip.
//!
//! # Connection
//! `WAIT` covers the writes made on the connection it runs on (the primary waits for the replication offset of
//! that client's last write; on a connection that made none it returns at once), so it must run on the write's
//! own connection, and it blocks that connection on the server until it returns (up to the timeout while
//! replicas lag or are gone). On the shared multiplexed connection that would stall every command queued behind
//! it (reads, acks, lease renewals: a leader losing its lease because a replica hung), so the covered writes run
//! on one dedicated multiplexed connection of their own, opened on first use. Writes and `WAIT`s of concurrent
//! callers pipeline on it: a `WAIT` covers its own write and every write sent before it, and while replicas are
//! healthy each returns within their acknowledgement time. Unlike the shared connection manager this connection
//! never reconnects by itself: a `WAIT` after a silent reconnect would run on a new connection with no write and
//! return at once, reporting a write that may be lost as replicated. A transport error drops it; the next write
//! opens a new one. Its response timeout is `response_timeout + wait_timeout`. With `wait_replicas` = 0 (the
//! default) none of this runs: the writes use the shared connection as before.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::stats::unix_ms;
use super::{RedisBackend, lock, millis};
use crate::StorageError;

#[cfg(doc)]
use super::RedisConfig;

/// Default [`RedisConfig::wait_timeout`]: long enough for a replica in the same region to acknowledge, short
/// enough that a relayer answers its gateway in time when the replicas are gone.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_millis(500);

/// The dedicated connection of the covered writes, with a generation so a failed one is dropped only once.
#[derive(Default)]
pub(crate) struct AckedConn {
    slot: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
}

/// The connection a covered write goes on: the shared one when `wait_replicas` is 0, else the dedicated one.
pub(crate) enum WriteConn {
    Shared(ConnectionManager),
    Acked {
        conn: MultiplexedConnection,
        generation: u64,
    },
}

impl ConnectionLike for WriteConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Shared(c) => c.req_packed_command(cmd),
            Self::Acked { conn, .. } => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Shared(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Acked { conn, .. } => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Shared(c) => c.get_db(),
            Self::Acked { conn, .. } => conn.get_db(),
        }
    }
}

impl RedisBackend {
    /// The connection for a covered write (module docs): the shared one, or with `wait_replicas` > 0 the
    /// dedicated one (opened now if there is none).
    pub(crate) async fn write_conn(&self) -> Result<WriteConn, StorageError> {
        if self.config().wait_replicas == 0 {
            return Ok(WriteConn::Shared(self.conn()));
        }
        let acked = &self.inner.acked;
        if let Some((generation, conn)) = lock(&acked.slot).clone() {
            return Ok(WriteConn::Acked { conn, generation });
        }
        let cfg = self.config();
        let conn_cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.connection_timeout))
            .set_response_timeout(Some(cfg.response_timeout + cfg.wait_timeout));
        let conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await
            .map_err(|e| self.err("connect replica-acknowledged writes", e))?;
        let mut slot = lock(&acked.slot);
        // Another write may have opened one meanwhile: use it, so writes keep sharing one connection.
        let (generation, conn) = slot
            .get_or_insert_with(|| (acked.generation.fetch_add(1, Ordering::Relaxed) + 1, conn))
            .clone();
        Ok(WriteConn::Acked { conn, generation })
    }

    /// Maps the error of a write made on `conn`; a transport failure of the dedicated connection drops it.
    pub(crate) fn write_err(&self, conn: &WriteConn, what: &str, e: redis::RedisError) -> StorageError {
        let mapped = self.err(what, e);
        if let (WriteConn::Acked { generation, .. }, StorageError::Unavailable(_)) = (conn, &mapped) {
            let mut slot = lock(&self.inner.acked.slot);
            if slot.as_ref().is_some_and(|(g, _)| g == generation) {
                *slot = None;
            }
        }
        mapped
    }

    /// After a write applied on `conn`: nothing on the shared connection; on the dedicated one `WAIT` for
    /// `wait_replicas` replicas within `wait_timeout`, and [`StorageError::NotReplicated`] (counted, logged) when
    /// fewer acknowledged it.
    pub(crate) async fn replicated(&self, conn: &mut WriteConn, what: &str) -> Result<(), StorageError> {
        if matches!(conn, WriteConn::Shared(_)) {
            return Ok(());
        }
        let cfg = self.config();
        let asked = cfg.wait_replicas;
        let got: i64 = redis::cmd("WAIT")
            .arg(asked)
            .arg(millis(cfg.wait_timeout))
            .query_async(conn)
            .await
            .map_err(|e| self.write_err(conn, "WAIT", e))?;
        let got = u32::try_from(got).unwrap_or(0);
        if got >= asked {
            return Ok(());
        }
        let total = self.inner.stats.record_not_replicated();
        if self.inner.stats.log_not_replicated(unix_ms()) {
            tracing::warn!(
                what,
                asked,
                got,
                wait_timeout_ms = millis(cfg.wait_timeout),
                not_replicated_total = total,
                "redis write not acknowledged by enough replicas within storage.redis.wait_timeout_ms (applied on \
                 the primary only, which a failover may lose): a relay-log append fails, the miner's writes stand; \
                 logged at most once a second, every one counted in ha_storage_redis_writes_not_replicated_total"
            );
        }
        Err(StorageError::NotReplicated {
            what: what.to_owned(),
            asked,
            got,
        })
    }

    /// [`Self::replicated`] for the miner's writes (session records, tries, write sets): a shortfall is counted
    /// and logged the same, but the write stands (the primary applied it). Failing them stopped every claim and
    /// proof while a replica was down (the tx stored before it leaves is one such write, and a step whose records
    /// fail is taken back and tried again at each block): claims lost and required proofs slashed for as long as
    /// the replica was out, to guard against the rarer primary crash in that time, which costs at most a second
    /// tx. Relay-log appends stay strict ([`Self::replicated`]): what a gateway is told is kept is kept.
    pub(crate) async fn replicated_best_effort(&self, conn: &mut WriteConn, what: &str) -> Result<(), StorageError> {
        match self.replicated(conn, what).await {
            Err(StorageError::NotReplicated { .. }) => Ok(()),
            other => other,
        }
    }

    /// How much longer a covered write may take than a plain one (the `WAIT`), for callers that bound the wait.
    pub(crate) fn replica_wait_budget(&self) -> Duration {
        let cfg = self.config();
        if cfg.wait_replicas == 0 {
            Duration::ZERO
        } else {
            cfg.wait_timeout + cfg.response_timeout
        }
    }

    /// Warns at connect when the primary has fewer replicas attached than `wait_replicas` (every covered write
    /// would fail until they attach).
    pub(crate) async fn check_replicas(&self) {
        let asked = self.config().wait_replicas;
        if asked == 0 {
            return;
        }
        let info: Result<String, _> = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.conn())
            .await;
        let connected = info.ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("connected_slaves:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        });
        match connected {
            Some(n) if n >= asked => {}
            Some(n) => tracing::warn!(
                wait_replicas = asked,
                connected_replicas = n,
                "redis primary has fewer replicas than storage.redis.wait_replicas: relay appends and the miner's \
                 writes fail (not replicated) until enough replicas attach"
            ),
            None => tracing::warn!(
                wait_replicas = asked,
                "cannot read the redis primary's connected replicas (INFO replication)"
            ),
        }
    }
}
