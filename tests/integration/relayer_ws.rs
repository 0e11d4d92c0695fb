//! WebSocket relays over real sockets (module `relayer::ws`): a gateway's WebSocket connection to the relayer, the
//! demo backend's JSON-RPC WebSocket (`eth_subscribe("newHeads")`) behind it, the simulator chain and redb. Every
//! backend message comes back signed and is in the relay log before the gateway gets it; an invalid request is
//! answered with its error and costs nothing; the handshake is refused for an unknown service, a service without a
//! WebSocket backend and a supplier that is not ours; a backend message after its session's claim was built is
//! refused and ends the connection.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use relay_miner::config::Config;
use relay_miner::protocol::wire::{RelayRequest, RelayResponse, SessionHeader};
use relay_miner::protocol::{relay, sha256, supplier_sig};
use relay_miner::sim::backend::{BackendConfig, BackendHandle, DemoBackend};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::relayer::{Net, Running, error_code};

type Gateway = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A net whose `anvil` service has a WebSocket backend (the demo backend, a `newHeads` notification every 100 ms);
/// `lazy` keeps only its JSON-RPC one.
async fn ws_net() -> (Net, Running, BackendHandle) {
    ws_net_with("").await
}

/// [`ws_net`] with `extra` (top-level YAML keys) added to the relayer's config.
async fn ws_net_with(extra: &str) -> (Net, Running, BackendHandle) {
    let net = Net::new(1_000_000_000).await;
    let backend = DemoBackend::spawn(BackendConfig {
        ws: relay_miner::sim::backend::WsConfig {
            new_heads_interval: Duration::from_millis(100),
            ..Default::default()
        },
        ..BackendConfig::default()
    })
    .await
    .unwrap();
    let yaml = format!(
        "
listen_addr: 127.0.0.1:0
default_max_body_size_bytes: 65536
services:
  anvil:
    validation_mode: eager
    backends:
      jsonrpc: {{url: {http}}}
      websocket: {{url: {ws}}}
  lazy:
    validation_mode: optimistic
    backends:
      jsonrpc: {{url: {http}}}
relay_meter:
  enabled: true
  fail_behavior: closed
  sync_interval_ms: 20
relay_log:
  durable_ack: true
{extra}",
        http = backend.http_url(),
        ws = backend.ws_url(),
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let running = net.relayer_with(&config).await;
    (net, running, backend)
}

/// Opens a gateway connection to the relayer at `url` with the handshake headers given.
async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Gateway, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake within 5 s")
        .map(|(socket, _)| socket)
}

/// A gateway connected to `anvil` that has subscribed to `newHeads` in the current session (nothing read yet).
async fn subscribed(net: &Net, running: &Running) -> (SessionHeader, Gateway) {
    let header = net.header("anvil").await;
    let mut gateway = connect(&running.url, &[("target-service-id", "anvil")]).await.unwrap();
    call(
        &mut gateway,
        net,
        &header,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
    )
    .await;
    (header, gateway)
}

/// The HTTP status a refused handshake was answered with (panics when it was accepted or failed otherwise).
fn refused_status(result: Result<Gateway, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

/// Whether `text` (the relayer's metrics) counts a WebSocket refusal for `reason`.
fn refused_for(text: &str, reason: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with("ha_relayer_relays_rejected_total{")
            && l.contains(&format!("reason=\"{reason}\""))
            && l.contains("rpc_type=\"websocket\"")
    })
}

/// A signed WebSocket relay request whose payload is the raw JSON-RPC `body`.
fn ws_request(net: &Net, header: &SessionHeader, body: &str) -> RelayRequest {
    let ring = [net.app.2, net.gateway.2];
    relay_miner::loadgen::signed_relay_request_with_payload(
        header,
        &net.ours.1,
        body.as_bytes().to_vec(),
        &net.gateway.0,
        &ring,
    )
    .unwrap()
}

async fn send(gateway: &mut Gateway, request: &RelayRequest) {
    let bytes = relay::encode_relay_request(request);
    gateway.send(Message::binary(bytes)).await.unwrap();
}

/// Sends the JSON-RPC `body` as a signed relay request of the session of `header`.
async fn call(gateway: &mut Gateway, net: &Net, header: &SessionHeader, body: &str) {
    send(gateway, &ws_request(net, header, body)).await;
}

