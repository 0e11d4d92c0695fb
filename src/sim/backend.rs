//! The demo backend: the RPC node a supplier's relayer forwards relays to, in tests, benches and
//! `relay-miner localnet` (issue 5).
//!
//! One port serves every transport a Pocket service may use, over HTTP/1.1 and h2c (HTTP/2 with prior knowledge,
//! which is what gRPC clients speak):
//! - JSON-RPC 2.0 over `POST /` (and any unrouted path), with batches and eth-style methods over a deterministic
//!   fake chain (`jsonrpc`);
//! - REST under `/v1`, SSE at `/sse`, NDJSON at `/ndjson` (`routes`);
//! - JSON-RPC over WebSocket at `/ws`, with `eth_subscribe("newHeads")` (`ws`);
//! - gRPC `demo.Echo/Echo` (unary) and `demo.Echo/EchoStream` (server streaming) (`grpc`).
//!
//! Every HTTP request first gets the configured delay, then may be answered with an injected 500 or have its
//! connection dropped ([`FaultConfig`]); counters per kind ([`BackendStats`]) let callers check the backend really
//! received relays.
//!
//! The server follows mini-redis: a semaphore bounds connections, one shutdown signal is passed down to every
//! connection and long-lived stream, and the signal's receivers double as drop guards, so `serve` knows when every
//! handler finished (bounded by [`BackendConfig::shutdown_grace`]).

mod config;
pub mod grpc;
mod jsonrpc;
mod routes;
mod stats;
mod ws;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

pub use config::{BackendConfig, DelayConfig, FaultConfig, Injection, MAX_BIG_RESPONSE_BYTES, StreamConfig, WsConfig};
pub use grpc::{ECHO_PATH, ECHO_STREAM_PATH, EchoRequest, EchoResponse, EchoStreamRequest};
pub use jsonrpc::{CLIENT_VERSION, block_hash, fake_block, fake_header};
pub use stats::{BackendCounters, BackendStats};

use config::Fault;
use stats::{Counters, bump};

/// Why the demo backend could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A config field is out of bounds.
    #[error("invalid demo backend config: {field}: {reason}")]
    InvalidConfig {
        /// The offending field's path in [`BackendConfig`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("binding the demo backend to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The bound listener has no readable local address.
    #[error("reading the demo backend's local address: {0}")]
    LocalAddr(#[source] io::Error),
    /// Accepting connections kept failing after retries.
    #[error("accepting demo backend connections: {0}")]
    Accept(#[source] io::Error),
    /// The task running a spawned backend panicked or was cancelled.
    #[error("the demo backend task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// State shared by the accept loop and every handler.
pub(crate) struct Shared {
    /// The validated config.
    pub(crate) config: BackendConfig,
    /// Live counters, also handed out through [`BackendCounters`].
    pub(crate) counters: Arc<Counters>,
    /// `true` once shutdown started. Each [`Shutdown`] holds a receiver, so `closed()` on this sender tells when
    /// every connection and stream has finished.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// State for a config (validated by the caller).
    pub(crate) fn new(config: BackendConfig) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            config,
            counters: Arc::new(Counters::default()),
            shutdown,
        }
    }

    /// A shutdown listener for one connection or stream; keep it alive as long as that work runs.
    pub(crate) fn shutdown_signal(&self) -> Shutdown {
        Shutdown {
            rx: self.shutdown.subscribe(),
        }
    }
}

/// Listens for the server's shutdown signal (mini-redis `Shutdown`). Also a drop guard: the server waits until
/// every `Shutdown` is dropped before `serve` returns.
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Completes once shutdown has started (immediately if it already had).
    pub(crate) async fn recv(&mut self) {
        // An error means the sender is gone, which also means the server is gone: treat it as shutdown.
        let _ = self.rx.wait_for(|stopping| *stopping).await;
    }
}

/// The demo backend, configured but not yet serving.
pub struct DemoBackend {
    shared: Arc<Shared>,
}

impl DemoBackend {
    /// Validates the config.
    pub fn new(config: BackendConfig) -> Result<Self, BackendError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// The config this backend serves with.
    pub fn config(&self) -> &BackendConfig {
        &self.shared.config
    }

