//! Streamed answers over real sockets (module `relayer::stream`): a backend answering `text/event-stream` or
//! `application/x-ndjson` is relayed as a stream of signed batches, each a `RelayResponse` followed by
//! `||POKT_STREAM||`, and mined as one relay once the stream ended (in eager mode before the final batch is
//! written). A plain JSON answer is still one `RelayResponse`; a stream over `max_body_size_bytes` ends with a
//! `response_too_large` item, mined with the last item delivered (neither mined nor charged when none was). Backends: the demo backend's `/sse` and `/ndjson`,
//! and a tap the test feeds line by line, so what the gateway has by the time the stream ends is decided by the
//! test, not by timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use prost::Message as _;
use relay_miner::config::Config;
use relay_miner::protocol::wire::{
    MinedRelayMessage, PoktHttpRequest, PoktHttpResponse, Relay, RelayRequest, RelayResponse, SessionHeader,
};
use relay_miner::protocol::{relay, sha256, supplier_sig};
use relay_miner::sim::backend::{BackendConfig, BackendHandle, DemoBackend};
use tokio::sync::mpsc;

use crate::relayer::{Net, Running, assert_nothing_consumed, error_code, eventually, metric};

/// The wire delimiter, spelled out here so a change of the constant fails this test.
const DELIMITER: &[u8] = b"||POKT_STREAM||";

/// The sending side of the tap backend's next stream.
type Tap = Arc<Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>>;

/// A backend answering `GET /events` with `text/event-stream` made of whatever the test sends on the tap's sender,
/// ending when the sender is dropped, and any other request with a small JSON answer. Returns its URL.
async fn tap_backend(tap: Tap) -> String {
    let router = axum::Router::new()
        .route(
            "/events",
            axum::routing::get(move || {
                let rx = tap.lock().unwrap().take().expect("one stream per tap");
                async move {
                    let lines = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
                    let body = axum::body::Body::from_stream(futures::StreamExt::map(
                        lines,
                        Ok::<_, std::convert::Infallible>,
                    ));
                    ([(http::header::CONTENT_TYPE, "text/event-stream")], body)
                }
            }),
        )
        .fallback(|| async {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#,
            )
        });
    crate::support::serve(router).await
}

/// A net whose services answer streams: `anvil` (eager) and `lazy` (optimistic) with the demo backend, `slow`
/// (eager unless [`stream_net_full`] says otherwise) with the tap, `broken` (eager) with the demo backend and a 2000-byte body limit, `gated` (eager) with
/// the demo backend and a 1 s request timeout.
async fn stream_net() -> (Net, Running, BackendHandle, mpsc::UnboundedSender<Bytes>) {
    stream_net_with("").await
}

/// [`stream_net`] with `extra` (top-level YAML keys) added to the relayer's config.
async fn stream_net_with(extra: &str) -> (Net, Running, BackendHandle, mpsc::UnboundedSender<Bytes>) {
    stream_net_full(extra, "eager").await
}

