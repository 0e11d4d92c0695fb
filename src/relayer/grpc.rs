//! gRPC relays: a gateway calls the unary method `/pocket.service.RelayService/SendRelay` on the relay address
//! (HTTP/2, cleartext with prior knowledge or TLS in front; `content-type: application/grpc`), its one message a
//! protobuf `RelayRequest` and the answer a `RelayResponse`, as the Go HA relayer's protocol has it (its
//! `docs/PROTOCOL_SPEC.md`, "gRPC Protocol"; metadata `rpc-type` names the backend, as the `Rpc-Type` header does
//! for POSTed relays).
//!
//! Everything between the message and the answer is the POSTed relay's pipeline (`Relayer::serve_relay`): the
//! same limits, body budget, validation, metering, forwarding, signing and mining. What this module owns is the
//! gRPC framing around it:
//! - the request body is exactly one length-prefixed message (1 flag byte, 4 bytes big-endian length); a message
//!   compressed with `grpc-encoding: gzip` is inflated, never past the relay size limit; any other encoding is
//!   `UNIMPLEMENTED` with `grpc-accept-encoding` naming what is accepted (gRPC's compression spec);
//! - a served relay is answered with one uncompressed message and the trailer `grpc-status: 0`;
//! - a refused relay is a trailers-only answer: a gRPC status code for its reason ([`grpc_code`]), the reason in
//!   `grpc-message`, and in `grpc-status-details-bin` a `google.rpc.Status` whose one detail is the
//!   `RelayResponse` carrying the protocol's `RelayMinerError` (the same one a POSTed relay is refused with), so a
//!   gateway keys on the same stable code over either transport;
//! - any other method is `UNIMPLEMENTED`.
//!
//! The backend side of a gRPC relay is the `POKTHTTPRequest` in the payload (a gRPC call to the supplier's
//! backend: `POST /pkg.Service/Method`, `content-type: application/grpc`, a framed body), forwarded over HTTP/2 to
//! the service's `grpc` backend with its trailers folded into the signed `POKTHTTPResponse`'s headers (module
//! `forward`). gRPC-Web and client or bidirectional streaming relays are not served.
//!
//! Metrics, with the Go relayer's names: `ha_relayer_grpc_relays_total{service_id}` (served),
//! `ha_relayer_grpc_relay_errors_total{service_id,reason}` (refused, reason as `RelayMinerError.description`) and
//! `ha_relayer_grpc_relay_latency_seconds{service_id}`; the relay metrics (`ha_relayer_relays_*`) count gRPC relays
//! as they count POSTed ones.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use http::{HeaderName, HeaderValue, StatusCode};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use prost::Message as _;

use super::{RPC_TYPE_HEADER, RelayError, Relayer, RpcType, error_response};
use crate::protocol::relay;
use crate::telemetry::{Telemetry, TelemetryError};

/// The relay service's one method (Go HA relayer `RelayServiceMethodPath`).
pub const SEND_RELAY_PATH: &str = "/pocket.service.RelayService/SendRelay";
/// `type_url` of the `RelayResponse` detail in `grpc-status-details-bin`.
pub const RELAY_RESPONSE_TYPE_URL: &str = "type.googleapis.com/pocket.service.RelayResponse";
/// Bytes before each message: a compression flag and a 4-byte big-endian length.
const FRAME_PREFIX: usize = 5;
/// Message encodings accepted in `grpc-encoding`.
const ACCEPT_ENCODING: &str = "identity,gzip";

/// gRPC status codes used here (`google.golang.org/grpc/codes`).
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// The client's deadline or ours passed.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// Not a valid request.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// No such service here.
    pub const NOT_FOUND: i32 = 5;
    /// The caller may not have this relay served.
    pub const PERMISSION_DENIED: i32 = 7;
    /// Over a limit (size, the application's stake).
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// Not in a state to serve it (session not started, or over).
    pub const FAILED_PRECONDITION: i32 = 9;
    /// No such method, or an unsupported message encoding.
    pub const UNIMPLEMENTED: i32 = 12;
    /// Something on our side failed.
    pub const INTERNAL: i32 = 13;
    /// Retry later.
    pub const UNAVAILABLE: i32 = 14;
}

