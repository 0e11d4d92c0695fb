//! The relayer over real sockets (issue 6): simulator chain gRPC + demo backend + redb storage + the relayer built
//! from a YAML config. Valid relays are served and recorded; every invalid kind is refused with its stable code
//! and not recorded; backend timeouts, 5xx answers and oversized bodies behave as documented; optimistic mode
//! serves an invalid relay but does not mine it; the relay meter refuses over-service and two relayers on the
//! same storage share it. Blocks are produced by hand and every wait polls with a deadline. The fixtures here serve
//! the other `relayer_*` modules too (optimistic mode: `relayer_optimistic`; chain-backed validation:
//! `relayer_validation`).

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use prost::Message as _;
use relay_miner::chain::query::ChainClient;
use relay_miner::config::Config;
use relay_miner::keys::Keyring;
use relay_miner::protocol::wire::{PoktHttpResponse, RelayRequest, RelayResponse, SessionHeader};
use relay_miner::protocol::{relay, sha256, supplier_sig};
use relay_miner::relayer::Relayer;
use relay_miner::relayer::meter::MeterKey;
use relay_miner::sim::backend::{BackendConfig, BackendHandle, DelayConfig, DemoBackend, FaultConfig, Injection};
use relay_miner::sim::chain::genesis::*;
use relay_miner::sim::chain::{SimChain, actor};
use relay_miner::telemetry::Telemetry;
use tokio::sync::watch;

use crate::support::gate::Gate;

type Actor = (k256::ecdsa::SigningKey, String, [u8; 33]);

pub(crate) fn key_hex(label: &str) -> String {
    hex::encode(sha256(label.as_bytes()))
}

pub(crate) const SERVICES: [&str; 5] = ["anvil", "lazy", "slow", "broken", "gated"];

pub(crate) struct Net {
    pub(crate) chain: SimChain,
    pub(crate) client: Arc<ChainClient>,
    pub(crate) grpc_url: String,
    /// `ParamsAtHeight` queries the simulator answered.
    pub(crate) params_queries: Arc<std::sync::atomic::AtomicUsize>,
    /// Queries the simulator's gRPC got, by method path, and faults injected per path.
    pub(crate) chain_tap: ChainTap,
    pub(crate) height_tx: watch::Sender<i64>,
    pub(crate) storage: storage::Storage,
    _dir: tempfile::TempDir,
    _backends: Vec<BackendHandle>,
    pub(crate) gate: Gate,
    pub(crate) config: Config,
    pub(crate) app: Actor,
    pub(crate) gateway: Actor,
    pub(crate) ours: Actor,
    pub(crate) theirs: Actor,
    http: Http,
}

/// What the chain's gRPC does with a query of one method (see [`ChainTap`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ChainFault {
    /// Answers `UNAVAILABLE` at once.
    Unavailable,
    /// Answers after this long (latency injection, so concurrent callers overlap).
    Delay(Duration),
}

/// Counts the simulator's gRPC queries per method path and injects [`ChainFault`]s.
#[derive(Clone, Default)]
pub(crate) struct ChainTap {
    calls: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    faults: Arc<std::sync::Mutex<std::collections::HashMap<String, ChainFault>>>,
}

impl ChainTap {
    /// Queries of `path` (e.g. `/pocket.service.Query/RelayMiningDifficultyAtHeight`) so far.
    pub(crate) fn calls(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Queries of every method so far.
    pub(crate) fn total(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }

    /// Applies `fault` to every later query of `path` (`None` heals it).
    pub(crate) fn set_fault(&self, path: &str, fault: Option<ChainFault>) {
        let mut faults = self.faults.lock().unwrap();
        match fault {
            Some(f) => faults.insert(path.to_string(), f),
            None => faults.remove(path),
        };
    }

    async fn layer(self, request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
        let path = request.uri().path().to_string();
        *self.calls.lock().unwrap().entry(path.clone()).or_default() += 1;
        let fault = self.faults.lock().unwrap().get(&path).copied();
        match fault {
            Some(ChainFault::Unavailable) => axum::response::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "14")
                .header("grpc-message", "injected outage")
                .body(axum::body::Body::empty())
                .unwrap(),
            Some(ChainFault::Delay(d)) => {
                tokio::time::sleep(d).await;
                next.run(request).await
            }
            None => next.run(request).await,
        }
    }
}

