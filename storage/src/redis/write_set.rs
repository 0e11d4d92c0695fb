//! [`WriteSets`] on Redis: one Lua script (fenced like every write: the lease check first, see the `fence`
//! module) that checks every record's version, then writes the trie hashes (`HSET` + `HDEL`, as a trie batch),
//! the records and their index sets (as the `records` module's compare-and-set) and acks (`XACK` + `XDEL`, as
//! `RelayLog::ack`): one round trip instead of one per part.
//!
//! All or nothing: Redis runs a script atomically, and every check comes before the first write. What a script
//! cannot undo is a runtime error of a write command; the order (tries, then records, then acks) keeps what such
//! an error leaves to states one-by-one writes leave too (a trie ahead of its record, never an ack ahead of its
//! trie). An `XACK` error other than a missing group leaves that entry pending (redelivered, idempotent) rather
//! than stopping the script after its writes.
//!
//! Replicas: with `wait_replicas` > 0 the script runs on the dedicated connection of replicated writes and is
//! followed by `WAIT` (`replicas` module); a set too few replicas acknowledged is counted and stands (the primary
//! has it, and failing the miner's writes would stop its claims and proofs while a replica is out). A
//! [`SetDurability::Eventual`] set (the miner's ingest batch, which the caller redoes if a crash loses it, and so
//! if a failover does) does not wait; a later set that waits covers it too (`WAIT` waits for the primary's
//! replication offset, which includes every earlier write).
//!
//! Memory: a set with trie writes runs the plain script, so at `maxmemory` Redis refuses it at its first write
//! (an `HSET`, before anything is written), as it refuses trie batches; a set without tries (a step's records,
//! acks) runs the `allow-oom` twin on Redis ≥ 7, as the records' own script does.

use std::sync::LazyLock;

use async_trait::async_trait;

use super::RedisBackend;
use super::fence::Scripts;
use super::replicas::WriteConn;
use super::trie::to_hex;
use crate::StorageError;
use crate::contract::{SetDurability, WriteSet, WriteSetOutcome, WriteSets};

/// ARGV: tries t, records r, ack streams a, group; then per record (expected version, state, data, supplier,
/// session, state-set prefix); then per trie (n deleted, n put, deleted fields, field/value pairs); then per
/// stream (n ids, ids). KEYS: per record (record, supplier index, suppliers set); then per trie its hash; then
/// per stream its key. Returns {-1, record index, stored version} on a conflict, else {acked, versions...}.
const BODY: &str = r"
local nt, nr, na, group = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local cur = {}
for i = 1, nr do
  local c = tonumber(redis.call('HGET', KEYS[3 * i - 2], 'version') or '0')
  if c ~= tonumber(ARGV[4 + 6 * (i - 1) + 1]) then return {-1, i, c} end
  cur[i] = c
end
local p = 5 + 6 * nr
for t = 1, nt do
  local key = KEYS[3 * nr + t]
  local ndel, nput = tonumber(ARGV[p]), tonumber(ARGV[p + 1])
  local i, last = p + 2 + ndel, p + 1 + ndel + 2 * nput
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call('HSET', key, unpack(ARGV, i, j))
    i = j + 1
  end
  i, last = p + 2, p + 1 + ndel
  while i <= last do
    local j = math.min(i + 499, last)
    redis.call('HDEL', key, unpack(ARGV, i, j))
    i = j + 1
  end
  p = p + 2 + ndel + 2 * nput
end
local out = {0}
for i = 1, nr do
  local a = 4 + 6 * (i - 1)
  local rec, index, sups = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local state, sup, sess, prefix = ARGV[a + 2], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local old = redis.call('HGET', rec, 'state')
  local v = cur[i] + 1
  redis.call('HSET', rec, 'state', state, 'data', ARGV[a + 3], 'version', v, 'supplier', sup, 'session_id', sess)
  redis.call('SADD', index, sess)
  redis.call('SADD', sups, sup)
  if old and old ~= state then redis.call('SREM', prefix .. old, sess) end
  redis.call('SADD', prefix .. state, sess)
  redis.call('PERSIST', rec)
  redis.call('PERSIST', index)
  redis.call('PERSIST', sups)
  redis.call('PERSIST', prefix .. state)
  out[i + 1] = v
end
local acked = 0
for s = 1, na do
  local key = KEYS[3 * nr + nt + s]
  local n = tonumber(ARGV[p])
  for i = p + 1, p + n do
    local r = redis.pcall('XACK', key, group, ARGV[i])
    if type(r) == 'number' and r == 1 then
      redis.call('XDEL', key, ARGV[i])
      acked = acked + 1
    end
  end
  p = p + 1 + n
