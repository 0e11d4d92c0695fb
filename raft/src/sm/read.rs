//! Local reads of the applied state (one short redb read transaction per call), for the storage contract.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use storage::{SessionRecord, StorageError};

use super::apply::{
    Holder, KV, KvValue, LEASES, LeaseValue, NODES, RELAY_SESSIONS, RELAYS, RelayValue, SESSIONS, SessionValue,
};
use crate::types::decode;

fn db_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(format!("raft state machine: {e}"))
}

fn corrupt(e: std::io::Error) -> StorageError {
    StorageError::Corrupt(format!("raft state machine: {e}"))
}

/// Read access to one node's applied state machine.
#[derive(Clone)]
pub struct SmReader {
    db: Arc<Database>,
}

/// One relay-log row as read back: sequence and stored value.
pub(crate) type RelayRow = (u64, RelayValue);

impl SmReader {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    /// Up to `max` relays of `supplier` with sequence greater than `after`, in order.
    pub(crate) fn relays_after(&self, supplier: &str, after: u64, max: usize) -> Result<Vec<RelayRow>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(RELAYS).map_err(db_err)?;
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for item in t.range((supplier, after + 1)..=(supplier, u64::MAX)).map_err(db_err)? {
            if out.len() >= max {
                break;
            }
            let (k, v) = item.map_err(db_err)?;
            out.push((k.value().1, decode(v.value()).map_err(corrupt)?));
        }
        Ok(out)
    }

    /// Number of relays of `supplier` with sequence greater than `after`.
    pub(crate) fn count_after(&self, supplier: &str, after: u64) -> Result<u64, StorageError> {
        if after == u64::MAX {
            return Ok(0);
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(RELAYS).map_err(db_err)?;
        let mut n = 0;
        for item in t.range((supplier, after + 1)..=(supplier, u64::MAX)).map_err(db_err)? {
            item.map_err(db_err)?;
            n += 1;
        }
        Ok(n)
    }

    /// Every supplier with at least one relay in the log, sorted: one range lookup per supplier, skipping from
    /// each to the first key past all of its sequences (the smallest name above it is it plus `\0`).
    pub(crate) fn suppliers(&self) -> Result<Vec<String>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(RELAYS).map_err(db_err)?;
        let mut out: Vec<String> = Vec::new();
        loop {
            let next = match out.last() {
                None => t.iter().map_err(db_err)?.next(),
                Some(last) => {
                    let mut above = last.clone();
                    above.push('\0');
                    t.range((above.as_str(), 0)..).map_err(db_err)?.next()
                }
            };
            let Some(item) = next else {
                return Ok(out);
            };
            let (k, _) = item.map_err(db_err)?;
            out.push(k.value().0.to_owned());
        }
    }

    /// The relays of `supplier` at the given sequences that still exist, in the input order.
    pub(crate) fn relays_at(&self, supplier: &str, seqs: &[u64]) -> Result<Vec<Option<RelayValue>>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(RELAYS).map_err(db_err)?;
        seqs.iter()
            .map(|s| match t.get((supplier, *s)).map_err(db_err)? {
                Some(v) => Ok(Some(decode(v.value()).map_err(corrupt)?)),
                None => Ok(None),
            })
            .collect()
    }

    /// The relay hashes of the relays of `(supplier, session_id)`, in sequence order (from the session index).
    pub(crate) fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let index = txn.open_table(RELAY_SESSIONS).map_err(db_err)?;
        let relays = txn.open_table(RELAYS).map_err(db_err)?;
        let mut hashes = Vec::new();
        for item in index
            .range((supplier, session_id, 0u64)..=(supplier, session_id, u64::MAX))
            .map_err(db_err)?
        {
            let seq = item.map_err(db_err)?.0.value().2;
            if let Some(v) = relays.get((supplier, seq)).map_err(db_err)? {
                let v: RelayValue = decode(v.value()).map_err(corrupt)?;
                hashes.push(v.relay_hash);
            }
        }
        Ok(hashes)
    }

    /// The session record of `(supplier, session_id)`.
    pub(crate) fn session(&self, supplier: &str, session_id: &str) -> Result<Option<SessionRecord>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(SESSIONS).map_err(db_err)?;
        match t.get((supplier, session_id)).map_err(db_err)? {
            Some(v) => {
                let v: SessionValue = decode(v.value()).map_err(corrupt)?;
                Ok(Some(SessionRecord {
                    supplier: supplier.to_owned(),
                    session_id: session_id.to_owned(),
                    state: v.state,
                    data: v.data,
                    version: v.version,
                }))
            }
            None => Ok(None),
        }
    }

    /// Session records filtered by supplier and/or state, ordered by (supplier, session).
    pub(crate) fn sessions(
        &self,
        supplier: Option<&str>,
        state: Option<&str>,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(SESSIONS).map_err(db_err)?;
        let mut out = Vec::new();
        let iter = match supplier {
            Some(s) => {
                let mut next = s.to_owned();
                next.push('\0');
                let lo: (&str, &str) = (s, "");
                let hi: (&str, &str) = (next.as_str(), "");
                t.range(lo..hi).map_err(db_err)?
            }
            None => t.iter().map_err(db_err)?,
        };
        for item in iter {
            let (k, v) = item.map_err(db_err)?;
            let (sup, sess) = k.value();
            let v: SessionValue = decode(v.value()).map_err(corrupt)?;
            if state.is_some_and(|st| st != v.state) {
                continue;
            }
            out.push(SessionRecord {
                supplier: sup.to_owned(),
                session_id: sess.to_owned(),
                state: v.state,
                data: v.data,
                version: v.version,
            });
        }
        Ok(out)
    }

    /// The live value of `key` at local time `now_ms`.
    pub(crate) fn kv(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(KV).map_err(db_err)?;
        match t.get(key).map_err(db_err)? {
            Some(v) => {
                let v: KvValue = decode(v.value()).map_err(corrupt)?;
                Ok(v.live(now_ms).then_some(v.value))
            }
            None => Ok(None),
        }
    }

    /// One trie node of `(supplier, session_id)`.
    pub(crate) fn node(&self, supplier: &str, session_id: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(NODES).map_err(db_err)?;
        Ok(t.get((supplier, session_id, key))
            .map_err(db_err)?
            .map(|v| v.value().to_vec()))
    }

    /// The lease holder of `election` if it is live in raft term `term` at local time `now_ms`.
    pub(crate) fn lease_holder(&self, election: &str, term: u64, now_ms: u64) -> Result<Option<Holder>, StorageError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(LEASES).map_err(db_err)?;
        match t.get(election).map_err(db_err)? {
            Some(v) => {
                let v: LeaseValue = decode(v.value()).map_err(corrupt)?;
                Ok(v.live_holder(term, now_ms).cloned())
            }
            None => Ok(None),
        }
    }
}
