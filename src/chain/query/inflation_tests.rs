//! The tokenomics `global_inflation_per_claim` the relay meter needs ([`ChainClient::global_inflation_per_claim`]):
//! read from a node's full `Params` answer, cached, and an error (never a guess) when the node cannot answer or
//! answers a value the chain could not settle with.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use super::*;
use crate::sim::grpc::GrpcRouter;

/// `pocket.tokenomics.Params` with the fields a node sends around the one read (`dao_reward_address` = 6,
/// `mint_ratio` = 9, `overservicing_bonus_multiplier` = 10).
#[derive(Clone, PartialEq, prost::Message)]
struct FullParams {
    #[prost(string, tag = "6")]
    dao_reward_address: String,
    #[prost(double, tag = "7")]
    global_inflation_per_claim: f64,
    #[prost(double, tag = "9")]
    mint_ratio: f64,
    #[prost(uint64, tag = "10")]
    overservicing_bonus_multiplier: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FullResponse {
    #[prost(message, optional, tag = "1")]
    params: Option<FullParams>,
}

/// A node answering `global_inflation_per_claim` with the `f64` whose bits are in `value` (`u64::MAX`: unavailable),
/// counting its queries.
async fn node(value: Arc<AtomicU64>, queries: Arc<AtomicUsize>) -> ChainClient {
    let router = GrpcRouter::new().unary(method::TOKENOMICS_PARAMS, move |_: wire::QueryParamsRequest| {
        let (value, queries) = (Arc::clone(&value), Arc::clone(&queries));
        async move {
            queries.fetch_add(1, Ordering::SeqCst);
            let bits = value.load(Ordering::SeqCst);
            if bits == u64::MAX {
                return Err(tonic::Status::unavailable("down"));
            }
            Ok(FullResponse {
                params: Some(FullParams {
                    dao_reward_address: "pokt1dao".into(),
                    global_inflation_per_claim: f64::from_bits(bits),
                    mint_ratio: 0.975,
                    overservicing_bonus_multiplier: 1,
                }),
            })
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router.into_axum()).await });
    ChainClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn the_inflation_is_read_once_and_cached() {
    let (value, queries) = (
        Arc::new(AtomicU64::new(0.1f64.to_bits())),
        Arc::new(AtomicUsize::new(0)),
    );
    let client = node(Arc::clone(&value), Arc::clone(&queries)).await;
    let tenth = InflationPerClaim::from_param(0.1).unwrap();
    assert_eq!(client.global_inflation_per_claim().await.unwrap(), tenth);
    // Cached: the node going down changes nothing within the TTL.
    value.store(u64::MAX, Ordering::SeqCst);
    assert_eq!(client.global_inflation_per_claim().await.unwrap(), tenth);
    assert_eq!(queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_usable_answer_the_read_fails() {
    let (value, queries) = (Arc::new(AtomicU64::new(u64::MAX)), Arc::new(AtomicUsize::new(0)));
    let client = node(Arc::clone(&value), Arc::clone(&queries)).await;
    assert!(matches!(
        client.global_inflation_per_claim().await,
        Err(ChainError::Grpc(_))
    ));
    value.store(f64::NAN.to_bits(), Ordering::SeqCst);
    assert!(matches!(
        client.global_inflation_per_claim().await,
        Err(ChainError::BadResponse(_))
    ));
    // Nothing was cached: each call asked again.
    assert_eq!(queries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_node_down_past_the_stale_window_keeps_the_last_value_and_is_asked_again_at_most_every_few_seconds() {
    let (value, queries) = (
        Arc::new(AtomicU64::new(0.1f64.to_bits())),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut client = node(Arc::clone(&value), Arc::clone(&queries)).await;
    let tenth = InflationPerClaim::from_param(0.1).unwrap();
    assert_eq!(client.global_inflation_per_claim().await.unwrap(), tenth);
    // The node goes down and the cached entry is past its usable time (a cache without a stale window: every
    // lookup after the TTL is a miss), as after minutes of a node restart.
    value.store(u64::MAX, Ordering::SeqCst);
    client.inflation = RefreshCache::new(1, Duration::ZERO);
    assert_eq!(client.global_inflation_per_claim().await.unwrap(), tenth);
    assert_eq!(queries.load(Ordering::SeqCst), 2);
    // The failed read cached the last value for a few seconds: the next relays do not ask the node each.
    for _ in 0..10 {
        assert_eq!(client.global_inflation_per_claim().await.unwrap(), tenth);
    }
    assert_eq!(queries.load(Ordering::SeqCst), 2);
}