/// [`stream_net_with`], the `slow` service (the tap's) validated in `slow_mode`.
async fn stream_net_full(extra: &str, slow_mode: &str) -> (Net, Running, BackendHandle, mpsc::UnboundedSender<Bytes>) {
    let net = Net::new(1_000_000_000).await;
    let backend = DemoBackend::spawn(BackendConfig::default()).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let tap = tap_backend(Arc::new(Mutex::new(Some(rx)))).await;
    let yaml = format!(
        "
listen_addr: 127.0.0.1:0
default_max_body_size_bytes: 65536
services:
  anvil:
    validation_mode: eager
    backends:
      jsonrpc: {{url: {demo}}}
  lazy:
    validation_mode: optimistic
    backends:
      jsonrpc: {{url: {demo}}}
  slow:
    validation_mode: {slow_mode}
    backends:
      jsonrpc: {{url: {tap}}}
  broken:
    validation_mode: eager
    max_body_size_bytes: 2000
    backends:
      jsonrpc: {{url: {demo}}}
  gated:
    validation_mode: eager
    timeout_profile: quick
    backends:
      jsonrpc: {{url: {demo}}}
timeout_profiles:
  quick: {{request_timeout_seconds: 1, response_header_timeout_seconds: 1}}
relay_meter:
  enabled: true
  fail_behavior: closed
  sync_interval_ms: 20
relay_log:
  durable_ack: true
{extra}",
        demo = backend.http_url(),
    );
    let config = Config::from_yaml(&yaml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let running = net.relayer_with(&config).await;
    (net, running, backend, tx)
}

/// A signed relay request for `GET url`.
fn get_request(net: &Net, header: &SessionHeader, url: &str) -> RelayRequest {
    let payload = PoktHttpRequest {
        method: "GET".into(),
        url: url.into(),
        ..Default::default()
    };
    let ring = [net.app.2, net.gateway.2];
    relay_miner::loadgen::signed_relay_request_with_payload(
        header,
        &net.ours.1,
        payload.encode_to_vec(),
        &net.gateway.0,
        &ring,
    )
    .unwrap()
}

/// A gateway's streamed answer being read.
struct Reader {
    status: u16,
    headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    ended: bool,
}

impl Reader {
    async fn open(url: &str, request: &RelayRequest) -> Self {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<Bytes>>();
        let request = http::Request::post(url)
            .header("content-type", "application/x-protobuf")
            .header("rpc-type", "3")
            .body(http_body_util::Full::new(Bytes::from(relay::encode_relay_request(
                request,
            ))))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.into_body(),
            buf: Vec::new(),
            ended: false,
        }
    }

    /// The next item (a decoded `RelayResponse`), `None` once the body ended (with no byte after the last
    /// delimiter).
    async fn next(&mut self) -> Option<RelayResponse> {
        loop {
            if let Some(at) = self.buf.windows(DELIMITER.len()).position(|w| w == DELIMITER) {
                let item: Vec<u8> = self.buf.drain(..at + DELIMITER.len()).take(at).collect();
                return Some(relay::decode_relay_response(&item, relay::MAX_RELAY_MESSAGE_BYTES).unwrap());
            }
            if self.ended {
                assert!(self.buf.is_empty(), "bytes after the last delimiter: {:?}", self.buf);
                return None;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("a frame within 10 s");
            match frame {
                None => self.ended = true,
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Every item left.
    async fn rest(&mut self) -> Vec<RelayResponse> {
        let mut items = Vec::new();
        while let Some(item) = self.next().await {
            items.push(item);
        }
        items
    }
}

/// The batch a served item carries, after checking its supplier signature, payload hash and status (200), and
/// that it carries no headers.
fn batch(net: &Net, item: &RelayResponse) -> Vec<u8> {
    assert!(item.relay_miner_error.is_none(), "{:?}", item.relay_miner_error);
    let signature = &item.meta.as_ref().unwrap().supplier_operator_signature;
    supplier_sig::verify(&net.ours.2, &relay::response_signable_hash(item), signature).unwrap();
    assert_eq!(item.payload_hash, Some(sha256(&item.payload).to_vec()));
    let payload = PoktHttpResponse::decode(item.payload.as_slice()).unwrap();
    assert_eq!(payload.status_code, 200);
    assert!(payload.header.is_empty(), "{:?}", payload.header);
    payload.body_bz
}

/// The relays in the relay log (read once, as a miner would).
async fn logged(net: &Net) -> Vec<Relay> {
    let entries = net
        .storage
        .relay_log
        .read(&net.ours.1, "stream-test", 100)
        .await
        .unwrap();
    entries
        .iter()
        .map(|e| {
            let message = MinedRelayMessage::decode(e.relay.payload.as_slice()).unwrap();
            Relay::decode(message.relay_bytes.as_slice()).unwrap()
        })
        .collect()
}

/// The relay log holds exactly one relay: `request` and `item`, the signed item the gateway got last (module
/// `stream`: a stream is mined with its final item, so its proof stays small however long it ran).
async fn assert_mined_once(net: &Net, request: &RelayRequest, item: &RelayResponse) {
    let mined = assert_mined_among(net, 1, request, item).await;
    let res = mined.res.as_ref().unwrap();
    // The mined relay keeps the response's payload hash, not its payload (spec: relay bytes).
    assert_eq!(res.payload_hash, item.payload_hash);
    let signature = &res.meta.as_ref().unwrap().supplier_operator_signature;
    supplier_sig::verify(&net.ours.2, &relay::response_signable_hash(res), signature).unwrap();
}

/// The relay log holds `total` relays, and the relay of `request` among them once, mined with `item` (the signed
/// item the gateway had when the relay was mined or settled). Returns that relay (the log is read once).
async fn assert_mined_among(net: &Net, total: usize, request: &RelayRequest, item: &RelayResponse) -> Relay {
    let relays = logged(net).await;
    assert_eq!(relays.len(), total);
    let streamed: Vec<_> = relays
        .iter()
        .filter(|relay| relay.req.as_ref() == Some(request))
        .collect();
    assert_eq!(streamed.len(), 1);
    let res = streamed[0].res.as_ref().unwrap();
    assert_eq!(res.meta, item.meta);
    assert_eq!(res.payload_hash, Some(sha256(&item.payload).to_vec()));
    streamed[0].clone()
}

/// The body the demo backend answers `GET path` with directly.
async fn direct(backend: &BackendHandle, path: &str) -> Vec<u8> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let uri = format!("{}{path}", backend.http_url()).parse().unwrap();
    let response = client.get(uri).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes().to_vec()
}

/// Eager mode: the gateway has the first signed batch while the backend's stream is still open (the relay is not
/// in the log yet); once the stream ended and the body with it, the log holds exactly one relay whose response
/// covers the whole body, which the batches concatenated are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_relayed_batch_by_batch_and_mined_once_when_it_ended() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let request = get_request(&net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    assert_eq!(reader.status, 200);
    assert_eq!(reader.headers[http::header::CONTENT_TYPE], "text/event-stream");

    tap.send(Bytes::from_static(b"data: one\n\n")).unwrap();
    let first = reader.next().await.unwrap();
    assert_eq!(batch(&net, &first), b"data: one\n\n");
    // The backend's stream is open (the test holds it): the relay cannot be mined yet. Its work is counted where
    // the shutdown's drain waits for it.
    assert_eq!(net.recorded().await, 0);
    assert_eq!(r.relayer.detached_relays(), 1);

    // A line split across reads, then the end.
    for chunk in ["data: two\n\nda", "ta: three\n", "\n"] {
        tap.send(Bytes::from(chunk)).unwrap();
    }
    drop(tap);
    let mut body = batch(&net, &first);
    let mut items = 1;
    let mut last = first.clone();
    while let Some(item) = reader.next().await {
        items += 1;
        body.extend(batch(&net, &item));
        if body.ends_with(b"three\n\n") {
            // durable_ack: the relay was appended before the final item was written.
            assert_eq!(net.recorded().await, 1);
        }
        last = item;
    }
    assert_eq!(body, b"data: one\n\ndata: two\n\ndata: three\n\n");
    assert_eq!(net.recorded().await, 1);
    assert_mined_once(&net, &request, &last).await;
    r.relayer.drain_settlements().await;
    assert_eq!(r.relayer.detached_relays(), 0);
    let t = &r.telemetry;
    assert_eq!(
        metric(t, "ha_relayer_streaming_relays_served_total{service_id=\"slow\"}"),
        1
    );
    // Every item written was one signed batch (how the lines fell into batches depends on their timing).
    assert_eq!(metric(t, "ha_relayer_streaming_batches_signed_total"), items);
    assert_eq!(metric(t, "ha_relayer_streaming_chunks_forwarded_total"), 6);
}

/// The demo backend's `/sse` (5 events 300 ms apart) in optimistic mode, after a first relay validated the
/// session: several batches whose bodies concatenated are the backend's body, and the settlement after the stream
/// mines one relay over the full response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_in_optimistic_mode_is_settled_with_the_full_response() {
    let (net, r, backend, _tap) = stream_net().await;
    let header = net.header("lazy").await;
    // The session's first relay is validated before serving (and records the session).
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(status, 200);
    assert_eq!(logged(&net).await.len(), 1);

    let request = get_request(&net, &header, "/sse?count=5&interval_ms=300");
    let mut reader = Reader::open(&r.url, &request).await;
    assert_eq!(reader.status, 200);
    let items = reader.rest().await;
    assert!(items.len() > 1, "{} items", items.len());
    let body: Vec<u8> = items.iter().flat_map(|item| batch(&net, item)).collect();
    assert_eq!(body, direct(&backend, "/sse?count=5&interval_ms=0").await);
    eventually("the streamed relay to be settled", || async {
        net.recorded().await == 1
    })
    .await;
    assert_mined_once(&net, &request, items.last().unwrap()).await;
}

/// A plain JSON answer is still one signed `RelayResponse`, no delimiter; NDJSON is streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_answer_is_one_response_and_ndjson_is_streamed() {
    let (net, r, backend, _tap) = stream_net().await;
    let header = net.header("anvil").await;
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(4))).await;
    assert_eq!(status, 200);
    let payload = PoktHttpResponse::decode(response.payload.as_slice()).unwrap();
    assert!(String::from_utf8_lossy(&payload.body_bz).contains("\"id\":4"));
    let request = net.request(&header, &net.ours.1, Net::rpc(5));
    let mut reader = Reader::open(&r.url, &request).await;
    let mut raw = Vec::new();
    while let Some(frame) = reader.body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            raw.extend_from_slice(&data);
        }
    }
    assert!(!raw.windows(DELIMITER.len()).any(|w| w == DELIMITER));
    assert!(relay::decode_relay_response(&raw, relay::MAX_RELAY_MESSAGE_BYTES).is_ok());
    assert_eq!(logged(&net).await.len(), 2);

    let request = get_request(&net, &header, "/ndjson?count=20&interval_ms=0");
    let mut reader = Reader::open(&r.url, &request).await;
    assert_eq!(reader.headers[http::header::CONTENT_TYPE], "application/x-ndjson");
    let items = reader.rest().await;
    let body: Vec<u8> = items.iter().flat_map(|item| batch(&net, item)).collect();
    assert_eq!(body, direct(&backend, "/ndjson?count=20&interval_ms=0").await);
    assert_mined_once(&net, &request, items.last().unwrap()).await;
}

