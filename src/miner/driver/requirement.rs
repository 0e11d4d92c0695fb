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
//! engine's height, and the watch reads them before the block's own checks run: so the params each decision
//! used are the ones the next block's watch compares against, and no change between a decision and the watch
//! goes unseen. The first read after a start compares against nothing and so re-checks every restored session
//! once (their decisions were made with params this process never saw).

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

    /// At a new block, before its commands run: when a session decided "no proof" could still be proven and
    /// the proof params are not those of the last read, every such session is checked again. A failed read is
    /// only logged: the block's work goes on, and the next block compares against the last params read.
    pub(super) async fn watch_proof_params(&mut self) -> Result<(), MinerError> {
        if !self.engine.proof_requirement_revisable() {
            return Ok(());
        }
        let previous = self.proof_params.as_ref().map(|(_, p)| p.clone());
        let current = match self.block_proof_params().await {
            Ok(params) => params,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the proof params; sessions decided \"no proof\" are checked again at a later block");
                return Ok(());
            }
        };
        if previous.as_ref() == Some(&current) {
            return Ok(());
        }
        if previous.is_some() {
            tracing::info!(
                probability = current.proof_request_probability,
                threshold = ?current.proof_requirement_threshold,
                "the chain's proof params changed: sessions decided \"no proof required\" are checked again"
            );
        }
        let step = self.engine.handle(Event::ProofParamsChanged);
        self.execute(step).await
    }
}
