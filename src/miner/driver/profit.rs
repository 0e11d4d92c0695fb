//! Claims not worth their cost are not sent (`transaction.skip_unprofitable_claims`).
//!
//! Why: a claim costs its tx fee for sure, and it may oblige a proof: at or above `proof_requirement_threshold`
//! always, below it with probability `proof_request_probability` (spec §6.3). A proof costs the chain's
//! `proof_submission_fee` (x/proof `SubmitProof`, §5.4) plus its own tx fee, and a required proof cannot be left
//! out (`proof_missing_penalty`). So a claim worth less than
//! `claim tx fee + P(proof required) × (proof_submission_fee + proof tx fee)` loses the supplier money on average
//! (with a 1 POKT fee and a probability of 0.25, every claim below 0.25 POKT). poktroll's relay miner skips only
//! claims worth at most `ClaimAndProofGasCost` (2 uPOKT, `payableProofsSessionTrees`,
//! pkg/relayer/session/claim.go), ignoring the proof; that rule is kept as a floor.
//!
//! Decided at claim time, from the claim message itself: its root's sum is what the trie holds once final, and
//! its value is the claimed uPOKT (§6.3.1) the chain computes (the same value the funds check orders by, module
//! `afford`). The cost uses what the miner knows then:
//! - the proof params at the current height (the chain decides with its live params; a later change cannot be
//!   foreseen);
//! - the tx fee of one claim, at `transaction.gas_price` (the lowest price a tx is signed at; a node's higher
//!   minimum or a price a refusal named may be passing, and a claim skipped is gone for good): with a fixed gas limit
//!   (`transaction.gas_limit`) a tx of n messages is signed for n × the limit, so one message's share is exactly
//!   `gas_limit × price`; with simulated gas, the fee of a tx carrying one of the batch's claims alone (a draft
//!   simulated once per batch, × `gas_adjustment`, as `submit` signs it; the claims of a batch differ only in
//!   their header's ids). That single-message fee is the conservative choice: in a batch a claim's share of the
//!   ante gas (signature, fee transfer) is smaller, so a claim skipped for it can pay a little in a batch, but
//!   the miner cannot know the batch a re-send goes in;
//! - the proof's tx fee taken as the claim's: a proof tx carries the same header plus the proof (a relay, side
//!   nodes), so this is on the low side;
//! - a read that fails (params, price, a Simulate the node refuses) counts that term as 0 and a value that
//!   cannot be read skips nothing: the estimate only errs towards claiming, so a failed read never costs a
//!   claim. poktroll's 2 uPOKT floor holds in every case.
//!
//! Only a first send whose claim never left is skipped (`SessionRecord::claim_built` unset, no earlier send
//! recorded), of a session whose claim window opened after this process began to lead: once a claim may be on
//! chain its proof may be owed, and not claiming again saves nothing. A session inherited from another leader
//! (a failover, a restart) is claimed: its record says no claim left, but a store that lost an acknowledged
//! write (a Redis failover without `wait_replicas`) may say so of a claim on chain, whose proof would then be
//! missing (slashed). The session then ends without a claim (state `Discarded`, its trie pruned, a tombstone
//! kept like any session with relays), logged at DEBUG with its value and expected cost and in one WARN per
//! supplier and block with their count and total value. It is not counted as lost revenue: not claiming it is
//! the larger income on average.
//!
//! Counted in `ha_miner_claims_skipped_total{reason="unprofitable"}` and, by its value,
//! `ha_miner_claims_skipped_upokt_total`, by the engine's report ([`Command::RecordClaimSkipped`]), which the
//! driver runs once the record saying the session is `Discarded` is stored (lessons.md: money metrics must not
//! lie). Why not when the skip is decided: a record write refused then (fenced: another instance leads; or a
//! failed write and a deposal before its retry) leaves the stored record `Claiming`, the next leader claims the
//! session (inherited, it is never skipped), and the fleet reported it both skipped and claimed.
//!
//! [`Command::RecordClaimSkipped`]: crate::miner::lifecycle::Command::RecordClaimSkipped

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One as _, Zero as _};

