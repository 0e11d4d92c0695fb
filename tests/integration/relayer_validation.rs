//! Chain-backed validation of relays over real sockets (fixtures in module `relayer`): the ring's members need
//! on-chain keys (§2.4), a future session is refused before any chain read keyed by it, params beyond the current
//! session are not cached, and an application not staked for the service is the client's fault (§2.6).

use std::time::Duration;

use relay_miner::chain::query::ChainClient;

use crate::relayer::*;

/// §2.4 step 4: every address of the expected ring resolves to its on-chain key. An application whose account has
/// no public key and which delegates to no gateway has no ring; without this rule only the placeholder would be
/// left, whose private key derives from a public secret, so anyone could sign relays the chain later rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_member_without_an_on_chain_key_makes_the_relay_invalid() {
    let net = Net::new(1_000_000_000).await;
    {
        let mut state = net.chain.state();
        state.accounts.get_mut(&net.app.1).unwrap().pubkey = None;
        state
            .applications
            .get_mut(&net.app.1)
            .unwrap()
            .delegatee_gateway_addresses
            .clear();
    }
    net.client.invalidate_applications();
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let placeholder = relay_miner::protocol::ring::placeholder_signing_key().unwrap();
    let placeholder_pub = relay_miner::protocol::ring::placeholder_public_key();
    let forged = relay_miner::loadgen::signed_relay_request(
        &header,
        &net.ours.1,
        "/",
        Net::rpc(1),
        &placeholder,
        &[placeholder_pub, placeholder_pub],
    )
    .unwrap();
    let (status, response) = net.send(&r.url, &forged).await;
    assert_eq!((status, error_code(&response)), (400, Some(4)), "{response:?}");
    assert!(response.payload.is_empty());
    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_validation_failures_total{reason=\"bad_ring_signature\",service_id=\"anvil\"}"
        ),
        1
    );
}

/// §2.6: a relay is for the current session or a past one within grace. A header naming a session far in the future
/// is refused as `session_not_started` (503: our chain view may lag the gateway's) from the heights alone: no chain
/// read at all (none keyed by its unauthenticated heights, no `ParamsAtHeight` query), no new cache entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_for_a_future_session_is_refused_before_any_chain_read_keyed_by_it() {
    use std::sync::atomic::Ordering;
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(status, 200);
    let cached = || net.client.cache_entries()[0];
    let (queries, entries) = (net.params_queries.load(Ordering::SeqCst), cached());
    assert_eq!(entries.0, "shared_params");
    let mut future = header.clone();
    future.session_start_block_height += 10_000;
    future.session_end_block_height += 10_000;
    let chain_queries = net.chain_tap.total();
    let (status, response) = net.send(&r.url, &net.request(&future, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, error_code(&response)), (503, Some(18)), "{response:?}");
    assert_eq!(net.chain_tap.total(), chain_queries, "no chain read");
    assert_eq!(
        net.params_queries.load(Ordering::SeqCst),
        queries,
        "no chain read for the future heights"
    );
    assert_eq!(cached(), entries);
    assert_eq!(net.recorded().await, 1);
}

/// The chain answers `ParamsAtHeight` for a height it has not reached with today's params, which a governance
/// change can still make wrong: such an answer is used, never cached. The current session's params are cached
/// (the relayer asks for them on every relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_params_beyond_the_current_session_are_not_cached() {
    let net = Net::new(1_000_000_000).await;
    let client = ChainClient::new(&net.grpc_url, Duration::from_secs(5)).unwrap();
    let height = net.chain.height();
    let shared_params = |c: &ChainClient| c.cache_entries()[0].1;
    // No height known yet: nothing is cached.
    client.shared_params_at(height).await.unwrap();
    assert_eq!(shared_params(&client), 0);
    client.observe_height(height);
    let current_end = relay_miner::protocol::session::SessionGrid::new(&net.chain.state().shared)
        .unwrap()
        .session_end(height);
    for future in [height + 10_000, current_end + 1] {
        client.shared_params_at(future).await.unwrap();
        assert_eq!(
            shared_params(&client),
            0,
            "params at {future} cached at height {height}"
        );
    }
    client.shared_params_at(current_end).await.unwrap();
    client.shared_params_at(height).await.unwrap();
    assert_eq!(shared_params(&client), if current_end == height { 1 } else { 2 });
}

/// §2.6 step 3: when the chain refuses `GetSession` because the application is not staked for the service, the
/// relay is the client's fault (session_mismatch, 400), not a chain outage (chain_unavailable, 503: "retry
/// elsewhere"). It is not recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_for_an_app_not_staked_for_the_service_is_a_session_mismatch() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    // The header as it was while the app was staked for the service, read without filling the relayer's caches.
    let header = ChainClient::new(&net.grpc_url, Duration::from_secs(5))
        .unwrap()
        .session(&net.app.1, "anvil", net.chain.height())
        .await
        .unwrap()
        .header
        .unwrap();
    net.chain
        .state()
        .applications
        .get_mut(&net.app.1)
        .unwrap()
        .service_configs
        .retain(|c| c.service_id != "anvil");
    net.client.invalidate_applications();
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, error_code(&response)), (400, Some(5)), "{response:?}");
    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_validation_failures_total{reason=\"session_mismatch\",service_id=\"anvil\"}"
        ),
        1
    );
}
