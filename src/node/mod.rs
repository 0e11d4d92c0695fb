//! Process assembly for `relay-miner run` (issues 6, 7, 8): builds every component from the [`Config`] and runs
//! them until shutdown. It owns the order of start and stop, nothing else:
//!
//! 1. storage (embedded redb, Redis, or a raft node) — everything else writes through it;
//! 2. chain client, supplier keyring (+ hot reload), block height watch;
//! 3. relayer (gateways' port), miner (relay log → claims and proofs), telemetry listeners (`/metrics`,
//!    `/health`, `/ready`); `relay-miner relayer` and `relay-miner miner` start one of the two (module `role`).
//!
//! Shutdown (SIGTERM, Ctrl-C, or the caller's future) runs in reverse, bounded where a part can hang (module
//! `stop`): the relay server stops accepting and drains in-flight relays, then waits (bounded:
//! `Relayer::drain_settlements`) for the relays answered but not yet in the relay log (optimistic settlements,
//! relays queued without `durable_ack`); only then is the miner told to stop, so its final ingest sees them, and
//! it persists its tries and records; then storage closes (raft leaves cleanly; redb flushes). A storage failure
//! or a miner task ending while the node runs stops it too, with exit code 1.

mod height_watch;
mod miner_readiness;
mod miner_watchdog;
mod raft_stopped;
mod role;
mod stop;
mod storage_mode;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use role::Role;
pub use stop::{FATAL_STOP_LIMIT, MINER_STOP_LIMIT, StopError, StopFailure, shutdown_signal};
pub use storage_mode::{OpenedStorage, RaftOverrides, validate_data_dir};

use crate::chain::query::ChainClient;
use crate::config::{Config, ConfigIssue, StorageMode};
use crate::keys::{Keyring, Reloader};
use crate::miner::driver::{Miner, MinerConfig, MinerStats};
use crate::miner::runtime::{MinerEnd, MinerRuntime};
use crate::relayer::Relayer;
use crate::telemetry::Telemetry;

