//! The gas price claims and proofs are signed at: `transaction.gas_price`, raised to what the node takes
//! ([`crate::chain::fees`]), never above `transaction.max_gas_price`.
//!
//! Why raise it: a node refuses a tx whose fee is below its `minimum-gas-prices` × gas limit at CheckTx (code 13,
//! no fee paid) after Simulate accepted it, and sending the same fee at every block loses the claim when its
//! window closes. Why cap it: the price comes from the node (its config, its refusal text); a misconfigured or
//! hostile node must not be able to make the miner pay any fee it names. The cap is a price, not a fee per tx,
//! so a large proof (gas grows with its relay payloads) is never refused by it where a small claim would pass:
//! a missing proof is slashed.
//!
//! A session whose tx stayed in our node's mempool without any block including it (module `submit::resolve`:
//! its same bytes answered code 19 two blocks on) has its later txs of that kind signed at the cap: the
//! validators' minimum gas price may be above our node's, which then takes the tx at CheckTx and gossips it to
//! validators that refuse it, and the configured price is the likely cause.
//!
//! What a session's txs need beyond the shared price (its gas doublings after running out of gas, its price at
//! the cap after being stuck) is stored in its session record ([`SessionGas`], written with the record by module
//! `persist`, restored by module `restore`): kept in memory only, a restart or a raft/Redis leader change made the
//! next leader sign the session's one re-send at 1× the gas (out of gas again: a claim lost, a proof slashed) or
//! at a price validators had already passed over. The fees per proof of a supplier's last proof txs are stored too
//! (module `proof_fees`: the funds check's estimate, module `afford`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use num_rational::BigRational;
use serde::{Deserialize, Serialize};

use super::Miner;
use crate::chain::fees::{self, GasPrice, decimal};
use crate::chain::query::ChainClient;
use crate::chain::tx::{self, TxError};
use crate::miner::lifecycle::{SessionKey, TxKind};
use crate::protocol::wire;
use crate::telemetry::LogThrottle;

mod proof_fees;
pub(super) use proof_fees::ProofTxFees;
pub(super) use proof_fees::{decode as decode_proof_tx_fees, encode as encode_proof_tx_fees};

/// How long the node's minimum gas price is trusted before it is asked again (at the next submission): an
/// operator changes it only with a restart, and a refusal teaches the miner a higher price at once anyway.
const NODE_MINIMUM_TTL: Duration = Duration::from_secs(60);

/// How long a price learned from a refusal (code 13) is kept. Behind a load balancer the nodes can ask for
/// different minimums; once one refused, paying its price for a while costs less than a refusal per block.
const LEARNED_TTL: Duration = Duration::from_secs(600);

/// What the node side said, cached.
#[derive(Debug, Default)]
struct Learned {
    /// The node's minimum for the fee denom (`None`: it asks nothing in that denom) and when it was read.
    node: Option<(Option<BigRational>, Instant)>,
    /// A price a refusal named, and when.
    refused: Option<(BigRational, Instant)>,
}

/// The price to sign at, shared by every submission of the miner.
#[derive(Debug)]
pub(super) struct GasPricing {
    /// `transaction.gas_price` (`0.000001upokt`).
    configured: String,
    /// `transaction.max_gas_price` (`10upokt`).
    max: String,
    learned: Mutex<Learned>,
    /// Throttles the ERRORs of a node asking more than the cap or another denom (one per submission otherwise).
    error_log: LogThrottle,
    /// Throttles the WARNs of a node whose config cannot be read.
    query_log: LogThrottle,
    /// Per session, what its txs need beyond the shared price (gas doublings, the cap), and which sessions' records
    /// do not hold their latest [`SessionGas`] yet.
    sessions: Mutex<Sessions>,
    /// Per supplier: the fees per proof of its last proof txs, read from storage or signed since (module
    /// `proof_fees`).
    proof_tx_fees: ProofTxFees,
    /// The gas limit per message of the last claim tx signed: the funds check's proof gas estimate before any
    /// proof tx's fee is known (module `afford`).
    claim_gas_per_message: Mutex<Option<u64>>,
}

