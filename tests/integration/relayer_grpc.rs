//! gRPC relays over real sockets (module `relayer::grpc`): a gateway's tonic client calling
//! `/pocket.service.RelayService/SendRelay` on the relay address over HTTP/2, the demo backend's `demo.Echo` gRPC
//! service behind it (a `grpc` backend given as a bare `host:port`, reached over HTTP/2 cleartext), the simulator
//! chain and redb. A served call comes back signed with the backend's messages and `grpc-status` trailer inside and
//! is in the relay log when the gateway has it; a server-streaming call is one relay; a backend's server-side
//! gRPC failure is served but not mined; refusals carry a gRPC status and the protocol's `RelayMinerError` in
//! `grpc-status-details-bin`.

use std::time::Duration;

use prost::Message as _;
use relay_miner::config::Config;
use relay_miner::protocol::relay;
use relay_miner::protocol::wire::{PoktHttpRequest, PoktHttpResponse, RelayRequest, RelayResponse};
use relay_miner::relayer::grpc::{RELAY_RESPONSE_TYPE_URL, RpcStatus, SEND_RELAY_PATH};
use relay_miner::sim::backend::grpc::{ECHO_PATH, ECHO_STREAM_PATH, EchoRequest, EchoResponse, EchoStreamRequest};
use relay_miner::sim::backend::{BackendConfig, BackendHandle, DemoBackend};
use tonic::codegen::http::uri::PathAndQuery;

use crate::relayer::{Net, Running, served_status};

/// A net whose `anvil` service has a `grpc` backend (`grpc_backend`, as a bare `host:port`) and a `jsonrpc` one
/// (`json_backend`), eager, durable ack, metered.
async fn grpc_net() -> (Net, Running, BackendHandle, BackendHandle) {
    grpc_net_with(BackendConfig::default()).await
}

/// [`grpc_net`] with the `grpc` backend configured as `grpc_config`.
async fn grpc_net_with(grpc_config: BackendConfig) -> (Net, Running, BackendHandle, BackendHandle) {
    grpc_net_full(grpc_config, "", "").await
}

