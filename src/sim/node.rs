//! A simulator node: one [`SimChain`] served like a Pocket full node on 127.0.0.1 — the pocket/cosmos gRPC
//! services ([`crate::sim::chain::router`]), the CometBFT RPC over HTTP and `/websocket` ([`crate::sim::comet`]),
//! a block timer, and optionally the demo backend relays are forwarded to.
//!
//! The chain state lives in the [`SimChain`], not in the node: [`SimNode::shutdown`] stops the servers and the
//! timer and frees the ports, and [`SimNode::start`] with [`SimNode::restart_config`] brings the same chain back
//! on the same ports, which is how tests exercise clients across a node restart.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backend::{BackendConfig, BackendError, BackendHandle, DemoBackend};
use super::chain::SimChain;
use super::comet::{CometServerHandle, ServerConfig};

/// How blocks are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockTimer {
    /// Every `block_time_ms` of the genesis.
    #[default]
    Genesis,
    /// Every given interval.
    Every(Duration),
    /// No timer: the owner calls [`SimChain::produce_block`] (deterministic heights in tests).
    Manual,
}

/// Where and how a [`SimNode`] runs.
#[derive(Debug, Clone)]
pub struct SimNodeConfig {
    /// gRPC listen address (port 0 picks one).
    pub grpc_addr: SocketAddr,
    /// CometBFT RPC (HTTP + websocket) listen address (port 0 picks one).
    pub rpc_addr: SocketAddr,
    /// Block production.
    pub blocks: BlockTimer,
    /// The demo backend to start too (its `listen` address is used), or none.
    pub backend: Option<BackendConfig>,
    /// CometBFT server tunables.
    pub comet: ServerConfig,
    /// How long shutdown waits for open gRPC connections to finish before closing them.
    pub shutdown_grace: Duration,
}

impl Default for SimNodeConfig {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_addr: any,
            rpc_addr: any,
            blocks: BlockTimer::Genesis,
            backend: None,
            comet: ServerConfig::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SimNodeError {
    /// A listen address could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// A server ended with an error.
    #[error("{what} server failed: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The demo backend failed.
    #[error("demo backend: {0}")]
    Backend(#[from] BackendError),
}

/// A running simulator node. Dropping it without [`Self::shutdown`] stops the gRPC server and the block timer
/// (their stop signal's sender is dropped); the CometBFT server then runs until the runtime ends.
#[derive(Debug)]
pub struct SimNode {
    /// The chain served (shared: it outlives the node).
    chain: SimChain,
    /// The config with every port 0 replaced by the bound port, for [`Self::restart_config`].
    bound: SimNodeConfig,
    /// Tells the gRPC server and the block timer to stop.
    stop: watch::Sender<bool>,
    /// The gRPC accept loop.
    grpc: JoinHandle<io::Result<()>>,
    /// The CometBFT RPC server.
    rpc: CometServerHandle,
    /// The block timer, unless manual.
    blocks: Option<JoinHandle<()>>,
    /// The demo backend, if started.
    backend: Option<BackendHandle>,
}

/// Binds with `SO_REUSEADDR` so a restarted node gets its old port back while old connections sit in TIME_WAIT.
fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, SimNodeError> {
    let err = |source| SimNodeError::Bind { what, addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|s| *s).await;
}

impl SimNode {
    /// Starts serving `chain` as `config` says.
    pub async fn start(chain: SimChain, config: SimNodeConfig) -> Result<Self, SimNodeError> {
        let mut bound = config.clone();
        let (stop, stop_rx) = watch::channel(false);

        let listener = bind("gRPC", config.grpc_addr)?;
        bound.grpc_addr = listener.local_addr().map_err(|source| SimNodeError::Bind {
            what: "gRPC",
            addr: config.grpc_addr,
            source,
        })?;
        let app = crate::sim::chain::router(chain.clone()).into_axum();
        let grpc = tokio::spawn({
            let rx = stop_rx.clone();
            async move { axum::serve(listener, app).with_graceful_shutdown(stopped(rx)).await }
        });

        let rpc = match crate::sim::comet::serve(
            std::sync::Arc::new(chain.clone()),
            config.rpc_addr,
            config.comet.clone(),
        )
        .await
        {
            Ok(rpc) => rpc,
            Err(source) => {
                stop.send_replace(true);
                grpc.abort();
                return Err(SimNodeError::Bind {
                    what: "CometBFT RPC",
                    addr: config.rpc_addr,
                    source,
                });
            }
        };
        bound.rpc_addr = rpc.local_addr();

        let backend = match &config.backend {
            None => None,
            Some(backend_config) => match DemoBackend::spawn(backend_config.clone()).await {
                Ok(handle) => {
                    if let Some(b) = bound.backend.as_mut() {
                        b.listen = handle.addr();
                    }
                    Some(handle)
                }
                Err(e) => {
                    stop.send_replace(true);
                    grpc.abort();
                    let _ = rpc.shutdown().await;
                    return Err(e.into());
                }
            },
        };

        let interval = match config.blocks {
            BlockTimer::Genesis => Some(Duration::from_millis(chain.state().genesis.block_time_ms)),
            BlockTimer::Every(d) => Some(d),
            BlockTimer::Manual => None,
        };
        let blocks = interval.map(|interval| {
            let chain = chain.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move { chain.run_blocks_every(interval, stopped(rx)).await })
        });

        let node = Self {
            chain,
            bound,
            stop,
            grpc,
            rpc,
            blocks,
            backend,
        };
        tracing::info!(
            grpc = %node.grpc_url(),
            rpc = %node.rpc_url(),
            backend = ?node.backend_url(),
            height = node.chain.height(),
            ?interval,
            "simulator node started"
        );
        Ok(node)
    }

    /// The chain served.
    pub fn chain(&self) -> &SimChain {
        &self.chain
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.bound.grpc_addr
    }

    /// The bound CometBFT RPC address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.bound.rpc_addr
    }

