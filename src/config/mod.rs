//! The process configuration: one YAML file for relayer, miner and storage, parsed once at start into typed
//! structs. Key names follow the Go relay miner where the meaning is the same (`../shared/spec/go-operator-surface.md`
//! §A: `listen_addr`, `pocket_node.*`, `services.{id}.backends.{rpc type}`, `http_transport.*`, `transaction.*`, …) so
//! operators can migrate; keys that only make sense for Redis live under `storage.redis`.
//!
//! Unlike the Go loader (non-strict YAML), unknown keys are an error that names the key with its full path, and
//! [`Config::validate`] reports every problem at once, each with its key path. `relay-miner validate --config FILE`
//! runs both without starting anything. The example `config/relay-miner.example.yaml` documents every key and is
//! loaded by a test so it never rots.

mod backend;
pub mod import_go;
mod transaction;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use backend::*;
pub use transaction::*;
pub use validate::ConfigIssue;

/// Errors loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The YAML does not parse or has a key we do not know / a value of the wrong type.
    #[error("config key `{key}`: {problem}")]
    Parse {
        /// Dotted path of the offending key (`.` for the document root).
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The file parsed, but values are invalid; one entry per problem.
    #[error("invalid config:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// Where state lives (`../shared/docs/architecture.md`, "Three storage modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// One redb file on local disk; this process is always the leader.
    #[default]
    Embedded,
    /// Each node's redb replicated by openraft; the raft leader submits.
    Raft,
    /// Redis streams and hashes, the Go fleet's layout; a Redis lease elects the submitter.
    Redis,
}

/// When relays are validated relative to forwarding them (spec §2.6; Go `validation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValidationMode {
    /// Validate before forwarding; invalid relays never reach the backend.
    Eager,
    /// Serve first, validate asynchronously; invalid relays are not mined (the Go default). A relay is answered
    /// before it is in the relay log: a crash before its background settlement appended it loses it (unpaid).
    #[default]
    Optimistic,
}

