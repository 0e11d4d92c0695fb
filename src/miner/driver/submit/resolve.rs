//! Finding out what happened to the txs of unknown outcome (module `unknown`) before a session gets a new tx:
//! each is looked up by hash, broadcast again as the same bytes while it can still land, and only once it
//! expired and is not on chain are its sessions sent anew. Keeps such txs after a broadcast without an answer.

use super::broadcast::check_tx_outcome;
use super::recheck::Stale;
use super::*;

/// cosmos-sdk `ErrWrongSequence` (code 32 of codespace `sdk`).
const SEQUENCE_MISMATCH: u32 = 32;

/// What finding out about one tx of unknown outcome gave ([`Miner::resolve_one`]).
enum Resolved {
    /// The answer for the sessions asking.
    Outcome(Result<(), TxOutcome>),
    /// It can no longer land and is not on chain: a new tx is due.
    Expired,
    /// A kept proof tx whose re-broadcast would pay for nothing (module `recheck`): not sent again.
    Stale(Stale),
}

impl Miner {
    /// Forgets the txs of unknown outcome of sessions that will not send that kind of message again (claimed,
    /// proved, expired or pruned): nothing asks about them any more.
    pub(super) fn forget_unknown_txs_of_done_sessions(&mut self) {
        let engine = &self.engine;
        self.unknown_txs.retain(|kind, key| {
            let sending = match kind {
                TxKind::Claim => State::Claiming,
                TxKind::Proof => State::Proving,
            };
            engine.session(key).is_some_and(|r| r.state == sending)
        });
        self.gas_pricing.retain_out_of_gas(|kind, key| {
            let sending = match kind {
                TxKind::Claim => State::Claiming,
                TxKind::Proof => State::Proving,
            };
            engine.session(key).is_some_and(|r| r.state == sending)
        });
    }

    /// Finds out what happened to the txs of unknown outcome that carry `keys`' messages, one answer per tx fed to
    /// the engine for the sessions of `keys` it carries, and returns the sessions whose tx can no longer land and
    /// is not on chain: only those get a new tx.
    pub(super) async fn resolve_unknown(
        &mut self,
        step: &mut Step,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        height: i64,
    ) -> Vec<SessionKey> {
        let mut by_tx: Vec<(std::sync::Arc<SentTx>, Vec<SessionKey>)> = Vec::new();
        for key in keys {
            let Some(tx) = self.unknown_txs.get(kind, &key) else {
                continue;
            };
            match by_tx.iter_mut().find(|(t, _)| t.hash == tx.hash) {
                Some((_, carried)) => carried.push(key),
                None => by_tx.push((tx, vec![key])),
            }
        }
        let mut expired = Vec::new();
        for (tx, keys) in by_tx {
            match self.resolve_one(kind, supplier, &tx, &keys, height).await {
                Resolved::Outcome(outcome) => *step = self.sent(std::mem::take(step), kind, supplier, keys, outcome),
                Resolved::Expired => expired.extend(keys),
                Resolved::Stale(stale) => expired.extend(self.stale_kept_proofs(step, supplier, &tx, keys, &stale)),
            }
        }
        expired
    }

