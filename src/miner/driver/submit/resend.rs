//! The leader's re-send of a claim or proof whose tx a node took (CheckTx code 0) and that the chain does not
//! show two blocks after the send (the engine's re-send, `lifecycle::CLAIM_RESEND_SPACING`). A node's code 0
//! promises no block: with full blocks, or proposers whose mempools are behind the node's, the tx lands blocks
//! later, and a new tx signed beside it (another timeout or sequence, another hash) lands too: the chain takes
//! a second claim of a session as an update of the first (poktroll `MsgCreateClaim` upserts, as `MsgSubmitProof`
//! does) and charges both fees. So the re-send first finds out about the tx it kept (module `kept`):
//!
//! 1. Looked up by hash: in a block with code 0, its outcome is taken (the next lookup confirms the message), no
//!    new tx; failed in its block, a new tx is built in the same attempt.
//! 2. Its same bytes are broadcast again (no new fee) only while they can still land and a later height of the
//!    window is left for a new tx should they not: the engine's height is below the last sending height
//!    (`claim_close` / `proof_close` − `submission_buffer_blocks`) and the next two blocks can include them
//!    (`Expiry::lasts_two_more_blocks`). Taken again (code 0: the node had dropped them) they are this re-send.
//!    Answered code 19 (already in the node's mempool cache) they are most likely waiting: nothing new is signed
//!    and the re-send is taken back (`TxOutcome::Waiting`), so the engine's one re-send is not used up and the
//!    next block asks again. Refused (a fee raised, a sequence moved, a timeout passed, mempool full) or no
//!    answer, a new tx is built in the same attempt.
//! 3. At the last sending height, or with a timeout too close, a new tx is built, as before this module.
//!
//! Why not trust code 19 to the end: CometBFT answers it for bytes in its cache, which is not its mempool (how
//! long a tx stays cached after it left the mempool depends on the node's version and settings), and what one
//! node holds says nothing of what the proposers will include. Trusted at the last sending height, that would lose the session's reward
//! (a claim) or get the supplier slashed (a proof); a second fee is the smaller loss. So a tx that lands two or
//! more blocks late still costs a second fee when the engine's re-send falls on the last sending height: with
//! the default windows (`claim_close` = `claim_open` + 4, `claim_delay_blocks` = 1, a buffer of 1) the claim's
//! re-send always does.

use std::sync::Arc;

use super::unknown::SentTx;
use super::{Miner, check_tx_outcome};
use crate::chain::query::ChainTip;
use crate::chain::tx;
use crate::miner::lifecycle::{SessionKey, Step, TxKind, TxOutcome};

/// What a re-send found out about a kept tx.
enum Recheck {
    /// In a block with code 0: its message is on chain (the next lookup confirms it).
    Landed,
    /// Its same bytes broadcast again were taken (code 0): the node had dropped them; this is the re-send.
    TakenAgain,
    /// Its same bytes broadcast again were answered code 19: it waits in the node's mempool cache.
    Waiting(String),
    /// This miner no longer leads: nothing left.
    NotSent(String),
    /// It cannot be relied on (failed in its block, refused, no answer, too close to its timeout or to the
    /// window's last sending height): a new tx is built now.
    NewTx,
}

/// CometBFT's "tx already exists in cache", as the SDK's broadcast answers it (`ErrTxInMempoolCache`).
const IN_MEMPOOL_CACHE: u32 = 19;

impl Miner {
    /// Splits `keys` into the sessions whose message of `kind` a kept tx carries (module `kept`: it left for them
    /// and its outcome is not known) and the others.
    pub(super) fn split_kept(&self, kind: TxKind, keys: Vec<SessionKey>) -> (Vec<SessionKey>, Vec<SessionKey>) {
        keys.into_iter()
            .partition(|key| self.kept_txs.carrying(kind, key).is_some())
    }

    /// Finds out about the kept txs carrying `keys`' messages (module docs), one answer per tx fed to the engine
    /// for the sessions of `keys` it carries, and returns the sessions that get a new tx now.
    pub(super) async fn recheck_kept(
        &mut self,
        step: &mut Step,
        kind: TxKind,
        supplier: &str,
        keys: Vec<SessionKey>,
        tip: &ChainTip,
    ) -> Vec<SessionKey> {
        let mut by_tx: Vec<(Arc<SentTx>, Vec<SessionKey>)> = Vec::new();
        for key in keys {
            let Some(tx) = self.kept_txs.carrying(kind, &key) else {
                continue;
            };
            match by_tx.iter_mut().find(|(t, _)| t.hash == tx.hash) {
                Some((_, carried)) => carried.push(key),
                None => by_tx.push((Arc::new(tx), vec![key])),
            }
        }
        let mut new_tx = Vec::new();
        for (tx, keys) in by_tx {
            let found = self.recheck_one(kind, supplier, &tx, &keys, tip).await;
            let taken = std::mem::take(step);
            *step = match found {
                Recheck::Landed => self.tx_outcome(taken, kind, supplier, keys, TxOutcome::Broadcast),
                Recheck::TakenAgain => self.sent(taken, kind, supplier, keys, Ok(())),
                Recheck::Waiting(reason) => self.tx_outcome(taken, kind, supplier, keys, TxOutcome::Waiting(reason)),
                Recheck::NotSent(reason) => self.tx_outcome(taken, kind, supplier, keys, TxOutcome::NotSent(reason)),
                Recheck::NewTx => {
                    new_tx.extend(keys);
                    taken
                }
            };
        }
        new_tx
    }

