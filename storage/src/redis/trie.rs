//! Trie node stores on Redis hashes: `{base}:miner:trie:{supplier}:{session}`, field = lowercase hex of the
//! node key, value = node bytes. Not the Go miner's `{base}:smst:{supplier}:{session}:nodes`: the formats differ
//! (see [`super::keys`]).
//!
//! Tries written by earlier releases, which used the Go key: a namespace whose own key is empty takes over the
//! hash at the Go key if, and only if, it is relay-miner's (`RENAMENX`, once, at [`TrieStore::open`]), and
//! [`TrieStore::delete_namespace`] deletes it there when it was never opened. What is relay-miner's is told by
//! the field names: relay-miner's trie stores keys of 1 or 5 bytes (its root record and leaf records), the Go
//! miner's are node digests of at least [`GO_NODE_KEY_MIN`] bytes. A Go trie is never read as relay-miner's
//! and never touched: the namespace starts empty at its own key (logged at WARN: the Go miner's relays of that
//! session are in the Go trie, not in relay-miner's claim). A hash holding both (a release that shared the key
//! wrote into a Go trie) is refused: `open` fails with [`StorageError::Corrupt`] naming the key, since either
//! half may be what a claim on chain was built from and only an operator can tell.
//!
//! [`NodeStore`] is synchronous (the trie is pure code) while Redis is async, so a namespace is served from an
//! in-memory **mirror**: [`TrieStore::open`] prefetches the whole hash with `HSCAN` (paged, never one `HGETALL`
//! that could stall the server on a huge hash), `get` reads the mirror, and each [`NodeStore::write_batch`] is
//! one `MULTI`/`EXEC` (`HDEL` + `HSET`) run on the runtime the store was opened on, updating the mirror once
//! Redis has applied it (also when too few replicas acknowledged it, `wait_replicas`: counted, and the batch
//! stands, the primary has it; `replicas` module). One mirror is shared by every
//! handle of a namespace in this process, and [`TrieStore::delete_namespace`] clears it.
//!
//! The mirror holds values of at most [`INLINE_MAX`] bytes (the trie's leaf and root records); a larger one (a
//! leaf's value: the relay's bytes, which only a proof reads) is mirrored as present and read from Redis by `get`
//! (`HGET`) when asked. Otherwise the miner would hold the bytes of every relay of every live session in its own
//! memory, on top of Redis holding them. The prefetch mirrors each `HSCAN` page as it is read, so loading a
//! session's trie (every open trie is loaded again after a leadership change) holds one page of relay bytes at a
//! time, not the session's (`trie_scan_count` fields; the peak is in `RedisStats::trie_load_peak_bytes`).
//!
//! How to call it: `write_batch`, and `get` of a large value, block the calling thread until Redis answers (or
//! the response timeout plus connection timeout elapse, then [`StorageError::Unavailable`]). Call them from
//! `tokio::task::spawn_blocking`, `block_in_place` or a dedicated thread, never on a runtime worker thread (on a
//! current-thread runtime that would wait for a task that cannot run; it then fails with `Unavailable` after the
//! timeout instead of deadlocking). `get` of a small value never blocks.
//!
//! A fenced view writes each batch with one Lua script (lease check, then `HDEL` + `HSET`) instead of
//! `MULTI`/`EXEC`; a batch refused by the fence changes neither Redis nor the mirror.
//!
//! Assumptions: one writer per (supplier, session) across the fleet (the fenced leader), so the mirror does not
//! go stale; memory is the namespace's keys and small records, not its relay bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;

use super::fence::Scripts;
use super::{RedisBackend, lock};
use crate::StorageError;
use crate::contract::{BoxNodeStore, TrieStore};
use crate::nodes::{NodeBatch, NodeStore};

/// A fenced view's trie batch: KEYS[1] = hash; ARGV[1] = number of deleted fields n, then the n fields, then
/// field/value pairs to set. Chunked so no `unpack` exceeds Lua's stack.
static BATCH: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| {
    Scripts::new(
        r"
local n = tonumber(ARGV[1])
local i = 2
while i <= n + 1 do
  local j = math.min(i + 499, n + 1)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
i = n + 2
while i <= NA do
  local j = math.min(i + 999, NA)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
return 1
",
    )
});

