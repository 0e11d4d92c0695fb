//! What a supplier's balance can pay for: claims it could not prove are held back, and the most valuable
//! sessions go first.
//!
//! Why: every required proof costs the chain's `proof_submission_fee` on top of its tx fee, paid from the
//! supplier operator's balance (poktroll x/proof `SubmitProof`). A claim whose proof the account cannot pay for
//! is worse than no claim: if the chain then requires its proof (always above `proof_requirement_threshold`,
//! else with `proof_request_probability`, spec §6.3), the proof is refused for funds, the claim expires unpaid
//! and the supplier's stake is slashed by `proof_missing_penalty`. poktroll's own relay miner therefore claims
//! only the sessions whose proof fees its balance covers, most rewarding first (`payableProofsSessionTrees`,
//! pkg/relayer/session/claim.go). We do the same, with these differences in the supplier's favour:
//! - the balance first keeps the proof fees of the supplier's sessions already claimed (sent, on chain with the
//!   requirement unknown, or proving): poktroll counts only the batch at hand, so two sessions' batches can each
//!   take the same funds (the funds monitor's critical level, module `balance`, reserves the same proof fees,
//!   without the tx fees below);
//! - each proof's tx fee counts too: the ante handler takes it before x/proof checks the balance against the proof
//!   fee, and poktroll counts the proof fee alone. It is estimated as the median fee per proof of the supplier's
//!   last proof txs (module `fees::proof_fees`), stored (KV `miner:proof_tx_fee:<supplier>`) so a restarted
//!   process or a new leader reserves the same; before any is known, from the gas a proof of typical size asks
//!   ([`Miner::proof_tx_fee_estimate`]);
//! - the supplier's txs that may still land are paid first: a claim or proof tx kept since it left (module
//!   `submit::kept`: its bytes stored, so its fee is known) while every session it carries still sends (one that
//!   moved on shows the tx landed, or its window closed). The balance read does not show them until a block
//!   includes them, and when windows overlap (a batch held for funds sent a block after its siblings, sessions of
//!   several heights) they take funds the new claims' proofs were counted on. A pending proof tx's sessions already
//!   reserve a proof each (they are owed); its actual fee counts where it is above that ([`PendingTx`]); a pending
//!   claim tx's fee was counted nowhere;
//! - a claim held back is not dropped: it is a send that never left (`TxOutcome::NotSent`, the trie not frozen),
//!   tried again at every block while its window allows, so an operator who tops the account up in the claim
//!   window still gets it claimed. Held-back sessions are counted once each in
//!   `ha_miner_claims_skipped_total{reason="insufficient_funds"}` (the Go miner's name) and logged at ERROR.
//!
//! Proofs are not held back here (a proof not sent is a slash for sure), but a proof tx carries only the proofs
//! the balance pays after the tx's real fee (module `submit::funds`: the rest wait for a top-up, tried again at
//! every block of their window), and, like claims, they go most valuable first, so when a batch is refused for the message the
//! balance no longer covers (it names the message, and the rest is sent again without it), the sessions that
//! land are the ones worth most. Value is the session's claimed uPOKT (§6.3.1: its compute units, scaled by
//! the service's relay difficulty, at the session start's `compute_units_to_tokens_multiplier`).
//!
//! The balance read is the spendable one (bank `SpendableBalanceByDenom`, [`ChainClient::spendable_balance`]), in
//! this check and the proof txs' (module `submit::funds`): the ante handler and x/proof take fees from what the
//! account can spend, and a vesting account's locked coins, counted in its total, pay for nothing. A node that does
//! not serve that query is asked the total (warned once).
//!
//! A balance or params read that fails holds nothing back (logged): the node will say itself whether it takes
//! the txs, and a failed read must not cost claims.
//!
//! [`ChainClient::spendable_balance`]: crate::chain::query::ChainClient::spendable_balance

use std::cmp::Reverse;
use std::time::Duration;

use super::balance::{self, DENOM};
use super::{Miner, MinerError, fees};
use crate::miner::lifecycle::{SessionKey, State, Step, TxKind, TxOutcome};
use crate::protocol::wire;

