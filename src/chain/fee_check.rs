//! `transaction.gas_price` and `transaction.max_gas_price` against the node's `minimum-gas-prices`, before the
//! process starts.
//!
//! Why: a node refuses at CheckTx (code 13, §6.5) every tx whose fee is below its minimum gas price × gas limit.
//! The miner raises its price to the node's minimum (module `miner::driver::fees`), but never above
//! `transaction.max_gas_price`, and pays only in the denomination of `transaction.gas_price`. A node that asks
//! more than the cap, or only other denominations, therefore refuses every claim and proof: the whole revenue is
//! lost (and proofs missed are slashed), with only an ERROR in the log once the first claim is due, possibly hours
//! after the start. The node's price is operator config (app.toml), known at start, so `relay-miner validate`
//! and `relay-miner run` refuse it up front, naming the key to change, like `pocket_node.chain_id`
//! (`super::chain_id`). A node that cannot be read is not an error: `run` starts without the check, and the miner
//! still reads the price at its first submission.

use std::time::Duration;

use num_rational::BigRational;

use super::fees::{GasPrice, decimal, gas_price_denom, node_minimum_gas_prices};
use super::grpc::{GrpcClient, GrpcTls};

/// Why the node's minimum gas price does not fit the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeCheckError {
    /// The node's minimum in the fee denom is above `transaction.max_gas_price`.
    #[error(
        "the node asks a minimum gas price of {node}{denom} (its minimum-gas-prices), above {max}: it would \
         refuse every claim and proof (CheckTx code 13, insufficient fee); raise transaction.max_gas_price to at \
         least {node}{denom} or use another node"
    )]
    AboveCap {
        /// The node's minimum, as a decimal.
        node: String,
        /// `transaction.max_gas_price` as configured.
        max: String,
        /// The fee denomination (that of `transaction.gas_price`).
        denom: String,
    },
    /// The node takes fees only in other denominations than `transaction.gas_price`'s.
    #[error(
        "the node takes fees only in {node} (its minimum-gas-prices), not in {denom}: it would refuse every claim \
         and proof (CheckTx code 13, insufficient fee); write transaction.gas_price and transaction.max_gas_price \
         in one of its denominations or use another node"
    )]
    OtherDenom {
        /// The node's minimum prices, as `<decimal><denom>` joined by `,`.
        node: String,
        /// The fee denomination (that of `transaction.gas_price`).
        denom: String,
    },
    /// A configured price does not parse (`Config::validate` reports it by its key).
    #[error("{0}")]
    BadConfig(String),
    /// The node's config could not be read: nothing was compared.
    #[error("the minimum gas prices of the node at {url} could not be read: {reason}")]
    Unchecked {
        /// The node's gRPC URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl FeeCheckError {
    /// The config key an operator changes to fix it (`None` for [`Self::Unchecked`]).
    pub fn key(&self) -> Option<&'static str> {
        match self {
            Self::AboveCap { .. } => Some("transaction.max_gas_price"),
            Self::OtherDenom { .. } | Self::BadConfig(_) => Some("transaction.gas_price"),
            Self::Unchecked { .. } => None,
        }
    }
}

/// Whether txs priced from `gas_price` up to `max_gas_price` can meet the node's minimum `node` (empty: the node
/// takes any fee). A configured price below the node's is fine: the miner raises it (up to the cap).
pub fn check(node: &[GasPrice], gas_price: &str, max_gas_price: &str) -> Result<(), FeeCheckError> {
    if node.is_empty() {
        return Ok(());
    }
    let denom = gas_price_denom(gas_price).to_string();
    let parse = |price: &str| super::tx::parse_gas_price(price).map_err(|e| FeeCheckError::BadConfig(e.to_string()));
    // As the miner caps: never below the configured price.
    let max: BigRational = parse(max_gas_price)?.max(parse(gas_price)?);
    let Some(ours) = node.iter().find(|p| p.denom == denom) else {
        let node = node
            .iter()
            .map(|p| format!("{}{}", decimal(&p.amount), p.denom))
            .collect::<Vec<_>>()
            .join(",");
        return Err(FeeCheckError::OtherDenom { node, denom });
    };
    if ours.amount > max {
        return Err(FeeCheckError::AboveCap {
            node: decimal(&ours.amount),
            max: max_gas_price.to_string(),
            denom,
        });
    }
    Ok(())
}

