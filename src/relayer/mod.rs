//! The relayer (issue 6): gateways POST a protobuf `RelayRequest`; it is validated (§2.6), its `POKTHTTPRequest`
//! payload forwarded to the supplier's backend for the service (chosen by the `Rpc-Type` header, §2.7), the
//! backend answer wrapped as `POKTHTTPResponse` and signed (§2.2), and — when the relay hash meets the service's
//! difficulty at session start (§4) — the mined relay is appended to the storage relay log.
//!
//! # Pipeline
//! 1. The body is read with the largest service limit (`max_body_size_bytes`; never buffered beyond it) and
//!    decoded; the session header names the service, whose own limit then applies. Its bytes are reserved first
//!    in the process-wide `relay_server.max_body_bytes_in_flight` budget (module `budget`; `overloaded` when none
//!    free up within `relay_server.body_budget_wait_ms`) and released when the relay is answered (or, when its
//!    gateway left while it was being mined, once that work finished: module `detach`).
//! 2. Structural checks, synchronous in both modes: decodable, known service, well-formed session header,
//!    supplier we hold a key for.
//! 3. `eager`: full validation (chain-backed checks from the chain client's caches; the ring signature last, with
//!    fixed-base tables for hot keys, [`crate::protocol::ring::fast`]), then the session's compute units and
//!    difficulty target are read, then the relay meter is charged ([`meter`]), then the backend is called.
//!    `optimistic`: a relay of a (supplier, session) validated once before (module `sessions`) is forwarded as soon
//!    as its ring signature verifies against the application ring recorded with the session (refused only if the
//!    meter already knows the relay does not fit the session's budget: its compute units, cached since the
//!    session's first relay, on top of what is consumed); the chain-backed checks, metering and mining run
//!    afterwards in a bounded background task (when it is full, the handler validates inline: backpressure, no
//!    unbounded queue), and invalid relays are counted in `ha_relayer_validation_failures_total`, never mined,
//!    and revoke their session. A valid relay the meter finds over budget there is still charged and mined (the
//!    work is done; the chain caps the claim at settlement), counted in
//!    `ha_relayer_relay_meter_consumptions_total{result="over_serviced_mined"}`. The first relay of a session goes
//!    the eager way and records the session, so the backend never works for a session nobody proved valid.
//!
//!    Both modes: a relay of a session starting above our height (our chain view lags the gateway's) is refused as
//!    `session_not_started` (503, retry) from the heights alone, no chain read; except a relay of the session
//!    right after the current one while we are at its last block (a gateway a block ahead of us), which waits up
//!    to 1 s for that session's first block, then is validated at it. A relay
//!    whose backend has no endpoint in service (module `pool`: circuit breakers, health checks) is refused as
//!    `backend_unavailable` (503) before its signature, the meter and the backend. A request whose relay could not
//!    be proven in a tx (`transaction.max_tx_bytes`: the relay holds the request whole, §2.3) is refused as
//!    `request_too_large` (413) before the backend too: served, it would never be paid.
//! 4. Backend answers of any status are signed and returned (a 5xx is the backend's status inside the
//!    `POKTHTTPResponse`). **5xx relays are served but not mined** and their meter charge is refunded (poktroll's
//!    "pessimistic reversal of 5xx rewards": the supplier is not paid for its backend's failures); counted in
//!    `ha_relayer_relays_skipped_5xx_total`. Transport failures, timeouts and oversized answers are refused with
//!    their own codes and refunded; so is a relay whose gateway disconnected before the backend answered (hyper
//!    drops the handler, and the uncommitted [`meter::Charge`] refunds itself when dropped). Every refund, abandoned
//!    ones included, is counted in `ha_relayer_relay_meter_consumptions_total{result="refunded"}`. Once the backend
//!    answered, the relay's mining and the settlement of its charge run to their end even if the gateway
//!    disconnects meanwhile (module `detach`): a relay handed to the relay log is claimed, so it stays charged and
//!    counts as mined and served.
//!    A streamed backend answer (SSE, NDJSON) is relayed batch by batch as it arrives, then mined as one relay
//!    (module `stream`).
//! 5. Mining: difficulty at session start (read with the compute units before the backend was called, cached, one
//!    chain read per miss however many relays wait: module `costs`), then the relay is queued to the group-committing relay log appender.
//!    With `relay_log.durable_ack` the gateway's answer waits for the batch to be durable; without it, it does
//!    not. While appends fail (storage full or unreachable), new relays are refused with `storage_error` before
//!    step 3 calls the backend, one a second let through to find out whether appends work again
//!    (`log::REFUSE_AFTER_FAILURE`): the backend does not work for relays that cannot be claimed, and the gateway
//!    gets its error at once.
//!
//! Refusals are answered with a `RelayResponse` carrying a `RelayMinerError` with a stable code per reason
//! ([`RelayError::code`]), and counted in `ha_relayer_relays_rejected_total{service_id,rpc_type,reason}`.
//!
//! WebSocket relays (a gateway's upgrade on the relay address) go through the same stages per message, with
//! their own forwarding: module [`ws`]. gRPC relays (a gateway's unary `SendRelay` call on the relay address) are
//! this pipeline inside gRPC framing: module [`grpc`]; the gRPC call a relay carries goes to the service's `grpc`
//! backend over HTTP/2 with its trailers folded into the signed answer's headers (module `forward`), and a
//! server-side `grpc-status` counts as a 5xx for step 4. A backend answering a stream (`Content-Type`
//! `text/event-stream` or `application/x-ndjson`) to a POSTed relay is answered as a stream of signed batches
//! framed by [`STREAM_DELIMITER`] and mined as one relay when the stream ends, the final batch written once the
//! relay is appended (module `stream`); over gRPC such an answer is read whole, as one relay.

