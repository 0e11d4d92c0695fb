//! Broadcasting one signed tx and reading the node's answer: a fee refusal (CheckTx code 13) re-sent at once at
//! the price it names, and what a Simulate or CheckTx refusal means for the sessions the tx carries (a message's
//! refusal, so the others can go without it, or the whole tx's).

use super::funds::{self, ProofFunds};
use super::*;

impl Miner {
    /// Broadcasts one tx of `messages` ([`Miner::send_once`]). A node that refuses its fee as too low (CheckTx
    /// code 13) names the fee it requires: the tx is built and sent once more at that price within this attempt
    /// (capped by `transaction.max_gas_price`, module `fees`) instead of a block later at the same refused fee.
    /// The tx last handed to the node is recorded in `signed`. A proof tx the supplier's balance (`funds`) cannot
    /// pay in full is not sent (module `funds`): [`Broadcast::proofs_paid`] says how many of its proofs it pays.
    pub(super) async fn broadcast(
        &self,
        supplier: &str,
        messages: Vec<wire::Any>,
        bounds: Bounds,
        signed: &Signed,
        funds: Option<ProofFunds>,
    ) -> Broadcast {
        let count = messages.len();
        match self.broadcast_response(supplier, messages, bounds, signed, funds).await {
            // CheckTx runs no message, so its refusal names none.
            Ok(response) => {
                if fees::is_out_of_gas(response.code, &response.codespace) {
                    // The ante handler ran out of the tx's gas (rule "out of gas doubles", `fees::fixed_gas_limit`).
                    self.gas_pricing.ran_out_of_gas(signed.kind, &signed.keys);
                }
                Broadcast {
                    message_refused: check_tx_refused_a_message(&response),
                    refused_index: None,
                    outcome: check_tx_outcome(&response),
                    proofs_paid: None,
                }
            }
            Err(outcome) => {
                let (message_refused, refused_index) = match &outcome {
                    TxOutcome::Refused(reason) => (
                        simulate_refused_a_message(reason),
                        refusal::refused_message_index(reason),
                    ),
                    _ => (false, None),
                };
                // The fee the check went by is the one signed last.
                let outcome = Err(outcome);
                let proofs_paid = funds
                    .filter(|_| funds::unpaid_reason(&outcome).is_some())
                    .map(|funds| funds.proofs_paid(signed.last().1, count));
                Broadcast {
                    message_refused,
                    refused_index,
                    outcome,
                    proofs_paid,
                }
            }
        }
    }

    /// [`Self::broadcast`] up to the node's answer.
    async fn broadcast_response(
        &self,
        supplier: &str,
        messages: Vec<wire::Any>,
        bounds: Bounds,
        signed: &Signed,
        funds: Option<ProofFunds>,
    ) -> Result<wire::TxResponse, TxOutcome> {
        let key = self
            .signers
            .get(supplier)
            .ok_or_else(|| TxOutcome::Rejected(format!("no key for {supplier}")))?;
        let mut response = self
            .send_once(supplier, key, messages.clone(), bounds, signed, funds)
            .await?;
        if fees::is_fee_refusal(&response) {
            let (gas_limit, fee_paid) = signed.last();
            if self.learn_from_fee_refusal(supplier, &response.raw_log, gas_limit, fee_paid) {
                tracing::warn!(
                    supplier,
                    gas_limit,
                    fee_paid,
                    log = response.raw_log,
                    "the node refused the fee as below its minimum gas price: sending again at the fee it requires"
                );
                response = self.send_once(supplier, key, messages, bounds, signed, funds).await?;
                self.count_resend_fee_refusal(supplier, &response);
            }
        }
        Ok(response)
    }

