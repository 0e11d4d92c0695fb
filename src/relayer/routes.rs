//! Per-service routing built from the config: one backend per rpc type, chosen by the request's `Rpc-Type` header
//! (poktroll `RPCType` numbers, spec §1.1 / §2.7) with the service's `default_backend` as fallback, plus the
//! service's timeouts, body limit, validation mode and a pooled HTTP client per backend. A backend has one
//! endpoint (`url`) or several (`urls`): module `pool` picks one per request and keeps each one's circuit
//! breaker, module `health` probes them when `health_check` is on.
//!
//! Go settings and what they become here: `max_conns_per_host` is a semaphore per backend endpoint (requests beyond it
//! wait, within the request timeout); `max_idle_conns_per_host` and `idle_conn_timeout_seconds` are hyper's pool
//! limits; `dial_timeout_seconds` and `tcp_keep_alive_seconds` the connector's; `response_header_timeout_seconds`
//! bounds the wait for the response head and `request_timeout_seconds` the whole exchange including the body.
//! `http_transport.max_idle_conns` (a process-wide idle cap) has no hyper equivalent and is not enforced: the
//! per-host cap bounds idle connections per backend instead.
//!
//! `0` in `http_transport` means what it means to Go's `net/http` `Transport` and `net.Dialer`:
//! `max_conns_per_host` no limit; `max_idle_conns_per_host` Go's default of 2; `idle_conn_timeout_seconds` idle
//! connections kept until the backend closes them; `dial_timeout_seconds` no connect timeout of its own and
//! `response_header_timeout_seconds` no header timeout of its own (both still within the request timeout);
//! `tcp_keep_alive_seconds` Go's default probe interval of 15 s. In `timeout_profiles` and `pool_profiles` a
//! key left out (or `0`) is not set: the `http_transport` value (or `default_request_timeout_seconds`) applies.
//! `validate` bounds every key ([`crate::config`]), so no value overflows a timer or a semaphore.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::Semaphore;

use super::backend_url::BackendUrl;
use super::health::HealthCheck;
use super::pool::{Endpoint, LoadBalancing, Pool};
use crate::chain::tls::{self, HttpsConnector};
use crate::config::{Config, PoolProfile, ValidationMode};

/// The pooled keep-alive HTTP client the relayer forwards with (TLS for `https` backends).
pub type HttpClient = Client<HttpsConnector, http_body_util::Full<Bytes>>;

/// Errors building routes from a config.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A value the config validation should have caught.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// poktroll's `RPCType` enum as sent in the `Rpc-Type` header (§1.1: `GRPC = 1; WEBSOCKET = 2; JSON_RPC = 3;
/// REST = 4; COMET_BFT = 5`), with the config key of each (`backends.{grpc|websocket|jsonrpc|rest|cometbft}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcType {
    /// `1`, config key `grpc`.
    Grpc,
    /// `2`, config key `websocket`.
    Websocket,
    /// `3`, config key `jsonrpc`.
    JsonRpc,
    /// `4`, config key `rest`.
    Rest,
    /// `5`, config key `cometbft`.
    CometBft,
}

impl RpcType {
    /// Every rpc type, in `Rpc-Type` number order.
    pub const ALL: [RpcType; 5] = [
        RpcType::Grpc,
        RpcType::Websocket,
        RpcType::JsonRpc,
        RpcType::Rest,
        RpcType::CometBft,
    ];

    /// From an `Rpc-Type` header value: the number (`3`), or, leniently, the config key (`jsonrpc`) or the enum
    /// name (`JSON_RPC`). `0` (`UNKNOWN_RPC`) and anything else is `None` (use the default backend).
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "grpc" => Some(Self::Grpc),
            "2" | "websocket" => Some(Self::Websocket),
            "3" | "jsonrpc" | "json_rpc" => Some(Self::JsonRpc),
            "4" | "rest" => Some(Self::Rest),
            "5" | "cometbft" | "comet_bft" => Some(Self::CometBft),
            _ => None,
        }
    }

    /// From a `backends` config key.
    pub fn from_config_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.config_key() == key)
    }

    /// The `backends` config key (also the metric label).
    pub fn config_key(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Websocket => "websocket",
            Self::JsonRpc => "jsonrpc",
            Self::Rest => "rest",
            Self::CometBft => "cometbft",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Grpc => 0,
            Self::Websocket => 1,
            Self::JsonRpc => 2,
            Self::Rest => 3,
            Self::CometBft => 4,
        }
    }
}