pub(crate) struct Running {
    pub(crate) url: String,
    pub(crate) relayer: Arc<Relayer>,
    pub(crate) telemetry: Telemetry,
}

pub(crate) async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// Serves `relayer` on a free port with the relay server and `limits` (as `relay-miner run` does).
pub(crate) async fn serve_relayer(relayer: Arc<Relayer>, limits: relay_miner::relayer::ServerLimits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(relayer.serve(listener, limits, std::future::pending()));
    format!("http://{addr}")
}

impl Net {
    pub(crate) async fn new(app_stake_upokt: u64) -> Self {
        let genesis = Genesis {
            chain_id: "pocket-relayer-test".into(),
            block_time_ms: 1000,
            shared_params: GenesisSharedParams {
                num_blocks_per_session: 4,
                grace_period_end_offset_blocks: 1,
                claim_window_open_offset_blocks: 1,
                claim_window_close_offset_blocks: 4,
                proof_window_open_offset_blocks: 0,
                proof_window_close_offset_blocks: 4,
                ..Default::default()
            },
            proof_params: GenesisProofParams {
                proof_request_probability: 0.0,
                proof_requirement_threshold_upokt: u64::MAX,
                proof_missing_penalty_upokt: 1,
                proof_submission_fee_upokt: 1,
            },
            num_suppliers_per_session: 15,
            services: SERVICES
                .iter()
                .map(|id| GenesisService {
                    id: (*id).into(),
                    compute_units_per_relay: 10,
                    difficulty_target_hex: None,
                })
                .collect(),
            applications: vec![GenesisApplication {
                key_hex: key_hex("relayer-test-app"),
                stake_upokt: app_stake_upokt,
                services: SERVICES.iter().map(|s| (*s).into()).collect(),
                delegate_to: vec![0],
            }],
            gateways: vec![GenesisGateway {
                key_hex: key_hex("relayer-test-gateway"),
                stake_upokt: 1_000_000_000,
            }],
            suppliers: ["ours", "theirs"]
                .iter()
                .map(|name| GenesisSupplier {
                    key_hex: key_hex(&format!("relayer-test-supplier-{name}")),
                    stake_upokt: 1_000_000_000,
                    balance_upokt: 1_000_000_000,
                    services: SERVICES
                        .iter()
                        .map(|s| GenesisSupplierService {
                            service_id: (*s).into(),
                            url: "http://127.0.0.1:1".into(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let app = actor(&genesis.applications[0].key_hex).unwrap();
        let gateway = actor(&genesis.gateways[0].key_hex).unwrap();
        let ours = actor(&genesis.suppliers[0].key_hex).unwrap();
        let theirs = actor(&genesis.suppliers[1].key_hex).unwrap();
        let chain = SimChain::new(genesis).unwrap();
        for _ in 0..4 {
            chain.produce_block();
        }
        let params_queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&params_queries);
        let chain_tap = ChainTap::default();
        let tap = chain_tap.clone();
        let grpc_url = serve(relay_miner::sim::chain::router(chain.clone()).into_axum().layer(
            axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
                if request.uri().path() == "/pocket.shared.Query/ParamsAtHeight" {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tap.clone().layer(request, next)
            }),
        ))
        .await;
        let fast = DemoBackend::spawn(BackendConfig::default()).await.unwrap();
        let slow = DemoBackend::spawn(BackendConfig {
            delay: DelayConfig {
                fixed: Duration::from_secs(5),
                jitter: Duration::ZERO,
            },
            ..BackendConfig::default()
        })
        .await
        .unwrap();
        let broken = DemoBackend::spawn(BackendConfig {
            faults: FaultConfig {
                http_500: Injection::EveryNth(NonZeroU64::new(1).unwrap()),
                ..FaultConfig::default()
            },
            ..BackendConfig::default()
        })
        .await
        .unwrap();
        let gate = Gate::new();
        let gated = gate.spawn().await;
        let yaml = format!(
            "
listen_addr: 127.0.0.1:0
default_max_body_size_bytes: 65536
services:
  anvil:
    validation_mode: eager
    backends:
      jsonrpc: {{url: {fast}}}
  lazy:
    validation_mode: optimistic
    backends:
      jsonrpc: {{url: {fast}}}
  slow:
    validation_mode: eager
    timeout_profile: quick
    backends:
      jsonrpc: {{url: {slow}}}
  broken:
    validation_mode: eager
    backends:
      jsonrpc: {{url: {broken}}}
  gated:
    validation_mode: eager
    backends:
      jsonrpc: {{url: {gated}}}
timeout_profiles:
  quick: {{request_timeout_seconds: 1, response_header_timeout_seconds: 1}}
relay_meter:
  enabled: true
  fail_behavior: closed
  sync_interval_ms: 20
relay_log:
  durable_ack: true
",
            fast = fast.http_url(),
            slow = slow.http_url(),
            broken = broken.http_url(),
        );
        let config = Config::from_yaml(&yaml).unwrap();
        assert_eq!(config.validate(), vec![]);
        let dir = tempfile::tempdir().unwrap();
        let redb = storage::redb::RedbBackend::open(storage::redb::RedbConfig::new(dir.path().join("r.redb")))
            .await
            .unwrap();
        let client = Arc::new(ChainClient::new(&grpc_url, Duration::from_secs(5)).unwrap());
        client.observe_height(chain.height());
        let (height_tx, _) = watch::channel(chain.height());
        Self {
            chain,
            client,
            grpc_url,
            params_queries,
            chain_tap,
            height_tx,
            storage: redb.storage(),
            _dir: dir,
            _backends: vec![fast, slow, broken],
            gate,
            config,
            app,
            gateway,
            ours,
            theirs,
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    pub(crate) async fn relayer(&self) -> Running {
        self.relayer_with(&self.config).await
    }

    /// A relayer of `config` (this net's config with some keys changed) on this net's chain and storage.
    pub(crate) async fn relayer_with(&self, config: &Config) -> Running {
        let telemetry = Telemetry::new().unwrap();
        let keyring = Keyring::new([(self.ours.1.clone(), self.ours.0.clone())].into_iter().collect());
        let relayer = Arc::new(
            Relayer::from_config(
                config,
                Arc::clone(&self.client),
                keyring,
                &self.storage,
                self.height_tx.subscribe(),
                &telemetry,
            )
            .unwrap(),
        );
        let url = serve_relayer(Arc::clone(&relayer), config.relay_server.limits()).await;
        Running {
            url,
            relayer,
            telemetry,
        }
    }

    pub(crate) fn advance(&self, blocks: usize) {
        for _ in 0..blocks {
            self.chain.produce_block();
        }
        self.client.invalidate_applications();
        self.client.observe_height(self.chain.height());
        self.height_tx.send_replace(self.chain.height());
    }

    pub(crate) async fn header(&self, service: &str) -> SessionHeader {
        self.client
            .session(&self.app.1, service, self.chain.height())
            .await
            .unwrap()
            .header
            .unwrap()
    }

    /// A relay request signed by the gateway with the ring [app, gateway].
    pub(crate) fn request(&self, header: &SessionHeader, supplier: &str, body: Vec<u8>) -> RelayRequest {
        let ring = [self.app.2, self.gateway.2];
        relay_miner::loadgen::signed_relay_request(header, supplier, "/", body, &self.gateway.0, &ring).unwrap()
    }

    pub(crate) fn rpc(id: u64) -> Vec<u8> {
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"eth_blockNumber\",\"params\":[]}}").into_bytes()
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> (u16, RelayResponse) {
        post(&self.http, url, body).await
    }

    pub(crate) async fn send(&self, url: &str, request: &RelayRequest) -> (u16, RelayResponse) {
        self.post(url, relay::encode_relay_request(request)).await
    }

    pub(crate) async fn recorded(&self) -> u64 {
        self.storage.relay_log.backlog(&self.ours.1).await.unwrap().undelivered
    }
}

type Http = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// POSTs a relay request body the way a gateway does (`Rpc-Type: 3`, JSON-RPC).
pub(crate) async fn post(http: &Http, url: &str, body: Vec<u8>) -> (u16, RelayResponse) {
    let request = http::Request::post(url)
        .header("content-type", "application/x-protobuf")
        .header("rpc-type", "3")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = http.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        relay::decode_relay_response(&bytes, relay::MAX_RELAY_MESSAGE_BYTES).unwrap(),
    )
}

/// After a meter sync, none of `headers`' sessions has compute units charged to our supplier.
pub(crate) async fn assert_nothing_consumed(net: &Net, r: &Running, headers: &[&SessionHeader]) {
    r.relayer.meter().unwrap().sync().await;
    for header in headers {
        let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
        let consumed = net.storage.kv.get(&key).await.unwrap().unwrap_or_default();
        assert!(
            consumed.is_empty() || consumed == b"0",
            "{}",
            String::from_utf8_lossy(&consumed)
        );
    }
}

pub(crate) fn error_code(response: &RelayResponse) -> Option<u32> {
    response.relay_miner_error.as_ref().map(|e| e.code)
}

pub(crate) fn served_status(net: &Net, response: &RelayResponse) -> u32 {
    assert!(response.relay_miner_error.is_none(), "{:?}", response.relay_miner_error);
    // The supplier signature verifies over the response signable hash (§2.2).
    let signable = relay::response_signable_hash(response);
    let signature = &response.meta.as_ref().unwrap().supplier_operator_signature;
    supplier_sig::verify(&net.ours.2, &signable, signature).unwrap();
    assert_eq!(response.payload_hash, Some(sha256(&response.payload).to_vec()));
    PoktHttpResponse::decode(response.payload.as_slice())
        .unwrap()
        .status_code
}

/// A gateway's connection to the relayer at `url` that has sent one relay request (`body`, JSON-RPC) as a raw
/// HTTP/1.1 POST and reads nothing: dropping it is a gateway going away mid-request.
pub(crate) async fn post_raw(url: &str, body: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = url.trim_start_matches("http://");
    let mut gateway = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-protobuf\r\nrpc-type: 3\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    gateway.write_all(head.as_bytes()).await.unwrap();
    gateway.write_all(body).await.unwrap();
    gateway
}

pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn metric(telemetry: &Telemetry, line_prefix: &str) -> u64 {
    telemetry
        .render_metrics()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_relays_are_served_signed_and_recorded() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    for id in 0..3 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!(status, 200);
        assert_eq!(served_status(&net, &response), 200);
        let payload = PoktHttpResponse::decode(response.payload.as_slice()).unwrap();
        assert!(String::from_utf8_lossy(&payload.body_bz).contains(&format!("\"id\":{id}")));
    }
    // durable_ack: recorded before the answer.
    assert_eq!(net.recorded().await, 3);
    // Counted per rpc type (Go labels), with each phase's latency observed once per relay.
    for line in [
        "ha_relayer_relays_received_total{rpc_type=\"jsonrpc\",service_id=\"anvil\"}",
        "ha_relayer_relays_served_total{rpc_type=\"jsonrpc\",service_id=\"anvil\",status_code=\"200\"}",
        "ha_relayer_relay_latency_seconds_count{rpc_type=\"jsonrpc\",service_id=\"anvil\"}",
        "ha_relayer_relay_pre_backend_seconds_count{rpc_type=\"jsonrpc\",service_id=\"anvil\"}",
        "ha_relayer_relay_post_backend_seconds_count{rpc_type=\"jsonrpc\",service_id=\"anvil\"}",
        "ha_relayer_validation_latency_seconds_count{mode=\"eager\",service_id=\"anvil\"}",
    ] {
        assert_eq!(metric(&r.telemetry, line), 3, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_relays_are_refused_with_their_code_and_not_recorded() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;

    let (status, response) = net.post(&r.url, b"\xff\xff not a relay request".to_vec()).await;
    assert_eq!((status, error_code(&response)), (400, Some(1)), "malformed");

    let mut unknown = header.clone();
    for id in ["nope", "nope-2"] {
        unknown.service_id = id.into();
        let (_, response) = net.send(&r.url, &net.request(&unknown, &net.ours.1, Net::rpc(1))).await;
        assert_eq!(error_code(&response), Some(3), "unknown service");
    }
    // A client-chosen service id never becomes a metric label (unbounded series): unknown ones count under "".
    let text = r.telemetry.render_metrics();
    assert!(!text.contains("nope"), "{text}");
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"unknown_service\",rpc_type=\"jsonrpc\",service_id=\"\"}"
        ),
        2
    );

    let (_, response) = net
        .send(&r.url, &net.request(&header, &net.theirs.1, Net::rpc(2)))
        .await;
    assert_eq!(error_code(&response), Some(2), "not our supplier");

    let mut bad_signature = net.request(&header, &net.ours.1, Net::rpc(3));
    let signature = &mut bad_signature.meta.as_mut().unwrap().signature;
    signature[5] ^= 0x01; // c0
    let (_, response) = net.send(&r.url, &bad_signature).await;
    assert_eq!(error_code(&response), Some(4), "bad ring signature");

    let mut wrong = header.clone();
    wrong.session_id = "0".repeat(64);
    let (_, response) = net.send(&r.url, &net.request(&wrong, &net.ours.1, Net::rpc(4))).await;
    assert_eq!(error_code(&response), Some(5), "wrong session header");

    // The session's grace period ends: its relays are refused.
    let stale = net.request(&header, &net.ours.1, Net::rpc(5));
    while net.chain.height() <= header.session_end_block_height + 2 {
        net.advance(1);
    }
    let (_, response) = net.send(&r.url, &stale).await;
    assert_eq!(error_code(&response), Some(6), "expired session");

    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"bad_ring_signature\",rpc_type=\"jsonrpc\",service_id=\"anvil\"}"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_timeout_and_5xx() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let slow = net.header("slow").await;
    // Signed before the clock starts: only the relayer's answer is timed.
    let request = net.request(&slow, &net.ours.1, Net::rpc(1));
    let started = Instant::now();
    let (status, response) = net.send(&r.url, &request).await;
    assert_eq!((status, error_code(&response)), (504, Some(13)), "backend timeout");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // A 5xx is the backend's answer: signed and passed through, but not mined.
    let broken = net.header("broken").await;
    let (status, response) = net.send(&r.url, &net.request(&broken, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(status, 200);
    assert_eq!(served_status(&net, &response), 500);
    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_skipped_5xx_total{service_id=\"broken\"}"
        ),
        1
    );
    // Neither relay consumed the app's budget.
    assert_nothing_consumed(&net, &r, &[&slow, &broken]).await;
}

/// §2.6 rule 5 holds when the backend answers, not only when the relay arrived: a relay validated in the grace
/// period whose answer comes back after the claim window opened is refused (the claim may already be built
/// without it), not recorded, and its compute units go back to the meter. Here with `claim_delay_blocks: 0`: the
/// miner may send the claim as soon as the window opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_answered_after_the_claim_window_opened_is_refused_and_not_recorded() {
    let net = Net::new(1_000_000_000).await;
    let mut config = net.config.clone();
    config.transaction.claim_delay_blocks = 0;
    let r = net.relayer_with(&config).await;
    let header = net.header("gated").await;
    let params = net.chain.state().shared.clone();
    let windows =
        relay_miner::protocol::session::SessionWindows::new(&params, header.session_end_block_height).unwrap();
    // Into the grace period: still accepted.
    net.advance((windows.grace_period_end - net.chain.height()).max(0) as usize);
    assert!(net.chain.height() > header.session_end_block_height && net.chain.height() < windows.claim_open);
    let request = net.request(&header, &net.ours.1, Net::rpc(1));
    let in_flight = {
        let url = r.url.clone();
        let body = relay::encode_relay_request(&request);
        let http = net.http.clone();
        tokio::spawn(async move { post(&http, &url, body).await })
    };
    tokio::time::timeout(Duration::from_secs(10), net.gate.arrived.notified())
        .await
        .expect("the relay reached the backend");
    // The claim window opens while the backend works on it.
    net.advance((windows.claim_open - net.chain.height()) as usize);
    net.gate.release.add_permits(1);
    let (status, response) = in_flight.await.unwrap();
    assert_eq!(error_code(&response), Some(6), "session_expired: {status} {response:?}");
    assert!(
        response.payload.is_empty(),
        "no signed answer for a relay that earns nothing"
    );
    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"session_expired\",rpc_type=\"jsonrpc\",service_id=\"gated\"}"
        ),
        1
    );
    assert_nothing_consumed(&net, &r, &[&header]).await;
}

/// PATH and shannon-sdk put the supplier's public URL in `POKTHTTPRequest.url` (Go's `URL.String()`); only its
/// path and query reach the backend, joined onto the backend URL's own path and query (poktroll's rules).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_relay_url_reaches_the_backend_as_its_path_and_query() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        serve(axum::Router::new().fallback(move |uri: http::Uri| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(uri.to_string());
                r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#
            }
        }))
        .await
    };
    let mut net = Net::new(1_000_000_000).await;
    let backend = net
        .config
        .services
        .get_mut("anvil")
        .unwrap()
        .backends
        .get_mut("jsonrpc")
        .unwrap();
    backend.url = format!("{recorder}/v2/KEY?apikey=s3cret");
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let ring = [net.app.2, net.gateway.2];
    for (url, want) in [
        (
            "https://relayminer.example.com/v1/rest?x=1",
            "/v2/KEY/v1/rest?apikey=s3cret&x=1",
        ),
        ("https://relayminer.example.com", "/v2/KEY?apikey=s3cret"),
        ("/", "/v2/KEY?apikey=s3cret"),
    ] {
        let request =
            relay_miner::loadgen::signed_relay_request(&header, &net.ours.1, url, Net::rpc(1), &net.gateway.0, &ring)
                .unwrap();
        let (status, response) = net.send(&r.url, &request).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(served_status(&net, &response), 200, "{url}");
        assert_eq!(seen.lock().unwrap().pop().as_deref(), Some(want), "{url}");
    }
    assert_eq!(net.recorded().await, 3);
}

