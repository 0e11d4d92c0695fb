//! `transaction.skip_unprofitable_claims`: `expected_cost` by default, each policy read as written, anything else
//! refused naming the key (`miner::driver` module `profit` for what they do).

use super::{Config, ConfigError, MINIMAL};
use crate::config::SkipUnprofitableClaims;

fn with(value: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(&format!("{MINIMAL}transaction:\n  skip_unprofitable_claims: {value}\n"))
}

#[test]
fn the_policy_defaults_to_the_expected_cost_and_reads_each_name() {
    let config = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(
        config.transaction.skip_unprofitable_claims,
        SkipUnprofitableClaims::ExpectedCost
    );
    for (text, policy) in [
        ("expected_cost", SkipUnprofitableClaims::ExpectedCost),
        ("poktroll", SkipUnprofitableClaims::Poktroll),
        ("off", SkipUnprofitableClaims::Off),
    ] {
        let config = with(text).unwrap();
        assert_eq!(config.transaction.skip_unprofitable_claims, policy, "{text}");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }
}

#[test]
fn an_unknown_policy_is_refused_naming_the_key() {
    for bad in ["true", "always", "expected-cost", "1"] {
        match with(bad) {
            Err(ConfigError::Parse { key, .. }) => {
                assert_eq!(key, "transaction.skip_unprofitable_claims", "{bad}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}