/// A stream past the service's `max_body_size_bytes` (the `slow` service's 65,536 bytes) before any item: the
/// gateway gets a `response_too_large` item and the body ends; nothing is mined and the meter charge is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_the_body_limit_before_any_item_ends_with_an_error_and_is_not_mined() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let request = get_request(&net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    assert_eq!(reader.status, 200);
    tap.send(Bytes::from(lines_of(70_000))).unwrap();
    let items = reader.rest().await;
    assert_eq!(items.len(), 1, "nothing served before the limit");
    assert_eq!(error_code(&items[0]), Some(12), "{:?}", items[0].relay_miner_error);
    r.relayer.drain_settlements().await;
    assert_eq!(net.recorded().await, 0);
    assert_nothing_consumed(&net, &r, &[&header]).await;
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"response_too_large\",rpc_type=\"jsonrpc\",service_id=\"slow\"}"
        ),
        1
    );
}

/// One SSE line of `len` bytes (`data: xxx…\n`): no batch is complete before its end.
fn lines_of(len: usize) -> Vec<u8> {
    format!("data: {}\n", "x".repeat(len - 7)).into_bytes()
}

/// A stream going past the body limit after an item was delivered: the gateway holds a signed response of a
/// relay served in part (its application got the tokens), so the relay is mined with that item and the charge
/// kept; the body still ends with the `response_too_large` item (before, refunded and not mined: served unpaid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_the_body_limit_after_an_item_is_mined_with_it() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let (_, request, mut reader, first) = stream_served_once(&net, &r, &tap).await;
    tap.send(Bytes::from(lines_of(70_000))).unwrap();
    let items = reader.rest().await;
    assert_eq!(items.len(), 1, "one item after the first");
    assert_eq!(error_code(&items[0]), Some(12), "{:?}", items[0].relay_miner_error);
    r.relayer.drain_settlements().await;
    assert_mined_once(&net, &request, &first).await;
    assert_charged(&net, &r, &header).await;
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"response_too_large\",rpc_type=\"jsonrpc\",service_id=\"slow\"}"
        ),
        0
    );
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_streaming_relays_served_total{service_id=\"slow\"}"
        ),
        1
    );
    // Still seen as a backend answer cut short.
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_streams_broken_total{reason=\"response_too_large\",service_id=\"slow\"}"
        ),
        1
    );
}

