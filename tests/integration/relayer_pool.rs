//! Backend pools over real sockets (modules `relayer::pool`, `relayer::health`): a backend listing several URLs
//! (`urls`) spreads relays over them; an endpoint that breaks connections or answers 5xx is retried on the other
//! and taken out by the circuit breaker, which alone never refuses a relay (every endpoint out: still tried); an
//! active health check takes an endpoint out (every one out: a relay fails fast as `backend_unavailable` without
//! the backend, the relay log or the meter) and brings it back; `authentication` and `base_path` reach the backend. The simulator chain, redb and the `anvil` service of
//! [`Net`] with its backends replaced.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message as _;
use relay_miner::config::BackendConfig;
use relay_miner::protocol::wire::PoktHttpResponse;

use crate::relayer::{Net, Running, error_code, eventually, metric, serve, served_status};

/// The path and `Authorization` of each request a [`Counting`] backend got.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A JSON-RPC backend answering `status`, counting its requests and recording each one's path and
/// `Authorization`.
struct Counting {
    url: String,
    hits: Arc<AtomicUsize>,
    seen: Seen,
    /// `/health` answers 200 while set, 503 otherwise.
    healthy: Arc<AtomicBool>,
}

impl Counting {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn counting(status: u16) -> Counting {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let healthy = Arc::new(AtomicBool::new(true));
    let (h, s, up) = (Arc::clone(&hits), Arc::clone(&seen), Arc::clone(&healthy));
    let router = axum::Router::new().fallback(move |uri: http::Uri, headers: http::HeaderMap| {
        let (h, s, up) = (Arc::clone(&h), Arc::clone(&s), Arc::clone(&up));
        async move {
            if uri.path() == "/health" {
                let code = if up.load(Ordering::SeqCst) { 200 } else { 503 };
                return (http::StatusCode::from_u16(code).unwrap(), "health".to_string());
            }
            h.fetch_add(1, Ordering::SeqCst);
            let auth = headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_string());
            s.lock().unwrap().push((uri.to_string(), auth));
            (
                http::StatusCode::from_u16(status).unwrap(),
                r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#.to_string(),
            )
        }
    });
    Counting {
        url: serve(router).await,
        hits,
        seen,
        healthy,
    }
}

/// A backend that accepts connections and closes them at once (a broken node); its URL and the connections it
/// accepted.
async fn dropping() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{addr}"), accepted)
}

/// A relayer of this net whose `anvil` service's only backend is `jsonrpc` as `backend_yaml` says.
async fn relayer_with_backend(net: &Net, backend_yaml: &str) -> Running {
    relayer_with_backends(net, &[("jsonrpc", backend_yaml)]).await
}

/// A relayer of this net whose `anvil` service has the backends `(kind, yaml)`.
async fn relayer_with_backends(net: &Net, backends: &[(&str, &str)]) -> Running {
    let mut config = net.config.clone();
    let anvil = config.services.get_mut("anvil").unwrap();
    anvil.backends = backends
        .iter()
        .map(|(kind, yaml)| (kind.to_string(), serde_norway::from_str::<BackendConfig>(yaml).unwrap()))
        .collect();
    assert_eq!(config.validate(), vec![]);
    net.relayer_with(&config).await
}

/// Sends `n` relays to `anvil`, each expected served 200 (signed) and mined.
async fn served(net: &Net, r: &Running, n: u64) {
    let header = net.header("anvil").await;
    for id in 0..n {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!(status, 200, "{response:?}");
        assert_eq!(served_status(net, &response), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_are_spread_over_the_pool_round_robin() {
    let net = Net::new(1_000_000_000).await;
    let (a, b) = (counting(200).await, counting(200).await);
    // Go's mixed form: a plain URL and a named one.
    let yaml = format!("urls:\n  - {}\n  - {{name: second, url: \"{}\"}}\n", a.url, b.url);
    let r = relayer_with_backend(&net, &yaml).await;
    served(&net, &r, 6).await;
    assert_eq!((a.hits(), b.hits()), (3, 3));
    assert_eq!(net.recorded().await, 6);
    for name in [a.url.trim_start_matches("http://"), "second"] {
        let line = format!("ha_relayer_backend_health_status{{endpoint=\"{name}\",service_id=\"anvil\"}}");
        assert_eq!(metric(&r.telemetry, &line), 1, "{line}");
    }
}

/// A node that breaks every connection: each relay sent there is retried on the other node, served and mined;
/// after `unhealthy_threshold` failures the breaker takes it out and later relays never try it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_endpoint_is_retried_elsewhere_and_taken_out() {
    let net = Net::new(1_000_000_000).await;
    let (dead, accepted) = dropping().await;
    let alive = counting(200).await;
    let yaml = format!(
        "urls: [{{name: dead, url: \"{dead}\"}}, {{name: alive, url: \"{}\"}}]\nrecovery_timeout_seconds: 0\nhealth_check: {{unhealthy_threshold: 2}}\n",
        alive.url
    );
    let r = relayer_with_backend(&net, &yaml).await;
    served(&net, &r, 10).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "tried until the breaker took it out, never after"
    );
    assert_eq!(alive.hits(), 10);
    assert_eq!(net.recorded().await, 10, "every relay mined");
    let health = "ha_relayer_backend_health_status{endpoint=\"dead\",service_id=\"anvil\"}";
    assert!(r.telemetry.render_metrics().contains(&format!("{health} 0")));
}

/// A 5xx from the first endpoint (first_healthy) is retried on the second: the gateway gets its 200, mined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_on_the_other_endpoint() {
    let net = Net::new(1_000_000_000).await;
    let (broken, good) = (counting(500).await, counting(200).await);
    let yaml = format!(
        "urls: [\"{}\", \"{}\"]\nload_balancing: first_healthy\nmax_retries: 1\n",
        broken.url, good.url
    );
    let r = relayer_with_backend(&net, &yaml).await;
    served(&net, &r, 2).await;
    assert_eq!((broken.hits(), good.hits()), (2, 2));
    assert_eq!(net.recorded().await, 2);
}

