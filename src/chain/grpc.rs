//! A unary gRPC client for hand-written prost messages (no codegen): every pocket/cosmos query of spec §1.3 is one
//! call to [`GrpcClient::unary`] with the method's full path, e.g. `/pocket.session.Query/GetSession`.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// The largest gRPC message read from the node (tonic's default is 4 MiB).
///
/// `GetLatestBlock` and `GetBlockByHeight` answer with the whole block twice (`block` and `sdk_block`), and proof
/// txs carry relay payloads, so a block with ~2 MiB of txs already passes 4 MiB; a refused read of the proof seed
/// block means no proof and a slashed supplier. CometBFT caps a block at 100 MiB (`MaxBlockSizeBytes`, the most
/// `max_bytes` can be set to), so twice that plus the headers and commit fits in 256 MiB. The limit only bounds
/// what a node can make us buffer; messages are allocated at their real size.
pub const MAX_DECODING_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The largest gRPC message sent (tonic sets no limit by default). Our requests are queries and txs, and a tx
/// never exceeds a block, so 256 MiB (as [`MAX_DECODING_MESSAGE_BYTES`]) never refuses anything a node could
/// take; it only stops an absurd message before it is framed.
pub const MAX_ENCODING_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Errors of a gRPC call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GrpcError {
    /// The endpoint URL is not valid.
    #[error("invalid gRPC endpoint `{url}`: {reason}")]
    BadEndpoint {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The server could not be reached or the HTTP/2 connection failed.
    #[error("gRPC transport to {url}: {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The server answered with a non-OK status.
    #[error("gRPC {method}: {code:?}: {message}")]
    Status {
        /// Full method path.
        method: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
}

impl GrpcError {
    /// Whether retrying the call can help (transport failures and transient statuses), which is also whether the
    /// outcome of a call with an effect (a broadcast) is unknown rather than refused.
    ///
    /// `Cancelled` is how tonic (0.14) reports our own call timeout ([`Endpoint::timeout`]: its `GrpcTimeout`
    /// layer fails with `TimeoutExpired`, which `Status::from_error` turns into `Cancelled`), and also a stream
    /// the node reset with `CANCEL`. Either way the node may have taken the request (a broadcast tx may be in
    /// its mempool), so it is retryable, never a refusal.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadEndpoint { .. } => false,
            Self::Transport { .. } => true,
            // A node behind the height asked: another (or the same, a block later) will have it.
            Self::Status { .. } if self.is_height_in_the_future() => true,
            Self::Status { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
            ),
        }
    }

    /// A query pinned to a height the node has not committed yet, refused (cosmos-sdk baseapp
    /// `CreateQueryContext`: [`HEIGHT_IN_THE_FUTURE`], `ErrInvalidHeight`): the node is behind, not the
    /// request wrong. Matched on the text, whatever the code (the SDK's wrapped error reaches gRPC as
    /// `InvalidArgument` or `Unknown` depending on the release), so it is never taken for an answer.
    pub fn is_height_in_the_future(&self) -> bool {
        matches!(self, Self::Status { message, .. } if message.contains(HEIGHT_IN_THE_FUTURE))
    }

    /// Whether the server said the entity does not exist (never a node refusing a height it has not reached).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Status {
                code: tonic::Code::NotFound,
                ..
            }
        ) && !self.is_height_in_the_future()
    }
}

/// While calls are open, an HTTP/2 ping goes to the node after this long without a frame from it.
///
/// A connection a load balancer or NAT dropped silently (no RST) otherwise stays "open": every call on it times
/// out, and the channel never reconnects until the kernel gives up on the socket (about 15 min with Linux's
/// defaults), longer than a claim or proof window of 60 s blocks. A ping not answered within
/// [`KEEP_ALIVE_TIMEOUT`] closes the connection and the next call dials anew. Never sent on an idle connection
/// (grpc-go servers, cosmos-sdk's included, answer pings more often than every 5 min without calls open with
/// GOAWAY `too_many_pings`), and rarely on a busy one (any frame from the node restarts the interval).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long a keep-alive ping may go unanswered before the connection is dropped ([`KEEP_ALIVE_INTERVAL`]).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheaply clonable unary gRPC client over one lazily connected, multiplexed HTTP/2 channel.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    url: String,
    channel: Channel,
}

