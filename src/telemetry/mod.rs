//! Telemetry: tracing setup, the Prometheus registry, readiness, loop heartbeats and the side HTTP server
//! (`/health`, `/ready`, `/metrics`) on its own listen address.
//!
//! Rules it enforces (`../shared/docs/lessons.md`): `/ready` answers 503 with the reasons whenever a component says
//! it is not ready (storage unreachable or refusing writes, no leader, …), and every transition to not-ready is
//! logged at WARN with the reason and counted; heartbeats are timestamps a loop advances on every iteration, busy
//! or idle, so a staleness alert means a stuck loop and not a quiet one. Metric names use the Go fleet's `ha_`
//! namespace where the meaning is the same (`../shared/spec/go-operator-surface.md` §B).
//!
//! # Advisory components
//! `/ready` is what a load balancer or gateway routes relays by, so it must say whether this process can serve
//! and record relays, nothing else. A component marked advisory ([`Telemetry::set_advisory`]) is one whose
//! trouble does not stop that: the miner of a `relay-miner run` process (both roles), whose alarms (a Go miner
//! beside our leader, another process under our instance name) would otherwise take a perfectly able relayer
//! out of rotation and lose every relay it would have served. An advisory component that is not ready is
//! logged at WARN and counted as any other (`ha_component_ready{component} 0`,
//! `ha_component_not_ready_total{component,reason}`) and listed in the body of a 200 `/ready` (`advisory
//! {component}: {reason}: {detail}`), and `/ready?component={name}` answers that component alone (503 when it is
//! not ready, advisory or not): what an operator alerts on for the miner (`/ready?component=miner`, or
//! `ha_component_ready{component="miner"} == 0`). A component not marked advisory fails `/ready` as before (the
//! miner of a `relay-miner miner` process: it serves nothing else).

mod throttle;

pub use throttle::LogThrottle;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus::{Encoder as _, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Errors setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A metric could not be created or registered (duplicate name, bad label).
    #[error("metric registration: {0}")]
    Metric(#[from] prometheus::Error),
}

/// The process-wide telemetry handle: cheap to clone, shared by every component.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    readiness: Arc<RwLock<BTreeMap<String, String>>>,
    advisory: Arc<RwLock<BTreeSet<String>>>,
    ready_gauge: IntGaugeVec,
    not_ready_total: IntCounterVec,
    heartbeat: GaugeVec,
}

impl Telemetry {
    /// A fresh registry with the telemetry's own metrics registered.
    pub fn new() -> Result<Self, TelemetryError> {
        let registry = Registry::new();
        let ready_gauge = IntGaugeVec::new(
            Opts::new("ha_component_ready", "1 when the component is ready, 0 when not"),
            &["component"],
        )?;
        let not_ready_total = IntCounterVec::new(
            Opts::new(
                "ha_component_not_ready_total",
                "Transitions of a component to not-ready, by reason",
            ),
            &["component", "reason"],
        )?;
        let heartbeat = GaugeVec::new(
            Opts::new(
                "ha_loop_heartbeat_timestamp_seconds",
                "Unix time of the last iteration of a background loop (advances when idle too)",
            ),
            &["loop"],
        )?;
        registry.register(Box::new(ready_gauge.clone()))?;
        registry.register(Box::new(not_ready_total.clone()))?;
        registry.register(Box::new(heartbeat.clone()))?;
        Ok(Self {
            registry,
            readiness: Arc::default(),
            advisory: Arc::default(),
            ready_gauge,
            not_ready_total,
            heartbeat,
        })
    }

