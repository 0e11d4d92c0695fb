//! The relayer (issue 6): gateways POST a protobuf `RelayRequest`; it is validated (§2.6), its `POKTHTTPRequest`
//! payload forwarded to the supplier's backend for the service, the backend answer wrapped as `POKTHTTPResponse`
//! and signed (§2.2), and — when the relay hash meets the service's difficulty at session start (§4) — the mined
//! relay is appended to the storage relay log before the gateway gets its answer (durable ack; the storage
//! backend group-commits concurrent appends, so no relay costs an fsync of its own).
//!
//! Refusals are answered with a `RelayResponse` carrying a `RelayMinerError` with a stable code per reason, and
//! counted in `ha_relayer_relays_rejected_total{reason}`.

mod validate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use prost::Message as _;
use tokio::sync::watch;

use crate::chain::query::{ChainClient, ChainError};
use crate::protocol::wire::{
    HttpHeader, MinedRelayMessage, PoktHttpRequest, PoktHttpResponse, RelayMinerError, RelayResponse,
    RelayResponseMetadata,
};
use crate::protocol::{difficulty, relay};
use crate::telemetry::{Telemetry, TelemetryError};

pub use validate::Validated;

/// Why a relay was refused; each maps to a stable `RelayMinerError.code`.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Body is not a valid RelayRequest / payload.
    #[error("malformed relay request: {0}")]
    Malformed(String),
    /// The named supplier is not one of ours.
    #[error("supplier {0} is not served by this relay miner")]
    NotOurSupplier(String),
    /// No backend for the service.
    #[error("service {0} is not configured")]
    UnknownService(String),
    /// The ring signature does not verify or a ring member is not the app's.
    #[error("ring signature rejected: {0}")]
    RingSignature(crate::protocol::ring::RingError),
    /// The session header is not the chain's, or the supplier not in it.
    #[error("session mismatch: {0}")]
    SessionMismatch(String),
    /// The session's grace period is over or its claim window opened.
    #[error("session ending at {end} no longer accepts relays at height {height}")]
    SessionExpired {
        /// Session end height.
        end: i64,
        /// Current height.
        height: i64,
    },
    /// A chain query failed.
    #[error("chain query failed: {0}")]
    Chain(ChainError),
    /// The backend failed or timed out.
    #[error("backend error: {0}")]
    Backend(String),
    /// The relay could not be recorded.
    #[error("relay log append failed: {0}")]
    Storage(storage::StorageError),
}