/// A backend going silent past the request timeout (here `default_request_timeout_seconds: 1`) after an item:
/// mined with the item the gateway got, the body ending with a `backend_timeout` item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_going_silent_after_an_item_is_mined_with_it() {
    silent_after_an_item("eager").await;
}

/// [`a_stream_going_silent_after_an_item_is_mined_with_it`] in optimistic mode: settled with that item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimistic_stream_going_silent_after_an_item_is_settled_with_it() {
    silent_after_an_item("optimistic").await;
}

async fn silent_after_an_item(mode: &str) {
    let (net, r, _backend, tap) = stream_net_full("default_request_timeout_seconds: 1", mode).await;
    let header = net.header("slow").await;
    let mut others = 0;
    if mode == "optimistic" {
        // Optimistic mode serves first only relays of a session validated before (the first, recorded too).
        let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
        assert_eq!(status, 200);
        others = 1;
    }
    let (_, request, mut reader, first) = stream_served_once(&net, &r, &tap).await;
    // Nothing more is sent (the tap is held open): the relayer times the backend out.
    let items = reader.rest().await;
    assert_eq!(items.len(), 1, "one item after the first");
    assert_eq!(error_code(&items[0]), Some(13), "{:?}", items[0].relay_miner_error);
    drop(tap);
    r.relayer.drain_settlements().await;
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_streams_broken_total{reason=\"backend_timeout\",service_id=\"slow\"}"
        ),
        1
    );
    assert_mined_among(&net, others + 1, &request, &first).await;
    assert_charged(&net, &r, &header).await;
}

