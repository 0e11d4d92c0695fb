//! [`ChainClient`] over real sockets against the simulator's gRPC server ([`crate::sim::grpc::GrpcRouter`]) answering
//! what a full node answers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prost::Message as _;

use super::*;
use crate::sim::grpc::GrpcRouter;

async fn serve(router: GrpcRouter) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router.into_axum()).await });
    format!("http://{addr}")
}

/// `tendermint.types.Data`: the block's txs.
#[derive(Clone, PartialEq, prost::Message)]
struct Data {
    #[prost(bytes = "vec", repeated, tag = "1")]
    txs: Vec<Vec<u8>>,
}

/// `tendermint.types.Block` with its txs (`data` = 2), as a node sends it (and `cosmos.base.tendermint.v1beta1.Block`
/// for `sdk_block`, same fields 1 and 2).
#[derive(Clone, PartialEq, prost::Message)]
struct FullBlock {
    #[prost(message, optional, tag = "1")]
    header: Option<wire::BlockHeader>,
    #[prost(message, optional, tag = "2")]
    data: Option<Data>,
}

/// `cosmos.base.tendermint.v1beta1.GetLatestBlockResponse` / `GetBlockByHeightResponse`: the block twice,
/// `block` (deprecated) and `sdk_block` = 3.
#[derive(Clone, PartialEq, prost::Message)]
struct FullGetBlockResponse {
    #[prost(message, optional, tag = "1")]
    block_id: Option<wire::BlockId>,
    #[prost(message, optional, tag = "2")]
    block: Option<FullBlock>,
    #[prost(message, optional, tag = "3")]
    sdk_block: Option<FullBlock>,
}

/// A block at `height` carrying `tx_bytes` of txs (proof txs of 256 KiB each), sent twice as a node does.
fn big_block(height: i64, tx_bytes: usize) -> FullGetBlockResponse {
    let tx = vec![0xab; 256 * 1024];
    let block = FullBlock {
        header: Some(wire::BlockHeader {
            chain_id: "pocket".into(),
            height,
            time: Some(wire::BlockTime {
                seconds: 1_700_000_000 + height,
                nanos: 0,
            }),
        }),
        data: Some(Data {
            txs: vec![tx; tx_bytes / (256 * 1024)],
        }),
    };
    FullGetBlockResponse {
        block_id: Some(wire::BlockId { hash: vec![7; 32] }),
        block: Some(block.clone()),
        sdk_block: Some(block),
    }
}

/// A block with 2.5 MiB of txs is a > 5 MiB gRPC answer (the block twice): above tonic's default 4 MiB
/// receive limit, which made every read of such a block fail (`OutOfRange`), so the proof seed block could
/// not be read and no proof was sent. Both block queries read it now.
#[tokio::test]
async fn blocks_larger_than_four_mib_are_read() {
    const TX_BYTES: usize = 10 * 256 * 1024;
    let answer = big_block(42, TX_BYTES);
    assert!(answer.encoded_len() > 5 * 1024 * 1024, "{}", answer.encoded_len());
    let router = GrpcRouter::new()
        .unary(
            tendermint_method::GET_LATEST_BLOCK,
            |_: wire::GetLatestBlockRequest| async move { Ok(big_block(42, TX_BYTES)) },
        )
        .unary(
            tendermint_method::GET_BLOCK_BY_HEIGHT,
            |r: wire::GetBlockByHeightRequest| async move { Ok(big_block(r.height, TX_BYTES)) },
        );
    let client = ChainClient::new(&serve(router).await, Duration::from_secs(10)).unwrap();
    let latest = client.latest_block().await.unwrap();
    assert_eq!((latest.height, latest.hash.clone()), (42, vec![7; 32]));
    let seed = client.block(40).await.unwrap();
    assert_eq!((seed.height, seed.time.seconds), (40, 1_700_000_040));
}

#[test]
fn a_simulate_answer_without_gas_is_an_error_not_zero_gas() {
    let answer = |gas_used: Option<u64>| wire::SimulateResponse {
        gas_info: gas_used.map(|gas_used| wire::GasInfo {
            gas_used,
            ..Default::default()
        }),
        result: None,
    };
    assert_eq!(simulated_gas(answer(Some(81_234))).unwrap(), 81_234);
    for malformed in [None, Some(0)] {
        assert!(matches!(
            simulated_gas(answer(malformed)),
            Err(ChainError::BadResponse(_))
        ));
    }
}

/// A supplier whose operator account is a vesting account gets its real account number and key through
/// `account` and `account_pubkey` (the node answers with the vesting type's `Any`, see [`super::super::account`]).
#[tokio::test]
async fn vesting_accounts_are_read_through_the_account_query() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct BaseVestingAccount {
        #[prost(message, optional, tag = "1")]
        base_account: Option<wire::BaseAccount>,
        #[prost(message, repeated, tag = "2")]
        original_vesting: Vec<wire::Coin>,
        #[prost(int64, tag = "5")]
        end_time: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct DelayedVestingAccount {
        #[prost(message, optional, tag = "1")]
        base_vesting_account: Option<BaseVestingAccount>,
    }
    let key = [3u8; 33];
    let router = GrpcRouter::new().unary(method::ACCOUNT, move |r: wire::QueryAccountRequest| async move {
        let base = wire::BaseAccount {
            address: r.address,
            pub_key: Some(wire::Any::pack(
                crate::chain::tx::SECP256K1_PUBKEY_TYPE_URL,
                &crate::chain::tx::Secp256k1PubKey { key: key.to_vec() },
            )),
            account_number: 99,
            sequence: 5,
        };
        let vesting = DelayedVestingAccount {
            base_vesting_account: Some(BaseVestingAccount {
                base_account: Some(base),
                original_vesting: vec![wire::Coin {
                    denom: "upokt".into(),
                    amount: "1000".into(),
                }],
                end_time: 2_000_000_000,
            }),
        };
        Ok(wire::QueryAccountResponse {
            account: Some(wire::Any::pack(
                "/cosmos.vesting.v1beta1.DelayedVestingAccount",
                &vesting,
            )),
        })
    });
    let client = ChainClient::new(&serve(router).await, Duration::from_secs(5)).unwrap();
    let account = client.account("pokt1vesting").await.unwrap();
    assert_eq!(
        (account.address.as_str(), account.account_number, account.sequence),
        ("pokt1vesting", 99, 5)
    );
    assert_eq!(client.account_pubkey("pokt1vesting").await.unwrap(), Some(key));
}