/// How a gRPC client reaches its endpoint (`pocket_node.grpc_insecure`, `pocket_node.tls_ca_file`).
#[derive(Debug, Clone, Default)]
pub struct GrpcTls {
    /// Go's `grpc_insecure`: `true` dials an `http://` URL in plaintext; `false` always uses TLS (an `http://`
    /// URL is then dialled with TLS on its port). An `https://` URL always uses TLS.
    pub insecure: bool,
    /// PEM CA certificates trusted besides the system's and Mozilla's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl GrpcTls {
    /// Plaintext for `http://`, TLS with the default roots for `https://` (what tests and tools use).
    pub fn plaintext_or_https() -> Self {
        Self {
            insecure: true,
            ca_file: None,
        }
    }
}

impl GrpcClient {
    /// A client for `url` (`http://host:port`, or `https://host:port` for TLS with the default roots); connects on
    /// first use, each call bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, GrpcError> {
        Self::with_tls(url, timeout, &GrpcTls::plaintext_or_https())
    }

    /// A client for `url` with `tls` deciding TLS (see [`GrpcTls`]).
    pub fn with_tls(url: &str, timeout: Duration, tls: &GrpcTls) -> Result<Self, GrpcError> {
        Self::with_keep_alive(url, timeout, tls, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
    }

    /// [`Self::with_tls`] with HTTP/2 keep-alive pings after `interval` without a frame from the node while calls
    /// are open, the connection dropped when one is not answered within `ping_timeout` (see
    /// [`KEEP_ALIVE_INTERVAL`]).
    pub fn with_keep_alive(
        url: &str,
        timeout: Duration,
        tls: &GrpcTls,
        interval: Duration,
        ping_timeout: Duration,
    ) -> Result<Self, GrpcError> {
        let bad = |reason: String| GrpcError::BadEndpoint {
            url: url.to_string(),
            reason,
        };
        // Go's grpc_insecure=false: TLS whatever the scheme says.
        let target = match url.strip_prefix("http://") {
            Some(rest) if !tls.insecure => format!("https://{rest}"),
            _ => url.to_string(),
        };
        let endpoint = Endpoint::from_shared(target.clone())
            .map_err(|e| bad(e.to_string()))?
            .timeout(timeout)
            .connect_timeout(timeout)
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(ping_timeout)
            .keep_alive_while_idle(false);
        let channel = if target.starts_with("https://") {
            let config = crate::chain::tls::client_config(tls.ca_file.as_deref(), crate::chain::tls::Alpn::H2)
                .map_err(|e| bad(e.to_string()))?;
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.set_nodelay(true);
            endpoint.connect_with_connector_lazy(crate::chain::tls::https_connector(http, &config, true))
        } else {
            endpoint.tcp_nodelay(true).connect_lazy()
        };
        Ok(Self {
            url: url.to_string(),
            channel,
        })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls the unary method `path` with `request`.
    pub async fn unary<Req, Resp>(&self, path: &'static str, request: Req) -> Result<Resp, GrpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        Ok(self.unary_at(path, request).await?.0)
    }

    /// [`Self::unary`], with the height of the state the node answered from: cosmos-sdk's gRPC server puts its
    /// latest committed height in the `x-cosmos-block-height` response header of every query (baseapp
    /// `GRPCBlockHeightHeader`). `None` when the header is missing or unreadable (a proxy may strip it).
    pub async fn unary_at<Req, Resp>(&self, path: &'static str, request: Req) -> Result<(Resp, Option<i64>), GrpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.unary_pinned(path, request, None).await
    }

    /// [`Self::unary_at`], read from the state committed at `height` when it is given: sent in the
    /// `x-cosmos-block-height` request header, which a cosmos-sdk node answers from that height's state or
    /// refuses when it has not committed it yet ([`GrpcError::is_height_in_the_future`]), instead of answering
    /// from whatever older state it has.
    pub async fn unary_pinned<Req, Resp>(
        &self,
        path: &'static str,
        request: Req,
        height: Option<i64>,
    ) -> Result<(Resp, Option<i64>), GrpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(request);
        if let Some(height) = height {
            let value = height.to_string().parse().map_err(|_| GrpcError::Status {
                method: path.to_string(),
                code: tonic::Code::InvalidArgument,
                message: format!("height {height} cannot be sent as a header"),
            })?;
            request.metadata_mut().insert(BLOCK_HEIGHT_HEADER, value);
        }
        // Every call goes through here, so the limits hold for every query and tx (see the constants).
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_BYTES);
        grpc.ready().await.map_err(|e| GrpcError::Transport {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        match grpc
            .unary(request, http::uri::PathAndQuery::from_static(path), codec)
            .await
        {
            Ok(response) => {
                let height = response
                    .metadata()
                    .get(BLOCK_HEIGHT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i64>().ok());
                Ok((response.into_inner(), height))
            }
            Err(status) if status.code() == tonic::Code::Unavailable => Err(GrpcError::Transport {
                url: self.url.clone(),
                reason: status.message().to_string(),
            }),
            Err(status) => Err(GrpcError::Status {
                method: path.to_string(),
                code: status.code(),
                message: status.message().to_string(),
            }),
        }
    }
}

/// The response header in which a cosmos-sdk node names the height its query answer was read at, and the request
/// header that pins a query to a height ([`GrpcClient::unary_pinned`]).
pub const BLOCK_HEIGHT_HEADER: &str = "x-cosmos-block-height";

/// What a cosmos-sdk node says when a query is pinned to a height above its latest committed one (baseapp
/// `CreateQueryContext`).
pub const HEIGHT_IN_THE_FUTURE: &str = "cannot query with height in the future";

/// Runs `query` against a client of the node at `url` for callers without a tokio runtime (`relay-miner
/// validate`'s preflight): on a thread of its own with a current-thread runtime, which also keeps it safe to call
/// from inside a runtime (a nested `block_on` would panic). Each call is bounded by `timeout`. `Err` says why
/// the query could not run (client, runtime or thread); the query's own errors are in `T`.
pub fn block_on_node<T, F, Fut>(url: &str, tls: &GrpcTls, timeout: Duration, query: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(GrpcClient) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let (url, tls) = (url.to_string(), tls.clone());
    let thread = std::thread::Builder::new()
        .name("node-preflight".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            runtime.block_on(async {
                super::tls::install_default_provider();
                let grpc = GrpcClient::with_tls(&url, timeout, &tls).map_err(|e| e.to_string())?;
                Ok(query(grpc).await)
            })
        })
        .map_err(|e| format!("thread: {e}"))?;
    thread.join().unwrap_or_else(|_| Err("the query panicked".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::wire::{self, method};

    fn status(code: tonic::Code) -> GrpcError {
        GrpcError::Status {
            method: method::BROADCAST_TX.into(),
            code,
            message: String::new(),
        }
    }

    /// An unknown outcome (the node may have done it) is retryable; a node's answer that it did not is not.
    #[test]
    fn a_cancelled_call_is_an_unknown_outcome_not_a_refusal() {
        for code in [
            tonic::Code::Cancelled,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unavailable,
            tonic::Code::ResourceExhausted,
            tonic::Code::Aborted,
        ] {
            assert!(status(code).is_retryable(), "{code:?}");
        }
        for code in [
            tonic::Code::Unknown,
            tonic::Code::InvalidArgument,
            tonic::Code::NotFound,
            tonic::Code::Internal,
        ] {
            assert!(!status(code).is_retryable(), "{code:?}");
        }
    }

    /// A node's refusal of a height it has not committed (cosmos-sdk's text, under the code the SDK gives it or
    /// another) is retryable and never "not found": a lookup pinned to the tip must not read it as "absent".
    #[test]
    fn a_height_in_the_future_is_retryable_and_never_not_found() {
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::Unknown,
            tonic::Code::NotFound,
        ] {
            let refused = GrpcError::Status {
                method: method::CLAIM.into(),
                code,
                message: "cannot query with height in the future; please provide a valid height: invalid height".into(),
            };
            assert!(refused.is_height_in_the_future(), "{code:?}");
            assert!(refused.is_retryable(), "{code:?}");
            assert!(!refused.is_not_found(), "{code:?}");
        }
        assert!(!status(tonic::Code::InvalidArgument).is_height_in_the_future());
        assert!(status(tonic::Code::NotFound).is_not_found());
    }

    /// Our own call timeout, as tonic reports it (`Cancelled`, "Timeout expired"), on a broadcast the node took
    /// and never answered over a real socket: retryable, so the miner counts it as a send whose outcome is
    /// unknown (the tx may be in the mempool), not as a refusal before the mempool.
    #[tokio::test]
    async fn a_broadcast_that_timed_out_on_our_side_is_retryable() {
        let router =
            crate::sim::grpc::GrpcRouter::new().unary(method::BROADCAST_TX, |_: wire::BroadcastTxRequest| async move {
                // The node holds the request and never answers within our timeout.
                std::future::pending::<()>().await;
                Ok(wire::BroadcastTxResponse::default())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router.into_axum()).await });
        let url = format!("http://{addr}");

        let grpc = GrpcClient::new(&url, Duration::from_millis(300)).unwrap();
        let err = grpc
            .unary::<_, wire::BroadcastTxResponse>(method::BROADCAST_TX, wire::BroadcastTxRequest::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GrpcError::Status { code: tonic::Code::Cancelled, message, .. } if message.contains("Timeout")),
            "tonic reports its own timeout as Cancelled: {err}"
        );
        assert!(err.is_retryable(), "{err}");

        let chain = crate::chain::query::ChainClient::new(&url, Duration::from_millis(300)).unwrap();
        let err = chain.broadcast(vec![1, 2, 3]).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    /// A TCP proxy to `upstream` whose connections accepted before [`Blackhole::freeze`] stop forwarding without
    /// closing (a load balancer or NAT that dropped them silently); later connections forward normally.
    struct Blackhole {
        addr: std::net::SocketAddr,
        accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        frozen_below: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Blackhole {
        async fn to(upstream: std::net::SocketAddr) -> Self {
            use std::sync::atomic::Ordering::SeqCst;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let frozen_below = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (count, frozen) = (accepted.clone(), frozen_below.clone());
            tokio::spawn(async move {
                loop {
                    let (inbound, _) = listener.accept().await.unwrap();
                    let index = count.fetch_add(1, SeqCst);
                    let outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    for (mut from, mut to) in [(ri, wo), (ro, wi)].map(|(r, w)| {
                        let r: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(r);
                        let w: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = Box::new(w);
                        (r, w)
                    }) {
                        let frozen = frozen.clone();
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                            let mut buf = vec![0u8; 16 * 1024];
                            loop {
                                let n = match from.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                if index < frozen.load(SeqCst) {
                                    // Silently dropped: hold both sockets, forward nothing, never close.
                                    let _keep = (from, to);
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                if to.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                }
            });
            Self {
                addr,
                accepted,
                frozen_below,
            }
        }

        fn freeze(&self) {
            use std::sync::atomic::Ordering::SeqCst;
            self.frozen_below.store(self.accepted.load(SeqCst), SeqCst);
        }
    }

    /// A connection dropped silently (no RST) under a channel in use: the keep-alive ping goes unanswered, the
    /// connection is closed and the next call dials anew, within a few seconds here (short intervals for the
    /// test). Without keep-alive every call times out on the dead connection until the kernel gives up on it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silently_dropped_connection_is_replaced() {
        let router = crate::sim::grpc::GrpcRouter::new()
            .unary(method::BROADCAST_TX, |_: wire::BroadcastTxRequest| async move {
                Ok(wire::BroadcastTxResponse::default())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router.into_axum()).await });
        let proxy = Blackhole::to(upstream).await;
        let grpc = GrpcClient::with_keep_alive(
            &format!("http://{}", proxy.addr),
            Duration::from_millis(500),
            &GrpcTls::plaintext_or_https(),
            Duration::from_secs(1),
            Duration::from_millis(500),
        )
        .unwrap();
        let call =
            || grpc.unary::<_, wire::BroadcastTxResponse>(method::BROADCAST_TX, wire::BroadcastTxRequest::default());
        call().await.unwrap();
        proxy.freeze();
        assert!(call().await.is_err(), "the connection is dead");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while call().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still on the dead connection after 15 s"
            );
        }
        assert_eq!(
            proxy.accepted.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "dialled anew once"
        );
    }
}