/// [`GasPricing::sessions`].
#[derive(Debug, Default)]
struct Sessions {
    gas: HashMap<SessionKey, SessionGas>,
    /// Sessions whose gas rose since their record was last written ([`GasPricing::gas_written`]).
    unwritten: HashSet<SessionKey>,
}

/// What a session's txs of one kind need beyond the shared price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KindGas {
    /// With a fixed `transaction.gas_limit`: how many times a tx of the session ran out of gas (code 11), in its
    /// block or at CheckTx (at most [`MAX_GAS_DOUBLINGS`], [`fixed_gas_limit`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub doublings: u32,
    /// A tx of the session was stuck in the mempool ([`GasPricing::stuck_in_mempool`]): signed at the cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_cap: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl KindGas {
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// A session's [`KindGas`] of claims and proofs, as its record stores it (field `gas`, left out while unset so
/// older binaries read and write the same record; a record without it reads as unset: 1× the gas, the price
/// the node takes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::miner::driver) struct SessionGas {
    #[serde(default, skip_serializing_if = "KindGas::is_unset")]
    pub claim: KindGas,
    #[serde(default, skip_serializing_if = "KindGas::is_unset")]
    pub proof: KindGas,
}

impl SessionGas {
    /// Whether nothing is noted (what a record without the field reads as).
    pub(in crate::miner::driver) fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    fn of(&self, kind: TxKind) -> &KindGas {
        match kind {
            TxKind::Claim => &self.claim,
            TxKind::Proof => &self.proof,
        }
    }

    fn of_mut(&mut self, kind: TxKind) -> &mut KindGas {
        match kind {
            TxKind::Claim => &mut self.claim,
            TxKind::Proof => &mut self.proof,
        }
    }
}

/// The price chosen for one tx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Price {
    /// Per gas unit.
    pub amount: BigRational,
    /// The fee's denomination (that of `transaction.gas_price`).
    pub denom: String,
}

impl GasPricing {
    pub(super) fn new(configured: &str, max: &str) -> Self {
        Self {
            configured: configured.to_string(),
            max: max.to_string(),
            learned: Mutex::new(Learned::default()),
            error_log: LogThrottle::new(Duration::from_secs(30)),
            query_log: LogThrottle::new(Duration::from_secs(30)),
            sessions: Mutex::new(Sessions::default()),
            proof_tx_fees: ProofTxFees::default(),
            claim_gas_per_message: Mutex::new(None),
        }
    }