use super::Miner;
use super::balance::{DENOM, upokt};
use crate::config::SkipUnprofitableClaims;
use crate::miner::lifecycle::{Event, SessionKey, Step};
use crate::protocol::wire;

/// The reason label of skipped unprofitable claims in `ha_miner_claims_skipped_total`.
pub(super) const UNPROFITABLE: &str = "unprofitable";

/// poktroll's `ClaimAndProofGasCost`: a claim worth at most this many uPOKT is never sent.
pub(super) const POKTROLL_MIN_CLAIM_UPOKT: u128 = 2;

/// What a claim may cost, from the chain's proof params and the tx fee estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClaimCosts {
    /// One claim message's tx fee (0 when unknown: simulated gas).
    pub claim_tx_fee: u128,
    /// One proof message's tx fee (0 when unknown).
    pub proof_tx_fee: u128,
    /// `proof_submission_fee`.
    pub proof_submission_fee: u128,
    /// `proof_request_probability` as an exact rational in [0, 1].
    pub probability: BigRational,
    /// `proof_requirement_threshold` (`None`: not set in uPOKT, no claim is always proven).
    pub threshold: Option<u128>,
}

impl ClaimCosts {
    /// The chance that a claim worth `claimed_upokt` must be proven (spec §6.3): 1 at or above the threshold,
    /// else the request probability.
    pub fn proof_probability(&self, claimed_upokt: u128) -> BigRational {
        if self.threshold.is_some_and(|t| claimed_upokt >= t) {
            BigRational::one()
        } else {
            self.probability.clone()
        }
    }

    /// The claim's expected cost: its tx fee plus the proof's fees weighted by the chance it is required.
    pub fn expected_cost(&self, claimed_upokt: u128) -> BigRational {
        let proof =
            BigRational::from_integer(BigInt::from(self.proof_submission_fee) + BigInt::from(self.proof_tx_fee));
        BigRational::from_integer(BigInt::from(self.claim_tx_fee)) + self.proof_probability(claimed_upokt) * proof
    }
}

/// Whether a claim worth `claimed_upokt` is not sent under `policy` (`costs`: `None` when they could not be
/// read, then only poktroll's floor applies).
pub(super) fn unprofitable(policy: SkipUnprofitableClaims, claimed_upokt: u128, costs: Option<&ClaimCosts>) -> bool {
    match policy {
        SkipUnprofitableClaims::Off => false,
        SkipUnprofitableClaims::Poktroll => claimed_upokt <= POKTROLL_MIN_CLAIM_UPOKT,
        SkipUnprofitableClaims::ExpectedCost => {
            claimed_upokt <= POKTROLL_MIN_CLAIM_UPOKT
                || costs.is_some_and(|c| {
                    BigRational::from_integer(BigInt::from(claimed_upokt)) <= c.expected_cost(claimed_upokt)
                })
        }
    }
}

/// `proof_request_probability` (a float64 param) as an exact rational, read as the chain's params print it: the
/// shortest decimal that round-trips the `f64` (as `crate::protocol::inflation` reads its float param), so 0.25
/// is 1/4 and 0.1 is 1/10. Clamped to [0, 1]; NaN reads as 0, as the chain's `sample <= NaN` never requires a proof.
pub(super) fn probability_of(value: f64) -> BigRational {
    if value.is_nan() || value <= 0.0 {
        return BigRational::zero();
    }
    if value >= 1.0 {
        return BigRational::one();
    }
    // Rust's `Display` of an f64 never uses an exponent, so this is a plain decimal.
    crate::chain::tx::parse_gas_price(&value.to_string())
        .ok()
        .map_or_else(BigRational::zero, |p| p.min(BigRational::one()))
}

/// The uPOKT display of an exact cost, rounded up to a whole uPOKT (for logs).
fn ceil_upokt(value: &BigRational) -> String {
    value.ceil().to_integer().to_string()
}

