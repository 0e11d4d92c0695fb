//! The reports of what the chain confirmed for a session: a claim found on chain
//! ([`Command::RecordClaimConfirmed`]), a required proof found validated ([`Command::RecordProofValidated`]), a
//! proof found required ([`Command::RecordProofRequired`]) or not required after all
//! ([`Command::RecordProofNotRequired`]), a settlement the chain never told ([`Command::RecordSettlementUnknown`]).
//! They feed `ha_miner_claim_inclusion_outcome_total`, `ha_miner_upokt_claimed_total`,
//! `ha_miner_proof_inclusion_outcome_total`, `ha_miner_proof_requirement_required_total` (the Go meaning: a
//! requirement decided "required"; a counter cannot go down, so the decisions the chain later overturned are
//! counted in `ha_miner_proof_requirement_not_required_after_all_total`), `ha_miner_settlement_unknown_total`
//! and the matching [`super::MinerStats`] counters (go-operator-surface.md).
//!
//! Why reports, run as the loss reports are ([`Miner::execute`]): they were counted when the lookup or the
//! requirement check saw the chain's answer, before the record that moves the session was stored. A write that
//! failed then, and a deposal before it was retried, left the stored record in the older state: the next leader
//! (or this process, leading again) restored it, asked the chain again and counted the same confirmation a
//! second time. Now the engine emits a report when it moves the session, and the driver runs it once that
//! record is stored, or drops it with the record on a deposal: only the leader that stores the transition
//! counts it, once across the fleet.
//!
//! [`Command::RecordClaimConfirmed`]: crate::miner::lifecycle::Command::RecordClaimConfirmed
//! [`Command::RecordProofValidated`]: crate::miner::lifecycle::Command::RecordProofValidated
//! [`Command::RecordProofRequired`]: crate::miner::lifecycle::Command::RecordProofRequired
//! [`Command::RecordProofNotRequired`]: crate::miner::lifecycle::Command::RecordProofNotRequired
//! [`Command::RecordSettlementUnknown`]: crate::miner::lifecycle::Command::RecordSettlementUnknown

use std::sync::atomic::Ordering as AtomicOrdering;

use super::Miner;
use crate::miner::lifecycle::SessionKey;

impl Miner {
    /// Counts `key`'s claim as confirmed on chain, valued at `compute_units` (what its root pays for: relays
    /// that reached the trie after the claim was built are not in it, they are counted as lost,
    /// `relays_after_claim`).
    pub(super) async fn report_claim_confirmed(
        &self,
        key: &SessionKey,
        service: &str,
        session_end: i64,
        compute_units: u64,
    ) {
        self.stats.claims_confirmed.fetch_add(1, AtomicOrdering::Relaxed);
        let Some(m) = &self.metrics else {
            return;
        };
        // A chain query (cached params); `None` when it failed: the claim is counted, its value is not.
        let upokt = self.upokt(service, session_end, compute_units).await;
        m.claim_inclusion
            .with_label_values(&[&key.supplier, service, "included"])
            .inc();
        m.upokt_claimed
            .with_label_values(&[&key.supplier, service])
            .inc_by(upokt.unwrap_or(0));
        if upokt.is_none() {
            tracing::warn!(
                supplier = key.supplier,
                session = key.session_id,
                compute_units,
                "cannot value a confirmed claim in uPOKT (chain query failed): ha_miner_upokt_claimed_total misses it"
            );
        }
    }

    /// Counts `key`'s required proof as validated on chain.
    pub(super) fn report_proof_validated(&self, key: &SessionKey, service: &str) {
        if let Some(m) = &self.metrics {
            m.proof_inclusion
                .with_label_values(&[&key.supplier, service, "validated"])
                .inc();
        }
    }

    /// Counts `key`'s proof as required by the chain.
    pub(super) fn report_proof_required(&self, key: &SessionKey) {
        self.stats.proofs_required.fetch_add(1, AtomicOrdering::Relaxed);
        if let Some(m) = &self.metrics {
            m.proof_required.with_label_values(&[&key.supplier]).inc();
        }
    }

    /// Counts `key`'s proof, counted required, as not required after all (the chain's proof params changed
    /// before it landed): a counter cannot go down, so the correction has its own; proofs owed are the
    /// difference.
    pub(super) fn report_proof_not_required(&self, key: &SessionKey) {
        self.stats
            .proofs_not_required_after_all
            .fetch_add(1, AtomicOrdering::Relaxed);
        tracing::info!(
            supplier = key.supplier,
            session = key.session_id,
            "the proof found required is not required any more (the chain's proof params changed): the claim \
             settles without it"
        );
        if let Some(m) = &self.metrics {
            m.proof_not_required_after_all.with_label_values(&[&key.supplier]).inc();
        }
    }

    /// Counts `key` (decided "no proof required") as a session whose settlement the chain never told.
    pub(super) fn report_settlement_unknown(&self, key: &SessionKey, service: &str) {
        self.stats.settlements_unknown.fetch_add(1, AtomicOrdering::Relaxed);
        tracing::warn!(
            supplier = key.supplier,
            session = key.session_id,
            service,
            "the chain's settlement of this session's claim (decided \"no proof required\") could not be read for \
             as long as it was asked (no CometBFT client, block results pruned or discarded, the node unreachable, \
             no event of the claim): counted neither paid nor lost (ha_miner_settlement_unknown_total)"
        );
        if let Some(m) = &self.metrics {
            m.settlement_unknown.with_label_values(&[&key.supplier, service]).inc();
        }
    }
}