/// Connection pool settings of one backend (Go `http_transport` / `pool_profiles` / `timeout_profiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections open to the backend at most (requests beyond wait for a free one); `None` = no limit.
    pub max_conns_per_host: Option<usize>,
    /// Idle keep-alive connections kept.
    pub max_idle_conns_per_host: usize,
    /// Idle connections are closed after this long; `None` = kept until the backend closes them.
    pub idle_conn_timeout: Option<Duration>,
    /// TCP connect timeout; `None` = none of its own (the request timeout still bounds it).
    pub dial_timeout: Option<Duration>,
    /// TCP keep-alive probe interval.
    pub tcp_keep_alive: Duration,
}

/// Go's `http.DefaultMaxIdleConnsPerHost`: what `max_idle_conns_per_host: 0` means.
pub const GO_DEFAULT_MAX_IDLE_CONNS_PER_HOST: usize = 2;
/// Go's `net.Dialer` keep-alive interval when it is 0.
pub const GO_DEFAULT_TCP_KEEP_ALIVE: Duration = Duration::from_secs(15);

impl PoolSettings {
    /// The settings of `http_transport` values, `0` taking Go's meaning (see the module docs).
    pub fn from_go(
        max_conns_per_host: u64,
        max_idle_conns_per_host: u64,
        idle_conn_timeout_seconds: u64,
        dial_timeout_seconds: u64,
        tcp_keep_alive_seconds: u64,
    ) -> Self {
        let positive = |v: u64| (v > 0).then_some(v);
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Self {
            max_conns_per_host: positive(max_conns_per_host).map(count),
            max_idle_conns_per_host: positive(max_idle_conns_per_host)
                .map_or(GO_DEFAULT_MAX_IDLE_CONNS_PER_HOST, count),
            idle_conn_timeout: positive(idle_conn_timeout_seconds).map(Duration::from_secs),
            dial_timeout: positive(dial_timeout_seconds).map(Duration::from_secs),
            tcp_keep_alive: positive(tcp_keep_alive_seconds).map_or(GO_DEFAULT_TCP_KEEP_ALIVE, Duration::from_secs),
        }
    }
}

impl Default for PoolSettings {
    /// The Go relayer's `http_transport` defaults.
    fn default() -> Self {
        Self::from_go(500, 100, 90, 5, 30)
    }
}

/// One backend of a service: its endpoints (a pool, module `pool`) and what every request to it carries.
#[derive(Debug)]
pub struct Backend {
    /// Which rpc type it serves.
    pub rpc_type: RpcType,
    /// Its endpoints, their selection and circuit breakers.
    pub pool: Pool,
    /// Extra headers sent with every request (they replace a header of the same name from the relay), the
    /// `authentication` header last.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Retries of a failed request (module `forward`): on another endpoint, or on the only one after a refused
    /// connection.
    pub max_retries: u32,
    /// The pooled client (shared by the endpoints).
    pub client: HttpClient,
    /// The TLS client configuration its `https`/`wss` connections use (WebSocket relays connect with it too).
    pub tls: Arc<rustls::ClientConfig>,
    /// Active health checks of its endpoints (module `health`), `None` = off.
    pub health: Option<HealthCheck>,
    /// `base_path`, when set (the endpoints' targets already carry it; a WebSocket backend's URL is used as
    /// configured without one).
    pub base_path: Option<String>,
    /// Dropped with the backend: ends its probe tasks (module `health`).
    pub(super) health_stop: tokio::sync::watch::Sender<()>,
}

