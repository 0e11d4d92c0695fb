//! WebSocket relays (rpc type 2, `WEBSOCKET`): a gateway upgrades a `GET` on the relay address, every message it
//! sends is a protobuf `RelayRequest` whose payload is one raw backend message (e.g. a JSON-RPC call), and every
//! message the supplier's WebSocket backend sends back is answered to the gateway as a signed `RelayResponse` whose
//! payload is that raw message. Each backend message is one relay (the request it answers is the gateway's latest
//! valid one, as for a subscription's notifications), metered and mined like an HTTP relay.
//!
//! The handshake is refused (HTTP 4xx/5xx, counted in `ha_relayer_relays_rejected_total{rpc_type="websocket"}`)
//! unless `Target-Service-Id` (legacy `Pocket-Service-Id`) names a served service with a `backends.websocket`, and
//! an optional `Pocket-Supplier-Address` names a supplier we hold a key for. Nothing else of the handshake can be
//! authenticated, so nothing costs the supplier before a message proves itself: the backend connection is opened
//! only after the first relay request passed full validation (§2.6, always eager here: a relay request of a
//! connection has no response of its own to serve first), and every later request is validated again before its
//! payload goes to the backend. An invalid one is answered with a `RelayResponse` carrying its `RelayMinerError`
//! and the connection stays open.
//!
//! lessons.md (the Go relayer's WebSocket panics): each side of a connection has one writer. The gateway's socket
//! is written only by its writer task, fed through a bounded channel; the backend's only by the connection task.
//! Open connections are bounded by `relay_server.max_connections` (an upgraded connection leaves the relay
//! server's own count; beyond, the upgrade is refused as `overloaded`, 503). Frames and messages are bounded by
//! the service's `max_body_size_bytes` in both directions; a larger backend
//! message is answered as `response_too_large` and ends the connection. An upgraded connection stays counted
//! against its client's `relay_server.max_connections_per_ip`. The connection's loop never waits on a peer that
//! does not read: a refusal for a gateway whose outbox is full is dropped, and a message the backend does not take
//! within the service's request timeout ends the connection, so the idle timeout and the shutdown's close always
//! get through. A connection with no message either way
//! for [`IDLE_TIMEOUT`] is closed, and so is the gateway's when the backend's ends (the gateway's subscriptions
//! lived there), at the shutdown's relay drain ([`Relayer::drain_settlements`], so their relays are in the log
//! before the miner's final ingest), or when a backend message comes after its session's claim was built (`session_expired`: the
//! gateway reconnects with the new session). A backend message's relay is appended (durably with
//! `relay_log.durable_ack`) before its response is sent, and the append finishes even if the gateway goes away
//! meanwhile (module `detach`), so its meter charge follows what the relay log holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code, rejection::WebSocketUpgradeRejection,
};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _, protocol::WebSocketConfig};

use super::{RelayError, Relayer, RpcType, Validated, costs, detach, error_response, routes, validate};
use crate::protocol::relay;
use crate::protocol::wire::{RelayRequest, SessionHeader};
use crate::telemetry::{Telemetry, TelemetryError};

/// The handshake header naming the service (PATH's).
pub const SERVICE_HEADER: &str = "target-service-id";
/// The legacy name of [`SERVICE_HEADER`], read when it is absent.
const LEGACY_SERVICE_HEADER: &str = "pocket-service-id";
/// The handshake header naming the preferred supplier (optional).
pub const SUPPLIER_HEADER: &str = "pocket-supplier-address";
/// A connection with no message either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a closing connection waits for its backend reader and its gateway writer to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Messages waiting for the gateway's writer at most; a gateway that does not read slows its backend's reader.
const OUTBOX: usize = 64;
/// Bytes waiting for the gateway's writer at most besides twice the service's message limit ([`Outbox`]).
const OUTBOX_SLACK_BYTES: usize = 64 << 10;
/// The `rpc_type` label of WebSocket relays.
const RPC_TYPE: &str = "websocket";

type BackendSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket metrics (the Go relayer's names).
#[derive(Clone)]
pub(crate) struct WsMetrics {
    active: IntGaugeVec,
    opened: IntCounterVec,
    forwarded: IntCounterVec,
    emitted: IntCounterVec,
}

impl WsMetrics {
    pub(crate) fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        let r = telemetry.registry();
        let active = IntGaugeVec::new(
            Opts::new(
                "ha_relayer_websocket_connections_active",
                "Open WebSocket relay connections from gateways",
            ),
            &["service_id"],
        )?;
        let opened = IntCounterVec::new(
            Opts::new(
                "ha_relayer_websocket_connections_total",
                "WebSocket relay connections accepted",
            ),
            &["service_id"],
        )?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                "ha_relayer_websocket_messages_forwarded_total",
                "WebSocket messages forwarded: to_backend (a validated relay request's payload), to_gateway (a \
                 signed relay response)",
            ),
            &["service_id", "direction"],
        )?;
        let emitted = IntCounterVec::new(
            Opts::new(
                "ha_relayer_websocket_relays_emitted_total",
                "WebSocket relays (backend messages) appended to the relay log",
            ),
            &["service_id"],
        )?;
        for c in [&opened, &forwarded, &emitted] {
            r.register(Box::new(c.clone()))?;
        }
        r.register(Box::new(active.clone()))?;
        Ok(Self {
            active,
            opened,
            forwarded,
            emitted,
        })
    }
}

/// Permits for open WebSocket relay connections (module docs), and the signal that closes them all.
pub(crate) struct Slots {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
    closing: watch::Sender<bool>,
}

impl Slots {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            closing: watch::Sender::new(false),
        }
    }

    /// Closes every connection (`1001 going away`; each finishes the relay in hand first) and refuses new ones,
    /// then waits until all have ended: the shutdown's relay drain, so their relays are in the relay log before
    /// the miner's final ingest.
    pub(crate) async fn close_all(&self) {
        self.closing.send_replace(true);
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        match self.permits.acquire_many(all).await {
            // Kept: no connection opens after the drain.
            Ok(permits) => permits.forget(),
            Err(e) => tracing::warn!(error = %e, "websocket relay connections not drained"),
        }
    }

    /// Connections open now, each holding a permit: meaningful until [`Slots::close_all`] returned (it keeps every
    /// permit then), e.g. when the drain gave up waiting for it.
    pub(crate) fn open(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }

    /// A permit for one more connection (released when dropped) with the closing signal it watches, or
    /// `overloaded` when all are taken (or the relayer is shutting down).
    fn take(&self) -> Result<(tokio::sync::OwnedSemaphorePermit, watch::Receiver<bool>), RelayError> {
        if *self.closing.borrow() {
            return Err(RelayError::WebSocketsFull { max: self.max });
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| RelayError::WebSocketsFull { max: self.max })?;
        Ok((permit, self.closing.subscribe()))
    }
}

/// A `GET` on the relay address: the WebSocket handshake (module docs), or 400 for a plain `GET`.
pub(super) async fn upgrade(
    State(relayer): State<Arc<Relayer>>,
    headers: HeaderMap,
    extensions: http::Extensions,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let service_id = header(SERVICE_HEADER)
        .or_else(|| header(LEGACY_SERVICE_HEADER))
        .unwrap_or_default();
    let refuse = |label: &str, error: RelayError| {
        relayer.count_rejected(label, RPC_TYPE, &error);
        tracing::debug!(%error, service = service_id, "websocket handshake refused");
        (error.status(), error.to_string()).into_response()
    };
    let Some(service) = relayer.services.get(&service_id).cloned() else {
        return refuse("", RelayError::UnknownService(service_id.clone()));
    };
    let (backend, missing) = service.backend(Some(RpcType::Websocket));
    if missing {
        relayer
            .metrics
            .backend_missing
            .with_label_values(&[&service_id, RPC_TYPE])
            .inc();
        return refuse(
            &service_id,
            RelayError::Backend(format!("service {service_id} has no websocket backend")),
        );
    }
    let backend = Arc::clone(backend);
    if let Some(supplier) = header(SUPPLIER_HEADER)
        && !relayer.suppliers.contains(&supplier)
    {
        return refuse(&service_id, RelayError::NotOurSupplier(supplier));
    }
    // Upgraded, the connection leaves the relay server's count (`relay_server.max_connections`): bounded here.
    let (slot, closing) = match relayer.ws_slots.take() {
        Ok(taken) => taken,
        Err(e) => return refuse(&service_id, e),
    };
    let client = extensions.get::<super::server::ClientSlot>().cloned();
    let limit = service.max_body_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            // The client's `max_connections_per_ip` slot, held while the connection lives (module `server`).
            let _client = client;
            let metrics = relayer.ws_metrics.clone();
            metrics.opened.with_label_values(&[&service.id]).inc();
            let active = metrics.active.with_label_values(&[&service.id]);
            active.inc();
            Connection {
                relayer,
                service,
                backend,
            }
            .run(socket, closing)
            .await;
            active.dec();
            drop(slot);
        })
}