/// Go's SMST node keys are node digests (SHA-256, 32 bytes, plus the sum and count in a sum trie): a field of the
/// Go key decoding to at least this many bytes (or not hex) is not relay-miner's. relay-miner's trie keys are 1 or
/// 5 bytes long.
pub(crate) const GO_NODE_KEY_MIN: usize = 32;

/// Who wrote the hash at a namespace's Go key.
enum Legacy {
    /// Nothing there.
    Absent,
    /// An earlier relay-miner release: every field is a short key (the nodes in their mirrored form).
    Ours(HashMap<Vec<u8>, Mirrored>),
    /// The Go miner: no field is a short key (the first field, for the log).
    Go(String),
    /// Both: a release that shared the key wrote into a Go trie (a Go field, for the error).
    Mixed(String),
}

/// Values up to this many bytes are held in the mirror; larger ones stay in Redis only and `get` reads them on
/// demand. The trie's leaf records are 72 bytes and its root record 8; its leaf values (relay bytes) are larger.
pub const INLINE_MAX: usize = 128;

/// A mirrored value: `None` when it is larger than [`INLINE_MAX`] and lives in Redis only.
type Mirrored = Option<Vec<u8>>;

fn mirrored(value: Vec<u8>) -> Mirrored {
    (value.len() <= INLINE_MAX).then_some(value)
}

/// Bytes a mirrored value holds.
fn held(value: &Mirrored) -> usize {
    value.as_ref().map_or(0, Vec::len)
}

/// The in-memory copy of one namespace hash (large values only as present; see [`INLINE_MAX`]).
pub(crate) struct Mirror {
    key: String,
    nodes: RwLock<HashMap<Vec<u8>, Mirrored>>,
    /// Serialises writers so Redis and the mirror see batches in the same order.
    writer: Mutex<()>,
}

impl Mirror {
    /// A mirror of `nodes`, already in their mirrored form (`RedisBackend::prefetch` converts each `HSCAN`
    /// page as it is read, so a namespace's large values are never all held at once).
    fn new(key: String, nodes: HashMap<Vec<u8>, Mirrored>) -> Self {
        Self {
            key,
            nodes: RwLock::new(nodes),
            writer: Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Vec<u8>, Mirrored>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Vec<u8>, Mirrored>> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 15)]));
    }
    s
}

fn from_hex(s: &[u8]) -> Option<Vec<u8>> {
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|c| Some((nib(c[0])? << 4) | nib(c[1])?))
        .collect()
}

/// A Redis-backed [`NodeStore`] for one (supplier, session); see the module docs for how to call it.
pub struct RedisNodeStore {
    backend: RedisBackend,
    handle: tokio::runtime::Handle,
    mirror: Arc<Mirror>,
}

impl std::fmt::Debug for RedisNodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNodeStore")
            .field("key", &self.mirror.key)
            .finish_non_exhaustive()
    }
}

impl RedisNodeStore {
    /// Number of nodes in the namespace (from the mirror).
    pub fn len(&self) -> usize {
        self.mirror.read().len()
    }

    /// True when the namespace holds no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of values held in this process's mirror of the namespace (large values are not: [`INLINE_MAX`]).
    pub fn mirrored_bytes(&self) -> usize {
        self.mirror.read().values().flatten().map(Vec::len).sum()
    }

