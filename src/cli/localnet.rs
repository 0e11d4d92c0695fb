//! `relay-miner localnet`: one command, no Redis, no configuration. Starts the simulator chain (gRPC on
//! 127.0.0.1), the demo backend, the relay miner (relayer + miner) on embedded redb storage, and a load generator
//! that sends correctly signed relays from several applications through several gateways for a few sessions —
//! POSTed JSON-RPC relays, and a share of gRPC relays (`SendRelay` over HTTP/2, to the demo backend's
//! `demo.Echo` through the service's `grpc` backend); then waits until every loaded session is settled on the
//! simulator and prints a summary. Exit status 0 only when every served relay (either transport) is in an
//! accepted claim, every claim and proof was accepted, every claim settled, and nothing was lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::chain::query::ChainClient;
use crate::config::{BackendConfig, Config, RelayMeterConfig, ServiceConfig, ValidationMode};
use crate::loadgen::Outcome;
use crate::miner::driver::{Miner, MinerConfig};
use crate::protocol::session::SessionWindows;
use crate::protocol::sha256;
use crate::relayer::Relayer;
use crate::sim::backend::BackendHandle;
use crate::sim::chain::genesis::*;
use crate::sim::chain::{Settlement, SimChain, actor};

/// Flags of `relay-miner localnet`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalnetArgs {
    /// Sessions to send traffic for.
    #[arg(long, default_value_t = 3)]
    pub sessions: i64,
    /// Relays per second across all applications.
    #[arg(long, default_value_t = 40)]
    pub rate: u64,
    /// Applications.
    #[arg(long, default_value_t = 3)]
    pub apps: usize,
    /// Gateways (apps delegate round-robin).
    #[arg(long, default_value_t = 2)]
    pub gateways: usize,
    /// Suppliers run by this relay miner.
    #[arg(long, default_value_t = 2)]
    pub suppliers: usize,
    /// Block time in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub block_time_ms: u64,
    /// Probability that a claim needs a proof.
    #[arg(long, default_value_t = 0.5)]
    pub proof_probability: f64,
    /// Share of the relays sent as gRPC relays (0 to 1; 0 = POSTed JSON-RPC relays only).
    #[arg(long, default_value_t = 0.25, value_parser = parse_share)]
    pub grpc_share: f64,
    /// Data directory for the redb file (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Keep everything running after the summary (Ctrl-C to stop).
    #[arg(long)]
    pub keep_running: bool,
}

/// A share between 0 and 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        Ok(share) => Err(format!("{share} is not between 0 and 1")),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether relay number `n` goes as a gRPC relay, for a `share` of them: a multiplicative hash of `n` mapped to
/// [0, 1), so gRPC relays spread over every application and supplier (every k-th relay would always pick the
/// same ones: the load generator picks both from `n`).
fn goes_grpc(n: u64, share: f64) -> bool {
    let unit = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    unit < share
}

fn key_hex(label: &str) -> String {
    hex::encode(sha256(label.as_bytes()))
}

/// The demo genesis: one service, `apps` applications delegating to `gateways`, `suppliers` suppliers serving
/// `relay_url`.
pub fn demo_genesis(args: &LocalnetArgs, relay_url: &str) -> Genesis {
    Genesis {
        chain_id: "pocket-localnet".into(),
        block_time_ms: args.block_time_ms,
        shared_params: GenesisSharedParams {
            num_blocks_per_session: 4,
            grace_period_end_offset_blocks: 1,
            claim_window_open_offset_blocks: 1,
            claim_window_close_offset_blocks: 4,
            proof_window_open_offset_blocks: 0,
            proof_window_close_offset_blocks: 4,
            ..Default::default()
        },
        proof_params: GenesisProofParams {
            proof_request_probability: args.proof_probability,
            proof_requirement_threshold_upokt: u64::MAX,
            proof_missing_penalty_upokt: 320_000_000,
            proof_submission_fee_upokt: 1,
        },
        num_suppliers_per_session: 15,
        services: vec![GenesisService {
            id: "anvil".into(),
            compute_units_per_relay: 10,
            difficulty_target_hex: None,
        }],
        applications: (0..args.apps)
            .map(|i| GenesisApplication {
                key_hex: key_hex(&format!("localnet-app-{i}")),
                stake_upokt: 1_000_000_000,
                services: vec!["anvil".into()],
                delegate_to: if args.gateways == 0 {
                    vec![]
                } else {
                    vec![i % args.gateways]
                },
            })
            .collect(),
        gateways: (0..args.gateways)
            .map(|i| GenesisGateway {
                key_hex: key_hex(&format!("localnet-gateway-{i}")),
                stake_upokt: 1_000_000_000,
            })
            .collect(),
        suppliers: (0..args.suppliers)
            .map(|i| GenesisSupplier {
                key_hex: key_hex(&format!("localnet-supplier-{i}")),
                stake_upokt: 1_000_000_000,
                balance_upokt: 1_000_000_000,
                services: vec![GenesisSupplierService {
                    service_id: "anvil".into(),
                    url: relay_url.to_string(),
                }],
            })
            .collect(),
    }
}