    /// [`Self::recheck_kept`] for one kept tx carrying `keys`' messages.
    async fn recheck_one(
        &mut self,
        kind: TxKind,
        supplier: &str,
        tx: &SentTx,
        keys: &[SessionKey],
        tip: &ChainTip,
    ) -> Recheck {
        match self.chain.get_tx(&tx.hash).await {
            Ok(Some(included)) if included.code == 0 => {
                tracing::info!(
                    supplier,
                    ?kind,
                    tx = tx.hash,
                    height = included.height,
                    "re-send: the kept tx is in a block; no new tx"
                );
                return Recheck::Landed;
            }
            Ok(Some(included)) => {
                tracing::warn!(
                    supplier,
                    ?kind,
                    tx = tx.hash,
                    height = included.height,
                    code = included.code,
                    log = included.raw_log,
                    "re-send: the kept tx failed in its block; a new tx is built"
                );
                self.drop_kept(&tx.hash);
                return Recheck::NewTx;
            }
            Ok(None) => {}
            // A node without a tx index cannot tell; the broadcast below still can.
            Err(e) => tracing::debug!(supplier, tx = tx.hash, error = %e, "re-send: cannot look up the kept tx"),
        }
        let deadline = self.bounds(kind, keys).deadline;
        if tip.height >= deadline {
            tracing::info!(
                supplier,
                ?kind,
                tx = tx.hash,
                height = tip.height,
                "re-send at the window's last sending height: a new tx is built beside the kept one, which may \
                 still land (a second fee then, not a lost session)"
            );
            return Recheck::NewTx;
        }
        if !self.lasts_two_more_blocks(tx, tip).await {
            tracing::info!(
                supplier,
                ?kind,
                tx = tx.hash,
                "re-send: the kept tx may time out before a block includes it; a new tx is built"
            );
            return Recheck::NewTx;
        }
        if let Err(e) = self.confirm_leadership_before_sending().await {
            return Recheck::NotSent(e.to_string());
        }
        let response = match self.chain.broadcast(tx.bytes.clone()).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(supplier, ?kind, tx = tx.hash, error = %e, "re-send: no answer to the kept tx's bytes; a new tx is built");
                return Recheck::NewTx;
            }
        };
        match response.code {
            0 => {
                tracing::info!(
                    supplier,
                    ?kind,
                    tx = tx.hash,
                    "re-send: the node had dropped the kept tx and took its same bytes again"
                );
                Recheck::TakenAgain
            }
            IN_MEMPOOL_CACHE => {
                tracing::info!(
                    supplier,
                    ?kind,
                    tx = tx.hash,
                    height = tip.height,
                    deadline,
                    "re-send: the kept tx is still in the node's mempool cache; nothing new signed, asked again at \
                     the next block"
                );
                Recheck::Waiting(format!("tx {} still in the node's mempool cache (code 19)", tx.hash))
            }
            _ => {
                let refusal = check_tx_outcome(&response);
                tracing::info!(
                    supplier,
                    ?kind,
                    tx = tx.hash,
                    ?refusal,
                    "re-send: the node refuses the kept tx's bytes now; a new tx is built"
                );
                self.drop_kept(&tx.hash);
                Recheck::NewTx
            }
        }
    }

    /// Whether the next two blocks after `tip` can include `tx` (`Expiry::lasts_two_more_blocks`); an unordered
    /// tx's block interval is read from the block before the tip (a block that cannot be read counts as no: a
    /// new tx is built rather than the session bet on a guess).
    async fn lasts_two_more_blocks(&self, tx: &SentTx, tip: &ChainTip) -> bool {
        let time = tx::Timestamp {
            seconds: tip.time.seconds,
            nanos: tip.time.nanos,
        };
        if tx.expiry.by_height() {
            return tx.expiry.lasts_two_more_blocks(tip.height, time, 0);
        }
        let Ok(previous) = self.chain.block(tip.height - 1).await else {
            return false;
        };
        let nanos = |seconds: i64, nanos: i32| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        let interval =
            (nanos(tip.time.seconds, tip.time.nanos) - nanos(previous.time.seconds, previous.time.nanos)).max(0);
        tx.expiry.lasts_two_more_blocks(tip.height, time, interval)
    }

    /// Drops the kept tx `hash` (it can no longer land, or a new tx replaces it); its holder's record is written
    /// again without it.
    fn drop_kept(&mut self, hash: &str) {
        let holders = self.kept_txs.drop_tx(hash);
        self.kept_changed.extend(holders);
    }
}
