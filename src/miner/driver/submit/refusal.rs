//! Sending one supplier's tx of claims or proofs, and sending it again without the message a node refused it for.
//!
//! One message the chain refuses (a check of spec §5.4 / §6.1 failing for one session) refuses the whole tx at
//! Simulate, where no fee is paid. When the refusal names that message (cosmos-sdk v0.53 baseapp `runMsgs` wraps
//! the handler's error as "failed to execute message; message index: N", N the 0-based index of the message in
//! the tx as sent), the others go again as one batch and the named one alone: each tx that lands pays one fee, so
//! a supplier with 50 sessions and one bad message pays 2 fees (at most), not 50, and waits for 3 answers instead
//! of 51 while its windows close. The batch may be refused again naming another message: the same again, once per
//! message at most. A refusal about a message that names none (a message's `ValidateBasic`, refused before any gas)
//! leaves nothing to go by: the batch is then sent message by message. Refusals of the whole tx (fee, funds,
//! mempool, timeout) are not split at all: every tx would get them.
//!
//! A supplier's messages come most valuable first (module `afford`): when its balance cannot pay every proof's
//! `proof_submission_fee` (poktroll's `SubmitProof` handler deducts it; the first message it cannot pay for is
//! named), the proofs before that index land together, so the ones whose claims pay the most are the ones kept (a
//! required proof missing loses its claim's reward and is slashed the same `proof_missing_penalty`). Simulate runs
//! with a 1-upokt fee, though, so a balance short only by the real fee passes it and the tx fails in its block:
//! the balance is checked against the real fee once the tx is signed, and a proof tx it cannot pay in full goes
//! again with the proofs it pays for (module `funds`).

use crate::miner::lifecycle::{SessionKey, Step, TxKind, TxOutcome};
use crate::protocol::wire;

use super::super::Miner;
use super::Signed;
use super::broadcast::{Broadcast, MESSAGE_INDEX};
use super::funds::{self, SubmissionFunds};

/// The message a Simulate refusal (`reason`, the status error's text) names: the `N` of the first
/// "message index: N" in it, the outermost wrap (`errorsmod.Wrapf` puts its text before the wrapped error's), so
/// `runMsgs`' own. `None` when it names none.
pub(in crate::miner::driver) fn refused_message_index(reason: &str) -> Option<usize> {
    let (_, after) = reason.split_once(MESSAGE_INDEX)?;
    let end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
    after[..end].parse().ok()
}

/// The text of poktroll's `ErrProofNotRequired` (code 1129, codespace `proof`, `x/proof/types/errors.go`), which
/// `SubmitProof` answers as `codes.FailedPrecondition` when its live proof params do not require the claim's
/// proof; a Simulate refusal carries it inside baseapp's "failed to execute message" wrap.
const PROOF_NOT_REQUIRED: &str = "proof not required";

/// Whether a refusal (`reason`, the node's text) is the chain saying a proof is not required
/// (`TxOutcome::NotRequired`): re-sending it cannot help, the requirement is checked again instead.
pub(in crate::miner::driver) fn proof_not_required(reason: &str) -> bool {
    reason.contains(PROOF_NOT_REQUIRED)
}

impl Miner {
    /// Sends `txs` (one supplier's messages of `kind`, split by size) one after the other ([`Self::send`]). A
    /// proof tx the supplier's balance cannot pay in full is sent with the proofs it pays for (module `funds`):
    /// the balance is read once, the supplier's proof txs that may still land are paid first, and each tx that
    /// leaves takes its fees off what is left for the next.
    pub(super) async fn send_all(
        &mut self,
        mut step: Step,
        kind: TxKind,
        supplier: &str,
        txs: Vec<Vec<(SessionKey, wire::Any)>>,
    ) -> Step {
        let mut funds = self.proof_funds(kind, supplier).await;
        for tx in txs {
            step = self.send(step, kind, supplier, tx, &mut funds).await;
        }
        step
    }