    /// A handle on the counters, usable while and after the backend runs.
    pub fn counters(&self) -> BackendCounters {
        BackendCounters(self.shared.counters.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, tells every connection and stream to
    /// finish, and waits for them (at most [`BackendConfig::shutdown_grace`], then aborts the rest).
    /// Returns the final counters.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) -> Result<BackendStats, BackendError> {
        let shared = self.shared;
        let router = routes::router(shared.clone());
        let limit = Arc::new(Semaphore::new(shared.config.max_connections));
        let mut connections = JoinSet::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);

        let result = loop {
            // Reap finished connection tasks so the set stays as small as the live connections.
            while connections.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    // The semaphore is never closed.
                    Err(_) => break Ok(()),
                },
                _ = &mut shutdown => break Ok(()),
            };
            let stream = tokio::select! {
                accepted = accept(&listener) => match accepted {
                    Ok(s) => s,
                    Err(e) => break Err(e),
                },
                _ = &mut shutdown => break Ok(()),
            };
            connections.spawn(serve_connection(
                builder.clone(),
                stream,
                shared.clone(),
                router.clone(),
                permit,
            ));
        };

        drop(listener);
        shared.shutdown.send_replace(true);
        let grace = shared.config.shutdown_grace;
        if tokio::time::timeout(grace, shared.shutdown.closed()).await.is_err() {
            tracing::warn!(
                ?grace,
                open = shared.shutdown.receiver_count(),
                "demo backend: connections still open after the shutdown grace period, aborting them"
            );
            connections.abort_all();
        }
        while connections.join_next().await.is_some() {}
        result.map(|()| BackendCounters(shared.counters.clone()).snapshot())
    }

    /// Binds [`BackendConfig::listen`] (by default `127.0.0.1:0`) and serves in a background task.
    pub async fn spawn(config: BackendConfig) -> Result<BackendHandle, BackendError> {
        let backend = Self::new(config)?;
        let addr = backend.shared.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BackendError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(BackendError::LocalAddr)?;
        let counters = backend.counters();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(backend.run(listener, async move {
            // Either an explicit stop or the handle being dropped.
            let _ = stopped.await;
        }));
        Ok(BackendHandle {
            addr,
            counters,
            stop: Some(stop),
            task,
        })
    }
}

/// Serves the demo backend with `config` on `listener` until `shutdown` completes; see [`DemoBackend::run`].
pub async fn serve(
    config: BackendConfig,
    listener: TcpListener,
    shutdown: impl Future,
) -> Result<BackendStats, BackendError> {
    DemoBackend::new(config)?.run(listener, shutdown).await
}

/// A backend running in a background task. Dropping the handle starts a graceful shutdown too (without waiting).
#[derive(Debug)]
pub struct BackendHandle {
    /// The bound address.
    addr: SocketAddr,
    /// The backend's counters.
    counters: BackendCounters,
    /// Completing (or dropping) this stops the backend.
    stop: Option<oneshot::Sender<()>>,
    /// The task running [`DemoBackend::run`].
    task: JoinHandle<Result<BackendStats, BackendError>>,
}

impl BackendHandle {
    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL for JSON-RPC, REST, streams and gRPC.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://ADDR/ws`, the WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The counters as of now.
    pub fn stats(&self) -> BackendStats {
        self.counters.snapshot()
    }

    /// A cloneable handle on the counters.
    pub fn counters(&self) -> BackendCounters {
        self.counters.clone()
    }

    /// Shuts the backend down gracefully and waits until it has stopped; returns the final counters.
    pub async fn shutdown(mut self) -> Result<BackendStats, BackendError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?
    }
}

/// Accepts one connection, retrying transient errors (a connection reset before accept, a momentarily full fd
/// table) with exponential backoff, as mini-redis does.
async fn accept(listener: &TcpListener) -> Result<TcpStream, BackendError> {
    let mut backoff = Duration::from_millis(5);
    let mut attempts = 0u32;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => return Ok(stream),
            Err(e) if attempts < 6 => {
                tracing::warn!(error = %e, ?backoff, "demo backend: accept failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempts += 1;
            }
            Err(e) => return Err(BackendError::Accept(e)),
        }
    }
}

/// Serves one TCP connection (HTTP/1.1 with upgrades, or h2c) until it closes or shutdown asks it to finish.
async fn serve_connection(
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    shared: Arc<Shared>,
    router: Router,
    permit: OwnedSemaphorePermit,
) {
    // Small JSON-RPC answers must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut shutdown = shared.shutdown_signal();
    let service =
        hyper::service::service_fn(move |req: ::http::Request<Incoming>| entry(shared.clone(), router.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "demo backend: connection ended with an error");
    }
    drop(permit);
}

/// The error a request fails with to make hyper drop its connection (HTTP/1.1) or reset its stream (HTTP/2).
#[derive(Debug, thiserror::Error)]
#[error("injected connection drop")]
struct InjectedDrop;

/// Every HTTP request passes here: count, delay, inject faults, then route.
async fn entry(
    shared: Arc<Shared>,
    router: Router,
    req: ::http::Request<Incoming>,
) -> Result<::http::Response<Body>, InjectedDrop> {
    let ordinal = bump(&shared.counters.http_requests);
    let delay = shared.config.delay.sample();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match shared.config.faults.decide(ordinal) {
        Fault::Drop => {
            bump(&shared.counters.injected_drops);
            Err(InjectedDrop)
        }
        Fault::Error500 => {
            bump(&shared.counters.injected_errors);
            Ok(routes::injected_500(ordinal))
        }
        Fault::None => match router.oneshot(req).await {
            Ok(resp) => Ok(resp),
            Err(never) => match never {},
        },
    }
}
