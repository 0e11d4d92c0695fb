//! Redis backend benches on a real local `redis-server` (spawned by the test harness): relay-log append
//! throughput and latency (p50/p99 until the pipelined batch is acknowledged by Redis) at batch sizes 1, 64 and
//! 512 with concurrent appenders, `ack` (XACK + XDEL) latency, the same append with `appendfsync always`, trie
//! node batch writes (one `MULTI`/`EXEC` per batch), and `trim_session` of one session in a long stream.
//!
//! Each configuration first runs a fixed workload and prints one summary line (relays/s, p50/p99), then
//! criterion times it. Run: `cargo bench -p relay-miner-storage --bench redis`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::{MinedRelay, NodeBatch, NodeStore, RelayLog};

const APPENDERS: usize = 16;

fn relay(n: u64) -> MinedRelay {
    MinedRelay {
        supplier: format!("pokt1supplier{}", n % 4),
        session_id: format!("session-{}", n % 3),
        session_end_height: 1000,
        relay_hash: n.to_be_bytes().repeat(4),
        payload: vec![0xab; 256],
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `APPENDERS` tasks each append `rounds` batches of `batch`; returns (elapsed, append latencies).
async fn workload(log: Arc<dyn RelayLog>, batch: usize, rounds: usize) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..APPENDERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(rounds);
            for r in 0..rounds {
                let base = ((t * rounds + r) * batch) as u64;
                let relays = (0..batch as u64).map(|i| relay(base + i)).collect();
                let t0 = Instant::now();
                log.append(relays).await.unwrap();
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (start.elapsed(), all)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(label: &str, batch: usize, rounds: usize, elapsed: Duration, mut lat: Vec<Duration>) {
    lat.sort();
    let relays = (APPENDERS * rounds * batch) as f64;
    println!(
        "{label} batch={batch:>3}: {:>9.0} relays/s, append p50 {:>8.1?} p99 {:>8.1?} ({} appenders)",
        relays / elapsed.as_secs_f64(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        APPENDERS
    );
}

fn connect(rt: &tokio::runtime::Runtime, server: &RedisServer) -> RedisBackend {
    rt.block_on(RedisBackend::connect(RedisConfig::new(server.url())))
        .unwrap()
}

fn flush(server: &RedisServer) {
    assert!(server.command(&["FLUSHALL"]).unwrap().starts_with("+OK"));
}

fn append_with(c: &mut Criterion, name: &str, options: ServerOptions, batches: &[(usize, usize)]) {
    let rt = runtime();
    let server = RedisServer::start(options).unwrap();
    let backend = connect(&rt, &server);
    let log = backend.storage().relay_log;
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_millis(500));
    for &(batch, rounds) in batches {
        let (elapsed, lat) = rt.block_on(workload(log.clone(), batch, rounds));
        summary(name, batch, rounds, elapsed, lat);
        flush(&server);
        group.throughput(Throughput::Elements((APPENDERS * batch) as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| rt.block_on(workload(log.clone(), batch, 1)));
        });
        flush(&server);
    }
    group.finish();
}

fn append(c: &mut Criterion) {
    append_with(
        c,
        "redis_append",
        ServerOptions::default(),
        &[(1, 500), (64, 50), (512, 10)],
    );
    append_with(
        c,
        "redis_append_fsync_always",
        ServerOptions::durable(),
        &[(1, 100), (64, 20), (512, 5)],
    );
}

/// Read + ack (XACK + XDEL, one Lua call per batch) latency.
fn ack(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let backend = connect(&rt, &server);
    let log = backend.storage().relay_log;
    let mut group = c.benchmark_group("redis_ack");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    for batch in [1usize, 64, 512] {
        let mut lat = Vec::new();
        rt.block_on(async {
            for r in 0..100u64 {
                let relays = (0..batch as u64)
                    .map(|i| MinedRelay {
                        supplier: "pokt1ack".into(),
                        ..relay(r * 1000 + i)
                    })
                    .collect();
                log.append(relays).await.unwrap();
                let got = log.read("pokt1ack", "miner-1", batch).await.unwrap();
                let ids: Vec<_> = got.iter().map(|e| e.id).collect();
                let t0 = Instant::now();
                assert_eq!(log.ack("pokt1ack", &ids).await.unwrap(), batch as u64);
                lat.push(t0.elapsed());
            }
        });
        lat.sort();
        println!(
            "redis_ack batch={batch:>3}: ack p50 {:>8.1?} p99 {:>8.1?}",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("read_ack_batch_{batch}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let relays = (0..batch as u64)
                        .map(|i| MinedRelay {
                            supplier: "pokt1ack".into(),
                            ..relay(i)
                        })
                        .collect();
                    log.append(relays).await.unwrap();
                    let got = log.read("pokt1ack", "miner-1", batch).await.unwrap();
                    let ids: Vec<_> = got.iter().map(|e| e.id).collect();
                    log.ack("pokt1ack", &ids).await.unwrap();
                })
            });
        });
    }
    group.finish();
}

/// Trie node batches: `nodes` puts of 32-byte keys and ~70-byte nodes per `write_batch`, from a blocking thread.
fn trie(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let backend = connect(&rt, &server);
    let mut group = c.benchmark_group("redis_trie_batch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    for nodes in [64usize, 512, 4096] {
        let mut store = rt.block_on(backend.open_trie("pokt1trie", "s1")).unwrap();
        let mut seq = 0u64;
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_function(format!("puts_{nodes}"), |b| {
            b.iter(|| {
                let puts = (0..nodes)
                    .map(|_| {
                        seq += 1;
                        (seq.to_be_bytes().repeat(4), vec![0x5a; 70])
                    })
                    .collect();
                // write_batch blocks: this bench thread is not a runtime worker.
                store
                    .write_batch(NodeBatch {
                        puts,
                        deletes: Vec::new(),
                    })
                    .unwrap();
            });
        });
    }
    group.finish();
}

/// `trim_session` of a 100-entry session in a stream that also holds 200,000 unacknowledged entries of 500
/// other sessions (`STORAGE_BENCH_TRIM_OTHERS` to change): a trim walks the whole stream (Go relayers' entries
/// have no session field to index), page by page in Lua, without fetching the entries.
fn trim_session(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let backend = connect(&rt, &server);
    let log = backend.storage().relay_log;
    let others: u64 = std::env::var("STORAGE_BENCH_TRIM_OTHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let trim_relay = |session: String, n: u64| MinedRelay {
        supplier: "pokt1trim".into(),
        session_id: session,
        ..relay(n)
    };
    rt.block_on(async {
        for start in (0..others).step_by(1000) {
            let batch = (start..(start + 1000).min(others))
                .map(|n| trim_relay(format!("other-{}", n % 500), n))
                .collect();
            log.append(batch).await.unwrap();
        }
    });
    let mut next = others;
    let mut trim_once = || {
        let batch = (next..next + 100).map(|n| trim_relay("doomed".into(), n)).collect();
        next += 100;
        rt.block_on(async {
            log.append(batch).await.unwrap();
            let t0 = Instant::now();
            assert_eq!(log.trim_session("pokt1trim", "doomed").await.unwrap(), 100);
            t0.elapsed()
        })
    };
    println!(
        "redis trim_session: 100 entries among {others} others: {:?}",
        trim_once()
    );
    let mut group = c.benchmark_group("redis_trim_session");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_millis(300));
    group.bench_function(format!("100_of_{others}"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| trim_once()).sum())
    });
    group.finish();
}

criterion_group!(benches, append, ack, trie, trim_session);
criterion_main!(benches);
