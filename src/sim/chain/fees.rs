//! The node's `minimum-gas-prices` (app.toml), as a cosmos-sdk v0.53 node applies it: only at CheckTx (never in
//! Simulate or in a block), a fee must reach `ceil(price × gas limit)` in at least one of the listed denoms
//! (`x/auth/ante` `checkTxFeeWithValidatorMinGasPrices`), else code 13 with the SDK's text; the node's
//! `cosmos.base.node.v1beta1.Service/Config` prints the prices as `DecCoins.String()`.

use num_bigint::BigInt;
use num_rational::BigRational;

use crate::chain::fees::{GasPrice, parse_dec_coins};
use crate::chain::tx::{Coin, fee_for_gas};

/// `LegacyDec` precision: 18 decimals.
const DEC_DECIMALS: usize = 18;

/// Parses an app.toml `minimum-gas-prices` value (`0.000001upokt`, several joined by `,`, empty or zero for
/// none), refusing more than 18 decimals as the SDK's `ParseDecCoins` does. Sorted by denom, as the SDK's
/// `DecCoins` are.
pub fn parse_minimum_gas_prices(text: &str) -> Result<Vec<GasPrice>, String> {
    let mut prices = parse_dec_coins(text).map_err(|e| format!("minimum-gas-prices: {e}"))?;
    let scale = BigRational::from_integer(BigInt::from(10u8).pow(DEC_DECIMALS as u32));
    if let Some(p) = prices.iter().find(|p| !(&p.amount * &scale).is_integer()) {
        return Err(format!(
            "minimum-gas-prices: {}{} has more than 18 decimals",
            p.amount, p.denom
        ));
    }
    prices.sort_by(|a, b| a.denom.cmp(&b.denom));
    Ok(prices)
}

/// `DecCoins.String()`: `0.000001000000000000upokt`, joined by `,`; empty for none.
pub fn dec_coins_string(prices: &[GasPrice]) -> String {
    let one = BigInt::from(10u8).pow(DEC_DECIMALS as u32);
    prices
        .iter()
        .map(|p| {
            let atto = (&p.amount * BigRational::from_integer(one.clone())).to_integer();
            let (int, frac) = (&atto / &one, &atto % &one);
            format!("{int}.{frac:0>18}{}", p.denom)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The CheckTx fee check: `None` when `fee` pays `gas_limit` at `minimum` (or there is no minimum), else the
/// SDK's refusal text (code 13, codespace `sdk`).
pub fn insufficient_fee(minimum: &[GasPrice], fee: &[Coin], gas_limit: u64) -> Option<String> {
    if minimum.is_empty() {
        return None;
    }
    let required: Vec<(u128, &str)> = minimum
        .iter()
        .map(|p| (fee_for_gas(&p.amount, gas_limit).unwrap_or(u128::MAX), p.denom.as_str()))
        .collect();
    // `feeCoins.IsAnyGTE(requiredFees)`: one denom is enough.
    let paid = fee.iter().any(|c| {
        let amount = c.amount.parse::<u128>().unwrap_or(0);
        required
            .iter()
            .any(|(need, denom)| *denom == c.denom && *need > 0 && amount >= *need)
    });
    if paid {
        return None;
    }
    let coins = |coins: Vec<String>| coins.join(",");
    let got = coins(fee.iter().map(|c| format!("{}{}", c.amount, c.denom)).collect());
    let required = coins(
        required
            .iter()
            .map(|(amount, denom)| format!("{amount}{denom}"))
            .collect(),
    );
    Some(format!(
        "insufficient fees; got: {got} required: {required}: insufficient fee"
    ))
}

/// Whether the tx `bytes` pays less than `minimum` (the validators' price, `ChainState::min_inclusion_gas_prices`)
/// for its gas limit, so no block includes it; `false` without a minimum or for bytes that do not decode (CheckTx
/// refused those already).
pub fn below_inclusion_price(minimum: &[GasPrice], bytes: &[u8]) -> bool {
    use prost::Message as _;
    if minimum.is_empty() {
        return false;
    }
    let Ok(raw) = crate::chain::tx::TxRaw::decode(bytes) else {
        return false;
    };
    let Ok(auth) = crate::chain::tx::AuthInfo::decode(raw.auth_info_bytes.as_slice()) else {
        return false;
    };
    let (coins, gas_limit) = auth
        .fee
        .as_ref()
        .map_or((&[][..], 0), |f| (f.amount.as_slice(), f.gas_limit));
    insufficient_fee(minimum, coins, gas_limit).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upokt(amount: u128) -> Coin {
        Coin {
            denom: "upokt".into(),
            amount: amount.to_string(),
        }
    }

    #[test]
    fn prices_print_as_the_sdk_prints_them() {
        let prices = parse_minimum_gas_prices("1upokt,0.000001ibc/ABC").unwrap();
        assert_eq!(
            dec_coins_string(&prices),
            "0.000001000000000000ibc/ABC,1.000000000000000000upokt"
        );
        assert_eq!(dec_coins_string(&parse_minimum_gas_prices("0upokt").unwrap()), "");
        assert!(parse_minimum_gas_prices("0.0000000000000000001upokt").is_err());
    }

    #[test]
    fn a_fee_below_price_times_gas_limit_is_refused_with_the_sdk_text() {
        let min = parse_minimum_gas_prices("0.01upokt").unwrap();
        // ceil(0.01 × 150_001) = 1501.
        assert_eq!(insufficient_fee(&min, &[upokt(1501)], 150_001), None);
        assert_eq!(
            insufficient_fee(&min, &[upokt(1500)], 150_001).as_deref(),
            Some("insufficient fees; got: 1500upokt required: 1501upokt: insufficient fee")
        );
        assert_eq!(
            insufficient_fee(&min, &[], 100).as_deref(),
            Some("insufficient fees; got:  required: 1upokt: insufficient fee")
        );
        assert_eq!(insufficient_fee(&[], &[], 100), None);
        let required = crate::chain::fees::required_fees(&insufficient_fee(&min, &[upokt(1)], 150_001).unwrap());
        assert_eq!(required, Some(vec![("upokt".into(), 1501)]));
    }
}
