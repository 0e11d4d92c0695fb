//! Restoring suppliers from storage: the suppliers worked for follow the keyring, and a supplier new to this
//! process (a restart, a failover, a hot reload) gets its persisted session records and the txs they hold back
//! before any of its sessions is acted on, so no claim or proof is built twice or forgotten.

use super::*;

impl Miner {
    /// Syncs the suppliers worked for with the keyring: a new supplier's persisted sessions are restored (after
    /// a restart, a failover or a hot reload); a removed supplier is dropped only once none of its sessions is
    /// still live.
    pub async fn sync_suppliers(&mut self) -> Result<(), MinerError> {
        let current = self.keys.snapshot();
        for (address, key) in current.iter() {
            if !self.signers.contains_key(address) {
                self.restore_supplier(address).await?;
                tracing::info!(supplier = address, "miner serving supplier");
                self.signers.insert(address.clone(), key.clone());
                // Its sessions are restored: none of them is keyless any more.
                if let Some(m) = &self.metrics {
                    let _absent = m.keyless_sessions.remove_label_values(&[address]);
                }
                // Its relay log has not been read yet: its claims wait for an ingest round (module `ingest`).
                self.engine.set_ingest_caught_up(address, false);
            }
        }
        let removed: Vec<String> = self
            .signers
            .keys()
            .filter(|a| !current.contains_key(*a))
            .cloned()
            .collect();
        // A supplier back in the keys file is warned about again if removed again.
        self.removal_warned.retain(|a| !current.contains_key(a));
        for address in removed {
            let live = self
                .engine
                .sessions()
                .filter(|r| r.key.supplier == address && !r.pruned)
                .count();
            if live > 0 {
                self.warn_removed_but_kept(&address, live, 0);
                continue;
            }
            // Relays in its log not ingested yet belong to sessions the engine does not know: dropped now, the
            // key would be gone before they are claimed (counted only as unowned entries).
            match self.storage.relay_log.backlog(&address).await {
                Ok(b) if b.undelivered == 0 && b.pending == 0 => {
                    tracing::info!(
                        supplier = address,
                        "supplier removed from the keys file; no live sessions and no relays left to ingest"
                    );
                    self.removal_warned.remove(&address);
                    self.signers.remove(&address);
                }
                Ok(b) => self.warn_removed_but_kept(&address, 0, b.undelivered.saturating_add(b.pending)),
                Err(e) => tracing::warn!(
                    supplier = address,
                    error = %e,
                    "supplier removed from the keys file: cannot read its relay-log backlog, its key is kept \
                     until it can be read"
                ),
            }
        }
        Ok(())
    }

    /// Warns once per removal that `supplier`'s key is kept in memory for its `live` sessions and `unread`
    /// relays not ingested yet: the keys file no longer has it, so a restart before they end abandons them.
    fn warn_removed_but_kept(&mut self, supplier: &str, live: usize, unread: u64) {
        if self.removal_warned.insert(supplier.to_owned()) {
            tracing::warn!(
                supplier,
                live_sessions = live,
                relays_not_ingested = unread,
                "supplier removed from the keys file while it has work left: its key is kept in memory until its \
                 sessions are claimed, proved and pruned; keep it in the keys file until then (a restart before \
                 abandons them: claims and required proofs not sent, shown by ha_miner_keyless_sessions)"
            );
        }
    }

    /// Restores a supplier's session records, and the txs they hold (module `submit::kept`) as txs of unknown
    /// outcome: a predecessor (or this process before a restart) may have broadcast them, so each is found out
    /// about before a new tx is built for its sessions.
    pub(super) async fn restore_supplier(&mut self, supplier: &str) -> Result<(), MinerError> {
        let mut undecodable = 0i64;
        let listed = self.storage.sessions.list(Some(supplier), None).await;
        self.progressed();
        for record in listed? {
            // One record this binary cannot read (a newer binary's, after a rollback; damaged bytes) is skipped,
            // not a failed restore: that failed the reload, so no instance could lead, and every session of every
            // supplier missed its claim and proof.
            let submit::RecordIn {
                record: parsed,
                in_flight_txs,
                gas,
            } = match serde_json::from_slice(&record.data) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::error!(
                        supplier,
                        session = record.session_id,
                        error = %e,
                        "a session record does not decode (written by a newer version, or damaged): skipped, its \
                         claim and proof are not handled by this process"
                    );
                    undecodable += 1;
                    continue;
                }
            };
            if self.engine.session(&parsed.key).is_none() && !self.engine.is_tombstoned(&parsed.key) {
                let key = parsed.key.clone();
                self.versions.insert(key.clone(), record.version);
                self.stored.insert(key.clone(), parsed.clone());
                // A tombstone whose settlement was not counted yet (module `settled`).
                self.watch_settlement(&parsed, record.version);
                self.engine.restore(parsed);
                self.stored_txs.insert(key.clone(), submit::hashes(&in_flight_txs));
                // Its gas doublings and price at the cap (module `fees`), as the last leader noted them.
                self.gas_pricing.restore_session_gas(&key, gas);
                for stored in &in_flight_txs {
                    match self.kept_txs.restore(&key, stored) {
                        Some((kind, keys, tx)) => {
                            tracing::info!(
                                supplier,
                                session = key.session_id,
                                ?kind,
                                tx = tx.hash,
                                sessions = keys.len(),
                                "restored a tx that may have been broadcast: found out about before any new one"
                            );
                            self.unknown_txs.insert(kind, &keys, tx);
                        }
                        None => tracing::error!(
                            supplier,
                            session = key.session_id,
                            tx = stored.hash,
                            "a stored tx does not decode or does not match its hash; ignored"
                        ),
                    }
                }
            }
        }
        // Set once the listing succeeded: what this restore skipped (an alert, where the log line is easily missed).
        if let Some(m) = &self.metrics {
            m.records_undecodable.with_label_values(&[supplier]).set(undecodable);
        }
        Ok(())
    }
}