async fn serve(router: axum::Router) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok((format!("http://{addr}"), task))
}

/// The relayer configuration of the demo network: the `anvil` service with a `jsonrpc` backend (the default,
/// for POSTed relays) and a `grpc` one (`rpc-type: 1`; the demo backend serves `demo.Echo` on its HTTP port, given
/// as a bare `host:port` as the Go relayer's configs have it), eager validation, a 10 s backend timeout, no relay
/// meter; relay log and claim timing (`transaction.*`) as the defaults, which the miner's engine runs with too.
fn relayer_config(backend: &BackendHandle) -> anyhow::Result<Config> {
    let backends = [("jsonrpc", backend.http_url()), ("grpc", backend.addr().to_string())]
        .into_iter()
        .map(|(kind, url)| {
            (
                kind.to_string(),
                BackendConfig {
                    url,
                    ..Default::default()
                },
            )
        })
        .collect();
    let config = Config {
        default_validation_mode: ValidationMode::Eager,
        default_request_timeout_seconds: 10,
        services: [(
            "anvil".to_string(),
            ServiceConfig {
                default_backend: Some("jsonrpc".into()),
                backends,
                ..Default::default()
            },
        )]
        .into(),
        relay_meter: RelayMeterConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let issues = config.validate();
    anyhow::ensure!(issues.is_empty(), "relayer configuration: {issues:?}");
    Ok(config)
}

#[derive(Default)]
struct LoadStats {
    sent: AtomicU64,
    served: AtomicU64,
    grpc_served: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// Relays per (supplier, session id).
type PerSession = BTreeMap<(String, String), u64>;

/// Relays in the simulator's accepted claims per (supplier, session id), settled or not: each claim root's
/// relay count (spec §4).
fn claimed_counts(chain: &SimChain) -> PerSession {
    // `state()` holds the simulator's lock: copy what is needed and release it.
    let state = chain.state();
    state
        .claims
        .iter()
        .chain(state.settled.iter())
        .map(|((session, supplier), entry)| {
            let count = crate::smst::hash::root_sum_count(&entry.claim.root_hash).map_or(0, |(_, count)| count);
            ((supplier.clone(), session.clone()), count)
        })
        .collect()
}

/// What a `localnet` run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalnetSummary {
    /// Relays sent.
    pub sent: u64,
    /// Relays served (signed answers), gRPC ones included.
    pub served: u64,
    /// gRPC relays served.
    pub grpc_served: u64,
    /// Relays refused by the relay miner or failed (no answer).
    pub refused: u64,
    /// Relays in accepted claims.
    pub claimed: u64,
    /// Served relays missing from the accepted claims of their (supplier, session).
    pub unclaimed: u64,
    /// Claims and proofs the chain rejected.
    pub rejected: usize,
    /// Claims expired (their reward lost).
    pub expired: usize,
    /// Accepted claims not settled when the run ended.
    pub unsettled: usize,
    /// Every check held: every served relay claimed, no relay claimed beyond those served but for requests that
    /// got no answer, every claim settled, nothing rejected, expired or lost, at least one claim accepted. The
    /// exit status is 0 only then.
    pub ok: bool,
}

/// Runs the local network; returns the exit code: 0 when every check held ([`LocalnetSummary::ok`]).
pub async fn run(args: LocalnetArgs) -> anyhow::Result<i32> {
    let summary = run_with_summary(args).await?;
    Ok(if summary.ok { 0 } else { 1 })
}

/// Runs the local network; returns what it saw.
pub async fn run_with_summary(args: LocalnetArgs) -> anyhow::Result<LocalnetSummary> {
    let started = Instant::now();
    // Relayer listener first: the suppliers' staked endpoint is its URL.
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_url = format!("http://{}", relay_listener.local_addr()?);
    let genesis = demo_genesis(&args, &relay_url);
    let chain = SimChain::new(genesis.clone()).context("genesis")?;
    let (grpc_url, _grpc) = serve(crate::sim::chain::router(chain.clone()).into_axum()).await?;
    // CometBFT RPC: the miner reads claim settlements from `block_results`.
    let comet_rpc = crate::sim::comet::serve(
        Arc::new(chain.clone()),
        "127.0.0.1:0".parse()?,
        crate::sim::comet::ServerConfig::default(),
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let blocks = tokio::spawn({
        let chain = chain.clone();
        let rx = stop_rx.clone();
        async move { chain.run_blocks(stopped(rx)).await }
    });
    let backend = crate::sim::backend::DemoBackend::spawn(crate::sim::backend::BackendConfig::default()).await?;
    let backend_url = backend.http_url();

    let data_dir = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            (dir.clone(), None)
        }
        None => {
            let tmp = tempfile::tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let redb =
        storage::redb::RedbBackend::open(storage::redb::RedbConfig::new(data_dir.0.join("relay-miner.redb"))).await?;
    let store = redb.storage();
    let client = Arc::new(ChainClient::new(&grpc_url, Duration::from_secs(5))?);
    let telemetry = crate::telemetry::Telemetry::new()?;
    let keys: HashMap<String, k256::ecdsa::SigningKey> = genesis
        .suppliers
        .iter()
        .map(|s| actor(&s.key_hex).map(|(k, addr, _)| (addr, k)))
        .collect::<Result<_, _>>()?;

    // Height watch shared by the relayer (timing checks).
    let (height_tx, height_rx) = tokio::sync::watch::channel(client.tip().await?.height);
    tokio::spawn({
        let client = Arc::clone(&client);
        async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(50));
            loop {
                ticker.tick().await;
                if let Ok(block) = client.tip().await {
                    client.invalidate_applications();
                    let _ = height_tx.send_if_modified(|h| {
                        let changed = block.height > *h;
                        *h = (*h).max(block.height);
                        changed
                    });
                }
            }
        }
    });
    let relayer = Arc::new(Relayer::from_config(
        &relayer_config(&backend)?,
        Arc::clone(&client),
        crate::keys::Keyring::new(keys.clone().into_iter().collect()),
        &store,
        height_rx,
        &telemetry,
    )?);
    let relayer_task = tokio::spawn(async move {
        let limits = crate::relayer::ServerLimits::default();
        relayer.serve(relay_listener, limits, std::future::pending()).await;
    });
    let miner = Miner::new(
        Arc::clone(&client),
        store.clone(),
        crate::keys::Keyring::new(keys.clone().into_iter().collect()),
        MinerConfig {
            chain_id: genesis.chain_id.clone(),
            gas_price: "0.000001upokt".into(),
            max_gas_price: crate::config::DEFAULT_MAX_GAS_PRICE.into(),
            gas_adjustment: 1.7,
            gas_limit: 0,
            tx_ttl_secs: 120,
            max_tx_bytes: crate::config::DEFAULT_MAX_TX_BYTES as usize,
            unordered: true,
            tick: Duration::from_millis(50),
            ingest_every: crate::miner::driver::INGEST_EVERY_EMBEDDED,
            consumer: format!("miner-localnet-{}", std::process::id()),
            instance: format!("miner-localnet-{}", std::process::id()),
            lease: Duration::from_secs(10),
            engine: Default::default(),
        },
    )
    .with_settlements_from(crate::chain::comet::CometClient::new(&comet_rpc.url())?)
    .with_claim_policy(crate::config::SkipUnprofitableClaims::default());
    let miner_stats = miner.stats();
    let miner_task =
        crate::miner::runtime::MinerRuntime::spawn(miner.run(telemetry.heartbeat("miner"), stopped(stop_rx.clone())))?;

    println!(
        "localnet: chain gRPC {grpc_url}, relayer {relay_url}, backend {backend_url}, storage {}",
        data_dir.0.display()
    );
    // Load: every application sends through its gateway to each supplier, for `sessions` sessions.
    let params = chain.state().shared.clone();
    let first_height = chain.height();
    let first = SessionWindows::new(&params, first_height)?;
    let last_session_end = first.end + (args.sessions - 1).max(0) * params.num_blocks_per_session as i64;
    let load = LoadStats::default();
    let mut served = PerSession::new();
    let generator = crate::loadgen::LoadGen::new(&genesis, Arc::clone(&client), &relay_url, "anvil")?;
    let interval = Duration::from_micros(1_000_000 / args.rate.max(1));
    let mut ticker = tokio::time::interval(interval);
    let mut n: u64 = 0;
    let mut last_report = Instant::now();
    loop {
        ticker.tick().await;
        // The height the relay is sent at, checked after the tick: no relay of a session after the last one
        // (whose settlement the run would not wait for).
        let height = chain.height();
        if height > last_session_end {
            break;
        }
        n += 1;
        load.sent.fetch_add(1, AtomicOrdering::Relaxed);
        let grpc = goes_grpc(n, args.grpc_share);
        let outcome = if grpc {
            generator.send_grpc(n, height).await
        } else {
            generator.send(n, height).await
        };
        match outcome {
            Outcome::Served {
                supplier, session_id, ..
            } => {
                load.served.fetch_add(1, AtomicOrdering::Relaxed);
                if grpc {
                    load.grpc_served.fetch_add(1, AtomicOrdering::Relaxed);
                }
                *served.entry((supplier, session_id)).or_default() += 1;
            }
            Outcome::Refused(reason) => {
                tracing::debug!(reason, grpc, "relay refused");
                load.refused.fetch_add(1, AtomicOrdering::Relaxed);
            }
            Outcome::Failed(reason) => {
                tracing::warn!(reason, grpc, "relay request failed");
                load.refused.fetch_add(1, AtomicOrdering::Relaxed);
                load.failed.fetch_add(1, AtomicOrdering::Relaxed);
            }
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            println!(
                "height {:>3}  relays sent {:>5} served {:>5} (gRPC {:>4}) refused {:>3}  mined {:>5}  claims sent {:>2}  proofs sent {:>2}",
                chain.height(),
                load.sent.load(AtomicOrdering::Relaxed),
                load.served.load(AtomicOrdering::Relaxed),
                load.grpc_served.load(AtomicOrdering::Relaxed),
                load.refused.load(AtomicOrdering::Relaxed),
                miner_stats.relays_ingested.load(AtomicOrdering::Relaxed),
                miner_stats.claims_sent.load(AtomicOrdering::Relaxed),
                miner_stats.proofs_sent.load(AtomicOrdering::Relaxed),
            );
        }
    }
    // Wait until the last loaded session is settled on the simulator (bounded).
    let last = SessionWindows::new(&params, last_session_end)?;
    let deadline = Instant::now()
        + Duration::from_millis(args.block_time_ms * (last.proof_close - chain.height() + 20).max(20) as u64);
    while chain.height() <= last.proof_close + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(args.block_time_ms)).await;
    }
    let summary = summarize(&chain, &load, &served, &miner_stats, started);
    if args.keep_running {
        println!("keeping the network up (Ctrl-C to stop): relayer {relay_url}, chain gRPC {grpc_url}");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(true);
    let _ = blocks.await;
    miner_task.join().await;
    relayer_task.abort();
    let _ = backend.shutdown().await;
    drop(data_dir);
    Ok(summary)
}

