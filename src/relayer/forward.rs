//! Forwarding a relay's `POKTHTTPRequest` to the service's backend (§2.7) and wrapping the answer as a
//! `POKTHTTPResponse`: the backend URI built from the relay URL's path and query only ([`super::backend_url`],
//! poktroll's rules), hop-by-hop headers dropped, backend headers (and `authentication`) added, pooled keep-alive
//! client with a per-endpoint connection cap, the endpoint chosen by the backend's pool (module `pool`) and a
//! failed attempt (broken connection, 5xx; never a timeout) retried on another endpoint, header and whole-request
//! timeouts, body limits that never
//! buffer past the service's `max_body_size_bytes`. The backend is told who the relay is for (`Pocket-Supplier`,
//! `Pocket-Service`, `Pocket-Application`, as the Go relayer does) and is not asked for a content encoding (the
//! gateway client's `Accept-Encoding` is not forwarded); an answer compressed anyway (gzip, deflate) is decoded
//! before it is signed, since gateways read the body (a JSON-RPC answer they check). A `grpc` backend is reached
//! over HTTP/2 with `te: trailers`, its trailers folded into the answer's headers. An answer of a streamed media
//! type (SSE, NDJSON) comes back with its head only, its body read by module `stream`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::HeaderMap;
use http_body_util::BodyExt as _;

use super::Relayer;
use super::error::RelayError;
use super::pool::{Transition, Tried};
use super::routes::{Backend, RpcType, Service};
use crate::protocol::wire::{HttpHeader, PoktHttpRequest, PoktHttpResponse};

impl Relayer {
    /// Forwards the relay's request and reads the answer: whole, or, when the relay's transport `streams` (a
    /// POSTed relay; a gRPC one reads every answer whole) and the answer is of a streamed media type
    /// ([`super::stream::is_streaming`]), its head only (module `stream`). The service's request timeout bounds
    /// the whole answer, or a stream's head, retries included.
    ///
    /// The request goes to the endpoint the backend's pool selects (module `pool`); an answer the circuit breaker
    /// counts as a failure (a transport error that is not a timeout, a 5xx, a server-side `grpc-status`) is tried
    /// again, up to `max_retries` times, on another endpoint in service (a backend of one URL: on it, after a
    /// refused connection only). The answer returned is the last attempt's. No endpoint in service:
    /// [`RelayError::BackendUnavailable`].
    pub(super) async fn forward(
        &self,
        service: &Service,
        backend: &Backend,
        payload: PoktHttpRequest,
        origin: Origin<'_>,
        streams: bool,
    ) -> Result<Forwarded, RelayError> {
        let started = Instant::now();
        let forwarded = async {
            let request = prepare(service, backend, payload, origin)?;
            self.attempts(service, backend, &request, streams).await
        };
        let result = tokio::time::timeout(service.request_timeout, forwarded)
            .await
            .unwrap_or(Err(RelayError::BackendTimeout(service.request_timeout)));
        let status = result.as_ref().map(|f| match f {
            Forwarded::Whole(r) => r.status_code,
            Forwarded::Stream(head) => u32::from(head.response.status().as_u16()),
        });
        self.observe_backend(service, started, status);
        result
    }

