//! gRPC for the demo backend: the `demo.Echo` service, written by hand (no codegen) with hand-written prost
//! messages, served through `tonic::server::Grpc` + `tonic_prost::ProstCodec` inside axum handlers. Any tonic
//! client can call it with `tonic::client::Grpc` and the paths [`ECHO_PATH`] / [`ECHO_STREAM_PATH`].
//!
//! ```proto
//! package demo;
//! service Echo {
//!   rpc Echo(EchoRequest) returns (EchoResponse);
//!   rpc EchoStream(EchoStreamRequest) returns (stream EchoResponse);
//! }
//! message EchoRequest { string message = 1; bytes payload = 2; }
//! message EchoResponse { string message = 1; bytes payload = 2; uint64 seq = 3; }
//! message EchoStreamRequest { string message = 1; uint32 count = 2; uint32 interval_ms = 3; }
//! ```
//!
//! It also answers the gRPC health checking protocol's `grpc.health.v1.Health/Check` ([`HEALTH_CHECK_PATH`]):
//! `SERVING` for the server (`service` empty) and `demo.Echo`, `NOT_SERVING` for the service named
//! [`NOT_SERVING_SERVICE`] (so tests can have a backend that answers but is not healthy), and the gRPC status
//! `NOT_FOUND` for any other service, as grpc-go's health server does.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::server::Grpc;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use super::Shared;
use super::routes::ticks;
use super::stats::bump;

/// Path of the unary method.
pub const ECHO_PATH: &str = "/demo.Echo/Echo";
/// Path of the server-streaming method.
pub const ECHO_STREAM_PATH: &str = "/demo.Echo/EchoStream";

/// `Echo` request. A `message` of the form `status:<code>` makes the call fail with that gRPC status code, so
/// relayer tests can exercise gRPC errors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Text echoed back.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Bytes echoed back.
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// `Echo` response, and each item of `EchoStream`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoResponse {
    /// The request's message.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The request's payload (empty in stream items).
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// Unary: how many unary calls this backend served, this one included. Stream: the item's index from 0.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
}

/// `EchoStream` request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoStreamRequest {
    /// Text repeated in every item.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Items to stream; 0 means [`super::StreamConfig::events`]. At most `max_events`.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// Milliseconds before each item; 0 means [`super::StreamConfig::interval`].
    #[prost(uint32, tag = "3")]
    pub interval_ms: u32,
}

/// Path of the gRPC health checking protocol's `Check`.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// The service whose health [`HEALTH_CHECK_PATH`] answers `NOT_SERVING`.
pub const NOT_SERVING_SERVICE: &str = "not-serving";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service asked about; empty for the server as a whole.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 unknown, 1 serving, 2 not serving, 3 service unknown.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// The stream of `EchoStream` items.
type EchoStream = BoxStream<'static, Result<EchoResponse, Status>>;

/// `demo.Echo/Echo`.
pub(crate) async fn echo(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let seq = bump(&shared.counters.grpc_unary);
    let mut grpc = Grpc::new(ProstCodec::<EchoResponse, EchoRequest>::default())
        .max_decoding_message_size(shared.config.max_body_bytes);
    let service = tower::service_fn(move |req: tonic::Request<EchoRequest>| async move {
        let EchoRequest { message, payload } = req.into_inner();
        if let Some(code) = message.strip_prefix("status:").and_then(|c| c.parse::<i32>().ok()) {
            return Err(Status::new(Code::from_i32(code), "status requested by the caller"));
        }
        Ok(tonic::Response::new(EchoResponse { message, payload, seq }))
    });
    grpc.unary(service, req).await.map(Body::new)
}

/// `demo.Echo/EchoStream`.
pub(crate) async fn echo_stream(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    bump(&shared.counters.grpc_streaming);
    let mut grpc = Grpc::new(ProstCodec::<EchoResponse, EchoStreamRequest>::default())
        .max_decoding_message_size(shared.config.max_body_bytes);
    let service = tower::service_fn(move |req: tonic::Request<EchoStreamRequest>| {
        let shared = shared.clone();
        async move {
            let EchoStreamRequest {
                message,
                count,
                interval_ms,
            } = req.into_inner();
            let cfg = &shared.config.streams;
            let count = if count == 0 { cfg.events } else { u64::from(count) };
            if count > cfg.max_events {
                return Err(Status::invalid_argument(format!(
                    "count {count} exceeds {}",
                    cfg.max_events
                )));
            }
            let interval = if interval_ms == 0 {
                cfg.interval
            } else {
                Duration::from_millis(u64::from(interval_ms))
            };
            let items: EchoStream = ticks(&shared, count, interval)
                .map(move |seq| {
                    Ok(EchoResponse {
                        message: message.clone(),
                        payload: Vec::new(),
                        seq,
                    })
                })
                .boxed();
            Ok(tonic::Response::new(items))
        }
    });
    grpc.server_streaming(service, req).await.map(Body::new)
}

/// `grpc.health.v1.Health/Check` (module docs).
pub(crate) async fn health_check(req: Request) -> Response {
    let mut grpc = Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default());
    let service = tower::service_fn(|req: tonic::Request<HealthCheckRequest>| async move {
        let status = match req.into_inner().service.as_str() {
            "" | "demo.Echo" => 1,
            NOT_SERVING_SERVICE => 2,
            _ => return Err(Status::not_found("unknown service")),
        };
        Ok(tonic::Response::new(HealthCheckResponse { status }))
    });
    grpc.unary(service, req).await.map(Body::new)
}

/// The answer to a gRPC call of a method this backend does not serve.
pub(crate) fn unimplemented() -> Response {
    Status::unimplemented("the demo backend serves only demo.Echo").into_http::<Body>()
}
