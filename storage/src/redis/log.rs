//! The relay log on Redis streams: `{base}:relays:{supplier}`, consumer group `{base}-miners`.
//!
//! - `append`: one `MULTI`/`EXEC` pipeline of `XADD`s for the whole batch (all or nothing, one round trip).
//! - `read`: `XREADGROUP ... >` without `BLOCK` on the shared connection; [`BlockingReader`] adds `BLOCK` on a
//!   dedicated connection.
//! - `read_pending`: `XREADGROUP ... 0` (the consumer's own history) and `XPENDING` for the delivery counts,
//!   in one transaction.
//! - `claim`: `XPENDING IDLE` to find entries of *other* consumers idle long enough, then `XCLAIM`. (`XAUTOCLAIM`
//!   cannot exclude the claimer's own pending entries, which the contract requires.)
//! - `ack`: Lua, per id `XACK` and, when it was pending, `XDEL` (Redis 7 has no `XACKDEL`); an id that was
//!   never delivered is left alone.
//! - `trim_session`: Lua, per page of the stream: `XRANGE`, keep the ids whose `session` field matches, `XACK` +
//!   `XDEL` them; only the page's count and last id come back, so the entries' payloads never leave Redis (a
//!   trim used to fetch the whole stream, payloads included, to filter it in the client). Each page is its own
//!   script, so other clients are served between pages. It still reads the whole stream: entries of Go relayers
//!   carry no `session` field to index, and a stream holds only what the miner has not acknowledged yet.
//! - `session_relay_hashes`: the same page script run plain without deleting; it returns the `hash` field of the
//!   session's entries (32 bytes each), never their payloads.
//! - fenced views (`fence` module): `append` is one Lua script of `XADD`s, `ack` and each `trim_session` page
//!   run the fenced twins of their scripts; deliveries are not fenced (see the `fence` module for why).
//! - the relay memory threshold (module docs of `redis`): `append` is then that same Lua script, which first
//!   reads `INFO memory` and refuses the whole batch (`RELAYMEM`, [`StorageError::RelayMemoryThreshold`]) above
//!   the threshold. Only `append` checks it: `ack`, `trim_session` and deliveries free or move memory.
//! - replica acknowledgement (`replicas` module): with `wait_replicas` > 0 an append (one per batch) runs on the
//!   dedicated connection of replicated writes and is followed by `WAIT` there; too few replicas fail it with
//!   [`StorageError::NotReplicated`] although its entries are in the stream.
//! - stream TTLs: the Go relayer sets `EXPIRE {stream} 2h` (once per publisher process and stream); expired,
//!   the stream takes its consumer group, pending list and unread relays with it. Every append (script or
//!   `MULTI`) and every `read_pending` (in its `MULTI`, so once per ingest round of a supplier, no extra round
//!   trip) `PERSIST`s the stream, so a Go relayer's TTL is undone at the miner's next round; session records and
//!   write sets do the same for the keys they touch.
//! - losses made visible: a consumer group this process had seen that is gone (`NOGROUP`: the stream was
//!   deleted or expired) and entries pending for the reading consumer found deleted (another process trimmed
//!   them, e.g. the Go relayer's `XTRIM MINID`) are counted (`ha_storage_redis_relay_log_groups_vanished_total`,
//!   `ha_storage_redis_relay_log_pending_deleted_total`) and logged at ERROR (at most every 10 s); the group is
//!   created again at id 0 and the deleted entries acknowledged, so reading goes on.
//! - relays read by another consumer of the group: `read_pending` lists the group's consumers (`XINFO
//!   CONSUMERS`, best effort after its `MULTI`: a server refusing XINFO must not fail the read) and counts the
//!   entries pending for the others as relays at risk (`go_fleet`); with `XINFO GROUPS`' `entries-read`, it also
//!   counts the entries the group delivered to the others since the last round, acknowledged or not (`taken`).
//! - `backlog`: Lua over `XINFO GROUPS` (`lag`, `pending`), counting with `XRANGE` when `lag` is unknown or
//!   more than the stream's entries not pending (Redis 7.0 keeps it after a trim deletes the undelivered tail).
//! - `suppliers`: the non-empty streams among the suppliers of an index set every append adds to (in its
//!   transaction or script), with a paged `SCAN MATCH {base}:relays:*` at the first listing and then every
//!   [`suppliers::SWEEP_EVERY`] (and at the first listing after a leadership gain) for streams others wrote
//!   (module `suppliers`).

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script, Value};