/// The whole process configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the relay server listens on (gateways connect here).
    pub listen_addr: String,
    /// Limits of the relay server against slow or too many clients.
    pub relay_server: RelayServerConfig,
    /// Storage backend and its settings.
    pub storage: StorageConfig,
    /// The full node to query and submit to.
    pub pocket_node: PocketNodeConfig,
    /// Supplier operator keys.
    pub keys: KeysConfig,
    /// Validation mode for services that do not set their own.
    pub default_validation_mode: ValidationMode,
    /// Backend request timeout for services without a timeout profile.
    pub default_request_timeout_seconds: u64,
    /// Request and response body limit for services that do not set their own.
    pub default_max_body_size_bytes: u64,
    /// Served services by service id.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Named timeout profiles services refer to.
    pub timeout_profiles: BTreeMap<String, TimeoutProfile>,
    /// Named connection pool profiles services refer to.
    pub pool_profiles: BTreeMap<String, PoolProfile>,
    /// Pooled keep-alive connections to backends (Go relayer defaults).
    pub http_transport: HttpTransportConfig,
    /// Relay metering against the application's stake.
    pub relay_meter: RelayMeterConfig,
    /// How mined relays are appended to the relay log.
    pub relay_log: RelayLogConfig,
    /// Claim and proof transactions.
    pub transaction: TransactionConfig,
    /// The supplier funds monitor: balance and stake against what claims and proofs cost (Go miner keys).
    pub balance_monitor: BalanceMonitorConfig,
    /// Prometheus `/metrics`.
    pub metrics: ListenerConfig,
    /// `/health` and `/ready`.
    pub health_check: ListenerConfig,
    /// Log level and format.
    pub logging: LoggingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:8080".into(),
            relay_server: RelayServerConfig::default(),
            storage: StorageConfig::default(),
            pocket_node: PocketNodeConfig::default(),
            keys: KeysConfig::default(),
            default_validation_mode: ValidationMode::Optimistic,
            default_request_timeout_seconds: 30,
            default_max_body_size_bytes: 10 * 1024 * 1024,
            services: BTreeMap::new(),
            timeout_profiles: BTreeMap::new(),
            pool_profiles: BTreeMap::new(),
            http_transport: HttpTransportConfig::default(),
            relay_meter: RelayMeterConfig::default(),
            relay_log: RelayLogConfig::default(),
            transaction: TransactionConfig::default(),
            balance_monitor: BalanceMonitorConfig::default(),
            metrics: ListenerConfig {
                enabled: true,
                addr: "0.0.0.0:9090".into(),
            },
            health_check: ListenerConfig {
                enabled: true,
                addr: "0.0.0.0:8081".into(),
            },
            logging: LoggingConfig::default(),
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `embedded` (default), `raft` or `redis`.
    pub mode: StorageMode,
    /// Directory of the redb files (embedded and raft modes). A relative path resolves against the process's
    /// working directory (`validate` warns about it).
    pub data_dir: PathBuf,
    /// Start even though this mode's store is new and `data_dir` holds another mode's store with live data (an
    /// embedded `relay-miner.redb` with session records, relay-log entries or relays only in its relay WAL, a
    /// `raft-N` directory of another node id): that data is abandoned (its sessions are never claimed or proven).
    /// Default `false`: refused (`crate::node::storage_mode`, `guard` module); `validate` reports the same.
    pub allow_abandoned_data: bool,
    /// redb page cache size.
    pub cache_size_bytes: u64,
    /// Embedded mode: make relay appends durable through a write-ahead log (one `pwrite` + `fdatasync` per
    /// group) instead of a durable redb commit each; redb is brought up to date in the background.
    pub relay_wal: bool,
    /// Redis mode settings.
    pub redis: RedisConfig,
    /// Raft mode settings.
    pub raft: RaftConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            mode: StorageMode::Embedded,
            data_dir: PathBuf::from("./relay-miner-data"),
            allow_abandoned_data: false,
            cache_size_bytes: 256 * 1024 * 1024,
            relay_wal: true,
            redis: RedisConfig::default(),
            raft: RaftConfig::default(),
        }
    }
}

/// Redis mode (Go keys `redis.*`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (sentinel and cluster URLs where the client supports them).
    pub url: String,
    /// Key prefix (Go `namespace.base_prefix`).
    pub base_prefix: String,
    /// This miner's name in the leader election (default `miner-{hostname}`; unique per instance).
    pub consumer_name: Option<String>,
    /// Entries pending for another consumer (a dead one) idle this long are taken over by the reading miner
    /// (0 = never).
    pub claim_idle_timeout_ms: u64,
    /// Leader lease TTL (renewed every quarter of it).
    pub leader_ttl_seconds: u64,
    /// Deprecated, ignored (the Go miner's renewal period; a WARN at start when not the default 10). Still
    /// validated shorter than `leader_ttl_seconds`, as configs written for the Go miner have it.
    pub heartbeat_rate_seconds: u64,
    /// `rediss://` only: PEM CA certificate(s) the server's certificate must chain to, instead of the system's
    /// roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept a Redis running without AOF (`appendonly no`): `/ready` no longer fails on it (logged at WARN at
    /// connect). A Redis restart then loses relays already acknowledged to gateways and the tries of claimed
    /// sessions (claims that cannot be proven are slashed).
    pub allow_without_aof: bool,
    /// Relay appends are refused (relayers answer `redis_memory_threshold`) while the memory Redis counts against
    /// `maxmemory` (`used_memory` less replica output buffers and the AOF buffer) is above this share of it, so the miner keeps the rest to ingest what was accepted and to prune; `1` =
    /// only at `maxmemory` (where the miner's trie writes are refused too). No effect without a `maxmemory`.
    pub relay_max_memory_ratio: f64,
    /// The memory monitor warns above this share of `maxmemory` (below `relay_max_memory_ratio`).
    pub memory_warn_ratio: f64,
    /// Replicas that must acknowledge (Redis `WAIT`) each relay-log append, session record write, write set and
    /// trie batch before it counts as written; fewer within `wait_timeout_ms` fail the write (storage crate,
    /// `redis::replicas` module). 0 = off: acknowledged once the primary has it (a failover may lose it).
    pub wait_replicas: u32,
    /// How long a write waits for `wait_replicas` replicas, in (0, [`MAX_WAIT_TIMEOUT_MS`]].
    pub wait_timeout_ms: u64,
}

