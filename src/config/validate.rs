//! Semantic checks of a parsed [`Config`]: every problem is reported at once, each with its dotted key path, so an
//! operator fixes a file in one pass.

use std::net::SocketAddr;

use super::{Config, StorageMode};

/// Backend kinds a service may configure (Go `backends.{jsonrpc|rest|websocket|grpc|cometbft}`).
pub const BACKEND_KINDS: [&str; 5] = ["jsonrpc", "rest", "websocket", "grpc", "cometbft"];

/// One problem in a config: which key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `services.anvil.backends.jsonrpc.url`.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub problem: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigIssue {
            key: key.into(),
            problem: problem.into(),
        });
    }

    fn socket_addr(&mut self, key: &str, value: &str) {
        if value.parse::<SocketAddr>().is_err() {
            self.push(key, format!("`{value}` is not a socket address like 0.0.0.0:8080"));
        }
    }

    fn url(&mut self, key: &str, value: &str, schemes: &[&str]) {
        let ok = schemes.iter().any(|s| {
            value
                .strip_prefix(s)
                .and_then(|r| r.strip_prefix("://"))
                .is_some_and(|r| !r.is_empty())
        });
        if !ok {
            let list = schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", ");
            self.push(key, format!("`{value}` is not a URL starting with one of {list}"));
        }
    }
}

impl Config {
    /// Checks values the types cannot; empty when the config is usable.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Issues::default();
        issues.socket_addr("listen_addr", &self.listen_addr);
        let server = &self.relay_server;
        // Bounded above too: a timeout far in the future overflows `Instant` arithmetic, and the connection cap
        // sizes a semaphore.
        for (key, value, max) in [
            (
                "relay_server.header_read_timeout_seconds",
                server.header_read_timeout_seconds,
                86_400,
            ),
            ("relay_server.idle_timeout_seconds", server.idle_timeout_seconds, 86_400),
            (
                "relay_server.body_read_timeout_seconds",
                server.body_read_timeout_seconds,
                86_400,
            ),
            ("relay_server.max_connections", server.max_connections as u64, 1_000_000),
        ] {
            if !(1..=max).contains(&value) {
                issues.push(key, format!("must be between 1 and {max}"));
            }
        }
        if server.max_connections_per_ip > server.max_connections {
            issues.push(
                "relay_server.max_connections_per_ip",
                format!(
                    "must be 0 (no limit) or at most relay_server.max_connections ({})",
                    server.max_connections
                ),
            );
        }
        for (key, listener) in [
            ("metrics.addr", &self.metrics),
            ("health_check.addr", &self.health_check),
        ] {
            if listener.enabled {
                issues.socket_addr(key, &listener.addr);
            }
        }
        self.validate_storage(&mut issues);
        let node = &self.pocket_node;
        issues.url(
            "pocket_node.query_node_rpc_url",
            &node.query_node_rpc_url,
            &["http", "https"],
        );
        issues.url(
            "pocket_node.query_node_grpc_url",
            &node.query_node_grpc_url,
            &["http", "https"],
        );
        if node.chain_id.is_empty() {
            issues.push("pocket_node.chain_id", "must not be empty");
        }
        if node.query_timeout_seconds == 0 {
            issues.push("pocket_node.query_timeout_seconds", "must be at least 1");
        }
        if self.default_request_timeout_seconds == 0 {
            issues.push("default_request_timeout_seconds", "must be at least 1");
        }
        if self.default_max_body_size_bytes == 0 {
            issues.push("default_max_body_size_bytes", "must be at least 1");
        }
        self.validate_services(&mut issues);
        self.validate_backend_targets(&mut issues);
        self.validate_backend_transport(&mut issues);
        self.validate_body_limits(&mut issues);
        self.validate_tls(&mut issues);
        self.validate_body_budget(&mut issues);
        self.validate_transaction(&mut issues);
        if self.relay_log.max_batch_relays == 0 {
            issues.push("relay_log.max_batch_relays", "must be at least 1");
        }
        if self.relay_log.max_batch_delay_ms > 1000 {
            issues.push(
                "relay_log.max_batch_delay_ms",
                "must be at most 1000 (gateways wait for the batch)",
            );
        }
        self.validate_relay_meter(&mut issues);
        let monitor = &self.balance_monitor;
        if !(1..=86_400).contains(&monitor.check_interval_seconds) {
            issues.push(
                "balance_monitor.check_interval_seconds",
                "must be 1–86400 (a check reads the chain twice per supplier)",
            );
        }
        if monitor.stake_critical_proof_threshold > monitor.stake_warning_proof_threshold {
            issues.push(
                "balance_monitor.stake_critical_proof_threshold",
                format!(
                    "must be at most stake_warning_proof_threshold ({})",
                    monitor.stake_warning_proof_threshold
                ),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            issues.push(
                "logging.level",
                format!("`{}` is not a log level or filter directive", self.logging.level),
            );
        }
        issues.0
    }