    /// Reads one value that lives in Redis only, on the store's runtime, within the wait budget.
    fn fetch(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (backend, hash, field) = (self.backend.clone(), self.mirror.key.clone(), to_hex(key));
        self.handle.spawn(async move {
            let res = redis::cmd("HGET")
                .arg(&hash)
                .arg(&field)
                .query_async::<Option<Vec<u8>>>(&mut backend.conn())
                .await
                .map_err(|e| backend.err(&format!("HGET trie value of {hash}"), e));
            let _ = tx.send(res);
        });
        match rx.recv_timeout(self.wait_budget()) {
            Ok(Ok(Some(value))) => Ok(Some(value)),
            // The mirror says it is there (this process wrote or read it, and only the fenced leader writes).
            Ok(Ok(None)) => Err(StorageError::Corrupt(format!(
                "redis trie hash {}: field {} is missing although it was written",
                self.mirror.key,
                to_hex(key)
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StorageError::Unavailable(format!(
                "redis trie read on {} did not complete in {:?} (called on a runtime worker thread?)",
                self.mirror.key,
                self.wait_budget()
            ))),
        }
    }

    fn wait_budget(&self) -> Duration {
        let c = self.backend.config();
        c.response_timeout + c.connection_timeout + Duration::from_secs(1) + self.backend.replica_wait_budget()
    }
}

impl NodeStore for RedisNodeStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let inline = match self.mirror.read().get(key) {
            None => return Ok(None),
            Some(value) => value.clone(),
        };
        match inline {
            Some(value) => Ok(Some(value)),
            None => self.fetch(key),
        }
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let _writer = lock(&self.mirror.writer);
        if self.backend.fence.is_some() {
            let mut inv = self.backend.invocation(&BATCH);
            inv.key(&self.mirror.key).arg(batch.deletes.len());
            for k in &batch.deletes {
                inv.arg(to_hex(k));
            }
            for (k, v) in &batch.puts {
                inv.arg(to_hex(k)).arg(v.as_slice());
            }
            self.backend.fence_args(&mut inv);
            let (backend, key) = (self.backend.clone(), self.mirror.key.clone());
            return self.run(batch, async move {
                let mut conn = backend.write_conn().await?;
                inv.invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| backend.write_err(&conn, &format!("trie batch on {key}"), e))?;
                backend.replicated_best_effort(&mut conn, "trie batch").await
            });
        }
        let mut p = redis::pipe();
        p.atomic();
        if !batch.deletes.is_empty() {
            p.cmd("HDEL").arg(&self.mirror.key);
            for k in &batch.deletes {
                p.arg(to_hex(k));
            }
            p.ignore();
        }
        if !batch.puts.is_empty() {
            p.cmd("HSET").arg(&self.mirror.key);
            for (k, v) in &batch.puts {
                p.arg(to_hex(k)).arg(v.as_slice());
            }
            p.ignore();
        }
        let backend = self.backend.clone();
        self.run(batch, async move {
            let mut conn = backend.write_conn().await?;
            p.query_async::<()>(&mut conn)
                .await
                .map_err(|e| backend.write_err(&conn, "HSET trie batch", e))?;
            backend.replicated_best_effort(&mut conn, "trie batch").await
        })
    }
}

impl RedisNodeStore {
    /// Runs `write` (the batch's Redis round trip) on the store's runtime, mirrors `batch` once Redis applied
    /// it, and waits for the outcome within the wait budget.
    fn run(
        &self,
        batch: NodeBatch,
        write: impl std::future::Future<Output = Result<(), StorageError>> + Send + 'static,
    ) -> Result<(), StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mirror = Arc::clone(&self.mirror);
        self.handle.spawn(async move {
            let res = write.await;
            // Not replicated: applied on the primary all the same (`replicas` module).
            if matches!(res, Ok(()) | Err(StorageError::NotReplicated { .. })) {
                // Applied in Redis: mirror it even if the caller stopped waiting.
                let mut nodes = mirror.write();
                for k in batch.deletes {
                    nodes.remove(&k);
                }
                nodes.extend(batch.puts.into_iter().map(|(k, v)| (k, mirrored(v))));
            }
            let _ = tx.send(res);
        });
        match rx.recv_timeout(self.wait_budget()) {
            Ok(res) => res,
            Err(_) => Err(StorageError::Unavailable(format!(
                "redis trie batch on {} did not complete in {:?} (called on a runtime worker thread?)",
                self.mirror.key,
                self.wait_budget()
            ))),
        }
    }
}

impl RedisBackend {
    /// Mirrors `batch`, applied in Redis to the hash `key` by a write set (`write_set` module), into the
    /// namespace's mirror if this process has it open.
    pub(crate) fn mirror_applied(&self, key: &str, batch: NodeBatch) {
        let Some(mirror) = lock(&self.inner.mirrors).get(key).and_then(Weak::upgrade) else {
            return;
        };
        let _writer = lock(&mirror.writer);
        let mut nodes = mirror.write();
        for k in batch.deletes {
            nodes.remove(&k);
        }
        nodes.extend(batch.puts.into_iter().map(|(k, v)| (k, mirrored(v))));
    }

