//! Trie namespaces, session records, leadership and the TTL key-value store on redb.

use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::watch;
use tokio::time::Instant;

use super::tables::{
    KV, META, NAMESPACES, NODES, SESSIONS, db_err, decode_kv, decode_session, encode_kv, encode_session, kv_live,
    namespace_key, now_ms,
};
use super::{RedbBackend, read_meta};
use crate::StorageError;
use crate::contract::{
    BoxNodeStore, IncrementOnce, KvStore, LeaderInfo, Leadership, SessionRecord, SessionStore, TrieStore,
};
use crate::lease::CampaignPlan;
use crate::memory::{parse_counter, version_conflict};
use crate::nodes::{NodeBatch, NodeStore};

/// A node store scoped to one namespace id. Sync: reads open a short read transaction, writes go through the
/// group-commit writer and block until durable.
struct RedbNamespace {
    backend: RedbBackend,
    ns_key: String,
    ns: u64,
}

impl NodeStore for RedbNamespace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.backend.inner.files()?.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(NODES).map_err(db_err)?;
        Ok(table.get((self.ns, key)).map_err(db_err)?.map(|g| g.value().to_vec()))
    }

    fn write_batch(&mut self, batch: NodeBatch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (ns, ns_key) = (self.ns, self.ns_key.clone());
        let weight = batch.puts.len() + batch.deletes.len();
        let fence = self.backend.fence_check();
        self.backend.inner.files()?.writer.call_blocking(weight, move |txn| {
            if let Err(e) = fence.check() {
                return Ok(Err(e));
            }
            let live = txn
                .open_table(NAMESPACES)
                .map_err(db_err)?
                .get(ns_key.as_str())
                .map_err(db_err)?
                .map(|g| g.value());
            if live != Some(ns) {
                return Ok(Err(StorageError::Conflict(format!(
                    "trie namespace {ns_key:?} was deleted"
                ))));
            }
            let mut nodes = txn.open_table(NODES).map_err(db_err)?;
            for key in &batch.deletes {
                nodes.remove((ns, key.as_slice())).map_err(db_err)?;
            }
            let mut puts = batch.puts;
            puts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (key, value) in &puts {
                nodes.insert((ns, key.as_slice()), value.as_slice()).map_err(db_err)?;
            }
            Ok(Ok(()))
        })
    }
}

#[async_trait]
impl TrieStore for RedbBackend {
    async fn open(&self, supplier: &str, session_id: &str) -> Result<BoxNodeStore, StorageError> {
        let ns_key = namespace_key(supplier, session_id);
        let key = ns_key.clone();
        let fence = self.fence_check();
        let ns = self
            .inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let mut names = txn.open_table(NAMESPACES).map_err(db_err)?;
                if let Some(id) = names.get(key.as_str()).map_err(db_err)? {
                    return Ok(Ok(id.value()));
                }
                let mut meta = txn.open_table(META).map_err(db_err)?;
                let id = meta.get("next_namespace").map_err(db_err)?.map_or(0, |g| g.value());
                meta.insert("next_namespace", id + 1).map_err(db_err)?;
                names.insert(key.as_str(), id).map_err(db_err)?;
                Ok(Ok(id))
            })
            .await?;
        Ok(Box::new(RedbNamespace {
            backend: self.clone(),
            ns_key,
            ns,
        }))
    }

    async fn delete_namespace(&self, supplier: &str, session_id: &str) -> Result<(), StorageError> {
        let key = namespace_key(supplier, session_id);
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let Some(ns) = txn
                    .open_table(NAMESPACES)
                    .map_err(db_err)?
                    .remove(key.as_str())
                    .map_err(db_err)?
                    .map(|g| g.value())
                else {
                    return Ok(Ok(()));
                };
                let mut nodes = txn.open_table(NODES).map_err(db_err)?;
                nodes
                    .retain_in((ns, &[][..])..(ns.saturating_add(1), &[][..]), |_, _| false)
                    .map_err(db_err)?;
                Ok(Ok(()))
            })
            .await
    }
}

fn record(supplier: &str, session_id: &str, raw: &[u8]) -> Result<SessionRecord, StorageError> {
    let (version, state, data) = decode_session(raw)?;
    Ok(SessionRecord {
        supplier: supplier.to_owned(),
        session_id: session_id.to_owned(),
        state,
        data,
        version,
    })
}

#[async_trait]
impl SessionStore for RedbBackend {
    async fn get(&self, supplier: &str, session_id: &str) -> Result<Option<SessionRecord>, StorageError> {
        let (supplier, session_id) = (supplier.to_owned(), session_id.to_owned());
        self.blocking(move |inner| {
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(SESSIONS).map_err(db_err)?;
            let raw = table.get((supplier.as_str(), session_id.as_str())).map_err(db_err)?;
            raw.map(|g| record(&supplier, &session_id, g.value())).transpose()
        })
        .await
    }

