//! [`CometClient`]: CometBFT JSON-RPC over HTTP POST (`{"jsonrpc":"2.0","method":..,"params":{..}}` to the RPC
//! root), on hyper-util's pooled client so every call reuses keep-alive connections.
//!
//! POST rather than URI GETs because byte arguments travel as plain base64 in JSON (`tx`, `hash`) and int64
//! arguments as decimal strings (`"height":"42"`), exactly what CometBFT's `libs/json` decoder expects; the
//! simulator serves both forms. Every call is bounded by a connect timeout and a whole-call timeout (request,
//! headers and body), and the body size is capped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{BlockInfo, BlockResults, BroadcastResult, CometError, CometResult, Status, TxResult, wire};

/// Tunables of [`CometClient`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-call timeout: connect, send, response headers and body.
    pub request_timeout: Duration,
    /// Largest response body accepted (a `block` answer carries every tx of the block).
    pub max_response_bytes: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// `https://` nodes: PEM CA certificates trusted besides the system's and Mozilla's roots
    /// ([`crate::chain::tls`]).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 64 << 20,
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 8,
            tls_ca_file: None,
        }
    }
}

/// A CometBFT RPC client. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct CometClient {
    /// The pooled HTTP client (TLS for an `https://` node).
    http: Client<crate::chain::tls::HttpsConnector, Full<Bytes>>,
    /// The TLS configuration of an `https://` node (also used for its `wss://` websocket).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Where JSON-RPC POSTs go: the base URL's path (usually `/`).
    rpc_uri: Uri,
    /// `ws://host:port/<base path>/websocket` (`wss://` for an `https://` node).
    ws_url: String,
    /// Timeouts and limits.
    config: ClientConfig,
    /// JSON-RPC request ids, so a response in a log can be matched to its request.
    next_id: Arc<AtomicU64>,
}