    fn learned(&self) -> std::sync::MutexGuard<'_, Learned> {
        // Only plain values are written under the lock: a poisoned one still holds a usable state.
        self.learned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (configured price, cap, denom). The cap is never below the configured price (validated in the config;
    /// kept true here for callers that skip validation).
    fn bounds(&self) -> Result<(BigRational, BigRational, String), TxError> {
        let configured = tx::parse_gas_price(&self.configured)?;
        let max = tx::parse_gas_price(&self.max)?.max(configured.clone());
        Ok((configured, max, fees::gas_price_denom(&self.configured).to_string()))
    }

    /// `transaction.gas_price`: the lowest price a tx is signed at.
    pub(super) fn configured_price(&self) -> Result<Price, TxError> {
        let (configured, _, denom) = self.bounds()?;
        Ok(Price {
            amount: configured,
            denom,
        })
    }

    /// `transaction.max_gas_price`: the most the operator pays per gas unit.
    pub(super) fn max_price(&self) -> Result<Price, TxError> {
        let (_, max, denom) = self.bounds()?;
        Ok(Price { amount: max, denom })
    }

    /// The price to sign a tx of `kind` carrying `keys`' messages at: the cap once one of them had a tx stuck in
    /// the mempool ([`Self::stuck_in_mempool`]), else [`Self::price`].
    pub(super) async fn price_for(
        &self,
        chain: &ChainClient,
        kind: TxKind,
        keys: &[SessionKey],
    ) -> Result<Price, TxError> {
        if keys.iter().any(|key| self.at_cap(kind, key)) {
            self.max_price()
        } else {
            self.price(chain).await
        }
    }

    /// The price to sign the next tx at: the highest of `transaction.gas_price`, the node's minimum (read again
    /// every [`NODE_MINIMUM_TTL`]) and a price a recent refusal named, at most `transaction.max_gas_price`.
    /// The node's config failing to answer is not an error: the configured price is tried, and a refusal still
    /// names the price.
    pub(super) async fn price(&self, chain: &ChainClient) -> Result<Price, TxError> {
        let (configured, max, denom) = self.bounds()?;
        let stale = self
            .learned()
            .node
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= NODE_MINIMUM_TTL);
        if stale {
            match chain.minimum_gas_prices().await {
                Ok(prices) => {
                    let node = self.node_minimum(&prices, &denom);
                    self.learned().node = Some((node, Instant::now()));
                }
                Err(e) => {
                    // Asked again only after the TTL (a node that does not serve the query would otherwise cost a
                    // failed call per tx); what was read before stays in use, and a refusal still names the price.
                    let mut learned = self.learned();
                    let previous = learned.node.take().and_then(|(p, _)| p);
                    learned.node = Some((previous, Instant::now()));
                    drop(learned);
                    if let Some(suppressed) = self.query_log.admit() {
                        tracing::warn!(error = %e, suppressed, "cannot read the node's minimum gas price; pricing txs at transaction.gas_price");
                    }
                }
            }
        }
        let wanted = {
            let learned = self.learned();
            let node = learned.node.as_ref().and_then(|(p, _)| p.clone());
            let refused = learned
                .refused
                .as_ref()
                .filter(|(_, at)| at.elapsed() < LEARNED_TTL)
                .map(|(p, _)| p.clone());
            node.into_iter()
                .chain(refused)
                .fold(configured.clone(), BigRational::max)
        };
        if wanted > max
            && let Some(suppressed) = self.error_log.admit()
        {
            tracing::error!(
                    wanted = %decimal(&wanted),
                    max_gas_price = %self.max,
                    suppressed,
                    "the node asks a gas price above transaction.max_gas_price: txs are priced at the cap and the node \
                     will refuse them (claims and proofs will be lost); raise transaction.max_gas_price or use another node"
            );
        }
        Ok(Price {
            amount: wanted.min(max),
            denom,
        })
    }

    /// The node's minimum in the fee denom; logs an ERROR when it asks only for other denoms (no fee in ours can
    /// satisfy it).
    fn node_minimum(&self, prices: &[GasPrice], denom: &str) -> Option<BigRational> {
        let ours = prices.iter().find(|p| p.denom == denom).map(|p| p.amount.clone());
        if ours.is_none() && !prices.is_empty() {
            let node: Vec<String> = prices
                .iter()
                .map(|p| format!("{}{}", decimal(&p.amount), p.denom))
                .collect();
            if let Some(suppressed) = self.error_log.admit() {
                tracing::error!(
                    node_minimum = %node.join(","),
                    gas_price = %self.configured,
                    suppressed,
                    "the node takes fees only in other denominations than transaction.gas_price's: it will refuse \
                     every claim and proof; set transaction.gas_price in one of its denominations or use another node"
                );
            }
        }
        ours
    }

