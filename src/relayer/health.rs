//! Active health checks of backend endpoints (`backends.{kind}.health_check`, the Go relayer's keys): one task per
//! endpoint probes it every `interval_seconds`; `unhealthy_threshold` failures in a row take it out of its pool
//! (module `pool`), `healthy_threshold` successes in a row bring it back. Probes and relays share the endpoint's
//! failure count, as the breaker is one state per endpoint.
//!
//! A `grpc` backend whose check's `endpoint` is [`GRPC_HEALTH_CHECK_PATH`] is probed with the gRPC health checking
//! protocol (`grpc.health.v1.Health/Check`, the way gRPC load balancers and Kubernetes probe gRPC servers): a
//! gRPC call over HTTP/2 asking about the service named by `request_body` (empty: the server), healthy when it
//! answers `grpc-status` 0 with `SERVING`. A plain HTTP request to that path fails against every gRPC server
//! (415 for its content type, 404 behind a router), which took every endpoint of a gRPC backend out and refused
//! its relays.
//!
//! The tasks are owned by the backend they probe: each holds a `Weak` of it and the receiver of a channel whose
//! sender the backend holds, so dropping the relayer (its services, their backends) ends every probe task at
//! once, with no task left behind.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt as _;
use tokio::sync::watch;

use super::metrics::Metrics;
use super::routes::{Backend, HttpClient};

/// Largest probe answer body read (to look for `expected_body`).
const MAX_PROBE_BODY: usize = 1 << 20;

/// The gRPC health checking protocol's method (module docs).
pub const GRPC_HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct GrpcHealthRequest {
    /// The service asked about; empty for the server.
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct GrpcHealthResponse {
    /// `ServingStatus`: 0 unknown, 1 serving, 2 not serving, 3 service unknown.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `ServingStatus.SERVING`.
const GRPC_SERVING: i32 = 1;

/// One gRPC message frame (uncompressed flag, big-endian length, the message).
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&body);
    Bytes::from(frame)
}

/// Whether a gRPC health answer (its `grpc-status`, from the trailers or a trailers-only answer's headers, and
/// its body) says `SERVING`; `Err` says why not.
fn grpc_health(grpc_status: Option<&str>, body: &[u8]) -> Result<(), String> {
    match grpc_status {
        Some("0") => {}
        Some(code) => return Err(format!("gRPC health check answered grpc-status {code}")),
        None => return Err("gRPC health check answered without grpc-status".into()),
    }
    let (flag, rest) = body
        .split_first()
        .ok_or_else(|| "gRPC health check answered no message".to_string())?;
    if *flag != 0 {
        return Err("gRPC health check answered a compressed message".into());
    }
    let len = rest
        .get(..4)
        .and_then(|l| <[u8; 4]>::try_from(l).ok())
        .map(u32::from_be_bytes)
        .and_then(|l| usize::try_from(l).ok())
        .ok_or_else(|| "gRPC health check answered a truncated frame".to_string())?;
    let message = rest
        .get(4..4 + len)
        .ok_or_else(|| "gRPC health check answered a truncated frame".to_string())?;
    let answer = <GrpcHealthResponse as prost::Message>::decode(message)
        .map_err(|e| format!("gRPC health check answer does not decode: {e}"))?;
    match answer.status {
        GRPC_SERVING => Ok(()),
        status => Err(format!(
            "gRPC health check answered serving status {status} (not SERVING)"
        )),
    }
}

/// A backend's health check, ready to send.
#[derive(Debug)]
pub struct HealthCheck {
    /// Probe method.
    pub method: http::Method,
    /// Path (and query) probed on every endpoint.
    pub path: String,
    /// Headers over the backend's (theirs win), `Content-Type` included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Probe body.
    pub body: Bytes,
    /// Between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Successes in a row that bring an endpoint back.
    pub healthy_threshold: u32,
    /// Statuses that are healthy (empty: any 2xx).
    pub expected_status: Vec<u16>,
    /// Text the body must contain.
    pub expected_body: Option<String>,
}

impl HealthCheck {
    /// Whether an answer with `status` and `body` is healthy.
    fn healthy(&self, status: u16, body: &[u8]) -> bool {
        let status_ok = if self.expected_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected_status.contains(&status)
        };
        status_ok
            && self
                .expected_body
                .as_deref()
                .is_none_or(|want| want.is_empty() || body.windows(want.len()).any(|w| w == want.as_bytes()))
    }
}

