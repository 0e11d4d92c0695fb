//! Settlement amounts as poktroll v0.1.35's tokenomics computes them (`x/tokenomics/keeper/settlement_context.go`
//! `getOrInitSessionBudget`, `x/tokenomics/keeper/token_logic_modules.go` `ensureClaimAmountLimits`, the
//! `RelayBurnEqualsMint` and `GlobalMint` token logic modules): an application pays each supplier of a session at
//! most its share of the stake it can spend on one session; a claim worth more is paid that share
//! (`EventApplicationOverserviced` on chain). The payment is burnt from the application's stake and the
//! supplier's share of the mint credited to it.
//!
//! The spec (§6.4) leaves settlement to the chain; the formulas here are read from poktroll. Not modelled: the
//! overservicing bonus (`overservicing_bonus_multiplier` > 1; the default 1 makes the cap exactly the floor),
//! `mint_ratio` < 1 (default 1), and the DAO, proposer and source owner shares (no accounts for them here).

/// A non-negative decimal fraction `num / den`, as poktroll turns its float params into exact rationals
/// (`pkg/encoding.Float64ToRat` goes through the decimal string: 0.1 is 1/10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// Numerator.
    pub num: u128,
    /// Denominator (positive).
    pub den: u128,
}

impl Ratio {
    /// The nearest `f64` (how the chain stores the param: a proto `double`; 1/10 is the double `0.1`, which
    /// poktroll reads back as 1/10).
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den.max(1) as f64
    }

    /// `floor(amount × self)` (poktroll `calculateAllocationAmount`).
    fn floor_of(self, amount: u128) -> u128 {
        amount.saturating_mul(self.num) / self.den.max(1)
    }

    /// `ceil(amount × self)` (poktroll `CalculateGlobalPerClaimMintInflationFromSettlementAmount` rounds up).
    fn ceil_of(self, amount: u128) -> u128 {
        amount.saturating_mul(self.num).div_ceil(self.den.max(1))
    }
}

/// The tokenomics params settlement reads (x/tokenomics `Params`), poktroll's `DefaultParams` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenomicsParams {
    /// `global_inflation_per_claim` (default 0.1): minted on top of each settlement, and counted against the
    /// application's budget (`claimStakeTermsAmount`).
    pub global_inflation_per_claim: Ratio,
    /// `mint_equals_burn_claim_distribution.supplier` (default 0.7): the supplier's share of the settlement.
    pub supplier_share_of_settlement: Ratio,
    /// `mint_allocation_percentages.supplier` (default 0.7): the supplier's share of the inflation mint.
    pub supplier_share_of_inflation: Ratio,
}

impl Default for TokenomicsParams {
    fn default() -> Self {
        Self {
            global_inflation_per_claim: Ratio { num: 1, den: 10 },
            supplier_share_of_settlement: Ratio { num: 7, den: 10 },
            supplier_share_of_inflation: Ratio { num: 7, den: 10 },
        }
    }
}

/// poktroll `GetNumPendingSessions`: how many sessions of an application can be awaiting settlement at once,
/// `ceil((claim open + claim close + proof open + proof close offsets) / num_blocks_per_session)`, at least 1.
pub fn num_pending_sessions(params: &crate::protocol::wire::SharedParams) -> u128 {
    let blocks = u128::from(params.claim_window_open_offset_blocks)
        + u128::from(params.claim_window_close_offset_blocks)
        + u128::from(params.proof_window_open_offset_blocks)
        + u128::from(params.proof_window_close_offset_blocks);
    let per_session = u128::from(params.num_blocks_per_session.max(1));
    blocks.div_ceil(per_session).max(1)
}

/// poktroll `getOrInitSessionBudget`: what each claiming supplier of one (application, session) may be paid at
/// most, in stake terms: `stake / pending sessions / suppliers`, the stake being the application's at the start of
/// the settling block, the suppliers those whose claims of that session settle or expire in it; a positive
/// `per_session_spend_limit` caps the per-session part (itself at most `stake / pending sessions`) before the
/// division by suppliers. Returns (floor, whether the spend limit lowered it).
pub fn session_floor(stake: u128, pending_sessions: u128, suppliers: u128, spend_limit: Option<u128>) -> (u128, bool) {
    let per_session = stake / pending_sessions.max(1);
    let floor = per_session / suppliers.max(1);
    match spend_limit.filter(|l| *l > 0) {
        Some(limit) => {
            let limited = limit.min(per_session) / suppliers.max(1);
            if limited < floor {
                (limited, true)
            } else {
                (floor, false)
            }
        }
        None => (floor, false),
    }
}

