//! [`crate::RelayLog::suppliers`] on Redis: which `{base}:relays:{supplier}` streams hold entries.
//!
//! # The index
//! Every append adds the suppliers it writes to the set `{base}:miner:relay_log:suppliers` (in the append's own
//! `MULTI` or script, so a stream holding an entry of ours is always in it). A listing reads the set (`SMEMBERS`)
//! and runs one script per page of [`PAGE`] members that answers `XLEN` for each member's stream and removes
//! from the set, atomically with that check, the members whose key is no longer a stream (deleted, expired: a
//! Go relayer's 2 h `EXPIRE`, or of another type). So the cost of a listing follows the number of suppliers,
//! not the keyspace, and the semantics are the scan's: a supplier is listed while its stream holds an entry
//! (undelivered or pending), not when its stream is empty (the miner creates one with its consumer group before
//! the first append; acknowledged entries are deleted) nor once it was deleted. A removal cannot lose a
//! concurrent append: Redis runs the script and the append's transaction one after the other, and an append
//! after the removal adds the supplier again.
//!
//! # The sweep
//! Not every stream is written through this crate: the Go relayer `XADD`s directly (during a migration), and
//! releases before the index wrote streams without it. So the first listing of a process, and then one every
//! [`SWEEP_EVERY`], finds the streams with a paged `SCAN ... MATCH {base}:relays:*` (never `KEYS`, which blocks
//! the server for the whole keyspace) and adds each one found to the set, in a script per page that answers
//! `XLEN` for a stream and nothing for a key of another type. `SCAN`'s `TYPE` filter would do the type part,
//! but it needs Redis 6; the script works on every version this backend supports. A key that `SCAN` returns
//! twice (it may, while the keyspace rehashes) is listed once.
//!
//! The limit: a stream that only others write (a Go relayer's, for a supplier no relay-miner relayer served)
//! and that appeared after the last sweep is listed from the next sweep on, at most [`SWEEP_EVERY`] late; once
//! found, it is in the set and listed at every listing while it holds entries. A campaign that gains the
//! leadership (a token this process was not granted before, module `leader`) makes the next listing sweep, so a
//! new leader, which may have been a standby for hours, starts from the whole keyspace. The miner lists once per block
//! (module `unowned` of the miner), where it used to scan the whole keyspace.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::{Script, Value};

use super::{RedisBackend, lock};
use crate::StorageError;

/// Keys `SCAN` is asked to look at per page (a hint; a page may hold more or fewer).
const SCAN_COUNT: usize = 1000;

/// Members of the index checked per script (each script is atomic: other clients wait while it runs).
pub(crate) const PAGE: usize = 1000;

/// How often a listing also sweeps the keyspace for streams written by others (module docs).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// KEYS[1] = the index, KEYS[2..] = streams; ARGV[1] = the mode, ARGV[i + 1] = the supplier of KEYS[i + 1].
/// Answers each stream's length, or -1 for a key that is not a stream (or none). Mode `sweep` adds each supplier
/// whose key is a stream to the index; mode `index` removes from it each supplier whose key is not a stream (any
/// more).
static PAGE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sweep = ARGV[1] == 'sweep'
local out = {}
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])
  if type(t) == 'table' then t = t['ok'] end
  if t == 'stream' then
    if sweep then redis.call('SADD', KEYS[1], ARGV[i]) end
    out[i - 1] = redis.call('XLEN', KEYS[i])
  else
    if not sweep then redis.call('SREM', KEYS[1], ARGV[i]) end
    out[i - 1] = -1
  end
end
return out
",
    )
});