impl Miner {
    /// Takes out of `messages` (one supplier's claims) those not worth their cost under
    /// `transaction.skip_unprofitable_claims` (module docs): each is logged and ended by the engine
    /// (`Event::ClaimSkipped`), which reports it once its record is stored. Returns the messages to send.
    pub(super) async fn without_unprofitable(
        &mut self,
        supplier: &str,
        messages: Vec<(SessionKey, wire::Any)>,
        mut step: Step,
    ) -> (Step, Vec<(SessionKey, wire::Any)>) {
        if self.claim_policy == SkipUnprofitableClaims::Off || messages.is_empty() {
            return (step, messages);
        }
        let height = self.engine.height();
        let leading_since = self.leading_since;
        // A first send of a session whose claim window opened while this process led: no other instance can
        // have claimed it, whatever storage lost (module docs).
        let first_send = |engine: &crate::miner::lifecycle::Engine, key: &SessionKey| {
            engine.session(key).is_some_and(|r| {
                r.claim_never_left(height) && leading_since.is_some_and(|since| since < r.schedule.claim_open)
            })
        };
        let sample = messages
            .iter()
            .find(|(key, _)| first_send(&self.engine, key))
            .map(|(_, message)| message.clone());
        let Some(sample) = sample else {
            return (step, messages);
        };
        let costs = match self.claim_policy {
            SkipUnprofitableClaims::ExpectedCost => self.claim_costs(supplier, &sample).await,
            _ => None,
        };
        let mut kept = Vec::with_capacity(messages.len());
        let mut skipped = Vec::new();
        for (key, message) in messages {
            let value = if first_send(&self.engine, &key) {
                self.claim_value(&key, &message).await
            } else {
                None
            };
            match value {
                Some(value) if unprofitable(self.claim_policy, u128::from(value), costs.as_ref()) => {
                    skipped.push((key, value));
                }
                _ => kept.push((key, message)),
            }
        }
        if skipped.is_empty() {
            return (step, kept);
        }
        for (key, value) in &skipped {
            let service = self
                .engine
                .session(key)
                .map(|r| r.service_id.clone())
                .unwrap_or_default();
            let value = u128::from(*value);
            let (cost, probability) = match &costs {
                Some(c) => (
                    ceil_upokt(&c.expected_cost(value)),
                    crate::chain::fees::decimal(&c.proof_probability(value)),
                ),
                None => (POKTROLL_MIN_CLAIM_UPOKT.to_string(), "unknown".to_string()),
            };
            tracing::debug!(
                supplier,
                session = key.session_id,
                service,
                claimed_upokt = %value,
                expected_cost_upokt = %cost,
                proof_probability = %probability,
                "claim not worth its expected cost: not sent"
            );
        }
        // One line per supplier and block (thousands of small sessions can end together); each at DEBUG.
        tracing::warn!(
            supplier,
            sessions = skipped.len(),
            claimed_upokt = %skipped.iter().map(|(_, v)| u128::from(*v)).sum::<u128>(),
            largest_upokt = %skipped.iter().map(|(_, v)| *v).max().unwrap_or(0),
            policy = ?self.claim_policy,
            "sessions whose claim is worth at most what it is expected to cost (its tx fee, and the proof fees \
             weighted by the chance a proof is required): not claimed (transaction.skip_unprofitable_claims; each \
             at DEBUG)"
        );
        step.merge(self.engine.handle(Event::ClaimSkipped { claims: skipped }));
        (step, kept)
    }

    /// Counts `key`'s claim, worth `value_upokt`, as skipped unprofitable (the engine's
    /// [`Command::RecordClaimSkipped`], run once the record that ends the session is stored: module docs).
    ///
    /// [`Command::RecordClaimSkipped`]: crate::miner::lifecycle::Command::RecordClaimSkipped
    pub(super) fn report_claim_skipped(&self, key: &SessionKey, service: &str, value_upokt: u64) {
        if let Some(m) = &self.metrics {
            let labels = [key.supplier.as_str(), service, UNPROFITABLE];
            m.claims_skipped.with_label_values(&labels).inc();
            m.claims_skipped_upokt.with_label_values(&labels).inc_by(value_upokt);
        }
    }

    /// The claimed uPOKT of a claim message (§6.3.1: its root's sum, at the session start's params); `None` when
    /// the message or a chain read needed to value it fails.
    async fn claim_value(&self, key: &SessionKey, message: &wire::Any) -> Option<u64> {
        use prost::Message as _;
        let claim = wire::MsgCreateClaim::decode(message.value.as_slice()).ok()?;
        let (sum, _) = crate::smst::hash::root_sum_count(&claim.root_hash)?;
        let record = self.engine.session(key)?;
        let (service, end) = (record.service_id.clone(), record.schedule.session_end);
        self.upokt(&service, end, sum).await
    }