    /// Settings that are valid but likely wrong, reported by `relay-miner validate` without failing it: a
    /// relative `storage.data_dir` in embedded and raft modes (it resolves against the process's working
    /// directory, so a changed systemd `WorkingDirectory` or container `WORKDIR` means a new, empty store).
    pub fn warnings(&self) -> Vec<ConfigIssue> {
        let mut warnings = Issues::default();
        let storage = &self.storage;
        if storage.mode != StorageMode::Redis
            && !storage.data_dir.as_os_str().is_empty()
            && storage.data_dir.is_relative()
        {
            warnings.push(
                "storage.data_dir",
                format!(
                    "`{}` is relative: it resolves against the working directory of the process, so starting from \
                     another directory (a changed systemd WorkingDirectory or container WORKDIR) opens a new, empty \
                     store; prefer an absolute path",
                    storage.data_dir.display()
                ),
            );
        }
        warnings.0
    }

    fn validate_storage(&self, issues: &mut Issues) {
        let storage = &self.storage;
        if storage.data_dir.as_os_str().is_empty() && storage.mode != StorageMode::Redis {
            issues.push("storage.data_dir", "must not be empty");
        }
        match storage.mode {
            StorageMode::Embedded => {}
            StorageMode::Redis => {
                let schemes = ["redis", "rediss", "redis-sentinel", "redis-cluster"];
                issues.url("storage.redis.url", &storage.redis.url, &schemes);
                if storage.redis.base_prefix.is_empty() {
                    issues.push("storage.redis.base_prefix", "must not be empty");
                }
                if storage.redis.heartbeat_rate_seconds >= storage.redis.leader_ttl_seconds {
                    issues.push(
                        "storage.redis.heartbeat_rate_seconds",
                        "must be shorter than storage.redis.leader_ttl_seconds or the lease lapses between renewals",
                    );
                }
                let ratio = |v: f64| v > 0.0 && v <= 1.0;
                let (relay, warn) = (storage.redis.relay_max_memory_ratio, storage.redis.memory_warn_ratio);
                if !ratio(relay) {
                    issues.push(
                        "storage.redis.relay_max_memory_ratio",
                        format!(
                            "`{relay}` must be a share of maxmemory in (0, 1] (1 = refuse relays only at maxmemory)"
                        ),
                    );
                }
                if !ratio(warn) {
                    issues.push(
                        "storage.redis.memory_warn_ratio",
                        format!("`{warn}` must be a share of maxmemory in (0, 1]"),
                    );
                } else if ratio(relay) && warn >= relay {
                    issues.push(
                        "storage.redis.memory_warn_ratio",
                        format!(
                            "`{warn}` must be below storage.redis.relay_max_memory_ratio ({relay}): the warning is to \
                             come before relays are refused"
                        ),
                    );
                }
                let (replicas, wait_ms) = (storage.redis.wait_replicas, storage.redis.wait_timeout_ms);
                if (replicas > 0 && wait_ms == 0) || wait_ms > super::MAX_WAIT_TIMEOUT_MS {
                    issues.push(
                        "storage.redis.wait_timeout_ms",
                        format!(
                            "`{wait_ms}` must be in (0, {}] ms: how long a write waits for storage.redis.wait_replicas \
                             replicas (0 would wait forever)",
                            super::MAX_WAIT_TIMEOUT_MS
                        ),
                    );
                }
            }
            StorageMode::Raft => {
                let raft = &storage.raft;
                if raft.node_id == 0 {
                    issues.push(
                        "storage.raft.node_id",
                        "must be set to a positive id unique in the cluster",
                    );
                }
                issues.socket_addr("storage.raft.listen_addr", &raft.listen_addr);
                let mut ids = Vec::new();
                for (i, peer) in raft.peers.iter().enumerate() {
                    match peer.split_once('=').map(|(id, addr)| (id.parse::<u64>(), addr)) {
                        Some((Ok(id), addr)) if id > 0 && addr.rsplit_once(':').is_some() => ids.push(id),
                        _ => issues.push(
                            format!("storage.raft.peers[{i}]"),
                            format!("`{peer}` is not `id=host:port`"),
                        ),
                    }
                }
                let (heartbeat, (min, max)) = raft.timing();
                if heartbeat.is_zero() {
                    issues.push("storage.raft.heartbeat_interval_ms", "must be positive");
                }
                if min <= heartbeat {
                    issues.push(
                        "storage.raft.election_timeout_min_ms",
                        format!(
                            "{} ms must be longer than the heartbeat interval ({} ms)",
                            min.as_millis(),
                            heartbeat.as_millis()
                        ),
                    );
                }
                if max <= min {
                    issues.push(
                        "storage.raft.election_timeout_max_ms",
                        format!(
                            "{} ms must be longer than election_timeout_min_ms ({} ms)",
                            max.as_millis(),
                            min.as_millis()
                        ),
                    );
                }
                if raft.peers.is_empty() {
                    issues.push("storage.raft.peers", "must list every voter as `id=host:port`");
                } else if raft.node_id != 0 && !ids.contains(&raft.node_id) {
                    issues.push(
                        "storage.raft.peers",
                        format!("does not contain this node's id {}", raft.node_id),
                    );
                }
            }
        }
    }