    async fn put(
        &self,
        supplier: &str,
        session_id: &str,
        state: &str,
        data: Vec<u8>,
        expected_version: u64,
    ) -> Result<u64, StorageError> {
        let (supplier, session_id) = (supplier.to_owned(), session_id.to_owned());
        let value = encode_session(expected_version.saturating_add(1), state, &data)?;
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let mut table = txn.open_table(SESSIONS).map_err(db_err)?;
                let key = (supplier.as_str(), session_id.as_str());
                let current = match table.get(key).map_err(db_err)? {
                    Some(g) => decode_session(g.value())?.0,
                    None => 0,
                };
                if current != expected_version {
                    return Ok(Err(version_conflict(&supplier, &session_id, expected_version, current)));
                }
                table.insert(key, value.as_slice()).map_err(db_err)?;
                Ok(Ok(expected_version + 1))
            })
            .await
    }

    async fn delete(
        &self,
        supplier: &str,
        session_id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StorageError> {
        let (supplier, session_id) = (supplier.to_owned(), session_id.to_owned());
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let mut table = txn.open_table(SESSIONS).map_err(db_err)?;
                let key = (supplier.as_str(), session_id.as_str());
                let current = match table.get(key).map_err(db_err)? {
                    Some(g) => decode_session(g.value())?.0,
                    None => 0,
                };
                if let Some(v) = expected_version
                    && v != current
                {
                    return Ok(Err(version_conflict(&supplier, &session_id, v, current)));
                }
                Ok(Ok(table.remove(key).map_err(db_err)?.is_some()))
            })
            .await
    }

    async fn list(&self, supplier: Option<&str>, state: Option<&str>) -> Result<Vec<SessionRecord>, StorageError> {
        let (supplier, state) = (supplier.map(str::to_owned), state.map(str::to_owned));
        self.blocking(move |inner| {
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(SESSIONS).map_err(db_err)?;
            let iter = match &supplier {
                Some(s) => table.range((s.as_str(), "")..).map_err(db_err)?,
                None => table.range::<(&str, &str)>(..).map_err(db_err)?,
            };
            let mut out = Vec::new();
            for item in iter {
                let (k, v) = item.map_err(db_err)?;
                let (sup, sess) = k.value();
                if supplier.as_deref().is_some_and(|s| s != sup) {
                    break;
                }
                let rec = record(sup, sess, v.value())?;
                if state.as_deref().is_none_or(|s| s == rec.state) {
                    out.push(rec);
                }
            }
            Ok(out)
        })
        .await
    }
}

fn lease_key(election: &str) -> String {
    format!("lease:{election}")
}

#[async_trait]
impl Leadership for RedbBackend {
    async fn campaign(&self, election: &str, candidate: &str, ttl: Duration) -> Result<Option<u64>, StorageError> {
        let _ops = self.inner.lease_ops.lock().await;
        let key = lease_key(election);
        let persisted = self.blocking(move |inner| read_meta(&inner.files()?.db, &key)).await?;
        let plan = self
            .inner
            .leases()
            .plan(election, candidate, ttl, Instant::now(), persisted);
        match plan {
            CampaignPlan::Holder(token) => Ok(Some(token)),
            CampaignPlan::Busy => Ok(None),
            CampaignPlan::NewTerm(token) => {
                let key = lease_key(election);
                let leases = self.inner.leases.clone();
                let (name, who, now) = (election.to_owned(), candidate.to_owned(), Instant::now());
                // Installed by the writer thread, in order with fenced writes (see the module docs).
                let persisted = self
                    .inner
                    .files()?
                    .writer
                    .call(1, move |txn| {
                        txn.open_table(META)
                            .map_err(db_err)?
                            .insert(key.as_str(), token)
                            .map_err(db_err)?;
                        leases
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .install(&name, &who, token, ttl, now);
                        Ok(Ok(()))
                    })
                    .await;
                if let Err(e) = persisted {
                    // The token is not durable: give the term up rather than risk reusing it after a restart.
                    self.inner.leases().resign(election, candidate, token, Instant::now());
                    return Err(e);
                }
                Ok(Some(token))
            }
        }
    }

    async fn renew(&self, election: &str, candidate: &str, token: u64, ttl: Duration) -> Result<bool, StorageError> {
        let _ops = self.inner.lease_ops.lock().await;
        Ok(self
            .inner
            .leases()
            .renew(election, candidate, token, ttl, Instant::now()))
    }

    async fn resign(&self, election: &str, candidate: &str, token: u64) -> Result<bool, StorageError> {
        let _ops = self.inner.lease_ops.lock().await;
        Ok(self.inner.leases().resign(election, candidate, token, Instant::now()))
    }

    async fn leader(&self, election: &str) -> Result<Option<LeaderInfo>, StorageError> {
        Ok(self.inner.leases().leader(election, Instant::now()))
    }

    async fn watch(&self, election: &str) -> Result<watch::Receiver<Option<LeaderInfo>>, StorageError> {
        Ok(self.inner.leases().watch(election, Instant::now()))
    }
}