    /// The claim costs at the current height (module docs), the tx fee from `sample`, one of the batch's claim
    /// messages; `None` (logged) when the proof params cannot be read.
    async fn claim_costs(&mut self, supplier: &str, sample: &wire::Any) -> Option<ClaimCosts> {
        let params = match self.block_proof_params().await {
            Ok(params) => params,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the proof params: claims are checked against poktroll's floor only");
                return None;
            }
        };
        let tx_fee = self.one_claim_tx_fee(supplier, sample).await;
        Some(ClaimCosts {
            claim_tx_fee: tx_fee,
            proof_tx_fee: tx_fee,
            proof_submission_fee: upokt(params.proof_submission_fee.as_ref()).unwrap_or(0),
            probability: probability_of(params.proof_request_probability),
            threshold: upokt(params.proof_requirement_threshold.as_ref()),
        })
    }
}

impl Miner {
    /// The fee of one claim message (module docs): `gas_limit × price` with a fixed gas limit, else the fee of a
    /// tx carrying `sample` alone, simulated; 0 when the price is not in uPOKT or a read or the Simulate fails.
    async fn one_claim_tx_fee(&self, supplier: &str, sample: &wire::Any) -> u128 {
        // `transaction.gas_price`, the lowest price a tx is signed at: a node's higher minimum or a price a refusal
        // named can be passing (a spike), and a claim skipped for it is gone for good.
        let price = match self.gas_pricing.configured_price() {
            Ok(price) if price.denom == DENOM && !price.amount.is_zero() => price,
            _ => return 0,
        };
        let gas = if self.config.gas_limit != 0 {
            self.config.gas_limit
        } else {
            match self.simulated_claim_gas(supplier, sample, &price).await {
                Ok(gas) => gas,
                Err(e) => {
                    tracing::debug!(supplier, error = %e, "cannot simulate a claim for its fee: counted as 0");
                    return 0;
                }
            }
        };
        crate::chain::tx::fee_for_gas(&price.amount, gas).unwrap_or(0)
    }