/// Upper bound of `storage.redis.wait_timeout_ms`: a relay append waits this long at most before its gateway is
/// answered, and every write queued behind a wait on its connection waits too.
pub const MAX_WAIT_TIMEOUT_MS: u64 = 10_000;

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            base_prefix: "ha".into(),
            consumer_name: None,
            claim_idle_timeout_ms: 60_000,
            leader_ttl_seconds: 30,
            heartbeat_rate_seconds: 10,
            tls_ca_file: None,
            allow_without_aof: false,
            relay_max_memory_ratio: storage::redis::DEFAULT_RELAY_MAX_MEMORY_RATIO,
            memory_warn_ratio: storage::redis::DEFAULT_MEMORY_WARN_RATIO,
            wait_replicas: 0,
            wait_timeout_ms: u64::try_from(storage::redis::DEFAULT_WAIT_TIMEOUT.as_millis()).unwrap_or(500),
        }
    }
}

/// Raft mode.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// This node's id (never reuse the id of a wiped node).
    pub node_id: u64,
    /// Address the raft RPC server listens on.
    pub listen_addr: String,
    /// `id=host:port` of every voter.
    pub peers: Vec<String>,
    /// File holding the shared cluster secret.
    pub cluster_token_file: Option<PathBuf>,
    /// Leader heartbeat interval in ms (unset = the raft crate's default, 50).
    pub heartbeat_interval_ms: Option<u64>,
    /// Lower end of the randomized election timeout in ms (unset = 150). A follower that hears no leader for
    /// `election_timeout_max_ms` (the leader lease) plus a random time in the range campaigns.
    pub election_timeout_min_ms: Option<u64>,
    /// Upper end of the randomized election timeout in ms (unset = 300); also the leader lease.
    pub election_timeout_max_ms: Option<u64>,
    /// Pre-vote round before a real election (unset = on): a node that cannot win (cut off, shorter log) does
    /// not bump the term and so does not depose a healthy leader when it reconnects.
    pub pre_vote: Option<bool>,
    /// How long the start check (`raft::rollback`) waits in ms for a member that is down before the node starts
    /// with the answers it has (unset = the raft crate's default, 10 000). Members that are up answer at once:
    /// this only delays a start while one is down, and a shorter wait checks a restored data directory against
    /// fewer members when one is slow to answer.
    pub start_check_wait_ms: Option<u64>,
}

impl RaftConfig {
    /// The heartbeat interval and election timeout range: these keys over the raft crate's defaults.
    pub fn timing(&self) -> (std::time::Duration, (std::time::Duration, std::time::Duration)) {
        use std::time::Duration;
        let (min, max) = raft::RaftConfig::DEFAULT_ELECTION_TIMEOUT;
        let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
        (
            ms(self.heartbeat_interval_ms, raft::RaftConfig::DEFAULT_HEARTBEAT),
            (
                ms(self.election_timeout_min_ms, min),
                ms(self.election_timeout_max_ms, max),
            ),
        )
    }

    /// The start check's wait for a member that is down: `start_check_wait_ms` over the raft crate's default.
    pub fn start_check_wait(&self) -> std::time::Duration {
        self.start_check_wait_ms
            .map(std::time::Duration::from_millis)
            .unwrap_or(raft::RaftConfig::DEFAULT_START_CHECK_WAIT)
    }
}

