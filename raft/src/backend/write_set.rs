//! [`WriteSets`] on raft: the whole set is ONE replicated entry ([`Op::WriteSet`], wrapped in the view's fence
//! like every write: checked at apply against the replicated lease), so an ingest batch costs one quorum round
//! trip and one fsync per node instead of one per trie batch, record and ack. Apply checks every record's
//! version before writing anything (all or nothing).
//!
//! Version gate ([`crate::features`]): a node of a build without write sets cannot apply that entry and would
//! stop. So the set is proposed as one entry only while every member advertised the `write-set` feature to the
//! leader (checked here, and again by the leader when this node forwards the set). Otherwise nothing is proposed
//! and the call fails with `StorageError::Conflict` (nothing written), the contract's answer that sends the
//! caller to its one-by-one path (the miner writes the tries, then the records, then the ack, each an op every
//! build applies, handling a failure of each part as it does for a record conflict). Splitting the set here
//! instead could not stay all or nothing: a failure half way would leave part of it written.

use async_trait::async_trait;
use storage::{StorageError, WriteSet, WriteSetOutcome, WriteSets};

use super::{RaftBackend, unexpected};
use crate::types::{Op, OpResult};

#[async_trait]
impl WriteSets for RaftBackend {
    async fn write(&self, set: WriteSet) -> Result<WriteSetOutcome, StorageError> {
        set.validate()?;
        if set.is_empty() {
            return Ok(WriteSetOutcome::default());
        }
        let mut ops = Vec::with_capacity(set.tries.len() + set.records.len() + set.acks.len());
        for t in set.tries.into_iter().filter(|t| !t.batch.is_empty()) {
            ops.push(Op::TrieBatch {
                supplier: t.supplier,
                session_id: t.namespace,
                puts: t.batch.puts,
                deletes: t.batch.deletes,
            });
        }
        for r in set.records {
            ops.push(Op::SessionPut {
                supplier: r.supplier,
                session_id: r.session_id,
                state: r.state,
                data: r.data,
                expected_version: r.expected_version,
            });
        }
        // Acks as `RelayLog::ack`: only entries pending in this node's consumer group.
        let mut acks = Vec::new();
        for a in set.acks {
            let seqs = self.pending_seqs(&a.supplier, &a.ids);
            if !seqs.is_empty() {
                ops.push(Op::Ack {
                    supplier: a.supplier.clone(),
                    seqs: seqs.clone(),
                });
                acks.push((a.supplier, seqs));
            }
        }
        if ops.is_empty() {
            return Ok(WriteSetOutcome::default());
        }
        self.core.check_write_set().map_err(StorageError::Conflict)?;
        match self.write1(Op::WriteSet(ops)).await? {
            OpResult::WriteSet { versions, .. } => {
                let acked = acks
                    .into_iter()
                    .map(|(supplier, seqs)| self.acked(&supplier, seqs))
                    .sum();
                Ok(WriteSetOutcome { versions, acked })
            }
            other => Err(unexpected(other)),
        }
    }
}
