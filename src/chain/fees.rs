//! What fee a node takes (§6.5). A node admits a tx to its mempool only if the fee covers its own
//! `minimum-gas-prices` (app.toml) × the tx's gas limit, and refuses it at CheckTx otherwise (code 13,
//! "insufficient fees"). Simulate does not check that price, so a tx priced from `transaction.gas_price` alone
//! passes Simulate and is then refused at every block (poktroll's `pocketd init` writes `1upokt`, a million times
//! relay-miner's default price). Two sources tell the miner the node's price: the node's operator config
//! (`cosmos.base.node.v1beta1.Service/Config`, [`ChainClient::minimum_gas_prices`]) and the refusal itself, whose
//! text names the fee required ([`required_fees`]).
//!
//! Parsing is pure; the one query is an `impl` of [`ChainClient`] kept here so the fee logic stays in one place.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Zero as _;

use super::grpc::GrpcClient;
use super::query::{ChainClient, ChainError};
use crate::protocol::wire::{self, method};

/// ABCI code of cosmos-sdk `ErrInsufficientFee` (codespace `sdk`): the fee is below the node's minimum gas
/// price × gas limit (`x/auth/ante` `checkTxFeeWithValidatorMinGasPrices`, CheckTx only).
pub const INSUFFICIENT_FEE_CODE: u32 = 13;

/// A price per unit of gas in one denomination (one `DecCoin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasPrice {
    /// Exact amount per gas unit.
    pub amount: BigRational,
    /// Denomination, e.g. `upokt`.
    pub denom: String,
}

/// A price list or coin list that does not parse.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a list of coins like 0.000001upokt")]
pub struct BadCoins(pub String);

/// Splits `12.5upokt` into (`12.5`, `upokt`); the denom must start with a letter (cosmos-sdk denom rule).
fn split_coin(coin: &str) -> Option<(&str, &str)> {
    let at = coin.find(|c: char| c.is_ascii_alphabetic())?;
    let (amount, denom) = coin.split_at(at);
    let denom_ok = denom
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | ':' | '.' | '_' | '-'));
    (!amount.is_empty() && denom_ok).then_some((amount, denom))
}

/// Parses a `DecCoins` string as a node prints it (`0.000001000000000000upokt`, several joined by `,`, empty for
/// none) or as an operator writes it in app.toml (`0.000001upokt`). Zero prices are dropped, as the SDK does
/// when it parses `minimum-gas-prices` (a zero price asks for nothing).
pub fn parse_dec_coins(text: &str) -> Result<Vec<GasPrice>, BadCoins> {
    let bad = || BadCoins(text.to_string());
    let mut prices = Vec::new();
    for coin in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (amount, denom) = split_coin(coin).ok_or_else(bad)?;
        let amount = super::tx::parse_gas_price(amount).map_err(|_| bad())?;
        if !amount.is_zero() {
            prices.push(GasPrice {
                amount,
                denom: denom.to_string(),
            });
        }
    }
    Ok(prices)
}

/// The denomination of a gas price written as `<decimal><denom>`; `upokt` when the denom is left out (as
/// [`super::tx::parse_gas_price`] accepts `0.000001`).
pub fn gas_price_denom(price: &str) -> &str {
    match split_coin(price.trim()) {
        Some((_, denom)) => denom,
        None => "upokt",
    }
}

/// The fees a CheckTx refusal with [`INSUFFICIENT_FEE_CODE`] says the node requires, as (denom, amount).
///
/// The SDK's text is `insufficient fees; got: <coins> required: <coins>: insufficient fee`, `<coins>` being
/// `Coins.String()` (`200000upokt`, several joined by `,`; the node wants *any one* of them). `None` when the
/// text is not that refusal.
pub fn required_fees(raw_log: &str) -> Option<Vec<(String, u128)>> {
    let after = raw_log.split_once("insufficient fees; got:")?.1;
    let required = after.split_once("required: ")?.1;
    // The wrapped error's own text follows after `: `; coins never contain `:` followed by a space.
    let required = required.split_once(": ").map_or(required, |(coins, _)| coins).trim();
    let mut fees = Vec::new();
    for coin in required.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (amount, denom) = split_coin(coin)?;
        fees.push((denom.to_string(), amount.parse::<u128>().ok()?));
    }
    (!fees.is_empty()).then_some(fees)
}