/// The gateway's latest valid relay request, which the backend's messages answer.
struct Current {
    request: RelayRequest,
    valid: Validated,
    costs: Arc<costs::SessionCosts>,
    arrival: i64,
    key: k256::ecdsa::SigningKey,
}

/// When a connection last saw a message, either way ([`IDLE_TIMEOUT`]).
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds from `start` to the last message.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the connection counts as idle unless a message comes first.
    fn deadline(&self) -> tokio::time::Instant {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.start + last + IDLE_TIMEOUT
    }
}

/// One gateway connection.
struct Connection {
    relayer: Arc<Relayer>,
    service: Arc<routes::Service>,
    backend: Arc<routes::Backend>,
}

/// The backend side of a connection, opened at its first valid relay request.
struct BackendLink {
    sink: SplitSink<BackendSocket, tungstenite::Message>,
    current: watch::Sender<Option<Arc<Current>>>,
    stop: watch::Sender<bool>,
    reader: tokio::task::JoinHandle<Option<CloseFrame>>,
}

impl Connection {
    async fn run(self, socket: WebSocket, mut closing: watch::Receiver<bool>) {
        let (gateway_sink, mut gateway) = socket.split();
        let (out, outbox) = Outbox::new(self.service.max_body_bytes);
        let writer = tokio::spawn(write_gateway(gateway_sink, outbox));
        let mut link: Option<BackendLink> = None;
        // The last message either way: the gateway's are seen here, the backend's by its reader.
        let activity = Arc::new(Activity::new());
        let close = loop {
            let idle_at = activity.deadline();
            tokio::select! {
                received = gateway.next() => {
                    activity.touch();
                    let bytes = match received {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        Some(Ok(Message::Text(text))) => axum::body::Bytes::copy_from_slice(text.as_bytes()),
                        // Pings are answered by the WebSocket layer itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    };
                    if let Some(frame) = self.on_request(&bytes, &mut link, &out, &activity).await {
                        break Some(frame);
                    }
                }
                frame = async {
                    match link.as_mut() {
                        Some(l) => (&mut l.reader).await.ok().flatten(),
                        None => std::future::pending().await,
                    }
                } => {
                    // Its reader ended: nothing of the link is left to stop.
                    link = None;
                    break Some(frame.unwrap_or_else(|| close_frame(close_code::AWAY, "backend connection ended")));
                }
                // Its guard dropped inside: the select's output must stay `Send`.
                () = async { drop(closing.wait_for(|c| *c).await) } => {
                    break Some(close_frame(close_code::AWAY, "relay miner shutting down"));
                }
                () = tokio::time::sleep_until(idle_at) => {
                    if activity.deadline() <= tokio::time::Instant::now() {
                        break Some(close_frame(close_code::NORMAL, "idle"));
                    }
                }
            }
        };
        if let Some(mut l) = link {
            // The backend's reader finishes the message in hand (its relay's append and charge), then stops. Bounded:
            // a gateway that stopped reading can hold the reader on a full outbox; aborted then, the append in hand
            // still finishes (module `detach`) and an unfinished charge refunds itself.
            let _ = l.stop.send(true);
            let _ = tokio::time::timeout(CLOSE_WAIT, l.sink.close()).await;
            if tokio::time::timeout(CLOSE_WAIT, &mut l.reader).await.is_err() {
                l.reader.abort();
            }
        }
        if let Some(frame) = close {
            let _ = out.try_send(Message::Close(Some(frame)));
        }
        drop(out);
        let mut writer = writer;
        if tokio::time::timeout(CLOSE_WAIT, &mut writer).await.is_err() {
            writer.abort();
        }
    }

    /// One gateway message: validated, then its payload is sent to the backend (opened at the first one). An
    /// invalid one is answered with its error. Returns the close frame when the connection must end.
    async fn on_request(
        &self,
        bytes: &[u8],
        link: &mut Option<BackendLink>,
        out: &Outbox,
        activity: &Arc<Activity>,
    ) -> Option<CloseFrame> {
        let started = Instant::now();
        let service_id = self.service.id.as_str();
        self.relayer
            .metrics
            .received
            .with_label_values(&[service_id, RPC_TYPE])
            .inc();
        let current = match self.validate(bytes).await {
            Ok(current) => current,
            Err((error, header)) => {
                self.reject(&error, header, out);
                return None;
            }
        };
        if link.is_none() {
            match self
                .connect(&current.valid.supplier, out.clone(), Arc::clone(activity))
                .await
            {
                Ok(l) => *link = Some(l),
                Err(error) => {
                    self.reject(&error, header_of(&current.request), out);
                    return Some(close_frame(close_code::ERROR, "backend unavailable"));
                }
            }
        }
        let l = link.as_mut()?;
        let payload = current.request.payload.clone();
        let header = header_of(&current.request);
        l.current.send_replace(Some(current));
        let message = match String::from_utf8(payload) {
            Ok(text) => tungstenite::Message::text(text),
            Err(e) => tungstenite::Message::binary(e.into_bytes()),
        };
        // Bounded: a backend that stops reading would otherwise hold the connection's loop (and the shutdown's
        // drain, which waits for every connection) for good.
        let timeout = self.service.request_timeout;
        match tokio::time::timeout(timeout, l.sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.reject(&RelayError::Backend(format!("websocket backend: {e}")), header, out);
                return Some(close_frame(close_code::ERROR, "backend connection failed"));
            }
            Err(_) => {
                self.reject(&RelayError::BackendTimeout(timeout), header, out);
                return Some(close_frame(close_code::ERROR, "backend not reading"));
            }
        }
        self.relayer
            .ws_metrics
            .forwarded
            .with_label_values(&[service_id, "to_backend"])
            .inc();
        self.relayer
            .observe_phase(&self.relayer.metrics.pre_backend, service_id, RPC_TYPE, started);
        None
    }

