//! The sessions' tries in storage: opened on demand (after a restart or a failover only the records are
//! restored), read for a claim and its proof requirement, and deleted with the session's relay-log entries when
//! it is pruned (module `prune` counts the entries no trie held), its record replaced by its tombstone.

use super::*;

impl Miner {
    /// Deletes a session's relay-log entries and tries and, last, replaces its record by its tombstone (module
    /// `lifecycle`), or deletes the record when the session leaves none: until that write, a restart finds the
    /// record persisted as pruned and prunes again. Returns the tombstone stored and its version. `open` is the
    /// session's open tries, if any (taken out of [`Miner::tries`] by the prune).
    ///
    /// The entries are trimmed while the tries still exist, and those the tries do not hold are counted lost
    /// (module `prune`): after the tries, a prune retried once the trim failed would count relays they held.
    pub(super) async fn delete_session(
        &self,
        key: &SessionKey,
        open: Option<&OpenTrie>,
    ) -> Result<Option<(SessionRecord, u64)>, MinerError> {
        let writer = self.writer()?;
        // Only for the loss count: a listing that fails (an entry that does not decode) must not keep the
        // session's storage from being freed; its unread relays then go uncounted (WARN).
        let remaining = match self.remaining_entries(key, open).await {
            Ok(remaining) => Some(remaining),
            Err(e @ MinerError::Storage(storage::StorageError::Fenced(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(
                    supplier = key.supplier,
                    session = key.session_id,
                    error = %e,
                    "cannot list the relay-log entries left of a session being pruned: pruned without counting the \
                     relays ingest never read"
                );
                None
            }
        };
        let trimmed = writer.relay_log.trim_session(&key.supplier, &key.session_id).await?;
        if let Some(remaining) = remaining {
            self.count_pruned_unread(key, trimmed, remaining, open.and_then(|o| o.compute_units_per_relay))
                .await;
        }
        writer.tries.delete_namespace(&key.supplier, &key.session_id).await?;
        writer
            .tries
            .delete_namespace(&key.supplier, &ingest::late_namespace(&key.session_id))
            .await?;
        // Marked awaiting its settlement when that is watched (module `settled`).
        let Some(tombstone) = self.tombstone_of(key) else {
            writer.sessions.delete(&key.supplier, &key.session_id, None).await?;
            return Ok(None);
        };
        let data = serde_json::to_vec(&tombstone).map_err(|e| MinerError::Corrupt(e.to_string()))?;
        // The record was stored (as pruned) by this leader right before: its version is known. Another
        // writer's version (a write that landed before this term began) is overwritten as in `persist`.
        let expected = self.versions.get(key).copied().unwrap_or(0);
        let version = match writer
            .sessions
            .put(&key.supplier, &key.session_id, TOMBSTONE_STATE, data.clone(), expected)
            .await
        {
            Ok(version) => version,
            Err(storage::StorageError::Conflict(_)) => {
                let current = writer
                    .sessions
                    .get(&key.supplier, &key.session_id)
                    .await?
                    .map_or(0, |r| r.version);
                writer
                    .sessions
                    .put(&key.supplier, &key.session_id, TOMBSTONE_STATE, data, current)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some((tombstone, version)))
    }

    /// The session's trie, opened from storage when this process has not touched it yet (after a restart or a
    /// failover the records are restored first; the tries load on demand, digests only).
    pub(super) async fn open_trie(&mut self, key: &SessionKey) -> Result<&mut OpenTrie, MinerError> {
        if !self.tries.contains_key(key) {
            let record = self
                .engine
                .session(key)
                .ok_or_else(|| MinerError::Corrupt(format!("no session record for {}", key.session_id)))?;
            if record.application_address.is_empty() {
                return Err(MinerError::Corrupt(format!(
                    "session record {} predates header persistence",
                    key.session_id
                )));
            }
            let header = SessionHeader {
                application_address: record.application_address.clone(),
                service_id: record.service_id.clone(),
                session_id: key.session_id.clone(),
                session_start_block_height: record.schedule.session_start,
                session_end_block_height: record.schedule.session_end,
            };
            self.keep_open(key, header).await?;
        }
        self.tries
            .get_mut(key)
            .ok_or_else(|| MinerError::Corrupt(format!("no trie for {}", key.session_id)))
    }

    /// The trie stored in the namespace `(supplier, namespace)`.
    pub(super) async fn load_trie(
        &self,
        supplier: &str,
        namespace: &str,
    ) -> Result<Smst<storage::BoxNodeStore>, MinerError> {
        let store = self.writer()?.tries.open(supplier, namespace).await?;
        Ok(tokio::task::block_in_place(|| Smst::open(store))?)
    }

    /// Loads the session's (claimed) trie and keeps it open with its header.
    pub(super) async fn keep_open(&mut self, key: &SessionKey, header: SessionHeader) -> Result<(), MinerError> {
        let trie = self.load_trie(&key.supplier, &key.session_id).await?;
        self.tries.insert(
            key.clone(),
            OpenTrie {
                trie,
                header,
                late: None,
                compute_units_per_relay: None,
            },
        );
        Ok(())
    }

    /// Drops the changes of the session's tries that storage does not hold ([`Miner::flush_tries`]): each trie
    /// with changes not committed is reopened from storage (on Redis from the namespace's in-process mirror,
    /// which holds what Redis applied: no round trip for its leaf records), and the session's record, which the
    /// ingest set to the tries' totals with those changes, is set back to what the tries now hold. So a record
    /// stored after it never counts relays its trie does not hold in storage, and a claim built after it is the
    /// stored trie's root (what a proof is built from after a restart). The relays dropped are pending in the
    /// relay log (their batch was not acknowledged) and are ingested again later.
    pub(super) async fn roll_back_tries(&mut self, key: &SessionKey) -> Result<(), MinerError> {
        let Some(open) = self.tries.get(key) else {
            return Ok(());
        };
        let claimed_changed = open.trie.has_uncommitted_changes();
        let late_changed = open.late.as_ref().is_some_and(|l| l.has_uncommitted_changes());
        if claimed_changed {
            // Loaded before the old trie is dropped: on Redis the new store shares its mirror.
            let trie = self.load_trie(&key.supplier, &key.session_id).await?;
            if let Some(open) = self.tries.get_mut(key) {
                open.trie = trie;
            }
        }
        if late_changed {
            let late = self
                .load_trie(&key.supplier, &ingest::late_namespace(&key.session_id))
                .await?;
            if let Some(open) = self.tries.get_mut(key) {
                open.late = Some(late);
            }
        }
        let Some(open) = self.tries.get(key) else {
            return Ok(());
        };
        let late = open.late.as_ref().map_or((0, 0), |l| (l.count(), l.sum()));
        let (relays, compute_units) = (open.trie.count() + late.0, open.trie.sum() + late.1);
        if let Some(record) = self.engine.session(key)
            && !record.pruned
            && record.forget_after.is_none()
            && (record.relays > relays || record.compute_units > compute_units)
        {
            let mut record = record.clone();
            tracing::debug!(
                supplier = key.supplier,
                session = key.session_id,
                relays_before = record.relays,
                relays,
                "session record set back to the relays its stored tries hold"
            );
            record.relays = relays;
            record.compute_units = compute_units;
            self.engine.restore(record);
        }
        Ok(())
    }

    pub(super) async fn claim_of(&mut self, key: &SessionKey) -> Result<(wire::Claim, [u8; 48]), MinerError> {
        let open = self.open_trie(key).await?;
        let root = tokio::task::block_in_place(|| open.trie.root());
        let claim = wire::Claim {
            supplier_operator_address: key.supplier.clone(),
            session_header: Some(open.header.clone()),
            root_hash: root.to_vec(),
            proof_validation_status: 0,
        };
        Ok((claim, root))
    }
}