    /// Sends `messages` (of one supplier) as one tx and feeds each session's outcome to the engine. A tx a node
    /// refuses naming one of its messages is sent again without it, and that message alone after the rest
    /// (its own outcome: only its session takes the refusal); each pass takes one message out, so there are at
    /// most as many passes as messages. A refusal about a message that names none sends the rest message by
    /// message. The refused batches are not fed to the engine: each session gets the outcome of the last tx
    /// that carried it. A proof tx `funds` cannot pay in full is sent again with the proofs it pays for, the
    /// others held back (module `funds`).
    async fn send(
        &mut self,
        mut step: Step,
        kind: TxKind,
        supplier: &str,
        messages: Vec<(SessionKey, wire::Any)>,
        funds: &mut Option<SubmissionFunds>,
    ) -> Step {
        let mut batch = messages;
        // Messages a refusal named, sent alone once the rest is sent.
        let mut named = Vec::new();
        // Messages of a batch refused for a message it did not name, each sent alone.
        let mut unnamed = Vec::new();
        loop {
            let keys: Vec<SessionKey> = batch.iter().map(|(key, _)| key.clone()).collect();
            let Broadcast {
                outcome,
                message_refused,
                refused_index,
                proofs_paid,
            } = self.send_tx(kind, supplier, &batch, funds).await;
            // Each pass takes at least one proof out: the paid ones go again, alone in a smaller tx whose fee is
            // no larger.
            if let (Some(paid), Some(reason)) = (proofs_paid, funds::unpaid_reason(&outcome))
                && paid < batch.len()
            {
                let held = batch.split_off(paid).into_iter().map(|(key, _)| key).collect();
                step = self.hold_unpaid_proofs(step, supplier, held, reason.to_owned());
                if batch.is_empty() {
                    break;
                }
                continue;
            }
            let reason = match &outcome {
                Err(TxOutcome::Refused(reason)) if message_refused && batch.len() > 1 => reason,
                _ => {
                    step = self.sent(step, kind, supplier, keys, outcome);
                    break;
                }
            };
            match refused_index.filter(|&index| index < batch.len()) {
                Some(index) => {
                    let (key, message) = batch.remove(index);
                    tracing::warn!(
                        supplier,
                        ?kind,
                        sessions = keys.len(),
                        index,
                        session = key.session_id,
                        reason,
                        "batch refused by the node for one message; sending the others again as one tx, that one \
                         alone"
                    );
                    named.push((key, message));
                }
                None => {
                    tracing::warn!(
                        supplier,
                        ?kind,
                        sessions = keys.len(),
                        reason,
                        "batch refused by the node for a message it does not name; sending each session's message \
                         in its own tx"
                    );
                    unnamed = std::mem::take(&mut batch);
                    break;
                }
            }
        }
        for (key, message) in unnamed.into_iter().chain(named) {
            let outcome = self
                .send_tx(kind, supplier, &[(key.clone(), message)], funds)
                .await
                .outcome;
            step = match funds::unpaid_reason(&outcome) {
                Some(reason) => self.hold_unpaid_proofs(step, supplier, vec![key], reason.to_owned()),
                None => self.sent(step, kind, supplier, vec![key], outcome),
            };
        }
        step
    }

    /// Broadcasts one tx of `messages` within the bounds of their sessions (timeout height, deadline) and takes
    /// in what its broadcast stored and kept (modules `kept`, `unknown`) and the fees it took off `funds` (module
    /// `funds`); the outcome is left to the caller.
    async fn send_tx(
        &mut self,
        kind: TxKind,
        supplier: &str,
        messages: &[(SessionKey, wire::Any)],
        funds: &mut Option<SubmissionFunds>,
    ) -> Broadcast {
        let keys: Vec<SessionKey> = messages.iter().map(|(key, _)| key.clone()).collect();
        let tx: Vec<wire::Any> = messages.iter().map(|(_, message)| message.clone()).collect();
        let signed = Signed::new(kind, &keys);
        let bounds = self.bounds(kind, &keys);
        let for_tx = funds.as_ref().map(|funds| funds.for_tx(&keys));
        let broadcast = self.broadcast(supplier, tx, bounds, &signed, for_tx).await;
        // Each tx sent is a few timeout-bounded chain calls: progress for the watchdog (`MinerStats::steps_done`),
        // so a submission split into many txs is not taken for a hung miner.
        self.progressed();
        // Only a tx handed to a node can take funds: a Retryable before anything was signed or sent (an account
        // read or a Simulate that failed on the ordered path) spends nothing.
        if signed.sent().is_some() {
            funds::spend(funds, &broadcast.outcome, &keys, signed.last().1);
        }
        self.after_broadcast(&broadcast.outcome, &signed);
        self.keep_if_unknown(kind, supplier, &keys, &broadcast.outcome, &signed);
        broadcast
    }
}

#[cfg(test)]
mod tests {
    use super::{proof_not_required, refused_message_index};

    /// poktroll's refusal as Simulate answers it (baseapp's wrap of the handler's status error) and the
    /// simulator's are told apart from other refusals of a proof.
    #[test]
    fn a_proof_not_required_is_told_from_other_refusals() {
        let poktroll = "gRPC /cosmos.tx.v1beta1.Service/Simulate: Unknown: failed to execute message; message \
                        index: 0: rpc error: code = FailedPrecondition desc = proof not required with gas used: '9'";
        assert!(proof_not_required(poktroll));
        assert!(proof_not_required("proof not required for this claim"));
        assert!(!proof_not_required(
            "proof attempted outside of the session's proof window"
        ));
        assert!(!proof_not_required("invalid proof"));
    }

    /// The index is read from `runMsgs`' wrap as a v0.53.7 node's Simulate answers it (0-based, the outermost
    /// occurrence), and not made up when the text names none or a malformed one.
    #[test]
    fn the_refused_message_index_is_read_from_the_outermost_wrap() {
        let simulate = "gRPC /cosmos.tx.v1beta1.Service/Simulate: Unknown: ";
        let named = format!(
            "{simulate}failed to execute message; message index: 12: rpc error: code = InvalidArgument desc = \
             message index: 3 [cosmos/cosmos-sdk@v0.53.7/baseapp/baseapp.go:1097] with gas used: '131790'"
        );
        assert_eq!(refused_message_index(&named), Some(12));
        let first = format!("{simulate}failed to execute message; message index: 0: x with gas used: '9'");
        assert_eq!(refused_message_index(&first), Some(0));
        let none = format!("{simulate}invalid root hash [cosmossdk.io/errors@v1.0.2/errors.go:155] with gas used: '0'");
        assert_eq!(refused_message_index(&none), None);
        assert_eq!(refused_message_index("message index: x"), None);
        assert_eq!(refused_message_index("message index: "), None);
    }
}
