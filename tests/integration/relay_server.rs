//! The relay listener against slow and numerous clients, over real sockets (`relay_server.*`): a client that
//! never finishes its headers is disconnected after the header read timeout, one that never finishes its body
//! gets `request_timeout` (code 15, HTTP 408) after the body read timeout, and beyond `max_connections` a new
//! connection waits until one closes, then is served; beyond `max_connections_per_ip` a client's new connection
//! is closed unserved while other clients are served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use relay_miner::protocol::relay;

use crate::relayer::{Net, error_code, metric};

fn addr(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Reads until the server closes the connection (`Ok(bytes)`), or `Err` when it is still open after `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    Ok(out)
}

/// Opens a connection, writes `bytes`, and returns how long the server took to close it (at most 10 s).
async fn closed_after(url: &str, bytes: &[u8]) -> Duration {
    let mut stream = TcpStream::connect(addr(url)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = Instant::now();
    assert!(
        read_to_close(&mut stream, Duration::from_secs(10)).await.is_ok(),
        "still connected after 10 s"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_header_connections_are_closed_but_a_request_in_flight_is_answered() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_server.header_read_timeout_seconds = 1;
    net.config.relay_server.idle_timeout_seconds = 1;
    // The slow service's backend answers after 5 s; its timeout is 3 s here, longer than the idle timeout.
    let quick = net.config.timeout_profiles.get_mut("quick").unwrap();
    (quick.request_timeout_seconds, quick.response_header_timeout_seconds) = (3, 3);
    let r = net.relayer().await;
    // Headers sent a piece at a time and never finished (slowloris): closed by the header read timeout.
    let waited = closed_after(
        &r.url,
        b"POST / HTTP/1.1\r\nhost: relay\r\ncontent-type: application/x-protobuf\r\n",
    )
    .await;
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before the timeout"
    );
    // A connection that sends nothing: closed by the idle timeout.
    let waited = closed_after(&r.url, b"").await;
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before the timeout"
    );

    // A request in flight three times as long as the idle timeout is answered (its backend timed out), and
    // its connection stays open for the next request: a connection is idle only with no request in flight.
    let mut conn = TcpStream::connect(addr(&r.url)).await.unwrap();
    let slow = net.header("slow").await;
    let started = Instant::now();
    let request = relay::encode_relay_request(&net.request(&slow, &net.ours.1, Net::rpc(1)));
    let (status, response) = exchange(&mut conn, &request).await;
    assert_eq!((status, error_code(&response)), (504, Some(13)), "backend timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    let header = net.header("anvil").await;
    let request = relay::encode_relay_request(&net.request(&header, &net.ours.1, Net::rpc(2)));
    let (status, response) = exchange(&mut conn, &request).await;
    assert_eq!(
        (status, error_code(&response)),
        (200, None),
        "served on the same connection"
    );
}

/// Sends one relay request on an HTTP/1.1 keep-alive connection and reads its response.
async fn exchange(conn: &mut TcpStream, body: &[u8]) -> (u16, relay_miner::protocol::wire::RelayResponse) {
    try_exchange(conn, body)
        .await
        .expect("connection closed before the response")
}

/// [`exchange`], or `None` when the server closed the connection before answering.
async fn try_exchange(conn: &mut TcpStream, body: &[u8]) -> Option<(u16, relay_miner::protocol::wire::RelayResponse)> {
    let head = format!(
        "POST / HTTP/1.1\r\nhost: relay\r\ncontent-type: application/x-protobuf\r\nrpc-type: 3\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.ok()?;
    conn.write_all(body).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .expect("a content-length");
                if buf.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    let body = &buf[end + 4..end + 4 + length];
                    return Some((
                        status,
                        relay::decode_relay_response(body, relay::MAX_RELAY_MESSAGE_BYTES).unwrap(),
                    ));
                }
            }
            match conn.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_body_gets_request_timeout() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_server.body_read_timeout_seconds = 1;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let body = relay::encode_relay_request(&net.request(&header, &net.ours.1, Net::rpc(1)));
    let mut slow = TcpStream::connect(addr(&r.url)).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: relay\r\ncontent-type: application/x-protobuf\r\nrpc-type: 3\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..body.len() / 2]).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 64 << 10];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let text = &answer[..n];
    assert!(text.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(text));
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let response = relay::decode_relay_response(&text[split..], relay::MAX_RELAY_MESSAGE_BYTES).unwrap();
    assert_eq!(error_code(&response), Some(15), "request_timeout");
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_rejected_total{reason=\"request_timeout\",rpc_type=\"jsonrpc\",service_id=\"\"}"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_a_connection_waits_until_one_closes() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_server.max_connections = 2;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    // Two connections take both slots (a connection is accepted once its slot is free).
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(addr(&r.url)).await.unwrap(),
        TcpStream::connect(addr(&r.url)).await.unwrap(),
    ];
    let waited = "ha_relayer_connections_waited_total";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&r.telemetry, waited) == 0 {
        assert!(Instant::now() < deadline, "the server never reached max_connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A third one is not served while they are open...
    let request = net.request(&header, &net.ours.1, Net::rpc(1));
    let third = net.send(&r.url, &request);
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut third)
            .await
            .is_err(),
        "served beyond max_connections"
    );
    // ...and is once one of them closes.
    drop(held);
    let (status, response) = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot was free");
    assert_eq!((status, error_code(&response)), (200, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_per_ip_a_client_is_closed_while_others_are_served() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_server.max_connections_per_ip = 2;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let relay = |id: u64| relay::encode_relay_request(&net.request(&header, &net.ours.1, Net::rpc(id)));
    // Two connections from 127.0.0.1, each served (so both are accepted and counted).
    let mut held = Vec::new();
    for id in 1..=2 {
        let mut conn = TcpStream::connect(addr(&r.url)).await.unwrap();
        let (status, response) = exchange(&mut conn, &relay(id)).await;
        assert_eq!((status, error_code(&response)), (200, None));
        held.push(conn);
    }
    // A third from the same address is closed before anything is read.
    let mut third = TcpStream::connect(addr(&r.url)).await.unwrap();
    let answer = read_to_close(&mut third, Duration::from_secs(5)).await;
    assert_eq!(answer, Ok(Vec::new()), "the third connection was not closed unanswered");
    let refused = "ha_relayer_connections_refused_total{reason=\"per_ip_limit\"}";
    assert_eq!(metric(&r.telemetry, refused), 1);
    // Another client address is served meanwhile: the limit is per client, not the server's.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(addr(&r.url).parse().unwrap()).await.unwrap();
    let (status, response) = exchange(&mut other, &relay(3)).await;
    assert_eq!((status, error_code(&response)), (200, None), "another client");
    // Once one of the first client's connections closes, it is served again (the server sees the close
    // asynchronously: retried until then, each refusal counted).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, response) = loop {
        let mut conn = TcpStream::connect(addr(&r.url)).await.unwrap();
        if let Some(answer) = try_exchange(&mut conn, &relay(4)).await {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "still refused 10 s after one of its connections closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((status, error_code(&response)), (200, None), "served after a close");
}