/// The next data message from the relayer, decoded; `None` when it closed the connection.
async fn next(gateway: &mut Gateway) -> Option<RelayResponse> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), gateway.next())
            .await
            .expect("a message within 5 s");
        match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Binary(bytes))) => {
                return Some(relay::decode_relay_response(&bytes, relay::MAX_RELAY_MESSAGE_BYTES).unwrap());
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// The JSON of a served response, after checking its supplier signature and payload hash (§2.2).
fn served(net: &Net, response: &RelayResponse) -> serde_json::Value {
    assert!(response.relay_miner_error.is_none(), "{:?}", response.relay_miner_error);
    let signable = relay::response_signable_hash(response);
    let signature = &response.meta.as_ref().unwrap().supplier_operator_signature;
    supplier_sig::verify(&net.ours.2, &signable, signature).unwrap();
    assert_eq!(response.payload_hash, Some(sha256(&response.payload).to_vec()));
    serde_json::from_slice(&response.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_relays_are_served_signed_and_mined_one_per_backend_message() {
    let (net, running, backend) = ws_net().await;
    let header = net.header("anvil").await;
    let mut gateway = connect(&running.url, &[("target-service-id", "anvil")]).await.unwrap();

    // A call: one backend message, one relay, in the relay log before the gateway has it.
    call(
        &mut gateway,
        &net,
        &header,
        r#"{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber","params":[]}"#,
    )
    .await;
    let answer = served(&net, &next(&mut gateway).await.unwrap());
    assert_eq!(answer["id"], 7);
    assert!(answer["result"].is_string(), "{answer}");
    assert_eq!(net.recorded().await, 1);

    // A subscription: its acknowledgement and every notification are relays answering the subscribe request.
    call(
        &mut gateway,
        &net,
        &header,
        r#"{"jsonrpc":"2.0","id":8,"method":"eth_subscribe","params":["newHeads"]}"#,
    )
    .await;
    let ack = served(&net, &next(&mut gateway).await.unwrap());
    assert_eq!(ack["id"], 8);
    let subscription = ack["result"].as_str().unwrap().to_owned();
    for n in 0..3 {
        let note = served(&net, &next(&mut gateway).await.unwrap());
        assert_eq!(note["method"], "eth_subscription", "{note}");
        assert_eq!(note["params"]["subscription"], subscription.as_str());
        assert_eq!(net.recorded().await, 3 + n);
    }
    assert!(backend.stats().ws_messages >= 2, "{:?}", backend.stats());

    let text = running.telemetry.render_metrics();
    for (series, at_least) in [
        ("ha_relayer_websocket_connections_total{service_id=\"anvil\"}", 1),
        ("ha_relayer_websocket_connections_active{service_id=\"anvil\"}", 1),
        (
            "ha_relayer_websocket_messages_forwarded_total{direction=\"to_backend\",service_id=\"anvil\"}",
            2,
        ),
        ("ha_relayer_websocket_relays_emitted_total{service_id=\"anvil\"}", 5),
    ] {
        let value: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(value >= at_least, "{series} = {value}");
    }
    gateway.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_websocket_relay_is_refused_and_the_connection_goes_on() {
    let (net, running, backend) = ws_net().await;
    let header = net.header("anvil").await;
    let mut gateway = connect(&running.url, &[("target-service-id", "anvil")]).await.unwrap();

    let mut forged = ws_request(
        &net,
        &header,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#,
    );
    let signature = &mut forged.meta.as_mut().unwrap().signature;
    let last = signature.len() - 1;
    signature[last] ^= 1;
    send(&mut gateway, &forged).await;
    let refused = next(&mut gateway).await.unwrap();
    assert_eq!(error_code(&refused), Some(4), "{refused:?}");
    // Not forwarded, not recorded: the backend never saw a connection.
    assert_eq!(backend.stats().ws_connections, 0);
    assert_eq!(net.recorded().await, 0);

    // A relay of another service on this connection is refused too.
    let other = net.header("lazy").await;
    call(
        &mut gateway,
        &net,
        &other,
        r#"{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber","params":[]}"#,
    )
    .await;
    assert_eq!(error_code(&next(&mut gateway).await.unwrap()), Some(3));

    call(
        &mut gateway,
        &net,
        &header,
        r#"{"jsonrpc":"2.0","id":3,"method":"eth_blockNumber","params":[]}"#,
    )
    .await;
    assert_eq!(served(&net, &next(&mut gateway).await.unwrap())["id"], 3);
    assert_eq!(net.recorded().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_are_refused_for_what_cannot_be_served() {
    let (_net, running, _backend) = ws_net().await;
    assert_eq!(
        refused_status(connect(&running.url, &[("target-service-id", "nope")]).await),
        400
    );
    assert_eq!(refused_status(connect(&running.url, &[]).await), 400);
    // A service served over HTTP only.
    assert_eq!(
        refused_status(connect(&running.url, &[("target-service-id", "lazy")]).await),
        502
    );
    assert_eq!(
        refused_status(
            connect(
                &running.url,
                &[
                    ("target-service-id", "anvil"),
                    ("pocket-supplier-address", "pokt1someoneelse")
                ]
            )
            .await
        ),
        400
    );
    // The legacy service header is read too.
    assert!(connect(&running.url, &[("pocket-service-id", "anvil")]).await.is_ok());
    let text = running.telemetry.render_metrics();
    assert!(refused_for(&text, "unknown_service"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_message_after_the_claim_was_built_is_refused_and_ends_the_connection() {
    let (net, running, _backend) = ws_net().await;
    let (header, mut gateway) = subscribed(&net, &running).await;
    served(&net, &next(&mut gateway).await.unwrap());
    served(&net, &next(&mut gateway).await.unwrap());
    let mut answered = 2;
    // Past the session's claim window opening: its claim may be built, so no relay of it is served any more.
    let end = header.session_end_block_height;
    while net.chain.height() <= end + 3 {
        net.advance(1);
    }
    // Notifications already in flight may still be served (appended before the height moved); then one is refused.
    let refused = loop {
        match next(&mut gateway).await {
            Some(r) if r.relay_miner_error.is_none() => {
                served(&net, &r);
                answered += 1;
            }
            Some(r) => break r,
            None => panic!("closed without refusing"),
        }
    };
    assert_eq!(error_code(&refused), Some(6), "{refused:?}");
    assert!(
        next(&mut gateway).await.is_none(),
        "the connection ends after the refusal"
    );
    // Every answered message is in the relay log, the refused one is not.
    assert_eq!(net.recorded().await, answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_are_bounded_by_relay_server_max_connections() {
    // An upgraded connection leaves the relay server's own count: the relayer bounds WebSocket connections itself.
    let (_net, running, _backend) = ws_net_with("relay_server:\n  max_connections: 2\n").await;
    let anvil = [("target-service-id", "anvil")];
    let first = connect(&running.url, &anvil).await.unwrap();
    let _second = connect(&running.url, &anvil).await.unwrap();
    assert_eq!(refused_status(connect(&running.url, &anvil).await), 503);
    // A connection that ends frees its slot.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&running.url, &anvil).await {
            Ok(_) => break,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status().as_u16() == 503 => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the ended connection's slot was not freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let text = running.telemetry.render_metrics();
    assert!(refused_for(&text, "overloaded"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_drain_closes_websocket_connections_with_every_served_relay_recorded() {
    let (net, running, _backend) = ws_net().await;
    let (_header, mut gateway) = subscribed(&net, &running).await;
    let mut answered = 0;
    for _ in 0..3 {
        served(&net, &next(&mut gateway).await.unwrap());
        answered += 1;
    }
    // What `relay-miner run` calls once the relay server drained, before the miner's final ingest.
    let drained = tokio::spawn({
        let relayer = std::sync::Arc::clone(&running.relayer);
        async move { relayer.drain_settlements().await }
    });
    // Notifications answered until the close, each recorded before it was sent; then the connection ends.
    for round in 0.. {
        assert!(round < 50, "the connection stayed open through the drain");
        match next(&mut gateway).await {
            Some(r) => {
                served(&net, &r);
                answered += 1;
            }
            None => break,
        }
    }
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the drain ends once the connection closed")
        .unwrap();
    assert_eq!(net.recorded().await, answered);
    // No connection opens after the drain.
    assert_eq!(
        refused_status(connect(&running.url, &[("target-service-id", "anvil")]).await),
        503
    );
}

/// A gateway connection whose socket reads at most a few KB at a time (its receive buffer set small before
/// connecting), so what the relayer writes to it backs up at once when the test does not read.
async fn connect_small_buffer(url: &str, service: &str) -> Gateway {
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("target-service-id", service.parse().unwrap());
    let (socket, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    socket
}

/// A gateway that floods the connection with relay requests it may not make (another service's) and never reads
/// its answers: the refusals back up, and are dropped rather than waited on, so the connection's loop keeps
/// reading and the shutdown's drain (which waits for every connection) still closes it. Waiting on the full
/// outbox held the loop, and with it `drain_settlements` (and `relay-miner run`'s shutdown), for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_never_reads_its_answers_does_not_hold_the_shutdown_drain() {
    let (net, running, _backend) = ws_net().await;
    let gateway = connect_small_buffer(&running.url, "anvil").await;
    // Well-formed, for the other service: refused before any chain read, each refusal carrying the header back.
    let other = net.header("lazy").await;
    let bytes = axum::body::Bytes::from(relay::encode_relay_request(&ws_request(&net, &other, "{}")));
    let (mut sink, _unread) = gateway.split();
    let mut flood = tokio::spawn(async move {
        for _ in 0..60_000 {
            if sink.send(Message::binary(bytes.clone())).await.is_err() {
                break;
            }
        }
        sink
    });
    // The flood is all sent, or the relayer stopped reading it (its loop held): either way it has backed up.
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut flood).await;
    let refused = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("ha_relayer_relays_rejected_total{") && l.contains("unknown_service"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert!(refused(&running.telemetry.render_metrics()) > 0);
    tokio::time::timeout(Duration::from_secs(20), running.relayer.drain_settlements())
        .await
        .expect("the drain closes the connection of a gateway that does not read");
    flood.abort();
}

/// `relay_server.max_connections_per_ip` also counts WebSocket connections once upgraded (they leave the relay
/// server's connection task): a client cannot hold more of them than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_websocket_connections_count_against_max_connections_per_ip() {
    let (_net, running, _backend) = ws_net_with("relay_server:\n  max_connections_per_ip: 1\n").await;
    let anvil = [("target-service-id", "anvil")];
    let first = connect(&running.url, &anvil).await.unwrap();
    // The second connection from 127.0.0.1 is closed unserved: the handshake fails without an HTTP answer.
    match connect(&running.url, &anvil).await {
        Ok(_) => panic!("a second connection from the same address was upgraded"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => panic!("answered {}", r.status()),
        Err(_) => {}
    }
    // Once the first ends, its address's slot is free again.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while connect(&running.url, &anvil).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the ended connection's slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket backend that completes the handshake and then never reads (its socket's receive buffer small), so
/// what the relayer sends it backs up at once. Returns its `ws://` URL; the connections are kept until the test ends.
async fn backend_that_never_reads() -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                kept.push(ws);
            }
        }
    });
    format!("ws://{addr}")
}

/// A backend that stops reading cannot hold the connection either: a message it does not take within the
/// service's request timeout (here 1 s) is refused as `backend_timeout` and the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_ends_the_connection_within_the_request_timeout() {
    let net = Net::new(1_000_000_000).await;
    let stuck = backend_that_never_reads().await;
    let yaml = format!(
        "
listen_addr: 127.0.0.1:0
default_max_body_size_bytes: 131072
services:
  slow:
    validation_mode: eager
    timeout_profile: quick
    backends:
      websocket: {{url: {stuck}}}
timeout_profiles:
  quick: {{request_timeout_seconds: 1, response_header_timeout_seconds: 1}}
"
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let running = net.relayer_with(&config).await;
    let header = net.header("slow").await;
    let mut gateway = connect(&running.url, &[("target-service-id", "slow")]).await.unwrap();
    // 100 KB payloads until the backend's buffers are full and a send waits past the timeout.
    let body = format!("\"{}\"", "x".repeat(100_000));
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..2_000 {
            if gateway
                .send(Message::binary(relay::encode_relay_request(&ws_request(
                    &net, &header, &body,
                ))))
                .await
                .is_err()
            {
                return;
            }
            // Drain what the relayer answers without waiting: the connection closing is what ends the test.
            while let Some(Some(message)) = futures::FutureExt::now_or_never(gateway.next()) {
                if matches!(message, Err(_) | Ok(Message::Close(_))) {
                    return;
                }
            }
        }
        panic!("2,000 messages of 100 KB taken by a backend that never reads");
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection stayed open with its backend not reading"
    );
    assert!(refused_for(&running.telemetry.render_metrics(), "backend_timeout"));
}
