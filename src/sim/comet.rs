//! The simulator's CometBFT RPC server (issue 5): the endpoints [`crate::chain::comet`] uses, shaped like a
//! CometBFT 0.38 node so the same client works against both.
//!
//! - URI calls: `GET /status`, `GET /block?height=H`, `GET /block_results?height=H`, `GET /broadcast_tx_sync?tx=0x..`,
//!   `GET /tx?hash=0x..`,
//!   `GET /health` (answers use id -1; errors come with HTTP 500 like CometBFT's URI handler);
//! - JSON-RPC: `POST /` with a single request or a batch (errors come with HTTP 200);
//! - `GET /websocket`: JSON-RPC over websocket, `subscribe` to `tm.event='NewBlock'`, `unsubscribe(_all)`, and
//!   every other method. One writer per connection, frame/message size limits, server pings (lessons.md).
//!   A subscriber that falls behind the block broadcast gets CometBFT's "subscription was canceled" error and
//!   loses the subscription, like a slow client of a real node.
//!
//! State lives behind [`CometBackend`], which the simulator's chain ([`crate::sim::chain::SimChain`]) implements
//! and [`crate::sim::SimNode`] serves; [`producer`] has a minimal in-memory chain with a block timer used by this
//! module's tests.

pub mod producer;
mod render;
mod ws;

#[cfg(test)]
mod tests;

pub use producer::{AcceptAll, BlockProducer, MemoryChain, MemoryChainConfig, TxRejection, TxValidator};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::chain::comet::{BlockInfo, BroadcastResult, TxResult};

/// An included tx as the backend stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// What `tx?hash=` reports.
    pub result: TxResult,
    /// The raw tx bytes.
    pub tx: Vec<u8>,
}

/// The chain state the CometBFT endpoints read and write.
pub trait CometBackend: Send + Sync + 'static {
    /// The chain id (`node_info.network`, `header.chain_id`).
    fn chain_id(&self) -> String;
    /// The latest committed block, `None` before the first.
    fn latest(&self) -> Option<BlockInfo>;
    /// The block at `height`, `None` if not (yet) committed.
    fn block(&self, height: i64) -> Option<BlockInfo>;
    /// The txs of the block at `height`, in order.
    fn block_txs(&self, _height: i64) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// The events block `height`'s `FinalizeBlock` emitted outside its txs (`block_results`'
    /// `finalize_block_events`: the simulator's claim settlements).
    fn finalize_block_events(&self, _height: i64) -> Vec<crate::chain::comet::AbciEvent> {
        Vec::new()
    }
    /// The lowest height whose block and block results are still served (a pruning node's; 1 = all).
    fn lowest_height(&self) -> i64 {
        1
    }
    /// The highest height whose block and block results are served by height (a node lagging the one the miner
    /// follows; the latest by default).
    fn highest_height(&self) -> i64 {
        self.latest().map_or(0, |b| b.height)
    }
    /// Submits a tx (CheckTx). `Err(reason)` is a JSON-RPC error, as CometBFT answers for a duplicate tx or a
    /// full mempool; a CheckTx rejection is `Ok` with a non-zero code.
    fn broadcast_tx(&self, tx: Vec<u8>) -> Result<BroadcastResult, String>;
    /// An included tx by hash.
    fn tx(&self, hash: &[u8; 32]) -> Option<TxRecord>;
    /// New committed blocks, for `/websocket` subscribers. Subscribe before reading state so nothing is missed.
    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockInfo>;
}

/// Server tunables.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest JSON-RPC POST body.
    pub max_body_bytes: usize,
    /// Largest websocket message and frame accepted from clients.
    pub max_ws_message_bytes: usize,
    /// Server ping period on websockets (CometBFT: 27 s).
    pub ws_ping_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_ws_message_bytes: 1 << 20,
            ws_ping_interval: Duration::from_secs(27),
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
struct AppState {
    backend: Arc<dyn CometBackend>,
    config: ServerConfig,
    /// `true` once shutdown starts: websocket sessions close.
    shutdown: watch::Receiver<bool>,
    /// `false` refuses `/websocket` (503) and closes open sessions, to test clients' HTTP fallback.
    ws_enabled: watch::Receiver<bool>,
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RpcError {
    code: i64,
    message: &'static str,
    data: String,
}

impl RpcError {
    fn internal(data: impl Into<String>) -> Self {
        Self {
            code: -32603,
            message: "Internal error",
            data: data.into(),
        }
    }
    fn invalid_params(data: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: "Invalid params",
            data: data.into(),
        }
    }
    fn method_not_found() -> Self {
        Self {
            code: -32601,
            message: "Method not found",
            data: String::new(),
        }
    }
    fn invalid_request(data: impl Into<String>) -> Self {
        Self {
            code: -32600,
            message: "Invalid Request",
            data: data.into(),
        }
    }
    fn parse(data: impl Into<String>) -> Self {
        Self {
            code: -32700,
            message: "Parse error. Invalid JSON",
            data: data.into(),
        }
    }
    pub(crate) fn server(data: impl Into<String>) -> Self {
        Self {
            code: -32000,
            message: "Server error",
            data: data.into(),
        }
    }
}