/// How long stored fees per proof are kept without a new proof tx of their supplier (then estimated again): a
/// supplier removed from the keys file leaves no key behind for good.
const PROOF_TX_FEE_TTL: Duration = Duration::from_secs(6 * 3600);

/// The length of a proof tx before one was signed: [`crate::smst::MAX_PROOF_OVERHEAD_BYTES`] (16 KiB), the room a
/// proof needs besides its relay at most (256 side nodes of 48 bytes, the tx's envelope). A proof of a trie of a
/// few thousand relays has ~30 side nodes (~1.5 KiB) and a JSON-RPC relay takes a few KiB: a typical proof tx is
/// well under it, so its size gas is not underestimated for typical relays.
const ESTIMATED_PROOF_TX_BYTES: usize = crate::smst::MAX_PROOF_OVERHEAD_BYTES;

/// The gas of a proof's message when neither a fixed `transaction.gas_limit` nor a claim tx signed by this process
/// tells: 200,000, cosmos-sdk's default gas limit (`flags.DefaultGasLimit`), what a tx is signed with when nothing
/// is simulated. An estimate, not a bound (poktroll once raised its tx client's limit to 1,000,000 so proofs
/// verified on TestNet, pokt-network/poktroll#431); larger, it held back claims a funded supplier could prove (at
/// a 1upokt node minimum, 1,164,160 upokt reserved per proof) until its first proof tx.
const ESTIMATED_PROOF_MESSAGE_GAS: u64 = 200_000;

/// The KV key of `supplier`'s stored fees per proof (module `fees::proof_fees`: ASCII decimal uPOKT, separated by
/// commas, oldest first).
pub(super) fn proof_tx_fee_key(supplier: &str) -> String {
    format!("miner:proof_tx_fee:{supplier}")
}

/// The reason label of held-back claims.
pub(super) const INSUFFICIENT_FUNDS: &str = "insufficient_funds";

/// What a supplier's balance covers, given the proof fees it already owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Funds {
    /// The operator account's spendable balance.
    pub balance: u128,
    /// `proof_submission_fee`.
    pub proof_fee: u128,
    /// The tx fee one proof is estimated to cost ([`Miner::proof_tx_fee_estimate`]): the ante handler takes it
    /// before the proof's own fee.
    pub proof_tx_fee: u128,
    /// Sessions of the supplier outside the batch that may still need a paid proof.
    pub owed_proofs: u64,
    /// What the supplier's txs that may still land take beyond the proofs `owed_proofs` reserves: the fees of its
    /// pending claim txs, and what its pending proof txs cost above `proof_fee + proof_tx_fee` per proof (module
    /// docs).
    pub pending: u128,
}

impl Funds {
    /// How many new claims the balance can back with a proof each: the chain takes a proof only while the
    /// balance, its tx's fee already taken by the ante handler, exceeds the proof fee (x/proof deducts it before
    /// the proof's checks). The k-th proof in a row lands when `balance − k × tx_fee − (k − 1) × fee > fee`, so
    /// n proofs need `balance > n × (fee + tx_fee)`. Every claim when the proof fee is zero.
    pub fn claims_covered(&self) -> usize {
        if self.proof_fee == 0 {
            return usize::MAX;
        }
        let per_proof = self.proof_fee.saturating_add(self.proof_tx_fee);
        let reserved = per_proof
            .saturating_mul(u128::from(self.owed_proofs))
            .saturating_add(self.pending);
        let left = self.balance.saturating_sub(reserved);
        // n claims are covered when left > n × per_proof, i.e. n = ceil(left / per_proof) − 1.
        let covered = left.div_ceil(per_proof).saturating_sub(1);
        usize::try_from(covered).unwrap_or(usize::MAX)
    }
}

/// A tx of the supplier that may still land ([`Miner::pending_txs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingTx {
    /// The sessions whose messages it carries.
    pub keys: Vec<SessionKey>,
    /// Its fee in uPOKT, read from its kept bytes.
    pub fee: u128,
}