impl Backend {
    /// A backend with one endpoint at `url` and its own pooled client (TLS with `tls` for an `https` URL); fails
    /// when `url` is not an absolute URL (`RouteError::Invalid` with key `url`).
    pub fn new(
        rpc_type: RpcType,
        url: impl Into<String>,
        pool: PoolSettings,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, RouteError> {
        let url = url.into();
        let name = crate::config::default_endpoint_name(&url);
        Self::pooled(rpc_type, vec![(name, url)], &PoolOptions::default(), pool, tls)
    }

    /// A backend over `endpoints` (`(name, url)` in config order).
    pub fn pooled(
        rpc_type: RpcType,
        endpoints: Vec<(String, String)>,
        options: &PoolOptions,
        pool: PoolSettings,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, RouteError> {
        let mut built = Vec::with_capacity(endpoints.len());
        for (name, url) in endpoints {
            let mut target = BackendUrl::parse(&url).map_err(|e| RouteError::Invalid {
                key: "url".into(),
                problem: e.to_string(),
            })?;
            if let Some(base) = &options.base_path {
                target = target.with_base_path(base).map_err(|e| RouteError::Invalid {
                    key: "base_path".into(),
                    problem: e.to_string(),
                })?;
            }
            let permits = pool
                .max_conns_per_host
                .map(|n| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))));
            built.push(Endpoint::new(name, url, target, permits));
        }
        Ok(Self {
            rpc_type,
            pool: Pool::new(
                built,
                options.load_balancing,
                options.unhealthy_threshold,
                options.recovery_timeout,
                std::time::Instant::now(),
            ),
            headers: Vec::new(),
            max_retries: 0,
            client: match rpc_type {
                RpcType::Grpc => grpc_client(&pool, tls),
                _ => http_client(&pool, tls),
            },
            tls: Arc::clone(tls),
            health: None,
            base_path: options.base_path.clone(),
            health_stop: tokio::sync::watch::channel(()).0,
        })
    }

    /// The first endpoint's URL (the backend's only one unless it lists `urls`).
    pub fn url(&self) -> &str {
        self.pool.endpoints().first().map_or("", |e| e.url.as_str())
    }
}

/// How a backend's pool behaves (`load_balancing`, breaker, `base_path`).
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Endpoint selection.
    pub load_balancing: LoadBalancing,
    /// Consecutive failures that take an endpoint out.
    pub unhealthy_threshold: u32,
    /// When an endpoint taken out is tried again; `None` = only by health checks.
    pub recovery_timeout: Option<Duration>,
    /// `base_path` over the URLs' own paths.
    pub base_path: Option<String>,
}

impl Default for PoolOptions {
    /// Go's defaults: round robin, 5 failures, 30 s.
    fn default() -> Self {
        Self {
            load_balancing: LoadBalancing::RoundRobin,
            unhealthy_threshold: crate::config::DEFAULT_UNHEALTHY_THRESHOLD,
            recovery_timeout: Some(Duration::from_secs(crate::config::DEFAULT_RECOVERY_TIMEOUT_SECONDS)),
            base_path: None,
        }
    }
}

/// A pooled keep-alive client with `pool`'s limits, speaking TLS (`tls`, HTTP/1.1) to `https` URLs.
pub fn http_client(pool: &PoolSettings, tls: &Arc<rustls::ClientConfig>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(pool.dial_timeout);
    connector.set_keepalive(Some(pool.tcp_keep_alive));
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(pool.idle_conn_timeout)
        .pool_max_idle_per_host(pool.max_idle_conns_per_host)
        .build(tls::https_connector(connector, tls, false))
}

/// The client of a `grpc` backend: HTTP/2 only, as gRPC is (cleartext with prior knowledge for `http`, ALPN `h2`
/// over TLS for `https`), otherwise pooled and bounded as [`http_client`]'s.
pub fn grpc_client(pool: &PoolSettings, tls: &Arc<rustls::ClientConfig>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(pool.dial_timeout);
    connector.set_keepalive(Some(pool.tcp_keep_alive));
    let mut h2 = rustls::ClientConfig::clone(tls);
    h2.alpn_protocols = vec![b"h2".to_vec()];
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(pool.idle_conn_timeout)
        .pool_max_idle_per_host(pool.max_idle_conns_per_host)
        .build(tls::https_connector(connector, &Arc::new(h2), false))
}

