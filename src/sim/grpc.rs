//! A gRPC server for hand-written prost messages (no codegen), used by the simulator to serve the pocket and
//! cosmos query services of spec §1.3 on the same paths a real full node serves them.
//!
//! Handlers are registered per full method path; the router is an axum `Router` (HTTP/2 cleartext, as gRPC
//! clients connect) whose fallback speaks gRPC framing through `tonic::server::Grpc` with a raw-bytes codec, then
//! decodes/encodes the typed messages with prost. Unknown methods answer `UNIMPLEMENTED`.
//!
//! Heights as cosmos-sdk's baseapp gRPC server handles them (`RegisterGRPCServer`, `CreateQueryContext`): a
//! request may pin the state it is read from with the `x-cosmos-block-height` request header; a height above the
//! node's own is refused (`InvalidArgument`, [`HEIGHT_IN_THE_FUTURE`]), and every answer names the height it
//! was read at in the same response header. Handlers registered with [`GrpcRouter::unary_at_height`] are given
//! that height.
//!
//! For tests, a router can be told to fail the next requests of one method with `UNAVAILABLE` ([`Faults`]), as a
//! node answers when it cannot serve a query for a moment: a client's fallback for a read that fails can then be
//! driven against the real server, one method failing while the others answer.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, Status>> + Send>>;
/// A handler of request bytes and the height the request is answered at (see [`GrpcRouter::unary_at_height`]).
type Handler = Arc<dyn Fn(Vec<u8>, Option<i64>) -> HandlerFuture + Send + Sync>;

/// cosmos-sdk's refusal of a query pinned to a height the node has not committed (baseapp `CreateQueryContext`,
/// wrapping `ErrInvalidHeight`).
pub const HEIGHT_IN_THE_FUTURE: &str = "cannot query with height in the future; please provide a valid height";

/// The height a node answers from, for the `x-cosmos-block-height` response header.
type HeightSource = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A set of unary gRPC methods keyed by full path.
#[derive(Clone, Default)]
pub struct GrpcRouter {
    handlers: HashMap<String, Handler>,
    /// Requests received per method path.
    calls: CallCounts,
    /// When set, every answer carries `x-cosmos-block-height` with its value, as a cosmos-sdk node's does.
    height: Option<HeightSource>,
    /// Requests to fail per method path (test faults).
    faults: Faults,
}

/// The message of a request failed by [`Faults`].
pub const INJECTED_FAULT: &str = "sim: injected fault";

/// Requests to fail with `UNAVAILABLE` per full method path, shared by a router's clones and whoever armed them
/// (a test): [`Faults::fail_next`] arms, each request of that path then takes one, before its handler runs (so it
/// reads nothing), counted in [`CallCounts`] like any request.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<std::sync::Mutex<HashMap<String, u64>>>);

impl Faults {
    /// Fails the next `n` requests of `path` (0 disarms it), replacing what was armed for it.
    pub fn fail_next(&self, path: &str, n: u64) {
        let mut armed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if n == 0 {
            armed.remove(path);
        } else {
            armed.insert(path.to_string(), n);
        }
    }

