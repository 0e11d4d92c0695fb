//! The tokenomics param `global_inflation_per_claim` as the chain's settlement uses it: an exact rational, and the
//! largest settlement whose stake terms fit an amount of the application's stake.
//!
//! poktroll v0.1.35 mints `ceil(settlement × inflation)` on top of each claim's settlement and counts it against the
//! application's per-supplier budget (`claimStakeTermsAmount`). So `ensureClaimAmountLimits` settles a claim for at
//! most `supplierAppStakeToMaxSettlementAmount(floor) = floor(floor / (1 + inflation))` uPOKT, where `floor` is the
//! supplier's share of the session budget (`getOrInitSessionBudget`). The relayer's meter must stop there
//! (`crate::relayer::meter::Budget::from_stake`): poktroll's own relayer meter
//! (`getAppStakePortionPayableToSessionSupplier`) ignores the inflation and serves up to `floor`, relays the chain
//! then refuses to pay (`EventApplicationOverserviced`).
//!
//! The spec (§6.4) leaves settlement to the chain; this is read from poktroll.

/// Why a `global_inflation_per_claim` cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InflationError {
    /// NaN or infinite: the chain cannot turn it into a rational either (`encoding.Float64ToRat` fails, and
    /// settlement with it), so nothing can be promised to be paid.
    #[error("global_inflation_per_claim {0} is not a finite number")]
    NotFinite(f64),
}

/// `global_inflation_per_claim` as an exact non-negative rational `num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflationPerClaim {
    /// Numerator.
    num: u128,
    /// Denominator, a power of ten (positive).
    den: u128,
}

/// Decimal places kept exactly; a param with more is rounded up at the last one (never below the chain's).
const MAX_DECIMALS: usize = 18;

impl InflationPerClaim {
    /// No inflation: settlement is capped at the floor itself.
    pub const ZERO: Self = Self { num: 0, den: 1 };

    /// The param's value as poktroll reads it (`encoding.Float64ToRat`): the shortest decimal that round-trips the
    /// `f64` (Go's `FormatFloat(f, 'f', -1, 64)`, Rust's `Display` of `f64`: same digits, no exponent), read as an
    /// exact fraction, so 0.1 is 1/10, not the binary double's 3602879701896397/2^55.
    ///
    /// Rounded only to stay on the safe side of the chain: past `MAX_DECIMALS` (18) decimals the value is rounded up (a
    /// larger inflation means a smaller settlement, so the meter's budget stays at most the chain's), and a value
    /// too large for `u128` saturates (a budget of nothing). A negative value, which the chain's params validation
    /// refuses (`ValidateGlobalInflationPerClaim`), counts as zero: it could only make the chain pay more.
    pub fn from_param(value: f64) -> Result<Self, InflationError> {
        if !value.is_finite() {
            return Err(InflationError::NotFinite(value));
        }
        if value <= 0.0 {
            return Ok(Self::ZERO);
        }
        let text = value.to_string();
        let (whole, fraction) = text.split_once('.').unwrap_or((text.as_str(), ""));
        let (kept, dropped) = fraction.split_at(fraction.len().min(MAX_DECIMALS));
        let mut num: u128 = 0;
        for digit in whole.bytes().chain(kept.bytes()) {
            num = num
                .saturating_mul(10)
                .saturating_add(u128::from(digit.saturating_sub(b'0')));
        }
        if dropped.bytes().any(|d| d != b'0') {
            num = num.saturating_add(1);
        }
        let places = u32::try_from(kept.len()).unwrap_or(0);
        Ok(Self {
            num,
            den: 10u128.pow(places),
        })
    }

    /// The value as a float (the simulator answers the tokenomics `Params` query with it).
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// poktroll `supplierAppStakeToMaxSettlementAmount`: the largest settlement whose stake terms (settlement plus
    /// its inflation) fit `stake_terms` uPOKT, `floor(stake_terms / (1 + num/den))`, computed as
    /// `floor(stake_terms × den / (den + num))`: one truncation of the exact quotient, as the chain's `big.Rat` does
    /// it. Saturates to a smaller result (never a larger one) if the product overflows.
    pub fn max_settlement(self, stake_terms: u128) -> u128 {
        if self.num == 0 {
            return stake_terms;
        }
        let divisor = self.den.saturating_add(self.num);
        match stake_terms.checked_mul(self.den) {
            Some(product) => product / divisor,
            // Only for stakes beyond any supply: divide first (rounds down, so still at most the chain's).
            None => stake_terms / divisor.div_ceil(self.den).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_param_is_read_as_its_shortest_decimal() {
        assert_eq!(
            InflationPerClaim::from_param(0.1),
            Ok(InflationPerClaim { num: 1, den: 10 })
        );
        assert_eq!(
            InflationPerClaim::from_param(0.666),
            Ok(InflationPerClaim { num: 666, den: 1000 })
        );
        assert_eq!(
            InflationPerClaim::from_param(2.0),
            Ok(InflationPerClaim { num: 2, den: 1 })
        );
        assert_eq!(InflationPerClaim::from_param(0.0), Ok(InflationPerClaim::ZERO));
        assert_eq!(InflationPerClaim::from_param(-0.5), Ok(InflationPerClaim::ZERO));
        assert!(InflationPerClaim::from_param(f64::NAN).is_err());
        assert!(InflationPerClaim::from_param(f64::INFINITY).is_err());
        // 1e-20 has 20 decimals: rounded up at the 18th, so the settlement cap is never above the chain's.
        let tiny = InflationPerClaim::from_param(1e-20).unwrap();
        assert_eq!(
            tiny,
            InflationPerClaim {
                num: 1,
                den: 10u128.pow(18)
            }
        );
        assert_eq!(InflationPerClaim::from_param(0.1).unwrap().as_f64(), 0.1);
    }

    #[test]
    fn the_max_settlement_is_the_stake_terms_net_of_inflation_truncated() {
        let tenth = InflationPerClaim::from_param(0.1).unwrap();
        // 500 000 / 1.1 = 454 545.45… → 454 545; its inflation ceil(45 454.5) = 45 455 sums to the floor exactly.
        assert_eq!(tenth.max_settlement(500_000), 454_545);
        assert_eq!(tenth.max_settlement(1_100), 1_000);
        assert_eq!(tenth.max_settlement(1_099), 999);
        assert_eq!(InflationPerClaim::ZERO.max_settlement(1_099), 1_099);
        // No overflow for the largest stakes.
        assert!(tenth.max_settlement(u128::MAX) <= u128::MAX / 11 * 10 + 10);
    }
}