/// The session's meter holds a charge (the relay's compute units were not refunded).
async fn assert_charged(net: &Net, r: &Running, header: &SessionHeader) {
    r.relayer.meter().unwrap().sync().await;
    let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
    let consumed = net.storage.kv.get(&key).await.unwrap().unwrap_or_default();
    let consumed: u64 = String::from_utf8_lossy(&consumed).parse().unwrap_or(0);
    assert!(consumed > 0, "charge refunded");
}

/// The gateway leaving mid-stream (its user cancelled the answer) after an item: it holds a signed response, the
/// relay was served; the relayer stops reading the backend and mines it with the last item the gateway has, the
/// charge kept (before, it was refunded and not mined: served work unpaid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_leaving_mid_stream_after_an_item_is_mined_with_it() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let request = get_request(&net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    tap.send(Bytes::from_static(b"data: one\n\n")).unwrap();
    let first = reader.next().await.unwrap();
    assert_eq!(batch(&net, &first), b"data: one\n\n");
    drop(reader);
    // The relayer finds the gateway gone at the latest when it writes the next batch.
    eventually("the cancelled stream to be mined", || {
        let _ = tap.send(Bytes::from_static(b"data: more\n\n"));
        async { net.recorded().await == 1 }
    })
    .await;
    drop(tap);
    r.relayer.drain_settlements().await;
    assert_mined_once(&net, &request, &first).await;
    let abandoned = "ha_relayer_relays_dropped_total{reason=\"stream_abandoned\",service_id=\"slow\"}";
    assert_eq!(metric(&r.telemetry, abandoned), 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_streaming_relays_served_total{service_id=\"slow\"}"
        ),
        1
    );
}

/// The gateway leaving before any item: nothing was served; the relayer stops reading the backend, refunds the
/// meter charge and mines nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_leaving_before_any_item_is_refunded_and_nothing_is_mined() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let request = get_request(&net, &header, "/events");
    let reader = Reader::open(&r.url, &request).await;
    drop(reader);
    let abandoned = "ha_relayer_relays_dropped_total{reason=\"stream_abandoned\",service_id=\"slow\"}";
    eventually("the stream to be abandoned", || {
        let _ = tap.send(Bytes::from_static(b"data: more\n\n"));
        async { metric(&r.telemetry, abandoned) == 1 }
    })
    .await;
    drop(tap);
    r.relayer.drain_settlements().await;
    assert_eq!(net.recorded().await, 0);
    assert_nothing_consumed(&net, &r, &[&header]).await;
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_streaming_relays_served_total{service_id=\"slow\"}"
        ),
        0
    );
}