impl PendingTx {
    /// How many messages it carries (a proof tx: proofs).
    pub fn proofs(&self) -> u128 {
        u128::try_from(self.keys.len()).unwrap_or(u128::MAX)
    }

    /// What it takes from the balance when it lands as a proof tx: its fee and `proof_fee` per proof.
    pub fn cost(&self, proof_fee: u128) -> u128 {
        self.fee.saturating_add(proof_fee.saturating_mul(self.proofs()))
    }
}

impl Miner {
    /// Orders `messages` (one supplier's, of `kind`) most valuable first and, for claims, holds back those the
    /// supplier's balance could not prove (module docs): they are fed to the engine as sends that never left.
    /// Returns the messages to send.
    pub(super) async fn affordable(
        &mut self,
        kind: TxKind,
        supplier: &str,
        messages: Vec<(SessionKey, wire::Any)>,
        step: Step,
    ) -> (Step, Vec<(SessionKey, wire::Any)>) {
        // Claims not worth their cost are ended first (module `profit`): they need no funds.
        let (step, mut messages) = if kind == TxKind::Claim {
            self.without_unprofitable(supplier, messages, step).await
        } else {
            (step, messages)
        };
        if messages.len() > 1 {
            let mut valued = Vec::with_capacity(messages.len());
            for (key, message) in messages {
                let value = self.session_value(&key).await;
                valued.push((value, key, message));
            }
            // Stable: equal values keep the engine's order.
            valued.sort_by_key(|(value, _, _)| Reverse(*value));
            messages = valued.into_iter().map(|(_, key, message)| (key, message)).collect();
        }
        if kind != TxKind::Claim || messages.is_empty() {
            return (step, messages);
        }
        self.held_for_funds
            .retain(|key| self.engine.session(key).is_some_and(|r| r.state == State::Claiming));
        let batch: Vec<SessionKey> = messages.iter().map(|(key, _)| key.clone()).collect();
        let Some(funds) = self.funds(supplier, &batch).await else {
            return (step, messages);
        };
        let covered = funds.claims_covered();
        if covered >= messages.len() {
            for key in &batch {
                self.held_for_funds.remove(key);
            }
            return (step, messages);
        }
        let held: Vec<SessionKey> = messages.split_off(covered).into_iter().map(|(key, _)| key).collect();
        for (key, _) in &messages {
            self.held_for_funds.remove(key);
        }
        tracing::error!(
            supplier,
            balance_upokt = %funds.balance,
            proof_submission_fee_upokt = %funds.proof_fee,
            proof_tx_fee_upokt = %funds.proof_tx_fee,
            owed_proofs = funds.owed_proofs,
            pending_txs_upokt = %funds.pending,
            sent = messages.len(),
            held = held.len(),
            "the supplier's balance cannot pay the proofs of all its claims: the least valuable claims are held \
             back (tried again at every block while their window allows); fund the operator account"
        );
        for key in &held {
            if self.held_for_funds.insert(key.clone())
                && let Some(m) = &self.metrics
            {
                let service = self
                    .engine
                    .session(key)
                    .map(|r| r.service_id.clone())
                    .unwrap_or_default();
                m.claims_skipped
                    .with_label_values(&[supplier, &service, INSUFFICIENT_FUNDS])
                    .inc();
            }
        }
        let reason = format!(
            "{INSUFFICIENT_FUNDS}: balance {}upokt cannot also pay the proof submission fee ({}upokt) and tx fee \
             (~{}upokt) of this claim",
            funds.balance, funds.proof_fee, funds.proof_tx_fee
        );
        let step = self.tx_outcome_as(
            step,
            kind,
            supplier,
            held,
            TxOutcome::NotSent(reason),
            INSUFFICIENT_FUNDS,
        );
        (step, messages)
    }

