//! At-height history queries answered by a node behind the height asked about (module docs of
//! [`ChainClient::difficulty_target_at`]): against the simulator's gRPC server, whose `query_lag_blocks` knob makes
//! it answer as a load-balanced backend that lags.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::sim::chain::genesis::*;
use crate::sim::chain::{SimChain, router};

fn genesis() -> Genesis {
    let key_hex = |label: &str| hex::encode(crate::protocol::sha256(label.as_bytes()));
    Genesis {
        chain_id: "pocket-sim".into(),
        block_time_ms: 50,
        shared_params: GenesisSharedParams::default(),
        proof_params: GenesisProofParams::default(),
        num_suppliers_per_session: 15,
        services: vec![GenesisService {
            id: "anvil".into(),
            compute_units_per_relay: 10,
            difficulty_target_hex: None,
        }],
        applications: vec![GenesisApplication {
            key_hex: key_hex("app"),
            stake_upokt: 1_000_000,
            services: vec!["anvil".into()],
            delegate_to: vec![],
        }],
        gateways: vec![],
        suppliers: vec![GenesisSupplier {
            key_hex: key_hex("supplier"),
            stake_upokt: 1_000_000,
            balance_upokt: 1_000_000,
            services: vec![GenesisSupplierService {
                service_id: "anvil".into(),
                url: "http://127.0.0.1:1".into(),
            }],
        }],
    }
}

async fn serve(chain: &SimChain) -> ChainClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(chain.clone()).into_axum();
    tokio::spawn(async move { axum::serve(listener, app).await });
    ChainClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap()
}

/// The difficulty retargeted for the next session, and the chain at that session's start: returns its height.
fn retargeted_at_next_session(chain: &SimChain) -> i64 {
    chain.produce_block();
    chain.set_relay_mining_difficulty("anvil", [0x0f; 32]).unwrap();
    // Applied in the next block, effective from the session start after it.
    chain.produce_block();
    let grid = crate::protocol::session::SessionGrid::new(&chain.state().shared).unwrap();
    let next = grid.session_end(chain.height()) + 1;
    while chain.height() < next {
        chain.produce_block();
    }
    next
}

/// A node two blocks behind a session start answers the difficulty of the session before (it has not committed
/// the end block that wrote the new entry). Its answer is neither used nor cached: the read fails as retryable
/// `Behind`, and once a node that knows the height answers, the new target is what every later read gets.
#[tokio::test]
async fn a_difficulty_from_a_node_behind_the_session_start_is_not_taken() {
    let chain = SimChain::new(genesis()).unwrap();
    let client = serve(&chain).await;
    let start = retargeted_at_next_session(&chain);
    chain.state().query_lag_blocks = 2;
    let behind = client.difficulty_target_at("anvil", start).await.unwrap_err();
    assert!(matches!(behind, ChainError::Behind { height, served, .. } if height == start && served == start - 2));
    assert!(behind.is_retryable());
    let cu_behind = client.compute_units_at("anvil", start).await.unwrap_err();
    assert!(matches!(cu_behind, ChainError::Behind { .. }), "{cu_behind:?}");

    chain.state().query_lag_blocks = 0;
    assert_eq!(
        client.difficulty_target_at("anvil", start).await.unwrap(),
        vec![0x0f; 32]
    );
    chain.state().query_lag_blocks = 2;
    assert_eq!(
        client.difficulty_target_at("anvil", start).await.unwrap(),
        vec![0x0f; 32],
        "cached once a node at the height answered"
    );
}

/// A node one block behind has committed the block before the session start, whose end block writes the
/// session's entry at the latest: its answer is the chain's.
#[tokio::test]
async fn a_node_one_block_behind_knows_the_session_starts_entry() {
    let chain = SimChain::new(genesis()).unwrap();
    let client = serve(&chain).await;
    let start = retargeted_at_next_session(&chain);
    chain.state().query_lag_blocks = 1;
    assert_eq!(
        client.difficulty_target_at("anvil", start).await.unwrap(),
        vec![0x0f; 32]
    );
}

