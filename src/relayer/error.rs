//! Why the relayer refuses a relay: one [`RelayError`] variant per reason, each with a stable
//! `RelayMinerError.code` and HTTP status that never change meaning (gateways and dashboards key on them).

use std::time::Duration;

use axum::http::StatusCode;

use super::meter::MeterError;
use super::routes::RouteError;
use crate::chain::query::ChainError;
use crate::telemetry::TelemetryError;

/// Why a relay was refused; each maps to a stable `RelayMinerError.code`.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Body is not a valid RelayRequest / payload.
    #[error("malformed relay request: {0}")]
    Malformed(String),
    /// The named supplier is not one of ours.
    #[error("supplier {0} is not served by this relay miner")]
    NotOurSupplier(String),
    /// No backend for the service.
    #[error("service {0} is not configured")]
    UnknownService(String),
    /// The ring signature does not verify or a ring member is not the app's.
    #[error("ring signature rejected: {0}")]
    RingSignature(crate::protocol::ring::RingError),
    /// The session header is not the chain's, or the supplier not in it.
    #[error("session mismatch: {0}")]
    SessionMismatch(String),
    /// The session's grace period is over or its claim window opened.
    #[error("session ending at {end} no longer accepts relays at height {height}")]
    SessionExpired {
        /// Session end height.
        end: i64,
        /// Current height.
        height: i64,
    },
    /// A chain query failed.
    #[error("chain query failed: {0}")]
    Chain(ChainError),
    /// The backend could not be reached or broke the connection.
    #[error("backend error: {0}")]
    Backend(String),
    /// The relay could not be recorded.
    #[error("relay log append failed: {0}")]
    Storage(storage::StorageError),
    /// The application's stake for the session is consumed.
    #[error("{0}")]
    OverServiced(MeterError),
    /// The request body is larger than the service's limit.
    #[error("relay request exceeds the {limit}-byte limit")]
    RequestTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The backend's answer is larger than the service's limit.
    #[error("backend response exceeds the {limit}-byte limit")]
    ResponseTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The backend did not answer in time.
    #[error("backend did not answer within {0:?}")]
    BackendTimeout(Duration),
    /// The relay meter's storage failed and `fail_behavior` is `closed`.
    #[error("{0}")]
    MeterUnavailable(MeterError),
    /// The client did not send the request body in time (`relay_server.body_read_timeout_seconds`).
    #[error("request body not received within {0:?}")]
    RequestTimeout(Duration),
    /// The relay (request and response together) is larger than the relay log can hold (the raft entry limit);
    /// it was not recorded. A limit of this one relay, not a storage outage.
    #[error("relay not recorded: {0}")]
    RelayTooLarge(storage::StorageError),
    /// Too many request-body bytes are buffered by other requests (`relay_server.max_body_bytes_in_flight`) and
    /// none were released within `relay_server.body_budget_wait_ms`.
    #[error("relay miner overloaded: {budget} bytes of request bodies in flight; none released within {waited:?}")]
    Overloaded {
        /// The budget (`relay_server.max_body_bytes_in_flight`).
        budget: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// Every WebSocket relay connection allowed is open (`relay_server.max_connections`, module `ws`).
    #[error("relay miner overloaded: {max} WebSocket relay connections open")]
    WebSocketsFull {
        /// The bound.
        max: usize,
    },
    /// The relay is for a session starting above this relay miner's height (the gateway's chain view is ahead of
    /// ours; for the session right after the current one, its first block did not reach us within the wait);
    /// retrying shortly, here or elsewhere, works.
    #[error("session starting at {start} has not started: this relay miner is at height {height}")]
    SessionNotStarted {
        /// The session's start height.
        start: i64,
        /// This relay miner's height when it refused the relay.
        height: i64,
    },
    /// Redis memory is above the relay threshold (`storage.redis.relay_max_memory_ratio` of `maxmemory`): relays
    /// are not recorded so the miner keeps headroom to ingest and prune; taken again once memory is below it.
    /// Every relayer on that Redis refuses alike.
    #[error("relay not recorded: {0}")]
    MemoryThreshold(storage::StorageError),
    /// No endpoint of the relay's backend is in service (circuit breaker or health checks, module `pool`): refused
    /// before any work, nothing charged or mined.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
}