use super::fence::Scripts;
use super::go_fleet::GroupConsumer;
use super::{RedisBackend, error, lock, millis};
use crate::StorageError;
use crate::contract::{Backlog, EntryId, LogEntry, MinedRelay, RelayLog};

mod parse;
mod suppliers;
mod taken;

pub(crate) use taken::GroupReadsByStream;

use parse::*;

/// Creates the consumer group at id 0 if the stream exists; 1 = group exists now, 0 = no stream.
static ENSURE_GROUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
if type(r) == 'table' and r.err and not string.find(r.err, 'BUSYGROUP') then return r end
return 1
",
    )
});

/// Creates the stream (if missing) and its consumer group at id 0; 1 when the group exists now.
static CREATE_GROUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(r) == 'table' and r.err and not string.find(r.err, 'BUSYGROUP') then return r end
return 1
",
    )
});

/// XACK each id; XDEL the ones that were pending. Returns how many were acknowledged.
static ACK_DEL: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::new(
        r"
local n = 0
for i = 2, NA do
  local r = redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[i])
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP') then return 0 end
    return r
  end
  if r == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
",
    )
});

/// XACK (ignoring a missing group) and XDEL the ids; returns how many entries were deleted.
static TRIM_IDS: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::new(
        r"
redis.pcall('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2, NA))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2, NA))
",
    )
});

/// One page of `trim_session` (ARGV[5] = `1`) or of `session_relay_hashes` (`0`: nothing changes). KEYS[1] =
/// stream; ARGV = group, session, start (`-` or `(id`), page size, delete. Returns {entries read, last id read
/// ('' when none), entries deleted, the relay hashes of the session's entries (only when not deleting)}.
static TRIM_PAGE_SCRIPT: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::new(
        r"
local entries = redis.call('XRANGE', KEYS[1], ARGV[3], '+', 'COUNT', ARGV[4])
local trim = ARGV[5] == '1'
local doomed = {}
local hashes = {}
for _, e in ipairs(entries) do
  local f = e[2]
  local session, hash = nil, ''
  for i = 1, #f, 2 do
    if f[i] == 'session' then session = f[i + 1] elseif f[i] == 'hash' then hash = f[i + 1] end
  end
  if session == ARGV[2] then
    doomed[#doomed + 1] = e[1]
    hashes[#hashes + 1] = hash
  end
end
local removed = 0
if trim and #doomed > 0 then
  redis.pcall('XACK', KEYS[1], ARGV[1], unpack(doomed))
  removed = redis.call('XDEL', KEYS[1], unpack(doomed))
end
if trim then hashes = {} end
local last = ''
if #entries > 0 then last = entries[#entries][1] end
return {#entries, last, removed, hashes}
",
    )
});

/// The relay memory threshold check (module docs of `redis`, "Relay memory threshold"): refuses with the error
/// code `RELAYMEM` while what Redis counts against `maxmemory` (`used_memory` less `mem_not_counted_for_evict`,
/// when the server reports it) exceeds ARGV[1] of `maxmemory` (ARGV[1] ≥ 1, no `maxmemory` or an unreadable
/// `INFO`: no refusal). Plain `string.find` rather than patterns: 13.3 vs 17 µs of Redis CPU a call.
const MEMORY_CHECK: &str = r"
local ratio = tonumber(ARGV[1])
if ratio < 1 then
  local info = redis.pcall('INFO', 'memory')
  if type(info) == 'string' then
    local a = string.find(info, 'used_memory:', 1, true)
    local b = string.find(info, '\nmaxmemory:', 1, true)
    local c = string.find(info, 'mem_not_counted_for_evict:', 1, true)
    if a and b then
      local used = tonumber(string.sub(info, a + 12, (string.find(info, '\r', a, true) or 0) - 1))
      local max = tonumber(string.sub(info, b + 11, (string.find(info, '\r', b, true) or 0) - 1))
      if used and c then
        used = used - (tonumber(string.sub(info, c + 26, (string.find(info, '\r', c, true) or 0) - 1)) or 0)
      end
      if used and max and max > 0 and used > max * ratio then
        return redis.error_reply('RELAYMEM used_memory ' .. used .. ' (counted against maxmemory) is above ' .. ARGV[1] ..
          ' of maxmemory ' .. max .. ': relay appends refused, the rest is kept for the miner')
      end
    end
  end
end
";

/// The append of a fenced view or of one checking the relay memory threshold: KEYS = the stream of each relay,
/// then the supplier index (module `suppliers`); ARGV = the threshold ratio (`1` = none), then data, session,
/// hash, end and supplier per relay. Returns the ids in order.
static APPEND: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::new(&format!(
        "{MEMORY_CHECK}{}",
        r"
local ids = {}
local persisted = {}
for i = 1, NK - 1 do
  local b = 1 + (i - 1) * 5
  ids[i] = redis.call('XADD', KEYS[i], '*', 'data', ARGV[b + 1], 'session', ARGV[b + 2], 'hash', ARGV[b + 3],
    'end', ARGV[b + 4])
  if not persisted[KEYS[i]] then
    persisted[KEYS[i]] = true
    redis.call('PERSIST', KEYS[i])
    redis.call('SADD', KEYS[NK], ARGV[b + 5])
  end
end
return ids
"
    ))
});