    fn validate_services(&self, issues: &mut Issues) {
        if self.services.is_empty() {
            issues.push("services", "at least one service must be configured");
        }
        for (id, service) in &self.services {
            let key = |k: &str| format!("services.{id}.{k}");
            if service.backends.is_empty() {
                issues.push(
                    key("backends"),
                    "at least one backend (jsonrpc, rest, websocket, grpc, cometbft) is required",
                );
            }
            for (kind, backend) in &service.backends {
                if !BACKEND_KINDS.contains(&kind.as_str()) {
                    issues.push(
                        key(&format!("backends.{kind}")),
                        format!("unknown backend kind; use one of {BACKEND_KINDS:?}"),
                    );
                }
                let schemes: &[&str] = if kind == "websocket" {
                    &["ws", "wss", "http", "https"]
                } else {
                    &["http", "https"]
                };
                validate_backend_pool(issues, &key(&format!("backends.{kind}")), kind, backend, schemes);
            }
            if let Some(default) = &service.default_backend
                && !service.backends.contains_key(default)
            {
                issues.push(
                    key("default_backend"),
                    format!("`{default}` is not one of this service's backends"),
                );
            }
            if let Some(profile) = &service.timeout_profile
                && !self.timeout_profiles.contains_key(profile)
            {
                issues.push(
                    key("timeout_profile"),
                    format!("no timeout_profiles entry named `{profile}`"),
                );
            }
            if let Some(profile) = &service.pool_profile
                && !self.pool_profiles.contains_key(profile)
            {
                issues.push(key("pool_profile"), format!("no pool_profiles entry named `{profile}`"));
            }
            if service.max_body_size_bytes == Some(0) {
                issues.push(key("max_body_size_bytes"), "must be at least 1");
            }
        }
    }

