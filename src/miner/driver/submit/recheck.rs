//! Checking a kept proof tx again before its same bytes are broadcast again (module `resolve`).
//!
//! Why: a kept tx's bytes go out again without Simulate, whatever `transaction.gas_limit` says, and CheckTx runs
//! only the ante checks. Its proofs were required when it was built, but poktroll decides the requirement with its
//! live proof params when the proof runs (spec §5.4 (12), §6.3): governance changing them between the first
//! broadcast and the re-broadcast makes the chain refuse the proof in its block, and the tx's messages run
//! atomically, so one such proof fails the whole tx, its fee paid and nothing proven. A proof already on chain
//! (its claim's proof validated: the first broadcast landed, though the tx could not be found by hash) is upserted
//! again by another tx, a fee for nothing. So before the bytes leave again, every session whose proof they carry
//! (read from the bytes: the tx may carry sessions not asking now) is checked: its claim's proof validated on
//! chain, then the requirement from that claim ([`Miner::proof_required_by`], the check
//! `Command::CheckProofRequirement` makes).
//!
//! When any is on chain or not required, the bytes are not sent again and the kept tx is dropped: a session asking
//! whose proof is on chain counts as sent (as when its tx is found in a block), one whose proof is not required is
//! settled without it (as when the check before a build says so), and one still due gets a new tx without the
//! others' messages. A check that cannot be made (a chain read failing) lets the bytes go: a fee for a proof the
//! chain may refuse costs less than a required proof never sent (a slash). A window that passed needs no check
//! here: such a session is not sent at all (`submit_due`), and the tx's `timeout_height` is its window's close.

use super::*;

/// The sessions whose proofs a kept tx carries that make its re-broadcast pay for nothing.
#[derive(Debug, Default)]
pub(super) struct Stale {
    /// Their proof on chain already (the claim's proof validated).
    on_chain: Vec<SessionKey>,
    /// Their proof no longer required by the chain.
    not_required: Vec<SessionKey>,
}

/// The (supplier, session) of every `MsgSubmitProof` in the signed tx `bytes` (none when they do not decode).
fn proofs_carried(bytes: &[u8]) -> Vec<SessionKey> {
    use prost::Message as _;
    let Ok(raw) = tx::TxRaw::decode(bytes) else {
        return Vec::new();
    };
    let Ok(body) = tx::TxBody::decode(raw.body_bytes.as_slice()) else {
        return Vec::new();
    };
    body.messages
        .iter()
        .filter(|m| m.type_url == wire::MSG_SUBMIT_PROOF_TYPE_URL)
        .filter_map(|m| wire::MsgSubmitProof::decode(m.value.as_slice()).ok())
        .filter_map(|m| {
            Some(SessionKey {
                session_id: m.session_header?.session_id,
                supplier: m.supplier_operator_address,
            })
        })
        .collect()
}

impl Miner {
    /// Checks every proof the kept tx `tx` carries (module docs): `None` when its bytes may be broadcast again,
    /// else the sessions that make it pay for nothing. Fails only when storage fenced this miner out (reading a
    /// trie); any other failed check lets the bytes go.
    pub(super) async fn recheck_kept_proofs(
        &mut self,
        supplier: &str,
        tx: &SentTx,
    ) -> Result<Option<Stale>, MinerError> {
        let mut stale = Stale::default();
        for key in proofs_carried(&tx.bytes) {
            // Pinned to the tip, falling back to a node behind (`claim_at_tip`): one that does not show the proof
            // validated yet only lets the bytes go, as they went without this check.
            let on_chain = match self.chain.claim_at_tip(&key.session_id, &key.supplier).await {
                Ok(answer)
                    if answer.claim.as_ref().is_some_and(|claim| {
                        claim.proof_validation_status == wire::ClaimProofStatus::Validated as i32
                    }) =>
                {
                    stale.on_chain.push(key);
                    continue;
                }
                // A claim read below the tip may be an older version of it (module `requirement`): the local
                // root decides the requirement.
                Ok(answer) if answer.behind().is_some() => None,
                Ok(answer) => answer.claim,
                Err(e) => {
                    tracing::debug!(supplier, session = key.session_id, error = %e, "cannot read the claim of a kept proof");
                    None
                }
            };
            // The requirement from that claim, as the chain decides it (module `requirement`); from the local
            // trie's root only when it could not be read.
            match self.proof_required_by(&key, on_chain).await {
                Ok(true) => {}
                Ok(false) => stale.not_required.push(key),
                Err(e) if e.is_fenced() => return Err(e),
                Err(e) => tracing::warn!(
                    supplier,
                    session = key.session_id,
                    tx = tx.hash,
                    error = %e,
                    "cannot check again whether a kept proof is still required; its tx is broadcast again"
                ),
            }
        }
        if stale.on_chain.is_empty() && stale.not_required.is_empty() {
            return Ok(None);
        }
        tracing::info!(
            supplier,
            tx = tx.hash,
            on_chain = ?stale.on_chain.iter().map(|k| &k.session_id).collect::<Vec<_>>(),
            not_required = ?stale.not_required.iter().map(|k| &k.session_id).collect::<Vec<_>>(),
            "a kept proof tx is not broadcast again: it would pay its fee for a proof on chain already or no longer \
             required"
        );
        Ok(Some(stale))
    }

    /// Answers the sessions `keys` asking about the kept proof tx `tx` that is not broadcast again (`stale`): the
    /// tx is forgotten and dropped from storage, a session whose proof is on chain counts as sent, one whose proof
    /// is not required is settled without it; returns the others, due a new tx.
    pub(super) fn stale_kept_proofs(
        &mut self,
        step: &mut Step,
        supplier: &str,
        tx: &SentTx,
        keys: Vec<SessionKey>,
        stale: &Stale,
    ) -> Vec<SessionKey> {
        self.unknown_txs.forget_all(TxKind::Proof, &keys);
        let holders = self.kept_txs.drop_tx(&tx.hash);
        self.kept_changed.extend(holders);
        let (landed, keys): (Vec<SessionKey>, Vec<SessionKey>) =
            keys.into_iter().partition(|key| stale.on_chain.contains(key));
        let (not_required, due): (Vec<SessionKey>, Vec<SessionKey>) =
            keys.into_iter().partition(|key| stale.not_required.contains(key));
        if !landed.is_empty() {
            *step = self.sent(std::mem::take(step), TxKind::Proof, supplier, landed, Ok(()));
        }
        for key in not_required {
            let reason = "the chain no longer requires the proof (checked before its kept tx was broadcast again)";
            *step = self.proof_not_required(std::mem::take(step), supplier, key, reason);
        }
        due
    }
}
