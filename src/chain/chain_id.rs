//! The node's chain id against the configured one (`pocket_node.chain_id`).
//!
//! Why: every tx's SignDoc carries the chain id. Signed for another chain, each tx fails its signature check at
//! CheckTx (code 4, unauthorized) forever, while Simulate (which skips signature checks) passes, so the
//! miner would lose every claim and proof without a hint. The node's id is read from its latest block header
//! (gRPC `GetLatestBlock`, the node relay-miner queries and broadcasts to), and compared before anything starts:
//! `relay-miner validate` and `relay-miner run` refuse a mismatch.

use std::time::Duration;

use super::grpc::{GrpcClient, GrpcTls};
use super::query::ChainError;
use crate::protocol::wire::{self, tendermint_method};

/// Why the chain id check did not pass.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainIdError {
    /// The node serves another chain than the configured one.
    #[error(
        "configured `{configured}`, but the node at {url} serves chain `{node}`: every tx would be signed for the \
         wrong chain and fail its signature check (code 4)"
    )]
    Mismatch {
        /// `pocket_node.chain_id`.
        configured: String,
        /// The chain id in the node's latest block header.
        node: String,
        /// The node's gRPC URL.
        url: String,
    },
    /// The node's chain id could not be read (unreachable, or no usable answer): nothing was compared.
    #[error("the chain id of the node at {url} could not be read: {reason}")]
    Unchecked {
        /// The node's gRPC URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The chain id in the header of the node's latest block.
pub async fn node_chain_id(grpc: &GrpcClient) -> Result<String, ChainError> {
    let response: wire::GetBlockResponse = grpc
        .unary(tendermint_method::GET_LATEST_BLOCK, wire::GetLatestBlockRequest {})
        .await?;
    let chain_id = response
        .block
        .and_then(|b| b.header)
        .map(|h| h.chain_id)
        .unwrap_or_default();
    if chain_id.is_empty() {
        return Err(ChainError::BadResponse("latest block header without a chain id".into()));
    }
    Ok(chain_id)
}

/// Compares `configured` with the chain id of the node `grpc` talks to.
pub async fn check(grpc: &GrpcClient, configured: &str) -> Result<(), ChainIdError> {
    let node = node_chain_id(grpc).await.map_err(|e| ChainIdError::Unchecked {
        url: grpc.url().to_string(),
        reason: e.to_string(),
    })?;
    if node == configured {
        Ok(())
    } else {
        Err(ChainIdError::Mismatch {
            configured: configured.to_string(),
            node,
            url: grpc.url().to_string(),
        })
    }
}

/// [`check`] for callers without a tokio runtime (`relay-miner validate`), through
/// [`super::grpc::block_on_node`]. Each step is bounded by `timeout`.
pub fn check_blocking(url: &str, tls: &GrpcTls, timeout: Duration, configured: &str) -> Result<(), ChainIdError> {
    let configured = configured.to_string();
    super::grpc::block_on_node(
        url,
        tls,
        timeout,
        move |grpc| async move { check(&grpc, &configured).await },
    )
    .unwrap_or_else(|reason| {
        Err(ChainIdError::Unchecked {
            url: url.to_string(),
            reason,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::chain::query::ChainClient;
    use crate::sim::chain::genesis::Genesis;

    const SIM_CHAIN_ID: &str = "pocket-chain-id-test";

    /// The simulator's gRPC (its real router, over a real socket) for a genesis with `chain_id`.
    async fn sim(chain_id: &str) -> String {
        let mut genesis = Genesis::from_yaml(crate::cli::DEMO_GENESIS).unwrap();
        genesis.chain_id = chain_id.into();
        let chain = crate::sim::chain::SimChain::new(genesis).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = crate::sim::chain::router(chain).into_axum();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// The node's chain id is read from its latest block; a different configured id is a mismatch naming both,
    /// the same id passes, and an unreachable node is `Unchecked`, not a mismatch.
    #[tokio::test]
    async fn the_configured_chain_id_is_compared_with_the_nodes() {
        let url = sim(SIM_CHAIN_ID).await;
        let grpc = GrpcClient::new(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(node_chain_id(&grpc).await.unwrap(), SIM_CHAIN_ID);
        check(&grpc, SIM_CHAIN_ID).await.unwrap();
        let err = check(&grpc, "pocket").await.unwrap_err();
        assert!(
            matches!(&err, ChainIdError::Mismatch { configured, node, .. } if configured == "pocket" && node == SIM_CHAIN_ID),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("`pocket`") && text.contains(SIM_CHAIN_ID), "{text}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let grpc = GrpcClient::new(&dead, Duration::from_secs(2)).unwrap();
        assert!(matches!(
            check(&grpc, "pocket").await,
            Err(ChainIdError::Unchecked { .. })
        ));
    }

    /// The blocking form (for `validate`, which has no runtime) gives the same answers, also when called from
    /// inside a runtime.
    // Two workers: the simulator's server runs on this runtime while a worker blocks in the check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_check_works_without_and_inside_a_runtime() {
        let url = sim(SIM_CHAIN_ID).await;
        let tls = GrpcTls::plaintext_or_https();
        let timeout = Duration::from_secs(5);
        let (u, t) = (url.clone(), tls.clone());
        // From a plain thread (as `validate` calls it) ...
        let outside = tokio::task::spawn_blocking(move || check_blocking(&u, &t, timeout, "pocket"))
            .await
            .unwrap();
        assert!(matches!(outside, Err(ChainIdError::Mismatch { .. })), "{outside:?}");
        // ... and from inside this test's runtime.
        let inside = tokio::task::block_in_place(|| check_blocking(&url, &tls, timeout, SIM_CHAIN_ID));
        assert!(inside.is_ok(), "{inside:?}");
        assert!(matches!(
            check_blocking("not a url", &tls, timeout, "pocket"),
            Err(ChainIdError::Unchecked { .. })
        ));
    }

    /// Once a chain id is expected, every block read refuses blocks of another chain: a node that was
    /// unreachable when `run` started, or is swapped behind its URL later, cannot make the miner sign for it.
    #[tokio::test]
    async fn a_client_expecting_a_chain_id_refuses_blocks_of_another_chain() {
        let url = sim(SIM_CHAIN_ID).await;
        let right = ChainClient::new(&url, Duration::from_secs(5)).unwrap();
        right.expect_chain_id(SIM_CHAIN_ID).await.unwrap();
        assert!(right.latest_block().await.is_ok());
        assert!(right.block(1).await.is_ok());

        let wrong = ChainClient::new(&url, Duration::from_secs(5)).unwrap();
        assert!(matches!(
            wrong.expect_chain_id("pocket").await,
            Err(ChainIdError::Mismatch { .. })
        ));
        let err = wrong.latest_block().await.unwrap_err();
        assert!(
            matches!(&err, ChainError::BadResponse(m) if m.contains(SIM_CHAIN_ID) && m.contains("`pocket`")),
            "{err}"
        );
        assert!(wrong.block(1).await.is_err());
    }
}