/// `google.rpc.Status`, the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The status message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Details: here the refused relay's `RelayResponse`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Why a request body is not one gRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a single complete length-prefixed message.
    #[error("{0}")]
    Malformed(String),
    /// Compressed with an encoding not accepted here.
    #[error("message encoding `{0}` is not supported (accepted: {ACCEPT_ENCODING})")]
    Encoding(String),
    /// The (inflated) message is larger than the limit.
    #[error("message exceeds the {0}-byte limit")]
    TooLarge(usize),
}

/// The one message of a unary call's request body: its 5-byte prefix checked, inflated when its flag says it is
/// compressed with `encoding` (`grpc-encoding`; only gzip is accepted), never larger than `limit`.
pub fn decode_unary(body: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, FrameError> {
    let Some((&flag, rest)) = body.split_first() else {
        return Err(FrameError::Malformed("empty request: one message expected".into()));
    };
    let Some((len, message)) = rest.split_first_chunk::<4>() else {
        return Err(FrameError::Malformed("truncated message prefix".into()));
    };
    let len = u32::from_be_bytes(*len) as usize;
    if message.len() != len {
        return Err(FrameError::Malformed(format!(
            "the message prefix declares {len} bytes, the body holds {}: a unary call sends exactly one message",
            message.len()
        )));
    }
    match flag {
        0 if len > limit => Err(FrameError::TooLarge(limit)),
        0 => Ok(message.to_vec()),
        1 => match encoding.map(str::trim) {
            Some("gzip") => {
                let mut inflated = Vec::new();
                let read = flate2::read::GzDecoder::new(message)
                    .take(limit as u64 + 1)
                    .read_to_end(&mut inflated);
                match read {
                    Err(e) => Err(FrameError::Malformed(format!("gzip message: {e}"))),
                    Ok(n) if n > limit => Err(FrameError::TooLarge(limit)),
                    Ok(_) => Ok(inflated),
                }
            }
            // gRPC: a compressed message without an encoding (or with `identity`) is a protocol error.
            None | Some("identity") => Err(FrameError::Malformed(
                "compressed message without a grpc-encoding".into(),
            )),
            Some(other) => Err(FrameError::Encoding(other.to_string())),
        },
        other => Err(FrameError::Malformed(format!(
            "message flag {other} is neither 0 nor 1"
        ))),
    }
}

/// `message` as one uncompressed length-prefixed gRPC message.
pub fn encode_frame(message: &[u8]) -> Vec<u8> {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// The gRPC status a refused relay is answered with: the client's mistakes as `INVALID_ARGUMENT`, what it may not
/// have served as `PERMISSION_DENIED`, limits as `RESOURCE_EXHAUSTED`, what to retry later as `UNAVAILABLE` (as
/// the Go relayer maps validation, meter and backend failures).
pub fn grpc_code(error: &RelayError) -> i32 {
    match error {
        RelayError::Malformed(_) => code::INVALID_ARGUMENT,
        RelayError::UnknownService(_) => code::NOT_FOUND,
        RelayError::NotOurSupplier(_) | RelayError::RingSignature(_) | RelayError::SessionMismatch(_) => {
            code::PERMISSION_DENIED
        }
        RelayError::SessionExpired { .. } => code::FAILED_PRECONDITION,
        RelayError::OverServiced(_) | RelayError::RequestTooLarge { .. } | RelayError::ResponseTooLarge { .. } => {
            code::RESOURCE_EXHAUSTED
        }
        RelayError::RelayTooLarge(_) => code::RESOURCE_EXHAUSTED,
        RelayError::BackendTimeout(_) | RelayError::RequestTimeout(_) => code::DEADLINE_EXCEEDED,
        RelayError::Chain(_)
        | RelayError::Backend(_)
        | RelayError::Storage(_)
        | RelayError::MeterUnavailable(_)
        | RelayError::Overloaded { .. }
        | RelayError::WebSocketsFull { .. }
        | RelayError::SessionNotStarted { .. }
        | RelayError::MemoryThreshold(_)
        | RelayError::BackendUnavailable(_) => code::UNAVAILABLE,
    }
}

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, …; not gRPC-Web).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct == "application/grpc" || (ct.starts_with("application/grpc") && !ct.starts_with("application/grpc-web"))
        })
}

