//! A proof tx near an empty balance carries only the proofs the balance pays for.
//!
//! Why: a proof tx is simulated with a 1-upokt fee (`fees::simulation_fee`), so Simulate passes while the
//! balance covers every `proof_submission_fee` less that one upokt. In its block the ante handler first deducts
//! the real fee, then x/proof deducts the proof fee of each `MsgSubmitProof` and refuses one unless the balance
//! left is strictly greater than that fee (spec §5.4 (11)). The tx's messages run atomically: the first proof the
//! balance cannot pay fails the whole tx, its fee paid, and every proof in it is missed (each claim expires and
//! the supplier is slashed `proof_missing_penalty` per claim), where the proofs the balance could pay would have
//! landed. So once a proof tx is signed (its real fee known) and before it is stored or broadcast, the balance is
//! checked: the k-th proof of a tx paying fee T lands when `balance − T − (k − 1) × fee > fee`, so n proofs need
//! `balance − T > n × fee`. When the balance cannot pay them all, the tx is not sent and the submission sends again
//! only the proofs it pays for (module `refusal`), a smaller tx whose fee is no larger; the others are held back as
//! sends that never left (`TxOutcome::NotSent`: tried again at the next block while their window allows, so funds
//! the operator adds in time still get them proven), logged at ERROR with the shortfall and counted, once per
//! session held at each block, in `ha_miner_proof_errors_total{reason="insufficient_funds"}` (the reason
//! `ha_miner_claims_skipped_total` gives held claims, module `afford`).
//!
//! Which proofs are kept: the first ones of the tx, and a supplier's proofs come most valuable first (module
//! `afford`). Every missed proof costs the same `proof_missing_penalty` plus its own claim's reward, so the
//! proofs worth most are the ones to pay for. Ordering by the earliest window close instead would only help when
//! the account is topped up before a later window closes, which the miner cannot count on; and the proofs due
//! together at one height almost always share their window (sessions ending at the same height).
//!
//! The balance is read once per submission, and what may land before (or beside) each tx is taken off it first,
//! since the chain's balance shows none of it until a block includes it:
//! - the supplier's proof txs that may still land ([`Miner::pending_txs`], module `afford`): a tx kept since it
//!   left (module `kept`) while every session it carries is still proving, its fee read from its stored bytes and
//!   its proofs' fees counted, whether it left at an earlier block (held up in mempools) or its same bytes were
//!   broadcast again in this submission (module `resolve`). Counted until its outcome is known (conservative: a
//!   tx a block included counts until the engine sees its proofs on chain). Not counted, it landed first and the
//!   new tx failed whole in its block; Simulate, on the node's last committed state, does not see it either;
//! - the supplier's claim txs that may still land (kept, every session still claiming): their fees;
//! - each proof tx this submission hands to a node (or may have: its answer lost), its fee and its proofs' fees;
//! - a kept tx a new tx replaces (the new tx carries only sessions of the kept one: a tx stuck in the mempool,
//!   replaced at the cap, module `resolve`; one that also carries another session replaces nothing, both count)
//!   is not counted against its replacement: if it lands first, the replacement's proofs are
//!   on chain already and the replacement fails for the fee only. Once the replacement left, the larger of the two
//!   counts for the txs after it: the original was replaced because validators do not include it, so both landing
//!   is not the case to hold the supplier's other proofs back for (x/proof would take the second as an update and
//!   charge it again).
//!
//! A read that fails (balance, proof params) checks nothing (logged): the node answers for itself, as before.

use super::*;
use crate::miner::driver::afford::INSUFFICIENT_FUNDS;
use crate::miner::driver::balance::DENOM;

/// How the reason of a proof tx held back for funds starts (a send that never left, `TxOutcome::NotSent`).
const UNPAID: &str = "insufficient_funds: the balance cannot pay every proof of the tx";

/// What a supplier's balance leaves for one proof tx ([`SubmissionFunds::for_tx`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProofFunds {
    /// The spendable balance read before the submission, less what may land before the tx (module docs).
    left: u128,
    /// `proof_submission_fee`, deducted per proof by x/proof.
    proof_fee: u128,
    /// What the supplier's pending txs take of the balance read (for the log).
    pending: u128,
}

