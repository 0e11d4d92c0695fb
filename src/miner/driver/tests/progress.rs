//! A busy leader counts its progress (`MinerStats::steps_done`, read by the raft watchdog, `node::miner_watchdog`)
//! inside the phases that go through many sessions, not only between phases and commands: the watchdog's hung
//! bound does not grow with the sessions a miner serves, so a working miner must show progress every few chain
//! calls (each bounded by the query timeout), however many sessions one phase or command goes through.

use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::miner::driver::MinerStats;

/// Chain calls a working miner may make in a row without counting progress, whatever it serves (one tx's send
/// makes 9 here: tip, difficulty, params, balance, config, account, tip, simulate, broadcast). At the default 5 s
/// query timeout, a minute: well within the watchdog's 5-minute floor.
const CALLS_WITHOUT_PROGRESS: usize = 12;

/// Every gRPC request a miner makes, noted with the miner's `steps_done` at that moment: the longest run of
/// requests that saw the same value.
#[derive(Default)]
struct Calls {
    /// The observed miner's stats (requests before it is set are not noted).
    stats: OnceLock<Arc<MinerStats>>,
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    /// The `steps_done` the last request saw.
    done: u64,
    /// The methods of the requests in a row that saw it.
    current: Vec<String>,
    /// The longest such run.
    longest: Vec<String>,
}

impl Calls {
    fn note(&self, method: &str) {
        let Some(stats) = self.stats.get() else {
            return;
        };
        let done = stats.steps_done.load(Relaxed);
        let mut runs = self.runs.lock().unwrap();
        if done != runs.done {
            runs.done = done;
            runs.current.clear();
        }
        runs.current
            .push(method.rsplit('/').next().unwrap_or(method).to_owned());
        if runs.current.len() > runs.longest.len() {
            runs.longest = runs.current.clone();
        }
    }

    /// The longest run of requests made without progress (their methods).
    fn longest(&self) -> Vec<String> {
        self.runs.lock().unwrap().longest.clone()
    }
}

/// Serves `chain`'s gRPC on a free port for the test's runtime, every request noted in `calls`: a client of it.
async fn observed_grpc(chain: &SimChain, calls: Arc<Calls>) -> Arc<ChainClient> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(chain.clone()).into_axum().layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            calls.note(request.uri().path());
            next.run(request)
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Arc::new(ChainClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap())
}

/// A leader serving one supplier with 12 sessions whose proofs are all required goes through their claims, proofs
/// and settlements, its chain calls observed: it never makes more than [`CALLS_WITHOUT_PROGRESS`] of them in a row
/// without counting progress. Before, a command or phase going through the sessions counted once for all of
/// them: the proof tx's builds read each session's claim (12 calls) before its send (7 more), 19 in a row here
/// and more with every session, which a watchdog bound that does not grow with the sessions would take for a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_going_through_many_sessions_counts_progress_every_few_chain_calls() {
    let apps: Vec<String> = (1..12).map(|i| format!("app{i}")).collect();
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    let f = fixture_on(proving_genesis(&apps)).await;
    let calls = Arc::new(Calls::default());
    let client = observed_grpc(&f.chain, Arc::clone(&calls)).await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), f.keyring.clone(), config("a"))
        .with_settlements_from(f.comet.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    assert!(calls.stats.set(miner.stats()).is_ok());
    lead(&mut miner).await;
    let mut keys = Vec::new();
    for app in std::iter::once("app").chain(apps.iter().copied()) {
        let (header, key) = app_session(&f, app).await;
        let relays = signed_relays(&f, &header, app, 0..2, 100);
        plain.relay_log.append(relays).await.unwrap();
        keys.push(key);
    }
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&keys[0]).unwrap().schedule;
    while f.chain.height() <= schedule.settlement + 2 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    for key in &keys {
        assert_eq!(
            proof_status(&f.chain, key),
            Some(crate::protocol::wire::ClaimProofStatus::Validated as i32),
            "{}: {:?}",
            key.session_id,
            f.chain.records()
        );
    }
    let longest = calls.longest();
    assert!(
        longest.len() <= CALLS_WITHOUT_PROGRESS,
        "{} chain calls in a row without progress: {longest:?}",
        longest.len()
    );
}
