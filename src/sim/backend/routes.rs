//! The HTTP routes: JSON-RPC over POST, REST under `/v1`, SSE and NDJSON streams, and the router that also mounts
//! the WebSocket and gRPC endpoints.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::IntervalStream;

use super::jsonrpc::{self, CLIENT_VERSION, block_hash, fake_block};
use super::stats::bump;
use super::{Shared, grpc, ws};

/// Request headers `POST /v1/echo` copies back besides every `x-echo-*` header.
const ECHOED_HEADERS: [&str; 2] = ["content-type", "x-request-id"];

/// The router for every endpoint. Requests reach it after delay and fault injection.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let body_limit = shared.config.max_body_bytes;
    Router::new()
        .route("/", post(jsonrpc_http))
        .route("/v1/status", get(status))
        .route("/v1/blocks/{n}", get(block))
        .route("/v1/echo", post(echo))
        .route("/ws", get(ws::upgrade))
        .route("/sse", get(sse))
        .route("/ndjson", get(ndjson))
        .route(grpc::ECHO_PATH, post(grpc::echo))
        .route(grpc::ECHO_STREAM_PATH, post(grpc::echo_stream))
        .route(grpc::HEALTH_CHECK_PATH, post(grpc::health_check))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(shared)
}

/// The answer to a request the fault injector chose to fail.
pub(crate) fn injected_500(ordinal: u64) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "injected failure", "request": ordinal})),
    )
        .into_response()
}

/// `POST /` (and any unrouted path): one JSON-RPC payload, single or batch.
async fn jsonrpc_http(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if is_grpc(&headers) {
        // A gRPC call to a method this backend does not have.
        return grpc::unimplemented();
    }
    bump(&shared.counters.jsonrpc_requests);
    let handled = jsonrpc::handle_payload(&shared, &body, &mut |_, _| None);
    if handled.batch {
        bump(&shared.counters.jsonrpc_batches);
    }
    match handled.reply {
        Some(reply) => Json(reply).into_response(),
        // Only notifications: JSON-RPC sends nothing back.
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Any unrouted path: JSON-RPC for POST (relayers often forward to a path), 404 otherwise.
async fn fallback(State(shared): State<Arc<Shared>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    if method == Method::POST {
        jsonrpc_http(State(shared), headers, body).await
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `GET /v1/status`.
async fn status(State(shared): State<Arc<Shared>>) -> Response {
    bump(&shared.counters.rest_requests);
    let cfg = &shared.config;
    Json(json!({
        "status": "ok",
        "chainId": cfg.chain_id,
        "head": cfg.head_block,
        "headHash": block_hash(cfg.head_block),
        "clientVersion": CLIENT_VERSION,
    }))
    .into_response()
}

/// `GET /v1/blocks/{n}`: `n` is decimal, `0x` hex or `latest`; 404 past the head, 400 when unparseable.
async fn block(State(shared): State<Arc<Shared>>, Path(n): Path<String>) -> Response {
    bump(&shared.counters.rest_requests);
    let head = shared.config.head_block;
    let height = match n.as_str() {
        "latest" => Some(head),
        s => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse::<u64>().ok(),
        },
    };
    match height {
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("invalid block number {n:?}")})),
        )
            .into_response(),
        Some(h) if h > head => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("block {h} not found"), "head": head})),
        )
            .into_response(),
        Some(h) => Json(fake_block(h, false)).into_response(),
    }
}

/// `POST /v1/echo`: the body verbatim, with `content-type`, `x-request-id` and every `x-echo-*` request header
/// copied back, plus `x-echo-body-bytes`.
async fn echo(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    bump(&shared.counters.rest_requests);
    let mut out = HeaderMap::new();
    for (name, value) in &headers {
        let n = name.as_str();
        if ECHOED_HEADERS.contains(&n) || n.starts_with("x-echo-") {
            out.append(name.clone(), value.clone());
        }
    }
    if !out.contains_key(CONTENT_TYPE) {
        out.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    }
    out.insert(
        HeaderName::from_static("x-echo-body-bytes"),
        HeaderValue::from(body.len()),
    );
    (out, body).into_response()
}

/// Query parameters of the streaming endpoints.
#[derive(Debug, serde::Deserialize)]
struct StreamQuery {
    /// Events to send (default [`super::StreamConfig::events`], at most `max_events`).
    count: Option<u64>,
    /// Milliseconds before each event (default [`super::StreamConfig::interval`]).
    interval_ms: Option<u64>,
}

/// The count and interval a stream request asks for, or why not (answered with a 400).
fn stream_params(shared: &Shared, q: &StreamQuery) -> Result<(u64, Duration), String> {
    let cfg = &shared.config.streams;
    let count = q.count.unwrap_or(cfg.events);
    if count > cfg.max_events {
        return Err(format!("count {count} exceeds {}", cfg.max_events));
    }
    let interval = q.interval_ms.map_or(cfg.interval, Duration::from_millis);
    Ok((count, interval))
}

/// The 400 answer to a bad stream request.
fn bad_stream_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response()
}

/// The JSON payload of stream event `seq`.
fn stream_event(shared: &Shared, seq: u64) -> Value {
    let height = shared.config.head_block.saturating_add(seq);
    json!({"seq": seq, "height": height, "hash": block_hash(height)})
}

/// `GET /sse?count=N&interval_ms=M`: N `tick` events (ids 0..N), one every M ms, then the stream ends.
async fn sse(State(shared): State<Arc<Shared>>, Query(q): Query<StreamQuery>) -> Response {
    let (count, interval) = match stream_params(&shared, &q) {
        Ok(p) => p,
        Err(why) => return bad_stream_request(why),
    };
    bump(&shared.counters.sse_streams);
    let events = ticks(&shared, count, interval).map(move |seq| {
        Event::default()
            .id(seq.to_string())
            .event("tick")
            .json_data(stream_event(&shared, seq))
    });
    Sse::new(events).into_response()
}

/// `GET /ndjson?count=N&interval_ms=M`: N JSON lines, one every M ms.
async fn ndjson(State(shared): State<Arc<Shared>>, Query(q): Query<StreamQuery>) -> Response {
    let (count, interval) = match stream_params(&shared, &q) {
        Ok(p) => p,
        Err(why) => return bad_stream_request(why),
    };
    bump(&shared.counters.ndjson_streams);
    let lines = ticks(&shared, count, interval).map(move |seq| {
        let mut line = stream_event(&shared, seq).to_string();
        line.push('\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `0..count`, one item after each `interval` (back to back when zero), ending early at shutdown. Holds a
/// [`super::Shutdown`] so a graceful shutdown waits for (and ends) open streams; counts every item sent.
pub(crate) fn ticks(shared: &Arc<Shared>, count: u64, interval: Duration) -> BoxStream<'static, u64> {
    let counters = shared.counters.clone();
    let mut shutdown = shared.shutdown_signal();
    let stopped = async move { shutdown.recv().await };
    let seqs = stream::iter(0..count);
    let paced: BoxStream<'static, u64> = if interval.is_zero() {
        seqs.boxed()
    } else {
        let mut timer = tokio::time::interval_at(Instant::now() + interval, interval);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        seqs.zip(IntervalStream::new(timer)).map(|(seq, _)| seq).boxed()
    };
    paced
        .take_until(stopped)
        .inspect(move |_| {
            bump(&counters.stream_events);
        })
        .boxed()
}
