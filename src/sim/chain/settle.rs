//! End block: the pending proofs validated (§5.4 steps 13–17) and the claims whose settlement height this block
//! is settled: paid (with the tokenomics allocations), or expired with the supplier slashed when a required proof
//! is missing or invalid (§6.2), each outcome a finalize-block event of the block.

use super::validate::*;
use super::*;
use crate::protocol::wire::SessionHeader;
use crate::smst::hash::root_sum_count;

/// End block: validate pending proofs (poktroll `ValidateSubmittedProofs`), then settle the claims whose
/// settlement height (`SettlementSessionEnd`, the proof window's close) this block is (`SettlePendingClaims`):
/// each settled claim moves from `claims` to `settled` and its outcome becomes a finalize-block event of this
/// block.
pub(super) fn end_block(s: &mut ChainState, height: i64) {
    let keys: Vec<(String, String)> = s.claims.keys().cloned().collect();
    for key in &keys {
        let Some(entry) = s.claims.get(key).cloned() else {
            continue;
        };
        let Some(msg) = &entry.proof_pending else {
            continue;
        };
        let outcome = validate_proof_end_block(s, &entry, msg);
        let status = if outcome.is_ok() {
            wire::ClaimProofStatus::Validated
        } else {
            wire::ClaimProofStatus::Invalid
        };
        if let Err(reason) = outcome {
            s.records.push(MsgRecord {
                height,
                kind: "proof",
                supplier: key.1.clone(),
                session_id: key.0.clone(),
                rejected: Some(format!("end block: {reason}")),
            });
        }
        if let Some(e) = s.claims.get_mut(key) {
            e.claim.proof_validation_status = status as i32;
            e.proof_pending = None;
        }
    }
    // Phase 1 of poktroll's settlement (`x/tokenomics/keeper/settle_pending_claims.go`): collect the ripe claims
    // and count them per (application, session), settled or expiring alike (`IncrementSupplierCount`): that
    // count divides the application's session budget.
    let mut ripe = Vec::new();
    let mut expired = Vec::new();
    let mut claimants: std::collections::BTreeMap<(String, String), u128> = Default::default();
    for key in keys {
        let Some(entry) = s.claims.get(&key) else {
            continue;
        };
        if entry.settlement.is_some() {
            continue;
        }
        let Some(header) = entry.claim.session_header.as_ref() else {
            continue;
        };
        let Ok(windows) = windows_of(s, header.session_end_block_height) else {
            continue;
        };
        // Settled at the end of block `SettlementSessionEnd` (§3: `end + 1 + (co+cc+po+pc)`, which is the proof
        // window's close), after that block's proofs were validated above.
        if height < windows.settlement {
            continue;
        }
        *claimants
            .entry((header.application_address.clone(), header.session_id.clone()))
            .or_default() += 1;
        ripe.push(key);
    }
    // Every claim of this block is limited by the application's stake at its start (poktroll caches it before
    // any claim is paid: `applicationInitialStakeMap`).
    let initial_stakes: std::collections::BTreeMap<String, u128> = s
        .applications
        .iter()
        .map(|(address, app)| (address.clone(), coin_amount(app.stake.as_ref())))
        .collect();
    for key in ripe {
        let Some(entry) = s.claims.get(&key).cloned() else {
            continue;
        };
        let Some(header) = entry.claim.session_header.as_ref() else {
            continue;
        };
        // The requirement is decided again with this block's proof params (poktroll's settlement calls
        // `ProofRequirementForClaim` itself): a proof required at submission may not be any more, and the other
        // way round.
        let required = proof_required(s, &entry.claim)
            .or(entry.proof_required)
            .unwrap_or(false);
        let validated = entry.claim.proof_validation_status == wire::ClaimProofStatus::Validated as i32;
        let sum = root_sum_count(&entry.claim.root_hash).map(|(sum, _)| sum);
        let claimed = sum
            .and_then(|sum| claimed_upokt_of(s, header, sum))
            .and_then(|v| num_traits::ToPrimitive::to_u128(&v))
            .unwrap_or(0);
        let outcome = if required && !validated {
            Settlement::Expired(
                if entry.claim.proof_validation_status == wire::ClaimProofStatus::Invalid as i32 {
                    "proof invalid".into()
                } else {
                    "required proof missing".into()
                },
            )
        } else if s.discard_settlements > 0 {
            s.discard_settlements -= 1;
            Settlement::Discarded("test: the claim's token logic modules failed".into())
        } else {
            let suppliers = claimants
                .get(&(header.application_address.clone(), header.session_id.clone()))
                .copied()
                .unwrap_or(1);
            let (settled, overserviced) = pay_claim(
                s,
                header,
                &entry.claim.supplier_operator_address,
                claimed,
                initial_stakes.get(&header.application_address).copied().unwrap_or(0),
                suppliers,
            );
            // Emitted while the claim's amount is limited, before its settlement event (poktroll
            // `ensureClaimAmountLimits` runs inside the token logic modules).
            s.finalize_events.entry(height).or_default().extend(overserviced);
            Settlement::Settled(settled)
        };
        // As poktroll: the outcome is reported in the block's finalize-block events and the claim leaves the
        // state (`RemoveClaim`); a `Claim` query answers "not found" from now on.
        let event = super::events::settlement_event(&entry.claim, required, claimed, &outcome, &s.tokenomics);
        s.finalize_events.entry(height).or_default().push(event);
        if matches!(outcome, Settlement::Expired(_)) {
            expired.push(entry.claim.clone());
        }
        if let Some(mut e) = s.claims.remove(&key) {
            e.settlement = Some(outcome.clone());
            e.proof_required = Some(required);
            s.settled.insert(key.clone(), e);
        }
        s.settlements.push((key.0.clone(), key.1.clone(), outcome));
    }
    // After every claim of the block is settled, the suppliers of the expired ones are slashed, each claim by
    // the live `proof_missing_penalty` (poktroll `ExecutePendingExpiredResults` → `slashSupplierStake`).
    for claim in expired {
        let event = slash_supplier(s, &claim);
        s.finalize_events.entry(height).or_default().push(event);
    }
}

