//! Storage benches: redb relay-log append throughput and acknowledgement latency (p50/p99) with group commit at
//! batch sizes 1, 64 and 512 with concurrent appenders, and trie node batch writes.
//!
//! Besides criterion's timings, each append configuration first runs a fixed workload and prints one line with
//! relays/s and the p50/p99 latency of `append` (the time until the batch is durable and acknowledged).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storage::{MinedRelay, NodeBatch, NodeStore, RedbBackend, RedbConfig, RelayLog};

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

/// `APPENDERS` tasks each append `rounds` batches of `batch`; returns (elapsed, latencies).
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

fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = rt
        .block_on(RedbBackend::open(RedbConfig::new(dir.path().join("bench.redb"))))
        .unwrap();
    let log = backend.storage().relay_log;
    let mut group = c.benchmark_group("redb_append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for batch in [1usize, 64, 512] {
        let rounds = (8_192 / (batch * APPENDERS)).max(8);
        let (elapsed, mut lat) = rt.block_on(workload(log.clone(), batch, rounds));
        lat.sort();
        let relays = (APPENDERS * rounds * batch) as f64;
        println!(
            "redb append batch={batch:<3} appenders={APPENDERS}: {:>9.0} relays/s, ack latency p50 {:?} p99 {:?}",
            relays / elapsed.as_secs_f64(),
            pct(&lat, 0.50),
            pct(&lat, 0.99)
        );
        group.throughput(Throughput::Elements((APPENDERS * batch) as u64));
        group.bench_function(format!("batch_{batch}_x{APPENDERS}"), |b| {
            b.iter_custom(|iters| {
                let log = log.clone();
                rt.block_on(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += workload(log.clone(), batch, 1).await.0;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn trie_nodes(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = rt
        .block_on(RedbBackend::open(RedbConfig::new(dir.path().join("nodes.redb"))))
        .unwrap();
    let tries = backend.storage().tries;
    let mut group = c.benchmark_group("trie_node_batch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for nodes in [64usize, 1024] {
        group.throughput(Throughput::Elements(nodes as u64));
        let mut store = rt
            .block_on(tries.open("pokt1supplier", &format!("session-{nodes}")))
            .unwrap();
        let mut counter = 0u64;
        group.bench_function(format!("redb_{nodes}"), |b| {
            b.iter(|| {
                counter += 1;
                let puts = (0..nodes as u64)
                    .map(|i| {
                        let mut key = (counter * 1_000_000 + i).to_be_bytes().repeat(4);
                        key.reverse();
                        (key, vec![0x5a; 100])
                    })
                    .collect();
                store
                    .write_batch(NodeBatch {
                        puts,
                        deletes: Vec::new(),
                    })
                    .unwrap();
            })
        });
        let mut mem = storage::MemoryNodeStore::new();
        group.bench_function(format!("memory_{nodes}"), |b| {
            b.iter(|| {
                counter += 1;
                let puts = (0..nodes as u64)
                    .map(|i| ((counter * 1_000_000 + i).to_be_bytes().to_vec(), vec![0x5a; 100]))
                    .collect();
                mem.write_batch(NodeBatch {
                    puts,
                    deletes: Vec::new(),
                })
                .unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(group, append, trie_nodes);
criterion_main!(group);