end
out[1] = acked
return out
";

/// Sets with trie writes: refused at `maxmemory` like trie batches.
static WRITE_SET: LazyLock<Scripts> = LazyLock::new(|| Scripts::new(BODY));

/// Sets of records and acks only: written at `maxmemory` too (Redis ≥ 7), like the records' own script.
static WRITE_SET_SMALL: LazyLock<Scripts> = LazyLock::new(|| Scripts::allow_oom(BODY));

#[async_trait]
impl WriteSets for RedisBackend {
    async fn write(&self, set: WriteSet) -> Result<WriteSetOutcome, StorageError> {
        set.validate()?;
        if set.is_empty() {
            return Ok(WriteSetOutcome::default());
        }
        // An eventual set is one a crash may lose (the caller redoes it): so may a failover, it does not wait.
        let eventual = set.durability == SetDurability::Eventual;
        let tries: Vec<_> = set.tries.into_iter().filter(|t| !t.batch.is_empty()).collect();
        let acks: Vec<_> = set.acks.into_iter().filter(|a| !a.ids.is_empty()).collect();
        let scripts = if tries.is_empty() {
            &*WRITE_SET_SMALL
        } else {
            &*WRITE_SET
        };
        let mut inv = self.invocation(scripts);
        inv.arg(tries.len())
            .arg(set.records.len())
            .arg(acks.len())
            .arg(self.keys().group());
        for r in &set.records {
            inv.key(self.keys().session(&r.supplier, &r.session_id))
                .key(self.keys().session_index(&r.supplier))
                .key(self.keys().session_suppliers())
                .arg(r.expected_version)
                .arg(&r.state)
                .arg(r.data.as_slice())
                .arg(&r.supplier)
                .arg(&r.session_id)
                .arg(self.keys().session_state_prefix(&r.supplier));
        }
        let mut hashes = Vec::with_capacity(tries.len());
        for t in &tries {
            let key = self.keys().trie_nodes(&t.supplier, &t.namespace);
            inv.key(&key).arg(t.batch.deletes.len()).arg(t.batch.puts.len());
            for k in &t.batch.deletes {
                inv.arg(to_hex(k));
            }
            for (k, v) in &t.batch.puts {
                inv.arg(to_hex(k)).arg(v.as_slice());
            }
            hashes.push(key);
        }
        for a in &acks {
            inv.key(self.keys().relay_stream(&a.supplier)).arg(a.ids.len());
            for id in &a.ids {
                inv.arg(id.to_string());
            }
        }
        self.fence_args(&mut inv);
        let backend = self.clone();
        let batches: Vec<_> = tries.into_iter().map(|t| t.batch).collect();
        let records: Vec<(String, String, u64)> = set
            .records
            .iter()
            .map(|r| (r.supplier.clone(), r.session_id.clone(), r.expected_version))
            .collect();
        // Run to the end even if the caller stops waiting: once Redis applied the set, the open namespaces'
        // mirrors must see it.
        let outcome = tokio::spawn(async move {
            let mut conn = if eventual {
                WriteConn::Shared(backend.conn())
            } else {
                backend.write_conn().await?
            };
            let reply: Vec<i64> = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| backend.write_err(&conn, "write set", e))?;
            match reply.as_slice() {
                [-1, i, current] => {
                    let (supplier, session_id, expected) = usize::try_from(*i - 1)
                        .ok()
                        .and_then(|i| records.get(i))
                        .ok_or_else(|| StorageError::Corrupt("redis write set: bad conflict reply".into()))?;
                    Err(StorageError::Conflict(format!(
                        "session record {supplier}/{session_id}: expected version {expected}, stored version \
                         {current}"
                    )))
                }
                [acked, versions @ ..] if versions.len() == records.len() => {
                    for (key, batch) in hashes.iter().zip(batches) {
                        backend.mirror_applied(key, batch);
                    }
                    // After the mirrors: the primary applied the set whether the replicas have it or not.
                    backend.replicated_best_effort(&mut conn, "write set").await?;
                    Ok(WriteSetOutcome {
                        versions: versions.iter().map(|v| u64::try_from(*v).unwrap_or_default()).collect(),
                        acked: u64::try_from(*acked).unwrap_or_default(),
                    })
                }
                _ => Err(StorageError::Corrupt(format!(
                    "redis write set: unexpected reply {reply:?}"
                ))),
            }
        });
        outcome
            .await
            .map_err(|e| StorageError::Backend(format!("redis write set task: {e}")))?
    }
}