/// `relay_server.max_body_bytes_in_flight` bounds the request bodies buffered at once: while one relay holds
/// most of the budget, another that cannot reserve its body within `body_budget_wait_ms` is refused as
/// `overloaded` (17, 503) and counted; once the first is answered, relays are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_beyond_the_in_flight_budget_are_refused_as_overloaded() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_server.max_body_bytes_in_flight = 65_536;
    net.config.relay_server.body_budget_wait_ms = 50;
    assert_eq!(net.config.validate(), vec![]);
    let r = net.relayer().await;
    let header = net.header("gated").await;
    let big = |id| {
        let mut body = Net::rpc(id);
        body.resize(40_000, b' ');
        relay::encode_relay_request(&net.request(&header, &net.ours.1, body))
    };
    let held = {
        let (http, url, body) = (net.http.clone(), r.url.clone(), big(1));
        tokio::spawn(async move { post(&http, &url, body).await })
    };
    net.gate.arrived.notified().await;
    let (status, response) = net.post(&r.url, big(2)).await;
    assert_eq!(
        (status, error_code(&response)),
        (503, Some(17)),
        "{:?}",
        response.relay_miner_error
    );
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"overloaded\",rpc_type=\"jsonrpc\",service_id=\"\"}"
        ),
        1
    );
    net.gate.release.add_permits(2);
    assert_eq!(held.await.unwrap().0, 200);
    let (status, _) = net.post(&r.url, big(3)).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&r.telemetry, "ha_relayer_request_body_bytes_in_flight"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_and_response_are_refused() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let big_request = vec![b' '; 100_000];
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, big_request)).await;
    assert_eq!((status, error_code(&response)), (413, Some(11)), "oversized request");

    let big_answer = br#"{"jsonrpc":"2.0","id":1,"method":"big","params":[200000]}"#.to_vec();
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, big_answer)).await;
    assert_eq!((status, error_code(&response)), (502, Some(12)), "oversized response");
    assert_eq!(net.recorded().await, 0);

    // The relayer still serves normally afterwards.
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(3))).await;
    assert_eq!(status, 200);
    assert_eq!(net.recorded().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_refuses_over_service_and_is_shared_between_relayers() {
    // Stake 11,440 uPOKT shared by 2 suppliers → 5,720 each, paying 4 pending sessions at once (4-block sessions,
    // 9 blocks from session end to proof window close: ceil(9 / 4) + the current one) → 1,430 per session, which
    // settles for at most 1,300 (the global inflation 0.1 counted against it); 42 uPOKT per compute unit (42e6 / 1e6)
    // → 30 compute units → 3 relays of 10 compute units per supplier and session.
    let net = Net::new(11_440).await;
    let a = net.relayer().await;
    let b = net.relayer().await;
    let header = net.header("anvil").await;
    let key = MeterKey {
        session_id: header.session_id.clone(),
        supplier: net.ours.1.clone(),
    };
    let storage_key = relay_miner::relayer::meter::storage_key(&key);
    for id in 0..2 {
        let (status, _) = net.send(&a.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!(status, 200);
    }
    eventually("relayer A to sync its consumption", || async {
        net.storage.kv.get(&storage_key).await.unwrap() == Some(b"20".to_vec())
    })
    .await;
    // B starts from the shared total: one more relay fits, the next is refused.
    let (status, _) = net.send(&b.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(status, 200);
    let (status, response) = net.send(&b.url, &net.request(&header, &net.ours.1, Net::rpc(3))).await;
    assert_eq!((status, error_code(&response)), (429, Some(10)), "over-serviced");
    // A learns B's consumption at its next sync and refuses too.
    eventually("relayer A to see B's consumption", || async {
        a.relayer.meter().unwrap().exhausted(&key, 10)
    })
    .await;
    let (status, response) = net.send(&a.url, &net.request(&header, &net.ours.1, Net::rpc(4))).await;
    assert_eq!((status, error_code(&response)), (429, Some(10)));
    assert_eq!(net.recorded().await, 3);
    assert_eq!(
        metric(
            &b.telemetry,
            "ha_relayer_relay_meter_consumptions_total{result=\"over_serviced\",service_id=\"anvil\"}"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_ack_relays_are_appended_in_the_background() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_log.durable_ack = false;
    net.config.relay_log.max_batch_delay_ms = 1;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    for id in 0..5 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!(status, 200);
        assert_eq!(served_status(&net, &response), 200);
    }
    eventually("the relays to be appended", || async { net.recorded().await == 5 }).await;
}

/// A gateway that disconnects while the backend works makes hyper drop the relay's handler: the compute units the
/// eager path charged before calling the backend go back to the meter (a charge not committed refunds itself when
/// dropped), or later paid relays of the session would be refused as over-serviced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_disconnecting_while_the_backend_works_is_not_charged() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("gated").await;
    let body = relay::encode_relay_request(&net.request(&header, &net.ours.1, Net::rpc(1)));
    let gateway = post_raw(&r.url, &body).await;
    // The relay was validated and charged: it waits on the backend.
    tokio::time::timeout(Duration::from_secs(10), net.gate.arrived.notified())
        .await
        .expect("the relay reached the backend");
    drop(gateway);
    let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
    let meter = r.relayer.meter().unwrap();
    eventually("the abandoned relay's charge to be refunded", || async {
        meter.sync().await;
        let consumed = net.storage.kv.get(&key).await.unwrap().unwrap_or_default();
        consumed.is_empty() || consumed == b"0"
    })
    .await;
    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relay_meter_consumptions_total{result=\"refunded\",service_id=\"gated\"}"
        ),
        1,
        "the abandoned charge's refund is counted"
    );
}

/// Waits for the first 100 ms of a wall-clock second. The backend's answer carries an HTTP `Date` header (whole
/// seconds): sends of the same request starting then cannot have a second boundary between them make the answer,
/// and the relay, another one.
async fn early_in_a_second() {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis()
        > 100
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `request` three more times (its first answer was `first`): each answered alike, none appended or charged
/// again (one relay recorded, one relay's compute units in the meter, three duplicates dropped).
async fn assert_repeats_not_charged(
    net: &Net,
    r: &Running,
    header: &SessionHeader,
    request: &RelayRequest,
    first: &RelayResponse,
) {
    for _ in 0..3 {
        let (status, again) = net.send(&r.url, request).await;
        assert_eq!(status, 200);
        assert_eq!(&again, first, "the same signed answer");
    }
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_dropped_total{reason=\"duplicate\",service_id=\"anvil\"}"
        ),
        3
    );
    assert_eq!(net.recorded().await, 1);
    r.relayer.meter().unwrap().sync().await;
    let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
    assert_eq!(
        net.storage.kv.get(&key).await.unwrap(),
        Some(b"10".to_vec()),
        "one relay's compute units"
    );
}

/// Without durable ack too, the same relay again is neither appended nor charged again once its batch is appended
/// (its hash is recorded in `relayer::recent` when the batch lands). Before, a relay queued without durable ack was
/// never recorded: every repeat was appended and charged, the trie held it once (paid once), and the meter's
/// over-count refused later relays the chain would have paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_ack_the_same_relay_again_is_not_charged_again() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_log.durable_ack = false;
    net.config.relay_log.max_batch_delay_ms = 1;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let request = net.request(&header, &net.ours.1, Net::rpc(7));
    early_in_a_second().await;
    let (status, first) = net.send(&r.url, &request).await;
    assert_eq!((status, served_status(&net, &first)), (200, 200));
    // The batch is counted once its relays are settled (hashes recorded, charges kept).
    eventually("the first relay's batch", || async {
        metric(&r.telemetry, "ha_relayer_relay_log_batch_size_count") == 1
    })
    .await;
    assert_repeats_not_charged(&net, &r, &header, &request, &first).await;
    assert_eq!(metric(&r.telemetry, "ha_relayer_relay_log_batch_size_count"), 1);
}

/// The very same relay again (a gateway replaying a signed request; the backend answering alike, the supplier's
/// signature deterministic): answered again, but neither appended nor charged again, since the session's trie holds
/// it once and the chain pays it once (module `relayer::recent`). Before, each repeat spent the application's budget
/// in the meter for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_relay_again_is_answered_but_neither_appended_nor_charged_again() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let request = net.request(&header, &net.ours.1, Net::rpc(7));
    early_in_a_second().await;
    let (status, first) = net.send(&r.url, &request).await;
    assert_eq!((status, served_status(&net, &first)), (200, 200));
    assert_repeats_not_charged(&net, &r, &header, &request, &first).await;
    // Another relay of the session is appended as usual.
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(7))).await;
    assert_eq!(status, 200);
    assert_eq!(net.recorded().await, 2);
}