/// The probe URI of an endpoint `url` (`ws` read as `http`, `wss` as `https`) at `path`.
fn probe_uri(url: &str, path: &str) -> Option<http::Uri> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" => "http".to_string(),
        "wss" => "https".to_string(),
        other => other.to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

/// Sets every endpoint's `ha_relayer_backend_health_status` to 1 and starts the probe tasks of `backend`
/// (when it has a health check), owned by it (module docs).
pub(super) fn start(service_id: &str, backend: &Arc<Backend>, metrics: &Arc<Metrics>) {
    for endpoint in backend.pool.endpoints() {
        metrics
            .backend_health
            .with_label_values(&[service_id, &endpoint.name])
            .set(1);
    }
    let Some(check) = &backend.health else {
        return;
    };
    // The backend's own client: HTTP/2 for a `grpc` backend (an HTTP/1.1 probe would fail against it), HTTP/1.1
    // otherwise.
    let client = backend.client.clone();
    for index in 0..backend.pool.len() {
        let task = Probe {
            service_id: service_id.to_string(),
            backend: Arc::downgrade(backend),
            index,
            client: client.clone(),
            metrics: Arc::clone(metrics),
            stop: backend.health_stop.subscribe(),
        };
        tokio::spawn(task.run(check.interval));
    }
}

/// The probe task of one endpoint.
struct Probe {
    service_id: String,
    backend: Weak<Backend>,
    index: usize,
    client: HttpClient,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<()>,
}