    /// The attempts of one request over the backend's pool (see [`Relayer::forward`]).
    async fn attempts(
        &self,
        service: &Service,
        backend: &Backend,
        request: &Prepared,
        streams: bool,
    ) -> Result<Forwarded, RelayError> {
        let pool = &backend.pool;
        let Some(mut index) = pool.select(Instant::now(), 0) else {
            return Err(self.fast_fail(service, backend));
        };
        let mut tried: Tried = 0;
        let mut retries = 0;
        loop {
            tried |= 1u64.checked_shl(u32::try_from(index).unwrap_or(u32::MAX)).unwrap_or(0);
            let (outcome, class) = self.attempt(service, backend, index, request, streams).await;
            let now = Instant::now();
            let transition = match class {
                Class::Success => pool.record_success(index, now),
                Class::Failure { .. } => pool.record_failure(index, now),
                Class::Neutral => None,
            };
            if let Some(t) = transition {
                self.endpoint_transition(service, backend, index, t, class.reason());
            }
            let Class::Failure { connect, .. } = class else {
                return outcome;
            };
            // A streamed answer is the gateway's from its head on; and retries are bounded. As in Go, a connection
            // broken after the request left is retried too: blockchain backends' writes (a transaction broadcast)
            // are idempotent by hash, and a relay answered elsewhere is one the supplier is paid for.
            if matches!(outcome, Ok(Forwarded::Stream(_))) || retries >= backend.max_retries {
                return outcome;
            }
            // Another endpoint in service; a backend of one URL retries it after a refused connection (the
            // request did nothing there).
            let next = pool
                .select(now, tried)
                .or_else(|| (pool.len() == 1 && connect).then_some(index));
            let Some(next) = next else {
                return outcome;
            };
            tracing::debug!(
                service = %service.id,
                endpoint = %pool.endpoint(next).name,
                previous = %pool.endpoint(index).name,
                retry = retries + 1,
                "retrying the relay on another backend endpoint"
            );
            drop(outcome);
            retries += 1;
            index = next;
        }
    }

    /// One attempt on endpoint `index`: its answer (whole, or a stream's head) and how the breaker counts it.
    async fn attempt(
        &self,
        service: &Service,
        backend: &Backend,
        index: usize,
        request: &Prepared,
        streams: bool,
    ) -> (Result<Forwarded, RelayError>, Class) {
        let head = match self.send(service, backend, index, request).await {
            Ok(head) => head,
            Err((e, class)) => return (Err(e), class),
        };
        // A stream the backend compressed anyway is read whole and decoded: its batches would be compressed
        // bytes cut at arbitrary line ends.
        let headers = head.response.headers();
        if streams && super::stream::is_streaming(headers) && !is_encoded(headers) {
            let class = Class::of_status(u32::from(head.response.status().as_u16()));
            return (Ok(Forwarded::Stream(head)), class);
        }
        match collect(service, head).await {
            Ok(whole) => {
                let class = Class::of_status(mined_status(&whole));
                (Ok(Forwarded::Whole(whole)), class)
            }
            Err(e @ RelayError::Backend(_)) => (
                Err(e),
                Class::Failure {
                    connect: false,
                    reason: "transport_error",
                },
            ),
            Err(e) => (Err(e), Class::Neutral),
        }
    }

    /// A relay refused because no endpoint of `backend` is in service, counted (`ha_relayer_fast_fails_total`).
    pub(super) fn fast_fail(&self, service: &Service, backend: &Backend) -> RelayError {
        self.metrics.fast_fails.with_label_values(&[&service.id]).inc();
        RelayError::BackendUnavailable(format!(
            "no endpoint of the {} backend of service {} is in service",
            backend.rpc_type.config_key(),
            service.id
        ))
    }

    /// Logs and exposes a health change of endpoint `index` ([`report_transition`]).
    pub(super) fn endpoint_transition(
        &self,
        service: &Service,
        backend: &Backend,
        index: usize,
        transition: Transition,
        reason: &str,
    ) {
        report_transition(&self.metrics, &service.id, backend, index, transition, reason);
    }