    /// The registry components register their metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers `collector`. A failure (a name registered twice, a bad label) is a start-up error: a node
    /// whose metrics are missing would look healthy on every dashboard that alerts on them.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), TelemetryError> {
        self.registry.register(collector).map_err(TelemetryError::from)
    }

    /// Marks `component` ready.
    pub fn set_ready(&self, component: &str) {
        let was = self.write_readiness(|map| map.remove(component));
        if let Some(reason) = was {
            tracing::info!(component, previous_reason = %reason, "component ready again");
        }
        self.ready_gauge.with_label_values(&[component]).set(1);
    }

    /// Marks `component` not ready because of `reason` (a short stable token like `redis_oom` or `no_leader`);
    /// `detail` is logged. Logged at WARN and counted on each transition, never silently.
    pub fn set_not_ready(&self, component: &str, reason: &str, detail: &str) {
        let previous = self.write_readiness(|map| map.insert(component.to_string(), format!("{reason}: {detail}")));
        if previous
            .as_deref()
            .map(|p| p.split(':').next() != Some(reason))
            .unwrap_or(true)
        {
            tracing::warn!(component, reason, detail, "component not ready");
            self.not_ready_total.with_label_values(&[component, reason]).inc();
        }
        self.ready_gauge.with_label_values(&[component]).set(0);
    }

    /// Marks `component` advisory (module docs): while not ready it is reported, logged and counted, but does
    /// not fail `/ready`.
    pub fn set_advisory(&self, component: &str) {
        match self.advisory.write() {
            Ok(mut set) => set.insert(component.to_string()),
            Err(poisoned) => poisoned.into_inner().insert(component.to_string()),
        };
    }

    /// `Ok` when every component but the advisory ones is ready, else each not-ready component (advisory ones
    /// included) with its reason.
    pub fn readiness(&self) -> Result<(), Vec<(String, String)>> {
        let report = self.report();
        if report.failing() {
            Err(report.not_ready.into_iter().map(|(c, r, _)| (c, r)).collect())
        } else {
            Ok(())
        }
    }

    /// Every not-ready component, with its reason and whether it is advisory.
    fn report(&self) -> ReadinessReport {
        let map = match self.readiness.read() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let advisory = match self.advisory.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        ReadinessReport {
            not_ready: map
                .into_iter()
                .map(|(c, r)| {
                    let advisory = advisory.contains(&c);
                    (c, r, advisory)
                })
                .collect(),
        }
    }

    /// The `/ready` answer: for the whole process, or for `component` alone (`/ready?component=...`).
    fn ready_response(&self, component: Option<&str>) -> (StatusCode, String) {
        let report = self.report();
        if let Some(component) = component {
            return match report.not_ready.iter().find(|(c, _, _)| c == component) {
                Some((c, r, _)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{c}: {r}\n")),
                None => (StatusCode::OK, format!("{component}: ready\n")),
            };
        }
        let mut body = String::new();
        if !report.failing() {
            body.push_str("ready\n");
        }
        for (c, r, advisory) in &report.not_ready {
            if *advisory {
                body.push_str(&format!("advisory {c}: {r}\n"));
            } else {
                body.push_str(&format!("{c}: {r}\n"));
            }
        }
        let status = if report.failing() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (status, body)
    }

    /// A heartbeat for the loop named `name`.
    pub fn heartbeat(&self, name: &str) -> Heartbeat {
        Heartbeat {
            gauge: self.heartbeat.with_label_values(&[name]),
        }
    }

    /// The last value of the heartbeat of the loop named `name` (unix seconds), if that loop ever took its
    /// heartbeat; read from the registry without creating the series. For tests polling that a loop beats.
    #[cfg(test)]
    pub(crate) fn heartbeat_seconds(&self, name: &str) -> Option<f64> {
        let prefix = format!("ha_loop_heartbeat_timestamp_seconds{{loop=\"{name}\"}} ");
        self.render_metrics()
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str())?.trim().parse().ok())
    }

    /// Polls (every 10 ms, for up to 15 s) until the heartbeat of the loop named `name` has been set and then
    /// set again to a later time; panics naming the loop otherwise. For tests of each loop's heartbeat.
    #[cfg(test)]
    pub(crate) async fn assert_heartbeat_advances(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut first = None;
        loop {
            if let Some(now) = self.heartbeat_seconds(name).filter(|v| *v > 0.0) {
                match first {
                    None => first = Some(now),
                    Some(first) if now > first => return,
                    Some(_) => {}
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "heartbeat of loop `{name}` did not advance (first beat: {first:?})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The text exposition of every registered metric.
    pub fn render_metrics(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format except on invalid metric families, which
        // registration already rules out; an error yields what was written so far.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The side HTTP router: `/health` (alive), `/ready` (503 with reasons when not ready), `/metrics`.
    pub fn router(&self) -> axum::Router {
        let ready = self.clone();
        let metrics = self.clone();
        axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok\n" }))
            .route(
                "/ready",
                axum::routing::get(move |query: axum::extract::Query<ReadyQuery>| {
                    let t = ready.clone();
                    async move { t.ready_response(query.component.as_deref()).into_response() }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let t = metrics.clone();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            t.render_metrics(),
                        )
                    }
                }),
            )
    }

    fn write_readiness<R>(&self, f: impl FnOnce(&mut BTreeMap<String, String>) -> R) -> R {
        match self.readiness.write() {
            Ok(mut map) => f(&mut map),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// The not-ready components at one moment: `(component, "reason: detail", advisory)`.
struct ReadinessReport {
    not_ready: Vec<(String, String, bool)>,
}

impl ReadinessReport {
    /// Whether `/ready` fails: a component that is not advisory is not ready.
    fn failing(&self) -> bool {
        self.not_ready.iter().any(|(_, _, advisory)| !advisory)
    }
}

/// `/ready`'s query: `component` asks about one component alone.
#[derive(Debug, Default, serde::Deserialize)]
struct ReadyQuery {
    component: Option<String>,
}

/// How often a loop that waits for work (a channel, a file change) wakes up to beat when there is none, so an
/// idle loop is not taken for a stuck one. Alerts on `ha_loop_heartbeat_timestamp_seconds` should allow several
/// of these (and the loop's own period, when longer).
pub const IDLE_BEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// A loop's heartbeat: call [`Heartbeat::beat`] once per iteration.
#[derive(Clone)]
pub struct Heartbeat {
    gauge: prometheus::Gauge,
}

impl Heartbeat {
    /// Records that the loop is alive now.
    pub fn beat(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.gauge.set(now);
    }

    /// The last beat (unix seconds; 0 before the first), for a watchdog telling a loop that stopped beating.
    pub fn last(&self) -> f64 {
        self.gauge.get()
    }
}

/// Installs the global tracing subscriber (`level` is a level or env-filter directive; `json` selects JSON lines).
/// `RUST_LOG` overrides `level`. Returns false when a subscriber was already installed.
pub fn init_tracing(level: &str, json: bool) -> bool {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn ready_flips_to_503_with_reasons_and_back() {
        let telemetry = Telemetry::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = telemetry.router();
        tokio::spawn(async move { axum::serve(listener, router).await });

        assert_eq!(get(addr, "/health").await.0, 200);
        assert_eq!(get(addr, "/ready").await.0, 200);

        telemetry.set_not_ready("storage", "redis_oom", "OOM command not allowed");
        telemetry.set_not_ready("storage", "redis_oom", "still OOM"); // same reason: counted once
        let (status, body) = get(addr, "/ready").await;
        assert_eq!(status, 503);
        assert!(body.contains("storage: redis_oom: still OOM"), "{body}");

        let metrics = get(addr, "/metrics").await.1;
        assert!(
            metrics.contains("ha_component_not_ready_total{component=\"storage\",reason=\"redis_oom\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("ha_component_ready{component=\"storage\"} 0"),
            "{metrics}"
        );

        telemetry.set_ready("storage");
        assert_eq!(get(addr, "/ready").await.0, 200);
        assert!(
            get(addr, "/metrics")
                .await
                .1
                .contains("ha_component_ready{component=\"storage\"} 1")
        );
    }

    /// An advisory component (the miner of a `run` process) that is not ready leaves `/ready` at 200 with its
    /// reason listed; `/ready?component=` answers it alone; a non-advisory one fails `/ready` as before.
    #[tokio::test]
    async fn an_advisory_component_is_listed_but_does_not_fail_ready() {
        let telemetry = Telemetry::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = telemetry.router();
        tokio::spawn(async move { axum::serve(listener, router).await });

        telemetry.set_advisory("miner");
        telemetry.set_not_ready("miner", "redis_go_miner_beside_leader", "ha:miner:active go-1");
        let (status, body) = get(addr, "/ready").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            "ready\nadvisory miner: redis_go_miner_beside_leader: ha:miner:active go-1\n"
        );
        assert_eq!(telemetry.readiness(), Ok(()));
        let (status, body) = get(addr, "/ready?component=miner").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body, "miner: redis_go_miner_beside_leader: ha:miner:active go-1\n");
        assert_eq!(
            get(addr, "/ready?component=storage").await,
            (200, "storage: ready\n".into())
        );
        let metrics = get(addr, "/metrics").await.1;
        assert!(
            metrics.contains("ha_component_ready{component=\"miner\"} 0"),
            "{metrics}"
        );

        telemetry.set_not_ready("storage", "redis_oom", "OOM");
        let (status, body) = get(addr, "/ready").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            body,
            "advisory miner: redis_go_miner_beside_leader: ha:miner:active go-1\nstorage: redis_oom: OOM\n"
        );
        telemetry.set_ready("storage");
        telemetry.set_ready("miner");
        assert_eq!(get(addr, "/ready").await, (200, "ready\n".into()));
        assert_eq!(
            get(addr, "/ready?component=miner").await,
            (200, "miner: ready\n".into())
        );
    }

    #[test]
    fn heartbeat_advances() {
        let telemetry = Telemetry::new().unwrap();
        let hb = telemetry.heartbeat("miner_ingest");
        hb.beat();
        let text = telemetry.render_metrics();
        let line = text
            .lines()
            .find(|l| l.starts_with("ha_loop_heartbeat_timestamp_seconds{loop=\"miner_ingest\"}"))
            .unwrap();
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 1.7e9, "{line}");
    }
}