/// A stream of the `slow` service's current session opened on the test-fed backend, its first line `data: one`
/// served (returned with the session's windows, the request and the gateway's reader).
async fn stream_served_once(
    net: &Net,
    r: &Running,
    tap: &mpsc::UnboundedSender<Bytes>,
) -> (
    relay_miner::protocol::session::SessionWindows,
    RelayRequest,
    Reader,
    RelayResponse,
) {
    let header = net.header("slow").await;
    let params = net.chain.state().shared.clone();
    let windows =
        relay_miner::protocol::session::SessionWindows::new(&params, header.session_end_block_height).unwrap();
    let request = get_request(net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    tap.send(Bytes::from_static(b"data: one\n\n")).unwrap();
    let first = reader.next().await.unwrap();
    assert_eq!(batch(net, &first), b"data: one\n\n");
    (windows, request, reader, first)
}

/// Mining refused (the relayer's height jumped to the claim window's opening, with `claim_delay_blocks: 0` the
/// block the miner may build the claim at, past the block before it where a running stream is mined): the final
/// item is the `session_expired` error, nothing is recorded and the charge is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ending_after_the_claim_window_opened_ends_with_the_mining_error() {
    let (net, r, _backend, tap) = stream_net_with("transaction:\n  claim_delay_blocks: 0\n").await;
    let (windows, _request, mut reader, _first) = stream_served_once(&net, &r, &tap).await;
    net.advance((windows.claim_open - net.chain.height()) as usize);
    // The stream may have ended at the new height already (its backend then gone): the send may fail.
    let _ = tap.send(Bytes::from_static(b"data: two\n\n"));
    drop(tap);
    let items = reader.rest().await;
    let (last, served) = items.split_last().unwrap();
    assert_eq!(
        error_code(last),
        Some(6),
        "session_expired: {:?}",
        last.relay_miner_error
    );
    // The relayer saw the height jump past the block before the claim's: mining was refused there, the stream
    // ended with it, and the second line was never served.
    assert!(served.is_empty(), "{} items served after the first", served.len());
    assert_eq!(net.recorded().await, 0);
    // Refunded (not read back from the meter's storage: once the claim window opened the meter may have forgotten
    // the session's entry, and a refund after that does not reach storage; no relay of the session is metered any
    // more).
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relay_meter_consumptions_total{result=\"refunded\",service_id=\"slow\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"session_expired\",rpc_type=\"jsonrpc\",service_id=\"slow\"}"
        ),
        1
    );
}

/// The request timeout (here 1 s) applies between two lines, not to the whole stream: a 1.5 s stream of lines
/// 300 ms apart is served and mined; a stream silent for longer ends with a `backend_timeout` item, not mined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_applies_between_two_lines() {
    let (net, r, _backend, _tap) = stream_net().await;
    let header = net.header("gated").await;
    let request = get_request(&net, &header, "/sse?count=5&interval_ms=300");
    let mut reader = Reader::open(&r.url, &request).await;
    let items = reader.rest().await;
    let body: Vec<u8> = items.iter().flat_map(|item| batch(&net, item)).collect();
    assert_eq!(
        body.iter().filter(|b| **b == b'\n').count(),
        5 * 4,
        "5 events of 4 lines"
    );
    assert_mined_once(&net, &request, items.last().unwrap()).await;

    let request = get_request(&net, &header, "/sse?count=2&interval_ms=1500");
    let mut reader = Reader::open(&r.url, &request).await;
    assert_eq!(reader.status, 200);
    let items = reader.rest().await;
    assert_eq!(items.len(), 1, "no event within the timeout");
    assert_eq!(error_code(&items[0]), Some(13), "{:?}", items[0].relay_miner_error);
    assert_eq!(net.recorded().await, 0);
}

/// A stream still running one block before the miner may build its session's claim is mined then, with the item
/// the gateway has, and goes on: the session's end does not leave a long stream unpaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_still_running_before_its_claim_is_mined_then_and_goes_on() {
    let (net, r, _backend, tap) = stream_net_with("transaction:\n  claim_delay_blocks: 1\n").await;
    let (windows, request, mut reader, first) = stream_served_once(&net, &r, &tap).await;
    assert_eq!(net.recorded().await, 0);
    // The claim is sent at claim_open + 1: at claim_open the stream's relay is mined, with the item served so far.
    net.advance((windows.claim_open - net.chain.height()) as usize);
    eventually("the running stream's relay to be mined", || async {
        net.recorded().await == 1
    })
    .await;
    // The stream goes on and ends normally; nothing more is mined or refunded.
    tap.send(Bytes::from_static(b"data: two\n\n")).unwrap();
    drop(tap);
    let items = reader.rest().await;
    let body: Vec<u8> = items.iter().flat_map(|item| batch(&net, item)).collect();
    assert_eq!(body, b"data: two\n\n");
    assert!(items.iter().all(|item| item.relay_miner_error.is_none()));
    assert_mined_once(&net, &request, &first).await;
    r.relayer.drain_settlements().await;
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_streaming_relays_served_total{service_id=\"slow\"}"
        ),
        1
    );
}