    /// Counts a backend request `started` then, by its outcome (the answer's status or the error).
    fn observe_backend(&self, service: &Service, started: Instant, result: Result<u32, &RelayError>) {
        let (outcome, status) = match result {
            Ok(code) if code >= 500 => ("5xx", code.to_string()),
            Ok(code) => ("ok", code.to_string()),
            Err(e) => (e.code().1, String::new()),
        };
        self.metrics
            .backend_requests
            .with_label_values(&[&service.id, outcome, &status])
            .inc();
        self.metrics
            .backend_latency
            .with_label_values(&[&service.id, outcome])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sends the prepared request to endpoint `index` and reads the answer's head (status and headers), not its
    /// body; the answer keeps the endpoint's connection permit it was sent with until it is dropped.
    async fn send(
        &self,
        service: &Service,
        backend: &Backend,
        index: usize,
        request: &Prepared,
    ) -> Result<BackendHead, (RelayError, Class)> {
        let endpoint = backend.pool.endpoint(index);
        // Only the path and query of the relay's URL (often the supplier's public URL) reach the backend.
        let uri = endpoint
            .target
            .join(&request.url)
            .map_err(|e| (RelayError::Malformed(format!("payload url: {e}")), Class::Neutral))?;
        let permit = match &endpoint.permits {
            Some(permits) => Some(Arc::clone(permits).acquire_owned().await.map_err(|_| {
                (
                    RelayError::Backend("backend connection pool closed".into()),
                    Class::Neutral,
                )
            })?),
            None => None,
        };
        let mut http_request = http::Request::new(http_body_util::Full::new(request.body.clone()));
        *http_request.method_mut() = request.method.clone();
        *http_request.uri_mut() = uri;
        *http_request.headers_mut() = request.headers.clone();
        let response =
            match tokio::time::timeout(service.response_header_timeout, backend.client.request(http_request)).await {
                Err(_) => {
                    return Err((
                        RelayError::BackendTimeout(service.response_header_timeout),
                        Class::Neutral,
                    ));
                }
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    let class = if is_timeout(&e) {
                        Class::Neutral
                    } else {
                        Class::Failure {
                            connect: e.is_connect(),
                            reason: if e.is_connect() {
                                "connect_error"
                            } else {
                                "transport_error"
                            },
                        }
                    };
                    return Err((RelayError::Backend(error_chain(&e)), class));
                }
            };
        Ok(BackendHead {
            response,
            _permit: permit,
        })
    }
}

/// Logs a health change of endpoint `index` of `backend` (WARN down with the reason and failure count, INFO up
/// with the downtime) and sets its `ha_relayer_backend_health_status`.
pub(super) fn report_transition(
    metrics: &super::metrics::Metrics,
    service_id: &str,
    backend: &Backend,
    index: usize,
    transition: Transition,
    reason: &str,
) {
    let endpoint = backend.pool.endpoint(index);
    let gauge = metrics.backend_health.with_label_values(&[service_id, &endpoint.name]);
    match transition {
        Transition::Down { failures } => {
            gauge.set(0);
            tracing::warn!(
                service = %service_id,
                backend = backend.rpc_type.config_key(),
                endpoint = %endpoint.name,
                failures,
                reason,
                "backend endpoint taken out of service"
            );
        }
        Transition::Up { downtime } => {
            gauge.set(1);
            tracing::info!(
                service = %service_id,
                backend = backend.rpc_type.config_key(),
                endpoint = %endpoint.name,
                downtime_ms = u64::try_from(downtime.as_millis()).unwrap_or(u64::MAX),
                "backend endpoint back in service"
            );
        }
    }
}

/// How the circuit breaker counts an attempt's outcome (module `pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// An answer below 500.
    Success,
    /// A transport error that is not a timeout, or a 5xx; `connect`: the connection was refused or failed.
    Failure { connect: bool, reason: &'static str },
    /// Neither (a timeout, an answer over the body limit, a malformed relay).
    Neutral,
}

impl Class {
    fn of_status(status: u32) -> Self {
        if (500..600).contains(&status) {
            Self::Failure {
                connect: false,
                reason: "backend_5xx",
            }
        } else {
            Self::Success
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Failure { reason, .. } => reason,
            Self::Success | Self::Neutral => "",
        }
    }
}

/// Whether a transport error is a timeout (a connect timeout): not a breaker failure, as in Go.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A relay's request as every attempt sends it (the URI is joined per endpoint).
#[derive(Debug)]
struct Prepared {
    url: String,
    method: http::Method,
    headers: HeaderMap,
    body: Bytes,
}