/// The full node (Go `pocket_node.*`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PocketNodeConfig {
    /// CometBFT RPC URL (`http://host:26657`).
    pub query_node_rpc_url: String,
    /// Cosmos gRPC URL (`http://host:9090`).
    pub query_node_grpc_url: String,
    /// Plaintext gRPC (Go meaning): `true` (default) dials an `http://` gRPC URL without TLS; `false` always
    /// uses TLS, as does an `https://` URL.
    pub grpc_insecure: bool,
    /// PEM CA certificates trusted for the node's `https` endpoints besides the system's and Mozilla's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Timeout of one chain query.
    pub query_timeout_seconds: u64,
    /// Chain id used to sign txs.
    pub chain_id: String,
}

impl Default for PocketNodeConfig {
    fn default() -> Self {
        Self {
            query_node_rpc_url: "http://127.0.0.1:26657".into(),
            query_node_grpc_url: "http://127.0.0.1:9090".into(),
            grpc_insecure: true,
            tls_ca_file: None,
            query_timeout_seconds: 5,
            chain_id: "pocket".into(),
        }
    }
}

/// Supplier keys (Go `keys.keys_file`): a YAML file of hex private keys, permissions checked at load.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The keys file.
    pub keys_file: Option<PathBuf>,
    /// Reload the keys file when it changes, adding and removing suppliers without a restart.
    pub hot_reload: Option<bool>,
}

/// One served service.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Overrides `default_validation_mode`.
    pub validation_mode: Option<ValidationMode>,
    /// Name of a `timeout_profiles` entry.
    pub timeout_profile: Option<String>,
    /// Name of a `pool_profiles` entry.
    pub pool_profile: Option<String>,
    /// Overrides `default_max_body_size_bytes`.
    pub max_body_size_bytes: Option<u64>,
    /// Backend used when the request has no `Rpc-Type` header (`jsonrpc`, `rest`, …).
    pub default_backend: Option<String>,
    /// Backends per rpc type: keys `jsonrpc`, `rest`, `websocket`, `grpc`, `cometbft`.
    pub backends: BTreeMap<String, BackendConfig>,
}

/// Go `timeout_profiles.{name}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutProfile {
    /// Whole-request timeout.
    pub request_timeout_seconds: u64,
    /// Time to first response header.
    pub response_header_timeout_seconds: u64,
    /// TCP connect timeout.
    pub dial_timeout_seconds: u64,
}

/// Go `pool_profiles.{name}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PoolProfile {
    /// Maximum connections per backend host.
    pub max_conns_per_host: u32,
    /// Maximum idle connections kept per host.
    pub max_idle_conns_per_host: u32,
    /// Idle connections are closed after this long.
    pub idle_conn_timeout_seconds: u64,
}

/// Go `http_transport.*` with the Go relayer's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTransportConfig {
    /// Idle connections kept across all hosts.
    pub max_idle_conns: u32,
    /// Idle connections kept per host.
    pub max_idle_conns_per_host: u32,
    /// Connections per host.
    pub max_conns_per_host: u32,
    /// Idle timeout.
    pub idle_conn_timeout_seconds: u64,
    /// Connect timeout.
    pub dial_timeout_seconds: u64,
    /// Time to the response headers.
    pub response_header_timeout_seconds: u64,
    /// TCP keep-alive interval.
    pub tcp_keep_alive_seconds: u64,
    /// PEM CA certificates trusted for `https` backends besides the system's and Mozilla's roots (ours, not Go's).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for HttpTransportConfig {
    fn default() -> Self {
        Self {
            max_idle_conns: 500,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 500,
            idle_conn_timeout_seconds: 90,
            dial_timeout_seconds: 5,
            response_header_timeout_seconds: 30,
            tcp_keep_alive_seconds: 30,
            tls_ca_file: None,
        }
    }
}

/// What the relay meter does when its storage is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailBehavior {
    /// Serve the relay (risk over-servicing, never refuse paying traffic because of our own outage).
    #[default]
    Open,
    /// Refuse the relay.
    Closed,
}