/// The TLS client configuration of backends: the base roots plus `http_transport.tls_ca_file`.
pub fn backend_tls(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, RouteError> {
    tls::client_config(ca_file, tls::Alpn::Http1).map_err(|e| RouteError::Invalid {
        key: "http_transport.tls_ca_file".into(),
        problem: e.to_string(),
    })
}

/// Everything the relayer knows about one served service.
#[derive(Debug)]
pub struct Service {
    /// Service id.
    pub id: String,
    /// Eager or optimistic.
    pub mode: ValidationMode,
    /// Whole backend request timeout (headers and body).
    pub request_timeout: Duration,
    /// Time to the backend's response headers.
    pub response_header_timeout: Duration,
    /// Largest request (the whole `RelayRequest`) and largest backend response body accepted.
    pub max_body_bytes: usize,
    backends: [Option<Arc<Backend>>; 5],
    default: Arc<Backend>,
}

impl Service {
    /// A service with one backend used for every rpc type.
    pub fn single(
        id: impl Into<String>,
        mode: ValidationMode,
        backend: Backend,
        timeout: Duration,
        max_body: usize,
    ) -> Self {
        let backend = Arc::new(backend);
        let mut backends: [Option<Arc<Backend>>; 5] = Default::default();
        backends[backend.rpc_type.index()] = Some(Arc::clone(&backend));
        Self {
            id: id.into(),
            mode,
            request_timeout: timeout,
            response_header_timeout: timeout,
            max_body_bytes: max_body,
            backends,
            default: backend,
        }
    }

    /// Every backend of the service, once each.
    pub fn all_backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.backends.iter().flatten()
    }

    /// The backend for `rpc_type` (`None` = no header), or the default one; the flag says whether the requested
    /// type had no backend of its own (counted as `ha_relayer_backend_missing_total`).
    pub fn backend(&self, rpc_type: Option<RpcType>) -> (&Arc<Backend>, bool) {
        match rpc_type {
            None => (&self.default, false),
            Some(t) => match &self.backends[t.index()] {
                Some(b) => (b, false),
                None => (&self.default, true),
            },
        }
    }
}

/// Builds every service of `config` (call [`Config::validate`] first; this only rejects what it cannot build).
pub fn services_from_config(config: &Config) -> Result<HashMap<String, Arc<Service>>, RouteError> {
    let transport = &config.http_transport;
    let tls = backend_tls(transport.tls_ca_file.as_deref())?;
    let mut services = HashMap::new();
    for (id, sc) in &config.services {
        let key = |k: &str| format!("services.{id}.{k}");
        let invalid = |k: &str, problem: String| RouteError::Invalid { key: key(k), problem };
        let timeouts = match &sc.timeout_profile {
            Some(name) => Some(
                config
                    .timeout_profiles
                    .get(name)
                    .ok_or_else(|| invalid("timeout_profile", format!("no timeout_profiles entry named `{name}`")))?,
            ),
            None => None,
        };
        let pool_profile: Option<&PoolProfile> = match &sc.pool_profile {
            Some(name) => Some(
                config
                    .pool_profiles
                    .get(name)
                    .ok_or_else(|| invalid("pool_profile", format!("no pool_profiles entry named `{name}`")))?,
            ),
            None => None,
        };
        // 0 in a profile means "not set": fall back to http_transport / the service defaults, where 0 has Go's
        // meaning (module docs).
        let pick = |profile: Option<u64>, fallback: u64| profile.filter(|v| *v > 0).unwrap_or(fallback);
        let request_timeout = Duration::from_secs(pick(
            timeouts.map(|t| t.request_timeout_seconds),
            config.default_request_timeout_seconds,
        ));
        let response_header_timeout = match pick(
            timeouts.map(|t| t.response_header_timeout_seconds),
            transport.response_header_timeout_seconds,
        ) {
            0 => request_timeout,
            seconds => Duration::from_secs(seconds).min(request_timeout),
        };
        let pool = PoolSettings::from_go(
            pick(
                pool_profile.map(|p| u64::from(p.max_conns_per_host)),
                u64::from(transport.max_conns_per_host),
            ),
            pick(
                pool_profile.map(|p| u64::from(p.max_idle_conns_per_host)),
                u64::from(transport.max_idle_conns_per_host),
            ),
            pick(
                pool_profile.map(|p| p.idle_conn_timeout_seconds),
                transport.idle_conn_timeout_seconds,
            ),
            pick(timeouts.map(|t| t.dial_timeout_seconds), transport.dial_timeout_seconds),
            transport.tcp_keep_alive_seconds,
        );
        let mut backends: [Option<Arc<Backend>>; 5] = Default::default();
        for (kind, bc) in &sc.backends {
            let rpc_type = RpcType::from_config_key(kind)
                .ok_or_else(|| invalid(&format!("backends.{kind}"), "unknown backend kind".into()))?;
            let options = PoolOptions {
                load_balancing: bc.load_balancing,
                unhealthy_threshold: bc.unhealthy_threshold(),
                recovery_timeout: match bc.recovery_timeout_seconds() {
                    0 => None,
                    s => Some(Duration::from_secs(s)),
                },
                base_path: bc.base_path.clone(),
            };
            let mut backend = Backend::pooled(rpc_type, bc.endpoints(kind), &options, pool, &tls)
                .map_err(|e| invalid(&format!("backends.{kind}.url"), e.to_string()))?;
            backend.max_retries = bc.max_retries().min(3);
            for (name, value) in &bc.headers {
                let header_key = format!("backends.{kind}.headers.{name}");
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| invalid(&header_key, format!("not a header name: {e}")))?;
                let value = HeaderValue::from_str(value)
                    .map_err(|e| invalid(&header_key, format!("not a header value: {e}")))?;
                backend.headers.push((name, value));
            }
            if let Some(auth) = bc.authentication.as_ref().and_then(|a| a.header_value()) {
                let value = HeaderValue::from_str(&auth)
                    .map_err(|e| invalid(&format!("backends.{kind}.authentication"), e.to_string()))?;
                backend.headers.push((http::header::AUTHORIZATION, value));
            }
            if let Some(hc) = bc.health_check.as_ref().filter(|h| h.enabled) {
                backend.health = Some(health_check(hc, bc, &|k, p| {
                    invalid(&format!("backends.{kind}.{k}"), p)
                })?);
            }
            backends[rpc_type.index()] = Some(Arc::new(backend));
        }
        // The default: the configured one, else the first HTTP-capable backend (jsonrpc, rest, cometbft, grpc).
        let default = match &sc.default_backend {
            Some(kind) => RpcType::from_config_key(kind)
                .and_then(|t| backends[t.index()].clone())
                .ok_or_else(|| {
                    invalid(
                        "default_backend",
                        format!("`{kind}` is not one of this service's backends"),
                    )
                })?,
            None => [
                RpcType::JsonRpc,
                RpcType::Rest,
                RpcType::CometBft,
                RpcType::Grpc,
                RpcType::Websocket,
            ]
            .into_iter()
            .find_map(|t| backends[t.index()].clone())
            .ok_or_else(|| invalid("backends", "at least one backend is required".into()))?,
        };
        let max_body = usize::try_from(config.max_body_size_bytes(id)).unwrap_or(usize::MAX);
        services.insert(
            id.clone(),
            Arc::new(Service {
                id: id.clone(),
                mode: config.validation_mode(id),
                request_timeout,
                response_header_timeout,
                max_body_bytes: max_body,
                backends,
                default,
            }),
        );
    }
    Ok(services)
}