/// What a [`PAGE_SCRIPT`] run does to the index besides answering the lengths.
#[derive(Debug, Clone, Copy)]
enum PageMode {
    /// A sweep: streams found are added.
    Sweep,
    /// A listing: members whose key is not a stream are removed.
    Index,
}

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
    /// The suppliers of the non-empty relay streams under this backend's base prefix, sorted (module docs).
    pub(super) async fn log_suppliers(&self) -> Result<Vec<String>, StorageError> {
        let mut found = BTreeSet::new();
        let due = lock(&self.inner.suppliers_swept).is_none_or(|last| last.elapsed() >= SWEEP_EVERY);
        if due {
            let started = Instant::now();
            self.sweep_suppliers().await?;
            *lock(&self.inner.suppliers_swept) = Some(started);
        }
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().relay_log_suppliers())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("SMEMBERS", e))?;
        for page in members.chunks(PAGE) {
            let lengths = self.stream_lengths(PageMode::Index, page).await?;
            for (supplier, len) in page.iter().zip(lengths) {
                if len > 0 {
                    found.insert(supplier.clone());
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// [`PAGE_SCRIPT`] in `mode` over the streams of `suppliers` (one page): their lengths, -1 for a key that is
    /// not a stream.
    async fn stream_lengths(&self, mode: PageMode, suppliers: &[String]) -> Result<Vec<i64>, StorageError> {
        let mut inv = PAGE_SCRIPT.prepare_invoke();
        inv.key(self.keys().relay_log_suppliers()).arg(match mode {
            PageMode::Sweep => "sweep",
            PageMode::Index => "index",
        });
        for supplier in suppliers {
            inv.key(self.keys().relay_stream(supplier)).arg(supplier);
        }
        let lengths: Vec<i64> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.err("XLEN", e))?;
        if lengths.len() != suppliers.len() {
            return Err(StorageError::Corrupt("redis XLEN: reply count".into()));
        }
        Ok(lengths)
    }

    /// The paged `SCAN` of the relay streams (module docs, "The sweep"): adds every stream found to the index,
    /// which the listing then reads.
    async fn sweep_suppliers(&self) -> Result<(), StorageError> {
        let prefix = self.keys().relay_stream("");
        let pattern = format!("{}*", glob_literal(&prefix));
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
            let mut suppliers = Vec::with_capacity(items.len());
            for item in items {
                let Value::BulkString(key) = item else {
                    return Err(bad());
                };
                // Not UTF-8: never a key this crate or the Go relayer wrote for a supplier.
                if let Ok(key) = std::str::from_utf8(key)
                    && let Some(supplier) = key.strip_prefix(&prefix)
                    && !supplier.is_empty()
                {
                    suppliers.push(supplier.to_owned());
                }
            }
            for page in suppliers.chunks(PAGE) {
                self.stream_lengths(PageMode::Sweep, page).await?;
            }
            if next.as_slice() == b"0" {
                return Ok(());
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
    use crate::redis::server::{RedisServer, ServerOptions};
    use crate::redis::{RedisBackend, RedisConfig};
    use crate::{Fence, Fencing as _, MinedRelay, RelayLog as _};

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

    fn relay(supplier: &str, session: &str, n: u64) -> MinedRelay {
        MinedRelay {
            supplier: supplier.to_owned(),
            session_id: session.to_owned(),
            session_end_height: 100,
            relay_hash: n.to_be_bytes().to_vec(),
            payload: format!("relay-{n}").into_bytes(),
        }
    }

    /// Makes the next listing of `b` sweep, as [`super::SWEEP_EVERY`] after the last one would.
    fn sweep_due(b: &RedisBackend) {
        *crate::redis::lock(&b.inner.suppliers_swept) = None;
    }

    /// `SCAN` commands the server ran so far (`INFO commandstats`).
    fn scans(server: &RedisServer) -> u64 {
        let info = server.command(&["INFO", "commandstats"]).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_scan:calls="))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    fn indexed(server: &RedisServer, supplier: &str) -> bool {
        server
            .command(&["SISMEMBER", "ha:miner:relay_log:suppliers", supplier])
            .unwrap()
            == ":1\r\n"
    }

    /// Listings read the index, and the keyspace is scanned only at the first listing and when a sweep is due:
    /// our appends (the transaction and the fenced script) are listed without a scan, a stream others wrote
    /// before the first listing (an older release, a Go relayer) is found by it, one written after it by the next
    /// sweep, after which it is listed without scanning; a deleted stream disappears and leaves the index, an
    /// emptied one is no longer listed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listings_read_the_index_and_scan_only_when_a_sweep_is_due() {
        let server = RedisServer::start(ServerOptions::default()).unwrap();
        server
            .command(&["XADD", "ha:relays:pokt1old", "*", "data", "x"])
            .unwrap();
        let ha = backend(&server, "ha").await;
        let before = scans(&server);
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1old"]);
        assert!(scans(&server) > before, "the first listing sweeps");
        assert!(indexed(&server, "pokt1old"));

        // The transaction path of an append: no relay memory threshold (the script path is the default).
        let mut cfg = RedisConfig::new(server.url()).with_prefix("ha");
        cfg.relay_max_memory_ratio = 1.0;
        let no_threshold = RedisBackend::connect(cfg).await.unwrap();
        assert_eq!(no_threshold.relay_memory_threshold(), None);
        no_threshold
            .append(vec![relay("pokt1tx", "s1", 1), relay("pokt1tx", "s1", 2)])
            .await
            .unwrap();
        assert!(ha.relay_memory_threshold().is_some(), "the script path");
        let l = ha.storage().leadership;
        let token = l
            .campaign("miner", "m", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let fenced = ha.fenced(Fence::new("miner", "m", token));
        fenced
            .relay_log
            .append(vec![relay("pokt1fenced", "s1", 3)])
            .await
            .unwrap();
        // The campaign gained the leadership: the next listing sweeps (`a_leadership_gain_makes_...`).
        ha.suppliers().await.unwrap();
        let before = scans(&server);
        server
            .command(&["XADD", "ha:relays:pokt1go", "*", "data", "x"])
            .unwrap();
        for _ in 0..3 {
            assert_eq!(ha.suppliers().await.unwrap(), ["pokt1fenced", "pokt1old", "pokt1tx"]);
        }
        assert_eq!(scans(&server), before, "no scan between sweeps");

        sweep_due(&ha);
        let all = ["pokt1fenced", "pokt1go", "pokt1old", "pokt1tx"];
        assert_eq!(ha.suppliers().await.unwrap(), all);
        assert!(indexed(&server, "pokt1go"));
        let before = scans(&server);
        assert_eq!(ha.suppliers().await.unwrap(), all);
        assert_eq!(scans(&server), before, "found once, then read from the index");

        // Deleted (as the Go relayer's EXPIRE deletes it): not listed, out of the index; emptied: not listed.
        server.command(&["DEL", "ha:relays:pokt1old"]).unwrap();
        let read = ha.read("pokt1tx", "c", 10).await.unwrap();
        let ids: Vec<_> = read.iter().map(|e| e.id).collect();
        assert_eq!(ha.ack("pokt1tx", &ids).await.unwrap(), 2);
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1fenced", "pokt1go"]);
        assert!(!indexed(&server, "pokt1old"));
        assert!(indexed(&server, "pokt1tx"), "an empty stream stays indexed");
        // Written again by an append: listed again, at once.
        ha.append(vec![relay("pokt1old", "s2", 4)]).await.unwrap();
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1fenced", "pokt1go", "pokt1old"]);
        assert_eq!(scans(&server), before);
    }

    /// A campaign that gains the leadership makes the next listing sweep: a stream only a Go relayer wrote since
    /// the last sweep is listed at once by the new leader, not up to `SWEEP_EVERY` later. A campaign that keeps
    /// the same token (the holder again) does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leadership_gain_makes_the_next_listing_sweep() {
        let server = RedisServer::start(ServerOptions::default()).unwrap();
        let ha = backend(&server, "ha").await;
        assert!(ha.suppliers().await.unwrap().is_empty(), "the first listing sweeps");
        server
            .command(&["XADD", "ha:relays:pokt1go", "*", "data", "x"])
            .unwrap();
        assert!(ha.suppliers().await.unwrap().is_empty(), "not due");

        let l = ha.storage().leadership;
        let token = l
            .campaign("miner", "m", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let before = scans(&server);
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1go"]);
        assert!(scans(&server) > before, "swept after the gain");

        server
            .command(&["XADD", "ha:relays:pokt1go2", "*", "data", "x"])
            .unwrap();
        let again = l.campaign("miner", "m", Duration::from_secs(30)).await.unwrap();
        assert_eq!(again, Some(token), "the holder campaigning again keeps its token");
        let before = scans(&server);
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1go"]);
        assert_eq!(scans(&server), before, "the same token: no sweep");
        assert!(l.resign("miner", "m", token).await.unwrap());
        let next = l
            .campaign("miner", "m", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(next > token);
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1go", "pokt1go2"]);
    }

    /// Only non-empty streams under the backend's own prefix are listed: a Go relayer's stream is, the empty
    /// stream a blocking reader creates with its group is not, nor a key of another type under the prefix, nor
    /// another fleet's streams (also one whose prefix only a glob would confuse with this one), and the paged
    /// `SCAN` of a sweep finds every stream among thousands of other keys.
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
        sweep_due(&ha);
        assert_eq!(ha.suppliers().await.unwrap(), ["pokt1go"]);
        assert!(glob.suppliers().await.unwrap().is_empty(), "`h?` is not a pattern");
        server.command(&["XADD", "h?:relays:pokt1q", "*", "data", "x"]).unwrap();
        sweep_due(&glob);
        assert_eq!(glob.suppliers().await.unwrap(), ["pokt1q"]);

        let script = "for i = 1, 3000 do redis.call('SET', 'junk:' .. i, 'x') end \
                      for i = 1, 40 do redis.call('XADD', 'ha:relays:pokt1s' .. string.format('%02d', i), '*', 'data', 'x') end";
        server.command(&["EVAL", script, "0"]).unwrap();
        sweep_due(&ha);
        let listed = ha.suppliers().await.unwrap();
        let mut expected: Vec<String> = (1..=40).map(|i| format!("pokt1s{i:02}")).collect();
        expected.insert(0, "pokt1go".to_owned());
        assert_eq!(listed, expected);
    }
}