/// Go `relay_meter.*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayMeterConfig {
    /// Enforce the app's stake bound per session.
    pub enabled: bool,
    /// Behaviour when the meter's storage fails.
    pub fail_behavior: FailBehavior,
    /// Lifetime of a session's meter keys in storage (Go `cache_ttl`, default 2h, at least
    /// [`MIN_METER_CACHE_TTL_SECS`]). YAML takes seconds (`7200`) or one number with a unit: `90s`, `30m`, `2h`.
    #[serde(deserialize_with = "duration_seconds")]
    pub cache_ttl: u64,
    /// How often each relayer pushes its local consumption to storage and reads the others' (ours, not Go's).
    /// Several relayers sharing a session may together over-serve by at most what they serve in one interval.
    pub sync_interval_ms: u64,
}

impl Default for RelayMeterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fail_behavior: FailBehavior::Open,
            cache_ttl: 2 * 60 * 60,
            sync_interval_ms: 100,
        }
    }
}

/// Smallest `relay_meter.cache_ttl`, in seconds: one hour.
///
/// A session's shared meter counter gets its TTL once, when the session's first synced relay creates it (the
/// storage KV `increment` sets a TTL only on creation: a fixed window), and it must outlive every relay of the
/// session: from the session's start until its claim window opens, `num_blocks_per_session +
/// claim_window_open_offset_blocks + 1` blocks (mainnet params: 20 + 11 + 1 = 32 blocks, about 16 minutes at
/// 30 s blocks). A counter that expires mid-session restarts from 0 for every relayer (and for a relayer that
/// restarts), so the application is over-served. One hour leaves about 3.7× headroom for slow blocks (the Go
/// default is 2 h). Refreshing the TTL on every increment instead would change the KV contract of every storage
/// backend (Redis, redb and raft's replicated state machine) for this one caller.
pub const MIN_METER_CACHE_TTL_SECS: u64 = 60 * 60;

/// Deserializes a duration in seconds from an integer or a string like `90s`, `30m`, `2h`, `1d`.
fn duration_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(s) => Ok(s),
        Raw::Text(text) => parse_duration_seconds(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a duration like 7200, 90s, 30m, 2h or 1d"))
        }),
    }
}

/// `90s`, `30m`, `2h`, `1d` or a bare number of seconds.
pub fn parse_duration_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Limits of the relay listener (not in the Go relayer, whose server has none): a port open to the internet must
/// not let slow or numerous clients hold connections until the process runs out of file descriptors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayServerConfig {
    /// Time a client has to send a request's headers once it started them; else the connection is closed.
    pub header_read_timeout_seconds: u64,
    /// Time a connection may stay open with no request in flight (silent or idle keep-alive); then it is closed.
    pub idle_timeout_seconds: u64,
    /// Time a client has to send a request's body once its headers arrived; else `request_timeout` (408).
    pub body_read_timeout_seconds: u64,
    /// Connections served at once; further ones wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// Connections served at once from one client address (IPv6: one /64); a connection beyond it is closed
    /// unserved. 0 = no such limit (the default: behind a load balancer every client shares its addresses).
    pub max_connections_per_ip: usize,
    /// Request-body bytes buffered at once by all relays being handled; a relay that cannot reserve its body's
    /// bytes within `body_budget_wait_ms` is refused as `overloaded` (503). 0 = no such limit.
    pub max_body_bytes_in_flight: u64,
    /// How long a relay waits for body bytes to be released before it is refused as `overloaded`.
    pub body_budget_wait_ms: u64,
}

impl Default for RelayServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 120,
            body_read_timeout_seconds: 30,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_body_bytes_in_flight: DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
            body_budget_wait_ms: 100,
        }
    }
}

impl RelayServerConfig {
    /// The server's limits.
    pub fn limits(&self) -> crate::relayer::ServerLimits {
        crate::relayer::ServerLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
            max_connections_per_ip: (self.max_connections_per_ip > 0).then_some(self.max_connections_per_ip),
        }
    }
}

