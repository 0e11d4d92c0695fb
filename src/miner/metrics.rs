//! Prometheus metrics of the miner (issue 7), with the Go miner's names where the meaning is the same
//! (`../shared/spec/go-operator-surface.md`, `miner/metrics.go`). Money metrics count only real outcomes:
//! `ha_miner_upokt_lost_total` moves only when the engine records a loss after asking the chain, never for a
//! discarded zero-relay session or an HA conflict (lessons.md: revenue-loss metrics that lie are worse than none).
//! Its uPOKT value needs chain params (cached); `ha_miner_relays_lost_total` and `ha_miner_compute_units_lost_total`
//! count the same events exactly without them, so a failed valuation (logged at ERROR) never hides a loss.
//! What the chain paid (`ha_miner_*_settled_*`, `ha_miner_upokt_earned_total`, `ha_miner_upokt_settled_total`, `ha_miner_claim_ceiling_exceeded_*`,
//! `ha_miner_supplier_slashed_total`) comes from the settlement block's events only, once per settlement (module
//! `driver::settled`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::telemetry::{Telemetry, TelemetryError};

/// The miner's metric handles.
#[derive(Clone)]
pub struct MinerMetrics {
    pub(super) relays_consumed: IntCounterVec,
    pub(super) relays_rejected: IntCounterVec,
    /// `ha_miner_relays_reweighted_total{supplier,service_id}`: relays whose relay-log entry's compute units per
    /// relay were not the chain's for their session, mined with the chain's (module `driver::ingest`).
    pub(super) relays_reweighted: IntCounterVec,
    pub(super) claims_submitted: IntCounterVec,
    pub(super) proofs_submitted: IntCounterVec,
    /// `ha_miner_claim_rebroadcasts_total{supplier,service_id,result}`: claim re-sends (module `driver::submit`).
    pub(super) claim_rebroadcasts: IntCounterVec,
    /// `ha_miner_proof_rebroadcasts_total{supplier,service_id,result}`: proof re-sends.
    pub(super) proof_rebroadcasts: IntCounterVec,
    /// `ha_miner_txs_replaced_total{supplier,kind,reason}`: kept txs replaced by a new one (module
    /// `driver::submit::resolve`).
    pub(super) txs_replaced: IntCounterVec,
    pub(super) claim_errors: IntCounterVec,
    pub(super) proof_errors: IntCounterVec,
    pub(super) claim_inclusion: IntCounterVec,
    pub(super) proof_inclusion: IntCounterVec,
    pub(super) proof_required: IntCounterVec,
    /// `ha_miner_proof_requirement_not_required_after_all_total{supplier}`: proofs counted in `proof_required`
    /// that the chain then did not require (module `driver::confirmed`).
    pub(super) proof_not_required_after_all: IntCounterVec,
    /// `ha_miner_settlement_unknown_total{supplier,service_id}`: sessions decided "no proof required" whose
    /// settlement the chain never told (module `driver::confirmed`).
    pub(super) settlement_unknown: IntCounterVec,
    pub(super) upokt_claimed: IntCounterVec,
    pub(super) upokt_lost: IntCounterVec,
    pub(super) relays_lost: IntCounterVec,
    pub(super) compute_units_lost: IntCounterVec,
    pub(super) sessions_failed: IntCounterVec,
    pub(super) claims_discarded: IntCounterVec,
    pub(super) sessions: IntGaugeVec,
    pub(super) consumer_lag: IntGaugeVec,
    /// `ha_miner_session_block_processing_lag{supplier}` (module `driver::observe`).
    pub(super) block_processing_lag: IntGaugeVec,
    pub(super) block_height: IntGauge,
    /// `ha_miner_leader_status{instance}` (Go's labels): 1 while this instance leads.
    pub(super) leader_status: IntGaugeVec,
    /// `ha_miner_leader_elections_total{instance}`: times this instance took the leadership (module
    /// `driver::leadership`).
    pub(super) leader_elections: IntCounterVec,
    /// `ha_miner_leader_losses_total{instance}`: times this instance stopped leading (lease lost, a fenced write,
    /// a resign on stop).
    pub(super) leader_losses: IntCounterVec,
    /// `ha_miner_leader_acquisition_failures_total{instance,reason}` when the miner counts it
    /// ([`AcquisitionFailures::Miner`]); `None` where the storage counts it itself (Redis).
    pub(super) leader_acquisition_failures: Option<IntCounterVec>,
    pub(super) fenced_writes: IntCounter,
    /// `ha_miner_storage_rollback_detected_total{store}`: session records storage held at an older version than
    /// this leader last wrote (lost acknowledged writes; module `driver::persist`).
    pub(super) storage_rollbacks: IntCounterVec,
    pub(super) fee_refusals: IntCounterVec,
    pub(super) claims_skipped: IntCounterVec,
    pub(super) claims_skipped_upokt: IntCounterVec,
    pub(super) records_undecodable: IntGaugeVec,
    /// `ha_miner_keyless_sessions{supplier}` (module `driver::leadership`).
    pub(super) keyless_sessions: IntGaugeVec,
    pub(super) balance: super::driver::balance::FundsMetrics,
    pub(super) settlement: super::driver::settled::SettlementMetrics,
    pub(super) unowned: super::driver::unowned::UnownedLogs,
}

