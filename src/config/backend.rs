//! A service's backend config (`services.{id}.backends.{kind}`): one URL or a pool of them with the Go relayer's
//! pool keys (`urls`, `load_balancing`, `base_path`, `authentication`, `health_check`, `max_retries`,
//! `recovery_timeout_seconds`; `../shared/spec/go-operator-surface.md` §A). Checked by `validate`; built into
//! `relayer::routes::Backend` and `relayer::pool::Pool`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One backend of a service: one URL (`url`) or a pool of them (`urls`, Go's backend pools) with failover, a
/// passive circuit breaker and optional active health checks (`relayer::pool`).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Backend URL. A `grpc` backend may be a bare `host:port` (the Go relayer's convention), read as
    /// `http://host:port` (HTTP/2 cleartext): [`BackendConfig::url_for`]. Exactly one of `url` and `urls`.
    pub url: String,
    /// Several URLs of one backend (a pool): plain URLs or `{name, url}` entries (name defaults to the URL's
    /// `host:port`, unique within the backend).
    pub urls: Vec<BackendEndpointConfig>,
    /// How a pool picks an endpoint: `round_robin` (default) or `first_healthy`.
    pub load_balancing: LoadBalancing,
    /// A path that replaces the URLs' own path; a relay path already starting with it (whole segments) is not
    /// prefixed again (Go `mergeBackendPath`).
    pub base_path: Option<String>,
    /// Extra headers sent to the backend.
    pub headers: BTreeMap<String, String>,
    /// `Authorization` sent with every backend request, WebSocket handshake and health probe.
    pub authentication: Option<AuthenticationConfig>,
    /// Active health checks of every endpoint.
    pub health_check: Option<BackendHealthCheckConfig>,
    /// Retries of a failed backend request (0–3, default 1), each on another healthy endpoint of the pool (a
    /// single URL: a refused connection is retried on it).
    pub max_retries: Option<u32>,
    /// Seconds after which an endpoint taken out gets one request first again, half-open (default 30; 0 = none:
    /// it is back with a success while relays go to it anyway, every endpoint being out, or by a health check).
    pub recovery_timeout_seconds: Option<u64>,
}

/// Go's default `max_retries`.
pub const DEFAULT_BACKEND_MAX_RETRIES: u32 = 1;
/// Go's default `recovery_timeout_seconds`.
pub const DEFAULT_RECOVERY_TIMEOUT_SECONDS: u64 = 30;
/// Go's default `health_check.unhealthy_threshold` (also the passive breaker's).
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 5;
/// Go's default `health_check.healthy_threshold`.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Most endpoints one backend may list.
pub const MAX_BACKEND_ENDPOINTS: usize = 64;

/// One entry of `urls`: a plain URL or `{name, url}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BackendEndpointConfig {
    /// `- http://host:port`.
    Url(String),
    /// `- {name: a, url: http://host:port}`.
    Named(NamedEndpoint),
}

/// A named pool endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedEndpoint {
    /// Endpoint name (metric label, logs); defaults to the URL's `host:port`.
    #[serde(default)]
    pub name: Option<String>,
    /// Its URL.
    pub url: String,
}

/// Pool endpoint selection (Go `load_balancing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each request the next healthy endpoint.
    #[default]
    RoundRobin,
    /// The first healthy endpoint in config order (the others are standbys).
    FirstHealthy,
}

/// Go `authentication`: at most one kind.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthenticationConfig {
    /// Basic auth user (with `password`).
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// `Authorization: Bearer {token}`.
    pub bearer_token: Option<String>,
    /// `Authorization: {token}`.
    pub plain_token: Option<String>,
}

impl AuthenticationConfig {
    /// The `Authorization` header value, `None` when no kind is set.
    pub fn header_value(&self) -> Option<String> {
        use base64::Engine as _;
        if let Some(user) = &self.username {
            let pair = format!("{user}:{}", self.password.as_deref().unwrap_or_default());
            return Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ));
        }
        if let Some(token) = &self.bearer_token {
            return Some(format!("Bearer {token}"));
        }
        self.plain_token.clone()
    }
}

/// Go `health_check` of a backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendHealthCheckConfig {
    /// Probe at all.
    pub enabled: bool,
    /// Path probed on every endpoint (else `base_path`).
    pub endpoint: Option<String>,
    /// Seconds between probes (> 0).
    pub interval_seconds: u64,
    /// Probe timeout.
    pub timeout_seconds: u64,
    /// Consecutive failures (probes, or relays for the passive breaker) that take an endpoint out.
    pub unhealthy_threshold: u32,
    /// Consecutive successful probes that bring it back.
    pub healthy_threshold: u32,
    /// Probe method.
    pub method: String,
    /// Probe body.
    pub request_body: Option<String>,
    /// Probe `Content-Type` (default `application/json` for a body starting with `{` or `[`).
    pub content_type: Option<String>,
    /// The answer's body must contain this.
    pub expected_body: Option<String>,
    /// Statuses that count as healthy (empty = any 2xx).
    pub expected_status: Vec<u16>,
    /// Probe headers (over the backend's).
    pub headers: BTreeMap<String, String>,
}

impl Default for BackendHealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            interval_seconds: 10,
            timeout_seconds: 5,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            method: "GET".into(),
            request_body: None,
            content_type: None,
            expected_body: None,
            expected_status: Vec::new(),
            headers: BTreeMap::new(),
        }
    }
}

impl BackendConfig {
    /// The URL the backend of kind `kind` is reached at: `url`, except that a `grpc` backend given as a bare
    /// `host:port` (no `://`) is `http://host:port`.
    pub fn url_for(&self, kind: &str) -> String {
        endpoint_url(kind, &self.url)
    }

    /// Every endpoint as `(name, url)` in config order (`url` alone: one endpoint), each URL read as
    /// [`BackendConfig::url_for`] reads `url`.
    pub fn endpoints(&self, kind: &str) -> Vec<(String, String)> {
        if self.urls.is_empty() {
            let url = self.url_for(kind);
            return vec![(default_endpoint_name(&url), url)];
        }
        self.urls
            .iter()
            .map(|e| {
                let (name, raw) = match e {
                    BackendEndpointConfig::Url(url) => (None, url),
                    BackendEndpointConfig::Named(n) => (n.name.clone(), &n.url),
                };
                let url = endpoint_url(kind, raw);
                (name.unwrap_or_else(|| default_endpoint_name(&url)), url)
            })
            .collect()
    }

    /// `max_retries` or Go's default.
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_BACKEND_MAX_RETRIES)
    }

    /// `recovery_timeout_seconds` or Go's default.
    pub fn recovery_timeout_seconds(&self) -> u64 {
        self.recovery_timeout_seconds
            .unwrap_or(DEFAULT_RECOVERY_TIMEOUT_SECONDS)
    }

    /// Consecutive failures that take an endpoint out (`health_check.unhealthy_threshold`, default 5).
    pub fn unhealthy_threshold(&self) -> u32 {
        self.health_check
            .as_ref()
            .map_or(DEFAULT_UNHEALTHY_THRESHOLD, |h| h.unhealthy_threshold)
    }
}

fn endpoint_url(kind: &str, url: &str) -> String {
    if kind == "grpc" && !url.contains("://") && !url.is_empty() {
        format!("http://{url}")
    } else {
        url.to_string()
    }
}

/// A URL's `host[:port]` (the authority without user info), the default endpoint name.
pub fn default_endpoint_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}
