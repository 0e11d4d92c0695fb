//! The chain's tip from the node status query (`cosmos.base.node.v1beta1.Service/Status`), against the
//! simulator's real router over a real socket: what the node answers, that no block is read, and that a client
//! expecting a chain id refuses the tip of another chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use prost::Message as _;

use super::*;
use crate::protocol::wire::method;
use crate::sim::chain::SimChain;
use crate::sim::chain::genesis::Genesis;

const CHAIN_ID: &str = "pocket-tip-test";

/// The simulator's gRPC on loopback, three blocks in.
async fn sim() -> (SimChain, String) {
    let mut genesis = Genesis::from_yaml(crate::cli::DEMO_GENESIS).unwrap();
    genesis.chain_id = CHAIN_ID.into();
    let chain = SimChain::new(genesis).unwrap();
    for _ in 0..2 {
        chain.produce_block();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = crate::sim::chain::router(chain.clone()).into_axum();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (chain, format!("http://{addr}"))
}

/// `StatusResponse` fields as cosmos-sdk numbers them (`proto/cosmos/base/node/v1beta1/query.proto`):
/// earliest_store_height 1 (uint64), height 2 (uint64), timestamp 3 (Timestamp), app_hash 4, validator_hash 5.
#[test]
fn the_status_response_encodes_with_the_cosmos_sdk_field_numbers() {
    let response = wire::NodeStatusResponse {
        earliest_store_height: 1,
        height: 2,
        timestamp: Some(wire::BlockTime { seconds: 3, nanos: 4 }),
        app_hash: vec![5],
        validator_hash: vec![6],
    };
    let golden = [
        0x08, 0x01, 0x10, 0x02, 0x1a, 0x04, 0x08, 0x03, 0x10, 0x04, 0x22, 0x01, 0x05, 0x2a, 0x01, 0x06,
    ];
    assert_eq!(response.encode_to_vec(), golden);
    // `GetNodeInfoResponse.default_node_info` (1) → `DefaultNodeInfo.network` (4).
    let info = wire::GetNodeInfoResponse {
        default_node_info: Some(wire::DefaultNodeInfo {
            network: "x".into(),
            ..Default::default()
        }),
    };
    assert_eq!(info.encode_to_vec(), [0x0a, 0x03, 0x22, 0x01, b'x']);
}

/// The simulator answers the status query as a node does: its latest committed height, that block's header
/// time, a 32-byte app and validators hash; and `GetNodeInfo` names its chain id. The answer follows new blocks.
#[tokio::test]
async fn the_simulator_serves_the_node_status_over_its_socket() {
    let (chain, url) = sim().await;
    let grpc = GrpcClient::new(&url, Duration::from_secs(5)).unwrap();
    let status: wire::NodeStatusResponse = grpc
        .unary(method::NODE_STATUS, wire::NodeStatusRequest {})
        .await
        .unwrap();
    assert_eq!(status.height, 3);
    assert_eq!(status.earliest_store_height, 1);
    assert_eq!(status.timestamp, Some(chain.block_time(3)));
    assert_eq!((status.app_hash.len(), status.validator_hash.len()), (32, 32));
    chain.produce_block();
    let status: wire::NodeStatusResponse = grpc
        .unary(method::NODE_STATUS, wire::NodeStatusRequest {})
        .await
        .unwrap();
    assert_eq!((status.height, status.timestamp), (4, Some(chain.block_time(4))));
    let info: wire::GetNodeInfoResponse = grpc
        .unary(tendermint_method::GET_NODE_INFO, wire::GetNodeInfoRequest {})
        .await
        .unwrap();
    assert_eq!(info.default_node_info.unwrap().network, CHAIN_ID);
    assert_eq!(chain.grpc_calls(method::NODE_STATUS), 2);
    assert_eq!(chain.grpc_calls(tendermint_method::GET_NODE_INFO), 1);
}

/// [`ChainClient::tip`] reads no block; with a chain id expected, it asks the node's id once per new height (a
/// tick at an unchanged height costs one status call), and refuses the tip of another chain naming both ids.
#[tokio::test]
async fn a_tip_reads_no_block_and_checks_the_chain_id_once_per_height() {
    let (chain, url) = sim().await;
    let client = ChainClient::new(&url, Duration::from_secs(5)).unwrap();
    client.expect_chain_id(CHAIN_ID).await.unwrap();
    let blocks_read = |c: &SimChain| {
        c.grpc_calls(tendermint_method::GET_LATEST_BLOCK) + c.grpc_calls(tendermint_method::GET_BLOCK_BY_HEIGHT)
    };
    // The start-up check read the latest block once.
    let blocks_at_start = blocks_read(&chain);
    for _ in 0..3 {
        let tip = client.tip().await.unwrap();
        assert_eq!(
            tip,
            ChainTip {
                height: 3,
                time: chain.block_time(3)
            }
        );
    }
    assert_eq!(client.latest_height(), 3, "the tip's height is observed");
    assert_eq!(chain.grpc_calls(tendermint_method::GET_NODE_INFO), 1);
    chain.produce_block();
    assert_eq!(client.tip().await.unwrap().height, 4);
    assert_eq!(chain.grpc_calls(tendermint_method::GET_NODE_INFO), 2);
    assert_eq!(chain.grpc_calls(method::NODE_STATUS), 4);
    assert_eq!(blocks_read(&chain), blocks_at_start, "no block was read for the tip");

    // A client configured for another chain (the node unreachable at start, or swapped behind its URL).
    let wrong = ChainClient::new(&url, Duration::from_secs(5)).unwrap();
    assert!(wrong.expect_chain_id("pocket").await.is_err());
    let err = wrong.tip().await.unwrap_err();
    assert!(
        matches!(&err, ChainError::BadResponse(m) if m.contains(CHAIN_ID) && m.contains("`pocket`")),
        "{err}"
    );
    assert_eq!(wrong.latest_height(), 0, "a refused tip is not observed");
    // Without an expectation the tip is taken as it is.
    let unchecked = ChainClient::new(&url, Duration::from_secs(5)).unwrap();
    assert_eq!(unchecked.tip().await.unwrap().height, 4);
}

/// A status answer at height 0 (a node at genesis), beyond `i64`, or without a time is unusable.
#[test]
fn an_unusable_status_is_an_error() {
    let status = |height: u64, timestamp: Option<wire::BlockTime>| wire::NodeStatusResponse {
        height,
        timestamp,
        ..Default::default()
    };
    let time = Some(wire::BlockTime { seconds: 9, nanos: 0 });
    assert_eq!(tip_of(&status(7, time)).unwrap().height, 7);
    for bad in [status(0, time), status(u64::MAX, time), status(7, None)] {
        assert!(matches!(tip_of(&bad), Err(ChainError::BadResponse(_))), "{bad:?}");
    }
}
