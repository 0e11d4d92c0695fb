//! The relayer's optimistic mode over real sockets (fixtures in module `relayer`): only sessions validated once are
//! served before their chain-backed validation, a gateway delegated later is taken, and a shutdown waits for the
//! relays still being validated and appended in the background.

use std::sync::Arc;
use std::time::Duration;

use relay_miner::config::Config;
use relay_miner::sim::backend::{BackendConfig, DemoBackend};

use crate::relayer::*;

/// Optimistic mode serves before its chain-backed validation only relays of a (supplier, session) it validated
/// once, and only once their own ring signature verified: the first relay of a session is validated first, as in
/// eager mode (an invented or badly signed request is refused before the backend works for it); later relays are
/// served after their signature check and validated against the chain in the background. One found invalid there
/// (here: its gateway undelegated since the session was recorded) is not mined and revokes the session, whose next
/// relay is validated first again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_mode_serves_first_only_sessions_validated_once() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("lazy").await;
    let bad = |id: u64| {
        let mut bad = net.request(&header, &net.ours.1, Net::rpc(id));
        bad.meta.as_mut().unwrap().signature[5] ^= 0x01;
        bad
    };
    let served_first = "ha_relayer_relays_served_optimistically_total{rpc_type=\"jsonrpc\",service_id=\"lazy\"}";
    let bad_signatures = "ha_relayer_validation_failures_total{reason=\"bad_ring_signature\",service_id=\"lazy\"}";
    let sessions = "ha_relayer_optimistic_sessions";
    let backend_calls = || {
        metric(
            &r.telemetry,
            "ha_relayer_backend_requests_total{outcome=\"ok\",service_id=\"lazy\"",
        )
    };

    // A session never validated: its badly signed first relay is refused before the backend is called.
    let (status, response) = net.send(&r.url, &bad(1)).await;
    assert_eq!((status, error_code(&response)), (400, Some(4)));
    assert_eq!(backend_calls(), 0);
    // A valid relay is validated, served and mined, and records its session.
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    assert_eq!(net.recorded().await, 1);
    assert_eq!(
        (metric(&r.telemetry, served_first), metric(&r.telemetry, sessions)),
        (0, 1)
    );

    // A badly signed relay of the recorded session (a copied header) is still refused unserved.
    let (status, response) = net.send(&r.url, &bad(3)).await;
    assert_eq!((status, error_code(&response)), (400, Some(4)));
    assert_eq!(metric(&r.telemetry, bad_signatures), 2);
    assert_eq!((backend_calls(), metric(&r.telemetry, served_first)), (1, 0));
    // A valid one is served first and mined after it was served.
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(4))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    assert_eq!(metric(&r.telemetry, served_first), 1);
    eventually("the relay served first to be recorded", || async {
        net.recorded().await == 2
    })
    .await;

    // The gateway undelegates (a new block): its next relay still verifies against the recorded ring and is served
    // first, but the background validation reads the new ring: not mined, and the session is revoked.
    net.chain
        .state()
        .applications
        .get_mut(&net.app.1)
        .unwrap()
        .delegatee_gateway_addresses
        .clear();
    net.advance(0);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(5))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    assert_eq!(metric(&r.telemetry, served_first), 2);
    eventually("the session to be revoked", || async {
        metric(&r.telemetry, sessions) == 0
    })
    .await;
    assert_eq!(net.recorded().await, 2);
    // So the gateway's next relay is validated before serving, and refused.
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(6))).await;
    assert_eq!((status, error_code(&response)), (400, Some(4)), "{response:?}");
    assert_eq!(backend_calls(), 3, "relays 2, 4, 5 reached the backend");

    // An invented session is never served first; nor is a supplier that is not ours.
    let mut invented = header.clone();
    invented.session_id = "0000000000000000000000000000000000000000000000000000000000000000".into();
    let (status, response) = net
        .send(&r.url, &net.request(&invented, &net.ours.1, Net::rpc(7)))
        .await;
    assert_eq!(status, 400, "{response:?}");
    let (_, response) = net
        .send(&r.url, &net.request(&header, &net.theirs.1, Net::rpc(8)))
        .await;
    assert_eq!(error_code(&response), Some(2));
    assert_eq!(backend_calls(), 3);
    assert_eq!(net.recorded().await, 2);
}

/// A gateway delegated after optimistic mode recorded a session is not in the ring recorded with it: its relay is
/// then validated against the application's ring read now (not refused), served, and records the new ring, so its
/// next relays are served first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_mode_takes_a_gateway_delegated_after_the_session_was_recorded() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("lazy").await;
    let gateway = net.gateway.1.clone();
    let delegate = |to: Vec<String>| {
        net.chain
            .state()
            .applications
            .get_mut(&net.app.1)
            .unwrap()
            .delegatee_gateway_addresses = to;
        net.advance(0);
    };
    // No gateway delegated: the app signs its own relay (ring [app, placeholder], §2.4), which records the session.
    delegate(Vec::new());
    let ring = [net.app.2, relay_miner::protocol::ring::placeholder_public_key()];
    let own =
        relay_miner::loadgen::signed_relay_request(&header, &net.ours.1, "/", Net::rpc(1), &net.app.0, &ring).unwrap();
    let (status, response) = net.send(&r.url, &own).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    let served_first = "ha_relayer_relays_served_optimistically_total{rpc_type=\"jsonrpc\",service_id=\"lazy\"}";
    assert_eq!(metric(&r.telemetry, served_first), 0);
    assert_eq!(net.recorded().await, 1);

    // The gateway is delegated: its relay is validated in full, served and mined, not refused.
    delegate(vec![gateway]);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    assert_eq!(metric(&r.telemetry, served_first), 0);
    assert_eq!(net.recorded().await, 2);
    // Its next relay is served first.
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(3))).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&r.telemetry, served_first), 1);
    eventually("the relay served first to be recorded", || async {
        net.recorded().await == 3
    })
    .await;
}