    /// `http://<grpc addr>`, for [`crate::chain::query::ChainClient::new`].
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.bound.grpc_addr)
    }

    /// `http://<rpc addr>`, for [`crate::chain::comet::CometClient::new`].
    pub fn rpc_url(&self) -> String {
        self.rpc.url()
    }

    /// `ws://<rpc addr>/websocket`, the new-block subscription endpoint.
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/websocket", self.bound.rpc_addr)
    }

    /// The demo backend's `http://` URL, if started.
    pub fn backend_url(&self) -> Option<String> {
        self.backend.as_ref().map(BackendHandle::http_url)
    }

    /// The demo backend, if started (counters, websocket URL).
    pub fn backend(&self) -> Option<&BackendHandle> {
        self.backend.as_ref()
    }

    /// Enables or disables `/websocket` (disabling closes open sessions; HTTP keeps working).
    pub fn set_websocket_enabled(&self, enabled: bool) {
        self.rpc.set_websocket_enabled(enabled);
    }

    /// This node's config with the bound ports: [`Self::start`] with it after [`Self::shutdown`] serves the same
    /// chain on the same addresses.
    pub fn restart_config(&self) -> SimNodeConfig {
        self.bound.clone()
    }

    /// Stops the block timer, then the servers (gracefully, bounded by `shutdown_grace`), and frees the ports.
    /// The chain keeps its state.
    pub async fn shutdown(mut self) -> Result<(), SimNodeError> {
        self.stop.send_replace(true);
        if let Some(blocks) = self.blocks.take() {
            // The timer only awaits its ticker and the stop signal: it ends promptly.
            let _ = blocks.await;
        }
        let grace = self.bound.shutdown_grace;
        let grpc_result = match tokio::time::timeout(grace, &mut self.grpc).await {
            Ok(Ok(r)) => r.map_err(|source| SimNodeError::Serve { what: "gRPC", source }),
            Ok(Err(join)) => Err(SimNodeError::Serve {
                what: "gRPC",
                source: io::Error::other(join),
            }),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "simulator gRPC connections still open after the grace period, closing them"
                );
                self.grpc.abort();
                let _ = (&mut self.grpc).await;
                Ok(())
            }
        };
        let rpc_result = match tokio::time::timeout(grace, self.rpc.shutdown()).await {
            Ok(r) => r.map_err(|source| SimNodeError::Serve {
                what: "CometBFT RPC",
                source,
            }),
            Err(_) => Err(SimNodeError::Serve {
                what: "CometBFT RPC",
                source: io::Error::new(io::ErrorKind::TimedOut, "shutdown did not finish"),
            }),
        };
        let backend_result = match self.backend.take() {
            Some(b) => b.shutdown().await.map(drop).map_err(SimNodeError::from),
            None => Ok(()),
        };
        tracing::info!(height = self.chain.height(), "simulator node stopped");
        grpc_result.and(rpc_result).and(backend_result)
    }
}