/// Every endpoint out by the circuit breaker alone (no health checks): relays are still tried (fail-open, module
/// `relayer::pool`), never refused for it, so a node back up serves the next relay and earns; a burst of 5xx an
/// application's requests cause cannot black a service out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_endpoint_out_by_the_breaker_relays_are_still_tried() {
    let net = Net::new(1_000_000_000).await;
    let ((one, a), (two, b)) = (dropping().await, dropping().await);
    let yaml = format!(
        "urls: [\"{one}\", \"{two}\"]\nrecovery_timeout_seconds: 0\nhealth_check: {{unhealthy_threshold: 1}}\n"
    );
    let r = relayer_with_backend(&net, &yaml).await;
    let header = net.header("anvil").await;
    // The first relay tries both (attempt and retry), which takes both out.
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, error_code(&response)), (502, Some(8)), "backend_error");
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 1));
    let health = |name: &str| format!("ha_relayer_backend_health_status{{endpoint=\"{name}\",service_id=\"anvil\"}} 0");
    let text = r.telemetry.render_metrics();
    assert!(text.contains(&health(one.trim_start_matches("http://"))), "{text}");
    assert!(text.contains(&health(two.trim_start_matches("http://"))), "{text}");
    for id in 2..5 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!((status, error_code(&response)), (502, Some(8)), "tried, not refused");
    }
    assert_eq!(
        a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst),
        2 + 3 * 2,
        "each relay tried both"
    );
    assert_eq!(net.recorded().await, 0);
    assert_eq!(
        metric(&r.telemetry, "ha_relayer_fast_fails_total{service_id=\"anvil\"}"),
        0
    );
}

/// An active health check (`/health` toggled 200/503, every second) takes the endpoint out, relays fail fast
/// meanwhile, and brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_an_endpoint_out_and_bring_it_back() {
    let net = Net::new(1_000_000_000).await;
    let node = counting(200).await;
    let yaml = format!(
        "urls: [{{name: node, url: \"{}\"}}]\nrecovery_timeout_seconds: 0\nhealth_check:\n  enabled: true\n  endpoint: /health\n  interval_seconds: 1\n  unhealthy_threshold: 1\n  healthy_threshold: 1\n",
        node.url
    );
    let r = relayer_with_backend(&net, &yaml).await;
    let health = "ha_relayer_backend_health_status{endpoint=\"node\",service_id=\"anvil\"}";
    served(&net, &r, 1).await;
    node.healthy.store(false, Ordering::SeqCst);
    eventually("the probe took the endpoint out", || async {
        r.telemetry.render_metrics().contains(&format!("{health} 0"))
    })
    .await;
    let header = net.header("anvil").await;
    let validated = "ha_relayer_validation_latency_seconds_count{mode=\"eager\",service_id=\"anvil\"}";
    let before = (metric(&r.telemetry, validated), net.recorded().await);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(9))).await;
    assert_eq!((status, error_code(&response)), (503, Some(20)), "backend_unavailable");
    assert_eq!(node.hits(), 1);
    // Refused before any work: not validated (its ring signature), nothing recorded, the fast fail counted.
    assert_eq!((metric(&r.telemetry, validated), net.recorded().await), before);
    assert_eq!(
        metric(&r.telemetry, "ha_relayer_fast_fails_total{service_id=\"anvil\"}"),
        1
    );
    let rejected =
        "ha_relayer_relays_rejected_total{reason=\"backend_unavailable\",rpc_type=\"jsonrpc\",service_id=\"anvil\"}";
    assert_eq!(metric(&r.telemetry, rejected), 1);
    node.healthy.store(true, Ordering::SeqCst);
    eventually("the probe brought the endpoint back", || async {
        r.telemetry.render_metrics().contains(&format!("{health} 1"))
    })
    .await;
    served(&net, &r, 1).await;
    assert_eq!(node.hits(), 2);
    assert!(
        metric(
            &r.telemetry,
            "ha_relayer_health_check_failures_total{endpoint=\"node\",service_id=\"anvil\"}"
        ) >= 1
    );
    assert!(
        metric(
            &r.telemetry,
            "ha_relayer_health_check_successes_total{endpoint=\"node\",service_id=\"anvil\"}"
        ) >= 1
    );
}

