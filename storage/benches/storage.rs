//! Storage benches: redb relay-log append throughput and acknowledgement latency (p50/p99) with group commit at
//! batch sizes 1, 64 and 512 with concurrent appenders, the relay WAL on vs off with 1.5 KB relays, trie node
//! batch writes, and `trim_session` of one session in a large log of other sessions.
//!
//! Besides criterion's timings, each append configuration first runs a fixed workload and prints one line with
//! relays/s and the p50/p99 latency of `append` (the time until the batch is durable and acknowledged). The WAL
//! comparison also runs an open-loop load (appends of one relay started at a fixed rate, 2,000/s by default,
//! `STORAGE_BENCH_RATE` / `STORAGE_BENCH_SECS` to change) and prints the latency distribution and the CPU time
//! of the `redb-writer` and `redb-wal` threads per second of load. `STORAGE_BENCH_CKPT_MS` / `STORAGE_BENCH_CKPT_KB`
//! override the WAL checkpoint interval / bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
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

/// `APPENDERS` tasks each append `rounds` batches of `batch` relays made by `make`, back to back; returns
/// (elapsed, latencies).
async fn workload(
    log: Arc<dyn RelayLog>,
    batch: usize,
    rounds: usize,
    make: fn(u64) -> MinedRelay,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..APPENDERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(rounds);
            for r in 0..rounds {
                let base = ((t * rounds + r) * batch) as u64;
                let relays = (0..batch as u64).map(|i| make(base + i)).collect();
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
        let (elapsed, mut lat) = rt.block_on(workload(log.clone(), batch, rounds, relay));
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
                        total += workload(log.clone(), batch, 1, relay).await.0;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

/// A relay with a 1.5 KB payload (the size the relayer logs for typical JSON-RPC responses).
fn relay_1k5(n: u64) -> MinedRelay {
    MinedRelay {
        payload: vec![0xcd; 1500],
        ..relay(n)
    }
}

/// CPU time (user + system) per thread name of this process, from /proc (empty where unavailable).
fn thread_cpu() -> HashMap<String, Duration> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("stat")),
        ) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15 (clock ticks, 100/s).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        *out.entry(comm.trim().to_owned()).or_default() += Duration::from_millis(ticks * 10);
    }
    out
}