    /// What the relayer builds per backend beyond its URL's scheme: a URL relay paths can be joined onto, and
    /// headers that are valid HTTP (so `validate` refuses what starting the relayer would).
    fn validate_backend_targets(&self, issues: &mut Issues) {
        for (id, service) in &self.services {
            for (kind, backend) in &service.backends {
                let key = |k: &str| format!("services.{id}.backends.{kind}.{k}");
                let pooled = !backend.urls.is_empty();
                for (i, (_, url)) in backend.endpoints(kind).iter().enumerate() {
                    let scheme_ok = ["http://", "https://", "ws://", "wss://"]
                        .iter()
                        .any(|s| url.starts_with(s));
                    if scheme_ok && let Err(e) = crate::relayer::backend_url::BackendUrl::parse(url) {
                        issues.push(
                            if pooled { key(&format!("urls[{i}]")) } else { key("url") },
                            e.to_string(),
                        );
                    }
                }
                for (name, value) in &backend.headers {
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        issues.push(key(&format!("headers.{name}")), "not a valid HTTP header name");
                    } else if http::HeaderValue::from_str(value).is_err() {
                        issues.push(key(&format!("headers.{name}")), "not a valid HTTP header value");
                    }
                }
            }
        }
    }

    /// Bounds of `http_transport.*`, `timeout_profiles.*`, `pool_profiles.*` and the request timeout: `0` has
    /// Go's meaning in `http_transport` and means "not set" in a profile (`relayer::routes`); values past these
    /// bounds would overflow a timer or a semaphore, or are beyond what a kernel accepts (TCP keep-alive).
    fn validate_backend_transport(&self, issues: &mut Issues) {
        const DAY: u64 = 86_400;
        const HOUR: u64 = 3_600;
        const CONNS: u64 = 1_000_000;
        /// Linux refuses a TCP keep-alive idle time or interval above this (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`).
        const KEEP_ALIVE: u64 = 32_767;
        if self.default_request_timeout_seconds > DAY {
            issues.push("default_request_timeout_seconds", format!("must be at most {DAY}"));
        }
        let mut at_most = |key: String, value: u64, max: u64, zero: &str| {
            if value > max {
                issues.push(key, format!("must be at most {max} ({zero})"));
            }
        };
        let t = &self.http_transport;
        let go_zero = "0 = no limit, as in Go";
        at_most(
            "http_transport.max_conns_per_host".into(),
            u64::from(t.max_conns_per_host),
            CONNS,
            go_zero,
        );
        at_most(
            "http_transport.max_idle_conns_per_host".into(),
            u64::from(t.max_idle_conns_per_host),
            CONNS,
            "0 = Go's default of 2",
        );
        at_most(
            "http_transport.idle_conn_timeout_seconds".into(),
            t.idle_conn_timeout_seconds,
            DAY,
            go_zero,
        );
        at_most(
            "http_transport.dial_timeout_seconds".into(),
            t.dial_timeout_seconds,
            HOUR,
            go_zero,
        );
        at_most(
            "http_transport.response_header_timeout_seconds".into(),
            t.response_header_timeout_seconds,
            DAY,
            go_zero,
        );
        at_most(
            "http_transport.tcp_keep_alive_seconds".into(),
            t.tcp_keep_alive_seconds,
            KEEP_ALIVE,
            "0 = Go's default of 15",
        );
        let unset = "0 = not set: http_transport's value applies";
        for (name, p) in &self.timeout_profiles {
            let key = |k: &str| format!("timeout_profiles.{name}.{k}");
            at_most(
                key("request_timeout_seconds"),
                p.request_timeout_seconds,
                DAY,
                "0 = not set: default_request_timeout_seconds applies",
            );
            at_most(
                key("response_header_timeout_seconds"),
                p.response_header_timeout_seconds,
                DAY,
                unset,
            );
            at_most(key("dial_timeout_seconds"), p.dial_timeout_seconds, HOUR, unset);
        }
        for (name, p) in &self.pool_profiles {
            let key = |k: &str| format!("pool_profiles.{name}.{k}");
            at_most(key("max_conns_per_host"), u64::from(p.max_conns_per_host), CONNS, unset);
            at_most(
                key("max_idle_conns_per_host"),
                u64::from(p.max_idle_conns_per_host),
                CONNS,
                unset,
            );
            at_most(
                key("idle_conn_timeout_seconds"),
                p.idle_conn_timeout_seconds,
                DAY,
                unset,
            );
        }
    }

    /// Body limits the relayer can honour: a request over the protocol's message limit cannot be decoded, and in
    /// raft mode a relay over the entry limit cannot be recorded (so it would be refused after the backend served
    /// it).
    fn validate_body_limits(&self, issues: &mut Issues) {
        let (max, why) = match self.storage.mode {
            StorageMode::Raft => (
                super::MAX_BODY_SIZE_BYTES_RAFT,
                "in raft mode: a relay carries request and response and must fit one raft entry",
            ),
            StorageMode::Embedded | StorageMode::Redis => {
                (super::MAX_BODY_SIZE_BYTES, "the relay protocol's message limit")
            }
        };
        let mut check = |key: String, value: u64| {
            if value > max {
                issues.push(key, format!("must be at most {max} bytes ({why})"));
            }
        };
        check("default_max_body_size_bytes".into(), self.default_max_body_size_bytes);
        for (id, service) in &self.services {
            if let Some(limit) = service.max_body_size_bytes {
                check(format!("services.{id}.max_body_size_bytes"), limit);
            }
        }
    }

    /// TLS settings: every CA file must hold PEM certificates; `storage.redis.tls_ca_file` needs a `rediss://` URL.
    /// (`pocket_node.grpc_insecure: false` means TLS, which the gRPC URL then gets whatever its scheme: Go's
    /// meaning.)
    fn validate_tls(&self, issues: &mut Issues) {
        let files = [
            ("http_transport.tls_ca_file", self.http_transport.tls_ca_file.as_deref()),
            ("pocket_node.tls_ca_file", self.pocket_node.tls_ca_file.as_deref()),
            ("storage.redis.tls_ca_file", self.storage.redis.tls_ca_file.as_deref()),
        ];
        for (key, file) in files {
            if let Some(path) = file
                && let Err(e) = crate::chain::tls::load_ca_file(path)
            {
                issues.push(key, e.to_string());
            }
        }
        if self.storage.mode == StorageMode::Redis
            && self.storage.redis.tls_ca_file.is_some()
            && !self.storage.redis.url.starts_with("rediss://")
        {
            issues.push(
                "storage.redis.tls_ca_file",
                "only used with a rediss:// URL (TLS); remove it or use rediss://",
            );
        }
    }

    /// The request-body budget must hold at least one request of the largest body limit (or it could never be
    /// granted), and its wait must be short: it is time a gateway waits for an `overloaded` answer.
    fn validate_body_budget(&self, issues: &mut Issues) {
        let server = &self.relay_server;
        let largest = self
            .services
            .keys()
            .map(|id| self.max_body_size_bytes(id))
            .max()
            .unwrap_or(self.default_max_body_size_bytes);
        let budget = server.max_body_bytes_in_flight;
        if budget != 0 && !(largest..=super::MAX_MAX_BODY_BYTES_IN_FLIGHT).contains(&budget) {
            issues.push(
                "relay_server.max_body_bytes_in_flight",
                format!(
                    "must be 0 (no limit) or between the largest body limit ({largest}) and {}",
                    super::MAX_MAX_BODY_BYTES_IN_FLIGHT
                ),
            );
        }
        if server.body_budget_wait_ms > 60_000 {
            issues.push("relay_server.body_budget_wait_ms", "must be at most 60000");
        }
    }

    fn validate_relay_meter(&self, issues: &mut Issues) {
        let meter = &self.relay_meter;
        if !meter.enabled {
            return;
        }
        if meter.sync_interval_ms == 0 {
            issues.push("relay_meter.sync_interval_ms", "must be at least 1");
        }
        if meter.cache_ttl < crate::config::MIN_METER_CACHE_TTL_SECS {
            issues.push(
                "relay_meter.cache_ttl",
                format!(
                    "must be at least 1h ({} s): a session's shared counter gets this TTL when its first relay creates \
                     it and must outlive the session until its claim window opens (32 blocks, ~16 min, with mainnet \
                     params); a shorter TTL resets the count mid-session and over-serves the application",
                    crate::config::MIN_METER_CACHE_TTL_SECS
                ),
            );
        }
    }

    fn validate_transaction(&self, issues: &mut Issues) {
        let tx = &self.transaction;
        // Fees on pocket are paid in upokt (poktroll's tx client refuses other gas price denoms too).
        let price = |key: &'static str, text: &str, issues: &mut Issues| {
            let parsed = crate::chain::tx::parse_gas_price(text)
                .ok()
                .filter(|_| crate::chain::fees::gas_price_denom(text) == "upokt");
            if parsed.is_none() {
                issues.push(
                    key,
                    format!("`{text}` is not a decimal upokt amount like 0.000001upokt"),
                );
            }
            parsed
        };
        let gas_price = price("transaction.gas_price", &tx.gas_price, issues);
        let max_gas_price = price("transaction.max_gas_price", &tx.max_gas_price, issues);
        if let (Some(gas_price), Some(max_gas_price)) = (gas_price, max_gas_price)
            && max_gas_price < gas_price
        {
            issues.push(
                "transaction.max_gas_price",
                format!("must be at least transaction.gas_price ({})", tx.gas_price),
            );
        }
        if !(tx.gas_adjustment.is_finite() && tx.gas_adjustment >= crate::config::MIN_GAS_ADJUSTMENT) {
            issues.push(
                "transaction.gas_adjustment",
                format!(
                    "must be a number ≥ {} (simulated gas is multiplied by it; Simulate does not charge the unordered \
                     nonce's store write, so less risks running out of gas in the block)",
                    crate::config::MIN_GAS_ADJUSTMENT
                ),
            );
        }
        if !(crate::config::MIN_MAX_TX_BYTES..=crate::config::MAX_MAX_TX_BYTES).contains(&tx.max_tx_bytes) {
            issues.push(
                "transaction.max_tx_bytes",
                format!(
                    "must be between {} and {} (keep it below the node's CometBFT mempool.max_tx_bytes, default \
                     1048576)",
                    crate::config::MIN_MAX_TX_BYTES,
                    crate::config::MAX_MAX_TX_BYTES
                ),
            );
        }
        if tx.submission_buffer_blocks == 0 || tx.submission_buffer_blocks > crate::config::MAX_SUBMISSION_BUFFER_BLOCKS
        {
            issues.push(
                "transaction.submission_buffer_blocks",
                format!(
                    "must be between 1 and {} (a tx sent at the height a window closes lands in a later block, \
                     outside the window: its fee is paid and a proof sent then is missing, a slash)",
                    crate::config::MAX_SUBMISSION_BUFFER_BLOCKS
                ),
            );
        }
        if tx.claim_delay_blocks > crate::config::MAX_CLAIM_DELAY_BLOCKS {
            issues.push(
                "transaction.claim_delay_blocks",
                format!(
                    "must be at most {} (the claim goes out at the last height the window allows anyway)",
                    crate::config::MAX_CLAIM_DELAY_BLOCKS
                ),
            );
        }
        if tx.tx_timeout_default_seconds == 0 || tx.tx_timeout_default_seconds > crate::config::MAX_TX_TIMEOUT_SECS {
            issues.push(
                "transaction.tx_timeout_default_seconds",
                format!(
                    "must be between 1 and {} (ADR-070 allows 600 after the node's check-state block time, which \
                     can lag the latest block the timeout starts from)",
                    crate::config::MAX_TX_TIMEOUT_SECS
                ),
            );
        }
    }
}

