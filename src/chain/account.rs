//! The `BaseAccount` inside the `Any` of an `/cosmos.auth.v1beta1.Query/Account` answer, whatever account type
//! wraps it.
//!
//! Why dispatch on the type URL: a supplier's operator account can be a vesting account (genesis allocations
//! are), and its bytes are not a `BaseAccount`: each vesting type nests `BaseVestingAccount` at field 1, which
//! nests `BaseAccount` at field 1. Decoding them as a `BaseAccount` reads field 1 as the address and finds no
//! account number (0), so every tx signed with it fails its signature check. Field numbers are those of
//! cosmos-sdk `proto/cosmos/vesting/v1beta1/vesting.proto` and `proto/cosmos/auth/v1beta1/auth.proto`.

use super::query::ChainError;
use crate::protocol::wire;

/// `cosmos.auth.v1beta1.ModuleAccount`, down to the field needed (`name` = 2 and `permissions` = 3 skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct ModuleAccount {
    #[prost(message, optional, tag = "1")]
    base_account: Option<wire::BaseAccount>,
}

/// `cosmos.vesting.v1beta1.BaseVestingAccount`, down to the field needed (the vesting coins and end time,
/// fields 2-5, skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct BaseVestingAccount {
    #[prost(message, optional, tag = "1")]
    base_account: Option<wire::BaseAccount>,
}

/// Any of the four vesting accounts of cosmos-sdk v0.53 (`Continuous`, `Delayed`, `Periodic`,
/// `PermanentLocked`): each has `BaseVestingAccount base_vesting_account = 1` and only schedule fields after it.
#[derive(Clone, PartialEq, prost::Message)]
struct VestingAccount {
    #[prost(message, optional, tag = "1")]
    base_vesting_account: Option<BaseVestingAccount>,
}

/// Type URL of `cosmos.auth.v1beta1.ModuleAccount`.
pub const MODULE_ACCOUNT_TYPE_URL: &str = "/cosmos.auth.v1beta1.ModuleAccount";

/// Type URLs of the vesting accounts of cosmos-sdk v0.53 (`x/auth/vesting`).
pub const VESTING_ACCOUNT_TYPE_URLS: [&str; 4] = [
    "/cosmos.vesting.v1beta1.ContinuousVestingAccount",
    "/cosmos.vesting.v1beta1.DelayedVestingAccount",
    "/cosmos.vesting.v1beta1.PeriodicVestingAccount",
    "/cosmos.vesting.v1beta1.PermanentLockedAccount",
];