/// A price as a short decimal for messages (at most 18 decimals, as the SDK's `LegacyDec`, rounded up).
pub fn decimal(price: &BigRational) -> String {
    let one = BigInt::from(10u64.pow(18));
    let atto = (price * BigRational::from_integer(one.clone())).ceil().to_integer();
    let (int, frac) = (&atto / &one, &atto % &one);
    let frac = format!("{frac:0>18}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// The price per gas unit a required fee stands for: `fee / gas_limit`. The node computed the fee as
/// `ceil(min_price × gas_limit)`, so this is at least its minimum price, and a fee from it for the same gas
/// limit is exactly the required fee.
pub fn price_of_fee(fee: u128, gas_limit: u64) -> Option<BigRational> {
    (gas_limit > 0).then(|| BigRational::new(BigInt::from(fee), BigInt::from(gas_limit)))
}

impl ChainClient {
    /// The node's minimum gas prices (its app.toml `minimum-gas-prices`; empty when it takes any fee). Not
    /// cached here: the caller decides how often to ask (a node's operator can change it at a restart).
    pub async fn minimum_gas_prices(&self) -> Result<Vec<GasPrice>, ChainError> {
        node_minimum_gas_prices(self.grpc()).await
    }
}

/// The minimum gas prices of the node `grpc` talks to (`cosmos.base.node.v1beta1.Service/Config`).
pub async fn node_minimum_gas_prices(grpc: &GrpcClient) -> Result<Vec<GasPrice>, ChainError> {
    let response: wire::NodeConfigResponse = grpc.unary(method::NODE_CONFIG, wire::NodeConfigRequest {}).await?;
    parse_dec_coins(&response.minimum_gas_price).map_err(|e| ChainError::BadResponse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratio(n: i64, d: i64) -> BigRational {
        BigRational::new(BigInt::from(n), BigInt::from(d))
    }

    #[test]
    fn dec_coins_as_nodes_print_them_and_operators_write_them() {
        let node = parse_dec_coins("0.000001000000000000upokt").unwrap();
        assert_eq!(
            node,
            vec![GasPrice {
                amount: ratio(1, 1_000_000),
                denom: "upokt".into()
            }]
        );
        assert_eq!(parse_dec_coins("0.000001upokt").unwrap(), node);
        assert_eq!(parse_dec_coins("").unwrap(), vec![]);
        assert_eq!(
            parse_dec_coins("0upokt").unwrap(),
            vec![],
            "a zero price asks for nothing"
        );
        let two = parse_dec_coins("1.000000000000000000upokt,0.500000000000000000ibc/ABC").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].denom, "ibc/ABC");
        assert_eq!(two[1].amount, ratio(1, 2));
        for bad in ["upokt", "1", "1.2.3upokt", "-1upokt", "1 upokt x"] {
            assert!(parse_dec_coins(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sdk_refusal_names_the_required_fee() {
        let log = "insufficient fees; got: 1upokt required: 250000upokt: insufficient fee";
        assert_eq!(required_fees(log), Some(vec![("upokt".into(), 250_000)]));
        let none_sent = "insufficient fees; got:  required: 7upokt,3uatom: insufficient fee";
        assert_eq!(
            required_fees(none_sent),
            Some(vec![("upokt".into(), 7), ("uatom".into(), 3)])
        );
        assert_eq!(required_fees("insufficient funds for fee 3"), None);
        assert_eq!(
            required_fees("insufficient fees; got: 1upokt required: x: insufficient fee"),
            None
        );
    }

    #[test]
    fn a_price_from_a_required_fee_gives_that_fee_back() {
        // The node's 1upokt × 170_001 gas; the price recovered reprices the same gas limit to the same fee.
        let price = price_of_fee(170_001, 170_001).unwrap();
        assert_eq!(super::super::tx::fee_for_gas(&price, 170_001).unwrap(), 170_001);
        // ceil(0.0000015 × 170_001) = 256: the recovered price is at least the node's minimum.
        let price = price_of_fee(256, 170_001).unwrap();
        assert!(price >= ratio(15, 10_000_000));
        assert_eq!(super::super::tx::fee_for_gas(&price, 170_001).unwrap(), 256);
        assert_eq!(price_of_fee(1, 0), None);
        assert_eq!(gas_price_denom("0.000001upokt"), "upokt");
        assert_eq!(gas_price_denom("0.5"), "upokt");
        assert_eq!(gas_price_denom("2uatom"), "uatom");
    }
}