    /// Learns from a CheckTx refusal with code 13 of a tx that paid `fee_paid` for `gas_limit`: returns whether
    /// sending again at the price it names can succeed (a price in the fee denom, above what was paid, within the
    /// cap). The price is then used by every tx for [`LEARNED_TTL`].
    pub(super) fn learn_from_refusal(&self, raw_log: &str, gas_limit: u64, fee_paid: u128) -> bool {
        let Ok((_, max, denom)) = self.bounds() else {
            return false;
        };
        let Some(required) = fees::required_fees(raw_log) else {
            tracing::warn!(
                log = raw_log,
                "a code 13 refusal without a required fee that can be read"
            );
            return false;
        };
        let Some(&(_, fee)) = required.iter().find(|(d, _)| *d == denom) else {
            if let Some(suppressed) = self.error_log.admit() {
                tracing::error!(
                    log = raw_log,
                    gas_price = %self.configured,
                    suppressed,
                    "the node requires a fee in other denominations than transaction.gas_price's; set \
                     transaction.gas_price in one of them or use another node"
                );
            }
            return false;
        };
        if fee <= fee_paid {
            return false;
        }
        let Some(price) = fees::price_of_fee(fee, gas_limit) else {
            return false;
        };
        if price > max {
            if let Some(suppressed) = self.error_log.admit() {
                tracing::error!(
                    required_fee = fee,
                    gas_limit,
                    price = %decimal(&price),
                    max_gas_price = %self.max,
                    suppressed,
                    "the node requires a fee above transaction.max_gas_price; not sent again (the claim or proof will \
                     be lost if no node takes it); raise transaction.max_gas_price or use another node"
                );
            }
            return false;
        }
        self.learned().refused = Some((price, Instant::now()));
        true
    }
}

impl GasPricing {
    /// Notes the tx of `kind` for `supplier` signed just now with `gas_limit` and `fee` for `messages` messages:
    /// a proof tx's fee per proof is one of those the funds check's estimate for each proof still owed is the
    /// median of ([`Self::proof_tx_fees`]), and a claim tx's gas per message its gas estimate of a proof before one
    /// was signed.
    pub(super) fn note_signed(&self, kind: TxKind, supplier: &str, gas_limit: u64, fee: u128, messages: u64) {
        match kind {
            TxKind::Proof => self.proof_tx_fees.signed(supplier, fee / u128::from(messages.max(1))),
            TxKind::Claim => {
                let mut gas = self.claim_gas_per_message.lock().unwrap_or_else(|p| p.into_inner());
                *gas = Some(gas_limit / messages.max(1));
            }
        }
    }

    /// The suppliers' last fees per proof (module `proof_fees`).
    pub(super) fn proof_tx_fees(&self) -> &ProofTxFees {
        &self.proof_tx_fees
    }