/// What a supplier's balance leaves for the proof txs of one submission (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SubmissionFunds {
    /// The spendable balance read before the submission, less the fees of its proof txs that left.
    left: u128,
    /// `proof_submission_fee`, deducted per proof by x/proof.
    proof_fee: u128,
    /// The supplier's proof txs that may still land, not replaced by a tx of this submission yet: the sessions
    /// each carries and what it takes (its fee and its proofs' fees).
    pending: Vec<(Vec<SessionKey>, u128)>,
}

/// Whether a tx carrying `keys` replaces a pending one carrying `carried`: it carries nothing else (a re-send of
/// some or all of its proofs). One that also carries another session does not: if the pending tx lands first,
/// x/proof charges the shared proofs again as updates and the new session's proof besides (spec §5.4), so both
/// count.
fn replaces(carried: &[SessionKey], keys: &[SessionKey]) -> bool {
    !keys.is_empty() && keys.iter().all(|key| carried.contains(key))
}

impl SubmissionFunds {
    /// What is left for a tx of `keys`' proofs: the balance less this submission's txs that left and every
    /// pending tx but those it replaces (module docs).
    pub(super) fn for_tx(&self, keys: &[SessionKey]) -> ProofFunds {
        let pending = self
            .pending
            .iter()
            .filter(|(carried, _)| !replaces(carried, keys))
            .map(|(_, cost)| *cost)
            .fold(0, u128::saturating_add);
        ProofFunds {
            left: self.left.saturating_sub(pending),
            proof_fee: self.proof_fee,
            pending,
        }
    }

    /// A tx of `keys`' proofs (`proofs` of them) paying `tx_fee` left (or may have): its fees are no longer there
    /// for the next, and the pending txs it replaces count as one with it, the larger (module docs).
    fn spend(&mut self, keys: &[SessionKey], tx_fee: u128, proofs: usize) {
        let proofs = u128::try_from(proofs).unwrap_or(u128::MAX);
        let spent = tx_fee.saturating_add(self.proof_fee.saturating_mul(proofs));
        let mut replaced = 0u128;
        self.pending.retain(|(carried, cost)| {
            let replaced_by_it = replaces(carried, keys);
            if replaced_by_it {
                replaced = replaced.saturating_add(*cost);
            }
            !replaced_by_it
        });
        self.left = self.left.saturating_sub(spent.max(replaced));
    }
}

impl ProofFunds {
    /// How many of the first proofs of a tx of `proofs` proofs paying `tx_fee` land (module docs): `proofs` when
    /// all do.
    pub(super) fn proofs_paid(&self, tx_fee: u128, proofs: usize) -> usize {
        if self.proof_fee == 0 {
            return proofs;
        }
        // k proofs land when left − tx_fee > k × fee, i.e. k = ceil((left − tx_fee) / fee) − 1.
        let after_fee = self.left.saturating_sub(tx_fee);
        let paid = after_fee.div_ceil(self.proof_fee).saturating_sub(1);
        usize::try_from(paid).unwrap_or(usize::MAX).min(proofs)
    }

    /// What the balance lacks to pay a tx of `proofs` proofs paying `tx_fee`.
    fn shortfall(&self, tx_fee: u128, proofs: usize) -> u128 {
        let proofs = u128::try_from(proofs).unwrap_or(u128::MAX);
        let needed = tx_fee
            .saturating_add(self.proof_fee.saturating_mul(proofs))
            .saturating_add(1);
        needed.saturating_sub(self.left)
    }

    /// The reason a tx of `proofs` proofs paying `tx_fee` is not sent, when the balance does not pay them all.
    pub(super) fn unpaid(&self, tx_fee: u128, proofs: usize) -> Option<String> {
        let paid = self.proofs_paid(tx_fee, proofs);
        (paid < proofs).then(|| {
            format!(
                "{UNPAID}: balance {}upokt (after {}upokt of txs that may still land), tx fee {tx_fee}upokt, \
                 proof submission fee {}upokt per proof: {paid} of {proofs} proofs paid, {}upokt short",
                self.left,
                self.pending,
                self.proof_fee,
                self.shortfall(tx_fee, proofs)
            )
        })
    }
}

/// The reason of a send that never left because [`ProofFunds::unpaid`] held it back for funds.
pub(super) fn unpaid_reason(outcome: &Result<(), TxOutcome>) -> Option<&str> {
    match outcome {
        Err(TxOutcome::NotSent(reason)) if reason.starts_with(UNPAID) => Some(reason),
        _ => None,
    }
}