    /// Loads the whole namespace hash with paged `HSCAN`, in mirrored form: each page's large values are dropped
    /// as the page is read (a failover's reload of a session's trie must not hold all its relay bytes at once).
    async fn prefetch(&self, key: &str) -> Result<HashMap<Vec<u8>, Mirrored>, StorageError> {
        let mut nodes = HashMap::new();
        self.scan_hash(key, |field, value| {
            let node_key = from_hex(&field)
                .ok_or_else(|| StorageError::Corrupt(format!("redis trie hash {key}: field is not hex")))?;
            let value = mirrored(value);
            let kept = held(&value);
            nodes.insert(node_key, value);
            Ok(kept)
        })
        .await?;
        Ok(nodes)
    }

    /// Reads the hash at the Go key of (supplier, session) and says whose it is (see the module docs).
    async fn legacy(&self, key: &str) -> Result<Legacy, StorageError> {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.err("EXISTS", e))?;
        if exists == 0 {
            return Ok(Legacy::Absent);
        }
        let (mut ours, mut go) = (HashMap::new(), None);
        self.scan_hash(key, |field, value| {
            match from_hex(&field) {
                Some(k) if k.len() < GO_NODE_KEY_MIN => {
                    let value = mirrored(value);
                    let kept = held(&value);
                    ours.insert(k, value);
                    return Ok(kept);
                }
                _ => {
                    go.get_or_insert_with(|| String::from_utf8_lossy(&field).into_owned());
                }
            }
            Ok(0)
        })
        .await?;
        Ok(match go {
            None if ours.is_empty() => Legacy::Absent,
            None => Legacy::Ours(ours),
            Some(field) if ours.is_empty() => Legacy::Go(field),
            Some(field) => Legacy::Mixed(field),
        })
    }

    /// The nodes of the namespace whose own key `key` is empty: a trie an earlier release kept at the Go key
    /// `legacy` is moved to `key` (`RENAMENX`) and returned; anything else there is left alone (module docs).
    async fn take_over_legacy(&self, key: &str, legacy: &str) -> Result<HashMap<Vec<u8>, Mirrored>, StorageError> {
        match self.legacy(legacy).await? {
            Legacy::Absent => Ok(HashMap::new()),
            Legacy::Ours(nodes) => {
                let moved = redis::cmd("RENAMENX")
                    .arg(legacy)
                    .arg(key)
                    .query_async::<i64>(&mut self.conn())
                    .await;
                match moved {
                    Ok(1) => {
                        tracing::info!(
                            from = legacy,
                            to = key,
                            nodes = nodes.len(),
                            "trie moved off the Go miner's key"
                        );
                        Ok(nodes)
                    }
                    // Another process wrote the namespace, or moved it, since: its key holds the trie now.
                    Ok(_) => self.prefetch(key).await,
                    Err(e) if e.to_string().contains("no such key") => self.prefetch(key).await,
                    Err(e) => Err(self.err("RENAMENX trie", e)),
                }
            }
            Legacy::Go(field) => {
                tracing::warn!(
                    key = legacy,
                    field,
                    "the Go relay miner's trie of this session is at its key: relay-miner neither reads nor changes \
                     it, and mines the session into its own trie (the relays the Go miner mined are not in it)"
                );
                Ok(HashMap::new())
            }
            Legacy::Mixed(field) => Err(StorageError::Corrupt(format!(
                "redis key {legacy} holds the Go relay miner's trie nodes (field {field}) mixed with relay-miner's \
                 (a relay-miner release that kept its trie at the Go key wrote into a Go trie): refusing to read \
                 it as relay-miner's trie. Copy the fields of at most {} hex characters to {key}, or delete {legacy} \
                 if the session needs neither, then restart the miner",
                2 * (GO_NODE_KEY_MIN - 1)
            ))),
        }
    }

    /// Reads hash `key` with paged `HSCAN`, handing each (field, value) to `visit` as its page is read; `visit`
    /// answers how many bytes of the value it keeps. A page's values are dropped once the page is visited, so
    /// what a scan holds at once is one page plus what `visit` kept: the largest such total is recorded
    /// ([`RedisStats::trie_load_peak_bytes`](super::stats::RedisStats::trie_load_peak_bytes)).
    async fn scan_hash(
        &self,
        key: &str,
        mut visit: impl FnMut(Vec<u8>, Vec<u8>) -> Result<usize, StorageError>,
    ) -> Result<(), StorageError> {
        let mut cursor = "0".to_owned();
        let mut kept = 0usize;
        loop {
            let reply: Value = redis::cmd("HSCAN")
                .arg(key)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.config().trie_scan_count)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.err("HSCAN", e))?;
            let bad = || StorageError::Corrupt(format!("redis HSCAN {key}: unexpected reply"));
            let Value::Array(parts) = reply else {
                return Err(bad());
            };
            let mut parts = parts.into_iter();
            let (Some(Value::BulkString(next)), Some(Value::Array(items))) = (parts.next(), parts.next()) else {
                return Err(bad());
            };
            let page: usize = items
                .iter()
                .map(|v| match v {
                    Value::BulkString(b) => b.len(),
                    _ => 0,
                })
                .sum();
            self.inner.stats.record_trie_load_held(page.saturating_add(kept));
            let mut items = items.into_iter();
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                let (Value::BulkString(field), Value::BulkString(value)) = (field, value) else {
                    return Err(bad());
                };
                kept = kept.saturating_add(visit(field, value)?);
            }
            if next.as_slice() == b"0" {
                return Ok(());
            }
            cursor = String::from_utf8_lossy(&next).into_owned();
        }
    }

    /// Opens a namespace as the concrete [`RedisNodeStore`] (what [`TrieStore::open`] boxes).
    pub async fn open_trie(&self, supplier: &str, session_id: &str) -> Result<RedisNodeStore, StorageError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| StorageError::Backend(format!("redis trie open outside tokio: {e}")))?;
        let key = self.keys().trie_nodes(supplier, session_id);
        let existing = lock(&self.inner.mirrors).get(&key).and_then(Weak::upgrade);
        let mirror = match existing {
            Some(m) => m,
            None => {
                let mut nodes = self.prefetch(&key).await?;
                if nodes.is_empty() {
                    let legacy = self.keys().go_trie_nodes(supplier, session_id);
                    nodes = self.take_over_legacy(&key, &legacy).await?;
                }
                let mut mirrors = lock(&self.inner.mirrors);
                mirrors.retain(|_, w| w.strong_count() > 0);
                match mirrors.get(&key).and_then(Weak::upgrade) {
                    Some(m) => m,
                    None => {
                        let m = Arc::new(Mirror::new(key.clone(), nodes));
                        mirrors.insert(key, Arc::downgrade(&m));
                        m
                    }
                }
            }
        };
        Ok(RedisNodeStore {
            backend: self.clone(),
            handle,
            mirror,
        })
    }
}