/// Whether a script reads `used_memory` and `maxmemory` from `INFO memory` (1) or not (0), checked at connect.
pub(super) static MEMORY_PROBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local info = redis.pcall('INFO', 'memory')
if type(info) ~= 'string' then return 0 end
if string.find(info, 'used_memory:', 1, true) and string.find(info, '\nmaxmemory:', 1, true) then return 1 end
return 0
",
    )
});

/// {undelivered, pending} of the group. The group's `lag` is counted again with `XRANGE` when Redis does not
/// know it (entries were deleted after its last delivered id, as `trim_session` does), and when it cannot be
/// right: more than the stream's entries that are not pending. Redis 7.0 keeps `lag` as it was when undelivered
/// entries at the stream's tail are deleted (a `trim_session` of a session never read), so a trimmed backlog was
/// reported, in `ha_miner_consumer_lag` too, until the next append. The recount is capped at ARGV[2] entries: a
/// lower bound ([`BACKLOG_COUNT_CAP`]).
static BACKLOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then
    local lag = f['lag']
    if type(lag) ~= 'number' or lag > redis.call('XLEN', KEYS[1]) - f['pending'] then
      lag = #redis.call('XRANGE', KEYS[1], '(' .. f['last-delivered-id'], '+', 'COUNT', ARGV[2])
    end
    return {lag, f['pending']}
  end
end
return {redis.call('XLEN', KEYS[1]), 0}
",
    )
});

/// The most undelivered entries the backlog counts one by one when Redis cannot compute a group's `lag`: the
/// `XRANGE` doing it holds every entry it returns, payloads included, in the script's memory while Redis serves
/// nothing else; uncapped, after an outage that left gigabytes unread, it stalled Redis and grew its memory by as
/// much. Past the cap `Backlog::undelivered` is this value: a lower bound. What reads it tolerates that: the
/// consumer-lag and unowned-entries gauges then show at least this many, and a removed supplier's key is dropped
/// only at zero, which a lower bound still tells apart.
pub const BACKLOG_COUNT_CAP: u64 = 1000;

const TRIM_PAGE: usize = 512;
const CLAIM_SCAN_PAGES: usize = 64;

impl RedisBackend {
    /// Runs [`TRIM_PAGE_SCRIPT`] over `supplier`'s stream page by page: trimming the session's entries (fenced as
    /// this view is) or listing their relay hashes (plain: a read), handing each page's deleted count and hashes
    /// to `page`.
    async fn session_pages(
        &self,
        supplier: &str,
        session_id: &str,
        trim: bool,
        mut page: impl FnMut(u64, Vec<Vec<u8>>),
    ) -> Result<(), StorageError> {
        let stream = self.keys().relay_stream(supplier);
        let mut start = "-".to_owned();
        loop {
            let mut inv = if trim {
                self.invocation(&TRIM_PAGE_SCRIPT)
            } else {
                TRIM_PAGE_SCRIPT.plain().prepare_invoke()
            };
            inv.key(&stream)
                .arg(self.keys().group())
                .arg(session_id)
                .arg(&start)
                .arg(TRIM_PAGE)
                .arg(if trim { "1" } else { "0" });
            if trim {
                self.fence_args(&mut inv);
            }
            let (read, last, deleted, hashes): (usize, String, u64, Vec<Vec<u8>>) =
                inv.invoke_async(&mut self.conn()).await.map_err(|e| {
                    self.err(
                        if trim {
                            "XRANGE/XDEL trim page"
                        } else {
                            "XRANGE session page"
                        },
                        e,
                    )
                })?;
            page(deleted, hashes);
            if read < TRIM_PAGE || last.is_empty() {
                return Ok(());
            }
            start = format!("({last}");
        }
    }
}