/// `authentication` replaces the gateway's `Authorization`; `base_path` prefixes relay paths not already under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_base_path_reach_the_backend() {
    let net = Net::new(1_000_000_000).await;
    let node = counting(200).await;
    let yaml = format!(
        "url: \"{}/ignored\"\nbase_path: /api\nauthentication: {{bearer_token: s3cret}}\n",
        node.url
    );
    let r = relayer_with_backend(&net, &yaml).await;
    let header = net.header("anvil").await;
    let ring = [net.app.2, net.gateway.2];
    for path in ["/", "/v1", "/api/v2"] {
        let request =
            relay_miner::loadgen::signed_relay_request(&header, &net.ours.1, path, Net::rpc(1), &net.gateway.0, &ring)
                .unwrap();
        let (status, response) = net.send(&r.url, &request).await;
        assert_eq!(status, 200);
        let answer = PoktHttpResponse::decode(response.payload.as_slice()).unwrap();
        assert_eq!(answer.status_code, 200);
    }
    let seen = node.seen.lock().unwrap().clone();
    let bearer = Some("Bearer s3cret".to_string());
    assert_eq!(
        seen,
        [
            ("/api".to_string(), bearer.clone()),
            ("/api/v1".to_string(), bearer.clone()),
            ("/api/v2".to_string(), bearer),
        ]
    );
}

/// A WebSocket relay connects to the first endpoint in service and, when its connection is refused, to the next:
/// the relay is served, and the refusing endpoint is counted by its breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_relays_connect_to_the_next_endpoint_when_one_refuses() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let net = Net::new(1_000_000_000).await;
    let demo = relay_miner::sim::backend::DemoBackend::spawn(relay_miner::sim::backend::BackendConfig::default())
        .await
        .unwrap();
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let http = format!("url: \"{}\"\n", demo.http_url());
    let ws = format!(
        "urls: [{{name: closed, url: \"ws://{closed}\"}}, {{name: demo, url: \"{}\"}}]\nload_balancing: first_healthy\nhealth_check: {{unhealthy_threshold: 1}}\n",
        demo.ws_url()
    );
    let r = relayer_with_backends(&net, &[("jsonrpc", &http), ("websocket", &ws)]).await;
    let mut request = r.url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("target-service-id", http::HeaderValue::from_static("anvil"));
    let (mut gateway, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let header = net.header("anvil").await;
    let ring = [net.app.2, net.gateway.2];
    let relay_request = relay_miner::loadgen::signed_relay_request_with_payload(
        &header,
        &net.ours.1,
        br#"{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber","params":[]}"#.to_vec(),
        &net.gateway.0,
        &ring,
    )
    .unwrap();
    let bytes = relay_miner::protocol::relay::encode_relay_request(&relay_request);
    gateway.send(Message::binary(bytes)).await.unwrap();
    let response = loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), gateway.next())
            .await
            .expect("an answer within 5 s")
            .expect("the connection stays open")
            .unwrap();
        if let Message::Binary(bytes) = message {
            break relay_miner::protocol::relay::decode_relay_response(
                &bytes,
                relay_miner::protocol::relay::MAX_RELAY_MESSAGE_BYTES,
            )
            .unwrap();
        }
    };
    assert!(response.relay_miner_error.is_none(), "{:?}", response.relay_miner_error);
    let answer: serde_json::Value = serde_json::from_slice(&response.payload).unwrap();
    assert_eq!(answer["id"], 7, "{answer}");
    let health = "ha_relayer_backend_health_status{endpoint=\"closed\",service_id=\"anvil\"}";
    assert!(r.telemetry.render_metrics().contains(&format!("{health} 0")));
}