#[async_trait]
impl TrieStore for RedisBackend {
    async fn open(&self, supplier: &str, session_id: &str) -> Result<BoxNodeStore, StorageError> {
        Ok(Box::new(self.open_trie(supplier, session_id).await?))
    }

    async fn delete_namespace(&self, supplier: &str, session_id: &str) -> Result<(), StorageError> {
        let key = self.keys().trie_nodes(supplier, session_id);
        self.unlink(&key).await?;
        if let Some(m) = lock(&self.inner.mirrors).get(&key).and_then(Weak::upgrade) {
            m.write().clear();
        }
        // A trie an earlier release kept at the Go key and this one never opened; a Go trie stays.
        let legacy = self.keys().go_trie_nodes(supplier, session_id);
        if let Legacy::Ours(_) = self.legacy(&legacy).await? {
            self.unlink(&legacy).await?;
        }
        Ok(())
    }
}

impl RedisBackend {
    /// `UNLINK key`, fenced when this view is.
    async fn unlink(&self, key: &str) -> Result<(), StorageError> {
        let reply = if self.fence.is_some() {
            self.fenced_cmd("UNLINK", key, Vec::new())
                .invoke_async::<i64>(&mut self.conn())
                .await
        } else {
            redis::cmd("UNLINK").arg(key).query_async::<i64>(&mut self.conn()).await
        };
        reply.map(drop).map_err(|e| self.err("UNLINK trie", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let k: Vec<u8> = (0..=255u8).collect();
        let h = to_hex(&k);
        assert_eq!(&h[..6], "000102");
        assert_eq!(from_hex(h.as_bytes()).unwrap(), k);
        assert_eq!(from_hex(b"ABcd").unwrap(), vec![0xab, 0xcd]);
        assert_eq!(from_hex(b"abc"), None);
        assert_eq!(from_hex(b"zz"), None);
        assert_eq!(to_hex(&[]), "");
    }
}
