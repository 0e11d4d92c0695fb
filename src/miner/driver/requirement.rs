//! The chain's proof params, read once per block, and the watch that re-checks sessions decided "no proof
//! required" when they change.
//!
//! Why: poktroll decides whether a claim needs a proof (`ProofRequirementForClaim`, spec §6.3) with its *live*
//! proof params, both when a proof is submitted and again at settlement; the chain keeps no history of them.
//! The miner decides at the proof seed block. If governance lowers `proof_requirement_threshold` or raises
//! `proof_request_probability` between that decision and the settlement, a session decided "no proof" is
//! required one at settlement, and its claim expires for want of a proof (the whole session's reward, and a
//! slash). So while a session so decided can still be proven (up to `proof_close − buffer`,
//! [`crate::miner::lifecycle::Engine::proof_requirement_revisable`]), the params are compared block by block, and
//! a change sends [`Event::ProofParamsChanged`]: the engine checks those sessions again and proves the ones now
//! required. A change after the last send height cannot be acted on by anyone.
//!
//! Every requirement check of a block reads the params through [`Miner::block_proof_params`], cached for the
//! engine's height. The watch runs after the block's own commands (its claims and proofs are not delayed by
//! re-checks, and a failed re-check never costs the block's submissions) against its own baseline,
//! `watched_proof_params`: the params every session decided "no proof" is known to have been decided or
//! re-checked with. It is moved only when every re-check of a change succeeded, so a failed one is asked again
//! at the next block; a decision made with params other than the baseline, a start and a new leadership clear
//! it, so the sessions decided before are re-checked against the params in force (their decisions may have
//! used params this process never compared).

use super::{Event, Miner, MinerError};
use crate::protocol::wire;

impl Miner {
    /// The chain's proof params for the engine's current height: read once per height (a few dozen bytes),
    /// shared by that height's requirement checks and the watch.
    pub(super) async fn block_proof_params(&mut self) -> Result<wire::ProofParams, MinerError> {
        let height = self.engine.height();
        if let Some((at, params)) = &self.proof_params
            && *at == height
        {
            return Ok(params.clone());
        }
        let params = self.chain.proof_params().await?;
        self.proof_params = Some((height, params.clone()));
        Ok(params)
    }

    /// At a new block, after its commands ran: when a session decided "no proof" could still be proven and the
    /// proof params differ from the baseline (or it is unknown), every such session is checked again, and the
    /// baseline moves to the params read once all checks succeeded. Nothing here fails the tick: a failed read
    /// or check is logged and retried at the next block.
    pub(super) async fn watch_proof_params(&mut self) {
        if !self.engine.proof_requirement_revisable() {
            return;
        }
        let current = match self.block_proof_params().await {
            Ok(params) => params,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the proof params; sessions decided \"no proof\" are checked again at the next block");
                return;
            }
        };
        if self.watched_proof_params.as_ref() == Some(&current) {
            return;
        }
        if self.watched_proof_params.is_some() {
            tracing::info!(
                probability = current.proof_request_probability,
                threshold = ?current.proof_requirement_threshold,
                "the chain's proof params changed: sessions decided \"no proof required\" are checked again"
            );
        }
        let step = self.engine.handle(Event::ProofParamsChanged);
        match self.execute(step).await {
            Ok(()) => self.watched_proof_params = Some(current),
            Err(e) => {
                tracing::warn!(error = %e, "re-checking the proof requirement of sessions decided \"no proof\" failed; retried at the next block")
            }
        }
    }
}