/// gRPC relay metrics (Go relayer names).
#[derive(Clone)]
pub(crate) struct GrpcMetrics {
    relays: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
}

impl GrpcMetrics {
    pub(crate) fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        let r = telemetry.registry();
        let relays = IntCounterVec::new(
            Opts::new(
                "ha_relayer_grpc_relays_total",
                "gRPC relays served (SendRelay answered with a RelayResponse)",
            ),
            &["service_id"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "ha_relayer_grpc_relay_errors_total",
                "gRPC relay calls refused, by reason (the RelayMinerError description, unimplemented, bad_frame)",
            ),
            &["service_id", "reason"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ha_relayer_grpc_relay_latency_seconds",
                "Time to answer a served gRPC relay",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["service_id"],
        )?;
        r.register(Box::new(relays.clone()))?;
        r.register(Box::new(errors.clone()))?;
        r.register(Box::new(latency.clone()))?;
        Ok(Self {
            relays,
            errors,
            latency,
        })
    }
}

/// A gRPC call on the relay address: `SendRelay` served through [`Relayer::serve_relay`], anything else refused.
pub(super) async fn handle(relayer: Arc<Relayer>, path: &str, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let metrics = &relayer.grpc_metrics;
    if path != SEND_RELAY_PATH {
        metrics.errors.with_label_values(&["", "unimplemented"]).inc();
        return trailers_only(code::UNIMPLEMENTED, &format!("unknown method {path}"), None);
    }
    let rpc_type = headers
        .get(RPC_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RpcType::from_header);
    let rt = super::rpc_type_label(rpc_type);
    let encoding = headers.get("grpc-encoding").and_then(|v| v.to_str().ok());
    let result = match relayer.read_body(&headers, body, FRAME_PREFIX).await {
        Ok((bytes, mut reserved)) => {
            // A compressed message is inflated only once the most it may inflate to (the size limit) is reserved
            // too, so messages waiting for the budget hold their compressed bytes alone; what the relay holds from
            // then on is the larger of its body and its message.
            let limit = relayer.max_request_bytes;
            let room = match (&relayer.body_budget, bytes.first()) {
                (Some(budget), Some(1)) => {
                    let most = limit.saturating_add(1).saturating_sub(bytes.len());
                    budget.reserve(&mut reserved, most).await
                }
                _ => Ok(()),
            };
            match room.map(|()| decode_unary(&bytes, encoding, limit)) {
                Err(e) => Err((e, String::new(), None)),
                Ok(Ok(message)) => {
                    if let Some(budget) = &relayer.body_budget {
                        budget.shrink(&mut reserved, bytes.len().max(message.len()));
                    }
                    drop(bytes);
                    relayer.serve_relay(rpc_type, false, &message, started, reserved).await
                }
                Ok(Err(FrameError::Encoding(e))) => {
                    metrics.errors.with_label_values(&["", "bad_frame"]).inc();
                    return trailers_only(code::UNIMPLEMENTED, &FrameError::Encoding(e).to_string(), None);
                }
                Ok(Err(FrameError::TooLarge(limit))) => {
                    Err((RelayError::RequestTooLarge { limit }, String::new(), None))
                }
                Ok(Err(e @ FrameError::Malformed(_))) => {
                    Err((RelayError::Malformed(e.to_string()), String::new(), None))
                }
            }
        }
        Err(e) => Err((e, String::new(), None)),
    };
    match result {
        // `serve_relay` reads every answer of a gRPC relay whole (`streams` false).
        Ok((super::stream::Answer::Streamed(_), service)) => {
            tracing::error!(service, "a gRPC relay's answer was streamed; refused");
            metrics.errors.with_label_values(&[&service, "internal"]).inc();
            trailers_only(code::INTERNAL, "internal error: a streamed answer over gRPC", None)
        }
        Ok((super::stream::Answer::Signed(encoded), service)) => {
            let elapsed = started.elapsed().as_secs_f64();
            relayer
                .metrics
                .latency
                .with_label_values(&[&service, rt])
                .observe(elapsed);
            metrics.latency.with_label_values(&[&service]).observe(elapsed);
            metrics.relays.with_label_values(&[&service]).inc();
            message_with_ok(encode_frame(&encoded))
        }
        Err((error, service, header)) => {
            relayer.count_rejected(&service, rt, &error);
            metrics.errors.with_label_values(&[&service, error.code().1]).inc();
            tracing::debug!(%error, service, "gRPC relay refused");
            let refused = relay::encode_relay_response(&error_response(&error, header));
            trailers_only(grpc_code(&error), &error.to_string(), Some(refused))
        }
    }
}

