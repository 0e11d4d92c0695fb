//! The budget is at most what the chain settles: settlement counts the global inflation per claim against the app's
//! share (poktroll `ensureClaimAmountLimits`), so a claim of the whole share is capped. Checked against the
//! simulator's model of settlement (`crate::sim::chain::tokenomics`), a separate reading of poktroll, from the same
//! stake, limit, suppliers, shared params and prices.

use num_traits::ToPrimitive as _;
use proptest::prelude::*;

use super::*;
use crate::protocol::difficulty::BASE_TARGET;
use crate::protocol::lottery::claimed_upokt;
use crate::protocol::wire::SharedParams;
use crate::sim::chain::tokenomics::{self as chain, Ratio, TokenomicsParams};

/// One app's session as both sides see it.
struct Case {
    stake: u64,
    spend_limit: Option<u64>,
    suppliers: usize,
    params: SharedParams,
    inflation: Ratio,
    multiplier: u64,
    granularity: u64,
}

impl Case {
    fn tokenomics(&self) -> TokenomicsParams {
        TokenomicsParams {
            global_inflation_per_claim: self.inflation,
            ..TokenomicsParams::default()
        }
    }

    /// The meter's budget, with the inflation as the relayer reads it: the simulator's `Params` answer, a double.
    fn budget(&self) -> u64 {
        let inflation = InflationPerClaim::from_param(self.inflation.as_f64()).unwrap();
        Budget::from_stake(
            self.stake,
            self.spend_limit,
            self.suppliers,
            pending_sessions(&self.params),
            inflation,
            self.multiplier,
            self.granularity,
            100,
        )
        .limit_compute_units
    }

    /// What the chain prices a claim of `compute_units` at (base difficulty), uPOKT.
    fn claim(&self, compute_units: u64) -> u128 {
        claimed_upokt(compute_units, &BASE_TARGET, self.multiplier, self.granularity)
            .and_then(|c| c.to_u128())
            .unwrap()
    }

    /// The chain's settlement of a claim of `compute_units`: (settled, overserviced).
    fn settled(&self, compute_units: u64) -> (u128, bool) {
        let (floor, _) = chain::session_floor(
            u128::from(self.stake),
            chain::num_pending_sessions(&self.params),
            self.suppliers as u128,
            self.spend_limit.map(u128::from),
        );
        chain::settled_amount(self.claim(compute_units), floor, &self.tokenomics())
    }

    /// The meter's own share before inflation (as poktroll's relayer divides the stake), uPOKT.
    fn meter_share(&self) -> u128 {
        let n = self.suppliers as u128;
        let share = u128::from(self.stake) / n / u128::from(pending_sessions(&self.params));
        match self.spend_limit {
            Some(l) if l > 0 => share.min(u128::from(l) / n),
            _ => share,
        }
    }
}

/// 1-block sessions, 11 blocks from session end to proof window close.
fn twelve_pending() -> SharedParams {
    SharedParams {
        num_blocks_per_session: 1,
        claim_window_open_offset_blocks: 1,
        claim_window_close_offset_blocks: 4,
        proof_window_open_offset_blocks: 0,
        proof_window_close_offset_blocks: 6,
        ..Default::default()
    }
}

/// 12 pending sessions for the relayer (11 for the chain) at the default inflation 0.1: the stake share is
/// 100,000,000 uPOKT, the chain's floor 109,090,909, which it settles for at most 99,173,553. A budget of the
/// whole share (2,380,952 CU at 42 uPOKT each, a 99,999,984 uPOKT claim) would be capped; net of the inflation
/// it is 90,909,090 uPOKT → 2,164,502 CU, paid in full, and one more CU would not fit the share.
#[test]
fn with_many_pending_sessions_the_budget_is_what_the_chain_settles() {
    let case = Case {
        stake: 1_200_000_000,
        spend_limit: None,
        suppliers: 1,
        params: twelve_pending(),
        inflation: Ratio { num: 1, den: 10 },
        multiplier: 42_000_000,
        granularity: 1_000_000,
    };
    assert_eq!(pending_sessions(&case.params), 12);
    assert_eq!(chain::num_pending_sessions(&case.params), 11);
    let budget = case.budget();
    assert_eq!(budget, 2_164_502);
    let (settled, overserviced) = case.settled(budget);
    assert!(!overserviced, "the chain caps the meter's budget: {settled} settled");
    assert_eq!(settled, case.claim(budget));
    assert!(case.claim(budget) <= 99_173_553);
    // Within one compute unit: the settlement cap of the meter's own share is 90,909,090 uPOKT.
    let cap = chain::settled_amount(u128::MAX, case.meter_share(), &case.tokenomics()).0;
    assert_eq!(cap, 90_909_090);
    assert!(case.claim(budget + 1) > cap);
}

/// The per-session spend limit's share is net of inflation too: limit 2,520 uPOKT over 2 suppliers is 1,260 each,
/// settled for at most 1,145 → 27 CU at 42 uPOKT, not 30.
#[test]
fn the_spend_limit_share_is_net_of_inflation() {
    let case = Case {
        stake: 1_000_000_000,
        spend_limit: Some(2_520),
        suppliers: 2,
        params: twelve_pending(),
        inflation: Ratio { num: 1, den: 10 },
        multiplier: 42_000_000,
        granularity: 1_000_000,
    };
    assert_eq!(case.budget(), 27);
    assert!(!case.settled(27).1);
    assert!(case.settled(30).1, "a claim of the whole limit share is capped");
}

proptest! {
    /// For any stake, limit, suppliers, session and window lengths, inflation and prices: the chain settles a
    /// claim of the whole budget in full, and the budget is the largest that fits the meter's share net of
    /// inflation (one compute unit more would not).
    #[test]
    fn the_budget_is_never_above_the_chain_settlement(
        stake in 0u64..=u64::MAX / 2,
        spend_limit in proptest::option::of(0u64..=u64::MAX / 2),
        suppliers in 1usize..=50,
        num_blocks_per_session in 1u64..=20,
        offsets in (0u64..=20, 0u64..=40, 0u64..=20, 0u64..=40),
        inflation_millis in 0u128..=3_000,
        multiplier in 1u64..=100_000_000,
        granularity in 1u64..=10_000_000,
    ) {
        let case = Case {
            stake,
            spend_limit,
            suppliers,
            params: SharedParams {
                num_blocks_per_session,
                claim_window_open_offset_blocks: offsets.0,
                claim_window_close_offset_blocks: offsets.1,
                proof_window_open_offset_blocks: offsets.2,
                proof_window_close_offset_blocks: offsets.3,
                ..Default::default()
            },
            inflation: Ratio { num: inflation_millis, den: 1_000 },
            multiplier,
            granularity,
        };
        let budget = case.budget();
        let (settled, overserviced) = case.settled(budget);
        prop_assert!(!overserviced, "budget {} CU capped at {} uPOKT", budget, settled);
        let cap = chain::settled_amount(u128::MAX, case.meter_share(), &case.tokenomics()).0;
        // (budget + 1) × multiplier / granularity > cap, exactly (unless the budget saturated `u64`).
        prop_assert!(
            budget == u64::MAX || (u128::from(budget) + 1) * u128::from(multiplier) > cap * u128::from(granularity),
            "budget {} CU is not the largest under {} uPOKT", budget, cap
        );
    }
}
