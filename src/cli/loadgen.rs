//! `relay-miner loadgen`: plays gateways against a running relay miner (e.g. `relay-miner sim` + `relay-miner
//! run --config config/relay-miner.sim.yaml`): sends correctly ring-signed relays from the genesis' applications
//! at a fixed rate (up to `--concurrency` in flight) and prints how many were served, refused and failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::chain::query::ChainClient;
use crate::loadgen::{LoadGen, Outcome};
use crate::sim::chain::Genesis;

/// Flags of `relay-miner loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// The simulator's genesis (application and gateway keys).
    #[arg(long, default_value = "config/sim-genesis.yaml")]
    pub genesis: PathBuf,
    /// The chain's gRPC URL (sessions).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub grpc: String,
    /// The relay miner's relay URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub relay_url: String,
    /// Service id.
    #[arg(long, default_value = "anvil")]
    pub service: String,
    /// Relays per second.
    #[arg(long, default_value_t = 20)]
    pub rate: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,
    /// Relays in flight at most (the rate holds as long as rate × latency stays below it).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
}

/// Outcomes so far.
#[derive(Default)]
struct Counts {
    served: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn get(&self) -> (u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.served), get(&self.refused), get(&self.failed))
    }
}

/// Sends relays for `duration_secs`; exit 0 when at least one was served and none failed.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<i32> {
    let genesis = Genesis::load(&args.genesis).with_context(|| format!("genesis {}", args.genesis.display()))?;
    let chain = Arc::new(ChainClient::new(&args.grpc, Duration::from_secs(5))?);
    let generator = LoadGen::new(&genesis, Arc::clone(&chain), &args.relay_url, &args.service)?;
    let generator = Arc::new(generator);
    let counts = Arc::new(Counts::default());
    let concurrency = args.concurrency.max(1);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(concurrency as usize));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut n = 0u64;
    let mut height = chain.tip().await?.height;
    while started.elapsed() < Duration::from_secs(args.duration_secs) {
        ticker.tick().await;
        n += 1;
        // The current height picks the session; a stale one would target a session whose relays are over.
        height = chain.tip().await.map(|b| b.height).unwrap_or(height);
        let permit = Arc::clone(&in_flight).acquire_owned().await?;
        let (generator, task_counts) = (Arc::clone(&generator), Arc::clone(&counts));
        tokio::spawn(async move {
            let counts = task_counts;
            let counter = match generator.send(n, height).await {
                Outcome::Served { .. } => &counts.served,
                Outcome::Refused(reason) => {
                    tracing::warn!(reason, "relay refused");
                    &counts.refused
                }
                Outcome::Failed(reason) => {
                    tracing::warn!(reason, "relay failed");
                    &counts.failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let (served, refused, failed) = counts.get();
            println!("height {height:>5}  sent {n:>6}  served {served:>6}  refused {refused:>4}  failed {failed:>4}");
        }
    }
    // Every relay sent gets its answer counted.
    drop(in_flight.acquire_many(concurrency).await?);
    let (served, refused, failed) = counts.get();
    println!("done: sent {n}, served {served}, refused {refused}, failed {failed}");
    Ok(if served > 0 && failed == 0 { 0 } else { 1 })
}