/// A relay answered optimistically is validated and appended in the background; a shutdown right after the
/// answer waits for that settlement (after the connections drained, before the miner's final ingest and the
/// storage close), so the relay reaches the relay log and the miner's final ingest. The chain answers the
/// settlement's application query slowly, so it is still running when the shutdown starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_optimistic_relays_still_settling() {
    let stopped = stop_with_a_settlement_slowed_by(Duration::from_millis(1500)).await;
    assert_eq!(stopped.code, 0, "a clean stop");
    assert_eq!(stopped.delayed, 1, "the settlement was slowed down");
    assert_eq!(
        stopped.ingested, 2,
        "the relay served first reached the relay log before the miner's final ingest"
    );
}

/// A settlement still running at the drain's limit (its application read hangs past
/// `relayer::SETTLEMENT_DRAIN_LIMIT`, within the chain client's 30 s timeout) is abandoned then: the stop is not
/// clean and the process exit code is 1, since
/// the `ha_relayer_shutdown_abandoned_total` counting it is never scraped once the process is gone. Before, the
/// exit code was 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_abandoned_by_the_drain_makes_the_exit_code_1() {
    let stopped = stop_with_a_settlement_slowed_by(Duration::from_secs(600)).await;
    assert_eq!(stopped.delayed, 1, "the settlement was slowed down");
    assert_eq!(stopped.code, 1, "relays abandoned: not a clean stop");
    assert_eq!(
        stopped.ingested, 1,
        "the abandoned relay did not reach the miner's final ingest"
    );
}

/// How [`stop_with_a_settlement_slowed_by`] went: the node's exit code, the application reads slowed down, the
/// relays the miner ingested.
struct Stopped {
    code: i32,
    delayed: usize,
    ingested: u64,
}

/// A node (embedded storage) serves two relays of an optimistic service, the second one's background settlement
/// reading the application for `delay` (the chain client's timeout: 30 s); then it is stopped at once
/// (`Node::run_until`).
async fn stop_with_a_settlement_slowed_by(delay: Duration) -> Stopped {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let net = Net::new(1_000_000_000).await;
    let slow = Arc::new(AtomicBool::new(false));
    let delayed = Arc::new(AtomicUsize::new(0));
    let grpc_url = {
        let (slow, delayed) = (Arc::clone(&slow), Arc::clone(&delayed));
        let chain = relay_miner::sim::chain::router(net.chain.clone())
            .into_axum()
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let (slow, delayed) = (Arc::clone(&slow), Arc::clone(&delayed));
                    async move {
                        if slow.load(Ordering::SeqCst)
                            && request.uri().path() == "/pocket.application.Query/Application"
                        {
                            delayed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                        }
                        next.run(request).await
                    }
                },
            ));
        serve(chain).await
    };
    let backend = DemoBackend::spawn(BackendConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    crate::support::node::write_keys(&keys, &[key_hex("relayer-test-supplier-ours")]);
    let yaml = format!(
        "listen_addr: 127.0.0.1:0
storage:
  data_dir: {data}
  mode: embedded
pocket_node:
  query_node_rpc_url: http://127.0.0.1:1
  query_node_grpc_url: {grpc_url}
  chain_id: pocket-relayer-test
  query_timeout_seconds: 30
keys:
  keys_file: {keys}
  hot_reload: false
services:
  lazy:
    validation_mode: optimistic
    backends:
      jsonrpc: {{url: {backend}}}
metrics:
  enabled: false
health_check:
  enabled: false
logging:
  level: warn
  format: text
",
        data = dir.path().join("data").display(),
        keys = keys.display(),
        backend = backend.http_url(),
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let node = relay_miner::node::Node::start(config, Default::default())
        .await
        .unwrap();
    let stats = Arc::clone(node.miner_stats.as_ref().unwrap());
    let header = net.header("lazy").await;
    let url = format!("http://{}", node.relay_addr.unwrap());
    // The session's first relay is validated before it is served (optimistic mode serves first only sessions
    // validated once).
    let (status, _) = net.send(&url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(status, 200);
    // A new block marks the application stale, so relay 2's background validation reads it again: slowly.
    net.chain.produce_block();
    let block = u64::try_from(net.chain.height()).unwrap();
    eventually("the relayer to see the new block", || async {
        metric(&node.telemetry, "ha_relayer_current_block_height") >= block
    })
    .await;
    slow.store(true, Ordering::SeqCst);
    let (status, response) = net.send(&url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(status, 200);
    assert_eq!(served_status(&net, &response), 200);
    let code = node.run_until(async {}).await;
    Stopped {
        code,
        delayed: delayed.load(Ordering::SeqCst),
        ingested: stats.relays_ingested.load(Ordering::SeqCst),
    }
}
