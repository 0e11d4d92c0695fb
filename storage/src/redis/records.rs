//! Session records: hash `{base}:miner:sessions:{supplier}:{session}` with fields `state`, `data`, `version`,
//! `supplier`, `session_id`, indexed by the sets `{base}:miner:sessions:{supplier}:index` and
//! `{base}:miner:sessions:{supplier}:state:{state}` (the Go miner's index keys) plus
//! `{base}:miner:sessions:suppliers` (ours, for listing across suppliers).
//!
//! Compare-and-set and delete are Lua scripts (read version, compare, write record and indexes atomically); a
//! fenced view runs their fenced twins (lease check first, same script). The
//! record's hash shares the Go miner's key and `state` field but not its other fields: our body is opaque bytes.
//! With `wait_replicas` > 0 a put or delete that wrote runs on the dedicated connection of replicated writes and
//! waits for the replicas (`replicas` module; a conflict wrote nothing and does not wait).
//! `list` is at most three round trips (suppliers, index sets, records) and drops index entries whose record is
//! gone or has moved to another state.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Value;

use super::RedisBackend;
use super::fence::Scripts;
use crate::StorageError;
use crate::contract::{SessionRecord, SessionStore};

/// KEYS: record, supplier index, suppliers set. ARGV: expected version, state, data, supplier, session,
/// state-set prefix. Returns {new version, stored version}; new version -1 = conflict.
///
/// The record hash, the index set and the state sets are the Go miner's keys, which it writes with a TTL
/// (`session_ttl`, go-redis-layout.md): `HSET`/`SADD` keep a TTL, so after a Go miner touched them the index could
/// expire with our records in it, and a failover would not restore (claim, prove) those sessions. Every write
/// `PERSIST`s the keys it wrote; our records are deleted explicitly when pruned.
static PUT: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::allow_oom(
        r"
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[1]) then return {-1, cur} end
local old = redis.call('HGET', KEYS[1], 'state')
local v = cur + 1
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'data', ARGV[3], 'version', v, 'supplier', ARGV[4],
  'session_id', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[4])
if old and old ~= ARGV[2] then redis.call('SREM', ARGV[6] .. old, ARGV[5]) end
redis.call('SADD', ARGV[6] .. ARGV[2], ARGV[5])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', ARGV[6] .. ARGV[2])
return {v, cur}
",
    )
});

/// KEYS: record, supplier index. ARGV: expected version ('' = any), session, state-set prefix.
/// Returns {1 deleted | 0 absent | -1 conflict, stored version}.
static DELETE: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::allow_oom(
        r"
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= cur then return {-1, cur} end
if cur == 0 then return {0, 0} end
local state = redis.call('HGET', KEYS[1], 'state')
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
if state then redis.call('SREM', ARGV[3] .. state, ARGV[2]) end
return {1, cur}
",
    )
});

fn conflict(supplier: &str, session_id: &str, expected: u64, current: i64) -> StorageError {
    StorageError::Conflict(format!(
        "session record {supplier}/{session_id}: expected version {expected}, stored version {current}"
    ))
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

fn decode(supplier: &str, session_id: &str, fields: &Value) -> Result<Option<SessionRecord>, StorageError> {
    let Value::Array(f) = fields else {
        return Err(StorageError::Corrupt("redis session record: unexpected reply".into()));
    };
    let (Some(state), Some(data), Some(version)) = (
        f.first().and_then(bulk),
        f.get(1).and_then(bulk),
        f.get(2).and_then(bulk),
    ) else {
        return Ok(None);
    };
    let version = std::str::from_utf8(version)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StorageError::Corrupt(format!("redis session record {supplier}/{session_id}: bad version")))?;
    Ok(Some(SessionRecord {
        supplier: supplier.to_owned(),
        session_id: session_id.to_owned(),
        state: String::from_utf8_lossy(state).into_owned(),
        data: data.to_vec(),
        version,
    }))
}

impl RedisBackend {
    async fn smembers(&self, keys: &[String]) -> Result<Vec<Vec<String>>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for k in keys {
            p.cmd("SMEMBERS").arg(k);
        }
        p.query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("SMEMBERS", e))
    }
}

#[async_trait]
impl SessionStore for RedisBackend {
    async fn get(&self, supplier: &str, session_id: &str) -> Result<Option<SessionRecord>, StorageError> {
        let fields: Value = redis::cmd("HMGET")
            .arg(self.keys().session(supplier, session_id))
            .arg(&["state", "data", "version"])
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("HMGET session", e))?;
        decode(supplier, session_id, &fields)
    }

    async fn put(
        &self,
        supplier: &str,
        session_id: &str,
        state: &str,
        data: Vec<u8>,
        expected_version: u64,
    ) -> Result<u64, StorageError> {
        let mut inv = self.invocation(&PUT);
        inv.key(self.keys().session(supplier, session_id))
            .key(self.keys().session_index(supplier))
            .key(self.keys().session_suppliers())
            .arg(expected_version)
            .arg(state)
            .arg(data)
            .arg(supplier)
            .arg(session_id)
            .arg(self.keys().session_state_prefix(supplier));
        self.fence_args(&mut inv);
        let mut conn = self.write_conn().await?;
        let (version, current): (i64, i64) = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.write_err(&conn, "session CAS", e))?;
        let version = u64::try_from(version).map_err(|_| conflict(supplier, session_id, expected_version, current))?;
        self.replicated_best_effort(&mut conn, "session record put").await?;
        Ok(version)
    }

    async fn delete(
        &self,
        supplier: &str,
        session_id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StorageError> {
        let mut inv = self.invocation(&DELETE);
        inv.key(self.keys().session(supplier, session_id))
            .key(self.keys().session_index(supplier))
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(session_id)
            .arg(self.keys().session_state_prefix(supplier));
        self.fence_args(&mut inv);
        let mut conn = self.write_conn().await?;
        let (outcome, current): (i64, i64) = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.write_err(&conn, "session delete", e))?;
        match outcome {
            -1 => Err(conflict(
                supplier,
                session_id,
                expected_version.unwrap_or_default(),
                current,
            )),
            1 => {
                self.replicated_best_effort(&mut conn, "session record delete").await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list(&self, supplier: Option<&str>, state: Option<&str>) -> Result<Vec<SessionRecord>, StorageError> {
        let suppliers: Vec<String> = match supplier {
            Some(s) => vec![s.to_owned()],
            None => self
                .smembers(&[self.keys().session_suppliers()])
                .await?
                .pop()
                .unwrap_or_default(),
        };
        let index_keys: Vec<String> = suppliers
            .iter()
            .map(|s| match state {
                Some(st) => format!("{}{st}", self.keys().session_state_prefix(s)),
                None => self.keys().session_index(s),
            })
            .collect();
        let members = self.smembers(&index_keys).await?;
        let mut pairs: Vec<(String, String)> = suppliers
            .into_iter()
            .zip(members)
            .flat_map(|(s, ids)| ids.into_iter().map(move |id| (s.clone(), id)))
            .collect();
        pairs.sort();
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for (s, id) in &pairs {
            p.cmd("HMGET")
                .arg(self.keys().session(s, id))
                .arg(&["state", "data", "version"]);
        }
        let rows: Vec<Value> = p
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("HMGET sessions", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for ((s, id), row) in pairs.iter().zip(&rows) {
            if let Some(rec) = decode(s, id, row)?
                && state.is_none_or(|st| rec.state == st)
            {
                out.push(rec);
            }
        }
        Ok(out)
    }
}
