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
    /// Whether retrying the call can help (transport failures and transient statuses).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadEndpoint { .. } => false,
            Self::Transport { .. } => true,
            Self::Status { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
            ),
        }
    }

    /// Whether the server said the entity does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Status {
                code: tonic::Code::NotFound,
                ..
            }
        )
    }
}

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
            .connect_timeout(timeout);
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
            .unary(
                tonic::Request::new(request),
                http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await
        {
            Ok(response) => Ok(response.into_inner()),
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