/// The probe of `hc` (validated): its path (`endpoint`, else `base_path`), headers with the content type.
fn health_check(
    hc: &crate::config::BackendHealthCheckConfig,
    bc: &crate::config::BackendConfig,
    invalid: &dyn Fn(&str, String) -> RouteError,
) -> Result<HealthCheck, RouteError> {
    let path = hc
        .endpoint
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| bc.base_path.clone())
        .unwrap_or_else(|| "/".into());
    let method =
        http::Method::from_bytes(hc.method.as_bytes()).map_err(|e| invalid("health_check.method", e.to_string()))?;
    let body = hc.request_body.clone().unwrap_or_default();
    let mut headers = Vec::new();
    let content_type = hc.content_type.clone().or_else(|| {
        let start = body.trim_start();
        (start.starts_with('{') || start.starts_with('[')).then(|| "application/json".to_string())
    });
    if let Some(ct) = content_type {
        let value = HeaderValue::from_str(&ct).map_err(|e| invalid("health_check.content_type", e.to_string()))?;
        headers.push((http::header::CONTENT_TYPE, value));
    }
    for (name, value) in &hc.headers {
        let key = format!("health_check.headers.{name}");
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&key, e.to_string()))?;
        let value = HeaderValue::from_str(value).map_err(|e| invalid(&key, e.to_string()))?;
        headers.push((name, value));
    }
    Ok(HealthCheck {
        method,
        path,
        headers,
        body: Bytes::from(body),
        interval: Duration::from_secs(hc.interval_seconds.max(1)),
        timeout: Duration::from_secs(hc.timeout_seconds.max(1)),
        healthy_threshold: hc.healthy_threshold,
        expected_status: hc.expected_status.clone(),
        expected_body: hc.expected_body.clone().filter(|b| !b.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rpc_type_header_values_follow_poktroll() {
        assert_eq!(RpcType::from_header("1"), Some(RpcType::Grpc));
        assert_eq!(RpcType::from_header("2"), Some(RpcType::Websocket));
        assert_eq!(RpcType::from_header("3"), Some(RpcType::JsonRpc));
        assert_eq!(RpcType::from_header("4"), Some(RpcType::Rest));
        assert_eq!(RpcType::from_header("5"), Some(RpcType::CometBft));
        assert_eq!(RpcType::from_header("0"), None);
        assert_eq!(RpcType::from_header("JSON_RPC"), Some(RpcType::JsonRpc));
    }

    #[tokio::test]
    async fn services_take_profiles_and_defaults() {
        let yaml = "
default_request_timeout_seconds: 7
services:
  anvil:
    timeout_profile: fast
    pool_profile: small
    max_body_size_bytes: 1000
    validation_mode: eager
    backends:
      rest:
        url: http://127.0.0.1:1
        headers: {x-api-key: secret}
      jsonrpc:
        url: http://127.0.0.1:2
  other:
    default_backend: rest
    backends:
      jsonrpc: {url: http://127.0.0.1:3}
      rest: {url: http://127.0.0.1:4}
timeout_profiles:
  fast: {request_timeout_seconds: 2, response_header_timeout_seconds: 1}
pool_profiles:
  small: {max_conns_per_host: 3}
";
        let config = Config::from_yaml(yaml).unwrap();
        assert_eq!(config.validate(), vec![]);
        let services = services_from_config(&config).unwrap();
        let anvil = &services["anvil"];
        assert_eq!(anvil.mode, ValidationMode::Eager);
        assert_eq!(anvil.request_timeout, Duration::from_secs(2));
        assert_eq!(anvil.response_header_timeout, Duration::from_secs(1));
        assert_eq!(anvil.max_body_bytes, 1000);
        assert_eq!(anvil.backend(None).0.url(), "http://127.0.0.1:2");
        let (rest, missing) = anvil.backend(Some(RpcType::Rest));
        assert_eq!((rest.url(), missing), ("http://127.0.0.1:1", false));
        assert_eq!(rest.headers.len(), 1);
        assert_eq!(rest.pool.endpoint(0).permits.as_ref().unwrap().available_permits(), 3);
        assert!(anvil.backend(Some(RpcType::CometBft)).1);
        let other = &services["other"];
        assert_eq!(other.mode, ValidationMode::Optimistic);
        assert_eq!(other.request_timeout, Duration::from_secs(7));
        assert_eq!(other.backend(None).0.url(), "http://127.0.0.1:4");
        assert_eq!(
            other
                .backend(None)
                .0
                .pool
                .endpoint(0)
                .permits
                .as_ref()
                .unwrap()
                .available_permits(),
            500
        );
    }

    /// `0` in `http_transport` takes Go's `net/http` meaning instead of failing every relay "within 0ns" or
    /// allowing one connection per backend.
    #[test]
    fn transport_zeros_mean_what_they_mean_to_go() {
        let yaml = "
default_request_timeout_seconds: 7
http_transport:
  max_conns_per_host: 0
  max_idle_conns_per_host: 0
  idle_conn_timeout_seconds: 0
  dial_timeout_seconds: 0
  response_header_timeout_seconds: 0
  tcp_keep_alive_seconds: 0
services:
  anvil:
    backends:
      jsonrpc: {url: http://127.0.0.1:2}
";
        let config = Config::from_yaml(yaml).unwrap();
        assert_eq!(config.validate(), vec![]);
        let services = services_from_config(&config).unwrap();
        let anvil = &services["anvil"];
        assert_eq!(
            anvil.response_header_timeout,
            Duration::from_secs(7),
            "no header timeout of its own"
        );
        assert!(
            anvil.backend(None).0.pool.endpoint(0).permits.is_none(),
            "no connection limit"
        );
        assert_eq!(
            PoolSettings::from_go(0, 0, 0, 0, 0),
            PoolSettings {
                max_conns_per_host: None,
                max_idle_conns_per_host: 2,
                idle_conn_timeout: None,
                dial_timeout: None,
                tcp_keep_alive: Duration::from_secs(15),
            }
        );
    }
}