    /// The supplier's balance, the proof fee, a proof's tx fee (estimated from its last proof tx, module docs) and
    /// the proofs its sessions outside `batch` may still owe (a claim held back owes none); `None` (logged) when
    /// the chain cannot be read.
    async fn funds(&mut self, supplier: &str, batch: &[SessionKey]) -> Option<Funds> {
        let proof_fee = match self.proof_fee_upokt().await {
            Ok(fee) => fee,
            Err(e) => {
                tracing::warn!(supplier, error = %e, "cannot read the proof params: claims sent without a funds check");
                return None;
            }
        };
        if proof_fee == 0 {
            return Some(Funds {
                balance: 0,
                proof_fee,
                proof_tx_fee: 0,
                owed_proofs: 0,
                pending: 0,
            });
        }
        let balance = match self.chain.spendable_balance(supplier, DENOM).await {
            Ok(balance) => balance,
            Err(e) => {
                tracing::warn!(supplier, error = %e, "cannot read the supplier's balance: claims sent without a funds check");
                return None;
            }
        };
        let owed = self
            .engine
            .sessions()
            .filter(|r| {
                r.key.supplier == supplier
                    && !r.pruned
                    && !batch.contains(&r.key)
                    && !self.held_for_funds.contains(&r.key)
                    && owes_a_proof(r.state, r.proof_required)
            })
            .count();
        let proof_tx_fee = self.proof_tx_fee_estimate(supplier).await;
        // A pending proof tx's sessions are Proving, so owed: each reserves `per_proof` already.
        let per_proof = proof_fee.saturating_add(proof_tx_fee);
        let proofs_beyond: u128 = self
            .pending_txs(TxKind::Proof, supplier)
            .iter()
            .map(|tx| tx.cost(proof_fee).saturating_sub(tx.proofs().saturating_mul(per_proof)))
            .fold(0, u128::saturating_add);
        let claims: u128 = self
            .pending_txs(TxKind::Claim, supplier)
            .iter()
            .map(|tx| tx.fee)
            .fold(0, u128::saturating_add);
        Some(Funds {
            balance,
            proof_fee,
            proof_tx_fee,
            owed_proofs: u64::try_from(owed).unwrap_or(u64::MAX),
            pending: proofs_beyond.saturating_add(claims),
        })
    }

    /// `supplier`'s txs of `kind` that may still land (module docs): kept since they left (module `submit::kept`)
    /// while every session they carry is still in the state that sends them. Counted until their outcome is known
    /// (a tx a block included counts until the engine sees its messages on chain: conservative by a block or two).
    pub(super) fn pending_txs(&self, kind: TxKind, supplier: &str) -> Vec<PendingTx> {
        let sending = match kind {
            TxKind::Claim => State::Claiming,
            TxKind::Proof => State::Proving,
        };
        self.kept_txs
            .of_supplier(kind, supplier)
            .filter(|(keys, _)| {
                keys.iter().all(|key| {
                    self.engine
                        .session(key)
                        .is_some_and(|r| r.state == sending && !r.pruned)
                })
            })
            .map(|(keys, tx)| {
                let fee = crate::chain::tx::fee_paid(&tx.bytes, DENOM).unwrap_or_else(|| {
                    // Kept bytes are this miner's own signed tx (their hash checked on restore): not expected.
                    tracing::warn!(
                        supplier,
                        tx = tx.hash,
                        "a kept tx's fee cannot be read: its proofs' fees counted alone"
                    );
                    0
                });
                PendingTx {
                    keys: keys.to_vec(),
                    fee,
                }
            })
            .collect()
    }

    /// The chain's `proof_submission_fee` in uPOKT (0: none, or not in uPOKT), what x/proof takes from the
    /// supplier's balance per proof, from the proof params read once per block ([`Miner::block_proof_params`]):
    /// the claim funds check here and the proof funds check (module `submit::funds`) read it the same way.
    pub(super) async fn proof_fee_upokt(&mut self) -> Result<u128, MinerError> {
        let params = self.block_proof_params().await?;
        Ok(balance::upokt(params.proof_submission_fee.as_ref()).unwrap_or(0))
    }