/// HTTP/2 200 with the gRPC content type: what every gRPC answer starts with, whatever its status.
fn grpc_head() -> http::response::Builder {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("grpc-accept-encoding", ACCEPT_ENCODING)
}

/// One message, then the `grpc-status: 0` trailer.
fn message_with_ok(frame: Vec<u8>) -> Response {
    let mut trailers = HeaderMap::new();
    trailers.insert(HeaderName::from_static("grpc-status"), HeaderValue::from_static("0"));
    let frames = futures::stream::iter([
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(frame))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ]);
    grpc_head()
        .body(Body::new(http_body_util::StreamBody::new(frames)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A trailers-only answer (status in the head, no message): `code`, `message` percent-encoded as gRPC wants it,
/// and, for a refused relay, its `RelayResponse` inside `grpc-status-details-bin`.
fn trailers_only(code: i32, message: &str, refused: Option<Vec<u8>>) -> Response {
    let mut head = grpc_head()
        .header("grpc-status", code.to_string())
        .header("grpc-message", percent_encode(message));
    if let Some(refused) = refused {
        let status = RpcStatus {
            code,
            message: message.to_string(),
            details: vec![Any {
                type_url: RELAY_RESPONSE_TYPE_URL.into(),
                value: refused,
            }],
        };
        let details = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
        head = head.header("grpc-status-details-bin", details);
    }
    head.body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write as _;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_frame_round_trips_and_its_prefix_is_grpcs() {
        let frame = encode_frame(b"hello");
        assert_eq!(frame, [0, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(decode_unary(&frame, None, 5).unwrap(), b"hello");
        assert_eq!(decode_unary(&encode_frame(b""), None, 5).unwrap(), b"");
    }

    #[test]
    fn a_body_that_is_not_exactly_one_message_is_malformed() {
        let frame = encode_frame(b"hello");
        for bad in [&[][..], &frame[..3], &frame[..7]] {
            assert!(
                matches!(decode_unary(bad, None, 100), Err(FrameError::Malformed(_))),
                "{bad:?}"
            );
        }
        let two = [encode_frame(b"a"), encode_frame(b"b")].concat();
        assert!(matches!(decode_unary(&two, None, 100), Err(FrameError::Malformed(_))));
        let mut flagged = frame.clone();
        flagged[0] = 2;
        assert!(matches!(
            decode_unary(&flagged, None, 100),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(decode_unary(&frame, None, 4), Err(FrameError::TooLarge(4)));
    }

    #[test]
    fn gzip_messages_are_inflated_within_the_limit_and_other_encodings_refused() {
        let message = vec![7u8; 1000];
        let packed = gzip(&message);
        let mut frame = encode_frame(&packed);
        frame[0] = 1;
        assert_eq!(decode_unary(&frame, Some("gzip"), 1000).unwrap(), message);
        // A small message inflating past the limit (a zip bomb) is refused without inflating it all.
        assert_eq!(decode_unary(&frame, Some("gzip"), 999), Err(FrameError::TooLarge(999)));
        assert_eq!(
            decode_unary(&frame, Some("snappy"), 1000),
            Err(FrameError::Encoding("snappy".into()))
        );
        assert!(matches!(
            decode_unary(&frame, None, 1000),
            Err(FrameError::Malformed(_))
        ));
        let mut garbage = encode_frame(b"not gzip");
        garbage[0] = 1;
        assert!(matches!(
            decode_unary(&garbage, Some("gzip"), 1000),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn grpc_content_types_are_told_from_grpc_web_and_others() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/grpc-web+proto"));
        assert!(!with("application/x-protobuf"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("bad 100% ünï"), "bad 100%25 %C3%BCn%C3%AF");
    }
}
