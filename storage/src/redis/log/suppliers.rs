//! [`crate::RelayLog::suppliers`] on Redis: which `{base}:relays:{supplier}` streams hold entries.
//!
//! The streams are found with paged `SCAN ... MATCH {base}:relays:*` (never `KEYS`, which blocks the server for
//! the whole keyspace), and each page's keys go through one script that answers `XLEN` for a stream and 0 for
//! any other type, so a key of another kind under that prefix is never listed, and an empty stream (the miner
//! creates one with its consumer group before the first append; acknowledged entries are deleted) is not either.
//! `SCAN`'s `TYPE` filter would do the type part, but it needs Redis 6; the script works on every version this
//! backend supports. A key that `SCAN` returns twice (it may, while the keyspace rehashes) is listed once.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use redis::{Script, Value};

use super::RedisBackend;
use crate::StorageError;

/// Keys `SCAN` is asked to look at per page (a hint; a page may hold more or fewer).
const SCAN_COUNT: usize = 1000;

/// For each key: its length when it is a stream, else 0.
static STREAM_LENGTHS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)
  if type(t) == 'table' then t = t['ok'] end
  if t == 'stream' then out[i] = redis.call('XLEN', k) else out[i] = 0 end
end
return out
",
    )
});

/// `s` as a `SCAN MATCH` pattern matching itself only (glob characters escaped).
fn glob_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisBackend {
    /// The suppliers of the non-empty relay streams under this backend's base prefix, sorted.
    pub(super) async fn log_suppliers(&self) -> Result<Vec<String>, StorageError> {
        let prefix = self.keys().relay_stream("");
        let pattern = format!("{}*", glob_literal(&prefix));
        let mut found = BTreeSet::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply: Value = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.err("SCAN", e))?;
            let bad = || StorageError::Corrupt("redis SCAN: unexpected reply".into());
            let Value::Array(parts) = reply else {
                return Err(bad());
            };
            let (Some(Value::BulkString(next)), Some(Value::Array(items))) = (parts.first(), parts.get(1)) else {
                return Err(bad());
            };
            let mut keys = Vec::with_capacity(items.len());
            for item in items {
                let Value::BulkString(key) = item else {
                    return Err(bad());
                };
                // Not UTF-8: never a key this crate or the Go relayer wrote for a supplier.
                if let Ok(key) = std::str::from_utf8(key) {
                    keys.push(key.to_owned());
                }
            }
            if !keys.is_empty() {
                let mut script = STREAM_LENGTHS.prepare_invoke();
                for key in &keys {
                    script.key(key);
                }
                let lengths: Vec<u64> = script
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(|e| self.err("XLEN", e))?;
                for (key, len) in keys.iter().zip(lengths) {
                    if let Some(supplier) = key.strip_prefix(&prefix)
                        && len > 0
                        && !supplier.is_empty()
                    {
                        found.insert(supplier.to_owned());
                    }
                }
            }
            if next.as_slice() == b"0" {
                return Ok(found.into_iter().collect());
            }
            cursor = String::from_utf8_lossy(next).into_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::glob_literal;
    use crate::RelayLog as _;
    use crate::redis::server::{RedisServer, ServerOptions};
    use crate::redis::{RedisBackend, RedisConfig};

    #[test]
    fn a_prefix_with_glob_characters_matches_only_itself() {
        assert_eq!(glob_literal("ha:relays:"), "ha:relays:");
        assert_eq!(glob_literal(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }

    async fn backend(server: &RedisServer, base: &str) -> RedisBackend {
        let mut cfg = RedisConfig::new(server.url()).with_prefix(base);
        cfg.block_timeout = Duration::from_millis(20);
        RedisBackend::connect(cfg).await.unwrap()
    }

    /// Only non-empty streams under the backend's own prefix are listed: a Go relayer's stream is, the empty
    /// stream a blocking reader creates with its group is not, nor a key of another type under the prefix, nor
    /// another fleet's streams (also one whose prefix only a glob would confuse with this one), and the paged
    /// `SCAN` finds every stream among thousands of other keys.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_non_empty_streams_of_this_prefix_are_listed() {
        let server = RedisServer::start(ServerOptions::default()).unwrap();
        let ha = backend(&server, "ha").await;
        let glob = backend(&server, "h?").await;
        assert!(ha.suppliers().await.unwrap().is_empty());

        assert!(
            ha.blocking_reader()
                .read("pokt1empty", "c", 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            server.command(&["TYPE", "ha:relays:pokt1empty"]).unwrap(),
            "+stream\r\n"
        );
        server.command(&["SET", "ha:relays:pokt1string", "x"]).unwrap();
        server
            .command(&["XADD", "ha:relays:pokt1go", "*", "data", "x"])
            .unwrap();
        server
            .command(&["XADD", "other:relays:pokt1other", "*", "data", "x"])
            .unwrap();
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1go"]);
        assert!(glob.suppliers().await.unwrap().is_empty(), "`h?` is not a pattern");
        server.command(&["XADD", "h?:relays:pokt1q", "*", "data", "x"]).unwrap();
        assert_eq!(glob.suppliers().await.unwrap(), ["pokt1q"]);

        let script = "for i = 1, 3000 do redis.call('SET', 'junk:' .. i, 'x') end \
                      for i = 1, 40 do redis.call('XADD', 'ha:relays:pokt1s' .. string.format('%02d', i), '*', 'data', 'x') end";
        server.command(&["EVAL", script, "0"]).unwrap();
        let listed = ha.suppliers().await.unwrap();
        let mut expected: Vec<String> = (1..=40).map(|i| format!("pokt1s{i:02}")).collect();
        expected.insert(0, "pokt1go".to_owned());
        assert_eq!(listed, expected);
    }
}
