//! Relayer load bench (issue 6), a plain `main` (harness = false) that prints its numbers.
//!
//! Everything runs in this process on 127.0.0.1: the simulator chain (gRPC), the demo backend (`POST /v1/echo`,
//! answers the 1 KB body back), redb storage (durable group commit), the relayer built from a YAML config (eager
//! validation, relay meter on, durable ack), and a load generator of `CONCURRENCY` keep-alive connections replaying
//! pre-signed relays (ring n = 2 [app, gateway], every request signed on its own, 1 KB payload, base difficulty so
//! every relay is mined). Signing happens before the clock starts.
//!
//! Reported: relays/s, client latency p50/p99 through the relayer and straight to the backend (same generator,
//! same body), their difference as the latency the relayer adds, and process CPU per relay (getrusage-equivalent
//! from /proc/self/stat; it includes the load generator and the backend, so the direct-to-backend CPU per request
//! is printed too and subtracted).
//!
//! Env: `RELAYER_BENCH_RELAYS` (closed-loop relays, default 12000), `RELAYER_BENCH_CONCURRENCY` (default 32),
//! `RELAYER_BENCH_RATE` (open-loop rate, default 2000/s) for `RELAYER_BENCH_PACED_SECONDS` (default 4),
//! `RELAYER_BENCH_WORKERS` (tokio worker threads, default 2), `RELAYER_BENCH_DURABLE` (durable_ack, default 1),
//! `RELAYER_BENCH_REDB_WINDOW_US` (redb group-commit window, default 0 = the backend's default),
//! `RELAYER_BENCH_COOLDOWN_MS` (idle time before the open-loop runs, default 0), `RELAYER_BENCH_MINER` (1 = the
//! miner runs on its own runtime thread and ingests every relay into the session's trie, as in `relay-miner run`;
//! default 1), `RELAYER_BENCH_MINER_OWN_THREAD` (0 = the miner runs on the relayer's runtime instead; default 1),
//! `RELAYER_BENCH_MINER_TICK_MS` (the miner's tick, default 100 as `relay-miner run`), `RELAYER_BENCH_MINER_INGEST_MS`
//! (its ingest rounds between ticks, default 20 as `relay-miner run` on the embedded store; ≥ the tick: none),
//! `RELAYER_BENCH_BODY_BUDGET` (`relay_server.max_body_bytes_in_flight`; 0 = none; default: the config default),
//! `RELAYER_BENCH_FLOOR` (1 = a proxy doing none of the relayer's work but the same hops and the same durable
//! append stands in for the relayer: the latency floor of this topology on this host; default 0),
//! `RELAYER_BENCH_TRANSPORT` (`grpc`: gRPC relays, the gateway's `SendRelay` over HTTP/2 carrying a `demo.Echo/Echo`
//! call of the same 1 KB to the backend's gRPC service, the direct baseline that call over HTTP/2; default `http`).
//! The relayer's phase histograms print their mean too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use prost::Message as _;
use relay_miner::chain::query::ChainClient;
use relay_miner::config::Config;
use relay_miner::keys::Keyring;
use relay_miner::protocol::ring::{RawRingSignature, RingSignature};
use relay_miner::protocol::{relay, sha256};
use relay_miner::relayer::Relayer;
use relay_miner::relayer::grpc::encode_frame;
use relay_miner::sim::backend::{BackendConfig, DemoBackend};
use relay_miner::sim::chain::genesis::*;
use relay_miner::sim::chain::{SimChain, actor};
use relay_miner::telemetry::Telemetry;

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// The allocator of the `relay-miner` binary (src/main.rs), so the bench measures what production runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "relayer_load/floor.rs"]
mod floor;
#[path = "relayer_load/measure.rs"]
mod measure;

use floor::floor_proxy;
use measure::*;

