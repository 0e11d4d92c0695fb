//! Relays a session's prune trims from the relay log before the ingest read them: counted lost.
//!
//! Why: a prune removes what is left of the session in the relay log (`RelayLog::trim_session`) together with its
//! tries and record. Entries still there were either ingested (in a trie; still pending because the write that
//! acknowledges them failed, or the tries were committed on their own, module `ingest`) or never read: a backlog
//! that lasted through the session's windows (the miner down, an ingest slower than the relayers). Those never
//! read are served relays that will never be paid, and the trim used to drop them without a trace.
//!
//! How: before the trim, the relay hashes of the session's remaining entries are read
//! (`RelayLog::session_relay_hashes`, no payloads) and checked against the session's claimed and late tries (the
//! open ones, uncommitted relays included, else as stored). The relays lost are the entries the trim removed
//! less those found in a trie, so an entry appended between the listing and the trim is counted too, and a relay
//! that reached a trie is never counted here: its loss or pay is the session's, counted by the engine's reports
//! from the tries' totals (`claim_window_missed`, `relays_after_claim`, ...). They are counted in
//! `ha_miner_relays_lost_total`, `ha_miner_compute_units_lost_total` and `ha_miner_upokt_lost_total` with the reason
//! [`PRUNED_BEFORE_INGEST`] (the compute units at the chain's `compute_units_per_relay` of the session, the weight
//! ingest would have given them), in `MinerStats::relays_pruned_unread`, and logged at WARN once per prune
//! with the count. A trim removes an entry once, so a prune retried after a failure counts only what its own
//! trim removed. Relays appended after the prune are the ingest's (`session_pruned`, not lost).

use super::*;

/// `reason` of the `*_lost_total` metrics for relays a prune trimmed from the relay log unread (module docs).
pub(super) const PRUNED_BEFORE_INGEST: &str = "pruned_before_ingest";

/// Of a session's remaining relay-log entries, listed right before its trim: how many, and how many of them are
/// in one of its tries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Remaining {
    pub(super) entries: u64,
    pub(super) ingested: u64,
}

impl Miner {
    /// The session's remaining relay-log entries and how many of them its tries hold (module docs): `open`, the
    /// session's open tries if this process has them, else the tries as stored. A trie that cannot be read holds
    /// nothing here (its relays were never claimable from it).
    pub(super) async fn remaining_entries(
        &self,
        key: &SessionKey,
        open: Option<&OpenTrie>,
    ) -> Result<Remaining, MinerError> {
        let hashes = self
            .writer()?
            .relay_log
            .session_relay_hashes(&key.supplier, &key.session_id)
            .await?;
        if hashes.is_empty() {
            return Ok(Remaining::default());
        }
        let late_namespace = ingest::late_namespace(&key.session_id);
        let stored_claimed = match open {
            Some(_) => None,
            None => self.stored_trie(&key.supplier, &key.session_id).await,
        };
        // An open session's late trie is loaded on its first late relay: one only in storage is read too.
        let stored_late = match open.and_then(|o| o.late.as_ref()) {
            Some(_) => None,
            None => self.stored_trie(&key.supplier, &late_namespace).await,
        };
        let claimed = open.map(|o| &o.trie).or(stored_claimed.as_ref());
        let late = open.and_then(|o| o.late.as_ref()).or(stored_late.as_ref());
        let ingested = hashes
            .iter()
            .filter(|h| claimed.is_some_and(|t| t.contains(h)) || late.is_some_and(|t| t.contains(h)))
            .count();
        Ok(Remaining {
            entries: hashes.len() as u64,
            ingested: ingested as u64,
        })
    }

    /// The trie stored in `(supplier, namespace)`, `None` when it cannot be read (logged).
    async fn stored_trie(&self, supplier: &str, namespace: &str) -> Option<Smst<storage::BoxNodeStore>> {
        match self.load_trie(supplier, namespace).await {
            Ok(trie) => Some(trie),
            Err(e) => {
                tracing::warn!(
                    supplier,
                    namespace,
                    error = %e,
                    "a pruned session's trie cannot be read: its relay-log entries left are all counted unread"
                );
                None
            }
        }
    }

    /// Counts the relays of `key` that its prune's trim removed (`trimmed`) and that no trie of it held
    /// (`remaining.ingested`, listed before the trim): lost, reason [`PRUNED_BEFORE_INGEST`] (module docs).
    pub(super) async fn count_pruned_unread(
        &self,
        key: &SessionKey,
        trimmed: u64,
        remaining: Remaining,
        compute_units_per_relay: Option<u64>,
    ) {
        let lost = trimmed.saturating_sub(remaining.ingested);
        if lost == 0 {
            return;
        }
        self.stats.relays_pruned_unread.fetch_add(lost, AtomicOrdering::Relaxed);
        let (service, start, end) = self
            .engine
            .session(key)
            .map(|r| (r.service_id.clone(), r.schedule.session_start, r.schedule.session_end))
            .unwrap_or_default();
        tracing::warn!(
            supplier = key.supplier,
            session = key.session_id,
            service,
            relays = lost,
            trimmed,
            ingested = remaining.ingested,
            "relays of a pruned session were still in the relay log, never ingested (a backlog through the \
             session's windows: the miner down or behind): trimmed, their revenue is lost \
             (ha_miner_relays_lost_total{{reason=\"pruned_before_ingest\"}})"
        );
        let Some(m) = &self.metrics else { return };
        let cupr = match compute_units_per_relay {
            Some(cupr) => Ok(cupr),
            None => self.chain.compute_units_at(&service, start).await,
        };
        match cupr {
            Ok(cupr) => {
                let compute_units = lost.saturating_mul(cupr);
                let upokt = self.upokt(&service, end, compute_units).await;
                self.count_loss(key, &service, PRUNED_BEFORE_INGEST, lost, compute_units, upokt);
            }
            Err(e) => {
                m.relays_lost
                    .with_label_values(&[key.supplier.as_str(), &service, PRUNED_BEFORE_INGEST])
                    .inc_by(lost);
                tracing::error!(
                    supplier = key.supplier,
                    session = key.session_id,
                    relays = lost,
                    error = %e,
                    "cannot read the session's compute units per relay: ha_miner_relays_lost_total counts the \
                     relays trimmed unread, ha_miner_compute_units_lost_total and ha_miner_upokt_lost_total miss them"
                );
            }
        }
    }
}