    /// The gas limit per message of the last claim tx this process signed.
    pub(super) fn claim_gas_per_message(&self) -> Option<u64> {
        *self.claim_gas_per_message.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Only plain values are written under the lock: a poisoned one still holds a usable state.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the [`KindGas`] of `kind` of every session of `keys` by `change`; a session whose gas changed
    /// must have its record written again.
    fn note(&self, kind: TxKind, keys: &[SessionKey], change: impl Fn(&mut KindGas)) {
        let mut sessions = self.sessions();
        for key in keys {
            let gas = sessions.gas.entry(key.clone()).or_default();
            let before = *gas;
            change(gas.of_mut(kind));
            if *gas != before {
                sessions.unwritten.insert(key.clone());
            }
        }
    }

    /// The most any session of `keys` has of `of` for `kind`.
    fn most<T: Ord + Default>(&self, kind: TxKind, keys: &[SessionKey], of: impl Fn(&KindGas) -> T) -> T {
        let sessions = self.sessions();
        keys.iter()
            .filter_map(|key| sessions.gas.get(key).map(|gas| of(gas.of(kind))))
            .max()
            .unwrap_or_default()
    }

    /// Notes that a tx of `kind` carrying `keys`' messages ran out of gas (code 11): their next tx asks twice the
    /// per-message gas ([`fixed_gas_limit`]), up to [`MAX_GAS_DOUBLINGS`] times.
    pub(super) fn ran_out_of_gas(&self, kind: TxKind, keys: &[SessionKey]) {
        self.note(kind, keys, |gas| {
            gas.doublings = (gas.doublings + 1).min(MAX_GAS_DOUBLINGS)
        });
    }

    /// How many times the per-message gas of a tx of `kind` carrying `keys`' messages is doubled: the most any
    /// of them ran out of gas.
    pub(super) fn gas_doublings(&self, kind: TxKind, keys: &[SessionKey]) -> u32 {
        self.most(kind, keys, |gas| gas.doublings)
    }

    /// Notes that a tx of `kind` carrying `keys`' messages stayed in the node's mempool and no block included it:
    /// their txs of that kind are signed at `transaction.max_gas_price` from now on ([`Self::price_for`]).
    pub(super) fn stuck_in_mempool(&self, kind: TxKind, keys: &[SessionKey]) {
        self.note(kind, keys, |gas| gas.at_cap = true);
    }

    /// Whether `key`'s txs of `kind` are signed at the cap ([`Self::stuck_in_mempool`]).
    pub(super) fn at_cap(&self, kind: TxKind, key: &SessionKey) -> bool {
        self.most(kind, std::slice::from_ref(key), |gas| gas.at_cap)
    }

    /// Forgets the sessions that no longer send a tx of that kind (their gas doublings and their price at the cap).
    /// Their records keep what they hold: nothing reads it again for that kind.
    pub(super) fn retain_out_of_gas(&self, mut keep: impl FnMut(TxKind, &SessionKey) -> bool) {
        let mut sessions = self.sessions();
        sessions.gas.retain(|key, gas| {
            for kind in [TxKind::Claim, TxKind::Proof] {
                if !keep(kind, key) {
                    *gas.of_mut(kind) = KindGas::default();
                }
            }
            !gas.is_unset()
        });
        let Sessions { gas, unwritten } = &mut *sessions;
        unwritten.retain(|key| gas.contains_key(key));
    }

    /// What `key`'s record is to store.
    pub(in crate::miner::driver) fn session_gas(&self, key: &SessionKey) -> SessionGas {
        self.sessions().gas.get(key).copied().unwrap_or_default()
    }

    /// Takes what `key`'s record stores (a restart, a new leadership: the record is what the last leader noted).
    pub(super) fn restore_session_gas(&self, key: &SessionKey, gas: SessionGas) {
        let mut sessions = self.sessions();
        sessions.unwritten.remove(key);
        if gas.is_unset() {
            sessions.gas.remove(key);
        } else {
            sessions.gas.insert(key.clone(), gas);
        }
    }

    /// The sessions whose gas rose since their record was last written: written with the next records.
    pub(super) fn unwritten_gas(&self) -> Vec<SessionKey> {
        self.sessions().unwritten.iter().cloned().collect()
    }

    /// Whether `key`'s gas rose since its record was last written.
    pub(super) fn gas_unwritten(&self, key: &SessionKey) -> bool {
        self.sessions().unwritten.contains(key)
    }

    /// Forgets which sessions' gas is not written (leadership lost: the next leader goes by the records).
    pub(super) fn forget_unwritten(&self) {
        self.sessions().unwritten.clear();
    }

    /// Notes that `key`'s record was just written with [`Self::session_gas`].
    pub(super) fn gas_written(&self, key: &SessionKey) {
        self.sessions().unwritten.remove(key);
    }
}

/// How many times at most a session's per-message gas is doubled after its txs ran out of gas: 16 × the
/// configured `transaction.gas_limit`, a ceiling so a message that fails for another reason reported as out of gas
/// cannot raise the fee without bound (the price stays capped by `transaction.max_gas_price`).
pub(super) const MAX_GAS_DOUBLINGS: u32 = 4;

/// Bytes of margin on the signed draft's length in [`fixed_gas_limit`]: the final tx differs from the draft only
/// in its gas limit and fee amount (varints and a decimal string a few bytes longer at most).
pub(super) const SIZE_MARGIN_BYTES: u64 = 32;

/// The gas limit of a tx of `messages` messages signed with a fixed `transaction.gas_limit` (`per_message`), whose
/// signed draft is `tx_len` bytes long, after its sessions' txs ran out of gas `doublings` times.
///
/// Rule "fixed gas covers the tx": `per_message` × 2^`doublings` × `messages` for running the messages, plus
/// what the ante handler meters for the tx's size before anything else ([`TX_SIZE_GAS_PER_BYTE`] per byte of
/// ([`SIZE_MARGIN_BYTES`] +) `tx_len`, x/auth `TxSizeCostPerByte`). A proof carries relay payloads (up to
/// `max_tx_bytes`, ~1 MiB: ~10M gas of size alone): under a limit sized for a claim, a large proof was refused at
/// CheckTx (size gas over the limit, code 11) or ran out of gas in its block (fee paid) at every attempt with the
/// same limit, and the supplier was slashed for the missing proof. The size part makes the first; the doublings
/// after a code 11 (rule "out of gas doubles", [`GasPricing::ran_out_of_gas`]) the second converge.
pub(super) fn fixed_gas_limit(per_message: u64, messages: u64, doublings: u32, tx_len: usize) -> u64 {
    let per_message = per_message.saturating_mul(1u64 << doublings.min(MAX_GAS_DOUBLINGS));
    let size = u64::try_from(tx_len)
        .unwrap_or(u64::MAX)
        .saturating_add(SIZE_MARGIN_BYTES)
        .saturating_mul(TX_SIZE_GAS_PER_BYTE);
    per_message.saturating_mul(messages.max(1)).saturating_add(size)
}

/// x/auth `DefaultTxSizeCostPerByte`: the gas `ConsumeGasForTxSizeDecorator` meters per tx byte before the fee is
/// deducted (the auth param `tx_size_cost_per_byte`; not read from the chain, whose genesis is assumed to keep the
/// default, as the simulator's `TX_SIZE_GAS_PER_BYTE` does).
pub(super) const TX_SIZE_GAS_PER_BYTE: u64 = 10;

/// Whether a node's answer (or a block's result) is the SDK's out of gas (`ErrOutOfGas`, code 11 of codespace
/// `sdk`).
pub(super) fn is_out_of_gas(code: u32, codespace: &str) -> bool {
    code == 11 && codespace == "sdk"
}

/// Whether a node's answer to a broadcast refuses the tx's fee as below its minimum gas price (CheckTx code 13
/// of the SDK's codespace; no fee paid).
pub(super) fn is_fee_refusal(response: &wire::TxResponse) -> bool {
    response.code == fees::INSUFFICIENT_FEE_CODE && response.codespace == "sdk"
}

impl Miner {
    /// [`GasPricing::learn_from_refusal`] for a refusal of `supplier`'s tx, counted in
    /// `ha_miner_fee_refusals_total{result}` by whether the tx is sent again at the fee it names.
    pub(super) fn learn_from_fee_refusal(&self, supplier: &str, raw_log: &str, gas_limit: u64, fee_paid: u128) -> bool {
        let resend = self.gas_pricing.learn_from_refusal(raw_log, gas_limit, fee_paid);
        self.count_fee_refusal(supplier, resend);
        resend
    }