/// [`check`] against the node `grpc` talks to (`cosmos.base.node.v1beta1.Service/Config`).
pub async fn check_node(grpc: &GrpcClient, gas_price: &str, max_gas_price: &str) -> Result<(), FeeCheckError> {
    let node = node_minimum_gas_prices(grpc)
        .await
        .map_err(|e| FeeCheckError::Unchecked {
            url: grpc.url().to_string(),
            reason: e.to_string(),
        })?;
    check(&node, gas_price, max_gas_price)
}

/// [`check_node`] for callers without a tokio runtime (`relay-miner validate`), through
/// [`super::grpc::block_on_node`]. Each step is bounded by `timeout`.
pub fn check_blocking(
    url: &str,
    tls: &GrpcTls,
    timeout: Duration,
    gas_price: &str,
    max_gas_price: &str,
) -> Result<(), FeeCheckError> {
    let (gas_price, max_gas_price) = (gas_price.to_string(), max_gas_price.to_string());
    super::grpc::block_on_node(url, tls, timeout, move |grpc| async move {
        check_node(&grpc, &gas_price, &max_gas_price).await
    })
    .unwrap_or_else(|reason| {
        Err(FeeCheckError::Unchecked {
            url: url.to_string(),
            reason,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::fees::parse_dec_coins;

    fn node(prices: &str) -> Vec<GasPrice> {
        parse_dec_coins(prices).unwrap()
    }

    /// poktroll's `pocketd init` writes `1upokt`; relay-miner's defaults are `0.000001upokt` up to `10upokt`.
    #[test]
    fn a_node_minimum_within_the_cap_is_accepted_even_above_the_configured_price() {
        assert_eq!(check(&node("1upokt"), "0.000001upokt", "10upokt"), Ok(()));
        assert_eq!(
            check(&node("10upokt"), "0.000001upokt", "10upokt"),
            Ok(()),
            "the cap itself"
        );
        assert_eq!(check(&node(""), "0.000001upokt", "10upokt"), Ok(()), "no minimum");
        assert_eq!(
            check(&node("0upokt"), "0.000001upokt", "10upokt"),
            Ok(()),
            "zero asks nothing"
        );
        assert_eq!(
            check(&node("2upokt,1ibc/ABC"), "1upokt", "2upokt"),
            Ok(()),
            "one of several denoms is ours"
        );
    }

    #[test]
    fn a_node_minimum_above_the_cap_is_refused_naming_the_key_and_the_price() {
        let refused = check(&node("10.5upokt"), "0.000001upokt", "10upokt").unwrap_err();
        assert_eq!(
            refused,
            FeeCheckError::AboveCap {
                node: "10.5".into(),
                max: "10upokt".into(),
                denom: "upokt".into()
            }
        );
        assert_eq!(refused.key(), Some("transaction.max_gas_price"));
        let text = refused.to_string();
        for part in ["minimum gas price of 10.5upokt", "above 10upokt", "at least 10.5upokt"] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        // A cap below the configured price is the configured price (as the miner prices).
        assert_eq!(check(&node("2upokt"), "3upokt", "1upokt"), Ok(()));
    }

    #[test]
    fn a_node_taking_only_other_denominations_is_refused() {
        let refused = check(&node("0.5ibc/ABC,1uatom"), "0.000001upokt", "10upokt").unwrap_err();
        assert_eq!(
            refused,
            FeeCheckError::OtherDenom {
                node: "0.5ibc/ABC,1uatom".into(),
                denom: "upokt".into()
            }
        );
        assert_eq!(refused.key(), Some("transaction.gas_price"));
    }

    #[test]
    fn a_configured_price_that_does_not_parse_is_named() {
        let refused = check(&node("1upokt"), "x", "10upokt").unwrap_err();
        assert!(matches!(refused, FeeCheckError::BadConfig(_)), "{refused:?}");
    }
}