pub(crate) mod backend_url;
mod budget;
mod build;
mod chain_retry;
mod costs;
mod detach;
mod drain;
mod error;
mod forward;
pub mod grpc;
mod health;
mod log;
pub mod meter;
mod metrics;
mod mining;
mod options;
pub mod pool;
mod recent;
pub mod routes;
pub mod server;
mod sessions;
mod stream;
mod validate;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use prost::Message as _;
use tokio::sync::{Semaphore, watch};

use crate::chain::query::ChainClient;
use crate::config::{Config, ValidationMode};
use crate::protocol::relay;
use crate::protocol::wire::{
    PoktHttpRequest, RelayMinerError, RelayRequest, RelayResponse, RelayResponseMetadata, SessionHeader,
};
use crate::telemetry::{Telemetry, TelemetryError};

pub use drain::{Abandoned, FLUSH_LIMIT, SETTLEMENT_DRAIN_LIMIT};
pub use error::{RelayError, RelayerBuildError};
pub use log::BatchSettings;
pub use meter::{MeterError, RelayMeter};
pub use options::{MeterOptions, RelayerOptions, ServiceRoute};
pub use routes::{Backend, PoolOptions, PoolSettings, RouteError, RpcType, Service};
pub use server::ServerLimits;
pub use stream::STREAM_DELIMITER;
pub use validate::{Structure, Validated};

use metrics::Metrics;

/// The header a gateway names the rpc type with (§2.7).
pub const RPC_TYPE_HEADER: &str = "rpc-type";
/// Optimistic validations running in the background at most; beyond, the handler validates inline.
const OPTIMISTIC_IN_FLIGHT: usize = 1024;
/// How long a relay of the next session waits for that session's first block ([`Relayer::arrival_height`]).
const NEXT_SESSION_WAIT: Duration = Duration::from_secs(1);
/// Relays waiting for the next session's first block at most at once.
const NEXT_SESSION_WAITERS: usize = 1024;