impl Probe {
    async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                // The backend (its sender) was dropped.
                _ = self.stop.changed() => return,
            }
            let Some(backend) = self.backend.upgrade() else {
                return;
            };
            let Some(check) = &backend.health else {
                return;
            };
            let endpoint = backend.pool.endpoint(self.index);
            let outcome = self.probe(&backend, check).await;
            let now = Instant::now();
            let labels = [self.service_id.as_str(), endpoint.name.as_str()];
            let transition = match &outcome {
                Ok(()) => {
                    self.metrics.health_check_successes.with_label_values(&labels).inc();
                    backend
                        .pool
                        .record_probe_success(self.index, now, check.healthy_threshold)
                }
                Err(reason) => {
                    self.metrics.health_check_failures.with_label_values(&labels).inc();
                    tracing::debug!(service = %self.service_id, endpoint = %endpoint.name, %reason, "health probe failed");
                    backend.pool.record_probe_failure(self.index, now)
                }
            };
            if let Some(t) = transition {
                let reason = outcome.err().unwrap_or_default();
                super::forward::report_transition(&self.metrics, &self.service_id, &backend, self.index, t, &reason);
            }
        }
    }

    /// One probe: `Err` says why it failed.
    async fn probe(&self, backend: &Backend, check: &HealthCheck) -> Result<(), String> {
        let endpoint = backend.pool.endpoint(self.index);
        let uri = probe_uri(&endpoint.url, &check.path).ok_or_else(|| "no probe URI".to_string())?;
        if backend.rpc_type == super::RpcType::Grpc && check.path == GRPC_HEALTH_CHECK_PATH {
            return self.grpc_probe(backend, check, uri).await;
        }
        let mut request = http::Request::new(http_body_util::Full::new(check.body.clone()));
        *request.method_mut() = check.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        for (name, value) in backend.headers.iter().chain(&check.headers) {
            headers.insert(name.clone(), value.clone());
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| format!("probe: {e}"))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_PROBE_BODY)
                .collect()
                .await
                .map_err(|e| format!("probe body: {e}"))?
                .to_bytes();
            if check.healthy(status, &body) {
                Ok(())
            } else {
                Err(format!("probe answered {status}"))
            }
        };
        tokio::time::timeout(check.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("probe timed out after {:?}", check.timeout)))
    }

    /// A probe with the gRPC health checking protocol (module docs): `request_body` names the service.
    async fn grpc_probe(&self, backend: &Backend, check: &HealthCheck, uri: http::Uri) -> Result<(), String> {
        let service = String::from_utf8_lossy(&check.body).trim().to_string();
        let mut request = http::Request::new(http_body_util::Full::new(grpc_frame(&GrpcHealthRequest { service })));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        // The backend's headers (its authentication) and the check's, but the gRPC ones are the protocol's.
        for (name, value) in backend.headers.iter().chain(&check.headers) {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| format!("probe: {e}"))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(format!("gRPC health check answered HTTP {status}"));
            }
            let (parts, body) = response.into_parts();
            let collected = http_body_util::Limited::new(body, MAX_PROBE_BODY)
                .collect()
                .await
                .map_err(|e| format!("probe body: {e}"))?;
            let trailers = collected.trailers().cloned();
            let body = collected.to_bytes();
            // A trailers-only answer (an error before any message) carries grpc-status in its headers.
            let grpc_status = trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .or_else(|| parts.headers.get("grpc-status"))
                .and_then(|v| v.to_str().ok());
            grpc_health(grpc_status, &body)
        };
        tokio::time::timeout(check.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("probe timed out after {:?}", check.timeout)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(expected_status: Vec<u16>, expected_body: Option<&str>) -> HealthCheck {
        HealthCheck {
            method: http::Method::GET,
            path: "/health".into(),
            headers: Vec::new(),
            body: Bytes::new(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            expected_status,
            expected_body: expected_body.map(str::to_string),
        }
    }

    #[test]
    fn probe_success_is_the_expected_status_and_body() {
        assert!(check(vec![], None).healthy(204, b""));
        assert!(!check(vec![], None).healthy(503, b""));
        assert!(!check(vec![], None).healthy(301, b""));
        assert!(check(vec![503], None).healthy(503, b""));
        assert!(!check(vec![503], None).healthy(200, b""));
        assert!(check(vec![], Some("ok")).healthy(200, b"{\"status\":\"ok\"}"));
        assert!(!check(vec![], Some("ok")).healthy(200, b"{\"status\":\"down\"}"));
    }

    /// The probe tasks are owned by their backend: dropping it (with the relayer's services) ends them at once,
    /// though their next probe is an hour away.
    #[tokio::test]
    async fn probe_tasks_end_with_their_backend() {
        let tls = super::super::routes::backend_tls(None).unwrap();
        let mut backend = Backend::pooled(
            super::super::RpcType::JsonRpc,
            vec![
                ("a".into(), "http://127.0.0.1:1".into()),
                ("b".into(), "http://127.0.0.1:2".into()),
            ],
            &super::super::PoolOptions::default(),
            super::super::PoolSettings::default(),
            &tls,
        )
        .unwrap();
        let mut probe = check(vec![], None);
        probe.interval = Duration::from_secs(3600);
        backend.health = Some(probe);
        let backend = Arc::new(backend);
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let metrics = Arc::new(Metrics::new(&telemetry).unwrap());
        start("svc", &backend, &metrics);
        assert_eq!(Arc::strong_count(&metrics), 3, "one task per endpoint");
        // Both probed once (the first tick is immediate), connection refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.health_check_failures.with_label_values(&["svc", "b"]).get() < 1
            || metrics.health_check_failures.with_label_values(&["svc", "a"]).get() < 1
        {
            assert!(Instant::now() < deadline, "probes ran");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(backend);
        while Arc::strong_count(&metrics) > 1 {
            assert!(Instant::now() < deadline, "the probe tasks ended");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The gRPC health answer: `SERVING` with grpc-status 0 only.
    #[test]
    fn grpc_health_answers_are_read_as_the_protocol_says() {
        let serving = grpc_frame(&GrpcHealthResponse { status: GRPC_SERVING });
        assert_eq!(grpc_health(Some("0"), &serving), Ok(()));
        let not_serving = grpc_frame(&GrpcHealthResponse { status: 2 });
        assert!(grpc_health(Some("0"), &not_serving).unwrap_err().contains("status 2"));
        // Unknown (0) is the default value: an empty message.
        assert!(grpc_health(Some("0"), &grpc_frame(&GrpcHealthResponse::default())).is_err());
        assert!(grpc_health(Some("5"), b"").unwrap_err().contains("grpc-status 5"));
        assert!(grpc_health(None, &serving).is_err());
        assert!(grpc_health(Some("0"), &serving[..6]).unwrap_err().contains("truncated"));
        let mut compressed = serving.to_vec();
        compressed[0] = 1;
        assert!(grpc_health(Some("0"), &compressed).unwrap_err().contains("compressed"));
        // The request frame: flag, length, `service` (field 1).
        assert_eq!(
            grpc_frame(&GrpcHealthRequest { service: "x".into() }).as_ref(),
            &[0, 0, 0, 0, 3, 0x0a, 1, b'x']
        );
    }

    #[test]
    fn probe_uris_use_http_for_websocket_endpoints() {
        assert_eq!(
            probe_uri("ws://h:1/socket?x=1", "/health").unwrap().to_string(),
            "http://h:1/health"
        );
        assert_eq!(
            probe_uri("wss://h/x", "status").unwrap().to_string(),
            "https://h/status"
        );
        assert_eq!(
            probe_uri("http://h:2", "/h?a=b").unwrap().to_string(),
            "http://h:2/h?a=b"
        );
    }
}
