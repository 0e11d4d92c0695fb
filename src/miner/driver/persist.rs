//! Storing session records: the writes a set of sessions needs (a change of `queried_at` alone is not written),
//! batched as one storage write where possible and fenced like every write of the leader; the tries a record
//! counts are committed first (rolled back to what storage holds when storage refuses them for want of memory),
//! and the reports waiting for a record run once it is stored.
//!
//! A version conflict on a record this leader wrote, where storage holds an *older* version than the one this
//! leader last stored (or none), means storage lost acknowledged writes: a rollback (a Redis failover or restart
//! without fsync the client did not see; a restored backup). It is logged at ERROR and counted in
//! `ha_miner_storage_rollback_detected_total{store}` (the storage backend: `redb`, `redis`, `raft`, `memory`), so it
//! can be alerted on (`Miner::storage_rolled_back`). The leader stays in leader mode and writes its record over
//! the older one: its in-memory record knows more (txs sent, claims built) than the one storage went back to, and
//! leaving leader mode would restore from the older one (a claim or proof sent again, a fee paid twice). The
//! relays the rollback took are delivered again and their trie leaves written back (module `ingest`).

use super::*;

impl Miner {
    /// Writes the records a failed iteration could not store, then runs their waiting reports.
    pub(super) async fn persist_pending(&mut self) -> Result<(), MinerError> {
        if self.unpersisted.is_empty() {
            return Ok(());
        }
        let keys: Vec<SessionKey> = self.unpersisted.iter().cloned().collect();
        let mut written = Vec::new();
        let persisted = self.persist(&keys, &mut written).await;
        // Reports of the records stored now run now, even when a later one failed (see `execute`).
        if persisted.is_ok() {
            self.unpersisted.clear();
        } else {
            let stored: HashSet<SessionKey> = written.into_iter().collect();
            self.unpersisted.retain(|k| !stored.contains(k));
        }
        let (now, waiting): (Vec<Command>, Vec<Command>) = std::mem::take(&mut self.pending_reports)
            .into_iter()
            .partition(|r| r.report_key().is_none_or(|k| !self.unpersisted.contains(k)));
        self.pending_reports = waiting;
        for report in now {
            self.run_command(report).await?;
        }
        persisted.map(drop)
    }

    /// Writes the records of `keys`, except those whose only change since they were last stored is
    /// `queried_at`: that field only keeps the engine from asking the chain twice in one block (lookups of sent
    /// claims and proofs run every block), so writing it cost one storage write (on raft, one replicated commit)
    /// per such session per block. A stored `queried_at` that is behind means at most one extra lookup at the
    /// first block after a restart or failover.
    /// Returns how many records were written; each written key is pushed on `written` as it is stored (so a
    /// caller knows which ones were when a later write fails).
    ///
    /// Several records are written as one storage write ([`storage::WriteSets`]; on raft one log entry instead of
    /// one per record), all or none; when one of them conflicts, they are written one by one, which resolves
    /// the conflict. A session whose trie has changes not yet committed (an ingest batch whose write failed)
    /// gets its trie committed first, so a record never counts relays its trie does not hold in storage; when
    /// storage refuses that for want of memory, the trie is rolled back to what storage holds and the record
    /// counts that ([`Miner::flush_tries`]).
    pub(super) async fn persist(
        &mut self,
        keys: &[SessionKey],
        written_keys: &mut Vec<SessionKey>,
    ) -> Result<usize, MinerError> {
        let persisted = self.write_records(keys, written_keys).await;
        // Even after a failed write: the records written before it are stored.
        self.run_due_reports().await;
        persisted
    }