/// Everything the relay handler needs.
pub struct Relayer {
    chain: Arc<ChainClient>,
    suppliers: crate::keys::Keyring,
    services: HashMap<String, Arc<Service>>,
    max_request_bytes: usize,
    body_read_timeout: Duration,
    /// Request-body bytes in flight (`relay_server.max_body_bytes_in_flight`).
    body_budget: Option<budget::BodyBudget>,
    appender: log::LogAppender,
    durable_ack: bool,
    /// [`RelayerOptions::claim_delay_blocks`].
    claim_delay_blocks: i64,
    /// [`RelayerOptions::submission_buffer_blocks`].
    submission_buffer_blocks: i64,
    /// [`RelayerOptions::max_mined_relay_bytes`].
    max_mined_relay_bytes: Option<usize>,
    meter: Option<RelayMeter>,
    /// Compute units and difficulty target per (service, session start), read before forwarding.
    costs: costs::CostCache,
    height: watch::Receiver<i64>,
    optimistic: Arc<Semaphore>,
    /// The (supplier, session) pairs validated once, whose relays optimistic mode serves before validating.
    validated_sessions: sessions::ValidatedSessions,
    /// Relays appended lately (module `recent`): the same relay is not appended and charged twice.
    recent: Arc<recent::RecentRelays>,
    /// Relays waiting for the next session's first block ([`NEXT_SESSION_WAITERS`]).
    next_session_waiters: Semaphore,
    ring_verifier: crate::protocol::ring::fast::FastRing,
    metrics: Arc<Metrics>,
    /// Minings and settlements finishing in tasks because their handler was dropped (module `detach`).
    detached: detach::Detachments,
    /// Set when the shutdown begins: streamed answers (module `stream`) end and mine their relay, so the relay
    /// server's drain, which waits for every response body, ends.
    streams_stop: watch::Sender<bool>,
    /// gRPC relays' own metrics (module `grpc`).
    grpc_metrics: grpc::GrpcMetrics,
    /// WebSocket relays' own metrics (module `ws`).
    ws_metrics: ws::WsMetrics,
    /// One permit per open WebSocket relay connection ([`RelayerOptions::max_websocket_connections`]).
    ws_slots: ws::Slots,
}

impl std::fmt::Debug for Relayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relayer")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("durable_ack", &self.durable_ack)
            .field("meter", &self.meter.is_some())
            .finish_non_exhaustive()
    }
}

impl Relayer {
    /// Ends every streamed answer in flight, and any started later, at its next step, as if its backend's stream
    /// had ended: its relay is mined with what was delivered (module `stream`). The shutdown calls it when the relay
    /// server stops accepting ([`Relayer::serve`]), since the server's drain waits for their bodies.
    pub fn stop_streams(&self) {
        self.streams_stop.send_replace(true);
    }

    /// Relays whose gateway went away while they were being mined and whose mining and settlement still run in
    /// tasks of their own (module `detach`), and streamed answers in flight (module `stream`); each holds its
    /// request's body bytes in the `max_body_bytes_in_flight` budget until it ends.
    pub fn detached_relays(&self) -> usize {
        self.detached.running()
    }

    /// The relay meter, when enabled.
    pub fn meter(&self) -> Option<&RelayMeter> {
        self.meter.as_ref()
    }