/// Starts one single-relay append every `1/rate` s for `secs` s from a pacing thread (open loop: a slow append
/// does not delay the next one); returns the latencies, each from its scheduled start to its acknowledgement.
fn open_loop(rt: &tokio::runtime::Runtime, log: Arc<dyn RelayLog>, rate: u64, secs: u64) -> Vec<Duration> {
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = rate * secs;
    let start = Instant::now() + Duration::from_millis(20);
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let log = log.clone();
        handles.push(rt.spawn(async move {
            log.append(vec![relay_1k5(1_000_000 + i)]).await.unwrap();
            due.elapsed()
        }));
    }
    rt.block_on(async move {
        let mut lat = Vec::with_capacity(handles.len());
        for h in handles {
            lat.push(h.await.unwrap());
        }
        lat
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn wal_vs_off(c: &mut Criterion) {
    let rt = runtime();
    let rate = env_u64("STORAGE_BENCH_RATE", 2_000);
    let secs = env_u64("STORAGE_BENCH_SECS", 5);
    let mut group = c.benchmark_group("redb_append_1k5");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RedbConfig::new(dir.path().join("wal.redb"));
        config.relay_wal = wal;
        if let Some(ms) = std::env::var("STORAGE_BENCH_CKPT_MS").ok().and_then(|v| v.parse().ok()) {
            config.wal_checkpoint_interval = Duration::from_millis(ms);
        }
        if let Some(kb) = std::env::var("STORAGE_BENCH_CKPT_KB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            config.wal_checkpoint_bytes = kb << 10;
        }
        let backend = rt.block_on(RedbBackend::open(config)).unwrap();
        let log = backend.storage().relay_log;
        let mode = if wal { "wal on " } else { "wal off" };
        // Warm up (file growth, first spare segment), then the closed loop.
        rt.block_on(workload(log.clone(), 1, 50, relay_1k5));
        let (elapsed, mut lat) = rt.block_on(workload(log.clone(), 1, 500, relay_1k5));
        lat.sort();
        println!(
            "redb append 1.5KB x1 {mode} closed loop, appenders={APPENDERS}: {:>7.0} relays/s, p50 {:?} p99 {:?}",
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(&lat, 0.50),
            pct(&lat, 0.99)
        );
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let mut lat = open_loop(&rt, log.clone(), rate, secs);
        let wall = t0.elapsed().as_secs_f64();
        let cpu1 = thread_cpu();
        lat.sort();
        let share = |name: &str| {
            let d = cpu1.get(name).copied().unwrap_or_default() - cpu0.get(name).copied().unwrap_or_default();
            100.0 * d.as_secs_f64() / wall
        };
        println!(
            "redb append 1.5KB x1 {mode} open loop {rate}/s for {secs}s: p50 {:?} p99 {:?} p99.9 {:?} max {:?}; \
             CPU redb-writer {:.0}% redb-wal {:.0}%",
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            lat[lat.len() - 1],
            share("redb-writer"),
            share("redb-wal")
        );
        group.throughput(Throughput::Elements(APPENDERS as u64));
        group.bench_function(if wal { "wal_on_x16" } else { "wal_off_x16" }, |b| {
            b.iter_custom(|iters| {
                let log = log.clone();
                rt.block_on(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += workload(log.clone(), 1, 1, relay_1k5).await.0;
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

/// The trimmed session's size, and the default number of other sessions' entries in the same supplier's log.
const TRIM_SESSION: u64 = 100;
const TRIM_OTHERS: u64 = 200_000;

fn trim_relay(session: String, n: u64) -> MinedRelay {
    MinedRelay {
        supplier: "pokt1trim".into(),
        session_id: session,
        session_end_height: 1000,
        relay_hash: n.to_be_bytes().repeat(4),
        payload: vec![0xab; 256],
    }
}

/// `trim_session` of a 100-entry session in a supplier log that also holds 200,000 entries of 500 other
/// sessions (`STORAGE_BENCH_TRIM_OTHERS` to change), relay WAL on and off. Before the criterion timing, one
/// line per mode: the trim's time, and the slowest of the one-relay appends made back to back while it ran
/// (with the WAL off an append is a writer transaction, queued behind the trim's; with it on the append is
/// acknowledged by the WAL, whose apply still waits for the writer).
fn trim_session(c: &mut Criterion) {
    let rt = runtime();
    let others = std::env::var("STORAGE_BENCH_TRIM_OTHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TRIM_OTHERS);
    let mut group = c.benchmark_group("trim_session");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for wal in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RedbConfig::new(dir.path().join("trim.redb"));
        config.relay_wal = wal;
        let backend = rt.block_on(RedbBackend::open(config)).unwrap();
        let log = backend.storage().relay_log;
        let mut next = 0u64;
        rt.block_on(async {
            while next < others {
                let batch = (next..(next + 1000).min(others))
                    .map(|n| trim_relay(format!("other-{}", n % 500), n))
                    .collect::<Vec<_>>();
                next += batch.len() as u64;
                log.append(batch).await.unwrap();
            }
        });
        let mut fill = |log: &Arc<dyn RelayLog>| {
            let batch = (next..next + TRIM_SESSION)
                .map(|n| trim_relay("doomed".into(), n))
                .collect::<Vec<_>>();
            next += TRIM_SESSION;
            rt.block_on(log.append(batch)).unwrap();
        };
        fill(&log);
        // Every relay-log call first waits for the WAL's applies: let the fill's finish outside the measurement.
        rt.block_on(log.read_pending("pokt1trim", "nobody", 1)).unwrap();
        let (trim, append) = rt.block_on(async {
            let trimmer = log.clone();
            let t0 = Instant::now();
            let trim = tokio::spawn(async move {
                let n = trimmer.trim_session("pokt1trim", "doomed").await.unwrap();
                (n, t0.elapsed())
            });
            // One-relay appends back to back while the trim runs: the slowest is what a relayer saw.
            let (mut appends, mut slowest) = (0u32, Duration::ZERO);
            while !trim.is_finished() || appends == 0 {
                let a0 = Instant::now();
                log.append(vec![trim_relay("live".into(), u64::MAX - u64::from(appends))])
                    .await
                    .unwrap();
                slowest = slowest.max(a0.elapsed());
                appends += 1;
            }
            let (n, trim) = trim.await.unwrap();
            assert_eq!(n, TRIM_SESSION);
            (trim, (appends, slowest))
        });
        println!(
            "redb trim_session wal={wal}: {TRIM_SESSION} entries among {others} others: trim {trim:?}; {} one-relay \
             appends during it, the slowest {:?}",
            append.0, append.1
        );
        group.bench_function(format!("redb_wal_{wal}_{TRIM_SESSION}_of_{others}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fill(&log);
                    let t0 = Instant::now();
                    let n = rt.block_on(log.trim_session("pokt1trim", "doomed")).unwrap();
                    total += t0.elapsed();
                    assert_eq!(n, TRIM_SESSION);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(group, append, wal_vs_off, trie_nodes, trim_session);
criterion_main!(group);