/// Slashes the supplier of an expired `claim` by the proof params' `proof_missing_penalty`, at most its whole
/// stake (poktroll `slashSupplierStake`; unbonding a supplier left below the minimum stake is not modelled), and
/// returns the `EventSupplierSlashed` that reports it.
fn slash_supplier(s: &mut ChainState, claim: &wire::Claim) -> crate::chain::comet::AbciEvent {
    let penalty = coin_amount(s.proof.proof_missing_penalty.as_ref());
    let supplier = s.suppliers.get_mut(&claim.supplier_operator_address);
    let stake = coin_amount(supplier.as_ref().and_then(|sup| sup.stake.as_ref()));
    let slashed = penalty.min(stake);
    let remaining = stake - slashed;
    if let Some(supplier) = supplier {
        supplier.stake = Some(wire::Coin {
            denom: "upokt".into(),
            amount: remaining.to_string(),
        });
    }
    super::events::slashed_event(claim, slashed, remaining)
}

/// The amount of an upokt coin (0 when absent or unparsable).
fn coin_amount(coin: Option<&wire::Coin>) -> u128 {
    super::stakes::upokt(coin).unwrap_or(0)
}

/// Pays a claim worth `claimed` uPOKT of `header`'s session to `supplier` and returns what it was settled for
/// (poktroll `ProcessTokenLogicModules`): at most the application's per-supplier session budget
/// ([`super::tokenomics::session_floor`] of its stake at the block's start, the pending sessions of the shared
/// params at the session end, `suppliers` claimants and its spend limit), burnt from the application's stake, the
/// supplier's shares of it and of its inflation credited to the supplier's account. With the amount, the
/// `EventApplicationOverserviced` of a claim capped by the budget.
fn pay_claim(
    s: &mut ChainState,
    header: &SessionHeader,
    supplier: &str,
    claimed: u128,
    initial_stake: u128,
    suppliers: u128,
) -> (u128, Option<crate::chain::comet::AbciEvent>) {
    use super::tokenomics as t;
    let Some(app) = s.applications.get(&header.application_address) else {
        return (0, None);
    };
    let pending = t::num_pending_sessions(&s.shared_at(header.session_end_block_height));
    let spend_limit = app.per_session_spend_limit.as_ref().map(|c| coin_amount(Some(c)));
    let (floor, spend_limited) = t::session_floor(initial_stake, pending, suppliers, spend_limit);
    let (settled, overserviced) = t::settled_amount(claimed, floor, &s.tokenomics);
    // Both burns in stake terms (poktroll `claimStakeTermsAmount`): the claim plus its inflation asked, the
    // budget given.
    let overserviced = overserviced.then(|| {
        tracing::debug!(
            application = %header.application_address,
            supplier,
            claimed,
            settled,
            spend_limited,
            "sim: application overserviced"
        );
        super::events::overserviced_event(
            header,
            supplier,
            t::stake_terms(claimed, &s.tokenomics),
            floor,
            spend_limited,
        )
    });
    let stake = coin_amount(app.stake.as_ref());
    // `RelayBurnEqualsMint` refuses to take the stake below zero (`SafeSub`); the floor keeps it from it.
    let Some(remaining) = stake.checked_sub(settled) else {
        return (0, overserviced);
    };
    if let Some(app) = s.applications.get_mut(&header.application_address) {
        app.stake = Some(wire::Coin {
            denom: "upokt".into(),
            amount: remaining.to_string(),
        });
    }
    let reward = t::supplier_reward(settled, &s.tokenomics);
    if let Some(account) = s.accounts.get_mut(supplier) {
        account.balance = account.balance.saturating_add(reward);
    }
    (settled, overserviced)
}