    /// Full validation of one relay request (§2.6), then the session's costs.
    async fn validate(&self, bytes: &[u8]) -> Result<Arc<Current>, (RelayError, Option<SessionHeader>)> {
        let r = &self.relayer;
        let request = relay::decode_relay_request(bytes, relay::MAX_RELAY_MESSAGE_BYTES)
            .map_err(|e| (RelayError::Malformed(e.to_string()), None))?;
        let header = header_of(&request);
        let fail = |e: RelayError| (e, header.clone());
        let requested = header.as_ref().map(|h| h.service_id.as_str()).unwrap_or_default();
        if requested != self.service.id {
            return Err(fail(RelayError::UnknownService(format!(
                "{requested} (this connection is to service {})",
                self.service.id
            ))));
        }
        r.check_provable(&request).map_err(fail)?;
        let structure = validate::check_structure(&request, |s| r.suppliers.contains(s)).map_err(|e| {
            r.count_validation_failure(&self.service.id, &e);
            fail(e)
        })?;
        let key = r
            .suppliers
            .get(&structure.supplier)
            .ok_or_else(|| fail(RelayError::NotOurSupplier(structure.supplier.clone())))?;
        let arrival = r.arrival_height(&structure.header).await.map_err(fail)?;
        let started = Instant::now();
        let validated = validate::validate(&r.chain, &r.ring_verifier, &request, structure, arrival, false).await;
        r.metrics
            .validation_latency
            .with_label_values(&[&self.service.id, "eager"])
            .observe(started.elapsed().as_secs_f64());
        let valid = validated.map_err(|e| {
            r.count_validation_failure(&self.service.id, &e);
            fail(e)
        })?;
        // Storage refusing appends right now: the backend does not work for relays that cannot be claimed.
        if let Some(e) = r.appender.refusing() {
            return Err(fail(RelayError::from_storage(e)));
        }
        let costs = r.costs(&valid).await.map_err(fail)?;
        Ok(Arc::new(Current {
            request,
            valid,
            costs,
            arrival,
            key,
        }))
    }