impl Miner {
    /// What the supplier's balance leaves for the proof txs of a submission of `kind` (module docs): `None` for
    /// claims, when the proof fee is zero (nothing to check), or when a read fails (logged; nothing checked).
    pub(super) async fn proof_funds(&mut self, kind: TxKind, supplier: &str) -> Option<SubmissionFunds> {
        if kind != TxKind::Proof {
            return None;
        }
        let proof_fee = match self.proof_fee_upokt().await {
            Ok(fee) => fee,
            Err(e) => {
                tracing::warn!(supplier, error = %e, "cannot read the proof params: proof txs sent without a funds check");
                return None;
            }
        };
        if proof_fee == 0 {
            return None;
        }
        // The supplier's claim txs that may still land take their fee first too (same signer: ordered before
        // this one); they carry sessions no proof tx does, so no proof tx replaces them.
        let claims = self
            .pending_txs(TxKind::Claim, supplier)
            .into_iter()
            .map(|tx| (tx.keys, tx.fee));
        let pending = self
            .pending_txs(TxKind::Proof, supplier)
            .into_iter()
            .map(|tx| {
                let cost = tx.cost(proof_fee);
                (tx.keys, cost)
            })
            .chain(claims)
            .collect();
        match self.chain.spendable_balance(supplier, DENOM).await {
            Ok(left) => Some(SubmissionFunds {
                left,
                proof_fee,
                pending,
            }),
            Err(e) => {
                tracing::warn!(supplier, error = %e, "cannot read the supplier's balance: proof txs sent without a funds check");
                None
            }
        }
    }

    /// The proofs of `held` (the last ones of a tx the balance did not pay for in full, `reason`) are held back:
    /// logged at ERROR, counted, and fed to the engine as sends that never left.
    pub(super) fn hold_unpaid_proofs(
        &mut self,
        step: Step,
        supplier: &str,
        held: Vec<SessionKey>,
        reason: String,
    ) -> Step {
        tracing::error!(
            supplier,
            held = ?held.iter().map(|k| &k.session_id).collect::<Vec<_>>(),
            reason,
            "the supplier's balance cannot pay the proof submission fee of every proof due: the least valuable \
             proofs are held back (tried again at every block while their window allows); fund the operator account"
        );
        self.tx_outcome_as(
            step,
            TxKind::Proof,
            supplier,
            held,
            TxOutcome::NotSent(reason),
            INSUFFICIENT_FUNDS,
        )
    }
}

