//! The TTL key-value store on plain Redis strings under `{base}:cache:` (the Go fleet's cache namespace).
//! TTLs are Redis' own (`PX`); counters are `INCRBY` (ASCII decimal, as the contract wants).

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{RedisBackend, millis};
use crate::StorageError;
use crate::contract::KvStore;

/// KEYS: key. ARGV: delta, ttl ms (0 = none). The TTL applies only when this call creates the key.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
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
        INCREMENT
            .key(self.keys().kv(key))
            .arg(delta)
            .arg(ttl.map_or(0, millis))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("INCRBY", e))
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let n: i64 = redis::cmd("DEL")
            .arg(self.keys().kv(key))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("DEL", e))?;
        Ok(n > 0)
    }
}