/// Checks the run against the simulator's records and prints the summary: every served relay (`served`) in an
/// accepted claim of its (supplier, session), no more claimed than served beyond the requests that got no answer,
/// every accepted claim settled, no claim or proof rejected, no claim expired, no session lost.
fn summarize(
    chain: &SimChain,
    load: &LoadStats,
    served: &PerSession,
    miner_stats: &crate::miner::driver::MinerStats,
    started: Instant,
) -> LocalnetSummary {
    let records = chain.records();
    let settlements = chain.settlements();
    let claims_ok = records
        .iter()
        .filter(|r| r.kind == "claim" && r.rejected.is_none())
        .count();
    let proofs_ok = records
        .iter()
        .filter(|r| r.kind == "proof" && r.rejected.is_none())
        .count();
    let rejections: Vec<_> = records.iter().filter(|r| r.rejected.is_some()).collect();
    let earned: u128 = settlements
        .iter()
        .filter_map(|(_, _, s)| if let Settlement::Settled(v) = s { Some(*v) } else { None })
        .sum();
    let expired: Vec<_> = settlements
        .iter()
        .filter(|(_, _, s)| matches!(s, Settlement::Expired(_)))
        .collect();
    let claimed = claimed_counts(chain);
    // Accepted claims the chain has not settled yet (settled ones leave `claims`).
    let unsettled = chain.state().claims.len();
    let short: Vec<_> = served
        .iter()
        .filter_map(|(key, &n)| {
            let c = claimed.get(key).copied().unwrap_or(0);
            (c < n).then_some((key, n, c))
        })
        .collect();
    let unclaimed: u64 = short.iter().map(|(_, n, c)| n - c).sum();
    let claimed_total: u64 = claimed.values().sum();
    let served_total = load.served.load(AtomicOrdering::Relaxed);
    // Claimed relays beyond those served: only requests that got no answer may be (committed, answer lost).
    let beyond = (claimed_total + unclaimed).saturating_sub(served_total);
    let failed = load.failed.load(AtomicOrdering::Relaxed);
    println!(
        "\n== localnet summary ({:.1?}, final height {}) ==",
        started.elapsed(),
        chain.height()
    );
    println!(
        "relays: sent {}, served {served_total} (gRPC {}), refused {}",
        load.sent.load(AtomicOrdering::Relaxed),
        load.grpc_served.load(AtomicOrdering::Relaxed),
        load.refused.load(AtomicOrdering::Relaxed)
    );
    println!(
        "relays mined into tries: {}",
        miner_stats.relays_ingested.load(AtomicOrdering::Relaxed)
    );
    println!(
        "served relays in accepted claims: {} of {served_total}, unclaimed {unclaimed}, claimed beyond served {beyond} \
         ({failed} requests unanswered)",
        served_total - unclaimed
    );
    for ((supplier, session), n, c) in &short {
        println!("  unclaimed: {supplier} in {session} served {n}, claimed {c}");
    }
    println!(
        "sessions: claimed on chain {}, proofs required {}, discarded (no relays) {}, lost {}",
        claims_ok,
        miner_stats.proofs_required.load(AtomicOrdering::Relaxed),
        miner_stats.sessions_discarded.load(AtomicOrdering::Relaxed),
        miner_stats.sessions_lost.load(AtomicOrdering::Relaxed)
    );
    println!(
        "chain: claims accepted {claims_ok}, proofs accepted {proofs_ok}, rejected {}",
        rejections.len()
    );
    for r in &rejections {
        println!(
            "  rejected {} of {} in {}: {}",
            r.kind,
            r.supplier,
            r.session_id,
            r.rejected.as_deref().unwrap_or_default()
        );
    }
    println!(
        "settled claims {}, uPOKT earned {earned}, expired {} (uPOKT lost), not settled yet {unsettled}",
        settlements.len() - expired.len(),
        expired.len()
    );
    for (session, supplier, outcome) in &expired {
        println!("  expired {supplier} in {session}: {outcome:?}");
    }
    let ok = rejections.is_empty()
        && expired.is_empty()
        && claims_ok > 0
        && unsettled == 0
        && unclaimed == 0
        && beyond <= failed
        && miner_stats.sessions_lost.load(AtomicOrdering::Relaxed) == 0;
    println!("result: {}", if ok { "OK" } else { "FAILED" });
    LocalnetSummary {
        sent: load.sent.load(AtomicOrdering::Relaxed),
        served: served_total,
        grpc_served: load.grpc_served.load(AtomicOrdering::Relaxed),
        refused: load.refused.load(AtomicOrdering::Relaxed),
        claimed: claimed_total,
        unclaimed,
        rejected: rejections.len(),
        expired: expired.len(),
        unsettled,
        ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grpc_share_is_that_share_of_relays_spread_over_apps_and_suppliers() {
        let grpc: Vec<u64> = (1..=4000).filter(|n| goes_grpc(*n, 0.25)).collect();
        assert!((900..=1100).contains(&grpc.len()), "{} of 4000", grpc.len());
        // The load generator picks the app as n mod apps and the supplier from n / apps: every pair gets some.
        for (apps, suppliers) in [(2u64, 2u64), (3, 2), (2, 3)] {
            for app in 0..apps {
                for supplier in 0..suppliers {
                    assert!(
                        grpc.iter()
                            .any(|n| n % apps == app && (n / apps) % suppliers == supplier),
                        "app {app} of {apps}, supplier {supplier} of {suppliers}"
                    );
                }
            }
        }
        assert!((1..=4000).all(|n| !goes_grpc(n, 0.0)));
        assert!((1..=4000).all(|n| goes_grpc(n, 1.0)));
    }

    #[test]
    fn a_share_is_between_0_and_1() {
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(parse_share("0"), Ok(0.0));
        assert_eq!(parse_share("1"), Ok(1.0));
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("-0.1").is_err());
        assert!(parse_share("a quarter").is_err());
    }
}