/// Default `relay_server.max_body_bytes_in_flight`: 1 GiB (about 100 maximum-size 10 MiB bodies at once).
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: u64 = 1 << 30;
/// Largest `relay_server.max_body_bytes_in_flight`.
pub const MAX_MAX_BODY_BYTES_IN_FLIGHT: u64 = 1 << 40;

/// The supplier funds monitor (`miner::driver::balance`; the Go miner's `balance_monitor` keys and defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceMonitorConfig {
    /// Check balances and stakes at all.
    pub enabled: bool,
    /// Seconds between checks (1–86400).
    pub check_interval_seconds: u64,
    /// A supplier operator balance below this (upokt) is a warning.
    pub balance_threshold_upokt: u64,
    /// A stake covering fewer `proof_missing_penalty` slashes than this is a warning.
    pub stake_warning_proof_threshold: u64,
    /// …fewer than this, critical (at most the warning threshold).
    pub stake_critical_proof_threshold: u64,
}

impl Default for BalanceMonitorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval_seconds: 300,
            balance_threshold_upokt: 1_000_000,
            stake_warning_proof_threshold: 10,
            stake_critical_proof_threshold: 3,
        }
    }
}

/// Group commit of mined relays (the hot path never fsyncs per relay).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayLogConfig {
    /// A batch is committed after at most this many milliseconds…
    pub max_batch_delay_ms: u64,
    /// …or this many relays, whichever comes first.
    pub max_batch_relays: usize,
    /// Answer the gateway only after the relay's batch is durable (eager mode: an optimistic relay is answered
    /// before it is validated and appended either way). Off, a relay is answered once queued: a crash loses the
    /// relays answered whose batch was not appended yet (a graceful stop waits for the queue).
    pub durable_ack: bool,
}

impl Default for RelayLogConfig {
    fn default() -> Self {
        Self {
            max_batch_delay_ms: 5,
            max_batch_relays: 512,
            durable_ack: true,
        }
    }
}

/// Largest `max_body_size_bytes` / `default_max_body_size_bytes`: a relay request larger than the protocol's
/// message limit ([`crate::protocol::relay::MAX_RELAY_MESSAGE_BYTES`], 64 MiB) cannot be decoded.
pub const MAX_BODY_SIZE_BYTES: u64 = crate::protocol::relay::MAX_RELAY_MESSAGE_BYTES as u64;

/// Largest body limit in raft mode: a mined relay (request and response, each up to the limit, plus headers,
/// signatures and metadata, 1 MiB kept for those) must fit one raft entry ([`raft::MAX_ENTRY_BYTES`], 48 MiB),
/// else the log refuses it after the backend served it.
pub const MAX_BODY_SIZE_BYTES_RAFT: u64 = ((raft::MAX_ENTRY_BYTES - (1 << 20)) / 2) as u64;

/// A side listener (metrics, health).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Listen address.
    pub addr: String,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: String::new(),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (Go default).
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

/// Go `logging.*` (the subset that means something here).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `trace`, `debug`, `info`, `warn`, `error`, or a tracing env-filter directive.
    pub level: String,
    /// `json` or `text`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

impl Config {
    /// Parses YAML text, rejecting unknown keys with their full path.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                key,
                problem: e.into_inner().to_string(),
            }
        })
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Self::from_yaml(&text)?;
        let issues = config.validate();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// The effective validation mode of a service.
    pub fn validation_mode(&self, service_id: &str) -> ValidationMode {
        self.services
            .get(service_id)
            .and_then(|s| s.validation_mode)
            .unwrap_or(self.default_validation_mode)
    }

    /// The effective body size limit of a service.
    pub fn max_body_size_bytes(&self, service_id: &str) -> u64 {
        self.services
            .get(service_id)
            .and_then(|s| s.max_body_size_bytes)
            .unwrap_or(self.default_max_body_size_bytes)
    }
}
