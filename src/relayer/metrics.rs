//! Relayer metrics, with the Go relayer's names where the meaning is the same (`go-operator-surface.md` §B).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::telemetry::{Telemetry, TelemetryError};

/// Every relayer metric.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub received: IntCounterVec,
    pub served: IntCounterVec,
    pub served_optimistically: IntCounterVec,
    pub optimistic_chain_retries: IntCounterVec,
    pub rejected: IntCounterVec,
    pub validation_failures: IntCounterVec,
    pub mined: IntCounterVec,
    pub skipped_difficulty: IntCounterVec,
    pub skipped_5xx: IntCounterVec,
    pub dropped: IntCounterVec,
    /// What the shutdown's drain gave up on at its limit (module `drain`), by kind.
    pub shutdown_abandoned: IntCounterVec,
    pub meter: IntCounterVec,
    pub meter_storage_errors: IntCounterVec,
    pub backend_requests: IntCounterVec,
    pub backend_missing: IntCounterVec,
    pub backend_latency: HistogramVec,
    pub latency: HistogramVec,
    pub pre_backend: HistogramVec,
    pub post_backend: HistogramVec,
    pub validation_latency: HistogramVec,
    pub batch_size: Histogram,
    pub batch_failures: IntCounterVec,
    pub connections_waited: IntCounter,
    pub connections_refused: IntCounterVec,
    pub body_bytes_in_flight: IntGauge,
    pub optimistic_sessions: IntGauge,
    pub current_height: IntGauge,
    /// Streamed answers (module `stream`): signed batches written, lines and bytes forwarded, relays served.
    pub streaming_batches: IntCounter,
    pub streaming_chunks: IntCounter,
    pub streaming_bytes: IntCounter,
    pub streaming_served: IntCounterVec,
    /// Streamed answers that ended broken (over the body limit, the backend silent or failing), by reason: whether
    /// items were delivered before (then mined with the last one) or not (refunded).
    pub streams_broken: IntCounterVec,
    /// Backend pools (module `pool`): relays refused because no endpoint was in service, each endpoint's health
    /// (1/0, moved by the breaker and the health checks), health probe outcomes.
    pub fast_fails: IntCounterVec,
    pub backend_health: IntGaugeVec,
    pub health_check_successes: IntCounterVec,
    pub health_check_failures: IntCounterVec,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    pub fn new(telemetry: &Telemetry) -> Result<Self, TelemetryError> {
        let r = telemetry.registry();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, TelemetryError> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, TelemetryError> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)?;
            r.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("ha_relayer_relay_log_batch_size", "Relays per relay log append")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
        )?;
        r.register(Box::new(batch_size.clone()))?;
        let connections_waited = IntCounter::new(
            "ha_relayer_connections_waited_total",
            "Connections that waited to be served because relay_server.max_connections were open",
        )?;
        r.register(Box::new(connections_waited.clone()))?;
        let body_bytes_in_flight = IntGauge::new(
            "ha_relayer_request_body_bytes_in_flight",
            "Request-body bytes reserved by relays being handled (bounded by relay_server.max_body_bytes_in_flight)",
        )?;
        r.register(Box::new(body_bytes_in_flight.clone()))?;
        let optimistic_sessions = IntGauge::new(
            "ha_relayer_optimistic_sessions",
            "(supplier, session) pairs validated once, whose relays optimistic mode serves before validating",
        )?;
        r.register(Box::new(optimistic_sessions.clone()))?;
        let current_height = IntGauge::new(
            "ha_relayer_current_block_height",
            "Latest block height the relayer validates relays at",
        )?;
        r.register(Box::new(current_height.clone()))?;
        let plain = |name: &str, help: &str| -> Result<IntCounter, TelemetryError> {
            let c = IntCounter::new(name, help)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let streaming_batches = plain(
            "ha_relayer_streaming_batches_signed_total",
            "Signed batches of streamed (SSE/NDJSON) answers written to gateways",
        )?;
        let streaming_chunks = plain(
            "ha_relayer_streaming_chunks_forwarded_total",
            "Lines of streamed (SSE/NDJSON) answers forwarded to gateways",
        )?;
        let streaming_bytes = plain(
            "ha_relayer_streaming_bytes_forwarded_total",
            "Bytes of streamed answers written to gateways (signed batches with their delimiters)",
        )?;
        let connections_refused = counter(
            "ha_relayer_connections_refused_total",
            "Connections closed unserved, by reason (per_ip_limit: the client had relay_server.max_connections_per_ip open)",
            &["reason"],
        )?;
        let backend_health = IntGaugeVec::new(
            Opts::new(
                "ha_relayer_backend_health_status",
                "Backend endpoint in service (1) or taken out by the circuit breaker or health checks (0)",
            ),
            &["service_id", "endpoint"],
        )?;
        r.register(Box::new(backend_health.clone()))?;
        Ok(Self {
            fast_fails: counter(
                "ha_relayer_fast_fails_total",
                "Relays refused as backend_unavailable without work: no endpoint of their backend in service",
                &["service_id"],
            )?,
            backend_health,
            health_check_successes: counter(
                "ha_relayer_health_check_successes_total",
                "Backend health probes that succeeded",
                &["service_id", "endpoint"],
            )?,
            health_check_failures: counter(
                "ha_relayer_health_check_failures_total",
                "Backend health probes that failed",
                &["service_id", "endpoint"],
            )?,
            received: counter(
                "ha_relayer_relays_received_total",
                "Relays received",
                &["service_id", "rpc_type"],
            )?,
            served: counter(
                "ha_relayer_relays_served_total",
                "Relays served",
                &["service_id", "rpc_type", "status_code"],
            )?,
            served_optimistically: counter(
                "ha_relayer_relays_served_optimistically_total",
                "Relays served before their validation finished (optimistic mode)",
                &["service_id", "rpc_type"],
            )?,
            optimistic_chain_retries: counter(
                "ha_relayer_optimistic_chain_retries_total",
                "Chain reads of relays served first (optimistic mode) tried again because the node did not answer",
                &["service_id"],
            )?,
            rejected: counter(
                "ha_relayer_relays_rejected_total",
                "Relays refused",
                &["service_id", "rpc_type", "reason"],
            )?,
            validation_failures: counter(
                "ha_relayer_validation_failures_total",
                "Relays that failed validation (refused in eager mode, served but not mined in optimistic mode)",
                &["service_id", "reason"],
            )?,
            mined: counter(
                "ha_relayer_relays_mined_total",
                "Relays appended to the relay log",
                &["service_id"],
            )?,
            skipped_difficulty: counter(
                "ha_relayer_relays_skipped_difficulty_total",
                "Relays below the difficulty target",
                &["service_id"],
            )?,
            skipped_5xx: counter(
                "ha_relayer_relays_skipped_5xx_total",
                "Relays served with a backend 5xx answer, not mined",
                &["service_id"],
            )?,
            dropped: counter(
                "ha_relayer_relays_dropped_total",
                "Served relays that will not be mined for a reason other than validation or difficulty",
                &["service_id", "reason"],
            )?,
            shutdown_abandoned: counter(
                "ha_relayer_shutdown_abandoned_total",
                "Work the shutdown's drain gave up on at its limit: relays answered that may never reach the relay log \
                 (kind: optimistic settlements, detached minings and streams, relays queued for the log; websocket: \
                 connections still open)",
                &["kind"],
            )?,
            meter: counter(
                "ha_relayer_relay_meter_consumptions_total",
                "Relay meter decisions",
                &["service_id", "result"],
            )?,
            meter_storage_errors: counter(
                "ha_relayer_relay_meter_redis_errors_total",
                "Relay meter storage failures (any backend; Go name)",
                &["operation"],
            )?,
            backend_requests: counter(
                "ha_relayer_backend_requests_total",
                "Backend requests",
                &["service_id", "outcome", "status_code"],
            )?,
            backend_missing: counter(
                "ha_relayer_backend_missing_total",
                "Requests whose Rpc-Type has no backend of its own (served by the default backend)",
                &["service_id", "rpc_type"],
            )?,
            backend_latency: histogram(
                "ha_relayer_backend_latency_seconds",
                "Backend request latency",
                &["service_id", "outcome"],
            )?,
            latency: histogram(
                "ha_relayer_relay_latency_seconds",
                "Relay handling latency (request read to response ready)",
                &["service_id", "rpc_type"],
            )?,
            pre_backend: histogram(
                "ha_relayer_relay_pre_backend_seconds",
                "Time from the request's arrival to the backend call (decode, validation, metering)",
                &["service_id", "rpc_type"],
            )?,
            post_backend: histogram(
                "ha_relayer_relay_post_backend_seconds",
                "Time from the backend's answer to the response (signing, mining, durable append when acked)",
                &["service_id", "rpc_type"],
            )?,
            validation_latency: histogram(
                "ha_relayer_validation_latency_seconds",
                "Relay validation latency (chain checks from caches and the ring signature)",
                &["service_id", "mode"],
            )?,
            batch_size,
            batch_failures: counter(
                "ha_relayer_relay_log_append_failures_total",
                "Relay log batches that failed to append",
                &["backend"],
            )?,
            connections_waited,
            body_bytes_in_flight,
            connections_refused,
            optimistic_sessions,
            current_height,
            streaming_batches,
            streaming_chunks,
            streaming_bytes,
            streaming_served: counter(
                "ha_relayer_streaming_relays_served_total",
                "Relays answered as a stream of signed batches (SSE/NDJSON backends) whose stream ended",
                &["service_id"],
            )?,
            streams_broken: counter(
                "ha_relayer_streams_broken_total",
                "Streamed answers that ended broken (response_too_large, backend_timeout, backend_error), mined with \
                 the last item delivered when there was one",
                &["service_id", "reason"],
            )?,
        })
    }
}

impl super::log::LogObserver for Metrics {
    fn batch(&self, relays: usize, ok: bool) {
        self.batch_size.observe(relays as f64);
        if !ok {
            self.batch_failures.with_label_values(&["relay_log"]).inc();
        }
    }

    fn append_failed(&self) {
        self.batch_failures.with_label_values(&["relay_log"]).inc();
    }

    fn dropped(&self, service_id: &str, error: &storage::StorageError) {
        let reason = super::error::RelayError::from_storage(error.clone()).code().1;
        self.dropped.with_label_values(&[service_id, reason]).inc();
    }
}

impl super::meter::MeterObserver for Metrics {
    fn storage_error(&self, operation: &'static str) {
        self.meter_storage_errors.with_label_values(&[operation]).inc();
    }
}