    /// The gas limit `submit` would sign a tx carrying `sample` alone with: a draft (unordered: it takes no
    /// sequence and no nonce of the signer's; the smallest non-zero fee, as `submit` simulates) simulated,
    /// × `gas_adjustment`.
    async fn simulated_claim_gas(
        &self,
        supplier: &str,
        sample: &wire::Any,
        price: &super::fees::Price,
    ) -> Result<u64, String> {
        use crate::chain::tx;
        let key = self.signers.get(supplier).ok_or("no key")?;
        let account = self.chain.account(supplier).await.map_err(|e| e.to_string())?;
        let block = self.chain.tip().await.map_err(|e| e.to_string())?;
        let block_time = tx::Timestamp {
            seconds: block.time.seconds,
            nanos: block.time.nanos,
        };
        let plan = tx::TxPlan {
            messages: vec![sample.clone()],
            memo: String::new(),
            gas_limit: 1_000_000,
            fee_amount: super::fees::simulation_fee(&price.amount),
            fee_denom: price.denom.clone(),
            ordering: tx::Ordering::unordered(block_time, self.config.tx_ttl_secs),
            chain_id: self.config.chain_id.clone(),
            account_number: account.account_number,
        };
        let draft = tx::build_signed_tx(key, &plan).map_err(|e| e.to_string())?;
        let gas = self.chain.simulate(draft.tx_bytes).await.map_err(|e| e.to_string())?;
        Ok(tx::gas_limit_from_simulation(gas, self.config.gas_adjustment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratio(n: i64, d: i64) -> BigRational {
        BigRational::new(BigInt::from(n), BigInt::from(d))
    }

    fn costs(
        claim_tx_fee: u128,
        proof_tx_fee: u128,
        fee: u128,
        probability: f64,
        threshold: Option<u128>,
    ) -> ClaimCosts {
        ClaimCosts {
            claim_tx_fee,
            proof_tx_fee,
            proof_submission_fee: fee,
            probability: probability_of(probability),
            threshold,
        }
    }

    #[test]
    fn the_probability_param_is_read_as_its_shortest_decimal() {
        assert_eq!(probability_of(0.25), ratio(1, 4));
        assert_eq!(probability_of(0.1), ratio(1, 10));
        assert_eq!(probability_of(0.3), ratio(3, 10));
        assert_eq!(probability_of(1.0), ratio(1, 1));
        assert_eq!(probability_of(0.0), ratio(0, 1));
        assert_eq!(probability_of(1.5), ratio(1, 1));
        assert_eq!(probability_of(-0.5), ratio(0, 1));
        assert_eq!(probability_of(f64::NAN), ratio(0, 1));
        assert_eq!(probability_of(f64::INFINITY), ratio(1, 1));
        assert_eq!(probability_of(1e-7), ratio(1, 10_000_000));
    }

    #[test]
    fn the_expected_cost_is_the_claim_fee_plus_the_weighted_proof_fees() {
        // 1 POKT proof fee at p = 0.25: 250,000 uPOKT, exactly.
        let c = costs(0, 0, 1_000_000, 0.25, Some(20_000_000));
        assert_eq!(c.expected_cost(1_000), ratio(250_000, 1));
        // Tx fees: 7 + 0.1 × (1,000 + 7) = 107.7, not rounded.
        let c = costs(7, 7, 1_000, 0.1, None);
        assert_eq!(c.expected_cost(1), ratio(1077, 10));
        // p = 0.3 is 3/10, not the f64 0.299999…: 0.3 × 10 = 3 exactly.
        let c = costs(0, 0, 10, 0.3, None);
        assert_eq!(c.expected_cost(1), ratio(3, 1));
    }

    #[test]
    fn at_or_above_the_threshold_a_proof_is_certain() {
        let c = costs(5, 5, 1_000, 0.25, Some(4_000));
        assert_eq!(c.proof_probability(3_999), ratio(1, 4));
        assert_eq!(c.proof_probability(4_000), ratio(1, 1));
        assert_eq!(c.expected_cost(3_999), ratio(5 * 4 + 1_005, 4));
        assert_eq!(c.expected_cost(4_000), ratio(1_010, 1));
        // Without a threshold the probability holds at any value.
        assert_eq!(costs(0, 0, 1_000, 0.25, None).proof_probability(u128::MAX), ratio(1, 4));
    }

    #[test]
    fn a_claim_is_skipped_when_worth_at_most_its_expected_cost() {
        use SkipUnprofitableClaims::*;
        let c = costs(0, 0, 1_000_000, 0.25, Some(20_000_000));
        assert!(unprofitable(ExpectedCost, 250_000, Some(&c)), "equal: no gain, skipped");
        assert!(!unprofitable(ExpectedCost, 250_001, Some(&c)));
        assert!(unprofitable(ExpectedCost, 1, Some(&c)));
        // At the threshold the whole fee is expected: 20 POKT > 1 POKT, claimed.
        assert!(!unprofitable(ExpectedCost, 20_000_000, Some(&c)));
        // A threshold below the fee: worth 900,000 ≥ threshold 500,000, so the 1,000,000 fee is certain.
        let low = costs(0, 0, 1_000_000, 0.25, Some(500_000));
        assert!(unprofitable(ExpectedCost, 900_000, Some(&low)));
        assert!(
            !unprofitable(ExpectedCost, 400_000, Some(&low)),
            "below: 250,000 expected"
        );
        // poktroll's floor holds whatever the costs, or without them.
        let free = costs(0, 0, 0, 0.0, None);
        assert!(unprofitable(ExpectedCost, 2, Some(&free)));
        assert!(!unprofitable(ExpectedCost, 3, Some(&free)));
        assert!(unprofitable(ExpectedCost, 2, None));
        assert!(!unprofitable(ExpectedCost, 3, None));
        // poktroll's rule alone ignores the proof; off claims everything.
        assert!(!unprofitable(Poktroll, 3, Some(&c)));
        assert!(unprofitable(Poktroll, 2, Some(&c)));
        assert!(!unprofitable(Off, 0, Some(&c)));
    }
}
