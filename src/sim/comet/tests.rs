//! The CometBFT boundary end to end over real sockets on 127.0.0.1: `chain::comet` client against this server.
//! Waits are deadlines on events (`recv` with a timeout, or polling a condition), never sleeps as
//! synchronisation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::chain::comet::{BlockStream, BlockTime, CometClient, CometError, SubscribeConfig};

const DEADLINE: Duration = Duration::from_secs(15);

fn chain_with(validator: Arc<dyn TxValidator>, interval_ms: u64, event_capacity: usize) -> Arc<MemoryChain> {
    MemoryChain::new(
        MemoryChainConfig {
            chain_id: "sim-test".into(),
            genesis_time: BlockTime::new(1_700_000_000, 0),
            block_interval: Duration::from_millis(interval_ms),
            max_mempool_txs: 100,
            event_capacity,
        },
        validator,
    )
}

fn chain() -> Arc<MemoryChain> {
    chain_with(Arc::new(AcceptAll), 50, 1024)
}

async fn start(chain: &Arc<MemoryChain>, addr: SocketAddr) -> CometServerHandle {
    let backend: Arc<dyn CometBackend> = chain.clone();
    serve(backend, addr, ServerConfig::default()).await.unwrap()
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn fast_sub(start_after: Option<i64>) -> SubscribeConfig {
    SubscribeConfig {
        start_after,
        channel_capacity: 4,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        poll_interval: Duration::from_millis(20),
        fetch_retry: Duration::from_millis(20),
        ..SubscribeConfig::default()
    }
}

async fn next(stream: &mut BlockStream) -> BlockInfo {
    tokio::time::timeout(DEADLINE, stream.recv())
        .await
        .expect("no block before the deadline")
        .expect("subscription ended")
}

/// Polls `cond` every few ms until it holds or the deadline passes.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receives `from..=to` and checks every height arrives once, in order, with the chain's block.
async fn expect_heights(stream: &mut BlockStream, chain: &MemoryChain, from: i64, to: i64) {
    for h in from..=to {
        let b = next(stream).await;
        assert_eq!(b.height, h, "heights must be consecutive");
        assert_eq!(Some(&b), chain.block(h).as_ref());
    }
}

async fn http_get(url: &str) -> (u16, Value) {
    let client: Client<_, Empty<axum::body::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn status_block_broadcast_tx_round_trip() {
    let rejecting = |_: &BlockInfo, tx: &[u8]| {
        if tx.starts_with(b"bad") {
            Err(TxRejection {
                code: 1105,
                codespace: "proof".into(),
                log: "claim window closed".into(),
            })
        } else {
            Ok(())
        }
    };
    let chain = chain_with(Arc::new(rejecting), 50, 16);
    let server = start(&chain, local()).await;
    let client = CometClient::new(&server.url()).unwrap();

    let s = client.status().await.unwrap();
    assert_eq!(
        (s.latest_block_height, s.latest_block_hash, s.network.as_str()),
        (0, None, "sim-test")
    );

    let b1 = chain.produce_block();
    let b2 = chain.produce_block();
    assert_eq!(b2.hash, MemoryChain::block_hash("sim-test", 2));
    assert_eq!(b2.time, BlockTime::new(1_700_000_000, 50_000_000));
    let s = client.status().await.unwrap();
    assert_eq!(
        (s.latest_block_height, s.latest_block_hash, s.latest_block_time),
        (2, Some(b2.hash), b2.time)
    );
    assert_eq!(client.block(1).await.unwrap(), b1);
    assert_eq!(client.block(2).await.unwrap(), b2);
    assert_eq!(client.latest_block().await.unwrap(), b2);

    let good = client.broadcast_tx_sync(b"claim-1").await.unwrap();
    assert_eq!((good.code, good.hash), (0, crate::protocol::sha256(b"claim-1")));
    let bad = client.broadcast_tx_sync(b"bad-proof").await.unwrap();
    assert_eq!(bad.code, 0, "CheckTx accepts; the rule applies at inclusion");
    // Code 0 means mempool only: not found until a block includes it.
    assert_eq!(client.tx(&good.hash).await.unwrap(), None);
    // A duplicate broadcast is a JSON-RPC error, as on CometBFT.
    let dup = client.broadcast_tx_sync(b"claim-1").await.unwrap_err();
    assert!(
        matches!(&dup, CometError::Rpc { data, .. } if data == "tx already exists in cache"),
        "{dup}"
    );

    let b3 = chain.produce_block();
    let t = client.tx(&good.hash).await.unwrap().unwrap();
    assert_eq!((t.height, t.index, t.code, t.log.as_str()), (3, 0, 0, ""));
    let t = client.tx(&bad.hash).await.unwrap().unwrap();
    assert_eq!((t.height, t.index, t.code), (3, 1, 1105));
    assert_eq!((t.log.as_str(), t.codespace.as_str()), ("claim window closed", "proof"));
    assert_eq!(chain.block_txs(3), vec![b"claim-1".to_vec(), b"bad-proof".to_vec()]);
    assert_eq!(client.block(3).await.unwrap(), b3);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn check_tx_rejection_is_not_kept() {
    struct NoFees;
    impl TxValidator for NoFees {
        fn check_tx(&self, _tx: &[u8]) -> Result<(), TxRejection> {
            Err(TxRejection {
                code: 13,
                codespace: "sdk".into(),
                log: "insufficient fee".into(),
            })
        }
        fn deliver_tx(&self, _: &BlockInfo, _: &[u8]) -> Result<(), TxRejection> {
            Ok(())
        }
    }
    let chain = chain_with(Arc::new(NoFees), 50, 16);
    let server = start(&chain, local()).await;
    let client = CometClient::new(&server.url()).unwrap();
    let r = client.broadcast_tx_sync(b"tx").await.unwrap();
    assert_eq!(
        (r.code, r.codespace.as_str(), r.log.as_str()),
        (13, "sdk", "insufficient fee")
    );
    chain.produce_block();
    assert_eq!(client.tx(&r.hash).await.unwrap(), None);
    assert!(chain.block_txs(1).is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_height_is_a_json_rpc_error() {
    let chain = chain();
    let server = start(&chain, local()).await;
    let client = CometClient::new(&server.url()).unwrap();
    chain.produce_block();
    let e = client.block(5).await.unwrap_err();
    assert!(e.is_height_not_available() && e.is_retryable(), "{e}");
    assert!(
        matches!(&e, CometError::Rpc { code: -32603, data, .. }
            if data == "height 5 must be less than or equal to the current blockchain height 1"),
        "{e}"
    );
    let e = client.block(0).await.unwrap_err();
    assert!(
        matches!(&e, CometError::Rpc { code: -32603, .. }) && !e.is_retryable(),
        "{e}"
    );
    let e = client.call("no_such_method", json!({})).await.unwrap_err();
    assert!(matches!(e, CometError::Rpc { code: -32601, .. }), "{e}");
    let e = client.call("block", json!({"height": [1]})).await.unwrap_err();
    assert!(matches!(e, CometError::Rpc { code: -32602, .. }), "{e}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn uri_get_endpoints_match_cometbft() {
    let chain = chain();
    let server = start(&chain, local()).await;
    let b1 = chain.produce_block();
    let base = server.url();

    let (code, v) = http_get(&format!("{base}/status")).await;
    assert_eq!((code, &v["id"]), (200, &json!(-1)));
    assert_eq!(v["result"]["sync_info"]["latest_block_height"], json!("1"));
    assert_eq!(
        v["result"]["sync_info"]["latest_block_hash"],
        json!(hex::encode_upper(b1.hash))
    );

    let (code, v) = http_get(&format!("{base}/block?height=1")).await;
    assert_eq!(code, 200);
    assert_eq!(v["result"]["block_id"]["hash"], json!(hex::encode_upper(b1.hash)));
    assert_eq!(v["result"]["block"]["header"]["height"], json!("1"));
    assert_eq!(v["result"]["block"]["header"]["time"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(v["result"]["block"]["header"]["chain_id"], json!("sim-test"));
    let (code, v) = http_get(&format!("{base}/block?height=%221%22")).await;
    assert_eq!((code, &v["result"]["block"]["header"]["height"]), (200, &json!("1")));

    let (code, v) = http_get(&format!("{base}/block?height=9")).await;
    assert_eq!(code, 500, "URI errors come with HTTP 500");
    assert_eq!(v["error"]["code"], json!(-32603));
    assert_eq!(v["error"]["message"], json!("Internal error"));

    let (code, v) = http_get(&format!("{base}/broadcast_tx_sync?tx=0x{}", hex::encode(b"uri-tx"))).await;
    assert_eq!((code, &v["result"]["code"]), (200, &json!(0)));
    let hash = crate::protocol::sha256(b"uri-tx");
    assert_eq!(v["result"]["hash"], json!(hex::encode_upper(hash)));
    chain.produce_block();
    let (code, v) = http_get(&format!("{base}/tx?hash=0x{}", hex::encode(hash))).await;
    assert_eq!((code, &v["result"]["height"]), (200, &json!("2")));
    assert_eq!(
        v["result"]["tx_result"],
        json!({}),
        "omitempty: a successful ExecTxResult is empty"
    );
    let (code, v) = http_get(&format!("{base}/tx?hash=0x{}", hex::encode([7u8; 32]))).await;
    assert_eq!(code, 500);
    assert_eq!(
        v["error"]["data"],
        json!(format!("tx ({}) not found", hex::encode_upper([7u8; 32])))
    );
    let (code, _) = http_get(&format!("{base}/nope")).await;
    assert_eq!(code, 404);
    server.shutdown().await.unwrap();
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read_json(ws: &mut RawWs) -> Value {
    loop {
        let m = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str::<Value>(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn raw_websocket_subscribe_and_call() {
    let chain = chain();
    let server = start(&chain, local()).await;
    let url = format!("ws://{}/websocket", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(
        json!({"jsonrpc":"2.0","id":"s1","method":"subscribe","params":{"query":"tm.event='Tx'"}}),
    ))
    .await
    .unwrap();
    let v = read_json(&mut ws).await;
    assert_eq!((&v["id"], &v["error"]["code"]), (&json!("s1"), &json!(-32603)));
    ws.send(send(
        json!({"jsonrpc":"2.0","id":7,"method":"subscribe","params":{"query":"tm.event = 'NewBlock'"}}),
    ))
    .await
    .unwrap();
    assert_eq!(read_json(&mut ws).await, json!({"jsonrpc":"2.0","id":7,"result":{}}));
    let b = chain.produce_block();
    let v = read_json(&mut ws).await;
    assert_eq!(v["id"], json!(7), "events carry the subscribe request's id");
    assert_eq!(v["result"]["query"], json!("tm.event='NewBlock'"));
    assert_eq!(v["result"]["data"]["type"], json!("tendermint/event/NewBlock"));
    assert_eq!(v["result"]["data"]["value"]["block"]["header"]["height"], json!("1"));
    assert_eq!(
        v["result"]["data"]["value"]["block_id"]["hash"],
        json!(hex::encode_upper(b.hash))
    );
    assert_eq!(v["result"]["events"]["tm.event"], json!(["NewBlock"]));
    ws.send(send(json!({"jsonrpc":"2.0","id":8,"method":"status","params":{}})))
        .await
        .unwrap();
    let v = read_json(&mut ws).await;
    assert_eq!(
        (&v["id"], &v["result"]["sync_info"]["latest_block_height"]),
        (&json!(8), &json!("1"))
    );
    ws.send(send(
        json!({"jsonrpc":"2.0","id":9,"method":"unsubscribe_all","params":{}}),
    ))
    .await
    .unwrap();
    assert_eq!(read_json(&mut ws).await["result"], json!({}));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscription_receives_consecutive_heights_from_the_timer() {
    let chain = chain_with(Arc::new(AcceptAll), 20, 1024);
    let server = start(&chain, local()).await;
    let producer = BlockProducer::start(chain.clone());
    let client = CometClient::new(&server.url()).unwrap();
    let mut stream = client.subscribe_blocks(fast_sub(None));
    let first = next(&mut stream).await;
    assert!(first.height >= 1);
    expect_heights(&mut stream, &chain, first.height + 1, first.height + 15).await;
    producer.stop().await;
    let stats = stream.stats().snapshot();
    assert!(stats.ws_connected && stats.ws_events > 0, "{stats:?}");
    assert!(stats.delivered >= 16, "{stats:?}");
    assert!(stats.heartbeat_unix_ms > 0);
    // Times advance by exactly the interval whatever the wall clock did.
    let b = chain.block(first.height + 1).unwrap();
    assert_eq!(
        b.time,
        chain.block(first.height).unwrap().time.plus(Duration::from_millis(20))
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscription_survives_a_server_restart_on_the_same_port() {
    let chain = chain();
    let server = start(&chain, local()).await;
    let addr = server.local_addr();
    let client = CometClient::new(&server.url()).unwrap();
    let mut stream = client.subscribe_blocks(fast_sub(Some(0)));
    let stats = stream.stats().clone();
    eventually("websocket up", || stats.snapshot().ws_connected).await;
    for _ in 0..5 {
        chain.produce_block();
    }
    expect_heights(&mut stream, &chain, 1, 5).await;

    server.shutdown().await.unwrap();
    eventually("websocket down", || !stats.snapshot().ws_connected).await;
    // Blocks committed while the RPC server is down.
    for _ in 0..7 {
        chain.produce_block();
    }
    let server = start(&chain, addr).await;
    assert_eq!(server.local_addr(), addr);
    for _ in 0..3 {
        chain.produce_block();
    }
    expect_heights(&mut stream, &chain, 6, 15).await;
    eventually("websocket back", || stats.snapshot().ws_connected).await;
    chain.produce_block();
    expect_heights(&mut stream, &chain, 16, 16).await;
    let s = stats.snapshot();
    assert!(s.reconnects >= 1, "{s:?}");
    assert!(s.fills >= 7, "heights committed while down are filled by height: {s:?}");
    assert_eq!(s.delivered, 16);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn polling_keeps_heights_flowing_without_websocket() {
    let chain = chain();
    let server = start(&chain, local()).await;
    server.set_websocket_enabled(false);
    let client = CometClient::new(&server.url()).unwrap();
    chain.produce_block();
    chain.produce_block();
    // start_after: None starts at the node's latest block.
    let mut stream = client.subscribe_blocks(fast_sub(None));
    expect_heights(&mut stream, &chain, 2, 2).await;
    for _ in 0..10 {
        chain.produce_block();
    }
    expect_heights(&mut stream, &chain, 3, 12).await;
    let s = stream.stats().snapshot();
    assert!(!s.ws_connected && s.connect_failures >= 1 && s.polls >= 1, "{s:?}");
    assert_eq!((s.fills, s.delivered, s.ws_events), (11, 11, 0));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn websocket_dropped_mid_stream_falls_back_to_polling() {
    let chain = chain();
    let server = start(&chain, local()).await;
    let client = CometClient::new(&server.url()).unwrap();
    let mut stream = client.subscribe_blocks(fast_sub(Some(0)));
    let stats = stream.stats().clone();
    eventually("websocket up", || stats.snapshot().ws_connected).await;
    chain.produce_block();
    expect_heights(&mut stream, &chain, 1, 1).await;
    server.set_websocket_enabled(false);
    eventually("websocket down", || !stats.snapshot().ws_connected).await;
    for _ in 0..6 {
        chain.produce_block();
    }
    expect_heights(&mut stream, &chain, 2, 7).await;
    let s = stats.snapshot();
    assert!(s.fills >= 6 && s.polls >= 1, "{s:?}");
    server.set_websocket_enabled(true);
    eventually("websocket back", || stats.snapshot().ws_connected).await;
    chain.produce_block();
    expect_heights(&mut stream, &chain, 8, 8).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_consumer_gets_every_height_with_bounded_buffers() {
    // A tiny event buffer makes the server cancel the lagging subscription, like CometBFT does.
    let chain = chain_with(Arc::new(AcceptAll), 50, 2);
    let server = start(&chain, local()).await;
    let client = CometClient::new(&server.url()).unwrap();
    let mut cfg = fast_sub(Some(0));
    cfg.channel_capacity = 2;
    cfg.max_cached_events = 3;
    let mut stream = client.subscribe_blocks(cfg);
    let stats = stream.stats().clone();
    eventually("websocket up", || stats.snapshot().ws_connected).await;
    for _ in 0..40 {
        chain.produce_block();
    }
    expect_heights(&mut stream, &chain, 1, 40).await;
    let s = stats.snapshot();
    assert_eq!(s.delivered, 40);
    assert!(
        s.fills >= 1,
        "blocks beyond the bounded cache are fetched by height: {s:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_rpc_batch_and_parse_errors() {
    let chain = chain();
    let server = start(&chain, local()).await;
    chain.produce_block();
    let client: Client<_, http_body_util::Full<axum::body::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let post = async |body: &str| {
        let req = axum::http::Request::post(server.url())
            .body(http_body_util::Full::new(axum::body::Bytes::from(body.to_string())))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "JSON-RPC POST errors come with HTTP 200");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let v = post(
        r#"[{"jsonrpc":"2.0","id":1,"method":"block","params":["1"]},{"jsonrpc":"2.0","id":2,"method":"health"}]"#,
    )
    .await;
    assert_eq!(v[0]["result"]["block"]["header"]["height"], json!("1"));
    assert_eq!((&v[1]["id"], &v[1]["result"]), (&json!(2), &json!({})));
    let v = post("{not json").await;
    assert_eq!(v["error"]["code"], json!(-32700));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_errors_are_typed() {
    // Nothing listening: transport error, retryable.
    let l = tokio::net::TcpListener::bind(local()).await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = CometClient::new(&format!("http://{addr}"))
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(matches!(e, CometError::Transport { .. }) && e.is_retryable(), "{e}");

    // A peer that accepts and never answers: timeout, retryable.
    let l = tokio::net::TcpListener::bind(local()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            open.push(s);
        }
    });
    let cfg = crate::chain::comet::ClientConfig {
        request_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let c = CometClient::with_config(&format!("http://{addr}"), cfg).unwrap();
    let e = c.block(1).await.unwrap_err();
    assert!(matches!(e, CometError::Timeout { .. }) && e.is_retryable(), "{e}");
    hold.abort();

    // A proxy error page: HTTP error with the status.
    let app = axum::Router::new().fallback(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") });
    let l = tokio::net::TcpListener::bind(local()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move { axum::serve(l, app).await });
    let e = CometClient::new(&format!("http://{addr}"))
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CometError::Http { status: 502, body, .. } if body == "upstream down") && e.is_retryable(),
        "{e}"
    );
    srv.abort();
}

#[tokio::test]
async fn silent_websocket_is_replaced() {
    let chain = chain();
    let server = start(&chain, local()).await;
    let client = CometClient::new(&server.url()).unwrap();
    let mut cfg = fast_sub(Some(0));
    // The server pings every 27 s; no blocks and no pings for 100 ms counts as a dead connection.
    cfg.ws_idle_timeout = Duration::from_millis(100);
    let mut stream = client.subscribe_blocks(cfg);
    let stats = stream.stats().clone();
    eventually("two reconnects after silence", || stats.snapshot().reconnects >= 2).await;
    chain.produce_block();
    expect_heights(&mut stream, &chain, 1, 1).await;
    server.shutdown().await.unwrap();
}

/// A node whose websocket accepts subscriptions but never delivers an event.
struct MuteEvents {
    chain: Arc<MemoryChain>,
    never: broadcast::Sender<BlockInfo>,
}

impl CometBackend for MuteEvents {
    fn chain_id(&self) -> String {
        self.chain.chain_id()
    }
    fn latest(&self) -> Option<BlockInfo> {
        self.chain.latest()
    }
    fn block(&self, height: i64) -> Option<BlockInfo> {
        self.chain.block(height)
    }
    fn broadcast_tx(&self, tx: Vec<u8>) -> Result<BroadcastResult, String> {
        self.chain.broadcast_tx(tx)
    }
    fn tx(&self, hash: &[u8; 32]) -> Option<TxRecord> {
        self.chain.tx(hash)
    }
    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockInfo> {
        self.never.subscribe()
    }
}

#[tokio::test]
async fn mute_subscription_is_covered_by_safety_polls() {
    let chain = chain();
    let backend = Arc::new(MuteEvents {
        chain: chain.clone(),
        never: broadcast::channel(1).0,
    });
    let server = serve(backend, local(), ServerConfig::default()).await.unwrap();
    let client = CometClient::new(&server.url()).unwrap();
    let mut cfg = fast_sub(Some(0));
    cfg.connected_poll_interval = Duration::from_millis(30);
    let mut stream = client.subscribe_blocks(cfg);
    let stats = stream.stats().clone();
    eventually("websocket up", || stats.snapshot().ws_connected).await;
    for _ in 0..3 {
        chain.produce_block();
    }
    expect_heights(&mut stream, &chain, 1, 3).await;
    let s = stats.snapshot();
    assert!(s.ws_connected && s.ws_events == 0 && s.fills == 3, "{s:?}");
    server.shutdown().await.unwrap();
}