    /// What happened to `tx`, whose broadcast got no answer: `Ok` when it is in a block with its messages run
    /// (code 0), a refusal when they failed there (its fee paid, nothing done: the send is undone), or a
    /// node has it now (the same bytes broadcast again: accepted, or code 19, already in its mempool or cache),
    /// `Retryable` while still no node answers (kept), a node's refusal of the bytes, or `Expired` when the node
    /// refused them and they can no longer be included (their timeout passed): a new tx is due. A proof tx is
    /// checked again before its bytes go out again (module `recheck`): `Stale` when they would pay for nothing.
    ///
    /// Only the entries of `keys` (the sessions asking now) are forgotten once the answer is known: the tx may
    /// carry other sessions' messages whose own attempts come as separate submits (the lookups after a failover
    /// repeat each session's send on its own). Each finds out for itself (the tx in a block, or the same bytes
    /// again: code 19); forgetting theirs here would have them build a new tx that lands beside this one, a second
    /// claim or proof of the session and a second fee.
    async fn resolve_one(
        &mut self,
        kind: TxKind,
        supplier: &str,
        tx: &SentTx,
        keys: &[SessionKey],
        height: i64,
    ) -> Resolved {
        match self.chain.get_tx(&tx.hash).await {
            Ok(Some(included)) if included.code != 0 => {
                // In a block, but its messages failed there (out of gas, a message the block's state refused):
                // its fee is paid and nothing happened. Taken as made, it spent the send being repeated (after a
                // failover, the inherited re-send: nothing was sent again, the claim lost or the proof slashed). A
                // refusal undoes the send; the next block's lookup decides whether a new tx is due, as after a tx
                // that failed in its block right after its broadcast.
                tracing::warn!(
                    supplier,
                    tx = tx.hash,
                    height = included.height,
                    code = included.code,
                    log = included.raw_log,
                    "a tx whose broadcast got no answer failed in its block: its messages did nothing"
                );
                if fees::is_out_of_gas(included.code, &included.codespace) {
                    // Rule "out of gas doubles" (`fees::fixed_gas_limit`): the same limit would fail the same way.
                    self.gas_pricing.ran_out_of_gas(kind, keys);
                }
                self.unknown_txs.forget_all(kind, keys);
                let holders = self.kept_txs.drop_tx(&tx.hash);
                self.kept_changed.extend(holders);
                return Resolved::Outcome(Err(TxOutcome::Refused(format!(
                    "tx {} failed in block {} with code {}: {}",
                    tx.hash, included.height, included.code, included.raw_log
                ))));
            }
            Ok(Some(included)) => {
                tracing::info!(
                    supplier,
                    tx = tx.hash,
                    height = included.height,
                    "a tx whose broadcast got no answer is in a block"
                );
                self.unknown_txs.forget_all(kind, keys);
                return Resolved::Outcome(Ok(()));
            }
            Ok(None) => {}
            // A node without a tx index cannot tell; the broadcast below still can (code 19 for a tx it has).
            Err(e) => tracing::debug!(supplier, tx = tx.hash, error = %e, "cannot look up a tx of unknown outcome"),
        }
        if kind == TxKind::Proof {
            match self.recheck_kept_proofs(supplier, tx).await {
                Ok(None) => {}
                Ok(Some(stale)) => return Resolved::Stale(stale),
                Err(e) => return Resolved::Outcome(Err(TxOutcome::NotSent(e.to_string()))),
            }
        }
        if let Err(e) = self.confirm_leadership_before_sending().await {
            return Resolved::Outcome(Err(TxOutcome::NotSent(match e {
                SequenceError::NotSent(reason) => reason,
                other => other.to_string(),
            })));
        }
        let response = match self.chain.broadcast(tx.bytes.clone()).await {
            Ok(response) => response,
            Err(e) => {
                return Resolved::Outcome(Err(TxOutcome::Retryable(format!(
                    "broadcasting tx {} again: {e}",
                    tx.hash
                ))));
            }
        };
        self.unknown_txs.forget_all(kind, keys);
        if check_tx_outcome(&response).is_err() {
            // Refused now: it is not kept any more (if it expired, a new tx replaces it; else the engine takes the
            // refusal as for any tx).
            let holders = self.kept_txs.drop_tx(&tx.hash);
            self.kept_changed.extend(holders);
        }
        match check_tx_outcome(&response) {
            Ok(()) => {
                tracing::info!(
                    supplier,
                    tx = tx.hash,
                    code = response.code,
                    "a tx whose broadcast got no answer was broadcast again: the node has it"
                );
                Resolved::Outcome(Ok(()))
            }
            Err(refusal) if self.unknown_tx_expired(tx, height).await => {
                tracing::info!(
                    supplier,
                    tx = tx.hash,
                    ?refusal,
                    "a tx whose broadcast got no answer can no longer land and is not on chain: a new tx is built"
                );
                Resolved::Expired
            }
            // Code 32 on our own kept bytes is not another instance's tx (an HA conflict would keep the send as
            // made): the account's sequence is no longer the tx's. Used by another tx of ours, the kept one can
            // never land; used by the kept one itself (a block took it since the lookup), the chain shows the
            // claim or proof at the next lookup. Either way the send did not happen now: a refusal undoes it, and
            // the next block's lookup decides whether a new tx is due. Taken as a conflict, it spent the session's
            // last re-send after a failover and nothing was sent again: a claim lost, a proof slashed.
            Err(_) if response.code == SEQUENCE_MISMATCH => Resolved::Outcome(Err(TxOutcome::Refused(format!(
                "the tx kept since its broadcast got no answer has a sequence the account no longer expects: {}",
                response.raw_log
            )))),
            Err(refusal) => Resolved::Outcome(Err(refusal)),
        }
    }

    /// Whether no block after the latest one (`height`) can include `tx` (its time read from the block at
    /// `height`; a block that cannot be read counts as not expired, so no second tx is built on a guess).
    async fn unknown_tx_expired(&self, tx: &SentTx, height: i64) -> bool {
        let time = if tx.expiry.by_height() {
            tx::Timestamp::default()
        } else {
            match self.chain.block(height).await {
                Ok(block) => tx::Timestamp {
                    seconds: block.time.seconds,
                    nanos: block.time.nanos,
                },
                Err(_) => return false,
            }
        };
        tx.expiry.passed(height, time)
    }

    /// Keeps the tx just handed to the node when its broadcast got no answer (`Retryable`): the node may have it.
    pub(super) fn keep_if_unknown(
        &mut self,
        kind: TxKind,
        supplier: &str,
        keys: &[SessionKey],
        outcome: &Result<(), TxOutcome>,
        signed: &Signed,
    ) {
        if let (Err(TxOutcome::Retryable(reason)), Some(tx)) = (outcome, signed.sent()) {
            tracing::warn!(
                supplier,
                ?kind,
                tx = tx.hash,
                reason,
                "no answer to a broadcast: the tx is kept, the next attempt finds out what happened to it before \
                 building a new one"
            );
            self.unknown_txs.insert(kind, keys, tx);
        }
    }
}