/// Takes the fees of a proof tx of `keys`' proofs that left (or may have: no answer) off `funds`.
pub(super) fn spend(
    funds: &mut Option<SubmissionFunds>,
    outcome: &Result<(), TxOutcome>,
    keys: &[SessionKey],
    tx_fee: u128,
) {
    if let Some(funds) = funds
        && matches!(outcome, Ok(()) | Err(TxOutcome::Retryable(_)))
    {
        funds.spend(keys, tx_fee, keys.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funds(left: u128, proof_fee: u128) -> ProofFunds {
        ProofFunds {
            left,
            proof_fee,
            pending: 0,
        }
    }

    fn key(id: &str) -> SessionKey {
        SessionKey {
            supplier: "pokt1s".into(),
            session_id: id.into(),
        }
    }

    fn submission(left: u128, proof_fee: u128, pending: Vec<(Vec<SessionKey>, u128)>) -> Option<SubmissionFunds> {
        Some(SubmissionFunds {
            left,
            proof_fee,
            pending,
        })
    }

    /// The k-th proof lands while the balance, the tx fee and the k − 1 proof fees before it taken, exceeds the
    /// fee: n proofs need more than T + n × fee.
    #[test]
    fn a_tx_pays_the_proofs_the_balance_exceeds_after_its_fee() {
        // 2 × 100 + 10 = 210: not above, so one proof.
        assert_eq!(funds(210, 100).proofs_paid(10, 2), 1);
        assert_eq!(funds(211, 100).proofs_paid(10, 2), 2);
        assert_eq!(funds(211, 100).proofs_paid(10, 5), 2);
        assert_eq!(funds(110, 100).proofs_paid(10, 2), 0);
        assert_eq!(funds(5, 100).proofs_paid(10, 2), 0);
        assert_eq!(funds(0, 0).proofs_paid(10, 3), 3, "no proof fee: nothing to check");
        assert_eq!(funds(210, 100).unpaid(10, 1), None);
        let reason = funds(210, 100).unpaid(10, 2).unwrap();
        assert!(reason.contains("1 of 2 proofs paid, 1upokt short"), "{reason}");
        let outcome = Err(TxOutcome::NotSent(reason.clone()));
        assert_eq!(unpaid_reason(&outcome), Some(reason.as_str()));
        assert_eq!(
            unpaid_reason(&Err(TxOutcome::NotSent("no longer the leader".into()))),
            None
        );
    }

    /// A tx that left takes its fee and its proofs' fees off what the next tx of the submission can use; one
    /// that did not (refused, not sent) takes nothing.
    #[test]
    fn a_tx_that_left_takes_its_fees_off_the_next() {
        let mut left = submission(1_000, 100, Vec::new());
        spend(&mut left, &Ok(()), &[key("a"), key("b")], 10);
        assert_eq!(left, submission(790, 100, Vec::new()));
        spend(
            &mut left,
            &Err(TxOutcome::Retryable("no answer".into())),
            &[key("c")],
            10,
        );
        assert_eq!(left, submission(680, 100, Vec::new()));
        spend(&mut left, &Err(TxOutcome::Refused("fee".into())), &[key("d")], 10);
        assert_eq!(left, submission(680, 100, Vec::new()));
        assert_eq!(left.unwrap().for_tx(&[key("d")]).proofs_paid(10, 9), 6);
    }

    /// The proof txs that may still land are paid first; one a new tx replaces (they share a session) is not
    /// counted against it, and once the new one left the larger of the two counts for the next tx.
    #[test]
    fn pending_proof_txs_are_paid_first_and_a_replaced_one_counts_once() {
        // A tx of one proof pending from an earlier block (fee 10 + 100), a stuck one of `c` (fee 400 + 100).
        let pending = vec![(vec![key("a")], 110), (vec![key("c")], 500)];
        let mut funds = submission(1_000, 100, pending);
        // For a new tx of `b`: 1,000 − 110 − 500 = 390 left, 3 proofs paid at a fee of 10.
        let for_b = funds.as_ref().unwrap().for_tx(&[key("b")]);
        assert_eq!(
            for_b,
            ProofFunds {
                left: 390,
                proof_fee: 100,
                pending: 610
            }
        );
        assert_eq!(for_b.proofs_paid(10, 9), 3);
        let reason = for_b.unpaid(10, 9).unwrap();
        assert!(reason.contains("balance 390upokt (after 610upokt of txs"), "{reason}");
        // The replacement of `c` is not held back by the tx it replaces.
        assert_eq!(funds.as_ref().unwrap().for_tx(&[key("c")]).left, 890);
        // Once it left (fee 40 + 100 < 500), the stuck one's 500 counts for the next: 1,000 − 500 − 110.
        spend(&mut funds, &Ok(()), &[key("c")], 40);
        assert_eq!(funds.as_ref().unwrap().for_tx(&[key("b")]).left, 390);
        // A replacement larger than the original counts as itself: 1,000 − 110 − 600.
        let mut funds = submission(1_000, 100, vec![(vec![key("a")], 110), (vec![key("c")], 500)]);
        spend(&mut funds, &Ok(()), &[key("c")], 500);
        assert_eq!(funds.as_ref().unwrap().for_tx(&[key("b")]).left, 290);
    }

    /// A new tx that carries a pending tx's session and another replaces nothing: if the pending one lands first
    /// x/proof charges the shared proof again (an update) and the new one besides, so both count; and a pending
    /// claim tx (its fee alone, sessions no proof tx carries) is never replaced.
    #[test]
    fn a_tx_with_another_session_or_a_pending_claim_replaces_nothing() {
        // A stuck proof tx of `c` (400 + 100), a pending claim tx of `x` (fee 30).
        let pending = vec![(vec![key("c")], 500), (vec![key("x")], 30)];
        let mut funds = submission(1_000, 100, pending);
        assert_eq!(
            funds.as_ref().unwrap().for_tx(&[key("c")]).left,
            970,
            "a re-send of c alone replaces it"
        );
        assert_eq!(
            funds.as_ref().unwrap().for_tx(&[key("c"), key("d")]).left,
            470,
            "c with d replaces nothing: the stuck tx and the claim tx both count"
        );
        // Once c + d left (fee 40 + 200), the stuck tx still counts beside it: 1,000 − 240 − 500 − 30.
        spend(&mut funds, &Ok(()), &[key("c"), key("d")], 40);
        assert_eq!(funds.as_ref().unwrap().for_tx(&[key("e")]).left, 230);
    }
}