    /// Opens the backend connection (with the configured headers and the Pocket context headers) and starts its
    /// reader.
    async fn connect(&self, supplier: &str, out: Outbox, activity: Arc<Activity>) -> Result<BackendLink, RelayError> {
        let limit = self.service.max_body_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        // An endpoint of the backend's pool in service (module `pool`); one whose connection fails is counted by
        // its circuit breaker and the next one in service is tried.
        let pool = &self.backend.pool;
        let mut tried: crate::relayer::pool::Tried = 0;
        let mut connected = None;
        while let Some(index) = pool.select(std::time::Instant::now(), tried) {
            tried |= 1u64.checked_shl(u32::try_from(index).unwrap_or(u32::MAX)).unwrap_or(0);
            let endpoint = pool.endpoint(index);
            // The endpoint's URL as configured (its path and query exactly: a WebSocket server may need them so),
            // or with `base_path` when one is set, as `ws`/`wss`.
            let url = match &self.backend.base_path {
                None => websocket_url(&endpoint.url),
                Some(_) => match endpoint.target.join("") {
                    Ok(uri) => websocket_url(&uri.to_string()),
                    Err(e) => {
                        connected = Some(Err(RelayError::Backend(format!("websocket backend url: {e}"))));
                        break;
                    }
                },
            };
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| RelayError::Backend(format!("websocket backend url {url}: {e}")))?;
            let headers = request.headers_mut();
            for (name, value) in &self.backend.headers {
                headers.insert(name.clone(), value.clone());
            }
            // The context headers the Go relayer sends a WebSocket backend (the supplier of the connection's first
            // relay).
            if let Ok(v) = self.service.id.parse() {
                headers.insert("pocket-service", v);
            }
            if let Ok(v) = supplier.parse() {
                headers.insert("pocket-supplier", v);
            }
            let connector = tokio_tungstenite::Connector::Rustls(Arc::clone(&self.backend.tls));
            let connecting =
                tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(connector));
            let (result, failure) = match tokio::time::timeout(self.service.response_header_timeout, connecting).await {
                Err(_) => (
                    Err(RelayError::BackendTimeout(self.service.response_header_timeout)),
                    None,
                ),
                Ok(Err(e)) => (
                    Err(RelayError::Backend(format!("websocket backend {url}: {e}"))),
                    match &e {
                        tungstenite::Error::Http(response) if !response.status().is_server_error() => None,
                        tungstenite::Error::Http(_) => Some("backend_5xx"),
                        _ => Some("connect_error"),
                    },
                ),
                Ok(Ok((socket, _))) => (Ok(socket), None),
            };
            let now = std::time::Instant::now();
            let transition = match (&result, failure) {
                (Ok(_), _) => pool.record_success(index, now),
                (Err(_), Some(_)) => pool.record_failure(index, now),
                (Err(_), None) => None,
            };
            if let Some(t) = transition {
                self.relayer
                    .endpoint_transition(&self.service, &self.backend, index, t, failure.unwrap_or_default());
            }
            connected = Some(result);
            if failure.is_none() {
                break;
            }
        }
        let connected = connected.unwrap_or_else(|| Err(self.relayer.fast_fail(&self.service, &self.backend)));
        let (outcome, status) = match &connected {
            Ok(_) => ("ok", "101"),
            Err(e) => (e.code().1, ""),
        };
        self.relayer
            .metrics
            .backend_requests
            .with_label_values(&[&self.service.id, outcome, status])
            .inc();
        let socket = connected?;
        let (sink, stream) = socket.split();
        let (current, current_rx) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let reader = tokio::spawn(read_backend(
            Arc::clone(&self.relayer),
            Arc::clone(&self.service),
            stream,
            current_rx,
            stop_rx,
            out,
            activity,
        ));
        Ok(BackendLink {
            sink,
            current,
            stop,
            reader,
        })
    }

    /// Answers the gateway with `error` (counted as a refusal; [`send_error`]).
    fn reject(&self, error: &RelayError, header: Option<SessionHeader>, out: &Outbox) {
        send_error(&self.relayer, &self.service.id, error, header, out);
    }
}

