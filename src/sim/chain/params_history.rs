//! The simulator's on-chain values that change over time: knob changes applied at the next block
//! ([`ParamChange`]) and the per-height history of shared params, compute units and difficulty targets the chain
//! answers `*AtHeight` queries from (poktroll keeps the same histories; effective heights as in v0.1.35).

use super::*;

/// A change of on-chain values, applied at the next block (as the governance or service-owner tx making it would
/// be), with the effective heights poktroll v0.1.35 gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamChange {
    /// A service's `compute_units_per_relay` (`MsgAddService` by its owner): the live value changes in that
    /// block; the history entry is effective at the next session start (x/service
    /// `SnapshotServiceComputeUnitsPerRelayChange`), so a session in flight keeps the value of its start.
    ComputeUnitsPerRelay {
        /// Service id.
        service: String,
        /// The new value.
        compute_units_per_relay: u64,
    },
    /// A service's relay mining difficulty target (set at settlement on chain): live at once, effective in the
    /// history at the next session start (x/service `UpdateRelayMiningDifficulty`).
    Difficulty {
        /// Service id.
        service: String,
        /// The new 32-byte target.
        target: Vec<u8>,
    },
    /// Shared params (`MsgUpdateParams`): in the history from the next session start (x/shared
    /// `recordParamsHistory`), promoted to the live params at the end of that block; a change of no session-timing
    /// param is live at once (`ChainState::record_shared_params`).
    Shared(SharedParams),
    /// Proof params (`MsgUpdateParams`): live from that block on (no history on chain).
    Proof(wire::ProofParams),
}

impl ChainState {
    /// The shared params at `height` (poktroll `GetParamsAtHeight`: the last history entry at or before it, else
    /// the live params).
    pub fn shared_at(&self, height: i64) -> SharedParams {
        self.shared_history
            .range(..=height)
            .next_back()
            .map_or_else(|| self.shared.clone(), |(_, p)| p.clone())
    }

    /// `compute_units_per_relay` of `service` at `height` (poktroll `GetServiceComputeUnitsPerRelayAtHeight`: the
    /// last history entry at or before it, else the live value); `None` for an unknown service.
    pub fn compute_units_at(&self, service: &str, height: i64) -> Option<u64> {
        let live = self.services.get(service)?.compute_units_per_relay;
        let at = self
            .compute_units_history
            .get(service)
            .and_then(|h| h.range(..=height).next_back())
            .map(|(_, cupr)| *cupr);
        Some(at.unwrap_or(live))
    }

    /// The difficulty target of `service` at `height` (poktroll `GetRelayMiningDifficultyAtHeight`: the last
    /// history entry at or before it, else the base target); `None` for an unknown service.
    pub fn target_at(&self, service: &str, height: i64) -> Option<Vec<u8>> {
        self.services.get(service)?;
        let at = self
            .difficulty_history
            .get(service)
            .and_then(|h| h.range(..=height).next_back())
            .map(|(_, t)| t.clone());
        Some(at.unwrap_or_else(|| crate::protocol::difficulty::BASE_TARGET.to_vec()))
    }

    /// The first height of the session after the one `height` is in (poktroll `nextSessionStartHeight`).
    pub(super) fn next_session_start(&self, height: i64) -> i64 {
        crate::protocol::session::SessionGrid::new(&self.shared_at(height))
            .map_or(height + 1, |grid| grid.session_end(height) + 1)
    }

    /// poktroll `recordParamsHistory` (`x/shared/keeper/msg_server_update_param.go`, for `MsgUpdateParams` and
    /// `MsgUpdateParam` alike) in block `height`: the new params enter the history at the next session start, the
    /// grid anchor moved there only when `num_blocks_per_session` changes (else carried from the params in effect);
    /// when no session-timing param changes (`sessionTimingParamsChanged`: blocks per session, grace period, claim
    /// and proof window offsets) they are also written to the live params at once, keeping the live anchor, so
    /// `Params` answers the new compute-unit economics while `ParamsAtHeight` of the current session keeps the old
    /// ones until the boundary. A timing change waits for the shared end blocker to promote it.
    pub(super) fn record_shared_params(&mut self, height: i64, next_start: i64, mut params: SharedParams) {
        let effective = self.shared_at(height);
        if params.num_blocks_per_session != effective.num_blocks_per_session {
            params.session_grid_anchor_height = next_start;
            params.session_number_at_anchor = crate::protocol::session::SessionGrid::new(&effective)
                .map_or(1, |grid| grid.session_number(next_start));
        } else {
            params.session_grid_anchor_height = effective.session_grid_anchor_height;
            params.session_number_at_anchor = effective.session_number_at_anchor;
        }
        self.shared_history.insert(next_start, params.clone());
        let live = &self.shared;
        let timing_changed = live.num_blocks_per_session != params.num_blocks_per_session
            || live.grace_period_end_offset_blocks != params.grace_period_end_offset_blocks
            || live.claim_window_open_offset_blocks != params.claim_window_open_offset_blocks
            || live.claim_window_close_offset_blocks != params.claim_window_close_offset_blocks
            || live.proof_window_open_offset_blocks != params.proof_window_open_offset_blocks
            || live.proof_window_close_offset_blocks != params.proof_window_close_offset_blocks;
        if !timing_changed {
            params.session_grid_anchor_height = live.session_grid_anchor_height;
            params.session_number_at_anchor = live.session_number_at_anchor;
            self.shared = params;
        }
    }

    /// Applies the knobs' changes in block `height` (before its txs), with the chain's effective heights
    /// ([`ParamChange`]).
    pub(super) fn apply_pending_changes(&mut self, height: i64) {
        let next_start = self.next_session_start(height);
        for change in std::mem::take(&mut self.pending_changes) {
            match change {
                ParamChange::ComputeUnitsPerRelay {
                    service,
                    compute_units_per_relay,
                } => {
                    if let Some(svc) = self.services.get_mut(&service) {
                        svc.compute_units_per_relay = compute_units_per_relay;
                    }
                    self.compute_units_history
                        .entry(service)
                        .or_default()
                        .insert(next_start, compute_units_per_relay);
                }
                ParamChange::Difficulty { service, target } => {
                    self.targets.insert(service.clone(), target.clone());
                    self.difficulty_history
                        .entry(service)
                        .or_default()
                        .insert(next_start, target);
                }
                ParamChange::Shared(params) => self.record_shared_params(height, next_start, params),
                ParamChange::Proof(params) => self.proof = params,
            }
        }
    }
}