    /// Counts the answer to a re-send at the learned fee when a node refused its fee again: it is not sent again
    /// within this attempt.
    pub(super) fn count_resend_fee_refusal(&self, supplier: &str, response: &wire::TxResponse) {
        if is_fee_refusal(response) {
            self.count_fee_refusal(supplier, false);
        }
    }

    fn count_fee_refusal(&self, supplier: &str, resent: bool) {
        if let Some(m) = &self.metrics {
            m.fee_refusals
                .with_label_values(&[supplier, if resent { "resent" } else { "not_resent" }])
                .inc();
        }
    }
}

/// The fee Simulate sees on the draft tx.
///
/// Not zero: cosmos-sdk's `DeductFeeDecorator` skips the fee transfer when the fee is zero, so a draft with a zero
/// fee is simulated without the bank send's gas (account and balance reads and writes) that the real tx uses,
/// and with a low `gas_adjustment` the real tx then runs out of gas in its block: the claim fails and its fee
/// is paid. The smallest unit of the fee denom is enough: the decorator then runs the whole transfer, and
/// the gas of the transfer depends on the amount only through a few more digits in the tx and the balances
/// (tens of gas against the 10 % minimum headroom of `transaction.gas_adjustment`). A larger placeholder, such as
/// the fee of the draft's gas limit, would make Simulate fail for a supplier that can afford the real fee but not
/// the placeholder. Zero only when the price is zero: then the real tx pays nothing either and skips the transfer.
pub(super) fn simulation_fee(price: &BigRational) -> u128 {
    use num_traits::Zero as _;
    if price.is_zero() { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session_id: &str) -> SessionKey {
        SessionKey {
            supplier: "pokt1s".into(),
            session_id: session_id.into(),
        }
    }

    #[test]
    fn logs_print_prices_as_short_decimals() {
        assert_eq!(decimal(&tx::parse_gas_price("0.000001").unwrap()), "0.000001");
        assert_eq!(decimal(&tx::parse_gas_price("10").unwrap()), "10");
        assert_eq!(
            decimal(&fees::price_of_fee(256, 170_001).unwrap()),
            "0.001505873494861795"
        );
    }

    #[test]
    fn a_refusal_is_learned_only_in_our_denom_above_what_was_paid_and_within_the_cap() {
        let pricing = GasPricing::new("0.000001upokt", "10upokt");
        let log = |fee: &str| format!("insufficient fees; got: 1upokt required: {fee}: insufficient fee");
        assert!(!pricing.learn_from_refusal(&log("5uatom"), 100_000, 1), "another denom");
        assert!(
            !pricing.learn_from_refusal(&log("1upokt"), 100_000, 1),
            "not more than paid"
        );
        assert!(
            !pricing.learn_from_refusal(&log("1000001upokt"), 100_000, 1),
            "above 10upokt per gas"
        );
        assert!(!pricing.learn_from_refusal("out of gas", 100_000, 1));
        assert!(pricing.learned().refused.is_none());
        assert!(pricing.learn_from_refusal(&log("100000upokt"), 100_000, 1));
        let (price, _) = pricing.learned().refused.clone().unwrap();
        assert_eq!(price, tx::parse_gas_price("1").unwrap());
    }

    #[test]
    fn a_proofs_tx_fee_is_its_share_of_the_proof_tx() {
        let pricing = GasPricing::new("0.000001upokt", "10upokt");
        assert_eq!(pricing.proof_tx_fees().estimate("pokt1s"), None, "none signed yet");
        pricing.note_signed(TxKind::Proof, "pokt1s", 3_000, 900, 3);
        assert_eq!(pricing.proof_tx_fees().estimate("pokt1s"), Some(300));
        assert_eq!(pricing.proof_tx_fees().to_store("pokt1s"), Some((vec![300], 1)));
        pricing.note_signed(TxKind::Claim, "pokt1s", 300_000, 30, 3);
        assert_eq!(pricing.claim_gas_per_message(), Some(100_000));
        assert_eq!(
            pricing.proof_tx_fees().to_store("pokt1s"),
            Some((vec![300], 1)),
            "a claim is no proof"
        );
    }

    /// A session's gas is written with its record only once noted, older records (without the field) read as
    /// unset, and what is noted reads back as it was.
    #[test]
    fn a_sessions_gas_is_stored_only_once_noted_and_old_records_read_as_unset() {
        let pricing = GasPricing::new("0.000001upokt", "10upokt");
        assert_eq!(
            serde_json::to_value(SessionGas::default()).unwrap(),
            serde_json::json!({})
        );
        let old: SessionGas = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(old.is_unset());
        pricing.ran_out_of_gas(TxKind::Proof, &[key("a")]);
        pricing.stuck_in_mempool(TxKind::Claim, &[key("a")]);
        assert_eq!(pricing.unwritten_gas(), vec![key("a")]);
        let gas = pricing.session_gas(&key("a"));
        assert_eq!(
            serde_json::to_value(gas).unwrap(),
            serde_json::json!({"claim": {"at_cap": true}, "proof": {"doublings": 1}})
        );
        pricing.gas_written(&key("a"));
        assert!(pricing.unwritten_gas().is_empty());
        let other = GasPricing::new("0.000001upokt", "10upokt");
        other.restore_session_gas(
            &key("a"),
            serde_json::from_value(serde_json::to_value(gas).unwrap()).unwrap(),
        );
        assert_eq!(other.gas_doublings(TxKind::Proof, &[key("a")]), 1);
        assert!(other.at_cap(TxKind::Claim, &key("a")));
        assert!(other.unwritten_gas().is_empty(), "restored as stored");
    }

    #[test]
    fn a_fixed_limit_covers_the_size_gas_and_doubles_after_out_of_gas() {
        // One claim, 400 bytes: 100,000 + 10 × (400 + 32).
        assert_eq!(fixed_gas_limit(100_000, 1, 0, 400), 104_320);
        // Three proofs of 20 KB together: 300,000 + 10 × 20,032.
        assert_eq!(fixed_gas_limit(100_000, 3, 0, 20_000), 500_320);
        // After two out-of-gas results: 4 × per message; the doublings are capped.
        assert_eq!(fixed_gas_limit(100_000, 1, 2, 0), 400_320);
        assert_eq!(fixed_gas_limit(100_000, 1, 9, 0), 1_600_320);
        let pricing = GasPricing::new("0.000001upokt", "10upokt");
        pricing.ran_out_of_gas(TxKind::Proof, &[key("a")]);
        pricing.ran_out_of_gas(TxKind::Proof, &[key("a"), key("b")]);
        assert_eq!(pricing.gas_doublings(TxKind::Proof, &[key("b"), key("a")]), 2);
        assert_eq!(pricing.gas_doublings(TxKind::Proof, &[key("b")]), 1);
        assert_eq!(pricing.gas_doublings(TxKind::Claim, &[key("a")]), 0);
        for _ in 0..10 {
            pricing.ran_out_of_gas(TxKind::Proof, &[key("a")]);
        }
        assert_eq!(pricing.gas_doublings(TxKind::Proof, &[key("a")]), MAX_GAS_DOUBLINGS);
        pricing.retain_out_of_gas(|_, k| k.session_id != "a");
        assert_eq!(pricing.gas_doublings(TxKind::Proof, &[key("a")]), 0);
    }

    #[test]
    fn a_session_whose_tx_was_stuck_is_priced_at_the_cap_until_it_is_done() {
        let pricing = GasPricing::new("0.000001upokt", "0.001upokt");
        pricing.stuck_in_mempool(TxKind::Claim, &[key("a")]);
        assert!(pricing.at_cap(TxKind::Claim, &key("a")));
        assert!(!pricing.at_cap(TxKind::Proof, &key("a")), "its proof keeps its price");
        assert!(!pricing.at_cap(TxKind::Claim, &key("b")));
        assert_eq!(
            pricing.max_price().unwrap(),
            Price {
                amount: tx::parse_gas_price("0.001").unwrap(),
                denom: "upokt".into()
            }
        );
        pricing.stuck_in_mempool(TxKind::Proof, &[key("a")]);
        pricing.retain_out_of_gas(|kind, k| k.session_id != "a" || kind == TxKind::Proof);
        assert!(!pricing.at_cap(TxKind::Claim, &key("a")), "forgotten once done");
        assert!(pricing.at_cap(TxKind::Proof, &key("a")), "its proofs still at the cap");
    }

    #[test]
    fn the_simulated_fee_is_not_zero_unless_the_price_is() {
        assert_eq!(simulation_fee(&tx::parse_gas_price("0.000001").unwrap()), 1);
        assert_eq!(simulation_fee(&tx::parse_gas_price("1").unwrap()), 1);
        assert_eq!(simulation_fee(&tx::parse_gas_price("0").unwrap()), 0);
    }
}