    /// Requests of `path` still to fail.
    pub fn pending(&self, path: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Whether this request of `path` fails (taking one from what is armed).
    fn take(&self, path: &str) -> bool {
        let mut armed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(left) = armed.get_mut(path) else {
            return false;
        };
        *left -= 1;
        if *left == 0 {
            armed.remove(path);
        }
        true
    }
}

/// Requests a router received per full method path (known or not), shared by its clones: tests assert what a
/// client asks, e.g. that a miner polling an unchanged height reads no block.
#[derive(Debug, Clone, Default)]
pub struct CallCounts(Arc<std::sync::Mutex<HashMap<String, u64>>>);

impl CallCounts {
    /// Requests received for `path` so far.
    pub fn get(&self, path: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn add(&self, path: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path.to_string())
            .or_default() += 1;
    }
}

impl GrpcRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the unary method `path` (e.g. `/pocket.session.Query/GetSession`).
    pub fn unary<Req, Resp, F, Fut>(self, path: &str, handler: F) -> Self
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        self.unary_at_height(path, move |request: Req, _| handler(request))
    }

    /// Registers the unary method `path` whose handler answers as of a height: the one the request pinned
    /// (`x-cosmos-block-height`, refused above the node's height), else the node's own height
    /// ([`GrpcRouter::with_block_height`]); `None` when neither is known.
    pub fn unary_at_height<Req, Resp, F, Fut>(mut self, path: &str, handler: F) -> Self
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        F: Fn(Req, Option<i64>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |bytes: Vec<u8>, height: Option<i64>| {
            let handler = Arc::clone(&handler);
            let decoded = Req::decode(bytes.as_slice());
            Box::pin(async move {
                let request = decoded.map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))?;
                let response = handler(request, height).await?;
                Ok(response.encode_to_vec())
            })
        });
        self.handlers.insert(path.to_string(), erased);
        self
    }

    /// Sends `height()` in the `x-cosmos-block-height` header of every answer (cosmos-sdk baseapp's gRPC server
    /// names the committed height each query was read at there).
    pub fn with_block_height(mut self, height: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.height = Some(Arc::new(height));
        self
    }

    /// Counts requests into `calls` (instead of a counter of its own).
    pub fn counting_into(mut self, calls: CallCounts) -> Self {
        self.calls = calls;
        self
    }

    /// Fails requests as `faults` is armed (instead of faults of its own).
    pub fn failing_from(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The request counts of this router (and of the axum router it becomes).
    pub fn calls(&self) -> CallCounts {
        self.calls.clone()
    }

    /// Number of registered methods.
    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    /// True when no method is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// The axum router serving every registered method (mount it, or serve it with `axum::serve`).
    pub fn into_axum(self) -> axum::Router {
        let handlers = Arc::new(self.handlers);
        let calls = self.calls;
        let height = self.height;
        let faults = self.faults;
        axum::Router::new().fallback(move |req: axum::extract::Request| {
            let handlers = Arc::clone(&handlers);
            let height = height.clone();
            calls.add(req.uri().path());
            let failed = faults.take(req.uri().path());
            async move {
                let handler = handlers.get(req.uri().path()).cloned();
                let path = req.uri().path().to_string();
                let service = tower::service_fn(move |request: tonic::Request<Vec<u8>>| {
                    let handler = handler.clone();
                    let path = path.clone();
                    // Read before the handler runs, as a node reads its state at one committed height.
                    let latest = height.as_ref().map(|h| h());
                    let pinned = pinned_height(request.metadata());
                    async move {
                        if failed {
                            return Err(Status::unavailable(format!("{INJECTED_FAULT}: {path}")));
                        }
                        let served_at = match (pinned?, latest) {
                            (Some(pinned), Some(latest)) if pinned > latest => {
                                return Err(Status::invalid_argument(format!(
                                    "{HEIGHT_IN_THE_FUTURE}: invalid height"
                                )));
                            }
                            (Some(pinned), _) => Some(pinned),
                            (None, latest) => latest,
                        };
                        let bytes = match handler {
                            Some(handler) => handler(request.into_inner(), served_at).await?,
                            None => return Err(Status::unimplemented(format!("unknown method {path}"))),
                        };
                        let mut response = tonic::Response::new(bytes);
                        if let Some(value) = served_at.and_then(|h| h.to_string().parse().ok()) {
                            response
                                .metadata_mut()
                                .insert(crate::chain::grpc::BLOCK_HEIGHT_HEADER, value);
                        }
                        Ok(response)
                    }
                });
                tonic::server::Grpc::new(RawCodec).unary(service, req).await
            }
        })
    }
}

/// The height a request pins (`x-cosmos-block-height`; 0 or absent: the latest), refused as baseapp refuses an
/// unreadable or negative one.
fn pinned_height(metadata: &tonic::metadata::MetadataMap) -> Result<Option<i64>, Status> {
    let Some(value) = metadata.get(crate::chain::grpc::BLOCK_HEIGHT_HEADER) else {
        return Ok(None);
    };
    let height = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| Status::invalid_argument("invalid height header: invalid request"))?;
    if height < 0 {
        return Err(Status::invalid_argument(
            "height < 0; can't query at a negative height: invalid request",
        ));
    }
    Ok((height > 0).then_some(height))
}