    /// The tx fee the funds check reserves per proof of `supplier`: the median fee per proof of its last proof txs
    /// (signed by this process, or as stored by the one before: a restart or a new leader reserves the same;
    /// module `fees::proof_fees`), else [`Miner::estimated_proof_tx_fee`]. Storage is read at the first use, again
    /// after a leadership gain and at most every few minutes (a failed read is tried again at the next check, what
    /// is known used meanwhile).
    pub(super) async fn proof_tx_fee_estimate(&mut self, supplier: &str) -> u128 {
        if self.gas_pricing.proof_tx_fees().due(supplier) {
            self.read_proof_tx_fees(supplier).await;
        }
        match self.gas_pricing.proof_tx_fees().estimate(supplier) {
            Some(fee) => fee,
            None => self.estimated_proof_tx_fee().await,
        }
    }

    /// Reads `supplier`'s stored fees per proof; whether storage answered (a failure is logged).
    async fn read_proof_tx_fees(&self, supplier: &str) -> bool {
        match self.storage.kv.get(&proof_tx_fee_key(supplier)).await {
            Ok(stored) => {
                let fees = stored
                    .map(|bytes| fees::decode_proof_tx_fees(&bytes))
                    .unwrap_or_default();
                self.gas_pricing.proof_tx_fees().read(supplier, fees);
                true
            }
            Err(e) => {
                tracing::warn!(supplier, error = %e, "cannot read the stored proof tx fees: estimated");
                false
            }
        }
    }

    /// A proof tx's fee before one is known: at the price the next tx is signed at, the gas a fixed
    /// `transaction.gas_limit` asks for one message (else the gas per message of the last claim tx this process
    /// signed, else [`ESTIMATED_PROOF_MESSAGE_GAS`]) plus the size gas of a tx of [`ESTIMATED_PROOF_TX_BYTES`]
    /// (`fees::fixed_gas_limit`). Replaced by the real fee at the supplier's first proof tx.
    pub(super) async fn estimated_proof_tx_fee(&self) -> u128 {
        let per_message = match self.config.gas_limit {
            0 => self
                .gas_pricing
                .claim_gas_per_message()
                .unwrap_or(ESTIMATED_PROOF_MESSAGE_GAS),
            fixed => fixed,
        };
        let gas = fees::fixed_gas_limit(per_message, 1, 0, ESTIMATED_PROOF_TX_BYTES);
        match self.gas_pricing.price(&self.chain).await {
            Ok(price) => crate::chain::tx::fee_for_gas(&price.amount, gas).unwrap_or(u128::MAX),
            // A price that does not parse signs no tx either (the config check refuses it).
            Err(_) => 0,
        }
    }

    /// Stores `supplier`'s last fees per proof when a proof tx was signed since they were last stored, merged with
    /// what storage holds when it was not read lately (another leader may have stored fees since). A failed read or
    /// write is logged and tried again after the supplier's next proof submission.
    pub(super) async fn store_proof_tx_fee(&self, supplier: &str) {
        if self.gas_pricing.proof_tx_fees().to_store(supplier).is_none() {
            return;
        }
        if self.gas_pricing.proof_tx_fees().due(supplier) && !self.read_proof_tx_fees(supplier).await {
            return;
        }
        let Some((fees, unstored)) = self.gas_pricing.proof_tx_fees().to_store(supplier) else {
            return;
        };
        let stored = match self.writer() {
            Ok(writer) => {
                writer
                    .kv
                    .set(
                        &proof_tx_fee_key(supplier),
                        fees::encode_proof_tx_fees(&fees),
                        Some(PROOF_TX_FEE_TTL),
                    )
                    .await
            }
            Err(MinerError::Storage(e)) => Err(e),
            Err(e) => Err(storage::StorageError::Backend(e.to_string())),
        };
        match stored {
            Ok(()) => self.gas_pricing.proof_tx_fees().stored(supplier, fees, unstored),
            Err(e) => tracing::warn!(
                supplier,
                error = %e,
                "cannot store the proof tx fees: after a restart the funds check estimates them until the next proof tx"
            ),
        }
    }

