//! Tests of the demo backend over real sockets on 127.0.0.1:0. Every HTTP/1.1 request uses a fresh connection, so
//! request ordinals (and thus every-Nth fault injection) are exact. Timeouts only guard against hangs.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tonic_prost::ProstCodec;

use super::*;

/// Guard against hangs; never used to wait for something to happen.
const GUARD: Duration = Duration::from_secs(20);

async fn guarded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(GUARD, f).await.expect("timed out")
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path).header("host", "backend");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).unwrap()
}

/// One request on a fresh HTTP/1.1 connection.
async fn http1(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, bytes))
}

/// One request on a fresh h2c (HTTP/2 prior knowledge) connection.
async fn http2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, bytes))
}

fn json_of(resp: &Response<Bytes>) -> Value {
    serde_json::from_slice(resp.body()).unwrap()
}

async fn rpc(addr: SocketAddr, body: Value) -> Value {
    let resp = guarded(http1(
        addr,
        request("POST", "/", &[("content-type", "application/json")], body.to_string()),
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    json_of(&resp)
}

async fn start(config: BackendConfig) -> BackendHandle {
    DemoBackend::spawn(config).await.unwrap()
}

#[tokio::test]
async fn jsonrpc_over_http1_any_path_and_h2c() {
    let b = start(BackendConfig {
        big_response_bytes: 100_000,
        chain_id: 0x7a69,
        ..BackendConfig::default()
    })
    .await;
    let addr = b.addr();
    let r = rpc(addr, json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    assert_eq!(r, json!({"jsonrpc":"2.0","id":1,"result":"0x7a69"}));
    let r = rpc(
        addr,
        json!({"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":["latest",true]}),
    )
    .await;
    assert_eq!(r["result"], fake_block(0x1000, true));
    let r = rpc(addr, json!({"jsonrpc":"2.0","id":3,"method":"big"})).await;
    assert_eq!(r["result"].as_str().unwrap().len(), 100_000);
    let r = rpc(
        addr,
        json!({"jsonrpc":"2.0","id":4,"method":"echo","params":["a",{"b":1}]}),
    )
    .await;
    assert_eq!(r["result"], json!(["a",{"b":1}]));
    let r = rpc(addr, json!({"jsonrpc":"2.0","id":5,"method":"web3_clientVersion"})).await;
    assert_eq!(r["result"], CLIENT_VERSION);
    let r = rpc(addr, json!({"jsonrpc":"2.0","id":6,"method":"nope"})).await;
    assert_eq!((r["error"]["code"].clone(), r["id"].clone()), (json!(-32601), json!(6)));

    // Malformed JSON.
    let resp = guarded(http1(addr, request("POST", "/", &[], "{\"jsonrpc\":")))
        .await
        .unwrap();
    let r = json_of(&resp);
    assert_eq!(
        (r["error"]["code"].clone(), r["id"].clone()),
        (json!(-32700), Value::Null)
    );

    // Any path.
    let body = json!({"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}).to_string();
    let resp = guarded(http1(addr, request("POST", "/v1/some/rpc/path", &[], body.clone())))
        .await
        .unwrap();
    assert_eq!(json_of(&resp)["result"], "0x1000");

    // A notification gets 204 and no body.
    let resp = guarded(http1(
        addr,
        request("POST", "/", &[], r#"{"jsonrpc":"2.0","method":"echo"}"#),
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.body().is_empty());

    // h2c with prior knowledge, on the same port.
    let resp = guarded(http2(addr, request("POST", "/", &[], body))).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(json_of(&resp)["result"], "0x1000");

    let stats = b.shutdown().await.unwrap();
    assert_eq!(stats.jsonrpc_requests, 10);
    // The malformed payload holds no call.
    assert_eq!(stats.jsonrpc_calls, 9);
    assert_eq!(stats.http_requests, 10);
    assert_eq!(stats.served(), 10);
}

#[tokio::test]
async fn jsonrpc_batch() {
    let b = start(BackendConfig::default()).await;
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"},
        {"jsonrpc":"2.0","method":"echo","params":[1]},
        {"jsonrpc":"2.0","id":"b","method":"eth_getBalance","params":["0x00000000000000000000000000000000000000aa","latest"]},
        {"jsonrpc":"2.0","id":3,"method":"eth_getBalance","params":["nope"]},
        {"jsonrpc":"2.0","id":4,"method":"unknown_method"},
        "garbage",
    ]);
    let r = rpc(b.addr(), batch).await;
    let a = r.as_array().unwrap();
    assert_eq!(a.len(), 5, "{r}");
    assert_eq!(a[0], json!({"jsonrpc":"2.0","id":1,"result":"0x1000"}));
    assert_eq!(a[1]["id"], "b");
    assert!(a[1]["result"].as_str().unwrap().starts_with("0x"));
    assert_eq!(a[2]["error"]["code"], -32602);
    assert_eq!(a[3]["error"]["code"], -32601);
    assert_eq!(
        (a[4]["error"]["code"].clone(), a[4]["id"].clone()),
        (json!(-32600), Value::Null)
    );
    let r = rpc(b.addr(), json!([])).await;
    assert_eq!(r["error"]["code"], -32600);
    let s = b.shutdown().await.unwrap();
    assert_eq!((s.jsonrpc_requests, s.jsonrpc_batches, s.jsonrpc_calls), (2, 2, 6));
}

#[tokio::test]
async fn rest_endpoints_and_limits() {
    let b = start(BackendConfig {
        max_body_bytes: 1024,
        ..BackendConfig::default()
    })
    .await;
    let addr = b.addr();
    let get = |path: &'static str| async move { guarded(http1(addr, request("GET", path, &[], ""))).await.unwrap() };

    let r = get("/v1/status").await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = json_of(&r);
    assert_eq!((s["status"].clone(), s["head"].clone()), (json!("ok"), json!(0x1000)));
    assert_eq!(s["headHash"], block_hash(0x1000));

    let r = get("/v1/blocks/16").await;
    assert_eq!(json_of(&r), fake_block(16, false));
    assert_eq!(json_of(&get("/v1/blocks/0x10").await), fake_block(16, false));
    assert_eq!(json_of(&get("/v1/blocks/latest").await)["number"], "0x1000");
    assert_eq!(get("/v1/blocks/4097").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/v1/blocks/abc").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get("/nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/").await.status(), StatusCode::METHOD_NOT_ALLOWED);

    let body = Bytes::from_static(b"hello\0binary\xff");
    let headers = [
        ("content-type", "text/plain"),
        ("x-request-id", "r-1"),
        ("x-echo-foo", "bar"),
        ("authorization", "secret"),
    ];
    let r = guarded(http1(addr, request("POST", "/v1/echo", &headers, body.clone())))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.body(), &body);
    let h = r.headers();
    assert_eq!(
        (&h["content-type"], &h["x-request-id"], &h["x-echo-foo"]),
        (
            &"text/plain".parse::<http::HeaderValue>().unwrap(),
            &"r-1".parse::<http::HeaderValue>().unwrap(),
            &"bar".parse::<http::HeaderValue>().unwrap()
        )
    );
    assert_eq!(h["x-echo-body-bytes"], body.len().to_string().as_str());
    assert!(!h.contains_key("authorization"));

    // Bodies over max_body_bytes are refused.
    let r = guarded(http1(addr, request("POST", "/v1/echo", &[], vec![b'a'; 2048])))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let s = b.shutdown().await.unwrap();
    // 6 block/status reads + 1 echo served; the unrouted GETs and the 413 are not REST hits.
    assert_eq!(s.rest_requests, 7);
    assert_eq!(s.http_requests, 10);
}

#[tokio::test]
async fn sse_and_ndjson_streams() {
    let b = start(BackendConfig {
        streams: StreamConfig {
            events: 4,
            interval: Duration::from_millis(1),
            max_events: 50,
        },
        ..BackendConfig::default()
    })
    .await;
    let addr = b.addr();

    let r = guarded(http1(addr, request("GET", "/sse", &[], ""))).await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = String::from_utf8(r.body().to_vec()).unwrap();
    let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    assert_eq!(ids, ["0", "1", "2", "3"]);
    assert_eq!(text.lines().filter(|l| *l == "event: tick").count(), 4);
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[3], json!({"seq": 3, "height": 0x1003, "hash": block_hash(0x1003)}));

    let r = guarded(http1(addr, request("GET", "/sse?count=7&interval_ms=0", &[], "")))
        .await
        .unwrap();
    let text = String::from_utf8(r.body().to_vec()).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("data: ")).count(), 7);

    let r = guarded(http1(addr, request("GET", "/ndjson?count=12&interval_ms=1", &[], "")))
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = r
        .body()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().enumerate().all(|(i, l)| l["seq"] == json!(i)));

    let r = guarded(http1(addr, request("GET", "/ndjson?count=51", &[], "")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let s = b.shutdown().await.unwrap();
    assert_eq!((s.sse_streams, s.ndjson_streams, s.stream_events), (2, 1, 4 + 7 + 12));
}

async fn ws_next(
    ws: &mut (impl StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        match guarded(ws.next()).await.unwrap().unwrap() {
            WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_subscription_and_limits() {
    let b = start(BackendConfig {
        ws: WsConfig {
            new_heads_interval: Duration::from_millis(20),
            max_frame_bytes: 1024,
            max_message_bytes: 1024,
            max_subscriptions: 1,
        },
        ..BackendConfig::default()
    })
    .await;
    let (mut ws, _) = guarded(tokio_tungstenite::connect_async(b.ws_url())).await.unwrap();
    let send = |v: Value| WsMessage::text(v.to_string());

    ws.send(send(
        json!({"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}),
    ))
    .await
    .unwrap();
    let r = ws_next(&mut ws).await;
    assert_eq!(r["id"], 1);
    let sub = r["result"].as_str().unwrap().to_owned();

    // A second subscription exceeds max_subscriptions; other kinds are refused.
    ws.send(send(
        json!({"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}),
    ))
    .await
    .unwrap();
    ws.send(send(
        json!({"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["logs"]}),
    ))
    .await
    .unwrap();
    let mut heights = Vec::new();
    let mut errors = Vec::new();
    while heights.len() < 3 || errors.len() < 2 {
        let m = ws_next(&mut ws).await;
        if m["method"] == "eth_subscription" {
            assert_eq!(m["params"]["subscription"], sub.as_str());
            let header = &m["params"]["result"];
            assert_eq!(
                header["hash"],
                block_hash(
                    u64::from_str_radix(header["number"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
                )
            );
            heights.push(header["number"].as_str().unwrap().to_owned());
        } else {
            errors.push((m["id"].clone(), m["error"]["code"].clone()));
        }
    }
    assert_eq!(heights[..3], ["0x1001", "0x1002", "0x1003"]);
    assert_eq!(errors, [(json!(2), json!(-32000)), (json!(3), json!(-32602))]);

    // Unsubscribe; any notification still queued arrives before the answer, none after it.
    ws.send(send(
        json!({"jsonrpc":"2.0","id":4,"method":"eth_unsubscribe","params":[sub]}),
    ))
    .await
    .unwrap();
    let r = loop {
        let m = ws_next(&mut ws).await;
        if m["method"] != "eth_subscription" {
            break m;
        }
    };
    assert_eq!(r, json!({"jsonrpc":"2.0","id":4,"result":true}));
    ws.send(send(json!([{"jsonrpc":"2.0","id":5,"method":"eth_blockNumber"},{"jsonrpc":"2.0","id":6,"method":"eth_unsubscribe","params":[sub]}]))).await.unwrap();
    assert_eq!(
        ws_next(&mut ws).await,
        json!([{"jsonrpc":"2.0","id":5,"result":"0x1000"},{"jsonrpc":"2.0","id":6,"result":false}])
    );

    // A message over the size limit closes the connection.
    ws.send(WsMessage::text("x".repeat(2048))).await.unwrap();
    loop {
        match guarded(ws.next()).await {
            None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break,
            Some(Ok(WsMessage::Text(t))) => panic!("oversized message answered: {t}"),
            Some(Ok(_)) => {}
        }
    }
    let s = b.shutdown().await.unwrap();
    assert_eq!(s.ws_connections, 1);
    assert_eq!(s.ws_messages, 5);
    assert!(s.ws_notifications >= 3);
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_with_a_tonic_client() {
    let b = start(BackendConfig::default()).await;
    let channel = guarded(tonic::transport::Endpoint::from_shared(b.http_url()).unwrap().connect())
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);

    guarded(client.ready()).await.unwrap();
    let req = EchoRequest {
        message: "hi".into(),
        payload: vec![0, 1, 2, 255],
    };
    let resp = guarded(client.unary(
        tonic::Request::new(req.clone()),
        PathAndQuery::from_static(ECHO_PATH),
        ProstCodec::<EchoRequest, EchoResponse>::default(),
    ))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        resp,
        EchoResponse {
            message: "hi".into(),
            payload: vec![0, 1, 2, 255],
            seq: 1
        }
    );

    guarded(client.ready()).await.unwrap();
    let err = guarded(client.unary(
        tonic::Request::new(EchoRequest {
            message: "status:5".into(),
            payload: vec![],
        }),
        PathAndQuery::from_static(ECHO_PATH),
        ProstCodec::<EchoRequest, EchoResponse>::default(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    guarded(client.ready()).await.unwrap();
    let err = guarded(client.unary(
        tonic::Request::new(req),
        PathAndQuery::from_static("/demo.Echo/Nope"),
        ProstCodec::<EchoRequest, EchoResponse>::default(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    guarded(client.ready()).await.unwrap();
    let mut stream = guarded(client.server_streaming(
        tonic::Request::new(EchoStreamRequest {
            message: "s".into(),
            count: 6,
            interval_ms: 1,
        }),
        PathAndQuery::from_static(ECHO_STREAM_PATH),
        ProstCodec::<EchoStreamRequest, EchoResponse>::default(),
    ))
    .await
    .unwrap()
    .into_inner();
    let mut seqs = Vec::new();
    while let Some(item) = guarded(stream.message()).await.unwrap() {
        assert_eq!(item.message, "s");
        seqs.push(item.seq);
    }
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);

    let s = b.shutdown().await.unwrap();
    assert_eq!((s.grpc_unary, s.grpc_streaming, s.stream_events), (2, 1, 6));
}

#[tokio::test]
async fn every_nth_500_is_exact() {
    let b = start(BackendConfig {
        faults: FaultConfig {
            http_500: Injection::EveryNth(NonZeroU64::new(3).unwrap()),
            ..FaultConfig::default()
        },
        ..BackendConfig::default()
    })
    .await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"}).to_string();
    let mut statuses = Vec::new();
    for _ in 0..9 {
        let r = guarded(http1(b.addr(), request("POST", "/", &[], body.clone())))
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500, 200, 200, 500]);
    let s = b.shutdown().await.unwrap();
    assert_eq!((s.http_requests, s.injected_errors, s.jsonrpc_requests), (9, 3, 6));
}

#[tokio::test]
async fn every_nth_drop_closes_the_connection() {
    let b = start(BackendConfig {
        faults: FaultConfig {
            drop_connection: Injection::EveryNth(NonZeroU64::new(2).unwrap()),
            http_500: Injection::EveryNth(NonZeroU64::new(4).unwrap()),
        },
        ..BackendConfig::default()
    })
    .await;
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let r = guarded(http1(b.addr(), request("GET", "/v1/status", &[], ""))).await;
        outcomes.push(r.map(|r| r.status().as_u16()).map_err(|e| e.is_incomplete_message()));
    }
    // Request 4 is both a drop and a 500: the drop wins.
    assert_eq!(outcomes, [Ok(200), Err(true), Ok(200), Err(true)]);
    // Over HTTP/2 a drop resets the stream.
    let r = guarded(http2(b.addr(), request("GET", "/v1/status", &[], ""))).await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    let r = guarded(http2(b.addr(), request("GET", "/v1/status", &[], ""))).await;
    assert!(r.is_err());
    let s = b.shutdown().await.unwrap();
    assert_eq!(
        (s.http_requests, s.injected_drops, s.injected_errors, s.rest_requests),
        (6, 3, 0, 3)
    );
}

#[tokio::test]
async fn probability_one_fails_everything() {
    let b = start(BackendConfig {
        faults: FaultConfig {
            http_500: Injection::Probability(1.0),
            ..FaultConfig::default()
        },
        ..BackendConfig::default()
    })
    .await;
    for _ in 0..5 {
        let r = guarded(http1(b.addr(), request("GET", "/v1/status", &[], "")))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json_of(&r)["error"], "injected failure");
    }
    assert_eq!(b.shutdown().await.unwrap().injected_errors, 5);
}

#[tokio::test]
async fn delay_is_at_least_the_configured_one() {
    let fixed = Duration::from_millis(120);
    let jitter = Duration::from_millis(60);
    let b = start(BackendConfig {
        delay: DelayConfig { fixed, jitter },
        ..BackendConfig::default()
    })
    .await;
    for _ in 0..3 {
        let t = Instant::now();
        let r = guarded(http1(b.addr(), request("GET", "/v1/status", &[], "")))
            .await
            .unwrap();
        let elapsed = t.elapsed();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(elapsed >= fixed, "{elapsed:?}");
        // Generous upper bound for a loaded CI machine.
        assert!(elapsed < fixed + jitter + Duration::from_secs(5), "{elapsed:?}");
    }
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_ends_streams_websockets_and_serve() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(BackendConfig::default(), listener, stopped));

    // An idle keep-alive HTTP/1.1 connection, and one idle h2c connection.
    let (mut h1, conn1) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(TcpStream::connect(addr).await.unwrap()))
            .await
            .unwrap();
    let conn1 = tokio::spawn(conn1);
    let r = guarded(h1.send_request(request("GET", "/v1/status", &[], "")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (mut h2, conn2) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(TcpStream::connect(addr).await.unwrap()),
    )
    .await
    .unwrap();
    let conn2 = tokio::spawn(conn2);
    let r = guarded(h2.send_request(request("GET", "/v1/status", &[], "")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // An SSE stream that would run for hours: its head arrived, so the server is streaming it.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sse, conn3) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn3);
    let sse_resp = guarded(sse.send_request(request("GET", "/sse?count=1000&interval_ms=3600000", &[], "")))
        .await
        .unwrap();
    assert_eq!(sse_resp.status(), StatusCode::OK);

    // A WebSocket with an answered request.
    let (mut ws, _) = guarded(tokio_tungstenite::connect_async(format!("ws://{addr}/ws")))
        .await
        .unwrap();
    ws.send(WsMessage::text(
        json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(ws_next(&mut ws).await["result"], "0x1");

    stop.send(()).unwrap();
    let stats = guarded(server).await.unwrap().unwrap();
    assert_eq!(
        (stats.sse_streams, stats.ws_connections, stats.rest_requests),
        (1, 1, 2)
    );

    // The stream ended cleanly without its 1000 events; the WebSocket got a "going away" close.
    let body = guarded(sse_resp.into_body().collect()).await.unwrap().to_bytes();
    assert!(body.is_empty());
    match guarded(ws.next()).await {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // The idle connections were closed and nothing listens any more.
    assert!(guarded(conn1).await.unwrap().is_ok());
    assert!(guarded(conn2).await.unwrap().is_ok());
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn invalid_config_is_refused() {
    let err = DemoBackend::new(BackendConfig {
        faults: FaultConfig {
            http_500: Injection::Probability(2.0),
            ..FaultConfig::default()
        },
        ..BackendConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("faults.http_500"), "{err}");
}
