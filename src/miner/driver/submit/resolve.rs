//! Finding out what happened to the txs of unknown outcome (module `unknown`) before a session gets a new tx:
//! each is looked up by hash, broadcast again as the same bytes while it can still land, and only once it
//! expired and is not on chain are its sessions sent anew. Keeps such txs after a broadcast without an answer.
//!
//! One exception to "the same bytes again": a tx stuck in our node's mempool. Our node took it (code 0), but two
//! or more blocks after its first broadcast the lookup by hash finds it in no block and its same bytes answer
//! code 19 (our node still holds them). Taking that as sent used up the session's last re-send: if nobody ever
//! includes the tx (e.g. the validators' minimum gas price is above our node's, so they refuse it when it is
//! gossiped), the claim was lost or a required proof missed (slashed), and the same bytes can never help. So such
//! a re-send is not counted: the send is taken back (the engine asks again at the next block) while the tx may
//! still be merely late (full blocks: [`REPLACE_AFTER_BLOCKS`] after its first broadcast, or until the session's
//! deadline if that comes first, as a tx held up 1–3 blocks lands without a second fee). Still held then, an
//! unordered tx (the default) is replaced: its sessions are signed anew at `transaction.max_gas_price` (the price
//! is the likely cause; module `fees`) with a new unordered timeout (a new tx), which becomes their kept tx and
//! their re-send, counted in `ha_miner_txs_replaced_total{supplier,kind,reason="stuck_in_mempool"}` with a WARN.
//! The trade-off: should the stuck tx land after all, both do, one extra fee (a second claim is taken as an
//! update; a second proof fails in its block). Only a tx the lookup found in no block counts as held (a node
//! without a tx index answers code 19 for a tx already in a block too). An ordered tx cannot be replaced:
//! CometBFT does not replace by fee, and a tx of the same sequence is refused while the stuck one is in the
//! mempool. It is logged at ERROR, counted in `ha_miner_{claim,proof}_errors_total{reason="stuck_in_mempool"}`
//! and counts as sent, as before; the cure is a `transaction.gas_price` at or above the validators' minimum.

use super::broadcast::check_tx_outcome;
use super::recheck::Stale;
use super::*;

/// cosmos-sdk `ErrWrongSequence` (code 32 of codespace `sdk`).
const SEQUENCE_MISMATCH: u32 = 32;

/// cosmos-sdk `ErrTxInMempoolCache` (code 19): these very bytes are in the node's mempool or cache.
const ALREADY_IN_CACHE: u32 = 19;

/// How many blocks after its first broadcast a tx the node still holds (code 19) and no block includes is held
/// (its re-send not counted): the engine's re-send comes two blocks after a send.
const HELD_AFTER_BLOCKS: i64 = 2;

/// How many blocks after its first broadcast a held tx is taken as stuck and replaced (or, ordered, reported):
/// one held up to 3 blocks (full blocks at a window's open) lands by then with its one fee.
const REPLACE_AFTER_BLOCKS: i64 = 4;

/// What finding out about one tx of unknown outcome gave ([`Miner::resolve_one`]).
enum Resolved {
    /// The answer for the sessions asking.
    Outcome(Result<(), TxOutcome>),
    /// It can no longer land and is not on chain: a new tx is due.
    Expired,
    /// A kept proof tx whose re-broadcast would pay for nothing (module `recheck`): not sent again.
    Stale(Stale),
    /// An unordered tx stuck in the node's mempool (module docs): its sessions get a new tx at the cap.
    Stuck,
    /// A tx held in the node's mempool, maybe only late (module docs): the send is taken back, asked again at
    /// the next block.
    Held(String),
}

/// What finding out about the txs of unknown outcome left to send ([`Miner::resolve_unknown`]).
#[derive(Debug, Default)]
pub(super) struct Unresolved {
    /// Sessions whose tx can no longer land and is not on chain.
    pub(super) expired: Vec<SessionKey>,
    /// Sessions whose unordered tx is stuck in the node's mempool: signed anew at the cap.
    pub(super) stuck: Vec<SessionKey>,
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
    /// is not on chain, or is stuck in the mempool: only those get a new tx.
    pub(super) async fn resolve_unknown(
        &mut self,
        step: &mut Step,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        height: i64,
    ) -> Unresolved {
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
        let mut unresolved = Unresolved::default();
        for (tx, keys) in by_tx {
            let resolved = self.resolve_one(kind, supplier, &tx, &keys, height).await;
            // A few timeout-bounded chain calls per kept tx: progress for the watchdog (`MinerStats::steps_done`).
            self.progressed();
            match resolved {
                Resolved::Outcome(outcome) => *step = self.sent(std::mem::take(step), kind, supplier, keys, outcome),
                Resolved::Expired => unresolved.expired.extend(keys),
                Resolved::Stale(stale) => {
                    let expired = self.stale_kept_proofs(step, supplier, &tx, keys, &stale);
                    unresolved.expired.extend(expired);
                }
                Resolved::Stuck => unresolved.stuck.extend(keys),
                Resolved::Held(reason) => {
                    // Not a refusal and not an error: no error counter, the engine takes the send back.
                    let outcome = TxOutcome::NotSent(reason);
                    step.merge(self.engine.handle(Event::TxOutcome { kind, keys, outcome }));
                }
            }
        }
        unresolved
    }