/// Optimistic mode too: a stream of a session validated before, served first, still running one block before the
/// miner may build the session's claim, is settled then (validated, metered, mined) with the item the gateway has,
/// and goes on; the session's end does not leave it unpaid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimistic_stream_still_running_before_its_claim_is_mined_then_and_goes_on() {
    let (net, r, _backend, tap) = stream_net_full("transaction:\n  claim_delay_blocks: 1\n", "optimistic").await;
    let header = net.header("slow").await;
    // The session's first relay is validated before serving and records the session (with its windows).
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(status, 200);
    assert_eq!(net.recorded().await, 1);
    let optimistic = "ha_relayer_relays_served_optimistically_total{rpc_type=\"jsonrpc\",service_id=\"slow\"}";
    let served_before = metric(&r.telemetry, optimistic);
    let params = net.chain.state().shared.clone();
    let windows =
        relay_miner::protocol::session::SessionWindows::new(&params, header.session_end_block_height).unwrap();
    let request = get_request(&net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    tap.send(Bytes::from_static(b"data: one\n\n")).unwrap();
    let first = reader.next().await.unwrap();
    assert_eq!(batch(&net, &first), b"data: one\n\n");
    assert_eq!(net.recorded().await, 1, "served first, not settled yet");
    // The claim is sent at claim_open + 1: at claim_open the stream's relay is settled with the item served so far.
    net.advance((windows.claim_open - net.chain.height()) as usize);
    eventually("the running optimistic stream's relay to be mined", || async {
        net.recorded().await == 2
    })
    .await;
    tap.send(Bytes::from_static(b"data: two\n\n")).unwrap();
    drop(tap);
    let items = reader.rest().await;
    let body: Vec<u8> = items.iter().flat_map(|item| batch(&net, item)).collect();
    assert_eq!(body, b"data: two\n\n");
    assert!(items.iter().all(|item| item.relay_miner_error.is_none()));
    r.relayer.drain_settlements().await;
    // Mined once, with the item the gateway had when it was settled.
    assert_mined_among(&net, 2, &request, &first).await;
    assert_eq!(metric(&r.telemetry, optimistic), served_before + 1);
}

/// The shutdown's drain ends a stream its backend keeps open, as if the backend's had ended: the gateway gets a
/// final item and the body ends, and the relay is mined with it (the relay server's drain waits for every body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_ends_a_stream_and_mines_what_was_delivered() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let request = get_request(&net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    tap.send(Bytes::from_static(b"data: one\n\n")).unwrap();
    assert_eq!(batch(&net, &reader.next().await.unwrap()), b"data: one\n\n");
    // The backend's stream stays open (the test holds `tap`).
    tokio::time::timeout(Duration::from_secs(10), r.relayer.drain_settlements())
        .await
        .expect("the drain ends the stream");
    let items = reader.rest().await;
    assert_eq!(items.len(), 1, "one final item");
    assert!(batch(&net, &items[0]).is_empty());
    assert_mined_once(&net, &request, &items[0]).await;
    drop(tap);
}

/// A stream whose backend sent nothing yet when the shutdown's drain ends it is not mined (the application would
/// pay for an empty answer): it ends with an error item, its charge refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_does_not_mine_a_stream_that_delivered_nothing() {
    let (net, r, _backend, tap) = stream_net().await;
    let header = net.header("slow").await;
    let request = get_request(&net, &header, "/events");
    let mut reader = Reader::open(&r.url, &request).await;
    assert_eq!(reader.status, 200);
    // The backend's stream stays open and silent (the test holds `tap`).
    tokio::time::timeout(Duration::from_secs(10), r.relayer.drain_settlements())
        .await
        .expect("the drain ends the stream");
    let items = reader.rest().await;
    assert_eq!(items.len(), 1, "one error item");
    assert_eq!(error_code(&items[0]), Some(8), "{:?}", items[0].relay_miner_error);
    assert_eq!(net.recorded().await, 0);
    assert_nothing_consumed(&net, &r, &[&header]).await;
    drop(tap);
}