    /// [`Miner::persist`]'s writes.
    pub(super) async fn write_records(
        &mut self,
        keys: &[SessionKey],
        written_keys: &mut Vec<SessionKey>,
    ) -> Result<usize, MinerError> {
        // Sessions whose gas rose (module `fees`) are written too, whether or not the engine changed them.
        let mut keys = keys.to_vec();
        for key in self.gas_pricing.unwritten_gas() {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let keys = keys.as_slice();
        let mut writes = self.record_writes(keys)?;
        if writes.is_empty() {
            return Ok(0);
        }
        let with_writes: Vec<SessionKey> = writes.iter().map(|w| w.0.clone()).collect();
        if !self.flush_tries(&with_writes).await?.is_empty() {
            // Their records now count what the rolled-back tries hold.
            writes = self.record_writes(keys)?;
        }
        if writes.len() > 1 {
            let set = storage::WriteSet {
                records: writes.iter().map(|(_, _, w)| w.clone()).collect(),
                ..Default::default()
            };
            match self.writer()?.write_sets.write(set).await {
                Ok(outcome) => {
                    let n = writes.len();
                    for ((key, record, _), version) in writes.into_iter().zip(outcome.versions) {
                        self.stored_as(key.clone(), record, version);
                        written_keys.push(key);
                    }
                    return Ok(n);
                }
                // One by one below: a conflicting record is taken over there.
                Err(storage::StorageError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut written = 0;
        for (key, record, w) in writes {
            self.progressed();
            match self
                .writer()?
                .sessions
                .put(
                    &key.supplier,
                    &key.session_id,
                    &w.state,
                    w.data.clone(),
                    w.expected_version,
                )
                .await
            {
                Ok(version) => {
                    self.stored_as(key.clone(), record, version);
                    written += 1;
                    written_keys.push(key);
                }
                Err(storage::StorageError::Conflict(e)) => {
                    // The stored version moved under us. Deposed leaders cannot write any more (their writes are
                    // fenced), so this is a write that landed before this miner's term began (or a write whose
                    // outcome this miner did not learn). The leader's in-memory record is authoritative: take
                    // the stored version and write once more, fenced like every write, so this overwrite
                    // happens only while this miner still leads.
                    let current = self
                        .writer()?
                        .sessions
                        .get(&key.supplier, &key.session_id)
                        .await?
                        .map(|r| r.version)
                        .unwrap_or(0);
                    // Older than what this leader stored last: a rollback, written over (module docs).
                    if !self.storage_rolled_back(&key, current, w.expected_version) {
                        tracing::warn!(
                            session = key.session_id,
                            error = e,
                            "session record written by another instance; overwriting as the leader"
                        );
                    }
                    let version = self
                        .writer()?
                        .sessions
                        .put(&key.supplier, &key.session_id, record.state.as_str(), w.data, current)
                        .await?;
                    self.stored_as(key.clone(), record, version);
                    written += 1;
                    written_keys.push(key);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// After a version conflict on `key`'s record, which storage holds at version `current` (0: none) while this
    /// leader last wrote it at `expected`: whether storage went back to an older version (a rollback, module docs),
    /// then logged at ERROR and counted in `ha_miner_storage_rollback_detected_total{store}`. The caller writes its
    /// record over it all the same.
    pub(super) fn storage_rolled_back(&self, key: &SessionKey, current: u64, expected: u64) -> bool {
        if current >= expected {
            return false;
        }
        let store = self.storage.backend;
        tracing::error!(
            supplier = key.supplier,
            session = key.session_id,
            store,
            stored_version = current,
            expected_version = expected,
            "session record older than this leader's last write: storage lost acknowledged writes (a Redis \
             failover or restart without fsync, a restored backup); writing the leader's record over it"
        );
        if let Some(m) = &self.metrics {
            m.storage_rollbacks.with_label_values(&[store]).inc();
        }
        true
    }

    /// The record writes `keys` need now (see [`Miner::persist`] for which are skipped), with the record each
    /// stores.
    pub(super) fn record_writes(
        &mut self,
        keys: &[SessionKey],
    ) -> Result<Vec<(SessionKey, SessionRecord, storage::RecordWrite)>, MinerError> {
        let mut writes = Vec::new();
        for key in keys {
            let Some(record) = self.engine.session(key) else {
                continue;
            };
            // The txs its record holds (module `submit::kept`): a change of them alone is written too.
            let held_hashes = self.kept_txs.held_hashes(key, Some(record.state));
            if self.stored_txs.get(key).map_or(&[][..], Vec::as_slice) == held_hashes.as_slice()
                && !self.gas_pricing.gas_unwritten(key)
                && self
                    .stored
                    .get(key)
                    .is_some_and(|stored| same_but_queried_at(stored, record))
            {
                continue;
            }
            let held = self.kept_txs.held_by(key);
            let data = serde_json::to_vec(&submit::RecordOut {
                record,
                in_flight_txs: &held,
                gas: self.gas_pricing.session_gas(key),
            })
            .map_err(|e| MinerError::Corrupt(e.to_string()))?;
            let write = storage::RecordWrite {
                supplier: key.supplier.clone(),
                session_id: key.session_id.clone(),
                state: record.state.as_str().to_owned(),
                data,
                expected_version: self.versions.get(key).copied().unwrap_or(0),
            };
            writes.push((key.clone(), record.clone(), write));
        }
        Ok(writes)
    }

    /// Notes `record` as stored at `version`.
    pub(super) fn stored_as(&mut self, key: SessionKey, record: SessionRecord, version: u64) {
        // The txs the record was written with ([`Miner::record_writes`]; `kept_txs` does not change in between).
        let held_hashes = self.kept_txs.held_hashes(&key, Some(record.state));
        self.versions.insert(key.clone(), version);
        self.stored_txs.insert(key.clone(), held_hashes);
        // Its gas as noted now ([`Miner::record_writes`]; nothing notes gas in between).
        self.gas_pricing.gas_written(&key);
        // The engine's whole record is stored: whatever change of it waited for a write ([`Miner::defer`]) is in
        // it, and so are the reports of those changes, which are due now. Left waiting for `persist_pending`,
        // they would be dropped if this miner lost the leadership first, and the next leader, restoring the
        // record already moved, would never report them.
        self.unpersisted.remove(&key);
        let (due, waiting): (Vec<Command>, Vec<Command>) = std::mem::take(&mut self.pending_reports)
            .into_iter()
            .partition(|r| r.report_key() == Some(&key));
        self.pending_reports = waiting;
        self.due_reports.extend(due);
        self.stored.insert(key, record);
    }

    /// Runs the reports whose records a write just stored ([`Miner::stored_as`]). A report writes nothing: it
    /// counts metrics and logs, and may query the chain to value a claim or a loss in uPOKT (a failed query is
    /// logged by the report and leaves that uPOKT uncounted).
    pub(super) async fn run_due_reports(&mut self) {
        for report in std::mem::take(&mut self.due_reports) {
            if let Err(e) = self.run_command(report).await {
                tracing::warn!(error = %e, "a loss report failed");
            }
        }
    }

    /// Commits the tries (claimed and late) of `keys` that have changes not in storage yet; returns the sessions
    /// whose changes storage refused for want of memory and which were rolled back.
    ///
    /// Storage at its memory limit (Redis at `maxmemory`, reached through other tenants or Go relayers, which do
    /// not stop at `storage.redis.relay_max_memory_ratio`) refuses every trie write but still takes session
    /// records and acks (their `allow-oom` scripts on Redis ≥ 7). The changes a refused ingest batch left in a
    /// trie then failed every record write of its session, and with it every other record of the same write:
    /// nothing was claimed until memory was freed, and a claim window could close meanwhile (the reward lost).
    /// Such a trie is rolled back to what storage holds instead ([`Miner::roll_back_tries`]): its record is
    /// written (and its claim built) from the stored trie, and the relays rolled back, still pending in the relay
    /// log, are ingested once storage takes writes again (after the claim: counted as relays after it).
    pub(super) async fn flush_tries(&mut self, keys: &[SessionKey]) -> Result<Vec<SessionKey>, MinerError> {
        let mut rolled_back = Vec::new();
        for key in keys {
            let Some(open) = self.tries.get_mut(key) else {
                continue;
            };
            if !open.trie.has_uncommitted_changes() && !open.late.as_ref().is_some_and(|l| l.has_uncommitted_changes())
            {
                continue;
            }
            let committed = tokio::task::block_in_place(|| {
                if open.trie.has_uncommitted_changes() {
                    open.trie.commit()?;
                }
                if let Some(late) = &mut open.late
                    && late.has_uncommitted_changes()
                {
                    late.commit()?;
                }
                Ok::<_, MinerError>(())
            });
            self.progressed();
            match committed {
                Ok(()) => {}
                Err(e) if out_of_memory(&e) => {
                    // Again at every record write while storage stays full (the ingest reinserts the relays).
                    if let Some(suppressed) = ROLL_BACK_LOG.admit() {
                        tracing::warn!(
                            supplier = key.supplier,
                            session = key.session_id,
                            error = %e,
                            suppressed,
                            "storage refuses the session's trie changes for want of memory: the trie is rolled back \
                             to what storage holds, so its record (and claim) is written from that; the relays \
                             rolled back stay pending in the relay log and are ingested once storage takes writes \
                             again (`suppressed`: roll-backs not logged since the last line)"
                        );
                    }
                    self.roll_back_tries(key).await?;
                    rolled_back.push(key.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(rolled_back)
    }
}

/// At most one WARN per 10 s about tries rolled back ([`Miner::flush_tries`]).
static ROLL_BACK_LOG: std::sync::LazyLock<crate::telemetry::LogThrottle> =
    std::sync::LazyLock::new(|| crate::telemetry::LogThrottle::new(std::time::Duration::from_secs(10)));

/// Whether `error` is storage refusing a write for want of memory (Redis `OOM command not allowed`; a full disk
/// on redb).
pub(super) fn out_of_memory(error: &MinerError) -> bool {
    matches!(
        error,
        MinerError::Storage(storage::StorageError::OutOfMemory(_))
            | MinerError::Trie(crate::smst::SmstError::Store(storage::StorageError::OutOfMemory(_)))
    )
}

/// Whether `a` and `b` differ in nothing but `queried_at` (see [`Miner::persist`]).
fn same_but_queried_at(a: &SessionRecord, b: &SessionRecord) -> bool {
    SessionRecord {
        queried_at: b.queried_at,
        ..a.clone()
    } == *b
}