/// `backends.{kind}` beyond its kind: `url` xor `urls`, each endpoint's URL, unique endpoint names, retries,
/// recovery timeout, `base_path`, `authentication` and `health_check` (Go's checks, key named in each problem).
fn validate_backend_pool(
    issues: &mut Issues,
    prefix: &str,
    kind: &str,
    backend: &super::BackendConfig,
    schemes: &[&str],
) {
    let key = |k: &str| format!("{prefix}.{k}");
    match (backend.url.is_empty(), backend.urls.is_empty()) {
        (false, false) => issues.push(key("urls"), "set either `url` or `urls`, not both"),
        (true, true) => issues.push(key("url"), "one of `url` or `urls` is required"),
        (false, true) => issues.url(&key("url"), &backend.url_for(kind), schemes),
        (true, false) => {
            if backend.urls.len() > super::MAX_BACKEND_ENDPOINTS {
                issues.push(
                    key("urls"),
                    format!("at most {} endpoints per backend", super::MAX_BACKEND_ENDPOINTS),
                );
            }
            let mut names = std::collections::BTreeSet::new();
            for (i, (name, url)) in backend.endpoints(kind).iter().enumerate() {
                issues.url(&key(&format!("urls[{i}]")), url, schemes);
                if name.is_empty() {
                    issues.push(key(&format!("urls[{i}].name")), "must not be empty");
                } else if !names.insert(name.clone()) {
                    issues.push(
                        key(&format!("urls[{i}].name")),
                        format!("endpoint name `{name}` is used twice in this backend"),
                    );
                }
            }
        }
    }
    if backend.max_retries.is_some_and(|r| r > 3) {
        issues.push(key("max_retries"), "must be between 0 and 3");
    }
    if backend.recovery_timeout_seconds.is_some_and(|s| s > 86_400) {
        issues.push(key("recovery_timeout_seconds"), "must be between 0 and 86400");
    }
    if let Some(base) = &backend.base_path
        && !base.is_empty()
        && (!base.starts_with('/') || base.contains(['?', '#']))
    {
        issues.push(
            key("base_path"),
            "must be a path starting with `/` (no query or fragment)",
        );
    }
    if let Some(auth) = &backend.authentication {
        let kinds = [
            auth.username.is_some(),
            auth.bearer_token.is_some(),
            auth.plain_token.is_some(),
        ]
        .into_iter()
        .filter(|k| *k)
        .count();
        if kinds > 1 {
            issues.push(
                key("authentication"),
                "set only one of username/password, bearer_token or plain_token",
            );
        }
        if auth.username.is_some() != auth.password.is_some() {
            issues.push(key("authentication.password"), "username and password go together");
        }
        if let Some(value) = auth.header_value()
            && http::HeaderValue::from_str(&value).is_err()
        {
            issues.push(key("authentication"), "not a valid HTTP header value");
        }
    }
    if let Some(hc) = &backend.health_check {
        let key = |k: &str| format!("{prefix}.health_check.{k}");
        if hc.enabled {
            let has_path = hc.endpoint.as_deref().is_some_and(|e| !e.is_empty())
                || backend.base_path.as_deref().is_some_and(|b| !b.is_empty());
            if !has_path {
                issues.push(
                    key("endpoint"),
                    "required when health checks are enabled (or set base_path)",
                );
            }
            if !(1..=86_400).contains(&hc.interval_seconds) {
                issues.push(key("interval_seconds"), "must be between 1 and 86400");
            }
            if !(1..=3_600).contains(&hc.timeout_seconds) {
                issues.push(key("timeout_seconds"), "must be between 1 and 3600");
            }
        }
        if !(1..=1_000).contains(&hc.unhealthy_threshold) {
            issues.push(key("unhealthy_threshold"), "must be between 1 and 1000");
        }
        if !(1..=1_000).contains(&hc.healthy_threshold) {
            issues.push(key("healthy_threshold"), "must be between 1 and 1000");
        }
        if http::Method::from_bytes(hc.method.as_bytes()).is_err() {
            issues.push(key("method"), format!("`{}` is not an HTTP method", hc.method));
        }
        if let Some(e) = &hc.endpoint
            && !e.is_empty()
            && !e.starts_with('/')
        {
            issues.push(key("endpoint"), "must be a path starting with `/`");
        }
        for status in &hc.expected_status {
            if !(100..=599).contains(status) {
                issues.push(key("expected_status"), format!("{status} is not an HTTP status"));
            }
        }
        for (name, value) in &hc.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
                issues.push(key(&format!("headers.{name}")), "not a valid HTTP header");
            }
        }
    }
}

#[cfg(test)]
mod tests;
