//! [`WriteSets`] on redb: the whole set is one writer op, so one transaction and one durable commit (shared with
//! whatever the group-commit writer batches with it) instead of one per trie batch, record and ack. A set of
//! [`SetDurability::Eventual`] is a `Durable::Soon` op: its commit may be non-durable, made durable within
//! `RedbConfig::eventual_sync_within` (`writer` module).
//!
//! Every check (fence, trie namespaces still live, record versions) runs before the first write of the op: an
//! op that returns its own error must leave the shared transaction untouched (`writer` module).

use async_trait::async_trait;
use redb::ReadableTable;

use super::RedbBackend;
use super::log::remove_entry;
use super::tables::{
    LOG, LOG_SESSIONS, NAMESPACES, NODES, SESSIONS, SUPPLIERS, db_err, decode_session, encode_session, namespace_key,
};
use super::writer::Durable;
use crate::StorageError;
use crate::contract::{SetDurability, WriteSet, WriteSetOutcome, WriteSets};
use crate::memory::version_conflict;

#[async_trait]
impl WriteSets for RedbBackend {
    async fn write(&self, set: WriteSet) -> Result<WriteSetOutcome, StorageError> {
        set.validate()?;
        if set.is_empty() {
            return Ok(WriteSetOutcome::default());
        }
        // Acks, as `RelayLog::ack`: only entries pending in this process's consumer group, once the WAL's
        // appends are applied.
        let acks: Vec<(String, Vec<u64>)> = if set.acks.iter().any(|a| !a.ids.is_empty()) {
            self.wal_caught_up().await?;
            let groups = self.inner.groups();
            set.acks
                .iter()
                .filter_map(|a| {
                    let group = groups.get(&a.supplier)?;
                    let seqs: Vec<u64> = a
                        .ids
                        .iter()
                        .filter(|id| id.minor == 0 && group.pending.contains_key(&id.major))
                        .map(|id| id.major)
                        .collect();
                    (!seqs.is_empty()).then(|| (a.supplier.clone(), seqs))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut records = Vec::with_capacity(set.records.len());
        for r in &set.records {
            let value = encode_session(r.expected_version.saturating_add(1), &r.state, &r.data)?;
            records.push((r.supplier.clone(), r.session_id.clone(), r.expected_version, value));
        }
        let tries: Vec<(String, crate::nodes::NodeBatch)> = set
            .tries
            .into_iter()
            .filter(|t| !t.batch.is_empty())
            .map(|t| (namespace_key(&t.supplier, &t.namespace), t.batch))
            .collect();
        let weight = 1 + records.len() + tries.iter().map(|(_, b)| b.puts.len() + b.deletes.len()).sum::<usize>();
        let durable = match set.durability {
            SetDurability::Immediate => Durable::Now,
            SetDurability::Eventual => Durable::Soon,
        };
        let fence = self.fence_check();
        let ack_seqs = acks.clone();
        let versions = self
            .inner
            .files()?
            .writer
            .call_with(weight, durable, move |txn| {
                if let Err(e) = fence.check() {
                    return Ok(Err(e));
                }
                // Checks first: nothing is written when one fails.
                let mut namespaces = Vec::with_capacity(tries.len());
                {
                    let names = txn.open_table(NAMESPACES).map_err(db_err)?;
                    for (ns_key, _) in &tries {
                        match names.get(ns_key.as_str()).map_err(db_err)? {
                            Some(id) => namespaces.push(id.value()),
                            None => {
                                return Ok(Err(StorageError::Conflict(format!(
                                    "trie namespace {ns_key:?} is not open (never opened, or deleted)"
                                ))));
                            }
                        }
                    }
                }
                let mut sessions = txn.open_table(SESSIONS).map_err(db_err)?;
                for (supplier, session_id, expected, _) in &records {
                    let current = match sessions.get((supplier.as_str(), session_id.as_str())).map_err(db_err)? {
                        Some(g) => decode_session(g.value())?.0,
                        None => 0,
                    };
                    if current != *expected {
                        return Ok(Err(version_conflict(supplier, session_id, *expected, current)));
                    }
                }
                let mut nodes = txn.open_table(NODES).map_err(db_err)?;
                for (ns, (_, batch)) in namespaces.into_iter().zip(tries) {
                    for key in &batch.deletes {
                        nodes.remove((ns, key.as_slice())).map_err(db_err)?;
                    }
                    let mut puts = batch.puts;
                    puts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    for (key, value) in &puts {
                        nodes.insert((ns, key.as_slice()), value.as_slice()).map_err(db_err)?;
                    }
                }
                let mut versions = Vec::with_capacity(records.len());
                for (supplier, session_id, expected, value) in &records {
                    sessions
                        .insert((supplier.as_str(), session_id.as_str()), value.as_slice())
                        .map_err(db_err)?;
                    versions.push(expected + 1);
                }
                if !ack_seqs.is_empty() {
                    let suppliers = txn.open_table(SUPPLIERS).map_err(db_err)?;
                    let mut log = txn.open_table(LOG).map_err(db_err)?;
                    let mut index = txn.open_table(LOG_SESSIONS).map_err(db_err)?;
                    for (supplier, seqs) in ack_seqs {
                        let Some(sid) = suppliers.get(supplier.as_str()).map_err(db_err)?.map(|g| g.value()) else {
                            continue;
                        };
                        for seq in seqs {
                            remove_entry(&mut log, &mut index, sid, seq)?;
                        }
                    }
                }
                Ok(Ok(versions))
            })
            .await?;
        let mut acked = 0u64;
        let mut groups = self.inner.groups();
        for (supplier, seqs) in acks {
            if let Some(group) = groups.get_mut(&supplier) {
                acked += seqs.into_iter().filter(|s| group.remove(*s)).count() as u64;
            }
        }
        Ok(WriteSetOutcome { versions, acked })
    }
}