/// A codec that passes message bytes through untouched (prost coding happens in the handlers).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let len = bytes::Buf::remaining(src);
        let mut out = vec![0u8; len];
        bytes::Buf::copy_to_slice(src, &mut out);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::grpc::{GrpcClient, GrpcError};
    use crate::chain::tx::{Any, Timestamp};
    use std::time::Duration;

    async fn serve(router: GrpcRouter) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router.into_axum()).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn unary_round_trip_errors_and_unknown_methods() {
        let router = GrpcRouter::new()
            .unary("/test.Svc/Echo", |req: Any| async move {
                Ok(Timestamp {
                    seconds: req.value.len() as i64,
                    nanos: req.type_url.len() as i32,
                })
            })
            .unary("/test.Svc/Missing", |_req: Any| async move {
                Err::<Timestamp, _>(Status::not_found("no such thing"))
            });
        assert_eq!(router.len(), 2);
        let url = serve(router).await;
        let client = GrpcClient::new(&url, Duration::from_secs(5)).unwrap();

        let response: Timestamp = client
            .unary(
                "/test.Svc/Echo",
                Any {
                    type_url: "abc".into(),
                    value: vec![1; 1000],
                },
            )
            .await
            .unwrap();
        assert_eq!(
            response,
            Timestamp {
                seconds: 1000,
                nanos: 3
            }
        );

        let err = client
            .unary::<Any, Timestamp>("/test.Svc/Missing", Any::default())
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(!err.is_retryable());

        let err = client
            .unary::<Any, Timestamp>("/test.Svc/Nope", Any::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                GrpcError::Status {
                    code: tonic::Code::Unimplemented,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// An armed fault fails the next n requests of its method with `UNAVAILABLE` (retryable, counted as requests),
    /// before the handler runs; other methods answer meanwhile, and the method answers again once they are used.
    #[tokio::test]
    async fn a_fault_fails_the_next_requests_of_one_method_only() {
        let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = Arc::clone(&handled);
        let faults = Faults::default();
        let router = GrpcRouter::new()
            .failing_from(faults.clone())
            .unary("/test.Svc/Echo", move |req: Any| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    Ok(Timestamp {
                        seconds: req.value.len() as i64,
                        nanos: 0,
                    })
                }
            })
            .unary("/test.Svc/Other", |_req: Any| async move { Ok(Timestamp::default()) });
        let calls = router.calls();
        let url = serve(router).await;
        let client = GrpcClient::new(&url, Duration::from_secs(5)).unwrap();
        let echo = || client.unary::<Any, Timestamp>("/test.Svc/Echo", Any::default());
        faults.fail_next("/test.Svc/Echo", 2);
        for left in [1, 0] {
            let err = echo().await.unwrap_err();
            assert!(matches!(&err, GrpcError::Transport { .. }), "UNAVAILABLE: {err}");
            assert!(err.to_string().contains(INJECTED_FAULT), "{err}");
            assert!(err.is_retryable(), "{err}");
            assert_eq!(faults.pending("/test.Svc/Echo"), left);
            client
                .unary::<Any, Timestamp>("/test.Svc/Other", Any::default())
                .await
                .unwrap();
        }
        assert_eq!(handled.load(std::sync::atomic::Ordering::Relaxed), 0, "no handler ran");
        echo().await.unwrap();
        assert_eq!(handled.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(calls.get("/test.Svc/Echo"), 3);
        faults.fail_next("/test.Svc/Echo", 5);
        faults.fail_next("/test.Svc/Echo", 0);
        echo().await.unwrap();
    }

    #[tokio::test]
    async fn unreachable_server_is_a_retryable_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = GrpcClient::new(&format!("http://{addr}"), Duration::from_secs(2)).unwrap();
        let err = client
            .unary::<Any, Timestamp>("/test.Svc/Echo", Any::default())
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(GrpcClient::new("not a url", Duration::from_secs(1)).is_err());
    }

    /// The node's gRPC over TLS: `https://` (or `grpc_insecure: false`, Go's meaning) with the node's CA trusted;
    /// an untrusted certificate is refused.
    #[tokio::test]
    async fn grpc_over_tls_with_a_trusted_ca() {
        let router = GrpcRouter::new().unary("/test.Svc/Echo", |req: Any| async move {
            Ok(Timestamp {
                seconds: req.value.len() as i64,
                nanos: 0,
            })
        });
        let (pem, server) = crate::chain::tls::testing::self_signed(&[b"h2"]);
        let port = crate::chain::tls::testing::serve_tls(router.into_axum(), server).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let trusted = crate::chain::grpc::GrpcTls {
            insecure: true,
            ca_file: Some(ca.clone()),
        };
        let echo = |client: GrpcClient| async move {
            client
                .unary::<Any, Timestamp>(
                    "/test.Svc/Echo",
                    Any {
                        type_url: String::new(),
                        value: vec![1; 7],
                    },
                )
                .await
        };
        let https =
            GrpcClient::with_tls(&format!("https://127.0.0.1:{port}"), Duration::from_secs(5), &trusted).unwrap();
        assert_eq!(echo(https).await.unwrap().seconds, 7);
        // grpc_insecure: false means TLS even for an http:// URL.
        let secure = crate::chain::grpc::GrpcTls {
            insecure: false,
            ca_file: Some(ca),
        };
        let http = GrpcClient::with_tls(&format!("http://localhost:{port}"), Duration::from_secs(5), &secure).unwrap();
        assert_eq!(echo(http).await.unwrap().seconds, 7);
        // Plaintext to a TLS port, and TLS without the CA, both fail.
        let plain = GrpcClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        assert!(echo(plain).await.is_err());
        let untrusted = GrpcClient::new(&format!("https://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let err = echo(untrusted).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