/// Counts `error` as a refusal and answers the gateway with it, unless its outbox is full: a gateway that does not
/// read its answers does not get this one either, and never holds the connection's loop (which must keep seeing
/// the shutdown's close and the idle timeout) on a send that cannot finish.
fn send_error(relayer: &Relayer, service_id: &str, error: &RelayError, header: Option<SessionHeader>, out: &Outbox) {
    relayer.count_rejected(service_id, RPC_TYPE, error);
    tracing::debug!(%error, service = service_id, "websocket relay refused");
    let response = error_response(error, header);
    if !out.try_send(Message::Binary(relay::encode_relay_response(&response).into())) {
        tracing::debug!(service = service_id, "websocket gateway not reading; refusal not sent");
    }
}

/// Reads the backend's messages until it closes, `stop` is set or a message cannot be answered; each one becomes a
/// relay answering the gateway's latest valid request (module docs). Returns the frame to close the gateway's
/// connection with, `None` when it should be closed plainly.
async fn read_backend(
    relayer: Arc<Relayer>,
    service: Arc<routes::Service>,
    mut stream: SplitStream<BackendSocket>,
    current: watch::Receiver<Option<Arc<Current>>>,
    mut stop: watch::Receiver<bool>,
    out: Outbox,
    activity: Arc<Activity>,
) -> Option<CloseFrame> {
    let service_id = service.id.as_str();
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => return None,
            received = stream.next() => received,
        };
        activity.touch();
        let payload = match received {
            None | Some(Ok(tungstenite::Message::Close(_))) => return None,
            Some(Err(tungstenite::Error::Capacity(e))) => {
                let error = RelayError::ResponseTooLarge {
                    limit: service.max_body_bytes,
                };
                tracing::debug!(error = %e, service = service_id, "websocket backend message too large");
                let header = current.borrow().as_ref().and_then(|c| header_of(&c.request));
                send_error(&relayer, service_id, &error, header, &out);
                return Some(close_frame(close_code::SIZE, "backend message too large"));
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, service = service_id, "websocket backend connection failed");
                return None;
            }
            Some(Ok(tungstenite::Message::Text(text))) => text.as_bytes().to_vec(),
            Some(Ok(tungstenite::Message::Binary(bytes))) => bytes.to_vec(),
            Some(Ok(_)) => continue,
        };
        let started = Instant::now();
        let Some(now) = current.borrow().clone() else {
            continue;
        };
        match emit(&relayer, now.clone(), payload).await {
            Ok(encoded) => {
                relayer.ws_metrics.emitted.with_label_values(&[service_id]).inc();
                if !out.send(encoded).await {
                    return None;
                }
                relayer
                    .ws_metrics
                    .forwarded
                    .with_label_values(&[service_id, "to_gateway"])
                    .inc();
                relayer.observe_phase(&relayer.metrics.post_backend, service_id, RPC_TYPE, started);
            }
            Err(error) => {
                let expired = matches!(error, RelayError::SessionExpired { .. });
                send_error(&relayer, service_id, &error, header_of(&now.request), &out);
                // Later messages of this session would be refused alike: the gateway reconnects with a new one.
                if expired {
                    return Some(close_frame(close_code::POLICY, "session expired"));
                }
            }
        }
    }
}