/// [`grpc_net_with`] with `extra` (top-level YAML keys) added to the relayer's config and `grpc_keys` (flow YAML
/// keys, each starting with `, `) to its `grpc` backend's.
async fn grpc_net_full(
    grpc_config: BackendConfig,
    extra: &str,
    grpc_keys: &str,
) -> (Net, Running, BackendHandle, BackendHandle) {
    let net = Net::new(1_000_000_000).await;
    let grpc_backend = DemoBackend::spawn(grpc_config).await.unwrap();
    let json_backend = DemoBackend::spawn(BackendConfig::default()).await.unwrap();
    let yaml = format!(
        "
listen_addr: 127.0.0.1:0
default_max_body_size_bytes: 65536
services:
  anvil:
    validation_mode: eager
    default_backend: jsonrpc
    backends:
      jsonrpc: {{url: {json}}}
      grpc: {{url: '{grpc}'{grpc_keys}}}
relay_meter:
  enabled: true
  fail_behavior: closed
  sync_interval_ms: 20
relay_log:
  durable_ack: true
{extra}",
        json = json_backend.http_url(),
        grpc = grpc_backend.addr(),
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let running = net.relayer_with(&config).await;
    (net, running, grpc_backend, json_backend)
}

/// A gateway's gRPC client of the relayer at `url`.
async fn gateway(url: &str) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

/// Calls `method` (`SendRelay` unless testing another) with `request`, `rpc-type` metadata when given.
async fn call_method(
    url: &str,
    method: &'static str,
    request: RelayRequest,
    rpc_type: Option<&'static str>,
) -> Result<RelayResponse, tonic::Status> {
    let mut client = gateway(url).await;
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(request);
    if let Some(rpc_type) = rpc_type {
        request.metadata_mut().insert("rpc-type", rpc_type.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<RelayRequest, RelayResponse>::default();
    tokio::time::timeout(
        Duration::from_secs(10),
        client.unary(request, PathAndQuery::from_static(method), codec),
    )
    .await
    .expect("answered within 10 s")
    .map(tonic::Response::into_inner)
}

async fn send_relay(url: &str, request: RelayRequest) -> Result<RelayResponse, tonic::Status> {
    call_method(url, SEND_RELAY_PATH, request, Some("1")).await
}

/// A relay request of `anvil`'s current session whose payload is a gRPC call of `method` with `message`.
async fn grpc_relay(net: &Net, method: &str, message: Vec<u8>) -> RelayRequest {
    let header = net.header("anvil").await;
    let payload = relay_miner::loadgen::grpc_call_payload(method, &message);
    let ring = [net.app.2, net.gateway.2];
    relay_miner::loadgen::signed_relay_request_with_payload(
        &header,
        &net.ours.1,
        payload.encode_to_vec(),
        &net.gateway.0,
        &ring,
    )
    .unwrap()
}

fn echo(message: &str) -> Vec<u8> {
    EchoRequest {
        message: message.into(),
        payload: b"payload".to_vec(),
    }
    .encode_to_vec()
}

/// The backend's answer inside a served relay (signature and payload hash checked): its `grpc-status` and the
/// messages of its body.
fn answer(net: &Net, response: &RelayResponse) -> (Option<String>, Vec<EchoResponse>) {
    assert_eq!(served_status(net, response), 200);
    let http = PoktHttpResponse::decode(response.payload.as_slice()).unwrap();
    let status = http.header.get("grpc-status").map(|h| h.values.join(","));
    let mut messages = Vec::new();
    let mut body = http.body_bz.as_slice();
    while !body.is_empty() {
        assert_eq!(body[0], 0, "uncompressed message");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        messages.push(EchoResponse::decode(&body[5..5 + len]).unwrap());
        body = &body[5 + len..];
    }
    (status, messages)
}

/// The `RelayMinerError` code a refused call carries in `grpc-status-details-bin`.
fn refusal_code(status: &tonic::Status) -> u32 {
    let details = RpcStatus::decode(status.details()).unwrap();
    assert_eq!(details.code, status.code() as i32);
    assert_eq!(details.details.len(), 1);
    assert_eq!(details.details[0].type_url, RELAY_RESPONSE_TYPE_URL);
    let response = relay::decode_relay_response(&details.details[0].value, relay::MAX_RELAY_MESSAGE_BYTES).unwrap();
    response.relay_miner_error.unwrap().code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_relays_are_served_signed_and_mined() {
    let (net, running, grpc_backend, json_backend) = grpc_net().await;
    let response = send_relay(&running.url, grpc_relay(&net, ECHO_PATH, echo("hello")).await)
        .await
        .unwrap();
    let (status, messages) = answer(&net, &response);
    assert_eq!(
        status.as_deref(),
        Some("0"),
        "the backend's trailer folded into the signed headers"
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message, "hello");
    assert_eq!(messages[0].payload, b"payload");
    // In the relay log when the gateway has the answer (durable ack).
    assert_eq!(net.recorded().await, 1);

    // A server-streaming call is one relay holding every message the backend streamed.
    let stream = EchoStreamRequest {
        message: "tick".into(),
        count: 3,
        interval_ms: 10,
    }
    .encode_to_vec();
    let response = send_relay(&running.url, grpc_relay(&net, ECHO_STREAM_PATH, stream).await)
        .await
        .unwrap();
    let (status, messages) = answer(&net, &response);
    assert_eq!(status.as_deref(), Some("0"));
    assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(net.recorded().await, 2);

    // Without `rpc-type` metadata, the gRPC call in the payload still goes to the grpc backend, not the default.
    let response = call_method(
        &running.url,
        SEND_RELAY_PATH,
        grpc_relay(&net, ECHO_PATH, echo("inferred")).await,
        None,
    )
    .await
    .unwrap();
    assert_eq!(answer(&net, &response).1[0].message, "inferred");
    assert_eq!(net.recorded().await, 3);
    assert_eq!(grpc_backend.stats().grpc_unary, 2);
    assert_eq!(grpc_backend.stats().grpc_streaming, 1);
    assert_eq!(json_backend.stats().served(), 0);

    let text = running.telemetry.render_metrics();
    assert!(
        text.contains("ha_relayer_grpc_relays_total{service_id=\"anvil\"} 3"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_server_side_grpc_failure_is_served_but_not_mined() {
    let (net, running, grpc_backend, _json) = grpc_net().await;
    // UNAVAILABLE (14) from the backend: the gateway gets it signed, the supplier is not paid for it (the 5xx rule).
    let response = send_relay(&running.url, grpc_relay(&net, ECHO_PATH, echo("status:14")).await)
        .await
        .unwrap();
    let (status, messages) = answer(&net, &response);
    assert_eq!(status.as_deref(), Some("14"));
    assert!(messages.is_empty());
    // NOT_FOUND (5) is the caller's: a served relay, mined as a 4xx is.
    let response = send_relay(&running.url, grpc_relay(&net, ECHO_PATH, echo("status:5")).await)
        .await
        .unwrap();
    assert_eq!(answer(&net, &response).0.as_deref(), Some("5"));
    assert_eq!(grpc_backend.stats().grpc_unary, 2);
    assert_eq!(net.recorded().await, 1, "only the NOT_FOUND answer is mined");
    let text = running.telemetry.render_metrics();
    assert!(
        text.contains("ha_relayer_relays_skipped_5xx_total{service_id=\"anvil\"} 1"),
        "{text}"
    );
    // Its meter charge was refunded; the NOT_FOUND one's stays.
    let refunded = text
        .lines()
        .filter(|l| l.starts_with("ha_relayer_relay_meter_consumptions_total{"))
        .filter(|l| l.contains("result=\"refunded\"") && l.contains("service_id=\"anvil\""))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(refunded, ["1"], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_grpc_relays_carry_a_grpc_status_and_the_relay_miner_error() {
    let (net, running, grpc_backend, _json) = grpc_net().await;
    // A forged signature: PERMISSION_DENIED, RelayMinerError code 4; the backend never called.
    let mut forged = grpc_relay(&net, ECHO_PATH, echo("hello")).await;
    let signature = &mut forged.meta.as_mut().unwrap().signature;
    let last = signature.len() - 1;
    signature[last] ^= 1;
    let status = send_relay(&running.url, forged).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(refusal_code(&status), 4);

    // A service this relay miner does not serve: NOT_FOUND, code 3.
    let mut unknown = grpc_relay(&net, ECHO_PATH, echo("hello")).await;
    unknown
        .meta
        .as_mut()
        .unwrap()
        .session_header
        .as_mut()
        .unwrap()
        .service_id = "nope".into();
    let status = send_relay(&running.url, unknown).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(refusal_code(&status), 3);

    // A payload that is not a POKTHTTPRequest: INVALID_ARGUMENT, code 1.
    let header = net.header("anvil").await;
    let ring = [net.app.2, net.gateway.2];
    let garbage = relay_miner::loadgen::signed_relay_request_with_payload(
        &header,
        &net.ours.1,
        vec![0xff; 8],
        &net.gateway.0,
        &ring,
    )
    .unwrap();
    let status = send_relay(&running.url, garbage).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(refusal_code(&status), 1);

    // Another method of the relay address: UNIMPLEMENTED.
    let status = call_method(
        &running.url,
        "/pocket.service.RelayService/Other",
        grpc_relay(&net, ECHO_PATH, echo("hello")).await,
        Some("1"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    assert_eq!(grpc_backend.stats().grpc_unary, 0);
    assert_eq!(net.recorded().await, 0);
    let text = running.telemetry.render_metrics();
    for (service, reason) in [
        ("anvil", "bad_ring_signature"),
        ("", "unknown_service"),
        ("anvil", "malformed"),
        ("", "unimplemented"),
    ] {
        let counted = text.lines().any(|l| {
            l.starts_with("ha_relayer_grpc_relay_errors_total{")
                && l.contains(&format!("reason=\"{reason}\""))
                && l.contains(&format!("service_id=\"{service}\""))
                && l.ends_with(" 1")
        });
        assert!(counted, "{service} {reason}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_relay_exactly_at_the_size_limit_is_served_and_one_byte_over_it_refused() {
    let (net, running, grpc_backend, _json) = grpc_net().await;
    // A relay of exactly `default_max_body_size_bytes` (65,536) once encoded: its gRPC framing's 5 bytes come on
    // top, and must not make it too large. The call is of a method the backend does not have, so the answer
    // stays small (UNIMPLEMENTED).
    let sized = |pad: usize| {
        let net = &net;
        async move { grpc_relay(net, "/demo.Echo/Nope", echo(&"x".repeat(pad))).await }
    };
    let mut pad = 65_536 - 200;
    let exact = loop {
        let request = sized(pad).await;
        let len = relay::encode_relay_request(&request).len();
        match len.cmp(&65_536) {
            std::cmp::Ordering::Equal => break request,
            std::cmp::Ordering::Less => pad += 65_536 - len,
            std::cmp::Ordering::Greater => pad -= 1,
        }
    };
    let response = send_relay(&running.url, exact).await.unwrap();
    assert_eq!(answer(&net, &response).0.as_deref(), Some("12"));
    assert_eq!(grpc_backend.stats().http_requests, 1, "the backend was called");

    let status = send_relay(&running.url, sized(pad + 1).await).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(refusal_code(&status), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_backend_answer_to_a_grpc_relay_is_read_whole_as_one_relay() {
    let (net, running, _grpc, json_backend) = grpc_net().await;
    let header = net.header("anvil").await;
    let payload = PoktHttpRequest {
        method: "GET".into(),
        url: "/sse?count=3&interval_ms=10".into(),
        ..Default::default()
    };
    let ring = [net.app.2, net.gateway.2];
    let request = relay_miner::loadgen::signed_relay_request_with_payload(
        &header,
        &net.ours.1,
        payload.encode_to_vec(),
        &net.gateway.0,
        &ring,
    )
    .unwrap();
    // Over gRPC there is no stream of signed batches: one RelayResponse holds the whole event stream.
    let response = call_method(&running.url, SEND_RELAY_PATH, request, Some("3"))
        .await
        .unwrap();
    assert_eq!(served_status(&net, &response), 200);
    let http = PoktHttpResponse::decode(response.payload.as_slice()).unwrap();
    let body = String::from_utf8(http.body_bz).unwrap();
    assert_eq!(body.matches("event: tick").count(), 3, "{body}");
    assert_eq!(json_backend.stats().sse_streams, 1);
    assert_eq!(net.recorded().await, 1);
}

/// A gzip message is inflated before it is served, and the inflated bytes are held in the relay server's body
/// budget (`ha_relayer_request_body_bytes_in_flight`) while it is, not only the few compressed ones: otherwise many
/// small messages inflating a thousandfold would hold memory past `max_body_bytes_in_flight`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_message_is_served_with_its_inflated_size_in_the_body_budget() {
    let slow = answering_after(Duration::from_millis(500));
    let (net, running, grpc_backend, _json) = grpc_net_with(slow).await;
    let request = grpc_relay(&net, ECHO_PATH, echo(&"x".repeat(40_000))).await;
    let message = relay::encode_relay_request(&request);
    let body = gzip_body(&message);
    assert!(body.len() < 2_000, "{}", body.len());
    let url = running.url.clone();
    let call = tokio::spawn(async move {
        let response = send_gzip(&url, body).await;
        http_body_util::BodyExt::collect(response.into_body()).await.unwrap()
    });
    // While the backend takes its time, the relay holds its inflated size in the budget.
    let in_flight = || body_bytes_in_flight(&running);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while in_flight() < message.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} bytes held, {} inflated",
            in_flight(),
            message.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let collected = call.await.unwrap();
    assert_eq!(collected.trailers().and_then(|t| t.get("grpc-status")).unwrap(), "0");
    let bytes = collected.to_bytes();
    let response = relay::decode_relay_response(&bytes[5..], relay::MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(answer(&net, &response).1[0].message.len(), 40_000);
    assert_eq!(grpc_backend.stats().grpc_unary, 1);
    assert_eq!(net.recorded().await, 1);
    assert_eq!(in_flight(), 0, "released once answered");
}

/// A gzip `SendRelay` body of `message` (one compressed message).
fn gzip_body(message: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(message).unwrap();
    let packed = gzip.finish().unwrap();
    let mut body = vec![1];
    body.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    body.extend_from_slice(&packed);
    body
}

/// Posts a raw `SendRelay` body with `grpc-encoding: gzip` over HTTP/2 (prior knowledge).
async fn send_gzip(url: &str, body: Vec<u8>) -> http::Response<hyper::body::Incoming> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, http_body_util::Full<bytes::Bytes>>(connector);
    let call = http::Request::post(format!("{url}{SEND_RELAY_PATH}"))
        .header("content-type", "application/grpc")
        .header("grpc-encoding", "gzip")
        .header("te", "trailers")
        .header("rpc-type", "1")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    client.request(call).await.unwrap()
}

/// [`send_gzip`]; returns the answer's `grpc-status` (headers of a trailers-only answer, else trailers).
async fn post_gzip(url: &str, body: Vec<u8>) -> String {
    let response = send_gzip(url, body).await;
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let collected = http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
    collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// A compressed message is inflated only once the most it may inflate to (the size limit) is reserved in the body
/// budget, so messages waiting for room hold their few compressed bytes, not their inflated ones: while another
/// relay holds most of the budget, a small gzip message that would inflate to less than what is left still waits
/// for room for the limit and is refused as `overloaded` (UNAVAILABLE); once the budget is free it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_message_is_inflated_only_with_room_for_the_limit_in_the_body_budget() {
    let slow = answering_after(Duration::from_millis(1500));
    let extra = "relay_server:\n  max_body_bytes_in_flight: 100000\n  body_budget_wait_ms: 100\n";
    let (net, running, _grpc_backend, _json) = grpc_net_full(slow, extra, "").await;
    let in_flight = || body_bytes_in_flight(&running);
    // A relay of ~45 KB held in flight by the slow backend: ~55 KB of the budget left.
    let big = grpc_relay(&net, ECHO_PATH, echo(&"y".repeat(45_000))).await;
    let held = tokio::spawn({
        let url = running.url.clone();
        async move { send_relay(&url, big).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while in_flight() < 45_000 {
        assert!(std::time::Instant::now() < deadline, "{} bytes held", in_flight());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ~30 KB inflated from ~1 KB compressed: fits what is left, but room for the 64 KiB limit does not.
    let small = relay::encode_relay_request(&grpc_relay(&net, ECHO_PATH, echo(&"x".repeat(30_000))).await);
    assert_eq!(
        post_gzip(&running.url, gzip_body(&small)).await,
        "14",
        "UNAVAILABLE (overloaded)"
    );
    assert!(held.await.unwrap().is_ok());
    assert_eq!(post_gzip(&running.url, gzip_body(&small)).await, "0");
    assert_eq!(in_flight(), 0);
    assert_eq!(net.recorded().await, 2);
}

/// A demo backend answering after `delay`.
fn answering_after(delay: Duration) -> BackendConfig {
    BackendConfig {
        delay: relay_miner::sim::backend::DelayConfig {
            fixed: delay,
            jitter: Duration::ZERO,
        },
        ..BackendConfig::default()
    }
}

/// `ha_relayer_request_body_bytes_in_flight` of the relayer.
fn body_bytes_in_flight(running: &Running) -> u64 {
    running
        .telemetry
        .render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix("ha_relayer_request_body_bytes_in_flight "))
        .map_or(0, |v| v.trim().parse::<u64>().unwrap())
}

/// A `grpc` backend checked with the gRPC health checking protocol (`endpoint: /grpc.health.v1.Health/Check`,
/// `request_body` the service asked about) every second, one answer taking it out or bringing it back.
async fn grpc_checked(service: &str) -> (Net, Running, BackendHandle, BackendHandle) {
    let keys = format!(
        ", health_check: {{enabled: true, endpoint: /grpc.health.v1.Health/Check, request_body: '{service}', \
         interval_seconds: 1, unhealthy_threshold: 1, healthy_threshold: 1}}"
    );
    grpc_net_full(BackendConfig::default(), "", &keys).await
}

/// The series of `name` for the `grpc` backend's only endpoint (named by its address).
fn endpoint_series(running: &Running, grpc: &BackendHandle, name: &str) -> Option<u64> {
    let text = running.telemetry.render_metrics();
    let endpoint = format!("endpoint=\"{}\"", grpc.addr());
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&endpoint))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A gRPC backend probed at `/grpc.health.v1.Health/Check` answering `SERVING` stays in (its probes succeed) and
/// its relays are served. Probed with a plain HTTP GET (before), every gRPC server refused the probe (the demo
/// backend 404, grpc-go 415), the endpoint was taken out and every gRPC relay refused as backend_unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_backend_serving_by_the_grpc_health_protocol_stays_in() {
    let (net, running, grpc, _json) = grpc_checked("").await;
    crate::relayer::eventually("a probe succeeded", || async {
        endpoint_series(&running, &grpc, "ha_relayer_health_check_successes_total").unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(
        endpoint_series(&running, &grpc, "ha_relayer_health_check_failures_total").unwrap_or(0),
        0
    );
    assert_eq!(
        endpoint_series(&running, &grpc, "ha_relayer_backend_health_status"),
        Some(1)
    );
    let response = send_relay(&running.url, grpc_relay(&net, ECHO_PATH, echo("hi")).await)
        .await
        .unwrap();
    let (status, messages) = answer(&net, &response);
    assert_eq!(status.as_deref(), Some("0"));
    assert_eq!(messages.len(), 1);
}

/// A gRPC backend answering `NOT_SERVING` for the service asked about (or not knowing it: gRPC status
/// `NOT_FOUND`) is taken out: its relays fail fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_backend_not_serving_by_the_grpc_health_protocol_is_taken_out() {
    for service in [relay_miner::sim::backend::grpc::NOT_SERVING_SERVICE, "no.such.Service"] {
        let (net, running, grpc, _json) = grpc_checked(service).await;
        crate::relayer::eventually("the probe took the endpoint out", || async {
            endpoint_series(&running, &grpc, "ha_relayer_backend_health_status") == Some(0)
        })
        .await;
        assert_eq!(
            endpoint_series(&running, &grpc, "ha_relayer_health_check_successes_total").unwrap_or(0),
            0,
            "{service}"
        );
        let refused = send_relay(&running.url, grpc_relay(&net, ECHO_PATH, echo("hi")).await)
            .await
            .unwrap_err();
        assert_eq!(refusal_code(&refused), 20, "backend_unavailable: {refused:?}");
    }
}