impl RelayError {
    /// The stable code and metric reason.
    pub fn code(&self) -> (u32, &'static str) {
        match self {
            Self::Malformed(_) => (1, "malformed"),
            Self::NotOurSupplier(_) => (2, "unknown_supplier"),
            Self::UnknownService(_) => (3, "unknown_service"),
            Self::RingSignature(_) => (4, "bad_ring_signature"),
            Self::SessionMismatch(_) => (5, "session_mismatch"),
            Self::SessionExpired { .. } => (6, "session_expired"),
            Self::Chain(_) => (7, "chain_unavailable"),
            Self::Backend(_) => (8, "backend_error"),
            Self::Storage(_) => (9, "storage_error"),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Chain(_) | Self::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Backend(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// One served service.
#[derive(Debug, Clone)]
pub struct ServiceRoute {
    /// Backend base URL (`http://host:port`).
    pub backend_url: String,
    /// Backend request timeout.
    pub timeout: Duration,
    /// Request and response body limit.
    pub max_body_bytes: usize,
}

/// Relayer metrics (Go names where the meaning is the same).
#[derive(Clone)]
struct Metrics {
    received: IntCounterVec,
    served: IntCounterVec,
    rejected: IntCounterVec,
    mined: IntCounterVec,
    skipped_difficulty: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        let r = telemetry.registry();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, TelemetryError> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let latency = HistogramVec::new(
            HistogramOpts::new("ha_relayer_relay_latency_seconds", "Relay handling latency").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["service_id"],
        )?;
        r.register(Box::new(latency.clone()))?;
        Ok(Self {
            received: counter("ha_relayer_relays_received_total", "Relays received", &["service_id"])?,
            served: counter(
                "ha_relayer_relays_served_total",
                "Relays served",
                &["service_id", "status_code"],
            )?,
            rejected: counter(
                "ha_relayer_relays_rejected_total",
                "Relays refused",
                &["service_id", "reason"],
            )?,
            mined: counter(
                "ha_relayer_relays_mined_total",
                "Relays appended to the relay log",
                &["service_id"],
            )?,
            skipped_difficulty: counter(
                "ha_relayer_relays_skipped_difficulty_total",
                "Relays below the difficulty target",
                &["service_id"],
            )?,
            latency,
        })
    }
}

/// Everything the relay handler needs.
pub struct Relayer {
    chain: Arc<ChainClient>,
    suppliers: crate::keys::Keyring,
    services: HashMap<String, ServiceRoute>,
    relay_log: Arc<dyn storage::RelayLog>,
    height: watch::Receiver<i64>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
    metrics: Metrics,
}

impl Relayer {
    /// A relayer for the suppliers in `suppliers` (hot-reloadable) and `services`.
    pub fn new(
        chain: Arc<ChainClient>,
        suppliers: crate::keys::Keyring,
        services: HashMap<String, ServiceRoute>,
        relay_log: Arc<dyn storage::RelayLog>,
        height: watch::Receiver<i64>,
        telemetry: &Telemetry,
    ) -> Result<Self, TelemetryError> {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(100)
            .build(connector);
        Ok(Self {
            chain,
            suppliers,
            services,
            relay_log,
            height,
            http,
            metrics: Metrics::new(telemetry)?,
        })
    }

    /// The axum router: `POST /` (and any path) takes relay requests.
    pub fn router(self: Arc<Self>) -> axum::Router {
        let limit = self
            .services
            .values()
            .map(|s| s.max_body_bytes)
            .max()
            .unwrap_or(10 << 20);
        axum::Router::new()
            .fallback(axum::routing::post(handle))
            .layer(axum::extract::DefaultBodyLimit::max(limit))
            .with_state(self)
    }

    async fn serve_relay(
        &self,
        body: &[u8],
    ) -> Result<(Vec<u8>, String), (RelayError, String, Option<crate::protocol::wire::SessionHeader>)> {
        let request = relay::decode_relay_request(body, relay::MAX_RELAY_MESSAGE_BYTES)
            .map_err(|e| (RelayError::Malformed(e.to_string()), String::new(), None))?;
        let header = request.meta.as_ref().and_then(|m| m.session_header.clone());
        let service_id = header.as_ref().map(|h| h.service_id.clone()).unwrap_or_default();
        let fail = |e: RelayError| (e, service_id.clone(), header.clone());
        self.metrics.received.with_label_values(&[&service_id]).inc();
        let route = self
            .services
            .get(&service_id)
            .ok_or_else(|| fail(RelayError::UnknownService(service_id.clone())))?;
        let height = *self.height.borrow();
        let valid = validate::validate(&self.chain, &request, height, |s| self.suppliers.contains(s))
            .await
            .map_err(fail)?;
        let key = self
            .suppliers
            .get(&valid.supplier)
            .ok_or_else(|| fail(RelayError::NotOurSupplier(valid.supplier.clone())))?;
        let key = &key;
        let payload = PoktHttpRequest::decode(request.payload.as_slice())
            .map_err(|e| fail(RelayError::Malformed(format!("payload is not a POKTHTTPRequest: {e}"))))?;
        let backend_response = self.forward(route, payload).await.map_err(fail)?;
        let status = backend_response.status_code;
        let response = relay::sign_response(&request, backend_response.encode_to_vec(), key);
        self.mine(&request, &response, &valid).await.map_err(fail)?;
        self.metrics
            .served
            .with_label_values(&[&service_id, &status.to_string()])
            .inc();
        Ok((relay::encode_relay_response(&response), service_id))
    }

    async fn forward(&self, route: &ServiceRoute, payload: PoktHttpRequest) -> Result<PoktHttpResponse, RelayError> {
        let path = if payload.url.starts_with('/') {
            payload.url.clone()
        } else {
            format!("/{}", payload.url)
        };
        let uri = format!(
            "{}{}",
            route.backend_url.trim_end_matches('/'),
            if path == "/" { "" } else { &path }
        );
        let method = if payload.method.is_empty() {
            "POST"
        } else {
            payload.method.as_str()
        };
        let mut builder = http::Request::builder().method(method).uri(&uri);
        for (name, header) in &payload.header {
            for value in &header.values {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        let request = builder
            .body(http_body_util::Full::new(Bytes::from(payload.body_bz)))
            .map_err(|e| RelayError::Malformed(e.to_string()))?;
        let response = tokio::time::timeout(route.timeout, self.http.request(request))
            .await
            .map_err(|_| RelayError::Backend(format!("timeout after {:?}", route.timeout)))?
            .map_err(|e| RelayError::Backend(e.to_string()))?;
        let status = response.status().as_u16();
        let mut header = std::collections::BTreeMap::new();
        for (name, value) in response.headers() {
            let entry = header.entry(name.as_str().to_string()).or_insert_with(|| HttpHeader {
                key: name.as_str().to_string(),
                values: Vec::new(),
            });
            entry
                .values
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let body = http_body_util::Limited::new(response.into_body(), route.max_body_bytes)
            .collect()
            .await
            .map_err(|e| RelayError::Backend(format!("response body: {e}")))?
            .to_bytes();
        Ok(PoktHttpResponse {
            status_code: u32::from(status),
            header,
            body_bz: body.to_vec(),
        })
    }

    /// Appends the relay to the log when it meets the difficulty at session start (durable when this returns).
    async fn mine(
        &self,
        request: &crate::protocol::wire::RelayRequest,
        response: &RelayResponse,
        valid: &Validated,
    ) -> Result<(), RelayError> {
        let h = &valid.header;
        let bytes = relay::relay_bytes(request, response);
        let hash = relay::relay_hash(&bytes);
        let start = h.session_start_block_height;
        let target = self
            .chain
            .difficulty_target_at(&h.service_id, start)
            .await
            .map_err(RelayError::Chain)?;
        if !difficulty::is_volume_applicable(&hash, &target) {
            self.metrics
                .skipped_difficulty
                .with_label_values(&[&h.service_id])
                .inc();
            return Ok(());
        }
        let compute_units = self
            .chain
            .compute_units_at(&h.service_id, start)
            .await
            .map_err(RelayError::Chain)?;
        let message = MinedRelayMessage {
            relay_hash: hash.to_vec(),
            relay_bytes: bytes,
            compute_units_per_relay: compute_units,
            session_id: h.session_id.clone(),
            session_end_height: h.session_end_block_height,
            supplier_operator_address: valid.supplier.clone(),
            service_id: h.service_id.clone(),
            application_address: h.application_address.clone(),
            arrival_block_height: *self.height.borrow(),
            published_at_unix_nano: 0,
            session_start_height: start,
        };
        let mined = storage::MinedRelay {
            supplier: valid.supplier.clone(),
            session_id: h.session_id.clone(),
            session_end_height: h.session_end_block_height.max(0) as u64,
            relay_hash: hash.to_vec(),
            payload: message.encode_to_vec(),
        };
        self.relay_log.append(vec![mined]).await.map_err(RelayError::Storage)?;
        self.metrics.mined.with_label_values(&[&h.service_id]).inc();
        Ok(())
    }
}

async fn handle(State(relayer): State<Arc<Relayer>>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    match relayer.serve_relay(&body).await {
        Ok((bytes, service)) => {
            relayer
                .metrics
                .latency
                .with_label_values(&[&service])
                .observe(started.elapsed().as_secs_f64());
            ([(http::header::CONTENT_TYPE, "application/x-protobuf")], bytes).into_response()
        }
        Err((error, service, header)) => {
            let (code, reason) = error.code();
            relayer.metrics.rejected.with_label_values(&[&service, reason]).inc();
            tracing::debug!(%error, service, "relay refused");
            let response = RelayResponse {
                meta: Some(RelayResponseMetadata {
                    session_header: header,
                    supplier_operator_signature: vec![],
                }),
                payload: vec![],
                relay_miner_error: Some(RelayMinerError {
                    codespace: "relayminer".into(),
                    code,
                    description: reason.into(),
                    message: error.to_string(),
                }),
                payload_hash: vec![],
            };
            (
                error.status(),
                [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                relay::encode_relay_response(&response),
            )
                .into_response()
        }
    }
}