/// A node answering claims from state older than the height asked, whose "no claim" is an empty answer stamped
/// with that older height: the pin (`x-cosmos-block-height`) dropped on the way (a proxy), so the node does not
/// refuse the height it has not reached. Taken as "absent", a claim landed in the blocks it has not committed
/// reads as missing: re-sent (a fee) or, past its window, the session expired as lost. It is
/// [`ChainError::Behind`] (retryable), and "absent" only from a node at the height asked or past it.
#[tokio::test]
async fn an_absent_claim_answered_below_the_height_asked_is_behind_not_absent() {
    use crate::chain::grpc::BLOCK_HEIGHT_HEADER;
    use crate::protocol::wire::{self, method};
    use crate::sim::grpc::GrpcRouter;

    // The node's height; the test asks about 10.
    const NODE_HEIGHT: i64 = 8;
    let router = GrpcRouter::new()
        .with_block_height(|| NODE_HEIGHT)
        .unary(method::CLAIM, |_: wire::QueryGetClaimRequest| async {
            Ok(wire::QueryGetClaimResponse { claim: None })
        });
    let unpinned = tower::util::MapRequestLayer::new(|mut request: axum::extract::Request| {
        request.headers_mut().remove(BLOCK_HEIGHT_HEADER);
        request
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router.into_axum().layer(unpinned);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = ChainClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();

    let behind = client
        .claim_at("session", "pokt1supplier", Some(NODE_HEIGHT + 2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            behind,
            ChainError::Behind {
                query: "claim",
                height: 10,
                served: 8
            }
        ),
        "{behind:?}"
    );
    assert!(behind.is_retryable());
    for height in [Some(NODE_HEIGHT), Some(NODE_HEIGHT - 1), None] {
        let answer = client.claim_as_of("session", "pokt1supplier", height).await.unwrap();
        assert_eq!(answer.claim, None, "absent as of {height:?}");
        assert_eq!(answer.as_of, Some(NODE_HEIGHT), "{height:?}");
    }
}

/// A governance change of the claim window, landing in the last block of a session (x/shared writes it into its
/// history then, effective at the next session start), read at that start through a node two blocks behind: it
/// has not committed the block with the change and answers the previous params. Taken (and cached for the whole
/// session, every height of which then gets them without a query), the session's claims and proofs were timed
/// on the old windows. The read fails as retryable `Behind`; a node one block behind (it committed the change)
/// is taken, and what every later read of the session gets.
#[tokio::test]
async fn shared_params_from_a_node_behind_the_session_start_are_not_taken() {
    let chain = SimChain::new(genesis()).unwrap();
    let client = serve(&chain).await;
    let (start, _, changed) = windows_changed_at_a_session_start(&chain, &client);

    chain.state().query_lag_blocks = 2;
    let behind = client.shared_params_at(start).await.unwrap_err();
    assert!(
        matches!(behind, ChainError::Behind { height, served, .. } if height == start && served == start - 2),
        "{behind:?}"
    );
    assert!(behind.is_retryable());

    chain.state().query_lag_blocks = 1;
    assert_eq!(client.shared_params_at(start).await.unwrap(), changed);
    chain.state().query_lag_blocks = 2;
    assert_eq!(
        client.shared_params_at(start + 1).await.unwrap(),
        changed,
        "the session's params, cached"
    );
}

/// A claim window one block longer, set in the last block of a session (the change lands there), and the
/// chain at the next session's start, which `client` knows: returns that start, the params before and after.
fn windows_changed_at_a_session_start(
    chain: &SimChain,
    client: &ChainClient,
) -> (
    i64,
    crate::protocol::wire::SharedParams,
    crate::protocol::wire::SharedParams,
) {
    let old = chain.state().shared.clone();
    let grid = crate::protocol::session::SessionGrid::new(&old).unwrap();
    let blocks = i64::try_from(old.num_blocks_per_session).unwrap();
    // The chain in the block before the last block of a session: the change lands in that last block.
    let start = grid.session_end(chain.height().max(1)) + blocks + 1;
    while chain.height() < start - 2 {
        chain.produce_block();
    }
    let changed = crate::protocol::wire::SharedParams {
        claim_window_close_offset_blocks: old.claim_window_close_offset_blocks + 1,
        ..old.clone()
    };
    chain.set_shared_params(changed.clone()).unwrap();
    while chain.height() < start {
        chain.produce_block();
    }
    client.observe_height(start);
    assert_eq!(
        chain.state().shared_at(start),
        changed,
        "the history takes the change from the start"
    );
    (start, old, changed)
}

/// The relay path takes shared params from nodes all behind the session start (not cached), instead of refusing
/// the relay; the miner's read still fails as `Behind` and, once a node that knows answers, gets the new params.
#[tokio::test]
async fn the_relay_path_takes_shared_params_from_nodes_behind_uncached() {
    let chain = SimChain::new(genesis()).unwrap();
    let client = serve(&chain).await;
    let (start, old, changed) = windows_changed_at_a_session_start(&chain, &client);
    chain.state().query_lag_blocks = 2;
    assert_eq!(
        client.shared_params_for_relays(start).await.unwrap(),
        old,
        "the node's answer"
    );
    assert!(matches!(
        client.shared_params_at(start).await.unwrap_err(),
        ChainError::Behind { .. }
    ));
    chain.state().query_lag_blocks = 0;
    assert_eq!(client.shared_params_at(start).await.unwrap(), changed, "not cached");
    assert_eq!(client.shared_params_for_relays(start).await.unwrap(), changed);
}