    /// Serves relays on `listener` with `limits` until `shutdown` resolves, then lets the open connections
    /// finish their requests ([`server`]).
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        limits: ServerLimits,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let waited = self.metrics.connections_waited.clone();
        let per_ip = self.metrics.connections_refused.with_label_values(&["per_ip_limit"]);
        let this = Arc::clone(&self);
        let shutdown = async move {
            shutdown.await;
            this.stop_streams();
        };
        server::serve(listener, self.router(), limits, shutdown, move |event| match event {
            server::ServerEvent::Waited => waited.inc(),
            server::ServerEvent::RefusedPerIp => per_ip.inc(),
        })
        .await;
    }

    /// The axum router: `POST` on any path takes relay requests (a gRPC call, by its content type, is one through
    /// module `grpc`); a WebSocket upgrade (`GET`) on any path opens a connection of WebSocket relays (module `ws`).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .fallback(axum::routing::post(handle).get(ws::upgrade))
            .with_state(self)
    }

    /// Reads the request body, never buffering more than the largest service limit plus `framing` bytes (a gRPC
    /// message's prefix), with its bytes reserved in the body budget (released when the returned reservation is
    /// dropped).
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
        framing: usize,
    ) -> Result<(Bytes, budget::Reserved), RelayError> {
        let limit = self.max_request_bytes.saturating_add(framing);
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(RelayError::RequestTooLarge {
                limit: self.max_request_bytes,
            });
        }
        // Refusals name the relay's limit, not the framing's.
        let body_error = |e: Box<dyn std::error::Error + Send + Sync>| {
            if e.is::<http_body_util::LengthLimitError>() {
                RelayError::RequestTooLarge {
                    limit: self.max_request_bytes,
                }
            } else {
                RelayError::Malformed(format!("cannot read the request body: {e}"))
            }
        };
        let mut reserved = budget::Reserved::none();
        let read = async {
            let body = http_body_util::Limited::new(body, limit);
            match (&self.body_budget, declared) {
                (None, _) => Ok(body.collect().await.map_err(body_error)?.to_bytes()),
                (Some(budget), Some(len)) => {
                    budget
                        .reserve(&mut reserved, usize::try_from(len).unwrap_or(limit))
                        .await?;
                    Ok(body.collect().await.map_err(body_error)?.to_bytes())
                }
                // No declared length: reserve chunk by chunk as the body arrives.
                (Some(budget), None) => {
                    let mut body = std::pin::pin!(body);
                    let mut buf = bytes::BytesMut::new();
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.map_err(body_error)?.into_data() {
                            budget.reserve(&mut reserved, data.len()).await?;
                            buf.extend_from_slice(&data);
                        }
                    }
                    Ok(buf.freeze())
                }
            }
        };
        match tokio::time::timeout(self.body_read_timeout, read).await {
            Err(_) => Err(RelayError::RequestTimeout(self.body_read_timeout)),
            Ok(result) => result.map(|bytes| (bytes, reserved)),
        }
    }

    /// Serves one relay request (`body`: an encoded `RelayRequest`) through the pipeline (module docs); a backend's
    /// streamed answer is relayed as a stream when the transport `streams` (POST), read whole otherwise (gRPC).
    async fn serve_relay(
        self: &Arc<Self>,
        rpc_type: Option<RpcType>,
        streams: bool,
        body: &[u8],
        started: Instant,
        reserved: budget::Reserved,
    ) -> Result<(stream::Answer, String), (RelayError, String, Option<SessionHeader>)> {
        let rt = rpc_type_label(rpc_type);
        let request = relay::decode_relay_request(body, relay::MAX_RELAY_MESSAGE_BYTES)
            .map_err(|e| (RelayError::Malformed(e.to_string()), String::new(), None))?;
        let header = request.meta.as_ref().and_then(|m| m.session_header.clone());
        let service_id = header.as_ref().map(|h| h.service_id.clone()).unwrap_or_default();
        // Metrics are labelled with configured service ids only: the request's is not authenticated yet, and
        // labelling with it would let any client create metric series without bound. Others count under "".
        let label = if self.services.contains_key(&service_id) {
            service_id.clone()
        } else {
            String::new()
        };
        let fail = |e: RelayError| (e, label.clone(), header.clone());
        self.metrics.received.with_label_values(&[&label, rt]).inc();
        let service = self
            .services
            .get(&service_id)
            .ok_or_else(|| fail(RelayError::UnknownService(service_id.clone())))?;
        if body.len() > service.max_body_bytes {
            return Err(fail(RelayError::RequestTooLarge {
                limit: service.max_body_bytes,
            }));
        }
        self.check_provable(&request).map_err(fail)?;
        let structure = validate::check_structure(&request, |s| self.suppliers.contains(s)).map_err(|e| {
            self.count_validation_failure(&service_id, &e);
            fail(e)
        })?;
        let key = self
            .suppliers
            .get(&structure.supplier)
            .ok_or_else(|| fail(RelayError::NotOurSupplier(structure.supplier.clone())))?;
        let payload = PoktHttpRequest::decode(request.payload.as_slice())
            .map_err(|e| fail(RelayError::Malformed(format!("payload is not a POKTHTTPRequest: {e}"))))?;
        // The height the relay arrived at: what it is validated against in both modes (an optimistic relay is
        // validated later, when the chain may have moved past its grace period; Go's `arrivalBlockHeight`) and
        // what the mined relay records. Reward eligibility is checked again with the height at append time.
        let arrival = self.arrival_height(&structure.header).await.map_err(fail)?;
        // No rpc type named: a gRPC call in the payload goes to the `grpc` backend (as the Go relayer infers it).
        let rpc_type = rpc_type.or_else(|| is_grpc_call(&payload).then_some(RpcType::Grpc));
        let (backend, missing) = service.backend(rpc_type);
        if missing && let Some(t) = rpc_type {
            self.metrics
                .backend_missing
                .with_label_values(&[&service_id, t.config_key()])
                .inc();
        }
        // No endpoint of the backend in service (module `pool`): refused before the signature, the meter and the
        // backend work for nothing.
        if backend.pool.serves_none(Instant::now()) {
            return Err(fail(self.fast_fail(service, backend)));
        }
        // Optimistic mode serves first only relays of a session already validated once (module `sessions`), and
        // only once their own signature verified; the first relay of a session is validated before serving, as in
        // eager mode, and records it.
        let recorded_ring = match service.mode {
            ValidationMode::Optimistic => {
                self.validated_sessions
                    .serves_first(&structure.header, &structure.supplier, arrival)
            }
            ValidationMode::Eager => None,
        };
        // The relay's own ring signature before the backend works: only a holder of a ring key (the app or its
        // gateways) gets a relay served first; what needs the chain is checked in the background.
        // The session's windows when the relay is served first.
        let serve_first = match recorded_ring {
            None => None,
            Some((ring, windows)) => {
                let verified = Instant::now();
                let result = validate::verify_signature(&self.ring_verifier, &request, &ring);
                self.metrics
                    .validation_latency
                    .with_label_values(&[&service_id, "signature"])
                    .observe(verified.elapsed().as_secs_f64());
                match result {
                    Ok(()) => Some(windows),
                    // A member the recorded ring lacks (a gateway delegated since the session was recorded): the
                    // full validation reads the application's ring now, and records it when the relay is valid.
                    Err(RelayError::RingSignature(crate::protocol::ring::RingError::NotAMember(_))) => None,
                    Err(e) => {
                        self.count_validation_failure(&service_id, &e);
                        return Err(fail(e));
                    }
                }
            }
        };
        match serve_first {
            None => {
                let validation_started = Instant::now();
                let validated =
                    validate::validate(&self.chain, &self.ring_verifier, &request, structure, arrival, false).await;
                self.metrics
                    .validation_latency
                    .with_label_values(&[&service_id, "eager"])
                    .observe(validation_started.elapsed().as_secs_f64());
                let valid = validated.map_err(|e| {
                    self.count_validation_failure(&service_id, &e);
                    fail(e)
                })?;
                if service.mode == ValidationMode::Optimistic {
                    self.validated_sessions.record(
                        &valid.header,
                        &valid.supplier,
                        valid.windows,
                        Arc::clone(&valid.ring),
                        arrival,
                    );
                }
                // Storage refusing appends right now: refuse before the backend works for nothing.
                if let Some(e) = self.appender.refusing() {
                    return Err(fail(RelayError::from_storage(e)));
                }
                // Both costs before the backend works: a relay is not served and then dropped because the
                // difficulty target could not be read after the backend answered.
                let costs = self.costs(&valid).await.map_err(fail)?;
                let charge = self.charge(&valid, costs.compute_units).await.map_err(fail)?;
                self.observe_phase(&self.metrics.pre_backend, &service_id, rt, started);
                let origin = forward::Origin {
                    supplier: &valid.supplier,
                    application: &valid.header.application_address,
                };
                let backend_response = match self.forward(service, backend, payload, origin, streams).await {
                    Ok(stream::Forwarded::Whole(r)) => r,
                    Ok(stream::Forwarded::Stream(head)) => {
                        let settle = stream::Settle::Eager(stream::Eager {
                            valid: Box::new(valid),
                            costs,
                            charge,
                            arrival,
                        });
                        let job = stream::StreamJob {
                            request,
                            key,
                            service: Arc::clone(service),
                            head,
                            rt,
                            started,
                            reserved,
                            settle,
                        };
                        return Ok((stream::Answer::Streamed(self.serve_stream(job)), service_id));
                    }
                    Err(e) => {
                        self.refund(&service_id, charge);
                        return Err(fail(e));
                    }
                };
                let answered = Instant::now();
                let status = forward::mined_status(&backend_response);
                let response = relay::sign_response(&request, backend_response.encode_to_vec(), &key);
                // From here on the relay is mined and its charge settled by the mining's real outcome even if the
                // gateway disconnects and hyper drops this handler meanwhile (module `detach`): a relay handed to
                // the relay log is claimed, so its charge must stay committed and it counts as mined and served.
                // Inline unless dropped: no task on the common path.
                let this = Arc::clone(self);
                let served = self
                    .metrics
                    .served
                    .with_label_values(&[&service_id, rt, &status.to_string()]);
                let durable = self.durable_ack;
                // The work keeps the request's body bytes reserved (module `budget`) until it ends: work left behind
                // by gateways that went away is bounded by `max_body_bytes_in_flight` as the live relays are, and
                // new relays are refused as `overloaded` while it holds the budget (e.g. storage stalling).
                let mined = detach::Detached::new(&self.detached, async move {
                    let _body_bytes = reserved;
                    this.mine(&request, &response, &valid, status, &costs, arrival, durable, charge)
                        .await?;
                    served.inc();
                    Ok(relay::encode_relay_response(&response))
                });
                let encoded = mined.await.map_err(fail)?;
                self.observe_phase(&self.metrics.post_backend, &service_id, rt, answered);
                Ok((stream::Answer::Signed(encoded), service_id))
            }
            Some(windows) => {
                if let Some(meter) = &self.meter {
                    let key = meter::MeterKey {
                        session_id: structure.header.session_id.clone(),
                        supplier: structure.supplier.clone(),
                    };
                    // The relay's cost: the session's compute units, cached since its first relay read them
                    // (module `costs`; the header is the one recorded for the session when it was validated).
                    // Evicted, they would need a chain read: one compute unit, the smallest possible cost, then
                    // refuses only what certainly does not fit. Serving past the budget is unpaid work.
                    let header = &structure.header;
                    let cost = self
                        .costs
                        .cached(&header.service_id, header.session_start_block_height)
                        .map_or(1, |c| c.compute_units);
                    if let Err(e) = meter.precheck(&key, cost) {
                        let e = RelayError::from_meter(e);
                        self.metrics.meter.with_label_values(&[&service_id, e.code().1]).inc();
                        return Err(fail(e));
                    }
                }
                if let Some(e) = self.appender.refusing() {
                    return Err(fail(RelayError::from_storage(e)));
                }
                self.observe_phase(&self.metrics.pre_backend, &service_id, rt, started);
                let origin = forward::Origin {
                    supplier: &structure.supplier,
                    application: &structure.header.application_address,
                };
                let backend_response = match self
                    .forward(service, backend, payload, origin, streams)
                    .await
                    .map_err(fail)?
                {
                    stream::Forwarded::Whole(r) => r,
                    stream::Forwarded::Stream(head) => {
                        let settle = stream::Settle::Optimistic {
                            structure,
                            arrival,
                            windows,
                        };
                        let job = stream::StreamJob {
                            request,
                            key,
                            service: Arc::clone(service),
                            head,
                            rt,
                            started,
                            reserved,
                            settle,
                        };
                        return Ok((stream::Answer::Streamed(self.serve_stream(job)), service_id));
                    }
                };
                let answered = Instant::now();
                let status = forward::mined_status(&backend_response);
                let response = relay::sign_response(&request, backend_response.encode_to_vec(), &key);
                let encoded = relay::encode_relay_response(&response);
                self.observe_phase(&self.metrics.post_backend, &service_id, rt, answered);
                self.metrics
                    .served
                    .with_label_values(&[&service_id, rt, &status.to_string()])
                    .inc();
                self.metrics
                    .served_optimistically
                    .with_label_values(&[service_id.as_str(), rt])
                    .inc();
                let this = Arc::clone(self);
                match Arc::clone(&self.optimistic).try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            let _permit = permit;
                            this.settle_optimistic(request, response, structure, status, arrival)
                                .await;
                        });
                    }
                    // No permit free: settled inline (backpressure), but finished like the spawned ones even if the
                    // gateway disconnects and hyper drops this handler meanwhile (module `detach`): the relay was
                    // served, and once handed to the relay log it is claimed, so its charge must stay committed.
                    // A dropped one goes on outside the `OPTIMISTIC_IN_FLIGHT` bound, holding the request's body bytes
                    // in the `max_body_bytes_in_flight` budget as the eager path's does (`drain_settlements` waits
                    // for it too).
                    Err(_) => {
                        detach::Detached::new(&self.detached, async move {
                            let _body_bytes = reserved;
                            this.settle_optimistic(request, response, structure, status, arrival)
                                .await
                        })
                        .await
                    }
                }
                Ok((stream::Answer::Signed(encoded), service_id))
            }
        }
    }

    /// The height a relay of `header` arrives at: the current one. A relay of a session starting above it is for a
    /// session that has not started on our (lagging) chain view: `session_not_started` (503, retry: the gateway
    /// is ahead of us, not wrong, and must not sanction the supplier for it), decided from the two heights alone.
    /// The header is not authenticated yet, so a forged far-future start costs no chain read and nothing kept.
    /// One exception: a relay of the session starting at the next block while we are at the current session's
    /// last block (a gateway one block ahead, sending at the new session's first block) waits up to
    /// [`NEXT_SESSION_WAIT`] for that block to reach us and is then validated at it; at most
    /// [`NEXT_SESSION_WAITERS`] wait at once. Telling it apart reads the session grid at our own height (cached,
    /// read by every validation anyway), never at the header's.
    async fn arrival_height(&self, header: &SessionHeader) -> Result<i64, RelayError> {
        let height = *self.height.borrow();
        let start = header.session_start_block_height;
        if height <= 0 || start <= height {
            return Ok(height);
        }
        let not_started = || RelayError::SessionNotStarted { start, height };
        if start != height.saturating_add(1) {
            return Err(not_started());
        }
        let grid = validate::current_grid_at(&self.chain, height).await?;
        if grid.session_end(height) != height {
            return Err(not_started());
        }
        let Ok(_waiting) = self.next_session_waiters.try_acquire() else {
            return Err(not_started());
        };
        let mut watch = self.height.clone();
        match tokio::time::timeout(NEXT_SESSION_WAIT, watch.wait_for(|h| *h >= start)).await {
            Ok(Ok(reached)) => Ok(*reached),
            _ => Err(RelayError::SessionNotStarted {
                start,
                height: *self.height.borrow(),
            }),
        }
    }

    /// Validation (at the height the relay `arrival`ed at), metering and mining of a relay already served in
    /// optimistic mode.
    async fn settle_optimistic(
        &self,
        request: RelayRequest,
        response: RelayResponse,
        structure: Structure,
        status: u32,
        arrival: i64,
    ) {
        let service_id = structure.header.service_id.clone();
        let validation_started = Instant::now();
        // The LSAG equations were verified before serving ([`validate::verify_signature`]). The relay was served:
        // its chain reads are tried again while the node is unreachable (module `chain_retry`).
        // Looked up only when a read is retried (the common path pays nothing).
        let retried = || {
            self.metrics
                .optimistic_chain_retries
                .with_label_values(&[&service_id])
                .inc()
        };
        let validated = chain_retry::retry_chain_errors(
            chain_retry::RETRY_FOR,
            || {
                validate::validate(
                    &self.chain,
                    &self.ring_verifier,
                    &request,
                    structure.clone(),
                    arrival,
                    true,
                )
            },
            retried,
        )
        .await;
        self.metrics
            .validation_latency
            .with_label_values(&[&service_id, "optimistic"])
            .observe(validation_started.elapsed().as_secs_f64());
        let valid = match validated {
            Ok(v) => v,
            Err(e) => {
                self.count_validation_failure(&service_id, &e);
                // A relay of a session validated before failed on its own account: its session's next relay is
                // validated before serving again. A chain outage is not the relay's fault.
                if !matches!(e, RelayError::Chain(_))
                    && let Some(meta) = &request.meta
                    && let Some(header) = &meta.session_header
                {
                    self.validated_sessions.revoke(header, &meta.supplier_operator_address);
                }
                tracing::debug!(error = %e, service_id, "optimistically served relay is invalid; not mined");
                return;
            }
        };
        let outcome = async {
            let costs = chain_retry::retry_chain_errors(chain_retry::RETRY_FOR, || self.costs(&valid), retried).await?;
            let charge = self.charge_served(&valid, costs.compute_units).await;
            self.mine(&request, &response, &valid, status, &costs, arrival, true, charge)
                .await
        }
        .await;
        if let Err(e) = outcome {
            let (_, reason) = e.code();
            self.metrics.dropped.with_label_values(&[&service_id, reason]).inc();
            tracing::debug!(error = %e, service_id, "optimistically served relay not mined");
        }
    }

    /// Observes the time since `since` in one of the per-phase histograms.
    fn observe_phase(&self, histogram: &prometheus::HistogramVec, service_id: &str, rpc_type: &str, since: Instant) {
        histogram
            .with_label_values(&[service_id, rpc_type])
            .observe(since.elapsed().as_secs_f64());
    }

    /// Counts a refused relay in `ha_relayer_relays_rejected_total{service_id,rpc_type,reason}`.
    fn count_rejected(&self, service_id: &str, rpc_type: &str, error: &RelayError) {
        let (_, reason) = error.code();
        self.metrics
            .rejected
            .with_label_values(&[service_id, rpc_type, reason])
            .inc();
    }

    fn count_validation_failure(&self, service_id: &str, error: &RelayError) {
        let (_, reason) = error.code();
        self.metrics
            .validation_failures
            .with_label_values(&[service_id, reason])
            .inc();
    }
}