/// Who counts `ha_miner_leader_acquisition_failures_total{instance,reason}`: exactly one of the miner and the
/// storage, as both registered in one registry fail the second registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquisitionFailures {
    /// The miner counts its failed campaigns (embedded, raft, memory), by the storage error's kind.
    Miner,
    /// The storage counts them itself: the Redis backend, which tells an OOM refusal apart
    /// (`storage::redis` stats, registered with the storage's collectors).
    Storage,
}

impl AcquisitionFailures {
    /// Who counts them with storage mode `mode` (`embedded`, `redis`, `raft`; the node's storage mode name).
    pub fn for_storage_mode(mode: &str) -> Self {
        if mode == "redis" { Self::Storage } else { Self::Miner }
    }
}

impl MinerMetrics {
    /// Registers every miner metric in `telemetry`'s registry, the miner counting the leadership acquisition
    /// failures ([`AcquisitionFailures::Miner`]).
    pub fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        Self::counting(telemetry, AcquisitionFailures::Miner)
    }

    /// Registers every miner metric in `telemetry`'s registry; `ha_miner_leader_acquisition_failures_total` only
    /// when `acquisition_failures` is [`AcquisitionFailures::Miner`].
    pub fn counting(telemetry: &Telemetry, acquisition_failures: AcquisitionFailures) -> Result<Self, TelemetryError> {
        let r = telemetry.registry();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, TelemetryError> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, TelemetryError> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, TelemetryError> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let ss = &["supplier", "service_id"];
        Ok(Self {
            relays_consumed: counter(
                "ha_miner_relays_consumed_from_stream_total",
                "Relay-log entries ingested into tries",
                ss,
            )?,
            relays_rejected: counter(
                "ha_miner_relays_rejected_total",
                "Relay-log entries the miner acknowledged without mining them: unreadable ones (undecodable, \
                 bad_relay_hash; logged at ERROR, skipped so they cannot stop ingest) and relays of sessions \
                 already pruned after settlement (session_pruned; paid or counted lost already)",
                &["supplier", "reason", "service_id"],
            )?,
            relays_reweighted: counter(
                "ha_miner_relays_reweighted_total",
                "Relays whose relay-log entry carried compute units per relay other than the chain's for their \
                 session (at its start height; a relayer with a stale cache or another implementation): mined with \
                 the chain's value, which the chain checks every claim's sum against",
                ss,
            )?,
            claims_submitted: counter(
                "ha_miner_claims_submitted_total",
                "Sessions whose claim a node took at its first send (re-sends: ha_miner_claim_rebroadcasts_total)",
                ss,
            )?,
            proofs_submitted: counter(
                "ha_miner_proofs_submitted_total",
                "Sessions whose proof a node took at its first send (re-sends: ha_miner_proof_rebroadcasts_total)",
                ss,
            )?,
            claim_rebroadcasts: counter(
                "ha_miner_claim_rebroadcasts_total",
                "Claim re-sends broadcast (the chain did not show the claim two blocks after a send, or a new \
                 leader repeats its predecessor's send), by outcome: broadcast (a node took it), refused, rejected, \
                 ha_conflict, retryable (no node answered)",
                &["supplier", "service_id", "result"],
            )?,
            proof_rebroadcasts: counter(
                "ha_miner_proof_rebroadcasts_total",
                "Proof re-sends broadcast, by outcome (as ha_miner_claim_rebroadcasts_total)",
                &["supplier", "service_id", "result"],
            )?,
            txs_replaced: counter(
                "ha_miner_txs_replaced_total",
                "Kept claim or proof txs replaced by a new tx at transaction.max_gas_price instead of broadcast \
                 again: stuck_in_mempool (the node still held it two blocks after its first broadcast and no block \
                 included it)",
                &["supplier", "kind", "reason"],
            )?,
            claim_errors: counter(
                "ha_miner_claim_errors_total",
                "Claim txs refused by a node (refused), unanswered (retryable), in conflict (ha_conflict), unsendable (rejected) or not sent (not_leader, deadline_passed, build_failed)",
                &["supplier", "reason"],
            )?,
            proof_errors: counter(
                "ha_miner_proof_errors_total",
                "Proof txs refused by a node (refused), unanswered (retryable), in conflict (ha_conflict), unsendable (rejected, claim_root_mismatch) or not sent (not_leader, deadline_passed, build_failed, insufficient_funds)",
                &["supplier", "reason"],
            )?,
            claim_inclusion: counter(
                "ha_miner_claim_inclusion_outcome_total",
                "Claims confirmed on chain",
                &["supplier", "service_id", "outcome"],
            )?,
            proof_inclusion: counter(
                "ha_miner_proof_inclusion_outcome_total",
                "Required proofs validated on chain",
                &["supplier", "service_id", "outcome"],
            )?,
            proof_required: counter(
                "ha_miner_proof_requirement_required_total",
                "Claims whose proof was found required (at the proof seed block, or when the proof params changed); \
                 those the chain then did not require are counted in \
                 ha_miner_proof_requirement_not_required_after_all_total: proofs owed = this - that",
                &["supplier"],
            )?,
            proof_not_required_after_all: counter(
                "ha_miner_proof_requirement_not_required_after_all_total",
                "Claims counted in ha_miner_proof_requirement_required_total whose proof the chain then did not \
                 require (its proof params changed before the proof landed): settled without a proof",
                &["supplier"],
            )?,
            settlement_unknown: counter(
                "ha_miner_settlement_unknown_total",
                "Sessions decided \"no proof required\" whose settlement the chain never told (its block results \
                 unreadable or without the claim's event for as long as they were asked): neither counted paid nor lost",
                &["supplier", "service_id"],
            )?,
            upokt_claimed: counter("ha_miner_upokt_claimed_total", "uPOKT of claims confirmed on chain", ss)?,
            upokt_lost: counter(
                "ha_miner_upokt_lost_total",
                "uPOKT of mined relays lost (real losses only, after asking the chain)",
                &["supplier", "service_id", "reason"],
            )?,
            relays_lost: counter(
                "ha_miner_relays_lost_total",
                "Mined relays lost, by reason (same events as ha_miner_upokt_lost_total; needs no chain query)",
                &["supplier", "service_id", "reason"],
            )?,
            compute_units_lost: counter(
                "ha_miner_compute_units_lost_total",
                "Compute units of mined relays lost, by reason (same events as ha_miner_upokt_lost_total)",
                &["supplier", "service_id", "reason"],
            )?,
            sessions_failed: counter(
                "ha_miner_sessions_failed_total",
                "Sessions whose revenue was lost, by reason",
                &["supplier", "service_id", "reason"],
            )?,
            claims_discarded: counter(
                "ha_miner_claims_discarded_total",
                "Zero-relay sessions discarded (never a failure)",
                ss,
            )?,
            sessions: gauge_vec(
                "ha_miner_sessions",
                "Sessions held by the miner, by lifecycle state (pruned: tombstones of pruned sessions, kept so their late relays are not mined)",
                &["state"],
            )?,
            consumer_lag: gauge_vec(
                "ha_miner_consumer_lag",
                "Relay-log entries not yet ingested (undelivered + pending)",
                &["supplier"],
            )?,
            block_processing_lag: gauge_vec(
                "ha_miner_session_block_processing_lag",
                "Blocks between the chain tip the leader handled and the last block whose work (claims, proofs, \
                 lookups, record writes) completed without a failure for the supplier; 0 when caught up, growing \
                 while its commands keep failing",
                &["supplier"],
            )?,
            block_height: gauge("ha_miner_current_block_height", "Latest block height seen by the miner")?,
            leader_status: gauge_vec(
                "ha_miner_leader_status",
                "1 when this miner instance is the leader that submits",
                &["instance"],
            )?,
            leader_elections: counter(
                "ha_miner_leader_elections_total",
                "Times this instance took the miner leadership (its sessions reloaded from storage)",
                &["instance"],
            )?,
            leader_losses: counter(
                "ha_miner_leader_losses_total",
                "Times this instance stopped leading: lease lost or not renewed, a write refused by the fence, or the \
                 lease given up on stop; with ha_miner_leader_elections_total it shows leadership flapping",
                &["instance"],
            )?,
            leader_acquisition_failures: match acquisition_failures {
                AcquisitionFailures::Miner => Some(counter(
                    "ha_miner_leader_acquisition_failures_total",
                    "Leadership campaigns that failed on a storage error, by reason (storage_unavailable: raft \
                     without a quorum or a timeout; storage_error: any other); losing to another holder is not \
                     counted",
                    &["instance", "reason"],
                )?),
                AcquisitionFailures::Storage => None,
            },
            balance: super::driver::balance::FundsMetrics {
                balance: gauge_vec(
                    "ha_miner_supplier_balance_upokt",
                    "Spendable upokt of the supplier operator account, which pays every claim and proof tx's fee \
                     and the proof submission fee (balance_monitor)",
                    &["supplier"],
                )?,
                balance_health: gauge_vec(
                    "ha_miner_supplier_balance_health_status",
                    "0 healthy, 1 warning (below balance_monitor.balance_threshold_upokt), 2 critical (below the \
                     proof submission fees its claimed sessions may still owe: a required proof refused is a slash)",
                    &["supplier"],
                )?,
                balance_warnings: counter(
                    "ha_miner_supplier_balance_warning_alerts_total",
                    "Balance checks that found the supplier's balance at warning level",
                    &["supplier"],
                )?,
                balance_criticals: counter(
                    "ha_miner_supplier_balance_critical_alerts_total",
                    "Balance checks that found the supplier's balance at critical level",
                    &["supplier"],
                )?,
                stake: gauge_vec(
                    "ha_miner_supplier_stake_upokt",
                    "The supplier's stake (upokt), which a missing required proof slashes",
                    &["supplier"],
                )?,
                stake_health: gauge_vec(
                    "ha_miner_supplier_stake_health_ratio",
                    "How many proof_missing_penalty slashes the supplier's stake covers",
                    &["supplier"],
                )?,
                stake_warnings: counter(
                    "ha_miner_supplier_stake_warning_alerts_total",
                    "Stake checks below balance_monitor.stake_warning_proof_threshold penalties",
                    &["supplier"],
                )?,
                stake_criticals: counter(
                    "ha_miner_supplier_stake_critical_alerts_total",
                    "Stake checks below balance_monitor.stake_critical_proof_threshold penalties",
                    &["supplier"],
                )?,
                check_failures: counter(
                    "ha_miner_supplier_monitor_errors_total",
                    "Balance or stake checks that could not read the chain, by what failed",
                    &["supplier", "error_type"],
                )?,
            },
            settlement: {
                let sss = &["supplier", "service_id", "status"];
                super::driver::settled::SettlementMetrics {
                    claims: counter(
                        "ha_miner_claims_settled_by_status_total",
                        "Claims of this miner the chain settled, from the settlement block's events, once each: \
                         settled (paid, no proof required), proven (paid, proof validated), expired (required proof \
                         missing or invalid: not paid, supplier slashed), discarded (the chain's settlement failed)",
                        sss,
                    )?,
                    relays: counter(
                        "ha_miner_relays_settled_by_status_total",
                        "Relays of the claims counted in ha_miner_claims_settled_by_status_total (num_relays)",
                        sss,
                    )?,
                    compute_units_by_status: counter(
                        "ha_miner_compute_units_settled_by_status_total",
                        "Compute units of the claims counted in ha_miner_claims_settled_by_status_total",
                        sss,
                    )?,
                    compute_units: counter(
                        "ha_miner_compute_units_settled_total",
                        "Compute units of the claims the chain paid (settled and proven; all of a claim's compute units, also when \
                         the application's stake capped its settlement)",
                        ss,
                    )?,
                    upokt_earned: counter(
                        "ha_miner_upokt_earned_total",
                        "uPOKT the supplier's revenue-share holders received for the paid claims (their rows of \
                         EventClaimSettled's reward_distribution_detailed: relay burn = mint and global mint, after \
                         the mint ratio and the DAO, proposer and source-owner allocations), as the Go miner counts it",
                        ss,
                    )?,
                    upokt_settled: counter(
                        "ha_miner_upokt_settled_total",
                        "uPOKT the chain settled the paid claims for (settled_upokt of EventClaimSettled: the \
                         application's payment, before the mint ratio and the revenue shares)",
                        ss,
                    )?,
                    ceiling_exceeded: counter(
                        "ha_miner_claim_ceiling_exceeded_total",
                        "Claims the application's stake could not cover, settled for less \
                         (EventApplicationOverserviced)",
                        ss,
                    )?,
                    ceiling_exceeded_upokt: counter(
                        "ha_miner_claim_ceiling_exceeded_upokt",
                        "uPOKT of those claims the chain did not pay: claimed_upokt - settled_upokt of their \
                         EventClaimSettled",
                        ss,
                    )?,
                    slashed: counter(
                        "ha_miner_supplier_slashed_total",
                        "Slashes of the supplier's stake for an expired claim (EventSupplierSlashed)",
                        ss,
                    )?,
                    unread: counter(
                        "ha_miner_settlements_unread_total",
                        "Settled sessions not counted in the settlement metrics: read_failed (the settlement \
                         block's events could not be read for a few blocks), no_event (the block has no event of \
                         the session's claim)",
                        &["supplier", "service_id", "reason"],
                    )?,
                }
            },
            fee_refusals: counter(
                "ha_miner_fee_refusals_total",
                "Claim and proof txs a node refused at CheckTx for a fee below its minimum gas price (code 13), by \
                 what followed: resent (sent again at once at the fee the refusal named) or not_resent (the fee \
                 named is above transaction.max_gas_price, in another denom or unreadable, or the re-send was \
                 refused again; tried again at the next block)",
                &["supplier", "result"],
            )?,
            claims_skipped: counter(
                "ha_miner_claims_skipped_total",
                "Sessions whose claim was held back or not sent, counted once per session: insufficient_funds (the \
                 operator balance cannot also pay this claim's proof submission fee after the fees its claimed \
                 sessions may owe; tried again at every block while the claim window allows); unprofitable (the \
                 claim is worth at most its expected cost, transaction.skip_unprofitable_claims: not claimed, the \
                 session ends without a claim; not counted in the *_lost_total metrics, as claiming it would cost \
                 more on average)",
                &["supplier", "service_id", "reason"],
            )?,
            claims_skipped_upokt: counter(
                "ha_miner_claims_skipped_upokt_total",
                "uPOKT value of the claims not sent, counted once per session with \
                 ha_miner_claims_skipped_total: unprofitable (the claimed uPOKT of each claim skipped as worth at \
                 most its expected cost; not lost revenue, claiming it would cost more on average)",
                &["supplier", "service_id", "reason"],
            )?,
            records_undecodable: gauge_vec(
                "ha_miner_session_records_undecodable",
                "Stored session records of the supplier its last restore (at start, at every leadership gain) could \
                 not decode and skipped: written by a newer version (after a rollback) or damaged. No process of \
                 this version claims or proves those sessions; above 0 is worth an alert",
                &["supplier"],
            )?,
            keyless_sessions: gauge_vec(
                "ha_miner_keyless_sessions",
                "Live session records in storage of a supplier whose key is not in the keys file, as last listed \
                 (at every leadership gain): their claims and proofs are not submitted, their revenue is lost when \
                 their windows close unless the key is added back (the series goes once it is); above 0 is worth \
                 an alert",
                &["supplier"],
            )?,
            storage_rollbacks: counter(
                "ha_miner_storage_rollback_detected_total",
                "Session records the leader found at an older version than it last wrote (or gone) on a write \
                 conflict: storage lost acknowledged writes (a Redis failover or restart without fsync, a restored \
                 backup), by storage backend (redb, redis, raft, memory). The leader writes its record over it and \
                 keeps leading; relays the rollback took are delivered again. Above 0 is worth an alert",
                &["store"],
            )?,
            fenced_writes: {
                let c = IntCounter::new(
                    "ha_miner_fenced_writes_total",
                    "Writes storage refused because another instance leads (each one ended this miner's leadership)",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            unowned: super::driver::unowned::UnownedLogs::new(gauge_vec(
                "ha_miner_relay_log_unowned_entries",
                "Relay-log entries (undelivered + pending) of a supplier this miner has no key for (another keys \
                 file appends them): never mined nor trimmed until its key is added, so the log grows; above 0 is \
                 worth an alert (module driver::unowned)",
                &["supplier"],
            )?),
        })
    }
}
