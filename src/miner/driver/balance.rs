//! The supplier funds monitor (`balance_monitor.*`, the Go miner's keys and metric names).
//!
//! Every claim and proof tx is paid from the supplier operator account: the tx fee, and for a proof the chain's
//! `proof_submission_fee` on top. An account that runs dry does not fail loudly on chain: its txs are refused at
//! Simulate or CheckTx (insufficient funds), claims are lost and a required proof missing is slashed from the
//! stake (`proof_missing_penalty`). So the leading miner reads each supplier's balance and stake every
//! `check_interval_seconds` (at the first block it handles, then at the first block after each interval) and
//! says what it finds before the money is gone. The balance is the spendable one (bank `SpendableBalanceByDenom`:
//! coins a vesting schedule still locks pay no fee; the total from a node that does not serve it):
//! - balance: warning below `balance_threshold_upokt`; critical at or below the proof submission fees the supplier's
//!   claimed sessions may still owe (at least one fee): a required proof it cannot pay for is a slash.
//! - stake: how many `proof_missing_penalty` slashes it covers; warning below `stake_warning_proof_threshold`,
//!   critical below `stake_critical_proof_threshold`.
//!
//! Gauges carry the values and a health status (0 healthy, 1 warning, 2 critical); each check at warning or
//! critical level counts an alert and logs at WARN or ERROR. A check runs on a task of its own, so its chain
//! reads never hold up the block's claims and proofs; one that cannot read the chain is counted
//! (`ha_miner_supplier_monitor_errors_total`) and never fails the miner's block work.

use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec};

use super::Miner;
use crate::miner::lifecycle::State;

/// The denom balances, fees, stakes and claim values are read in.
pub(super) const DENOM: &str = "upokt";

/// What the monitor checks, and how often (`balance_monitor.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceMonitor {
    /// Time between checks (`check_interval_seconds`).
    pub every: Duration,
    /// Balance below this is a warning (`balance_threshold_upokt`).
    pub balance_threshold_upokt: u128,
    /// A stake covering fewer penalties than this is a warning (`stake_warning_proof_threshold`).
    pub stake_warning_proofs: u64,
    /// A stake covering fewer penalties than this is critical (`stake_critical_proof_threshold`).
    pub stake_critical_proofs: u64,
}

/// The monitor's metric handles (registered with the miner's, `MinerMetrics`).
#[derive(Clone)]
pub struct FundsMetrics {
    pub(in crate::miner) balance: IntGaugeVec,
    pub(in crate::miner) balance_health: IntGaugeVec,
    pub(in crate::miner) balance_warnings: IntCounterVec,
    pub(in crate::miner) balance_criticals: IntCounterVec,
    pub(in crate::miner) stake: IntGaugeVec,
    pub(in crate::miner) stake_health: IntGaugeVec,
    pub(in crate::miner) stake_warnings: IntCounterVec,
    pub(in crate::miner) stake_criticals: IntCounterVec,
    pub(in crate::miner) check_failures: IntCounterVec,
}

/// A health level, as the `*_health_status` gauge writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Health {
    Healthy = 0,
    Warning = 1,
    Critical = 2,
}

/// The balance's level: critical at or below what the sessions that may still need a proof would pay in proof
/// submission fees (at least one fee: the chain takes a proof only while the balance *exceeds* its fee, so a
/// balance of exactly the fees owed already loses the last proof), warning below the configured threshold.
pub(super) fn balance_health(balance: u128, threshold: u128, proof_fee: u128, sessions_owing: u64) -> Health {
    let owed = proof_fee.saturating_mul(u128::from(sessions_owing.max(1)));
    if proof_fee > 0 && balance <= owed {
        Health::Critical
    } else if balance < threshold {
        Health::Warning
    } else {
        Health::Healthy
    }
}

/// How many penalties `stake` covers (`None` without a penalty: nothing to cover), and its level.
pub(super) fn stake_health(stake: u128, penalty: u128, warning: u64, critical: u64) -> (Option<u128>, Health) {
    let Some(covered) = stake.checked_div(penalty) else {
        return (None, Health::Healthy);
    };
    let health = if covered < u128::from(critical) {
        Health::Critical
    } else if covered < u128::from(warning) {
        Health::Warning
    } else {
        Health::Healthy
    };
    (Some(covered), health)
}