/// poktroll `ensureClaimAmountLimits` (bonus multiplier 1): the uPOKT a claim worth `claimed` is settled for
/// under `floor`, and whether it was capped (overserviced): at most `floor(floor / (1 + inflation))`, the
/// settlement whose stake terms (settlement plus its inflation) fit the floor.
pub fn settled_amount(claimed: u128, floor: u128, params: &TokenomicsParams) -> (u128, bool) {
    let inflation = params.global_inflation_per_claim;
    // A claim whose stake terms exceed the floor is limited to the floor in stake terms; either way the
    // settlement is at most the floor's settlement equivalent, and a claim at or under it is paid in full.
    let max_settlement = if inflation.den == 0 {
        floor
    } else {
        // floor / (1 + num/den) = floor × den / (den + num), truncated (`supplierAppStakeToMaxSettlementAmount`).
        floor.saturating_mul(inflation.den) / inflation.den.saturating_add(inflation.num).max(1)
    };
    if claimed <= max_settlement {
        (claimed, false)
    } else {
        (max_settlement, true)
    }
}

/// A claim's amount in stake terms (poktroll `claimStakeTermsAmount`): the settlement plus its global-inflation
/// share, rounded up, which is what it asks of the application's stake (`expected_burn` when overserviced).
pub fn stake_terms(claimed: u128, params: &TokenomicsParams) -> u128 {
    claimed.saturating_add(params.global_inflation_per_claim.ceil_of(claimed))
}

/// What the supplier's owner receives for a claim settled for `settled` uPOKT: its share of the settlement
/// (`RelayBurnEqualsMint`, mint ratio 1) plus its share of the inflation minted for it (`GlobalMint`). The
/// simulator's suppliers own themselves with no other revenue share, so all of it goes to the operator account.
pub fn supplier_reward(settled: u128, params: &TokenomicsParams) -> u128 {
    let (relay, mint) = supplier_reward_parts(settled, params);
    relay.saturating_add(mint)
}

/// [`supplier_reward`]'s two parts: the supplier shareholders' share of the settlement (`RelayBurnEqualsMint`)
/// and of the inflation minted for it (`GlobalMint`), as the settlement event's `reward_distribution_detailed`
/// reports them.
pub fn supplier_reward_parts(settled: u128, params: &TokenomicsParams) -> (u128, u128) {
    if settled == 0 {
        return (0, 0);
    }
    let inflation = params.global_inflation_per_claim.ceil_of(settled);
    (
        params.supplier_share_of_settlement.floor_of(settled),
        params.supplier_share_of_inflation.floor_of(inflation),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settlement_is_capped_at_the_floor_net_of_inflation() {
        let p = TokenomicsParams::default();
        // 1e6 stake, 2 pending sessions, 1 supplier: floor 500 000; settlement cap 500 000 × 10/11 = 454 545.
        let (floor, limited) = session_floor(1_000_000, 2, 1, None);
        assert_eq!((floor, limited), (500_000, false));
        assert_eq!(settled_amount(2_000_000, floor, &p), (454_545, true));
        assert_eq!(settled_amount(454_545, floor, &p), (454_545, false));
        assert_eq!(settled_amount(1_000, floor, &p), (1_000, false));
        // What a claim asks of the stake: 1 260 + ceil(126) and 15 + ceil(1.5).
        assert_eq!((stake_terms(1_260, &p), stake_terms(15, &p)), (1_386, 17));
        // A spend limit below the per-session stake lowers the floor before the division by suppliers.
        assert_eq!(session_floor(1_000_000, 2, 2, Some(300_000)), (150_000, true));
        assert_eq!(session_floor(1_000_000, 2, 2, Some(900_000)), (250_000, false));
        // No inflation: the cap is the floor itself.
        let flat = TokenomicsParams {
            global_inflation_per_claim: Ratio { num: 0, den: 1 },
            ..p
        };
        assert_eq!(settled_amount(2_000_000, floor, &flat), (500_000, true));
    }

    #[test]
    fn the_supplier_gets_its_shares_of_settlement_and_inflation() {
        let p = TokenomicsParams::default();
        // 0.7 × 1000 + 0.7 × ceil(0.1 × 1000) = 700 + 70.
        assert_eq!(supplier_reward(1_000, &p), 770);
        // 0.7 × 15 = 10.5 → 10; inflation ceil(1.5) = 2, 0.7 × 2 = 1.4 → 1.
        assert_eq!(supplier_reward(15, &p), 11);
        assert_eq!(supplier_reward(0, &p), 0);
    }

    #[test]
    fn pending_sessions_round_up() {
        let params = crate::protocol::wire::SharedParams {
            num_blocks_per_session: 10,
            claim_window_open_offset_blocks: 1,
            claim_window_close_offset_blocks: 4,
            proof_window_open_offset_blocks: 0,
            proof_window_close_offset_blocks: 4,
            ..Default::default()
        };
        assert_eq!(num_pending_sessions(&params), 1);
        let params = crate::protocol::wire::SharedParams {
            num_blocks_per_session: 4,
            ..params
        };
        assert_eq!(num_pending_sessions(&params), 3);
    }
}