    /// Builds, signs and broadcasts one tx of `messages`: unordered (ADR-070, no sequence races between HA
    /// instances) or ordered through the signer's [`Sequencer`](crate::chain::sequence::Sequencer), which
    /// recovers from a sequence mismatch by re-reading the account; both carry the bounds' `timeout_height`
    /// (unordered txs also expire by their timeout timestamp). A tx whose deadline passed is not sent (`NotSent`):
    /// the unordered path checks the block it reads; the ordered path reads no block and checks the latest height
    /// the chain client saw (its `timeout_height` keeps it out of blocks after the window anyway). A proof tx
    /// `funds` cannot pay in full is not sent once signed (`NotSent`, module `funds`). Returns the node's answer
    /// to the broadcast.
    async fn send_once(
        &self,
        supplier: &str,
        key: &SigningKey,
        messages: Vec<wire::Any>,
        bounds: Bounds,
        signed: &Signed,
        funds: Option<ProofFunds>,
    ) -> Result<wire::TxResponse, TxOutcome> {
        let count = messages.len();
        // After signing (the real fee known), before the tx is stored or leaves.
        let unpaid = || funds.and_then(|funds| funds.unpaid(signed.last().1, count));
        // Not sent (deposed before it left, a chain read to build it failed): `NotSent`. No node answered the
        // broadcast (transport; it may have reached the node after all): `Retryable`. A node answered with a refusal (Simulate failed, e.g.
        // "outside the window" while the node's committed state is a block behind its latest block): `Refused`,
        // no fee paid, tried again at the next block. A tx this miner cannot build (gas price, fee): `Rejected`.
        signed.clear_sent();
        let failed = |e: SequenceError| match &e {
            SequenceError::NotSent(reason) => TxOutcome::NotSent(reason.clone()),
            SequenceError::Chain(c) if c.is_retryable() => TxOutcome::Retryable(e.to_string()),
            SequenceError::Chain(_) => TxOutcome::Refused(e.to_string()),
            // Any error of the broadcast itself (a node may answer `Unknown` after its CometBFT hop took the tx):
            // unknown outcome, as on the unordered path; the tx is kept and found out about first.
            SequenceError::Broadcast(_) => TxOutcome::Retryable(e.to_string()),
            SequenceError::Tx(_) => TxOutcome::Rejected(e.to_string()),
        };
        let response = if self.config.unordered {
            let not_sent = |e: crate::chain::query::ChainError| TxOutcome::NotSent(e.to_string());
            let retry = |e: crate::chain::query::ChainError| TxOutcome::Retryable(e.to_string());
            let account = self.chain.account(supplier).await.map_err(not_sent)?;
            // A fresh tip (a few dozen bytes): the deadline is checked per tx, and the timeout anchors on it.
            let block = self.chain.tip().await.map_err(not_sent)?;
            if block.height > bounds.deadline {
                return Err(TxOutcome::NotSent(deadline_passed(block.height)));
            }
            // Each unordered tx of the supplier gets its own timeout: the SDK keeps one nonce per (signer,
            // timeout) and refuses a second tx with the same one at CheckTx (`UnorderedTimeouts`).
            let block_time = tx::Timestamp {
                seconds: block.time.seconds,
                nanos: block.time.nanos,
            };
            // The windows' close as `timeout_height` too: an unordered tx held in a mempool past it is refused
            // for free (code 30) instead of included after the window, every message failed and its fee paid.
            // Valid long enough for the blocks up to the window's close at the chain's pace (module `ttl`).
            let reference = self.chain.pace_reference(block.height).map(|(height, time)| {
                let time = tx::Timestamp {
                    seconds: time.seconds,
                    nanos: time.nanos,
                };
                (height, time)
            });
            let ttl = super::ttl::unordered_ttl_secs(
                self.config.tx_ttl_secs,
                block.height,
                block_time,
                reference,
                bounds.timeout_height,
            );
            let ordering = self
                .sequencers
                .for_signer(supplier)
                .next_unordered(block_time, ttl)
                .with_timeout_height(bounds.timeout_height);
            let expiry = match ordering {
                Ordering::Unordered { timeout, .. } => Expiry::Time(timeout),
                Ordering::Ordered { timeout_height, .. } => Expiry::Height(timeout_height),
            };
            let bytes = self
                .sign_with_gas(key, messages, ordering, account.account_number, signed)
                .await
                .map_err(failed)?;
            if let Some(reason) = unpaid() {
                return Err(TxOutcome::NotSent(reason));
            }
            self.confirm_leadership_before_sending().await.map_err(failed)?;
            self.store_before_sending(signed, &bytes, expiry)
                .await
                .map_err(failed)?;
            self.chain.broadcast(bytes).await.map_err(retry)?
        } else {
            let sequencer = self.sequencers.for_signer(supplier);
            sequencer
                .submit(&self.chain, |account| {
                    let messages = messages.clone();
                    async move {
                        let height = self.chain.latest_height();
                        if height > bounds.deadline {
                            return Err(SequenceError::NotSent(deadline_passed(height)));
                        }
                        let ordering = Ordering::Ordered {
                            sequence: account.sequence,
                            timeout_height: bounds.timeout_height,
                        };
                        let bytes = self
                            .sign_with_gas(key, messages, ordering, account.account_number, signed)
                            .await?;
                        if let Some(reason) = unpaid() {
                            return Err(SequenceError::NotSent(reason));
                        }
                        self.confirm_leadership_before_sending().await?;
                        self.store_before_sending(signed, &bytes, Expiry::Height(bounds.timeout_height))
                            .await?;
                        Ok(bytes)
                    }
                })
                .await
                .map_err(failed)?
        };
        Ok(response)
    }
}

/// What one broadcast gave.
pub(super) struct Broadcast {
    /// Sent (`Ok`), or why not.
    pub(super) outcome: Result<(), TxOutcome>,
    /// The refusal is about one of the tx's messages, so sending the others without it lets them land. Other
    /// refusals are the whole tx's (fee, funds, signature, mempool full, timeout): every one of n txs would get
    /// them too, n refusals instead of one.
    pub(super) message_refused: bool,
    /// The index (0-based, in the tx's messages as sent) of the message a Simulate refusal names (`runMsgs`'
    /// "message index: N", [`refusal::refused_message_index`]); `None` when it names none (a refusal before any
    /// gas, a CheckTx refusal).
    pub(super) refused_index: Option<usize>,
    /// How many of the tx's first proofs the supplier's balance pays, when it does not pay them all: the tx was
    /// not sent (module `funds`).
    pub(super) proofs_paid: Option<usize>,
}