/// The `BaseAccount` of `account` (an `Any` of a base, module or vesting account); any other type is a
/// [`ChainError::BadResponse`] naming it, since guessing its layout would sign with a wrong account number.
pub fn base_account(account: &wire::Any) -> Result<wire::BaseAccount, ChainError> {
    let type_url = account.type_url.as_str();
    let bad = |e: prost::DecodeError| ChainError::BadResponse(format!("account of type `{type_url}`: {e}"));
    let missing = || ChainError::BadResponse(format!("account of type `{type_url}` without its BaseAccount"));
    let bytes = account.value.as_slice();
    if type_url == wire::BASE_ACCOUNT_TYPE_URL {
        <wire::BaseAccount as prost::Message>::decode(bytes).map_err(bad)
    } else if type_url == MODULE_ACCOUNT_TYPE_URL {
        <ModuleAccount as prost::Message>::decode(bytes)
            .map_err(bad)?
            .base_account
            .ok_or_else(missing)
    } else if VESTING_ACCOUNT_TYPE_URLS.contains(&type_url) {
        <VestingAccount as prost::Message>::decode(bytes)
            .map_err(bad)?
            .base_vesting_account
            .and_then(|v| v.base_account)
            .ok_or_else(missing)
    } else {
        Err(ChainError::BadResponse(format!(
            "account of unsupported type `{type_url}` (supported: {}, {MODULE_ACCOUNT_TYPE_URL}, {})",
            wire::BASE_ACCOUNT_TYPE_URL,
            VESTING_ACCOUNT_TYPE_URLS.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;

    // The full cosmos-sdk messages (every field, numbered as in vesting.proto and auth.proto), so the tests
    // encode what a node sends, schedule fields included, not just what the decoder reads.

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullBaseVestingAccount {
        #[prost(message, optional, tag = "1")]
        base_account: Option<wire::BaseAccount>,
        #[prost(message, repeated, tag = "2")]
        original_vesting: Vec<wire::Coin>,
        #[prost(message, repeated, tag = "3")]
        delegated_free: Vec<wire::Coin>,
        #[prost(message, repeated, tag = "4")]
        delegated_vesting: Vec<wire::Coin>,
        #[prost(int64, tag = "5")]
        end_time: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ContinuousVestingAccount {
        #[prost(message, optional, tag = "1")]
        base_vesting_account: Option<FullBaseVestingAccount>,
        #[prost(int64, tag = "2")]
        start_time: i64,
    }

    /// Also the layout of `PermanentLockedAccount`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct DelayedVestingAccount {
        #[prost(message, optional, tag = "1")]
        base_vesting_account: Option<FullBaseVestingAccount>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Period {
        #[prost(int64, tag = "1")]
        length: i64,
        #[prost(message, repeated, tag = "2")]
        amount: Vec<wire::Coin>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct PeriodicVestingAccount {
        #[prost(message, optional, tag = "1")]
        base_vesting_account: Option<FullBaseVestingAccount>,
        #[prost(int64, tag = "2")]
        start_time: i64,
        #[prost(message, repeated, tag = "3")]
        vesting_periods: Vec<Period>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullModuleAccount {
        #[prost(message, optional, tag = "1")]
        base_account: Option<wire::BaseAccount>,
        #[prost(string, tag = "2")]
        name: String,
        #[prost(string, repeated, tag = "3")]
        permissions: Vec<String>,
    }

    fn base() -> wire::BaseAccount {
        wire::BaseAccount {
            address: "pokt1supplier".into(),
            pub_key: Some(wire::Any {
                type_url: crate::chain::tx::SECP256K1_PUBKEY_TYPE_URL.into(),
                value: crate::chain::tx::Secp256k1PubKey { key: vec![2; 33] }.encode_to_vec(),
            }),
            account_number: 4242,
            sequence: 17,
        }
    }

    fn upokt(amount: &str) -> Vec<wire::Coin> {
        vec![wire::Coin {
            denom: "upokt".into(),
            amount: amount.into(),
        }]
    }

    fn base_vesting() -> FullBaseVestingAccount {
        FullBaseVestingAccount {
            base_account: Some(base()),
            original_vesting: upokt("1000000"),
            delegated_free: upokt("5"),
            delegated_vesting: upokt("7"),
            end_time: 1_900_000_000,
        }
    }

    fn any(type_url: &str, value: Vec<u8>) -> wire::Any {
        wire::Any {
            type_url: type_url.into(),
            value,
        }
    }

    /// Every vesting account type and a module account yield the nested `BaseAccount` (account number,
    /// sequence and key intact), not field 1 misread as an address with account number 0.
    #[test]
    fn vesting_and_module_accounts_yield_their_nested_base_account() {
        let continuous = ContinuousVestingAccount {
            base_vesting_account: Some(base_vesting()),
            start_time: 1_800_000_000,
        }
        .encode_to_vec();
        let delayed = DelayedVestingAccount {
            base_vesting_account: Some(base_vesting()),
        }
        .encode_to_vec();
        let periodic = PeriodicVestingAccount {
            base_vesting_account: Some(base_vesting()),
            start_time: 1_800_000_000,
            vesting_periods: vec![
                Period {
                    length: 86_400,
                    amount: upokt("500000"),
                },
                Period {
                    length: 86_400,
                    amount: upokt("500000"),
                },
            ],
        }
        .encode_to_vec();
        let module = FullModuleAccount {
            base_account: Some(base()),
            name: "supplier".into(),
            permissions: vec!["burner".into(), "minter".into()],
        }
        .encode_to_vec();
        let cases = [
            any("/cosmos.vesting.v1beta1.ContinuousVestingAccount", continuous.clone()),
            any("/cosmos.vesting.v1beta1.DelayedVestingAccount", delayed.clone()),
            any("/cosmos.vesting.v1beta1.PeriodicVestingAccount", periodic),
            any("/cosmos.vesting.v1beta1.PermanentLockedAccount", delayed),
            any("/cosmos.auth.v1beta1.ModuleAccount", module),
            any("/cosmos.auth.v1beta1.BaseAccount", base().encode_to_vec()),
        ];
        for account in cases {
            assert_eq!(base_account(&account).unwrap(), base(), "{}", account.type_url);
        }
        // What the old decoding (every Any as a BaseAccount) made of a vesting account: an error (field 1, the
        // nested message, is not a UTF-8 address), or without its account number.
        let misread = wire::BaseAccount::decode(continuous.as_slice());
        assert!(!matches!(misread, Ok(a) if a.account_number == 4242));
    }

    /// An account type this client does not know is refused, naming it, rather than guessed at.
    #[test]
    fn unknown_account_types_are_a_clear_error() {
        let unknown = any(
            "/cosmos.vesting.v1beta1.ClawbackVestingAccount",
            base_vesting().encode_to_vec(),
        );
        let err = base_account(&unknown).unwrap_err();
        assert!(matches!(err, ChainError::BadResponse(_)), "{err}");
        assert!(err.to_string().contains("ClawbackVestingAccount"), "{err}");
        assert!(!err.is_retryable());
        // A known type without its nested base account, and bytes that are not the type, are errors too.
        let hollow = any(
            VESTING_ACCOUNT_TYPE_URLS[1],
            DelayedVestingAccount::default().encode_to_vec(),
        );
        assert!(
            base_account(&hollow)
                .unwrap_err()
                .to_string()
                .contains("without its BaseAccount")
        );
        let garbage = any(VESTING_ACCOUNT_TYPE_URLS[0], vec![0x0a, 0xff]);
        assert!(matches!(base_account(&garbage), Err(ChainError::BadResponse(_))));
    }
}