impl RelayError {
    /// The stable code and metric reason. Codes never change meaning; new reasons get new codes.
    ///
    /// | code | reason | HTTP |
    /// |---|---|---|
    /// | 1 | malformed | 400 |
    /// | 2 | unknown_supplier | 400 |
    /// | 3 | unknown_service | 400 |
    /// | 4 | bad_ring_signature | 400 |
    /// | 5 | session_mismatch | 400 |
    /// | 6 | session_expired | 400 |
    /// | 7 | chain_unavailable | 503 |
    /// | 8 | backend_error | 502 |
    /// | 9 | storage_error | 503 |
    /// | 10 | over_serviced | 429 |
    /// | 11 | request_too_large | 413 |
    /// | 12 | response_too_large | 502 |
    /// | 13 | backend_timeout | 504 |
    /// | 14 | meter_unavailable | 503 |
    /// | 15 | request_timeout | 408 |
    /// | 16 | relay_too_large | 507 |
    /// | 17 | overloaded | 503 |
    /// | 18 | session_not_started | 503 |
    /// | 19 | redis_memory_threshold | 503 |
    /// | 20 | backend_unavailable | 503 |
    pub fn code(&self) -> (u32, &'static str) {
        match self {
            Self::Malformed(_) => (1, "malformed"),
            Self::NotOurSupplier(_) => (2, "unknown_supplier"),
            Self::UnknownService(_) => (3, "unknown_service"),
            Self::RingSignature(_) => (4, "bad_ring_signature"),
            Self::SessionMismatch(_) => (5, "session_mismatch"),
            Self::SessionExpired { .. } => (6, "session_expired"),
            Self::Chain(_) => (7, "chain_unavailable"),
            Self::Backend(_) => (8, "backend_error"),
            Self::Storage(_) => (9, "storage_error"),
            Self::OverServiced(_) => (10, "over_serviced"),
            Self::RequestTooLarge { .. } => (11, "request_too_large"),
            Self::ResponseTooLarge { .. } => (12, "response_too_large"),
            Self::BackendTimeout(_) => (13, "backend_timeout"),
            Self::MeterUnavailable(_) => (14, "meter_unavailable"),
            Self::RequestTimeout(_) => (15, "request_timeout"),
            Self::RelayTooLarge(_) => (16, "relay_too_large"),
            Self::Overloaded { .. } | Self::WebSocketsFull { .. } => (17, "overloaded"),
            Self::SessionNotStarted { .. } => (18, "session_not_started"),
            Self::MemoryThreshold(_) => (19, "redis_memory_threshold"),
            Self::BackendUnavailable(_) => (20, "backend_unavailable"),
        }
    }

    /// The HTTP status the refusal is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Chain(_)
            | Self::Storage(_)
            | Self::MeterUnavailable(_)
            | Self::Overloaded { .. }
            | Self::WebSocketsFull { .. }
            | Self::SessionNotStarted { .. }
            | Self::MemoryThreshold(_)
            | Self::BackendUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Backend(_) | Self::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            Self::BackendTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::OverServiced(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RelayTooLarge(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A relay log append failure: [`RelayError::RelayTooLarge`] for a relay too large to hold,
    /// [`RelayError::MemoryThreshold`] for Redis above the relay threshold, else [`RelayError::Storage`].
    pub(super) fn from_storage(e: storage::StorageError) -> Self {
        match e {
            storage::StorageError::TooLarge(_) => Self::RelayTooLarge(e),
            storage::StorageError::RelayMemoryThreshold(_) => Self::MemoryThreshold(e),
            e => Self::Storage(e),
        }
    }

    pub(super) fn from_meter(e: MeterError) -> Self {
        match e {
            MeterError::OverServiced { .. } => Self::OverServiced(e),
            MeterError::Unavailable(_) => Self::MeterUnavailable(e),
        }
    }
}

/// Errors building a relayer.
#[derive(Debug, thiserror::Error)]
pub enum RelayerBuildError {
    /// Metrics could not be registered (e.g. a second relayer on the same registry).
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// A service could not be built from the config.
    #[error(transparent)]
    Route(#[from] RouteError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No endpoint in service: its own stable code, 503, and gRPC `UNAVAILABLE` (a gateway retries elsewhere).
    #[test]
    fn backend_unavailable_is_code_20_and_503() {
        let e = RelayError::BackendUnavailable("none in service".into());
        assert_eq!(e.code(), (20, "backend_unavailable"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(super::super::grpc::grpc_code(&e), 14);
    }
}