fn main() {
    // As the binary does (src/main.rs): no transparent huge pages.
    relay_miner::process::disable_transparent_huge_pages().unwrap();
    let workers = env("RELAYER_BENCH_WORKERS", 2);
    let split = env("RELAYER_BENCH_SPLIT", 1) == 1;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if split {
            env("RELAYER_BENCH_LOAD_WORKERS", 1)
        } else {
            workers
        })
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    // With `split`, the relayer gets a runtime of its own (as in production, where gateways and the backend are
    // other processes): the load generator's and backend's tasks never queue in front of the relayer's.
    let relayer_runtime = split.then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("relayer")
            .enable_all()
            .build()
            .unwrap()
    });
    runtime.block_on(bench(workers, relayer_runtime.as_ref().map(|r| r.handle().clone())));
    if let Some(r) = relayer_runtime {
        r.shutdown_background();
    }
}

async fn bench(workers: usize, relayer_runtime: Option<tokio::runtime::Handle>) {
    let relays = env("RELAYER_BENCH_RELAYS", 12_000);
    let concurrency = env("RELAYER_BENCH_CONCURRENCY", 32);
    let rate = env("RELAYER_BENCH_RATE", 2_000);
    let paced_relays = rate * env("RELAYER_BENCH_PACED_SECONDS", 4);
    let warmup = (relays / 10).max(100);
    let genesis = Genesis {
        chain_id: "pocket-bench".into(),
        block_time_ms: 1000,
        shared_params: GenesisSharedParams {
            num_blocks_per_session: 10_000,
            ..Default::default()
        },
        proof_params: GenesisProofParams {
            proof_request_probability: 0.0,
            proof_requirement_threshold_upokt: u64::MAX,
            proof_missing_penalty_upokt: 1,
            proof_submission_fee_upokt: 1,
        },
        num_suppliers_per_session: 15,
        services: vec![GenesisService {
            id: "anvil".into(),
            compute_units_per_relay: 10,
            difficulty_target_hex: None,
        }],
        applications: vec![GenesisApplication {
            key_hex: key_hex("bench-app"),
            stake_upokt: u64::MAX / 4,
            services: vec!["anvil".into()],
            delegate_to: vec![0],
        }],
        gateways: vec![GenesisGateway {
            key_hex: key_hex("bench-gateway"),
            stake_upokt: 1_000_000_000,
        }],
        suppliers: vec![GenesisSupplier {
            key_hex: key_hex("bench-supplier"),
            stake_upokt: 1_000_000_000,
            balance_upokt: 1_000_000_000,
            services: vec![GenesisSupplierService {
                service_id: "anvil".into(),
                url: "http://127.0.0.1:1".into(),
            }],
        }],
    };
    let app = actor(&genesis.applications[0].key_hex).unwrap();
    let gateway = actor(&genesis.gateways[0].key_hex).unwrap();
    let supplier = actor(&genesis.suppliers[0].key_hex).unwrap();
    let chain = SimChain::new(genesis).unwrap();
    chain.produce_block();
    let serve = |router: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    };
    let grpc_url = serve(relay_miner::sim::chain::router(chain.clone()).into_axum()).await;
    let backend = DemoBackend::spawn(BackendConfig {
        max_connections: 4096,
        ..BackendConfig::default()
    })
    .await
    .unwrap();
    let backend_url = backend.http_url();
    let client = Arc::new(ChainClient::new(&grpc_url, Duration::from_secs(5)).unwrap());
    let session = client.session(&app.1, "anvil", chain.height()).await.unwrap();
    let header = session.header.clone().unwrap();

    // Pre-sign every relay on all cores (not measured).
    let body_1kb: Vec<u8> = {
        let mut b = br#"{"pad":""#.to_vec();
        b.resize(1024 - 2, b'x');
        b.extend_from_slice(b"\"}");
        b
    };
    let wire = match std::env::var("RELAYER_BENCH_TRANSPORT").as_deref() {
        Ok("grpc") => Wire::Grpc,
        Ok("http") | Err(_) => Wire::Http,
        Ok(other) => panic!("RELAYER_BENCH_TRANSPORT={other}: http or grpc"),
    };
    let sign_started = Instant::now();
    let total = relays + warmup + paced_relays;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<bytes::Bytes>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (header, body, supplier, app, gateway) = (&header, &body_1kb, &supplier.1, &app, &gateway);
                s.spawn(move || {
                    (t..total)
                        .step_by(threads)
                        .map(|i| {
                            let mut body = body.clone();
                            body[10..30].copy_from_slice(format!("{i:020}").as_bytes());
                            let ring = [app.2, gateway.2];
                            match wire {
                                Wire::Http => {
                                    let request = relay_miner::loadgen::signed_relay_request(
                                        header, supplier, "/v1/echo", body, &gateway.0, &ring,
                                    )
                                    .unwrap();
                                    bytes::Bytes::from(relay::encode_relay_request(&request))
                                }
                                Wire::Grpc => {
                                    let request = relay_miner::loadgen::signed_relay_request_with_payload(
                                        header,
                                        supplier,
                                        grpc_echo_call(body).encode_to_vec(),
                                        &gateway.0,
                                        &ring,
                                    )
                                    .unwrap();
                                    bytes::Bytes::from(encode_frame(&relay::encode_relay_request(&request)))
                                }
                            }
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Interleave the per-thread chunks back into one list.
    let mut signed = Vec::with_capacity(total);
    let mut iters: Vec<_> = chunks.into_iter().map(|c| c.into_iter()).collect();
    'outer: loop {
        for it in iters.iter_mut() {
            match it.next() {
                Some(b) => signed.push(b),
                None => break 'outer,
            }
        }
    }
    let sign_time = sign_started.elapsed();

    // Ring verification alone, same signatures, same conditions: the reference verifier and the relayer's
    // fixed-base one (after its tables are warm), interleaved.
    let samples: Vec<(Vec<u8>, [u8; 32])> = signed
        .iter()
        .take(1000)
        .map(|b| {
            // A gRPC body is the request behind its 5-byte message prefix.
            let b = if wire == Wire::Grpc { &b[5..] } else { &b[..] };
            let request = relay::decode_relay_request(b, relay::MAX_RELAY_MESSAGE_BYTES).unwrap();
            let signature = request.meta.as_ref().unwrap().signature.clone();
            (signature, relay::request_signable_hash(&request))
        })
        .collect();
    let fast = relay_miner::protocol::ring::fast::FastRing::default();
    for (sig, m) in samples.iter().take(20) {
        fast.verify(&RawRingSignature::parse(sig).unwrap(), m).unwrap();
    }
    let (mut reference_time, mut fast_time) = (Duration::ZERO, Duration::ZERO);
    for (sig, m) in &samples {
        let t = Instant::now();
        RingSignature::from_bytes(sig).unwrap().verify(m).unwrap();
        reference_time += t.elapsed();
        let t = Instant::now();
        fast.verify(&RawRingSignature::parse(sig).unwrap(), m).unwrap();
        fast_time += t.elapsed();
    }
    // The same with the caches cold (an 8 MiB sweep between verifications), as between relays on a busy box.
    let mut sweep = vec![0u8; 8 << 20];
    let mut cold_time = Duration::ZERO;
    for (i, (sig, m)) in samples.iter().enumerate().take(300) {
        for chunk in sweep.chunks_mut(64) {
            chunk[0] = chunk[0].wrapping_add(i as u8);
        }
        let t = Instant::now();
        fast.verify(&RawRingSignature::parse(sig).unwrap(), m).unwrap();
        cold_time += t.elapsed();
    }
    println!(
        "ring verify n=2 (decode + verify, {} samples): reference {:.0} µs, fixed-base tables {:.0} µs ({:.0} µs with cold caches)",
        samples.len(),
        reference_time.as_micros() as f64 / samples.len() as f64,
        fast_time.as_micros() as f64 / samples.len() as f64,
        cold_time.as_micros() as f64 / 300.0
    );

    let dir = tempfile::tempdir().unwrap();
    let mut redb_config = storage::redb::RedbConfig::new(dir.path().join("bench.redb"));
    redb_config.group_commit_window = Duration::from_micros(env("RELAYER_BENCH_REDB_WINDOW_US", 0) as u64);
    redb_config.relay_wal = env("RELAYER_BENCH_WAL", 1) == 1;
    if let Ok(kib) = std::env::var("RELAYER_BENCH_CHECKPOINT_KIB") {
        redb_config.wal_checkpoint_bytes = kib.parse::<u64>().unwrap() << 10;
        redb_config.wal_checkpoint_interval = Duration::from_secs(3600);
    }
    let redb = storage::redb::RedbBackend::open(redb_config).await.unwrap();
    let durable = env("RELAYER_BENCH_DURABLE", 1) == 1;
    let store = redb.storage();
    // `RELAYER_BENCH_BODY_BUDGET`: relay_server.max_body_bytes_in_flight (0 = no budget; default: the config's).
    let budget = std::env::var("RELAYER_BENCH_BODY_BUDGET")
        .map(|b| format!("relay_server: {{max_body_bytes_in_flight: {b}}}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "
services:
  anvil:
    validation_mode: eager
    backends:
      rest: {{url: {backend_url}}}
      grpc: {{url: {backend_url}}}
relay_meter: {{enabled: true}}
relay_log: {{durable_ack: {durable}}}
{budget}"
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let (_height_tx, height_rx) = tokio::sync::watch::channel(chain.height());
    let telemetry = Telemetry::new().unwrap();
    for collector in redb.wal_stats().map(|s| s.collectors()).unwrap_or_default() {
        telemetry.registry().register(collector).unwrap();
    }
    let keyring = Keyring::new([(supplier.1.clone(), supplier.0.clone())].into_iter().collect());
    // `RELAYER_BENCH_FLOOR=1`: instead of the relayer, a proxy that does none of its work (no decoding, no
    // validation, no metering, no signing) but the same hops: the request forwarded to the backend with a pooled
    // hyper client, then one durable append of the request and response bytes to the same relay log (so the miner
    // ingests it as a relay), then the answer. Its added latency is the floor this topology and host give any
    // relayer with durable ack.
    let floor = env("RELAYER_BENCH_FLOOR", 0) == 1;
    assert!(!floor || wire == Wire::Http, "RELAYER_BENCH_FLOOR has no gRPC proxy");
    let relayer_url = if floor {
        let start = floor_proxy(
            backend_url.clone(),
            store.clone(),
            supplier.1.clone(),
            header.clone(),
            durable,
        );
        match &relayer_runtime {
            Some(rt) => rt.spawn(start).await.unwrap(),
            None => start.await,
        }
    } else {
        let (store, telemetry) = (store.clone(), telemetry.clone());
        let start = async move {
            let client = Arc::new(ChainClient::new(&grpc_url, Duration::from_secs(5)).unwrap());
            let relayer =
                Arc::new(Relayer::from_config(&config, client, keyring, &store, height_rx, &telemetry).unwrap());
            // The relay server `relay-miner run` uses (timeouts, connection limit), default limits.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let limits = config.relay_server.limits();
            tokio::spawn(relayer.serve(listener, limits, std::future::pending()));
            url
        };
        match &relayer_runtime {
            Some(rt) => rt.spawn(start).await.unwrap(),
            None => start.await,
        }
    };
    if floor {
        println!("RELAYER_BENCH_FLOOR=1: a proxy doing none of the relayer's work stands in for the relayer");
    }

    // The miner, as `relay-miner run` has it: on its own runtime thread, ingesting the relay log into the session's
    // trie every 100 ms (sessions are 10,000 blocks long here, so it never claims during the bench).
    let with_miner = env("RELAYER_BENCH_MINER", 1) == 1;
    let miner_stats = if with_miner {
        let miner = relay_miner::miner::driver::Miner::new(
            Arc::clone(&client),
            store.clone(),
            Keyring::new([(supplier.1.clone(), supplier.0.clone())].into_iter().collect()),
            relay_miner::miner::driver::MinerConfig {
                chain_id: "pocket-bench".into(),
                gas_price: "0.000001upokt".into(),
                max_gas_price: relay_miner::config::DEFAULT_MAX_GAS_PRICE.into(),
                gas_adjustment: 1.7,
                gas_limit: 0,
                tx_ttl_secs: 120,
                max_tx_bytes: relay_miner::config::DEFAULT_MAX_TX_BYTES as usize,
                unordered: true,
                tick: Duration::from_millis(env("RELAYER_BENCH_MINER_TICK_MS", 100) as u64),
                ingest_every: Duration::from_millis(env(
                    "RELAYER_BENCH_MINER_INGEST_MS",
                    relay_miner::miner::driver::INGEST_EVERY_EMBEDDED.as_millis() as usize,
                ) as u64),
                consumer: "bench-miner".into(),
                instance: "bench-miner".into(),
                lease: Duration::from_secs(10),
                engine: Default::default(),
            },
        );
        let stats = miner.stats();
        let run = miner.run(telemetry.heartbeat("miner"), std::future::pending());
        // As `relay-miner run`: on its own runtime thread (`RELAYER_BENCH_MINER_OWN_THREAD=0` puts it on the
        // relayer's runtime instead).
        if env("RELAYER_BENCH_MINER_OWN_THREAD", 1) == 1 {
            std::mem::forget(relay_miner::miner::runtime::MinerRuntime::spawn(run).unwrap());
        } else {
            match &relayer_runtime {
                Some(rt) => drop(rt.spawn(run)),
                None => drop(tokio::spawn(run)),
            }
        }
        Some(stats)
    } else {
        None
    };
    let mined_so_far = || async {
        let backlog = store.relay_log.backlog(&supplier.1).await.unwrap();
        let ingested = miner_stats
            .as_ref()
            .map_or(0, |s| s.relays_ingested.load(Ordering::Relaxed));
        backlog.undelivered + backlog.pending + ingested
    };

    // Every connection the generator opened stays pooled: after a stall (more requests in flight than usual)
    // it must not close the extra ones and open new ones later (a gateway keeps its connections too), which
    // cost the relayer an accept, a connection task and a close each.
    // gRPC: HTTP/2 (cleartext, prior knowledge), as gateways call.
    // TCP_NODELAY, as gateways and the relayer's own clients set it: an HTTP/2 request is several small writes
    // (headers, data), which Nagle's algorithm would hold for the peer's delayed ACK (~40 ms).
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let http: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .http2_only(wire == Wire::Grpc)
        .build(connector);
    let (direct_url, relayer_url) = match wire {
        Wire::Http => (format!("{backend_url}/v1/echo"), relayer_url),
        Wire::Grpc => (
            format!("{backend_url}{}", relay_miner::sim::backend::grpc::ECHO_PATH),
            format!("{relayer_url}{}", relay_miner::relayer::grpc::SEND_RELAY_PATH),
        ),
    };

    // Throughput: closed loop, `concurrency` requests in flight; baseline straight to the backend first.
    let echo = |n: usize| -> Vec<bytes::Bytes> {
        let body = match wire {
            Wire::Http => body_1kb.clone(),
            Wire::Grpc => grpc_echo_call(body_1kb.clone()).body_bz,
        };
        (0..n).map(|_| bytes::Bytes::from(body.clone())).collect()
    };
    let direct = load(
        &http,
        wire,
        &direct_url,
        Arc::new(echo(relays + warmup)),
        concurrency,
        warmup,
    )
    .await;
    let paced_bodies = signed.split_off(relays + warmup);
    let signed_mib = (signed.iter().chain(&paced_bodies).map(|b| b.len()).sum::<usize>()) as f64 / (1 << 20) as f64;
    let memory_before = memory_mib();
    let through = load(&http, wire, &relayer_url, Arc::new(signed), concurrency, warmup).await;
    // Latency: open loop at `rate`, baseline first. `RELAYER_BENCH_COOLDOWN_MS` idles first (after signing and
    // the closed loop kept both cores busy for many seconds, a VM host may steal CPU for a while).
    let cooldown = Duration::from_millis(env("RELAYER_BENCH_COOLDOWN_MS", 0) as u64);
    if !cooldown.is_zero() {
        tokio::time::sleep(cooldown).await;
    }
    let direct_paced = paced(&http, wire, &direct_url, echo(paced_relays), rate).await;
    let phases_before = PHASES.map(|name| buckets(&telemetry, name));
    let means_before = PHASES.map(|name| sum_count(&telemetry, name));
    // Stall probes (with RELAYER_BENCH_TIMELINE): an OS thread and a task on each runtime sleep 1 ms in a loop
    // and record when they woke more than 1 ms late.
    let probe_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probes = std::env::var("RELAYER_BENCH_TIMELINE").ok().map(|dir| {
        let origin = Instant::now();
        let thread = {
            let stop = Arc::clone(&probe_stop);
            std::thread::spawn(move || {
                let mut late = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    std::thread::sleep(Duration::from_millis(1));
                    let over = t.elapsed().saturating_sub(Duration::from_millis(1));
                    if over > Duration::from_micros(500) {
                        late.push((t.duration_since(origin).as_micros(), over.as_micros()));
                    }
                }
                late
            })
        };
        let task = |stop: Arc<std::sync::atomic::AtomicBool>| async move {
            let mut late = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let over = t.elapsed().saturating_sub(Duration::from_millis(1));
                if over > Duration::from_micros(1500) {
                    late.push((t.duration_since(origin).as_micros(), over.as_micros()));
                }
            }
            late
        };
        let load_task = tokio::spawn(task(Arc::clone(&probe_stop)));
        let relayer_task = relayer_runtime
            .as_ref()
            .map(|rt| rt.spawn(task(Arc::clone(&probe_stop))));
        (dir, origin, thread, load_task, relayer_task)
    });
    // Markers on stderr so profilers (`perf stat -p`, `perf record`) can attach to this window.
    eprintln!("phase: open loop through relayer starts");
    let through_paced = paced(&http, wire, &relayer_url, paced_bodies, rate).await;
    eprintln!("phase: open loop through relayer ends");
    probe_stop.store(true, Ordering::Relaxed);
    if let Some((dir, origin, thread, load_task, relayer_task)) = probes {
        let mut out = format!("# origin {origin:?}\n");
        for (name, late) in [
            ("thread", thread.join().unwrap()),
            ("load-task", load_task.await.unwrap()),
            (
                "relayer-task",
                match relayer_task {
                    Some(t) => t.await.unwrap(),
                    None => Vec::new(),
                },
            ),
        ] {
            for (at, over) in late {
                out.push_str(&format!("{name},{at},{over}\n"));
            }
        }
        std::fs::write(format!("{dir}/stalls.csv"), out).unwrap();
    }
    let phases_after = PHASES.map(|name| buckets(&telemetry, name));
    let means_after = PHASES.map(|name| sum_count(&telemetry, name));
    let memory_after = memory_mib();
    // Without durable ack the last batch may still be in flight: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut mined = mined_so_far().await;
    while mined < total as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        mined = mined_so_far().await;
    }

    let per_sec = |r: &Run| r.latencies.len() as f64 / r.wall.as_secs_f64();
    let cpu_per = |r: &Run| r.cpu.as_micros() as f64 / r.latencies.len().max(1) as f64;
    let p = |r: &Run, q: f64| percentile(&r.latencies, q);
    println!(
        "relayer_load: pre-signed {total} relays in {sign_time:.1?}; {wire:?} relays; {threads} cores, {workers} tokio workers, durable_ack {durable}, redb group-commit window {:?}",
        Duration::from_micros(env("RELAYER_BENCH_REDB_WINDOW_US", 0) as u64)
    );
    println!("throughput (closed loop, {concurrency} in flight, {relays} measured after {warmup} warm-up):");
    println!(
        "  direct to backend: {:.0} req/s, p50 {:?}, p99 {:?}, CPU {:.0} µs/req",
        per_sec(&direct),
        p(&direct, 0.5),
        p(&direct, 0.99),
        cpu_per(&direct)
    );
    println!(
        "  through relayer:   {:.0} relays/s, p50 {:?}, p99 {:?}, CPU {:.0} µs/relay (whole process) ≈ {:.0} µs/relay relayer-only, {} failures",
        per_sec(&through),
        p(&through, 0.5),
        p(&through, 0.99),
        cpu_per(&through),
        cpu_per(&through) - cpu_per(&direct),
        through.failures
    );
    println!("latency (open loop at {rate}/s, {paced_relays} requests):");
    println!(
        "  direct to backend: {:.0} req/s, p50 {:?}, p99 {:?}",
        per_sec(&direct_paced),
        p(&direct_paced, 0.5),
        p(&direct_paced, 0.99)
    );
    println!(
        "  through relayer:   {:.0} relays/s, p50 {:?}, p99 {:?}, {} failures; CPU {:.0} µs/relay (whole process), {:.2} cores busy (direct: {:.2})",
        per_sec(&through_paced),
        p(&through_paced, 0.5),
        p(&through_paced, 0.99),
        through_paced.failures,
        cpu_per(&through_paced),
        through_paced.cpu.as_secs_f64() / through_paced.wall.as_secs_f64(),
        direct_paced.cpu.as_secs_f64() / direct_paced.wall.as_secs_f64()
    );
    println!(
        "  added by relayer:  p50 {:?}, p99 {:?}",
        p(&through_paced, 0.5).saturating_sub(p(&direct_paced, 0.5)),
        p(&through_paced, 0.99).saturating_sub(p(&direct_paced, 0.99))
    );
    println!("  relayer and relay WAL phases during the open-loop run (from their histograms; bucket upper bounds):");
    for (i, ((name, before), after)) in PHASES.iter().zip(&phases_before).zip(&phases_after).enumerate() {
        let diff: Vec<(f64, u64)> = after.iter().zip(before).map(|((le, a), (_, b))| (*le, a - b)).collect();
        let ((sum0, n0), (sum1, n1)) = (means_before[i], means_after[i]);
        let mean_us = if n1 > n0 {
            (sum1 - sum0) * 1e6 / (n1 - n0) as f64
        } else {
            0.0
        };
        println!(
            "    {name}: p50 ≤ {}, p99 ≤ {}, mean {mean_us:.0} µs",
            bucket_quantile(&diff, 0.5),
            bucket_quantile(&diff, 0.99)
        );
    }
    println!(
        "memory (whole process, the {signed_mib:.1} MiB of pre-signed requests included): RSS {:.1} MiB before the relayer's closed loop, {:.1} MiB after its open loop, peak {:.1} MiB",
        memory_before.0, memory_after.0, memory_after.1
    );
    println!(
        "relay log: {mined} of {total} relays mined{}",
        match &miner_stats {
            Some(s) => format!(
                " ({} ingested into the session's trie by the miner)",
                s.relays_ingested.load(Ordering::Relaxed)
            ),
            None => " (miner off)".into(),
        }
    );
}

/// A gRPC call of the demo backend's `demo.Echo/Echo` with `payload`, as a relay's `POKTHTTPRequest` carries it.
fn grpc_echo_call(payload: Vec<u8>) -> relay_miner::protocol::wire::PoktHttpRequest {
    let message = relay_miner::sim::backend::grpc::EchoRequest {
        message: String::new(),
        payload,
    };
    relay_miner::loadgen::grpc_call_payload(relay_miner::sim::backend::grpc::ECHO_PATH, &message.encode_to_vec())
}
