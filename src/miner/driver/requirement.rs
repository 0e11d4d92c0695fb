//! Whether the chain requires a session's proof: decided from the claim as the chain holds it, with the chain's
//! proof params, read once per block, and the watch that re-checks sessions decided "no proof required" when they
//! change.
//!
//! Why the claim on chain: poktroll decides the requirement (`ProofRequirementForClaim`, spec §6.3) from its
//! stored claim: the root's sum is the compute units compared with `proof_requirement_threshold`, and the hash of
//! the claim (supplier, header, root) seeds the probabilistic draw. The local trie's root is that claim's only when
//! this miner's trie built it: a claim another or an older leader submitted (Redis HA, a failover), or a trie
//! rebuilt differently, has another root, and a decision from the local one may skip a proof the chain requires (a
//! slash) or send one it refuses (a fee) and count the session lost. So the claim is read from the chain (unpinned,
//! as before a proof's build: a claim's root never changes once its window closed); the local root is used only
//! when that read fails or finds no claim (a node behind), the decision made before this module read the chain.
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

use prost::Message as _;

use super::{Event, Miner, MinerError};
use crate::miner::lifecycle::SessionKey;
use crate::protocol::lottery;
use crate::protocol::session::SessionWindows;
use crate::protocol::wire;
use crate::smst::hash::sum_count;

impl Miner {
    /// Whether the chain requires `key`'s proof (spec §6.3), decided from its claim as the chain holds it (module
    /// docs), else from the local trie's root.
    pub(super) async fn proof_required(&mut self, key: &SessionKey) -> Result<bool, MinerError> {
        // Pinned to the tip this miner acts on: a node behind could still show an older version of a claim
        // overwritten in its window (another root, another draw); such an answer is not the chain's claim, so
        // the local root decides as when the read fails.
        let on_chain = match self.chain.claim_at_tip(&key.session_id, &key.supplier).await {
            Ok(answer) if answer.behind().is_some() => {
                tracing::debug!(
                    supplier = key.supplier,
                    session = key.session_id,
                    behind = ?answer.behind(),
                    "the claim was read from a node behind the tip: its proof requirement is decided from the local \
                     trie's root"
                );
                None
            }
            Ok(answer) => answer.claim,
            Err(e) => {
                tracing::warn!(
                    supplier = key.supplier,
                    session = key.session_id,
                    error = %e,
                    "cannot read the claim on chain: its proof requirement is decided from the local trie's root"
                );
                None
            }
        };
        self.proof_required_by(key, on_chain).await
    }

    /// [`Self::proof_required`] with the claim `on_chain` already read from the chain: `None` when that read
    /// failed or found no claim, and then (only then) the local trie's root decides, as the chain's claim cannot
    /// be had (a node behind that does not show the claim yet; a claim the chain does not hold needs no proof,
    /// but deciding "not required" on a node's lag could skip a required one, so the local claim, this miner's
    /// own, stands in).
    pub(super) async fn proof_required_by(
        &mut self,
        key: &SessionKey,
        on_chain: Option<wire::Claim>,
    ) -> Result<bool, MinerError> {
        let on_chain = on_chain.and_then(|claim| {
            let root = <[u8; 48]>::try_from(claim.root_hash.as_slice()).ok()?;
            claim.session_header.as_ref()?;
            // Hashed for the draw as the chain hashes it: without its proof status (spec §6.3).
            let claim = wire::Claim {
                proof_validation_status: 0,
                ..claim
            };
            Some((claim, root))
        });
        let (claim, root) = match on_chain {
            Some(claim) => claim,
            None => self.claim_of(key).await?,
        };
        let header = claim.session_header.clone().unwrap_or_default();
        let params = self.chain.shared_params_at(header.session_end_block_height).await?;
        let windows = SessionWindows::new(&params, header.session_end_block_height)
            .map_err(|e| MinerError::Corrupt(e.to_string()))?;
        let seed = self.chain.block(windows.proof_seed_height()).await?;
        let start_params = self.chain.shared_params_at(header.session_start_block_height).await?;
        let target = self
            .chain
            .difficulty_target_at(&header.service_id, header.session_start_block_height)
            .await?;
        let (sum, _) = sum_count(&root);
        let claimed = lottery::claimed_upokt(
            sum,
            &target,
            start_params.compute_units_to_tokens_multiplier,
            start_params.compute_unit_cost_granularity,
        )
        .unwrap_or_default();
        let proof_params = self.block_proof_params().await?;
        let reason = lottery::proof_requirement(&claim.encode_to_vec(), &seed.hash, &claimed, &proof_params);
        if reason == lottery::ProofRequirementReason::NotRequired
            && self.watched_proof_params.as_ref() != Some(&proof_params)
        {
            // Decided with params the watch has not seen: the decisions before it are re-checked against these.
            self.watched_proof_params = None;
        }
        Ok(reason != lottery::ProofRequirementReason::NotRequired)
    }

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