impl RedisBackend {
    /// Makes sure the consumer group of `stream` exists; `false` when the stream itself does not exist.
    async fn ensure_group(&self, stream: &str) -> Result<bool, StorageError> {
        if lock(&self.inner.groups).contains(stream) {
            return Ok(true);
        }
        let exists: i64 = ENSURE_GROUP
            .key(stream)
            .arg(self.keys().group())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("XGROUP CREATE", e))?;
        if exists == 1 {
            lock(&self.inner.groups).insert(stream.to_owned());
        }
        Ok(exists == 1)
    }

    /// Creates the stream and its consumer group unless this process knows they exist. Appends do this, so
    /// a reader never needs to create the group later (group creation is refused while Redis is out of memory,
    /// reads and acks are not).
    async fn create_group(&self, stream: &str) -> Result<(), StorageError> {
        if lock(&self.inner.groups).contains(stream) {
            return Ok(());
        }
        let _: i64 = CREATE_GROUP
            .key(stream)
            .arg(self.keys().group())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("XGROUP CREATE MKSTREAM", e))?;
        lock(&self.inner.groups).insert(stream.to_owned());
        Ok(())
    }

    /// `NOGROUP` on `stream`: the group is created again by the next read. When this process had seen it, it
    /// vanished with whatever it held (module docs): counted and logged.
    fn group_gone(&self, stream: &str) {
        self.forget_foreign_consumers(stream);
        if !lock(&self.inner.groups).remove(stream) {
            return;
        }
        if self.inner.stats.record_group_vanished() {
            tracing::error!(
                stream,
                group = self.keys().group(),
                vanished_total = self.inner.stats.relay_log_groups_vanished(),
                "relay stream's consumer group vanished (the stream was deleted or expired: a Go relayer's EXPIRE, \
                 a DEL, a Redis restart without AOF): the relays it held that were not ingested yet are lost; \
                 the group is created again and reading goes on"
            );
        }
    }

    /// `XREADGROUP` of new entries, with `block` on `conn` when given.
    async fn read_new(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        supplier: &str,
        consumer: &str,
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let stream = self.keys().relay_stream(supplier);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(self.keys().group())
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(millis(b));
        }
        cmd.arg("STREAMS").arg(&stream).arg(">");
        let reply: Value = match cmd.query_async(conn).await {
            Ok(v) => v,
            Err(e) if error::has_code(&e, "NOGROUP") => {
                self.group_gone(&stream);
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err("XREADGROUP", e)),
        };
        let read = parse_read(supplier, &reply)?;
        self.count_new_reads(&stream, read.len());
        Ok(read
            .into_iter()
            .filter_map(|(id, relay)| {
                relay.map(|relay| LogEntry {
                    id,
                    relay,
                    deliveries: 1,
                })
            })
            .collect())
    }

    /// Acknowledges and deletes entries that came back deleted (nil) so they stop being redelivered; they were
    /// pending for the reading consumer, so their relays are lost unless already ingested (counted, logged).
    async fn drop_deleted(&self, stream: &str, ids: Vec<EntryId>) {
        if ids.is_empty() {
            return;
        }
        if self.inner.stats.record_pending_deleted(ids.len()) {
            tracing::error!(
                stream,
                entries = ids.len(),
                pending_deleted_total = self.inner.stats.relay_log_pending_deleted(),
                "relay-log entries pending for the miner were deleted before it acknowledged them (another process \
                 trimmed the stream, e.g. a Go relayer's XTRIM MINID): their relays are lost unless already \
                 ingested"
            );
        }
        let res: Result<i64, _> = TRIM_IDS
            .plain()
            .key(stream)
            .arg(self.keys().group())
            .arg(ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .invoke_async(&mut self.conn())
            .await;
        if let Err(e) = res {
            tracing::debug!(error = %e, stream, "could not drop deleted pending entries");
        }
    }

    /// A blocking reader with its own connection (see [`BlockingReader`]).
    pub fn blocking_reader(&self) -> BlockingReader {
        BlockingReader {
            backend: self.clone(),
            conn: None,
        }
    }
}