/// A JSON-RPC response object (`id` echoed).
pub(crate) fn response(id: &Value, r: Result<Value, RpcError>) -> Value {
    match r {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            let mut err = json!({"code": e.code, "message": e.message});
            if !e.data.is_empty() {
                err["data"] = Value::String(e.data);
            }
            json!({"jsonrpc": "2.0", "id": id, "error": err})
        }
    }
}

/// Where an argument came from: JSON-RPC params are typed JSON (int64 as strings, bytes as base64); URI params
/// are text (`5`, `"5"`, `0xABCD`, `"raw string"`).
enum Arg<'a> {
    Json(&'a Value),
    Uri(&'a str),
}

/// A method's arguments, by name (JSON object or URI query) or by position (JSON array).
pub(crate) enum Params<'a> {
    Json(&'a Value),
    Uri(&'a HashMap<String, String>),
}

impl Params<'_> {
    fn get(&self, name: &str, position: usize) -> Option<Arg<'_>> {
        match self {
            Self::Json(Value::Object(m)) => m.get(name).filter(|v| !v.is_null()).map(Arg::Json),
            Self::Json(Value::Array(a)) => a.get(position).filter(|v| !v.is_null()).map(Arg::Json),
            Self::Json(_) => None,
            Self::Uri(q) => q.get(name).filter(|s| !s.is_empty()).map(|s| Arg::Uri(s)),
        }
    }

    fn height(&self) -> Result<Option<i64>, RpcError> {
        let bad = |what: &str| RpcError::invalid_params(format!("error converting params to arguments: height {what}"));
        match self.get("height", 0) {
            None => Ok(None),
            Some(Arg::Json(Value::String(s))) => s.parse().map(Some).map_err(|_| bad(s)),
            Some(Arg::Json(Value::Number(n))) => n.as_i64().map(Some).ok_or_else(|| bad(&n.to_string())),
            Some(Arg::Json(v)) => Err(bad(&v.to_string())),
            Some(Arg::Uri(s)) => s.trim_matches('"').parse().map(Some).map_err(|_| bad(s)),
        }
    }

    fn bytes(&self, name: &str, position: usize) -> Result<Vec<u8>, RpcError> {
        let bad =
            |why: String| RpcError::invalid_params(format!("error converting params to arguments: {name}: {why}"));
        match self.get(name, position) {
            None => Err(bad("missing".into())),
            Some(Arg::Json(Value::String(s))) => B64.decode(s).map_err(|e| bad(e.to_string())),
            Some(Arg::Json(v)) => Err(bad(format!("expected base64 string, got {v}"))),
            Some(Arg::Uri(s)) => {
                if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                    hex::decode(h).map_err(|e| bad(e.to_string()))
                } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
                    Ok(s.get(1..s.len() - 1).unwrap_or_default().as_bytes().to_vec())
                } else {
                    Err(bad("expected 0x-hex or a quoted string".into()))
                }
            }
        }
    }
}

/// The `height` argument of `block` / `block_results`, the latest when absent; CometBFT's errors for a height
/// that is not positive, not committed yet, or pruned.
fn committed_height(backend: &dyn CometBackend, params: &Params<'_>) -> Result<i64, RpcError> {
    let latest = backend.highest_height();
    match params.height()? {
        None => Ok(latest),
        Some(h) if h <= 0 => Err(RpcError::internal(format!(
            "height must be greater than 0, but got {h}"
        ))),
        Some(h) if h > latest => Err(RpcError::internal(format!(
            "height {h} must be less than or equal to the current blockchain height {latest}"
        ))),
        Some(h) if h < backend.lowest_height() => Err(RpcError::internal(format!(
            "height {h} is not available, lowest height is {}",
            backend.lowest_height()
        ))),
        Some(h) => Ok(h),
    }
}