/// One backend message as a relay: charged to the app's meter, signed, appended (durably with `durable_ack`);
/// returns the encoded response for the gateway. The append and the charge's settlement finish even if the
/// connection goes away meanwhile (module `detach`).
async fn emit(relayer: &Arc<Relayer>, current: Arc<Current>, payload: Vec<u8>) -> Result<Vec<u8>, RelayError> {
    let charge = relayer.charge(&current.valid, current.costs.compute_units).await?;
    let response = relay::sign_response(&current.request, payload, &current.key);
    let this = Arc::clone(relayer);
    let durable = relayer.durable_ack;
    let service_id = current.valid.header.service_id.clone();
    detach::Detached::new(&relayer.detached, async move {
        let c = &current;
        this.mine(
            &c.request, &response, &c.valid, 200, &c.costs, c.arrival, durable, charge,
        )
        .await?;
        this.metrics
            .served
            .with_label_values(&[&service_id, RPC_TYPE, "200"])
            .inc();
        Ok(relay::encode_relay_response(&response))
    })
    .await
}

/// The queue to the gateway's writer, bounded in messages ([`OUTBOX`]) and in bytes: a relay's answer waits for
/// room, so a gateway that stops reading holds at most twice the service's message limit (plus
/// [`OUTBOX_SLACK_BYTES`]) of answers per connection, not [`OUTBOX`] messages of up to the limit each.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<tokio::sync::Semaphore>,
    capacity: usize,
}

/// A queued message and the outbox bytes it holds until written.
type Queued = (Message, Option<tokio::sync::OwnedSemaphorePermit>);

impl Outbox {
    /// An outbox for messages of at most `limit` bytes (the service's), and its receiving end.
    fn new(limit: usize) -> (Self, mpsc::Receiver<Queued>) {
        let capacity = limit
            .saturating_mul(2)
            .saturating_add(OUTBOX_SLACK_BYTES)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        let (tx, rx) = mpsc::channel(OUTBOX);
        let bytes = Arc::new(tokio::sync::Semaphore::new(capacity));
        (Self { tx, bytes, capacity }, rx)
    }

    /// Queues a relay's encoded answer once there is room; false when the writer is gone.
    async fn send(&self, encoded: Vec<u8>) -> bool {
        let n = u32::try_from(encoded.len().clamp(1, self.capacity)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&self.bytes).acquire_many_owned(n).await else {
            return false;
        };
        self.tx
            .send((Message::Binary(encoded.into()), Some(permit)))
            .await
            .is_ok()
    }

    /// Queues a small message (a refusal, a close frame) only if there is room now.
    fn try_send(&self, message: Message) -> bool {
        self.tx.try_send((message, None)).is_ok()
    }
}

/// The only writer of the gateway's socket: sends what the connection queues, until a close frame or the queue ends.
async fn write_gateway(mut sink: SplitSink<WebSocket, Message>, mut outbox: mpsc::Receiver<Queued>) {
    while let Some((message, _bytes)) = outbox.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

fn header_of(request: &RelayRequest) -> Option<SessionHeader> {
    request.meta.as_ref().and_then(|m| m.session_header.clone())
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// The backend's URL as a WebSocket URL: `http` → `ws`, `https` → `wss` (a `backends.websocket.url` may be
/// written either way).
fn websocket_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway that stops reading holds at most twice the message limit (plus the slack) of answers queued,
    /// not 64 messages of up to the limit each: a third answer of 100 KB waits until one is written.
    #[tokio::test]
    async fn the_outbox_is_bounded_in_bytes() {
        use futures::FutureExt as _;
        let (out, mut rx) = Outbox::new(100_000);
        assert!(out.send(vec![1; 100_000]).await);
        assert!(out.send(vec![2; 100_000]).await);
        let third = out.send(vec![3; 100_000]);
        tokio::pin!(third);
        assert_eq!(third.as_mut().now_or_never(), None, "264 KB of room, 200 KB queued");
        // Small messages still go (a close frame, a refusal).
        assert!(out.try_send(Message::Text("refused".into())));
        let (first, bytes) = rx.recv().await.unwrap();
        assert!(matches!(first, Message::Binary(b) if b.len() == 100_000));
        drop(bytes);
        assert_eq!(third.now_or_never(), Some(true), "room once one was written");
    }

    #[test]
    fn websocket_urls() {
        assert_eq!(websocket_url("http://a:1/ws"), "ws://a:1/ws");
        assert_eq!(websocket_url("https://a/ws"), "wss://a/ws");
        assert_eq!(websocket_url("ws://a:1"), "ws://a:1");
        assert_eq!(websocket_url("wss://a"), "wss://a");
    }
}