#[async_trait]
impl RelayLog for RedisBackend {
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError> {
        if relays.is_empty() {
            return Ok(Vec::new());
        }
        let mut streams: Vec<&str> = relays.iter().map(|r| r.supplier.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        for supplier in &streams {
            self.create_group(&self.keys().relay_stream(supplier)).await?;
        }
        let threshold = self.relay_memory_threshold();
        if self.fence.is_some() || threshold.is_some() {
            let mut inv = self.invocation(&APPEND);
            inv.arg(threshold.map_or_else(|| "1".to_owned(), |r| r.to_string()));
            for r in &relays {
                inv.key(self.keys().relay_stream(&r.supplier))
                    .arg(&r.payload)
                    .arg(&r.session_id)
                    .arg(&r.relay_hash)
                    .arg(r.session_end_height)
                    .arg(&r.supplier);
            }
            inv.key(self.keys().relay_log_suppliers());
            self.fence_args(&mut inv);
            let mut conn = self.write_conn().await?;
            let ids: Vec<String> = match inv.invoke_async(&mut conn).await {
                Ok(ids) => ids,
                Err(e) => {
                    let e = self.write_err(&conn, "XADD", e);
                    if matches!(e, StorageError::RelayMemoryThreshold(_)) {
                        self.inner.stats.record_relay_memory_refusal(relays.len());
                    }
                    return Err(e);
                }
            };
            self.replicated(&mut conn, "relay-log append").await?;
            if ids.len() != relays.len() {
                return Err(corrupt("XADD reply count"));
            }
            return ids.iter().map(|s| s.parse()).collect();
        }
        let mut p = redis::pipe();
        p.atomic();
        // Undoes a Go relayer's EXPIRE of the streams (module docs), and indexes their suppliers (module
        // `suppliers`) in the same transaction as the entries.
        for supplier in &streams {
            p.cmd("PERSIST").arg(self.keys().relay_stream(supplier)).ignore();
        }
        p.cmd("SADD")
            .arg(self.keys().relay_log_suppliers())
            .arg(&streams)
            .ignore();
        for r in &relays {
            p.cmd("XADD")
                .arg(self.keys().relay_stream(&r.supplier))
                .arg("*")
                .arg("data")
                .arg(&r.payload)
                .arg("session")
                .arg(&r.session_id)
                .arg("hash")
                .arg(&r.relay_hash)
                .arg("end")
                .arg(r.session_end_height);
        }
        let mut conn = self.write_conn().await?;
        let ids: Vec<String> = p
            .query_async(&mut conn)
            .await
            .map_err(|e| self.write_err(&conn, "XADD", e))?;
        self.replicated(&mut conn, "relay-log append").await?;
        if ids.len() != relays.len() {
            return Err(corrupt("XADD reply count"));
        }
        ids.iter().map(|s| s.parse()).collect()
    }

    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        if max == 0 || !self.ensure_group(&self.keys().relay_stream(supplier)).await? {
            return Ok(Vec::new());
        }
        self.read_new(&mut self.conn(), supplier, consumer, max, None).await
    }

