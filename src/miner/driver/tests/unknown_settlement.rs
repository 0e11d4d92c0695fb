//! A session decided "no proof required" whose settlement the chain cannot tell is not pruned as paid because
//! lookups were *asked*: they are asked again at every block, and once the wait is over the session ends with
//! its settlement unknown, counted as such (`ha_miner_settlement_unknown_total`), neither paid nor lost. The
//! CometBFT node here is unreachable, or a fake one (a real socket) that answers every `block_results` as a
//! pruning node does, or with a block holding no event of the claim.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::miner::driver::MinerError;
use crate::miner::lifecycle::{SETTLED_LOOKUP_BLOCKS, SETTLEMENT_WAIT_BLOCKS, Schedule, State};

/// How the CometBFT node answers `block_results`.
#[derive(Clone, Copy)]
enum Node {
    /// Nothing listens on its address (a transport error).
    Unreachable,
    /// "height H is not available" (a node that pruned the block's results).
    Pruned,
    /// The block, with no event at all.
    NoEvents,
}

/// A client of a CometBFT RPC answering as `node` does.
async fn comet(node: Node) -> crate::chain::comet::CometClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    match node {
        Node::Unreachable => drop(listener),
        Node::Pruned | Node::NoEvents => {
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let body = read_request_body(&mut socket).await;
                        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let height = request["params"]["height"].as_str().unwrap_or("1").to_owned();
                        let answer = match node {
                            Node::Pruned => serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "error": {
                                "code": -32603, "message": "Internal error",
                                "data": format!("height {height} is not available, lowest height is 100000")}}),
                            _ => serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": {
                                "height": height, "finalize_block_events": null}}),
                        }
                        .to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: \
                             close\r\n\r\n{answer}",
                            answer.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    });
                }
            });
        }
    }
    crate::chain::comet::CometClient::new(&url).unwrap()
}

/// The body of one HTTP/1.1 request with a `content-length`.
async fn read_request_body(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return data[end + 4..end + 4 + length].to_vec();
            }
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Steps `miner` and produces a block until the chain is at `height`; a step may only fail for the CometBFT
/// node (the first blocks past the settlement fail the lookup: module `lookup`).
async fn run_to(f: &Fixture, miner: &mut Miner, height: i64) {
    while f.chain.height() < height {
        f.chain.produce_block();
        if let Err(e) = miner.step().await {
            assert!(matches!(e, MinerError::Comet(_)), "{e}");
        }
    }
}

/// A leader miner whose session was decided "no proof required" (the test genesis), reading settlements from
/// `node`, run to the claim window's open.
async fn decided_not_required(node: Node) -> (Fixture, Miner, storage::Storage, crate::telemetry::Telemetry, Schedule) {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_settlements_from(comet(node).await)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    (f, miner, plain, telemetry, schedule)
}

/// The session pruned with its settlement unknown, counted once, nothing counted lost.
async fn assert_ended_unknown(f: &Fixture, miner: &Miner, plain: &storage::Storage, text: &str) {
    assert!(miner.engine.session(&f.key).is_none(), "pruned once given up");
    let tombstone = assert_session_pruned(plain, &f.supplier, &f.key.session_id).await;
    assert!(
        tombstone.settlement_unknown && tombstone.state == State::Settled,
        "{tombstone:?}"
    );
    assert_eq!(
        super::settled::series(text, "ha_miner_settlement_unknown_total", &["service_id=\"anvil\""]),
        Some(1),
        "{text}"
    );
    assert_eq!(
        miner
            .stats
            .settlements_unknown
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ha_miner_") && l.contains("_lost_total") && !l.ends_with(" 0")),
        "nothing counted lost: {text}"
    );
}

/// Not pruned while the settlement block cannot be read (before: pruned as paid [`SETTLED_LOOKUP_BLOCKS`] past
/// the settlement), then given up as unknown once the wait is over.
async fn unreadable_settlement_ends_unknown(node: Node) {
    let (f, mut miner, plain, telemetry, schedule) = decided_not_required(node).await;
    run_to(&f, &mut miner, schedule.settlement + SETTLED_LOOKUP_BLOCKS + 3).await;
    let record = miner
        .engine
        .session(&f.key)
        .expect("not pruned while the settlement is not read");
    assert_eq!((record.state, record.proof_required), (State::Settled, Some(false)));
    assert!(!record.settlement_seen && !record.pruned, "{record:?}");
    assert!(i64::from(record.settlement_lookups) >= SETTLED_LOOKUP_BLOCKS);
    run_to(&f, &mut miner, schedule.settlement + SETTLEMENT_WAIT_BLOCKS + 2).await;
    assert_ended_unknown(&f, &miner, &plain, &telemetry.render_metrics()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_behind_an_unreachable_node_ends_unknown_not_paid() {
    unreadable_settlement_ends_unknown(Node::Unreachable).await;
}

/// A node refusing the settlement block itself (its block results pruned): not judged paid without its events,
/// and given up as unknown once its refusals' budget passed (`SETTLEMENT_READ_BLOCKS`; asking again reads the same
/// refusal), not after the 100-block wait for a node that may still come to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_whose_block_results_are_pruned_ends_unknown_not_paid() {
    let read_blocks = super::super::lookup::SETTLEMENT_READ_BLOCKS;
    let (f, mut miner, plain, telemetry, schedule) = decided_not_required(Node::Pruned).await;
    run_to(&f, &mut miner, schedule.settlement + read_blocks).await;
    let record = miner
        .engine
        .session(&f.key)
        .expect("not given up within the read budget");
    assert!(!record.settlement_seen && !record.pruned, "{record:?}");
    run_to(&f, &mut miner, schedule.settlement + read_blocks + 4).await;
    assert_ended_unknown(&f, &miner, &plain, &telemetry.render_metrics()).await;
}

/// The settlement block read holds no event of the claim: given up as unknown at the first lookup past the
/// settlement (asking again reads the same block). Before, the claim gone was taken as paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_block_without_the_claims_event_ends_unknown_not_paid() {
    let (f, mut miner, plain, telemetry, schedule) = decided_not_required(Node::NoEvents).await;
    run_to(&f, &mut miner, schedule.settlement + 2).await;
    assert_ended_unknown(&f, &miner, &plain, &telemetry.render_metrics()).await;
}

/// Without a CometBFT client nothing tells what the chain's settlement did: the claim gone past the settlement
/// ends the session with its settlement unknown at the first lookup past it, not as paid (before: taken as paid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_comet_client_a_claim_gone_ends_unknown_not_paid() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    run_to(&f, &mut miner, schedule.settlement + 2).await;
    assert_ended_unknown(&f, &miner, &plain, &telemetry.render_metrics()).await;
}
