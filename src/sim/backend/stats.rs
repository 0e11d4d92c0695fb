//! Counters of what the demo backend really received, per kind, so tests and the localnet summary can assert
//! that relays reached the backend (and not just the relayer).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters. Relaxed atomics: each counter is independent and only read as a snapshot.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) http_requests: AtomicU64,
    pub(crate) jsonrpc_requests: AtomicU64,
    pub(crate) jsonrpc_batches: AtomicU64,
    pub(crate) jsonrpc_calls: AtomicU64,
    pub(crate) rest_requests: AtomicU64,
    pub(crate) ws_connections: AtomicU64,
    pub(crate) ws_messages: AtomicU64,
    pub(crate) ws_notifications: AtomicU64,
    pub(crate) sse_streams: AtomicU64,
    pub(crate) ndjson_streams: AtomicU64,
    pub(crate) stream_events: AtomicU64,
    pub(crate) grpc_unary: AtomicU64,
    pub(crate) grpc_streaming: AtomicU64,
    pub(crate) injected_errors: AtomicU64,
    pub(crate) injected_drops: AtomicU64,
}

/// Adds one to a counter and returns the new value.
pub(crate) fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

impl Counters {
    fn snapshot(&self) -> BackendStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BackendStats {
            http_requests: r(&self.http_requests),
            jsonrpc_requests: r(&self.jsonrpc_requests),
            jsonrpc_batches: r(&self.jsonrpc_batches),
            jsonrpc_calls: r(&self.jsonrpc_calls),
            rest_requests: r(&self.rest_requests),
            ws_connections: r(&self.ws_connections),
            ws_messages: r(&self.ws_messages),
            ws_notifications: r(&self.ws_notifications),
            sse_streams: r(&self.sse_streams),
            ndjson_streams: r(&self.ndjson_streams),
            stream_events: r(&self.stream_events),
            grpc_unary: r(&self.grpc_unary),
            grpc_streaming: r(&self.grpc_streaming),
            injected_errors: r(&self.injected_errors),
            injected_drops: r(&self.injected_drops),
        }
    }
}

/// A cheap, cloneable view of a running backend's counters; stays valid after the backend stopped.
#[derive(Debug, Clone, Default)]
pub struct BackendCounters(pub(crate) Arc<Counters>);

impl BackendCounters {
    /// The counters as of now.
    pub fn snapshot(&self) -> BackendStats {
        self.0.snapshot()
    }
}

/// A snapshot of the counters. "Served" counters count requests that passed fault injection and reached their
/// handler; `http_requests` counts every HTTP request received, faulted or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendStats {
    /// Every HTTP request received (HTTP/1.1 and HTTP/2, before fault injection).
    pub http_requests: u64,
    /// JSON-RPC HTTP requests served (a batch counts once here).
    pub jsonrpc_requests: u64,
    /// JSON-RPC HTTP requests that were batches.
    pub jsonrpc_batches: u64,
    /// Individual JSON-RPC calls handled, over HTTP (each batch element) and WebSocket.
    pub jsonrpc_calls: u64,
    /// REST requests served (`/v1/...`).
    pub rest_requests: u64,
    /// WebSocket connections upgraded.
    pub ws_connections: u64,
    /// WebSocket data messages received.
    pub ws_messages: u64,
    /// `eth_subscription` notifications sent.
    pub ws_notifications: u64,
    /// SSE streams opened.
    pub sse_streams: u64,
    /// NDJSON streams opened.
    pub ndjson_streams: u64,
    /// Events sent on SSE, NDJSON and gRPC streams together.
    pub stream_events: u64,
    /// gRPC unary calls served.
    pub grpc_unary: u64,
    /// gRPC server-streaming calls served.
    pub grpc_streaming: u64,
    /// Injected HTTP 500 answers.
    pub injected_errors: u64,
    /// Injected connection drops.
    pub injected_drops: u64,
}

impl BackendStats {
    /// Requests that reached a handler, whatever their kind (WebSocket messages and gRPC calls included): the
    /// number a localnet run compares with the relays it sent.
    pub fn served(&self) -> u64 {
        self.jsonrpc_requests
            + self.rest_requests
            + self.ws_messages
            + self.sse_streams
            + self.ndjson_streams
            + self.grpc_unary
            + self.grpc_streaming
    }
}

impl fmt::Display for BackendStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http={} jsonrpc={} (batches={}, calls={}) rest={} ws={} (messages={}, notifications={}) sse={} \
             ndjson={} stream_events={} grpc_unary={} grpc_streaming={} injected_500={} injected_drops={}",
            self.http_requests,
            self.jsonrpc_requests,
            self.jsonrpc_batches,
            self.jsonrpc_calls,
            self.rest_requests,
            self.ws_connections,
            self.ws_messages,
            self.ws_notifications,
            self.sse_streams,
            self.ndjson_streams,
            self.stream_events,
            self.grpc_unary,
            self.grpc_streaming,
            self.injected_errors,
            self.injected_drops,
        )
    }
}