fn expiry_ms(ttl: Option<Duration>, now: u64) -> u64 {
    ttl.map_or(0, |t| {
        now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            .max(1)
    })
}

/// KV writes: how to treat an existing live value.
#[derive(Clone, Copy)]
enum SetMode {
    Always,
    IfAbsent,
}

impl RedbBackend {
    async fn kv_set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        mode: SetMode,
    ) -> Result<bool, StorageError> {
        let key = key.to_owned();
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let now = now_ms();
                let mut table = txn.open_table(KV).map_err(db_err)?;
                if let SetMode::IfAbsent = mode {
                    let live = match table.get(key.as_str()).map_err(db_err)? {
                        Some(g) => decode_kv(g.value()).is_ok_and(|(exp, _)| kv_live(exp, now)),
                        None => false,
                    };
                    if live {
                        return Ok(Ok(false));
                    }
                }
                table
                    .insert(key.as_str(), encode_kv(expiry_ms(ttl, now), &value).as_slice())
                    .map_err(db_err)?;
                Ok(Ok(true))
            })
            .await
    }
}

/// The live counter at `key` with its expiry (`None`: missing or expired); the inner error is a value that is
/// not a counter (the caller's result, nothing written), the outer one a database error.
fn live_counter(
    table: &redb::Table<&str, &[u8]>,
    key: &str,
    now: u64,
) -> Result<Result<Option<(i64, u64)>, StorageError>, StorageError> {
    let Some(g) = table.get(key).map_err(db_err)? else {
        return Ok(Ok(None));
    };
    let (exp, raw) = decode_kv(g.value())?;
    if !kv_live(exp, now) {
        return Ok(Ok(None));
    }
    Ok(parse_counter(key, raw).map(|n| Some((n, exp))))
}

#[async_trait]
impl KvStore for RedbBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            let txn = inner.files()?.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(KV).map_err(db_err)?;
            let Some(g) = table.get(key.as_str()).map_err(db_err)? else {
                return Ok(None);
            };
            let (exp, value) = decode_kv(g.value())?;
            Ok(kv_live(exp, now_ms()).then(|| value.to_vec()))
        })
        .await
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StorageError> {
        self.kv_set(key, value, ttl, SetMode::Always).await.map(|_| ())
    }

    async fn set_if_absent(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StorageError> {
        self.kv_set(key, value, ttl, SetMode::IfAbsent).await
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, StorageError> {
        let key = key.to_owned();
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let now = now_ms();
                let mut table = txn.open_table(KV).map_err(db_err)?;
                let current = match live_counter(&table, &key, now)? {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(e)),
                };
                let (n, exp) = current.unwrap_or((0, expiry_ms(ttl, now)));
                let Some(next) = n.checked_add(delta) else {
                    return Ok(Err(StorageError::Backend(format!("kv counter {key:?} overflows"))));
                };
                table
                    .insert(key.as_str(), encode_kv(exp, next.to_string().as_bytes()).as_slice())
                    .map_err(db_err)?;
                Ok(Ok(next))
            })
            .await
    }

    async fn increment_once(
        &self,
        key: &str,
        op: &IncrementOnce,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StorageError> {
        let key = key.to_owned();
        let marker = op.marker_key(&key);
        let seq = op.seq;
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let now = now_ms();
                let mut table = txn.open_table(KV).map_err(db_err)?;
                // The writer's last applied sequence and the counter, both as live values (one transaction: the
                // counter and its marker change together or not at all).
                let last = match live_counter(&table, &marker, now)? {
                    Ok(last) => last.map_or(0, |(n, _)| n),
                    Err(e) => return Ok(Err(e)),
                };
                let current = match live_counter(&table, &key, now)? {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(e)),
                };
                if u64::try_from(last).is_ok_and(|last| last >= seq) {
                    return Ok(Ok(current.map_or(0, |(n, _)| n)));
                }
                let (n, exp) = current.unwrap_or((0, expiry_ms(ttl, now)));
                let Some(next) = n.checked_add(delta) else {
                    return Ok(Err(StorageError::Backend(format!("kv counter {key:?} overflows"))));
                };
                table
                    .insert(key.as_str(), encode_kv(exp, next.to_string().as_bytes()).as_slice())
                    .map_err(db_err)?;
                table
                    .insert(
                        marker.as_str(),
                        encode_kv(expiry_ms(ttl, now), seq.to_string().as_bytes()).as_slice(),
                    )
                    .map_err(db_err)?;
                Ok(Ok(next))
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let key = key.to_owned();
        let fence = self.fence_check();
        self.inner
            .files()?
            .writer
            .call(1, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                let mut table = txn.open_table(KV).map_err(db_err)?;
                let Some(old) = table.remove(key.as_str()).map_err(db_err)? else {
                    return Ok(Ok(false));
                };
                let (exp, _) = decode_kv(old.value())?;
                Ok(Ok(kv_live(exp, now_ms())))
            })
            .await
    }
}