    async fn read_pending(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let stream = self.keys().relay_stream(supplier);
        let group = self.keys().group();
        // Entries a dead consumer read and never acknowledged would otherwise stay pending forever, their relays
        // never mined (`RedisConfig::claim_idle_timeout`): taken over first, then delivered below with ours.
        if let Some(idle) = self.config().claim_idle_timeout {
            let due = super::lock(&self.inner.reclaimed)
                .get(&stream)
                .is_none_or(|at| at.elapsed() >= idle);
            if due {
                let taken = self.claim(supplier, consumer, idle, max).await?;
                if !taken.is_empty() {
                    tracing::warn!(
                        supplier,
                        consumer,
                        entries = taken.len(),
                        "relay-log entries left pending by another consumer (idle past claim_idle_timeout_ms) \
                         taken over"
                    );
                }
                // A full page may have left more: looked for again at the next read.
                if taken.len() < max {
                    super::lock(&self.inner.reclaimed).insert(stream.clone(), std::time::Instant::now());
                }
            }
        }
        // The PERSIST undoes a Go relayer's EXPIRE of the stream at every round (module docs).
        let mut p = redis::pipe();
        p.atomic()
            .cmd("PERSIST")
            .arg(&stream)
            .ignore()
            .cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("STREAMS")
            .arg(&stream)
            .arg("0")
            .cmd("XPENDING")
            .arg(&stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(max)
            .arg(consumer);
        let (reply, pending): (Value, Value) = match p.query_async(&mut self.conn()).await {
            Ok(v) => v,
            Err(e) if error::has_code(&e, "NOGROUP") => {
                self.group_gone(&stream);
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err("XREADGROUP history", e)),
        };
        let counts: std::collections::HashMap<EntryId, u64> =
            parse_pending(&pending)?.into_iter().map(|(id, _, n)| (id, n)).collect();
        let mut out = Vec::new();
        let mut deleted = Vec::new();
        for (id, relay) in parse_read(supplier, &reply)? {
            match relay {
                Some(relay) => out.push(LogEntry {
                    id,
                    relay,
                    deliveries: counts.get(&id).copied().unwrap_or(1),
                }),
                None => deleted.push(id),
            }
        }
        self.drop_deleted(&stream, deleted).await;
        // Relays read by another consumer of the group are counted at risk (module `go_fleet`), and those it got
        // since the last round as taken (module `taken`). Best effort, on their own after the read (one pipeline,
        // not a transaction): a server or ACL refusing XINFO (or an answer of another shape) must not fail the
        // read, which would stop every supplier's ingest for diagnostic metrics.
        let info: Result<(Value, Value), _> = redis::pipe()
            .cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(group)
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut self.conn())
            .await;
        match info
            .map_err(|e| e.to_string())
            .and_then(|(c, g)| parse_consumers(&c).map(|c| (c, g)).map_err(|e| e.to_string()))
        {
            Ok((consumers, groups)) => {
                self.foreign_consumers(&stream, consumer, &consumers);
                self.observe_group_reads(&stream, consumer, parse_entries_read(&groups, group));
            }
            Err(e) => tracing::debug!(stream, error = %e, "XINFO failed; foreign consumers not counted"),
        }
        Ok(out)
    }

    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let stream = self.keys().relay_stream(supplier);
        let group = self.keys().group();
        let idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let page = max.max(128);
        let mut start = "-".to_owned();
        let mut picked: Vec<(EntryId, u64)> = Vec::new();
        for _ in 0..CLAIM_SCAN_PAGES {
            let reply: Value = match redis::cmd("XPENDING")
                .arg(&stream)
                .arg(group)
                .arg("IDLE")
                .arg(idle_ms)
                .arg(&start)
                .arg("+")
                .arg(page)
                .query_async(&mut self.conn())
                .await
            {
                Ok(v) => v,
                Err(e) if error::has_code(&e, "NOGROUP") => return Ok(Vec::new()),
                Err(e) => return Err(self.err("XPENDING", e)),
            };
            let rows = parse_pending(&reply)?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            picked.extend(
                rows.iter()
                    .filter(|(_, c, _)| c != consumer)
                    .map(|(id, _, n)| (*id, n.saturating_add(1))),
            );
            if picked.len() >= max || rows.len() < page {
                break;
            }
            start = format!("({last}");
        }
        picked.truncate(max);
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&stream).arg(group).arg(consumer).arg(idle_ms);
        for (id, _) in &picked {
            cmd.arg(id.to_string());
        }
        let reply: Value = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("XCLAIM", e))?;
        let counts: std::collections::HashMap<EntryId, u64> = picked.into_iter().collect();
        let mut out: Vec<LogEntry> = parse_entries(supplier, &reply)?
            .into_iter()
            .filter_map(|(id, relay)| {
                relay.map(|relay| LogEntry {
                    id,
                    relay,
                    deliveries: counts.get(&id).copied().unwrap_or(1),
                })
            })
            .collect();
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    async fn ack(&self, supplier: &str, ids: &[EntryId]) -> Result<u64, StorageError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.invocation(&ACK_DEL);
        inv.key(self.keys().relay_stream(supplier))
            .arg(self.keys().group())
            .arg(ids.iter().map(ToString::to_string).collect::<Vec<_>>());
        self.fence_args(&mut inv);
        let n: u64 = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("XACK/XDEL", e))?;
        Ok(n)
    }

    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        let mut removed = 0u64;
        self.session_pages(supplier, session_id, true, |deleted, _| removed += deleted)
            .await?;
        Ok(removed)
    }

    async fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut hashes = Vec::new();
        self.session_pages(supplier, session_id, false, |_, page| hashes.extend(page))
            .await?;
        Ok(hashes)
    }

    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        let (undelivered, pending): (u64, u64) = BACKLOG
            .key(self.keys().relay_stream(supplier))
            .arg(self.keys().group())
            .arg(BACKLOG_COUNT_CAP)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("XINFO GROUPS", e))?;
        Ok(Backlog { undelivered, pending })
    }

    async fn suppliers(&self) -> Result<Vec<String>, StorageError> {
        self.log_suppliers().await
    }
}