/// The request of `payload` for `backend`: method, headers (hop-by-hop dropped, the Pocket context, the
/// backend's headers and authentication over the relay's), body.
fn prepare(
    service: &Service,
    backend: &Backend,
    payload: PoktHttpRequest,
    origin: Origin<'_>,
) -> Result<Prepared, RelayError> {
    let method = if payload.method.is_empty() {
        http::Method::POST
    } else {
        http::Method::from_bytes(payload.method.as_bytes())
            .map_err(|e| RelayError::Malformed(format!("payload method: {e}")))?
    };
    let mut headers = HeaderMap::with_capacity(payload.header.len() + backend.headers.len());
    for (name, header) in &payload.header {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| RelayError::Malformed(format!("payload header {name:?}: {e}")))?;
        // `Accept-Encoding` is the gateway client's: the signed body must be one the gateway can read (the
        // Go relayer decodes gzip for the same reason), so the backend is asked for none.
        if is_hop_by_hop(&name) || name == http::header::ACCEPT_ENCODING {
            continue;
        }
        for value in &header.values {
            let value = http::HeaderValue::from_str(value)
                .map_err(|e| RelayError::Malformed(format!("payload header {name}: {e}")))?;
            headers.append(name.clone(), value);
        }
    }
    // Who the relay is for, as the Go relayer tells backends (set over any the gateway sent; the operator's
    // backend headers below still win).
    for (name, value) in [
        (POCKET_SUPPLIER, origin.supplier),
        (POCKET_SERVICE, service.id.as_str()),
        (POCKET_APPLICATION, origin.application),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(http::HeaderName::from_static(name), value);
        }
    }
    for (name, value) in &backend.headers {
        headers.insert(name.clone(), value.clone());
    }
    // gRPC requires `te: trailers` on every call (its HTTP/2 protocol); hop-by-hop, so dropped above.
    if backend.rpc_type == RpcType::Grpc {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    Ok(Prepared {
        url: payload.url,
        method,
        headers,
        body: Bytes::from(payload.body_bz),
    })
}

/// Backend request header naming the relay's supplier operator (Go relayer's `Pocket-Supplier`).
pub const POCKET_SUPPLIER: &str = "pocket-supplier";
/// … the relay's service (`Pocket-Service`).
pub const POCKET_SERVICE: &str = "pocket-service";
/// … the relay's application (`Pocket-Application`).
pub const POCKET_APPLICATION: &str = "pocket-application";

/// Who a relay is for, told to the backend ([`POCKET_SUPPLIER`], [`POCKET_APPLICATION`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    /// The supplier operator address the relay names.
    pub supplier: &'a str,
    /// The application of the relay's session.
    pub application: &'a str,
}

/// A backend's answer: whole, or a stream whose head was read (module `stream`).
#[derive(Debug)]
pub(super) enum Forwarded {
    Whole(PoktHttpResponse),
    Stream(BackendHead),
}

/// A backend's answer whose head was read ([`Relayer::send`]), its body not yet.
#[derive(Debug)]
pub(super) struct BackendHead {
    pub(super) response: http::Response<hyper::body::Incoming>,
    /// The backend connection permit (`max_conns_per_host`), held until the body is read.
    pub(super) _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The backend's headers as a `POKTHTTPResponse` carries them (one entry per name, values in order).
pub(super) fn response_headers(headers: &HeaderMap) -> BTreeMap<String, HttpHeader> {
    let mut header = BTreeMap::new();
    fold_headers(&mut header, headers);
    header
}

/// Adds `headers` to a `POKTHTTPResponse`'s header map (values of one name kept in order).
fn fold_headers(header: &mut BTreeMap<String, HttpHeader>, headers: &HeaderMap) {
    for (name, value) in headers {
        let entry = header.entry(name.as_str().to_string()).or_insert_with(|| HttpHeader {
            key: name.as_str().to_string(),
            values: Vec::new(),
        });
        entry
            .values
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
}

/// Reads the body of the answer `head` (never past the service's `max_body_size_bytes`) into a `POKTHTTPResponse`.
async fn collect(service: &Service, head: BackendHead) -> Result<PoktHttpResponse, RelayError> {
    let response = head.response;
    let status = response.status().as_u16();
    let limit = service.max_body_bytes;
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(RelayError::ResponseTooLarge { limit });
    }
    let mut header = response_headers(response.headers());
    let body = match http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => {
            // Trailers (gRPC's `grpc-status` and `grpc-message`) are folded into the headers: a `POKTHTTPResponse`
            // has no trailers, and the gateway needs the status to read the answer.
            if let Some(trailers) = collected.trailers() {
                fold_headers(&mut header, trailers);
            }
            collected.to_bytes()
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(RelayError::ResponseTooLarge { limit });
        }
        Err(e) => return Err(RelayError::Backend(format!("response body: {e}"))),
    };
    let body_bz = decode_content(&mut header, body.to_vec(), limit)?;
    Ok(PoktHttpResponse {
        status_code: u32::from(status),
        header,
        body_bz,
    })
}