    /// What happened to `tx`, whose broadcast got no answer: `Ok` when it is in a block with its messages run
    /// (code 0), a refusal when they failed there (its fee paid, nothing done: the send is undone), or a
    /// node has it now (the same bytes broadcast again: accepted, or code 19, already in its mempool or cache),
    /// `Retryable` while still no node answers (kept), a node's refusal of the bytes, or `Expired` when the node
    /// refused them and they can no longer be included (their timeout passed): a new tx is due. A proof tx is
    /// checked again before its bytes go out again (module `recheck`): `Stale` when they would pay for nothing.
    /// Code 19 two or more blocks after its first broadcast for a tx in no block: `Held`, then `Stuck` (module
    /// docs).
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
        let lookup = self.chain.get_tx(&tx.hash).await;
        // No block has it (a node without a tx index cannot tell: `Err`).
        let in_no_block = matches!(lookup, Ok(None));
        match lookup {
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
        if response.code == ALREADY_IN_CACHE
            && in_no_block
            && let Some(first) = tx
                .first_broadcast_height
                .filter(|first| height >= first + HELD_AFTER_BLOCKS)
        {
            let replace_at = (first + REPLACE_AFTER_BLOCKS).min(self.bounds(kind, keys).deadline);
            if height < replace_at {
                tracing::info!(
                    supplier,
                    ?kind,
                    tx = tx.hash,
                    blocks = height - first,
                    replace_at,
                    "a tx the node took is still in its mempool and in no block: the re-send waits for it"
                );
                return Resolved::Held(format!(
                    "tx {} still in the node's mempool and in no block {} blocks after its broadcast",
                    tx.hash,
                    height - first
                ));
            }
            return self.stuck_in_mempool(kind, supplier, tx, keys, height - first);
        }
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

    /// What a tx stuck in the node's mempool `blocks` blocks after its first broadcast gives (module docs): an
    /// unordered one is replaced at the cap (`Stuck`; counted, WARN); an ordered one cannot be (ERROR, counted),
    /// and counts as sent as before.
    fn stuck_in_mempool(
        &mut self,
        kind: TxKind,
        supplier: &str,
        tx: &SentTx,
        keys: &[SessionKey],
        blocks: i64,
    ) -> Resolved {
        let kind_label = match kind {
            TxKind::Claim => "claim",
            TxKind::Proof => "proof",
        };
        if tx.expiry.by_height() {
            tracing::error!(
                supplier,
                ?kind,
                tx = tx.hash,
                blocks,
                "an ordered tx the node took is still in its mempool and in no block: validators do not include it \
                 (likely transaction.gas_price below their minimum gas price); an ordered tx cannot be replaced \
                 while it is there. Set transaction.gas_price at or above the validators' minimum"
            );
            if let Some(m) = &self.metrics {
                let errors = match kind {
                    TxKind::Claim => &m.claim_errors,
                    TxKind::Proof => &m.proof_errors,
                };
                errors.with_label_values(&[supplier, "stuck_in_mempool"]).inc();
            }
            return Resolved::Outcome(Ok(()));
        }
        tracing::warn!(
            supplier,
            ?kind,
            tx = tx.hash,
            blocks,
            sessions = keys.len(),
            "a tx the node took is still in its mempool and in no block: validators do not include it (likely its \
             gas price); replacing it with a new tx at transaction.max_gas_price (one extra fee if both land)"
        );
        self.gas_pricing.stuck_in_mempool(kind, keys);
        if let Some(m) = &self.metrics {
            m.txs_replaced
                .with_label_values(&[supplier, kind_label, "stuck_in_mempool"])
                .inc();
        }
        Resolved::Stuck
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