/// A relay-log reader that waits for new entries with `XREADGROUP ... BLOCK` on its own connection.
///
/// A blocking command on the shared multiplexed connection would stall every command queued behind it, so
/// each blocking reader owns one connection, whose response timeout is `block_timeout + response_timeout`
/// (always longer than the `BLOCK`). The connection is opened on first use and reopened after an IO error.
/// Use one reader per consuming task.
pub struct BlockingReader {
    backend: RedisBackend,
    conn: Option<MultiplexedConnection>,
}

impl std::fmt::Debug for BlockingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingReader")
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl BlockingReader {
    /// Like [`RelayLog::read`], but waits up to the configured `block_timeout` for entries when none are
    /// available (an empty result then means none arrived in time). A supplier whose stream does not exist yet
    /// gets it created empty with the group, so the wait covers its first append.
    pub async fn read(&mut self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let b = self.backend.clone();
        let stream = b.keys().relay_stream(supplier);
        b.create_group(&stream).await?;
        let block = b.config().block_timeout;
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(b.config().connection_timeout))
                    .set_response_timeout(Some(block + b.config().response_timeout));
                b.inner
                    .client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(|e| b.err("connect blocking reader", e))?
            }
        };
        let res = b.read_new(&mut conn, supplier, consumer, max, Some(block)).await;
        // Keep the connection unless it failed at the transport level.
        if !matches!(res, Err(StorageError::Unavailable(_))) {
            self.conn = Some(conn);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_with_and_without_our_fields() {
        let ours = Value::Array(vec![
            bulk("5-1"),
            Value::Array(vec![
                bulk("data"),
                bulk("payload"),
                bulk("session"),
                bulk("s1"),
                bulk("hash"),
                bulk("hh"),
                bulk("end"),
                bulk("42"),
            ]),
        ]);
        let (id, relay) = parse_entry("sup", &ours).unwrap();
        assert_eq!(id, EntryId::new(5, 1));
        let relay = relay.unwrap();
        assert_eq!(relay.supplier, "sup");
        assert_eq!(relay.payload, b"payload");
        assert_eq!(relay.session_id, "s1");
        assert_eq!(relay.relay_hash, b"hh");
        assert_eq!(relay.session_end_height, 42);
        // A Go relayer's entry: only `data`.
        let go = Value::Array(vec![bulk("7-0"), Value::Array(vec![bulk("data"), bulk("x")])]);
        let relay = parse_entry("sup", &go).unwrap().1.unwrap();
        assert_eq!((relay.payload.as_slice(), relay.session_id.as_str()), (&b"x"[..], ""));
        // A deleted entry in a history read.
        let deleted = Value::Array(vec![bulk("8-0"), Value::Nil]);
        assert_eq!(parse_entry("sup", &deleted).unwrap(), (EntryId::new(8, 0), None));
    }

    #[test]
    fn malformed_replies_are_corrupt_not_panics() {
        for v in [
            Value::Int(3),
            Value::Array(vec![]),
            Value::Array(vec![bulk("nope"), Value::Nil]),
            Value::Array(vec![Value::Int(1)]),
        ] {
            assert!(parse_entry("s", &v).is_err(), "{v:?}");
        }
        assert!(parse_read("s", &Value::Int(1)).is_err());
        assert!(parse_read("s", &Value::Array(vec![Value::Int(1)])).is_err());
        assert!(parse_pending(&Value::Array(vec![Value::Int(1)])).is_err());
        assert!(parse_read("s", &Value::Nil).unwrap().is_empty());
    }
}