impl CometClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:26657`; `tcp://` as in CometBFT's config means `http://`)
    /// with default timeouts.
    pub fn new(base_url: &str) -> CometResult<Self> {
        Self::with_config(base_url, ClientConfig::default())
    }

    /// A client for `base_url` with explicit timeouts and limits; `https://` speaks TLS (certificates verified
    /// against the roots of [`crate::chain::tls`] and `config.tls_ca_file`), its websocket `wss://`.
    pub fn with_config(base_url: &str, config: ClientConfig) -> CometResult<Self> {
        let invalid = |reason: &str| CometError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = base_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let secure = match uri.scheme_str() {
            Some("http" | "tcp") => false,
            Some("https") => true,
            _ => return Err(invalid("scheme must be http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?.clone();
        if uri.query().is_some() {
            return Err(invalid("a query string is not allowed"));
        }
        let path = uri.path().trim_end_matches('/');
        let rpc_path = if path.is_empty() { "/" } else { path };
        let rpc_uri = Uri::builder()
            .scheme(if secure { "https" } else { "http" })
            .authority(authority.clone())
            .path_and_query(rpc_path)
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        let ws_url = format!("{}://{authority}{path}/websocket", if secure { "wss" } else { "ws" });

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let tls = crate::chain::tls::client_config(config.tls_ca_file.as_deref(), crate::chain::tls::Alpn::Http1)
            .map_err(|e| invalid(&e.to_string()))?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(crate::chain::tls::https_connector(connector, &tls, false));
        Ok(Self {
            http,
            tls: secure.then_some(tls),
            rpc_uri,
            ws_url,
            config,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The websocket endpoint the block subscription connects to.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The TLS connector of a `wss://` websocket (`None` for `ws://`).
    pub(crate) fn ws_connector(&self) -> Option<tokio_tungstenite::Connector> {
        self.tls.clone().map(tokio_tungstenite::Connector::Rustls)
    }

    /// The configured timeouts and limits.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Calls `method` with `params` and returns the JSON-RPC `result`.
    pub async fn call(&self, method: &str, params: Value) -> CometResult<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = wire::request(id, method, params).to_string();
        let req = http::Request::post(self.rpc_uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CometError::Transport {
                method: method.to_string(),
                message: e.to_string(),
            })?;
        let transport = |message: String| CometError::Transport {
            method: method.to_string(),
            message,
        };
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| transport(format!("{e:?}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), self.config.max_response_bytes)
                .collect()
                .await
                .map_err(|e| transport(format!("reading body: {e}")))?
                .to_bytes();
            Ok::<_, CometError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.config.request_timeout, exchange)
            .await
            .map_err(|_| CometError::Timeout {
                method: method.to_string(),
                after: self.config.request_timeout,
            })??;
        match wire::decode_envelope(method, &body) {
            // Not JSON-RPC at all: report the HTTP status (a proxy page, a wrong port).
            Err(CometError::BadResponse { .. }) if !status.is_success() => Err(CometError::Http {
                method: method.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(body.get(..body.len().min(256)).unwrap_or_default()).into_owned(),
            }),
            other => other,
        }
    }

    /// `status`: the node's latest height, hash and time.
    pub async fn status(&self) -> CometResult<Status> {
        wire::parse_status(self.call("status", json!({})).await?)
    }

    /// `block?height=H`: the block's header fields and its block-ID hash (§3, §5.2). A height above the node's
    /// latest is an [`CometError::Rpc`] with [`CometError::is_height_not_available`].
    pub async fn block(&self, height: i64) -> CometResult<BlockInfo> {
        let r = self.call("block", json!({"height": height.to_string()})).await?;
        let b = wire::parse_block(r)?.ok_or_else(|| CometError::BadResponse {
            method: "block".into(),
            reason: format!("the node has no block at height {height}"),
        })?;
        if b.height != height {
            return Err(CometError::BadResponse {
                method: "block".into(),
                reason: format!("asked for height {height}, got {}", b.height),
            });
        }
        Ok(b)
    }

    /// `block` without a height: the latest committed block.
    pub async fn latest_block(&self) -> CometResult<BlockInfo> {
        let r = self.call("block", json!({})).await?;
        wire::parse_block(r)?.ok_or_else(|| CometError::BadResponse {
            method: "block".into(),
            reason: "the node has no blocks yet".into(),
        })
    }

    /// `block_results?height=H`: the events the block's `FinalizeBlock` emitted outside its txs (poktroll's claim
    /// settlements). A height above the node's latest is an [`CometError::Rpc`] with
    /// [`CometError::is_height_not_available`]; a node that discards ABCI responses answers every height with an
    /// RPC error too.
    pub async fn block_results(&self, height: i64) -> CometResult<BlockResults> {
        let r = wire::parse_block_results(
            self.call("block_results", json!({"height": height.to_string()}))
                .await?,
        )?;
        if r.height != height {
            return Err(CometError::BadResponse {
                method: "block_results".into(),
                reason: format!("asked for height {height}, got {}", r.height),
            });
        }
        Ok(r)
    }

    /// `broadcast_tx_sync`: submits `tx` and returns the CheckTx outcome. Code 0 only means "in the mempool"
    /// (lessons.md); confirm inclusion with [`Self::tx`].
    pub async fn broadcast_tx_sync(&self, tx: &[u8]) -> CometResult<BroadcastResult> {
        let r = self.call("broadcast_tx_sync", json!({"tx": B64.encode(tx)})).await?;
        wire::parse_broadcast(r)
    }

    /// `tx?hash=`: the included tx, or `None` when the node does not know it (not included, yet or ever).
    pub async fn tx(&self, hash: &[u8; 32]) -> CometResult<Option<TxResult>> {
        match self.call("tx", json!({"hash": B64.encode(hash), "prove": false})).await {
            Ok(r) => wire::parse_tx(r).map(Some),
            Err(e) if e.is_tx_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts a new-block subscription on this client; see [`super::subscribe_blocks`].
    pub fn subscribe_blocks(&self, config: super::SubscribeConfig) -> super::BlockStream {
        super::subscribe_blocks(self.clone(), config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_handling() {
        let c = CometClient::new("http://127.0.0.1:26657").unwrap();
        assert_eq!(c.rpc_uri.to_string(), "http://127.0.0.1:26657/");
        assert_eq!(c.ws_url(), "ws://127.0.0.1:26657/websocket");
        let c = CometClient::new("tcp://node:26657/rpc/").unwrap();
        assert_eq!(c.rpc_uri.to_string(), "http://node:26657/rpc");
        assert_eq!(c.ws_url(), "ws://node:26657/rpc/websocket");
        let c = CometClient::new("https://node.example.com/rpc").unwrap();
        assert_eq!(c.rpc_uri.to_string(), "https://node.example.com/rpc");
        assert_eq!(c.ws_url(), "wss://node.example.com/rpc/websocket");
        assert!(c.ws_connector().is_some());
        for bad in ["node:26657", "ftp://x", "http://x/?a=1", "", "http://"] {
            assert!(
                matches!(CometClient::new(bad), Err(CometError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    /// An `https://` node is reached over TLS with its CA trusted (here a proxy-style HTTP error proves the
    /// request arrived), and refused without it.
    #[tokio::test]
    async fn https_nodes_are_reached_over_tls() {
        #![allow(clippy::unwrap_used)]
        let router = axum::Router::new().fallback(|| async { (http::StatusCode::BAD_GATEWAY, "reached over tls") });
        let (pem, server) = crate::chain::tls::testing::self_signed(&[b"http/1.1"]);
        let port = crate::chain::tls::testing::serve_tls(router, server).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let url = format!("https://localhost:{port}");
        let trusted = CometClient::with_config(
            &url,
            ClientConfig {
                tls_ca_file: Some(ca),
                ..ClientConfig::default()
            },
        )
        .unwrap();
        match trusted.status().await {
            Err(CometError::Http { body, .. }) => assert!(body.contains("reached over tls"), "{body}"),
            other => panic!("expected the proxy-style HTTP error, got {other:?}"),
        }
        let untrusted = CometClient::new(&url).unwrap();
        assert!(matches!(untrusted.status().await, Err(CometError::Transport { .. })));
    }
}