/// A coin's uPOKT amount (`None`: another denom, none, or an unreadable amount).
pub(super) fn upokt(coin: Option<&crate::protocol::wire::Coin>) -> Option<u128> {
    coin.filter(|c| c.denom == DENOM).and_then(|c| c.amount.parse().ok())
}

impl Miner {
    /// Turns the funds monitor on (off by default; `run` turns it on unless `balance_monitor.enabled: false`).
    pub fn with_balance_monitor(mut self, monitor: BalanceMonitor) -> Self {
        self.balance_monitor = Some((monitor, None));
        self
    }

    /// Starts a check of every supplier's balance and stake when the interval since the last one passed (module
    /// docs), on a task of its own: its 1 + 2 × suppliers chain reads (each bounded by the query timeout) never
    /// hold up the block's claims, proofs or ingest. A check still running when the next is due is not doubled.
    pub(super) fn monitor_funds(&mut self) {
        let Some((monitor, last)) = &self.balance_monitor else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < monitor.every)
            || self.funds_check.as_ref().is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let monitor = monitor.clone();
        self.balance_monitor = Some((monitor.clone(), Some(Instant::now())));
        let suppliers: Vec<(String, u64)> = self
            .signers
            .keys()
            .map(|supplier| {
                let owing = self
                    .engine
                    .sessions()
                    .filter(|r| {
                        r.key.supplier == *supplier
                            && !r.pruned
                            && matches!(r.state, State::Claiming | State::Claimed | State::Proving)
                    })
                    .count();
                (supplier.clone(), u64::try_from(owing).unwrap_or(u64::MAX))
            })
            .collect();
        let chain = std::sync::Arc::clone(&self.chain);
        let metrics = self.metrics.as_ref().map(|m| m.balance.clone());
        self.funds_check = Some(tokio::spawn(check_funds(chain, metrics, monitor, suppliers)));
    }

    /// Waits for the funds check started last, if any (tests).
    #[cfg(test)]
    pub(super) async fn funds_checked(&mut self) {
        if let Some(task) = self.funds_check.take() {
            let _ = task.await;
        }
    }
}

