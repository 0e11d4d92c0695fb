//! Harness shared by the tests that run the real binary as child processes (`miner_process`, `raft_chaos`,
//! `raft_partition`, `raft_full_disk`, `redis_ha`, the throughput bench): ports, HTTP probes, metrics parsing, the simulator environment and
//! the node processes, the load, the submitter monitor, a fault-injecting TCP proxy, a gated backend and the money
//! assertions
//! (every served relay claimed, each session claimed and proven once, zero rejections, everything settles).

pub mod claims;
pub mod cluster;
pub mod gate;
pub mod load;
pub mod monitor;
pub mod node;
mod ports;
pub mod settled;
pub mod sock_diag;
pub mod tcp_proxy;
pub mod traffic;

pub use ports::free_port;

use std::time::{Duration, Instant};

use relay_miner::cli::LocalnetArgs;
use relay_miner::sim::chain::SimChain;

/// The demo network every process test starts from: 2 apps, 1 gateway, 2 suppliers, one session of load.
pub fn demo_args(block_time_ms: u64, proof_probability: f64) -> LocalnetArgs {
    LocalnetArgs {
        sessions: 1,
        rate: 1,
        apps: 2,
        gateways: 1,
        suppliers: 2,
        block_time_ms,
        proof_probability,
        grpc_share: 0.25,
        data_dir: None,
        keep_running: false,
    }
}

/// Block time of the raft process tests (`RAFT_CHAOS_BLOCK_MS`, default 2 s: windows are 5 blocks and the
/// leading miner must keep up with the chain within them).
pub fn raft_block_ms() -> u64 {
    std::env::var("RAFT_CHAOS_BLOCK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Per-node `/metrics` of a raft cluster after a run: no node lost revenue, and every node timed its raft writes.
pub fn assert_nodes_lost_nothing(metrics: &std::collections::BTreeMap<u64, String>) {
    for (id, text) in metrics {
        assert_eq!(
            metric_sum(text, "ha_miner_upokt_lost_total", &[]),
            0.0,
            "node {id} lost revenue"
        );
        assert!(
            metric_sum(text, "ha_raft_append_latency_seconds_count", &[]) > 0.0,
            "node {id} exported no raft write latency"
        );
    }
}

/// Prints each node's miner error and loss series (non-zero samples of `ha_miner_claim_errors_total`,
/// `ha_miner_proof_errors_total`, `ha_miner_relays_lost_total`, `ha_miner_sessions_failed_total`): printed before
/// the money assertions, so a failing run says whether its miners refused, were deposed, missed a deadline or
/// found another root on chain.
pub fn print_miner_errors(metrics: &std::collections::BTreeMap<u64, String>) {
    const SERIES: [&str; 4] = [
        "ha_miner_claim_errors_total",
        "ha_miner_proof_errors_total",
        "ha_miner_relays_lost_total",
        "ha_miner_sessions_failed_total",
    ];
    for (id, text) in metrics {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| SERIES.iter().any(|s| l.starts_with(&format!("{s}{{"))))
            .filter(|l| l.rsplit(' ').next() != Some("0"))
            .collect();
        println!("node {id} miner errors and losses: {lines:#?}");
    }
}

/// Serves `router` on a free 127.0.0.1 port; returns its `http://` URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// GET `url`: the status and body, `None` when there is no answer within 2 s.
pub async fn http_get_status(url: &str) -> Option<(u16, String)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let fut = async {
        let response = client.get(url.parse().ok()?).await.ok()?;
        let status = response.status().as_u16();
        use http_body_util::BodyExt as _;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.ok().flatten()
}

/// GET `url`: the body, `None` when there is no answer within 2 s.
pub async fn http_get(url: &str) -> Option<String> {
    http_get_status(url).await.map(|(_, body)| body)
}

/// A `/metrics` text the test asserts on: GETs `url` until it answers (up to 30 s), so that one request left
/// unanswered for 2 s on a loaded machine is not read as an empty text (where a counter asserted `0` passes
/// without being read, and one asserted `> 0` fails).
pub async fn scrape(url: &str) -> String {
    poll(&format!("{url} answers"), Duration::from_secs(30), || http_get(url)).await
}

/// Sum of a metric's samples whose label set contains every `labels` pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Claims plus proofs a node's miner broadcast (its `/metrics` text): first sends and re-sends (counted apart,
/// the re-sends whatever their outcome).
pub fn submitted(metrics: &str) -> f64 {
    metric_sum(metrics, "ha_miner_claims_submitted_total", &[])
        + metric_sum(metrics, "ha_miner_proofs_submitted_total", &[])
        + metric_sum(metrics, "ha_miner_claim_rebroadcasts_total", &[])
        + metric_sum(metrics, "ha_miner_proof_rebroadcasts_total", &[])
}

/// Waits until the simulator reaches `height`.
pub async fn wait_height(chain: &SimChain, height: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while chain.height() < height {
        assert!(
            Instant::now() < deadline,
            "chain did not reach height {height} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `probe` every 5 ms until it returns `Some`, failing with `what` after `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Process-level tests take this lock (the cluster tests, and every [`node::start_net`] network for as long as
/// it lives) so that two multi-process tests never share the machine's two cores at once (their timing
/// assertions and failover numbers would measure each other).
pub static CLUSTER_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// min / median / max of `values` (ms), for the printed summaries.
pub fn min_median_max(values: &[u64]) -> (u64, u64, u64) {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return (0, 0, 0);
    }
    (v[0], v[v.len() / 2], v[v.len() - 1])
}
