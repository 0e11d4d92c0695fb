//! The TTL key-value store on plain Redis strings under `{base}:cache:` (the Go fleet's cache namespace).
//! TTLs are Redis' own (`PX`); counters are `INCRBY` (ASCII decimal, as the contract wants). A fenced view runs
//! each write as a fenced script (`fence` module). `increment_once` keeps each writer's last applied sequence
//! next to the counter at `{base}:cache:{key}:once:{writer}` (same TTL), changed in the same script.

use std::sync::LazyLock;
use std::time::Duration;

use super::fence::Scripts;
use super::{RedisBackend, millis};
use crate::StorageError;
use crate::contract::{IncrementOnce, KvStore};
use async_trait::async_trait;

/// KEYS: key. ARGV: delta, ttl ms (0 = none). The TTL applies only when this call creates the key.
static INCREMENT: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
",
    )
});

/// KEYS: counter, the writer's marker. ARGV: delta, ttl ms (0 = none), seq. Applies the delta and records `seq`
/// in the marker unless the marker already holds a sequence at least `seq`; returns the counter either way
/// (`INCRBY 0` of an existing counter: its value, checked to be an integer, its TTL untouched). `INCRBY` comes
/// first, so a non-integer counter fails the script before anything is written.
static INCREMENT_ONCE: LazyLock<Scripts> = LazyLock::new(|| {
    Scripts::new(
        r"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last == nil then return redis.error_reply('ERR kv marker ' .. KEYS[2] .. ' does not hold an integer') end
if last >= tonumber(ARGV[3]) then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  return redis.call('INCRBY', KEYS[1], 0)
end
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[3])
end
return v
",
    )
});

#[async_trait]
impl KvStore for RedisBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        redis::cmd("GET")
            .arg(self.keys().kv(key))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("GET", e))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StorageError> {
        if self.fence.is_some() {
            let mut args = vec![value];
            if let Some(ttl) = ttl {
                args.extend([b"PX".to_vec(), millis(ttl).to_string().into_bytes()]);
            }
            return self
                .fenced_cmd("SET", &self.keys().kv(key), args)
                .invoke_async::<()>(&mut self.conn())
                .await
                .map_err(|e| self.err("SET", e));
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys().kv(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        cmd.query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| self.err("SET", e))
    }

    async fn set_if_absent(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StorageError> {
        if self.fence.is_some() {
            let mut args = vec![value, b"NX".to_vec()];
            if let Some(ttl) = ttl {
                args.extend([b"PX".to_vec(), millis(ttl).to_string().into_bytes()]);
            }
            let reply: Option<String> = self
                .fenced_cmd("SET", &self.keys().kv(key), args)
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| self.err("SET NX", e))?;
            return Ok(reply.is_some());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys().kv(key)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let reply: Option<String> = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("SET NX", e))?;
        Ok(reply.is_some())
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StorageError> {
        let mut inv = self.invocation(&INCREMENT);
        inv.key(self.keys().kv(key)).arg(delta).arg(ttl.map_or(0, millis));
        self.fence_args(&mut inv);
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("INCRBY", e))
    }

    async fn increment_once(
        &self,
        key: &str,
        op: &IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StorageError> {
        let mut inv = self.invocation(&INCREMENT_ONCE);
        inv.key(self.keys().kv(key))
            .key(self.keys().kv(&op.marker_key(key)))
            .arg(delta)
            .arg(ttl.map_or(0, millis))
            .arg(op.seq);
        self.fence_args(&mut inv);
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("INCRBY once", e))
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let key = self.keys().kv(key);
        let reply = if self.fence.is_some() {
            self.fenced_cmd("DEL", &key, Vec::new())
                .invoke_async(&mut self.conn())
                .await
        } else {
            redis::cmd("DEL").arg(&key).query_async(&mut self.conn()).await
        };
        let n: i64 = reply.map_err(|e| self.err("DEL", e))?;
        Ok(n > 0)
    }
}