/// What cosmos-sdk's `runMsgs` adds to the error of the message that failed ("failed to execute message; message
/// index: N"): a Simulate refusal naming a message.
pub(super) const MESSAGE_INDEX: &str = "message index: ";

/// How cosmos-sdk v0.53's gRPC `Simulate` ends the error of a tx refused before any gas was metered
/// (x/auth/tx/service.go `txServer.Simulate`: `"%v with gas used: '%d'"`, cosmos-sdk#18772 since v0.50.3; before,
/// `"%v With gas wanted: '%d' and gas used: '%d' "`): in practice a message's `ValidateBasic` (`baseapp.runTx` →
/// `validateBasicTxMsgs`) or a signer address the tx decoder refuses, which name no message index and lose their
/// codespace on the way. Such a batch is sent again message by message (module `refusal`: no index to go by); a
/// refusal of the whole tx with that ending (bytes that do not decode, the ante handler's first checks) costs one
/// refused Simulate per message, and no fee; the timeout height, the likely one of those, is not split
/// ([`simulate_refused_a_message`]).
const REFUSED_BEFORE_GAS: &str = "gas used: '0'";

/// Whether a Simulate refusal (`reason`, the status error's text) is one message's: it names the message that
/// failed (`runMsgs`' "message index: N"), or it was refused before any gas was metered ([`REFUSED_BEFORE_GAS`]
/// ends it, after the error's `[file:line]` frame and with or without the older format's trailing space) and is
/// not the timeout-height check, the one whole-tx refusal of the ante handler that also comes before any gas
/// (x/auth/ante `TxTimeoutHeightDecorator`, before `ConsumeGasForTxSizeDecorator`: every tx of the split would
/// get it too).
pub(in crate::miner::driver) fn simulate_refused_a_message(reason: &str) -> bool {
    reason.contains(MESSAGE_INDEX)
        || (reason.trim_end().ends_with(REFUSED_BEFORE_GAS) && !reason.contains(TIMEOUT_HEIGHT_REFUSAL))
}

/// The registered text of cosmos-sdk's `ErrTxTimeoutHeight` (code 30), ending the decorator's wrap.
const TIMEOUT_HEIGHT_REFUSAL: &str = ": tx timeout height";

/// Whether a CheckTx refusal is about the messages rather than the tx: an error of a message's module (its
/// `ValidateBasic`, codespace other than `sdk`), or the tx too large for the node (code 21; smaller txs may fit).
/// CheckTx runs no message, so the SDK's own codes (4 unauthorized, 5 insufficient funds, 13 insufficient fee,
/// 18, 19, 20 mempool full, 30 timeout height, 32 sequence) are the tx's.
fn check_tx_refused_a_message(response: &wire::TxResponse) -> bool {
    const TX_TOO_LARGE: u32 = 21;
    response.code != 0 && (response.codespace != "sdk" || response.code == TX_TOO_LARGE)
}

/// What a node's answer to a broadcast means for the sessions the tx carries.
pub(super) fn check_tx_outcome(response: &wire::TxResponse) -> Result<(), TxOutcome> {
    match response.code {
        0 => Ok(()),
        // These very bytes are already in the node's mempool or cache (cosmos-sdk `ErrTxInMempoolCache`; CometBFT
        // "tx already exists in cache"): sent, by an earlier broadcast of ours whose answer was lost. Another
        // instance signs other bytes (its own timeout or sequence), so this is never its tx.
        19 => Ok(()),
        // CheckTx refused it (mempool full 20, insufficient fee 13 or funds 5, unordered nonce or TTL 18, tx
        // too large 21, ...): nothing entered the mempool and no fee was paid. A sequence mismatch (32) too: the
        // sequencer answers it only after re-reading the account and signing again (`Sequencer::submit`), so the
        // tx was our own, freshly built one; with one fenced leader a mismatch that persists is nearly always a
        // node behind or another node behind a load balancer, not another instance's tx. Taken as an HA conflict
        // it kept the send as made and used the session's only re-send for nothing; refused, the send is undone,
        // the chain is asked (an other instance's claim or proof found there settles the session as for any
        // refusal) and the next block tries again.
        code => Err(TxOutcome::Refused(format!(
            "CheckTx code {code} ({}): {}",
            response.codespace, response.raw_log
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequence mismatch (code 32) the sequencer answers after signing our own tx again is a refusal (the send
    /// undone, tried again at the next block), not an HA conflict that keeps the send as made; code 19 (these
    /// bytes already in the node's cache) is a send.
    #[test]
    fn a_sequence_mismatch_on_our_own_tx_is_a_refusal() {
        let answer = |code: u32| wire::TxResponse {
            code,
            codespace: "sdk".into(),
            raw_log: "account sequence mismatch, expected 8, got 7: incorrect account sequence".into(),
            ..Default::default()
        };
        assert!(
            matches!(check_tx_outcome(&answer(32)), Err(TxOutcome::Refused(reason)) if reason.contains("code 32")),
            "{:?}",
            check_tx_outcome(&answer(32))
        );
        assert_eq!(check_tx_outcome(&answer(19)), Ok(()));
    }
}
