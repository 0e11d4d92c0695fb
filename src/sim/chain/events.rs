//! The simulator's settlement events, shaped as poktroll v0.1.35 emits them through cosmos-sdk's
//! `TypedEventToEvent` (`x/tokenomics/keeper/settle_pending_claims.go`, `token_logic_modules.go`,
//! `proto/pocket/tokenomics/event.proto`):
//! one attribute per proto field, keys sorted, each value the field's proto-JSON (strings and 64-bit integers
//! quoted, 32-bit integers bare, enums by name), then `mode` = `EndBlock` appended by the SDK's `FinalizeBlock`.
//! Written from the proto and the SDK, apart from the miner's reader (`crate::chain::settlement`), so a shape
//! mistake on one side is not mirrored on the other.

use serde_json::json;

use super::Settlement;
use crate::chain::comet::AbciEvent;
use crate::protocol::wire;
use crate::smst::hash::root_sum_count;

/// The finalize-block event of one claim's settlement. `claimed_upokt` is what the claim is worth; a settled
/// claim's `settled_upokt` is what it was paid, at most the application's budget (poktroll `NewEventClaimSettled`).
pub(super) fn settlement_event(
    claim: &wire::Claim,
    proof_required: bool,
    claimed_upokt: u128,
    outcome: &Settlement,
    tokenomics: &super::tokenomics::TokenomicsParams,
) -> AbciEvent {
    let header = claim.session_header.clone().unwrap_or_default();
    let (compute_units, relays) = root_sum_count(&claim.root_hash).unwrap_or_default();
    // JSON of a string and of a 64-bit integer (quoted, as jsonpb prints int64/uint64).
    let text = |v: &str| json!(v).to_string();
    let int64 = |v: String| json!(v).to_string();
    let mut attributes: Vec<(String, String)> = vec![
        ("application_address".into(), text(&header.application_address)),
        (
            "claim_proof_status_int".into(),
            claim.proof_validation_status.to_string(),
        ),
        ("claimed_upokt".into(), text(&format!("{claimed_upokt}upokt"))),
        ("num_claimed_compute_units".into(), int64(compute_units.to_string())),
        ("num_estimated_compute_units".into(), int64(compute_units.to_string())),
        ("num_estimated_relays".into(), int64(relays.to_string())),
        ("num_relays".into(), int64(relays.to_string())),
        ("service_id".into(), text(&header.service_id)),
        (
            "session_end_block_height".into(),
            int64(header.session_end_block_height.to_string()),
        ),
        (
            "supplier_operator_address".into(),
            text(&claim.supplier_operator_address),
        ),
    ];
    let kind = match outcome {
        Settlement::Settled(settled) => {
            // ProofRequirementReason: NOT_REQUIRED = 0, PROBABILISTIC = 1 (the simulator does not tell it from
            // THRESHOLD = 2).
            attributes.push(("proof_requirement_int".into(), i32::from(proof_required).to_string()));
            attributes.push(("session_id".into(), text(&header.session_id)));
            attributes.push(("settled_upokt".into(), text(&format!("{settled}upokt"))));
            // The supplier shareholders' rows of the distribution (the simulator's suppliers own themselves, so
            // the operator is the one shareholder); the DAO's, proposer's and source owner's rows are left out.
            let (relay, mint) = super::tokenomics::supplier_reward_parts(*settled, tokenomics);
            let row = |reason: &str, amount: u128| {
                json!({
                    "recipient_address": claim.supplier_operator_address,
                    "op_reason": reason,
                    "amount": format!("{amount}upokt"),
                })
            };
            let detailed = json!([
                row(
                    "TLM_RELAY_BURN_EQUALS_MINT_SUPPLIER_SHAREHOLDER_REWARD_DISTRIBUTION",
                    relay
                ),
                row("TLM_GLOBAL_MINT_SUPPLIER_SHAREHOLDER_REWARD_DISTRIBUTION", mint),
            ]);
            attributes.push(("reward_distribution_detailed".into(), detailed.to_string()));
            crate::chain::settlement::CLAIM_SETTLED
        }
        Settlement::Expired(reason) => {
            let name = if reason.contains("invalid") {
                "PROOF_INVALID"
            } else {
                "PROOF_MISSING"
            };
            attributes.push(("expiration_reason".into(), text(name)));
            crate::chain::settlement::CLAIM_EXPIRED
        }
        Settlement::Discarded(error) => {
            // `EventClaimDiscarded`: the session's identity, the claim's status and the error; no amounts.
            attributes.retain(|(key, _)| {
                matches!(
                    key.as_str(),
                    "application_address"
                        | "claim_proof_status_int"
                        | "service_id"
                        | "session_end_block_height"
                        | "supplier_operator_address"
                )
            });
            attributes.push(("error".into(), text(error)));
            crate::chain::settlement::CLAIM_DISCARDED
        }
    };
    attributes.sort();
    attributes.push(("mode".into(), "EndBlock".into()));
    AbciEvent {
        kind: kind.into(),
        attributes,
    }
}

/// poktroll `EventApplicationOverserviced` (`ensureClaimAmountLimits`): the claim of `supplier` for `header`'s
/// session asked `expected_burn` uPOKT of the application's stake (the claim plus its global-inflation share) and
/// it could give `effective_burn` (its per-supplier session budget), both written as a coin's `String()`.
pub(super) fn overserviced_event(
    header: &wire::SessionHeader,
    supplier: &str,
    expected_burn: u128,
    effective_burn: u128,
    spend_limit_exceeded: bool,
) -> AbciEvent {
    let text = |v: &str| json!(v).to_string();
    let mut attributes: Vec<(String, String)> = vec![
        ("application_addr".into(), text(&header.application_address)),
        ("effective_burn".into(), text(&format!("{effective_burn}upokt"))),
        ("expected_burn".into(), text(&format!("{expected_burn}upokt"))),
        ("service_id".into(), text(&header.service_id)),
        (
            "session_end_block_height".into(),
            text(&header.session_end_block_height.to_string()),
        ),
        ("spend_limit_exceeded".into(), spend_limit_exceeded.to_string()),
        ("supplier_operator_addr".into(), text(supplier)),
    ];
    attributes.sort();
    attributes.push(("mode".into(), "EndBlock".into()));
    AbciEvent {
        kind: crate::chain::settlement::APPLICATION_OVERSERVICED.into(),
        attributes,
    }
}

/// poktroll `EventSupplierSlashed` (`slashSupplierStake`): the claim's supplier slashed by `penalty` uPOKT,
/// `stake_after` left.
pub(super) fn slashed_event(claim: &wire::Claim, penalty: u128, stake_after: u128) -> AbciEvent {
    let header = claim.session_header.clone().unwrap_or_default();
    let text = |v: &str| json!(v).to_string();
    let mut attributes: Vec<(String, String)> = vec![
        ("application_address".into(), text(&header.application_address)),
        (
            "claim_proof_status_int".into(),
            claim.proof_validation_status.to_string(),
        ),
        ("proof_missing_penalty".into(), text(&format!("{penalty}upokt"))),
        ("service_id".into(), text(&header.service_id)),
        (
            "session_end_block_height".into(),
            text(&header.session_end_block_height.to_string()),
        ),
        (
            "supplier_operator_address".into(),
            text(&claim.supplier_operator_address),
        ),
        (
            "supplier_stake_after_slash".into(),
            text(&format!("{stake_after}upokt")),
        ),
    ];
    attributes.sort();
    attributes.push(("mode".into(), "EndBlock".into()));
    AbciEvent {
        kind: crate::chain::settlement::SUPPLIER_SLASHED.into(),
        attributes,
    }
}