/// Errors starting the process.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A config value cannot be used; names the key.
    #[error("config key `{key}`: {problem}")]
    Config {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The keys file.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Storage(String),
    /// The chain could not be reached at start.
    #[error("chain: {0}")]
    Chain(#[from] crate::chain::query::ChainError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What the listener is for.
        what: &'static str,
        /// The address.
        addr: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// Metrics registration.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// The relayer could not be built from the config.
    #[error("relayer: {0}")]
    Relayer(String),
    /// The miner's runtime could not start.
    #[error("miner: {0}")]
    Miner(String),
}

/// A running relay miner.
pub struct Node {
    /// Where gateways send relays (`None` for a miner-only process).
    pub relay_addr: Option<SocketAddr>,
    /// Where `/metrics` is served (if enabled).
    pub metrics_addr: Option<SocketAddr>,
    /// Where `/health` and `/ready` are served (if enabled and not the metrics address).
    pub health_addr: Option<SocketAddr>,
    /// The miner's counters (`None` for a relayer-only process).
    pub miner_stats: Option<Arc<MinerStats>>,
    /// The process telemetry.
    pub telemetry: Telemetry,
    /// The keyring (hot reloads land here).
    pub keyring: Keyring,
    /// Stops the relay server.
    stop: watch::Sender<bool>,
    /// Stops the miner, once every relay is settled.
    miner_stop: watch::Sender<bool>,
    /// The relay server, then its drain; ends with what the drain abandoned.
    relay_server: Option<JoinHandle<crate::relayer::Abandoned>>,
    miner: Option<MinerRuntime>,
    background: Vec<JoinHandle<()>>,
    storage: OpenedStorage,
    /// Set once the storage can no longer work in this process (a raft node whose core stopped, once its data
    /// directory has room again): the node then stops and the process exits non-zero for a restart.
    fatal: watch::Receiver<Option<String>>,
    /// How the miner task ended, once it has (`None` for a relayer-only process): an end before the node
    /// stops is fatal.
    miner_ended: Option<watch::Receiver<Option<MinerEnd>>>,
}

fn bind_error(what: &'static str, addr: &str) -> impl FnOnce(std::io::Error) -> NodeError + use<> {
    let addr = addr.to_string();
    move |source| NodeError::Bind { what, addr, source }
}

async fn listen(what: &'static str, addr: &str) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error(what, addr))
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// How long the miner takes a leadership confirmation as holding (see
/// [`Miner::with_confirmation_reuse`] for why this is safe): half of what the storage guarantees after one.
/// - raft: no other raft leader (so no other miner lease) can exist before `election_timeout max` after the
///   confirmation was requested (the followers' lease, `raft::RaftConfig::election_timeout`): half of it.
/// - Redis: the lease holds for `leader_ttl_seconds` (≥ 1 s) after a renewal: a quarter, at most 500 ms.
/// - embedded: one process; 500 ms, as long as a submission's two confirmations need.
fn confirmation_reuse(config: &Config, storage: &str) -> Duration {
    match storage {
        "raft" => config.storage.raft.timing().1.1 / 2,
        "redis" => {
            (Duration::from_secs(config.storage.redis.leader_ttl_seconds.max(1)) / 4).min(Duration::from_millis(500))
        }
        _ => Duration::from_millis(500),
    }
}

/// The supplier operator keys of `keys.keys_file` (required), permission-checked and parsed; with the file's path
/// (hot reload watches it).
pub fn load_keys(config: &Config) -> Result<(PathBuf, crate::keys::KeyMap), NodeError> {
    let path = config.keys.keys_file.clone().ok_or(NodeError::Config {
        key: "keys.keys_file",
        problem: "required: the YAML file of supplier operator keys".into(),
    })?;
    let keys = crate::keys::load_keys_file(&path)?;
    Ok((path, keys))
}

/// The CometBFT RPC client of `pocket_node.query_node_rpc_url` (no request is made).
fn comet_client(config: &Config) -> Result<crate::chain::comet::CometClient, NodeError> {
    let comet_config = crate::chain::comet::ClientConfig {
        tls_ca_file: config.pocket_node.tls_ca_file.clone(),
        ..Default::default()
    };
    crate::chain::comet::CometClient::with_config(&config.pocket_node.query_node_rpc_url, comet_config).map_err(|e| {
        NodeError::Config {
            key: "pocket_node.query_node_rpc_url",
            problem: e.to_string(),
        }
    })
}

/// What [`Node::start`] refuses before it opens anything, beyond [`Config::validate`]: the keys file (present,
/// `chmod 600`, every key valid), the CometBFT RPC URL, every service as the relayer builds it (backend header
/// names and values included) and, in raft mode, the cluster token file. Each problem is named by its config key;
/// `relay-miner validate` reports them with [`Config::validate`]'s, so a config it accepts does not fail `run`
/// for any of these. Reads files and, for `pocket_node.chain_id`, `transaction.claim_delay_blocks` and
/// `transaction.max_gas_price`, asks the node for its chain id, shared params and minimum gas prices (a mismatch,
/// a delay that leaves no claim re-send in the chain's claim window, or a node minimum no fee within the cap
/// meets, is an issue; an unreachable node is not: `run` starts without it); needs no runtime.
pub fn preflight(config: &Config, overrides: &RaftOverrides) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut push = |key: &str, problem: String| {
        issues.push(ConfigIssue {
            key: key.to_string(),
            problem,
        })
    };
    let mut node_error = |e: NodeError| match e {
        NodeError::Config { key, problem } => push(key, problem),
        NodeError::Keys(e) => push("keys.keys_file", e.to_string()),
        other => push("", other.to_string()),
    };
    if let Err(e) = load_keys(config) {
        node_error(e);
    }
    if let Err(e) = comet_client(config) {
        node_error(e);
    }
    if storage_mode::mode(config, overrides) == StorageMode::Raft
        && let Err(e) = storage_mode::cluster_token(&config.storage.raft)
    {
        node_error(e);
    }
    if let Err(crate::relayer::RouteError::Invalid { key, problem }) =
        crate::relayer::routes::services_from_config(config)
    {
        push(&key, problem);
    }
    let node = &config.pocket_node;
    let tls = crate::chain::grpc::GrpcTls {
        insecure: node.grpc_insecure,
        ca_file: node.tls_ca_file.clone(),
    };
    let timeout = Duration::from_secs(node.query_timeout_seconds.max(1));
    match crate::chain::chain_id::check_blocking(&node.query_node_grpc_url, &tls, timeout, &node.chain_id) {
        Err(e @ crate::chain::chain_id::ChainIdError::Mismatch { .. }) => push("pocket_node.chain_id", e.to_string()),
        Err(e) => tracing::warn!(error = %e, "pocket_node.chain_id not checked against the node"),
        Ok(()) => {}
    }
    let tx = &config.transaction;
    match crate::chain::claim_delay::check_blocking(
        &node.query_node_grpc_url,
        &tls,
        timeout,
        tx.claim_delay_blocks,
        tx.submission_buffer_blocks,
    ) {
        Err(e @ crate::chain::claim_delay::ClaimDelayError::TooLong { .. }) => {
            push("transaction.claim_delay_blocks", e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "transaction.claim_delay_blocks not checked against the chain's claim window")
        }
        Ok(()) => {}
    }
    if let Err(e) = crate::chain::fee_check::check_blocking(
        &node.query_node_grpc_url,
        &tls,
        timeout,
        &tx.gas_price,
        &tx.max_gas_price,
    ) {
        match e.key() {
            Some(key) => push(key, e.to_string()),
            None => {
                tracing::warn!(error = %e, "transaction.max_gas_price not checked against the node's minimum gas price")
            }
        }
    }
    issues
}

impl Node {
    /// Starts every component from `config`; `raft` carries command-line overrides of the raft settings.
    pub async fn start(config: Config, raft: RaftOverrides) -> Result<Self, NodeError> {
        let role = raft.role;
        role.check(storage_mode::mode(&config, &raft))?;
        let telemetry = Telemetry::new()?;
        // Keys first: a bad keys file must fail before anything binds a port.
        let (keys_path, keys) = load_keys(&config)?;
        let keyring = Keyring::new(keys);
        tracing::info!(suppliers = ?keyring.addresses(), "supplier keys loaded");
        let storage = storage_mode::open(&config, &raft).await?;
        let store = storage.storage();
        crate::chain::tls::install_default_provider();
        let chain = Arc::new(ChainClient::with_tls(
            &config.pocket_node.query_node_grpc_url,
            Duration::from_secs(config.pocket_node.query_timeout_seconds.max(1)),
            &crate::chain::grpc::GrpcTls {
                insecure: config.pocket_node.grpc_insecure,
                ca_file: config.pocket_node.tls_ca_file.clone(),
            },
        )?);
        // Txs signed for another chain than the node's all fail their signature check (crate::chain::chain_id).
        if let Err(e @ crate::chain::chain_id::ChainIdError::Mismatch { .. }) =
            chain.expect_chain_id(&config.pocket_node.chain_id).await
        {
            return Err(NodeError::Config {
                key: "pocket_node.chain_id",
                problem: e.to_string(),
            });
        }
        // A delay that leaves no re-send of a claim in the chain's claim window (crate::chain::claim_delay).
        match chain
            .check_claim_delay(
                config.transaction.claim_delay_blocks,
                config.transaction.submission_buffer_blocks,
            )
            .await
        {
            Err(e @ crate::chain::claim_delay::ClaimDelayError::TooLong { .. }) => {
                return Err(NodeError::Config {
                    key: "transaction.claim_delay_blocks",
                    problem: e.to_string(),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "transaction.claim_delay_blocks not checked against the chain's claim window")
            }
            Ok(()) => {}
        }
        // A node whose minimum gas price no fee of ours meets refuses every claim and proof (crate::chain::fee_check).
        if let Err(e) = crate::chain::fee_check::check_node(
            chain.grpc(),
            &config.transaction.gas_price,
            &config.transaction.max_gas_price,
        )
        .await
        {
            match e.key() {
                Some(key) => {
                    return Err(NodeError::Config {
                        key,
                        problem: e.to_string(),
                    });
                }
                None => {
                    tracing::warn!(error = %e, "transaction.max_gas_price not checked against the node's minimum gas price")
                }
            }
        }
        let gauges = crate::chain::gauges::CacheGauges::new(&chain).map_err(crate::telemetry::TelemetryError::from)?;
        telemetry.register(Box::new(gauges))?;
        let mut background = Vec::new();
        if config.keys.hot_reload.unwrap_or(true) {
            background.push(crate::keys::spawn_reload(
                Reloader::new(keys_path, keyring.clone()),
                Duration::from_secs(2),
                telemetry.heartbeat("keys_reload"),
            ));
        }
        let initial = match chain.tip().await {
            Ok(tip) => tip.height,
            Err(e) => {
                tracing::warn!(error = %e, "chain not reachable at start; relays wait for the first block");
                telemetry.set_not_ready("chain", "unreachable", &e.to_string());
                0
            }
        };
        let comet = comet_client(&config)?;
        let comet = match comet.status().await {
            Ok(_) => Some(comet),
            Err(e) => {
                tracing::warn!(
                    url = config.pocket_node.query_node_rpc_url,
                    error = %e,
                    "CometBFT RPC not reachable at start; following blocks by polling gRPC instead"
                );
                None
            }
        };
        let settlement_reader = comet.clone();
        let (height, watch_task) = height_watch::spawn_height_watch(
            Arc::clone(&chain),
            comet,
            telemetry.clone(),
            initial,
            Duration::from_millis(200),
        )?;
        background.push(watch_task);

        let (stop, stop_rx) = watch::channel(false);
        let (miner_stop, miner_stop_rx) = watch::channel(false);
        let (relay_addr, relay_server) = if role.relays() {
            let relayer = Arc::new(
                Relayer::from_config(&config, Arc::clone(&chain), keyring.clone(), &store, height, &telemetry)
                    .map_err(|e| NodeError::Relayer(e.to_string()))?,
            );
            let relay_listener = listen("listen_addr", &config.listen_addr).await?;
            let relay_addr = relay_listener
                .local_addr()
                .map_err(bind_error("listen_addr", &config.listen_addr))?;
            let relay_server = tokio::spawn({
                let shutdown = stopped(stop_rx.clone());
                let limits = config.relay_server.limits();
                async move {
                    Arc::clone(&relayer).serve(relay_listener, limits, shutdown).await;
                    // Connections are drained; optimistic relays may still be validating and appending.
                    relayer.drain_settlements().await
                }
            });
            (Some(relay_addr), Some(relay_server))
        } else {
            drop(height);
            (None, None)
        };

        let (miner_stats, miner) = if role.mines() {
            let (consumer, instance) = storage.consumer_and_instance(&config);
            let miner = Miner::new(
                Arc::clone(&chain),
                store,
                keyring.clone(),
                MinerConfig {
                    chain_id: config.pocket_node.chain_id.clone(),
                    gas_price: config.transaction.gas_price.clone(),
                    max_gas_price: config.transaction.max_gas_price.clone(),
                    gas_adjustment: config.transaction.gas_adjustment,
                    gas_limit: config.transaction.gas_limit,
                    tx_ttl_secs: i64::try_from(config.transaction.tx_timeout_default_seconds).unwrap_or(120),
                    max_tx_bytes: usize::try_from(config.transaction.max_tx_bytes).unwrap_or(usize::MAX),
                    unordered: config.transaction.unordered,
                    tick: Duration::from_millis(100),
                    ingest_every: match storage.name() {
                        "embedded" => crate::miner::driver::INGEST_EVERY_EMBEDDED,
                        _ => Duration::from_millis(100),
                    },
                    consumer,
                    instance,
                    lease: match storage.name() {
                        "redis" => Duration::from_secs(config.storage.redis.leader_ttl_seconds.max(1)),
                        _ => Duration::from_secs(10),
                    },
                    engine: crate::miner::lifecycle::EngineConfig {
                        submission_buffer_blocks: i64::try_from(config.transaction.submission_buffer_blocks)
                            .unwrap_or(1),
                        claim_delay_blocks: i64::try_from(config.transaction.claim_delay_blocks).unwrap_or(1),
                        ..Default::default()
                    },
                },
            );
            let mut miner = miner
                // One of the miner and the storage counts ha_miner_leader_acquisition_failures_total (Redis does).
                .with_metrics(crate::miner::metrics::MinerMetrics::counting(
                    &telemetry,
                    crate::miner::metrics::AcquisitionFailures::for_storage_mode(storage.name()),
                )?)
                .with_confirmation_reuse(confirmation_reuse(&config, storage.name()))
                .with_claim_policy(config.transaction.skip_unprofitable_claims);
            if let Some(comet) = settlement_reader {
                miner = miner.with_settlements_from(comet);
            }
            let monitor = &config.balance_monitor;
            if monitor.enabled {
                miner = miner.with_balance_monitor(crate::miner::driver::BalanceMonitor {
                    every: Duration::from_secs(monitor.check_interval_seconds),
                    balance_threshold_upokt: u128::from(monitor.balance_threshold_upokt),
                    stake_warning_proofs: monitor.stake_warning_proof_threshold,
                    stake_critical_proofs: monitor.stake_critical_proof_threshold,
                });
            }
            let miner_stats = miner.stats();
            // Test faults (`RELAY_MINER_TEST_*`, module `miner_watchdog`'s `fault`): none outside process tests.
            let faults = miner_watchdog::TestFaults::from_env();
            let miner =
                MinerRuntime::spawn(faults.hangable(miner.run(telemetry.heartbeat("miner"), stopped(miner_stop_rx))))
                    .map_err(|e| NodeError::Miner(format!("miner runtime: {e}")))?;
            // A raft leader whose miner cannot read the chain hands the leadership (and the lease) off.
            if let OpenedStorage::Raft(node) = &storage {
                background.push(miner_watchdog::spawn(
                    Arc::clone(&chain),
                    Arc::downgrade(node),
                    &telemetry,
                    miner_watchdog::Watched {
                        stats: Arc::clone(&miner_stats),
                        keyring: keyring.clone(),
                        heartbeat: telemetry.heartbeat("miner"),
                        query_timeout: Duration::from_secs(config.pocket_node.query_timeout_seconds.max(1)),
                        min_hung: miner_watchdog::MIN_HUNG,
                        hung_after: faults.hung_after,
                    },
                )?);
            }
            // Redis: the miner's own alarms are the `miner` readiness component, advisory when this process also
            // serves relays, so they never take its relayer out of rotation (module `miner_readiness`).
            if let OpenedStorage::Redis(backend, _) = &storage {
                background.push(miner_readiness::spawn(backend.clone(), role, telemetry.clone()));
            }
            (Some(miner_stats), Some(miner))
        } else {
            (None, None)
        };

        let mut metrics_addr = None;
        let mut health_addr = None;
        if config.metrics.enabled {
            let listener = listen("metrics.addr", &config.metrics.addr).await?;
            metrics_addr = Some(
                listener
                    .local_addr()
                    .map_err(bind_error("metrics.addr", &config.metrics.addr))?,
            );
            background.push(serve_side(listener, telemetry.router()));
        }
        if config.health_check.enabled && config.health_check.addr != config.metrics.addr {
            let listener = listen("health_check.addr", &config.health_check.addr).await?;
            health_addr = Some(
                listener
                    .local_addr()
                    .map_err(bind_error("health_check.addr", &config.health_check.addr))?,
            );
            background.push(serve_side(listener, telemetry.router()));
        }
        let (fatal_tx, fatal) = watch::channel(None);
        background.extend(storage.spawn_readiness(telemetry.clone(), fatal_tx)?);
        tracing::info!(
            ?relay_addr,
            ?metrics_addr,
            ?health_addr,
            storage = storage.name(),
            role = role.command(),
            "relay miner running"
        );
        let miner_ended = miner.as_ref().map(MinerRuntime::ended);
        Ok(Self {
            relay_addr,
            metrics_addr,
            health_addr,
            miner_stats,
            telemetry,
            keyring,
            stop,
            miner_stop,
            relay_server,
            miner,
            background,
            storage,
            fatal,
            miner_ended,
        })
    }
}

fn serve_side(listener: tokio::net::TcpListener, router: axum::Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "telemetry listener stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A config `Config::validate` accepts, with `extra` YAML appended, and the keys its `preflight` names.
    fn preflight_keys(extra: &str) -> (Vec<crate::config::ConfigIssue>, Vec<String>) {
        let yaml =
            format!("services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n{extra}");
        let config = Config::from_yaml(&yaml).unwrap();
        let validated = config.validate();
        let keys = preflight(&config, &RaftOverrides::default())
            .into_iter()
            .map(|i| i.key)
            .collect();
        (validated, keys)
    }

    fn keys_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// `run` refuses these before it opens anything; `validate` used to accept them (`Config::validate` alone
    /// does), so preflight reports each with its key.
    #[test]
    fn preflight_names_what_run_refuses_and_validate_alone_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let good_key = format!("keys:\n  - {}\n", "01".repeat(32));
        let good = keys_file(dir.path(), "good.yaml", &good_key, 0o600);
        let keys = |path: &std::path::Path| format!("keys:\n  keys_file: {}\n", path.display());

        let (validated, named) = preflight_keys(&keys(&good));
        assert_eq!((validated, named), (vec![], Vec::<String>::new()), "a complete config");

        let cases = [
            ("".to_string(), "keys.keys_file"),
            (keys(&dir.path().join("missing.yaml")), "keys.keys_file"),
            (
                keys(&keys_file(dir.path(), "loose.yaml", &good_key, 0o644)),
                "keys.keys_file",
            ),
            (
                keys(&keys_file(dir.path(), "bad.yaml", "keys:\n  - nothex\n", 0o600)),
                "keys.keys_file",
            ),
        ];
        for (extra, key) in cases {
            let (validated, named) = preflight_keys(&extra);
            assert_eq!(validated, vec![], "{extra}");
            assert_eq!(named, vec![key.to_string()], "{extra}");
        }

        // A header name the relayer cannot send: named with its full key.
        let yaml = format!(
            "services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n        headers: {{\"bad header\": x}}\n{}",
            keys(&good)
        );
        // (`Config::validate` checks backend headers itself now; preflight, building the services as `run` does,
        // names it too.)
        let config = Config::from_yaml(&yaml).unwrap();
        let keys_of = |issues: Vec<ConfigIssue>| issues.into_iter().map(|i| i.key).collect::<Vec<_>>();
        let key = "services.anvil.backends.jsonrpc.headers.bad header".to_string();
        assert_eq!(keys_of(config.validate()), vec![key.clone()]);
        assert_eq!(keys_of(preflight(&config, &RaftOverrides::default())), vec![key]);
    }

    /// Raft mode needs the cluster token file, holding at least 16 characters; other modes do not read it.
    #[test]
    fn preflight_checks_the_raft_cluster_token_file_in_raft_mode() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_file(
            dir.path(),
            "keys.yaml",
            &format!("keys:\n  - {}\n", "01".repeat(32)),
            0o600,
        );
        let short = dir.path().join("short-token");
        std::fs::write(&short, "tooshort\n").unwrap();
        let long = dir.path().join("token");
        std::fs::write(&long, "0123456789abcdef0123\n").unwrap();
        let raft = |token: Option<&std::path::Path>| {
            let token = token.map_or(String::new(), |t| format!("    cluster_token_file: {}\n", t.display()));
            format!(
                "keys:\n  keys_file: {}\nstorage:\n  mode: raft\n  raft:\n    node_id: 1\n    listen_addr: 127.0.0.1:7001\n    peers: [\"1=127.0.0.1:7001\"]\n{token}",
                keys.display()
            )
        };
        let token_key = "storage.raft.cluster_token_file".to_string();
        for token in [None, Some(short.as_path()), Some(dir.path().join("absent").as_path())] {
            let (validated, named) = preflight_keys(&raft(token));
            assert_eq!(validated, vec![], "{token:?}");
            assert_eq!(named, vec![token_key.clone()], "{token:?}");
        }
        let (validated, named) = preflight_keys(&raft(Some(&long)));
        assert_eq!((validated, named), (vec![], Vec::<String>::new()));
        // The same config run embedded (`--storage embedded`) does not need the token.
        let yaml = format!(
            "services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n{}",
            raft(None)
        );
        let config = Config::from_yaml(&yaml).unwrap();
        let embedded = RaftOverrides {
            mode: Some(StorageMode::Embedded),
            ..Default::default()
        };
        assert_eq!(preflight(&config, &embedded), vec![]);
    }
}