/// Runs one RPC method against the backend.
pub(crate) fn dispatch(backend: &dyn CometBackend, method: &str, params: &Params<'_>) -> Result<Value, RpcError> {
    match method {
        "health" => Ok(json!({})),
        "status" => Ok(render::status(backend)),
        "block" => Ok(render::block_result(backend, committed_height(backend, params)?)),
        "block_results" => Ok(render::block_results(backend, committed_height(backend, params)?)),
        "broadcast_tx_sync" => {
            let tx = params.bytes("tx", 0)?;
            let r = backend.broadcast_tx(tx).map_err(RpcError::internal)?;
            Ok(render::broadcast(&r))
        }
        "tx" => {
            let raw = params.bytes("hash", 0)?;
            let hash: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| RpcError::internal(format!("tx ({}) not found", hex::encode_upper(&raw))))?;
            let rec = backend
                .tx(&hash)
                .ok_or_else(|| RpcError::internal(format!("tx ({}) not found", hex::encode_upper(hash))))?;
            Ok(render::tx(&rec))
        }
        _ => Err(RpcError::method_not_found()),
    }
}

/// Handles one JSON-RPC request object (HTTP POST or websocket).
pub(crate) fn handle_request(backend: &dyn CometBackend, req: &Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return response(&id, Err(RpcError::invalid_request("missing method")));
    };
    let empty = json!({});
    let params = req.get("params").filter(|p| !p.is_null()).unwrap_or(&empty);
    response(&id, dispatch(backend, method, &Params::Json(params)))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn post_rpc(State(st): State<AppState>, body: Bytes) -> Response {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::OK,
                &response(&Value::Null, Err(RpcError::parse(e.to_string()))),
            );
        }
    };
    let backend = st.backend.as_ref();
    let out = match &parsed {
        Value::Array(reqs) if reqs.is_empty() => response(&Value::Null, Err(RpcError::invalid_request("empty batch"))),
        Value::Array(reqs) => Value::Array(reqs.iter().map(|r| handle_request(backend, r)).collect()),
        single => handle_request(backend, single),
    };
    json_response(StatusCode::OK, &out)
}

async fn get_rpc(
    State(st): State<AppState>,
    Path(method): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = json!(-1);
    match dispatch(st.backend.as_ref(), &method, &Params::Uri(&q)) {
        Ok(v) => json_response(StatusCode::OK, &response(&id, Ok(v))),
        Err(e) if e.code == -32601 => json_response(StatusCode::NOT_FOUND, &response(&id, Err(e))),
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &response(&id, Err(e))),
    }
}

/// The axum router serving the endpoints over `backend`.
fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", post(post_rpc))
        .route("/websocket", get(ws::upgrade))
        .route("/{method}", get(get_rpc))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A running server. Dropping it without [`Self::shutdown`] leaves the server running until the runtime ends.
#[derive(Debug)]
pub struct CometServerHandle {
    /// The bound address (useful with port 0).
    addr: SocketAddr,
    /// Signals graceful shutdown to the listener and every websocket session.
    shutdown: watch::Sender<bool>,
    /// Toggles `/websocket`.
    ws_enabled: watch::Sender<bool>,
    /// The accept loop.
    task: JoinHandle<std::io::Result<()>>,
}

impl CometServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the base URL for [`crate::chain::comet::CometClient::new`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Enables or disables `/websocket`; disabling also closes open sessions (HTTP keeps working).
    pub fn set_websocket_enabled(&self, enabled: bool) {
        self.ws_enabled.send_replace(enabled);
    }

    /// Stops accepting, closes websocket sessions and idle connections, and waits for the listener to end, so
    /// the address can be bound again.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.send_replace(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Binds `addr` (port 0 picks one) and serves `backend` until [`CometServerHandle::shutdown`].
pub async fn serve(
    backend: Arc<dyn CometBackend>,
    addr: SocketAddr,
    config: ServerConfig,
) -> std::io::Result<CometServerHandle> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ws_tx, ws_rx) = watch::channel(true);
    let state = AppState {
        backend,
        config,
        shutdown: shutdown_rx.clone(),
        ws_enabled: ws_rx,
    };
    let app = router(state);
    let mut signal = shutdown_rx;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // An error means the handle was dropped: keep serving until the runtime ends.
                if signal.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
    });
    Ok(CometServerHandle {
        addr,
        shutdown: shutdown_tx,
        ws_enabled: ws_tx,
        task,
    })
}