    /// A session's value for ordering: its claimed uPOKT (compute units claimed on chain, else ingested), or its
    /// compute units when a chain read needed to value it fails (then it sorts among the others by size alone).
    async fn session_value(&self, key: &SessionKey) -> (u64, u64) {
        let Some(r) = self.engine.session(key) else {
            return (0, 0);
        };
        let compute_units = r.claimed.map_or(r.compute_units, |(_, cu)| cu);
        let (service, end) = (r.service_id.clone(), r.schedule.session_end);
        let upokt = self.upokt(&service, end, compute_units).await.unwrap_or(0);
        (upokt, compute_units)
    }
}

/// Whether a session in `state` may still have to pay a proof fee: its claim is being sent, or on chain with
/// the requirement unknown or required, and no proof has landed.
fn owes_a_proof(state: State, proof_required: Option<bool>) -> bool {
    match state {
        State::Claiming | State::Proving => true,
        State::Claimed => proof_required != Some(false),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funds(balance: u128, proof_fee: u128, owed_proofs: u64) -> Funds {
        Funds {
            balance,
            proof_fee,
            proof_tx_fee: 0,
            owed_proofs,
            pending: 0,
        }
    }

    /// What the txs that may still land take is kept before any new claim is backed.
    #[test]
    fn pending_txs_are_paid_before_new_claims() {
        let with_pending = |balance, pending| Funds {
            pending,
            ..funds(balance, 100, 1)
        };
        // One owed proof (100) and 50 pending: 251 backs one more claim, 250 none.
        assert_eq!(with_pending(251, 50).claims_covered(), 1);
        assert_eq!(with_pending(250, 50).claims_covered(), 0);
        assert_eq!(with_pending(250, 0).claims_covered(), 1);
        let tx = PendingTx {
            keys: vec![
                SessionKey {
                    supplier: "pokt1s".into(),
                    session_id: "a".into(),
                };
                3
            ],
            fee: 40,
        };
        assert_eq!((tx.proofs(), tx.cost(100)), (3, 340));
    }

    /// Each proof's tx fee is taken before its proof fee is checked: n proofs need more than n × (fee + tx fee).
    #[test]
    fn each_proof_also_needs_its_tx_fee() {
        let with_tx_fee = |balance, owed_proofs| Funds {
            proof_tx_fee: 10,
            ..funds(balance, 100, owed_proofs)
        };
        assert_eq!(with_tx_fee(110, 0).claims_covered(), 0);
        assert_eq!(with_tx_fee(111, 0).claims_covered(), 1);
        assert_eq!(with_tx_fee(220, 0).claims_covered(), 1);
        assert_eq!(with_tx_fee(221, 0).claims_covered(), 2);
        // Two proofs owed keep 2 × 110 first.
        assert_eq!(with_tx_fee(331, 2).claims_covered(), 1);
        assert_eq!(with_tx_fee(330, 2).claims_covered(), 0);
    }

    #[test]
    fn a_claim_is_covered_while_the_balance_exceeds_one_more_proof_fee() {
        assert_eq!(funds(1_000, 0, 7).claims_covered(), usize::MAX);
        assert_eq!(funds(100, 100, 0).claims_covered(), 0);
        assert_eq!(funds(101, 100, 0).claims_covered(), 1);
        assert_eq!(funds(200, 100, 0).claims_covered(), 1);
        assert_eq!(funds(201, 100, 0).claims_covered(), 2);
        assert_eq!(funds(0, 100, 0).claims_covered(), 0);
    }

    #[test]
    fn proofs_already_owed_are_paid_first() {
        assert_eq!(funds(301, 100, 2).claims_covered(), 1);
        assert_eq!(funds(300, 100, 2).claims_covered(), 0);
        assert_eq!(funds(50, 100, 3).claims_covered(), 0);
    }

    #[test]
    fn claimed_sessions_owe_a_proof_until_known_not_required() {
        assert!(owes_a_proof(State::Claiming, None));
        assert!(owes_a_proof(State::Claimed, None));
        assert!(owes_a_proof(State::Claimed, Some(true)));
        assert!(!owes_a_proof(State::Claimed, Some(false)));
        assert!(owes_a_proof(State::Proving, Some(true)));
        assert!(!owes_a_proof(State::Active, None));
        assert!(!owes_a_proof(State::Proved, Some(true)));
    }
}