/// One check of `suppliers` (each with the sessions that may still owe a proof fee).
async fn check_funds(
    chain: std::sync::Arc<crate::chain::query::ChainClient>,
    metrics: Option<FundsMetrics>,
    monitor: BalanceMonitor,
    suppliers: Vec<(String, u64)>,
) {
    let fail = |supplier: &str, what: &str, error: &dyn std::fmt::Display| {
        tracing::warn!(supplier, what, error = %error, "supplier funds check could not read the chain");
        if let Some(m) = &metrics {
            m.check_failures.with_label_values(&[supplier, what]).inc();
        }
    };
    let params = match chain.proof_params().await {
        Ok(p) => p,
        Err(e) => {
            for (supplier, _) in &suppliers {
                fail(supplier, "proof_params", &e);
            }
            return;
        }
    };
    let proof_fee = upokt(params.proof_submission_fee.as_ref()).unwrap_or(0);
    let penalty = upokt(params.proof_missing_penalty.as_ref()).unwrap_or(0);
    for (supplier, owing) in suppliers {
        match chain.spendable_balance(&supplier, DENOM).await {
            Ok(balance) => {
                let health = balance_health(balance, monitor.balance_threshold_upokt, proof_fee, owing);
                report_balance(metrics.as_ref(), &supplier, balance, health, proof_fee, owing, &monitor);
            }
            Err(e) => fail(&supplier, "balance", &e),
        }
        match chain.supplier(&supplier).await {
            Ok(on_chain) => {
                let stake = upokt(on_chain.as_ref().and_then(|s| s.stake.as_ref())).unwrap_or(0);
                let (covered, health) = stake_health(
                    stake,
                    penalty,
                    monitor.stake_warning_proofs,
                    monitor.stake_critical_proofs,
                );
                report_stake(metrics.as_ref(), &supplier, stake, penalty, covered, health);
            }
            Err(e) => fail(&supplier, "stake", &e),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report_balance(
    metrics: Option<&FundsMetrics>,
    supplier: &str,
    balance: u128,
    health: Health,
    proof_fee: u128,
    owing: u64,
    monitor: &BalanceMonitor,
) {
    if let Some(m) = metrics {
        m.balance
            .with_label_values(&[supplier])
            .set(i64::try_from(balance).unwrap_or(i64::MAX));
        m.balance_health.with_label_values(&[supplier]).set(health as i64);
        match health {
            Health::Critical => m.balance_criticals.with_label_values(&[supplier]).inc(),
            Health::Warning => m.balance_warnings.with_label_values(&[supplier]).inc(),
            Health::Healthy => {}
        }
    }
    match health {
        Health::Critical => tracing::error!(
            supplier,
            balance_upokt = %balance,
            proof_submission_fee_upokt = %proof_fee,
            claimed_sessions = owing,
            "supplier balance cannot pay the proofs its claims may need: a required proof refused for funds is \
             slashed and claims are lost; fund the operator account"
        ),
        Health::Warning => tracing::warn!(
            supplier,
            balance_upokt = %balance,
            threshold_upokt = %monitor.balance_threshold_upokt,
            "supplier balance below balance_monitor.balance_threshold_upokt"
        ),
        Health::Healthy => tracing::debug!(supplier, balance_upokt = %balance, "supplier balance checked"),
    }
}

fn report_stake(
    metrics: Option<&FundsMetrics>,
    supplier: &str,
    stake: u128,
    penalty: u128,
    covered: Option<u128>,
    health: Health,
) {
    if let Some(m) = metrics {
        m.stake
            .with_label_values(&[supplier])
            .set(i64::try_from(stake).unwrap_or(i64::MAX));
        if let Some(covered) = covered {
            m.stake_health
                .with_label_values(&[supplier])
                .set(i64::try_from(covered).unwrap_or(i64::MAX));
        }
        match health {
            Health::Critical => m.stake_criticals.with_label_values(&[supplier]).inc(),
            Health::Warning => m.stake_warnings.with_label_values(&[supplier]).inc(),
            Health::Healthy => {}
        }
    }
    match health {
        Health::Critical => tracing::error!(
            supplier,
            stake_upokt = %stake,
            proof_missing_penalty_upokt = %penalty,
            "supplier stake covers fewer missed-proof penalties than balance_monitor.stake_critical_proof_threshold"
        ),
        Health::Warning => tracing::warn!(
            supplier,
            stake_upokt = %stake,
            proof_missing_penalty_upokt = %penalty,
            "supplier stake covers fewer missed-proof penalties than balance_monitor.stake_warning_proof_threshold"
        ),
        Health::Healthy => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balance_is_critical_at_or_below_the_proof_fees_its_claims_may_owe() {
        // Threshold 1,000,000; proof fee 100,000; three claimed sessions owe up to 300,000. The chain takes a
        // proof only while the balance exceeds its fee: exactly 300,000 pays two of the three.
        assert_eq!(balance_health(299_999, 1_000_000, 100_000, 3), Health::Critical);
        assert_eq!(balance_health(300_000, 1_000_000, 100_000, 3), Health::Critical);
        assert_eq!(balance_health(300_001, 1_000_000, 100_000, 3), Health::Warning);
        assert_eq!(balance_health(999_999, 1_000_000, 100_000, 3), Health::Warning);
        assert_eq!(balance_health(1_000_000, 1_000_000, 100_000, 3), Health::Healthy);
        // No claimed session: more than one fee still has to be there for the next required proof.
        assert_eq!(balance_health(99_999, 0, 100_000, 0), Health::Critical);
        assert_eq!(balance_health(100_000, 0, 100_000, 0), Health::Critical);
        assert_eq!(balance_health(100_001, 0, 100_000, 0), Health::Healthy);
        // Without a proof fee nothing is owed.
        assert_eq!(balance_health(0, 0, 0, 3), Health::Healthy);
    }

    #[test]
    fn the_stake_is_measured_in_missed_proof_penalties() {
        assert_eq!(stake_health(1_000, 100, 10, 3), (Some(10), Health::Healthy));
        assert_eq!(stake_health(999, 100, 10, 3), (Some(9), Health::Warning));
        assert_eq!(stake_health(299, 100, 10, 3), (Some(2), Health::Critical));
        assert_eq!(stake_health(5, 0, 10, 3), (None, Health::Healthy), "no penalty");
    }
}