/// Whether a relay's payload is a gRPC call (its `content-type` is `application/grpc…`).
fn is_grpc_call(payload: &PoktHttpRequest) -> bool {
    payload
        .header
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .flat_map(|(_, h)| h.values.first())
        .any(|ct| ct.trim().to_ascii_lowercase().starts_with("application/grpc"))
}

/// The `rpc_type` label value: the `Rpc-Type` header's config key (`jsonrpc`, `rest`, …), `default` without one.
fn rpc_type_label(rpc_type: Option<RpcType>) -> &'static str {
    rpc_type.map_or("default", RpcType::config_key)
}

async fn handle(State(relayer): State<Arc<Relayer>>, uri: http::Uri, headers: HeaderMap, body: Body) -> Response {
    if grpc::is_grpc(&headers) {
        return grpc::handle(relayer, uri.path(), headers, body).await;
    }
    let started = Instant::now();
    let rpc_type = headers
        .get(RPC_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RpcType::from_header);
    let rt = rpc_type_label(rpc_type);
    let result = match relayer.read_body(&headers, body, 0).await {
        Ok((bytes, reserved)) => {
            // The body's bytes count against relay_server.max_body_bytes_in_flight until the relay is answered, or,
            // for a relay whose gateway left while it was being mined, until that work finished (`serve_relay`).
            relayer.serve_relay(rpc_type, true, &bytes, started, reserved).await
        }
        Err(e) => Err((e, String::new(), None)),
    };
    match result {
        // Its latency is observed when its stream ends (module `stream`).
        Ok((stream::Answer::Streamed(response), _)) => response,
        Ok((stream::Answer::Signed(bytes), service)) => {
            relayer
                .metrics
                .latency
                .with_label_values(&[&service, rt])
                .observe(started.elapsed().as_secs_f64());
            ([(http::header::CONTENT_TYPE, "application/x-protobuf")], bytes).into_response()
        }
        Err((error, service, header)) => {
            relayer.count_rejected(&service, rt, &error);
            tracing::debug!(%error, service, "relay refused");
            let response = error_response(&error, header);
            (
                error.status(),
                [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                relay::encode_relay_response(&response),
            )
                .into_response()
        }
    }
}

/// The answer to a refused relay: its `RelayMinerError` (stable code per reason) and the request's session header.
fn error_response(error: &RelayError, header: Option<SessionHeader>) -> RelayResponse {
    let (code, reason) = error.code();
    RelayResponse {
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
        payload_hash: None,
    }
}