/// Whether an answer's body has a content encoding (other than `identity`).
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
}

/// A body the backend compressed anyway (`Content-Encoding` `gzip`, `x-gzip` or `deflate`, though it was asked
/// for none) decoded, never past `limit`, its `Content-Encoding` and `Content-Length` dropped: the gateway reads
/// the signed body as it is (the Go relayer decodes gzip for the same reason). Other encodings are kept as sent.
fn decode_content(
    header: &mut BTreeMap<String, HttpHeader>,
    body: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, RelayError> {
    use std::io::Read as _;
    let encoding = header
        .get("content-encoding")
        .and_then(|h| h.values.first())
        .map(|v| v.trim().to_ascii_lowercase());
    // An empty body (a HEAD, 204 or 304 answer marked compressed) has nothing to decode.
    if body.is_empty() && encoding.is_some() {
        header.remove("content-encoding");
        return Ok(body);
    }
    let reader: Box<dyn std::io::Read + '_> = match encoding.as_deref() {
        Some("gzip" | "x-gzip") => Box::new(flate2::read::GzDecoder::new(body.as_slice())),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(body.as_slice())),
        _ => return Ok(body),
    };
    let mut decoded = Vec::new();
    match reader.take(limit as u64 + 1).read_to_end(&mut decoded) {
        Err(e) => {
            return Err(RelayError::Backend(format!(
                "response body: cannot decode its content encoding: {e}"
            )));
        }
        Ok(n) if n > limit => return Err(RelayError::ResponseTooLarge { limit }),
        Ok(_) => {}
    }
    header.remove("content-encoding");
    header.remove("content-length");
    Ok(decoded)
}

/// The status a relay is mined by (the 5xx rule, module docs step 4): the backend's HTTP status, except that a
/// gRPC answer (HTTP 200 whatever happened) failing with a server-side `grpc-status` counts as the HTTP status
/// gRPC maps that code to (`UNKNOWN`, `INTERNAL`, `DATA_LOSS` 500, `UNIMPLEMENTED` 501, `UNAVAILABLE` 503,
/// `DEADLINE_EXCEEDED` 504): the supplier is not paid for its backend's failures over either protocol. A
/// client-side code (`INVALID_ARGUMENT`, `NOT_FOUND`, …) is a served relay as a 4xx is.
pub(super) fn mined_status(response: &PoktHttpResponse) -> u32 {
    if response.status_code >= 500 {
        return response.status_code;
    }
    let grpc_status = response
        .header
        .get("grpc-status")
        .and_then(|h| h.values.first())
        .and_then(|v| v.trim().parse::<u32>().ok());
    match grpc_status {
        Some(2 | 13 | 15) => 500,
        Some(12) => 501,
        Some(14) => 503,
        Some(4) => 504,
        _ => response.status_code,
    }
}

pub(super) fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::*;
    [
        HOST,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        UPGRADE,
        TE,
        TRAILER,
        PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
