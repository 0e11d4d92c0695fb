//! Relays/s through a 3-node raft cluster vs one embedded-storage process on the same machine (issue 8's bench),
//! a closed loop: `RAFT_BENCH_CONCURRENCY` requests always in flight (default 32), replaying relays ring-signed
//! before the clock starts, `RAFT_BENCH_RELAYS` per target (default 6000). Targets: the raft leader, a raft
//! follower (its relay-log appends are forwarded to the leader), one embedded process. Sessions are long (1,000
//! blocks of 1 s), so every relay of a run is in one session and no claim or proof competes for the CPU; the
//! leading miner still ingests every relay into its trie.
//!
//! Reported per target: relays/s, client latency p50/p99, CPU of the node processes (cores = CPU seconds per
//! wall second, from `/proc/<pid>/stat`) and of this process (load generator, simulator, backend), and the load
//! average before and after. Meaningful with release builds only:
//!
//! `cargo test --release --test integration raft_vs_embedded -- --ignored --nocapture`
//!
//! (`RELAY_MINER_BIN` runs another binary for the nodes.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use relay_miner::protocol::relay;
use relay_miner::sim::chain::actor;

use crate::support::cluster::{Cluster, Env, NodeOpts, SERVICE, node_config, start_env_with};
use crate::support::{CLUSTER_TESTS, free_port, http_get, metric_sum};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) of process `pid` (`self` for this one).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After `(comm)`: state is index 0, utime 11, stime 12 (fields 14 and 15 of proc(5)); USER_HZ = 100.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` encoded relay requests for the current sessions of every application, its suppliers round-robin, signed
/// on every core; `offset` keeps payloads (and so relay hashes) distinct between targets.
async fn presign(env: &Env, n: usize, offset: usize) -> Vec<bytes::Bytes> {
    let gateways: Vec<_> = env
        .genesis
        .gateways
        .iter()
        .map(|g| actor(&g.key_hex).unwrap())
        .collect();
    let mut senders = Vec::new();
    for app in env
        .genesis
        .applications
        .iter()
        .filter(|a| a.services.iter().any(|s| s == SERVICE))
    {
        let (key, address, pubkey) = actor(&app.key_hex).unwrap();
        let (signer, signer_pub) = match app.delegate_to.first().and_then(|g| gateways.get(*g)) {
            Some((k, _, p)) => (k.clone(), *p),
            None => (key, pubkey),
        };
        let session = env.client.session(&address, SERVICE, env.chain.height()).await.unwrap();
        let header = session.header.clone().unwrap();
        for supplier in &session.suppliers {
            senders.push((
                header.clone(),
                supplier.operator_address.clone(),
                signer.clone(),
                [pubkey, signer_pub],
            ));
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let senders = &senders;
    let mut chunks: Vec<Vec<(usize, bytes::Bytes)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let (header, supplier, signer, ring) = &senders[i % senders.len()];
                            let id = offset + i;
                            let body = format!(
                                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"eth_blockNumber\",\"params\":[]}}"
                            );
                            let request = relay_miner::loadgen::signed_relay_request(
                                header,
                                supplier,
                                "/",
                                body.into_bytes(),
                                signer,
                                ring,
                            )
                            .unwrap();
                            (i, bytes::Bytes::from(relay::encode_relay_request(&request)))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<(usize, bytes::Bytes)> = chunks.drain(..).flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, b)| b).collect()
}

/// One closed-loop run's numbers.
struct Run {
    target: String,
    served: u64,
    failed: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    node_cores: f64,
    self_cores: f64,
    load_before: String,
    load_after: String,
    mined: f64,
}

/// Sends every request in `relays` to `url` with `concurrency` in flight; `pids` are the node processes whose
/// CPU is measured, `metrics` their `/metrics` URLs (relays mined).
async fn closed_loop(
    target: &str,
    url: &str,
    relays: Vec<bytes::Bytes>,
    concurrency: usize,
    pids: &[u32],
    metrics: &[String],
) -> Run {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mined_before = mined(metrics).await;
    let relays = Arc::new(relays);
    let next = Arc::new(AtomicUsize::new(0));
    let load_before = loadavg();
    let cpu0: Vec<Duration> = pids.iter().map(|p| cpu_time(&p.to_string())).collect();
    let self0 = cpu_time("self");
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, relays, next, url) = (client.clone(), Arc::clone(&relays), Arc::clone(&next), url.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = relays.get(i) else { break };
                    let request = http::Request::post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(http_body_util::Full::new(body.clone()))
                        .unwrap();
                    let t = Instant::now();
                    let ok = match client.request(request).await {
                        Ok(resp) if resp.status().is_success() => match resp.into_body().collect().await {
                            Ok(b) => relay::decode_relay_response(&b.to_bytes(), relay::MAX_RELAY_MESSAGE_BYTES)
                                .is_ok_and(|r| r.relay_miner_error.is_none()),
                            Err(_) => false,
                        },
                        _ => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    let node_cpu: Duration = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| cpu_time(&p.to_string()).saturating_sub(*c0))
        .sum();
    let self_cpu = cpu_time("self").saturating_sub(self0);
    let load_after = loadavg();
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Run {
        target: target.to_string(),
        served: latencies.len() as u64,
        failed,
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        node_cores: node_cpu.as_secs_f64() / secs,
        self_cores: self_cpu.as_secs_f64() / secs,
        load_before,
        load_after,
        mined: mined(metrics).await - mined_before,
    }
}

/// Relays mined (appended to the relay log) by the relayers at `metrics`.
async fn mined(metrics: &[String]) -> f64 {
    let mut total = 0.0;
    for url in metrics {
        total += metric_sum(
            &http_get(url).await.unwrap_or_default(),
            "ha_relayer_relays_mined_total",
            &[],
        );
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release, prints relays/s"]
async fn raft_vs_embedded_relay_throughput() {
    let _one_cluster = CLUSTER_TESTS.lock().await;
    let relays = env_usize("RAFT_BENCH_RELAYS", 6000);
    let concurrency = env_usize("RAFT_BENCH_CONCURRENCY", 32);
    let binary = std::env::var_os("RELAY_MINER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relay-miner")));
    let env = start_env_with(1000, 0.0, |g| g.shared_params.num_blocks_per_session = 1000).await;
    let raft_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let peers: Vec<(u64, String)> = raft_ports.iter().map(|(i, p)| (*i, format!("127.0.0.1:{p}"))).collect();
    let mut cluster = Cluster::new(binary.clone());
    for id in 1..=3 {
        let opts = NodeOpts {
            level: "warn",
            peers: &peers,
            raft_extra: &[],
        };
        cluster.add(node_config(&env, id, raft_ports[&id], &opts));
    }
    let embedded = NodeOpts {
        level: "warn",
        peers: &[],
        raft_extra: &[],
    };
    cluster.add(node_config(&env, 9, free_port(), &embedded));
    cluster.start_many(&[1, 2, 3]).await;
    let (leader, _) = cluster.leader(0, Duration::from_secs(20)).await;
    cluster.miner_leads(leader, Duration::from_secs(20)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let pid = |c: &Cluster, id: u64| c.live.lock().unwrap()[&id].pid;
    let raft_pids: Vec<u32> = (1..=3).map(|id| pid(&cluster, id)).collect();
    let raft_metrics: Vec<String> = (1..=3).map(|id| cluster.proc(id).metrics_url.clone()).collect();
    let sign_started = Instant::now();
    let mut batches: Vec<Vec<bytes::Bytes>> = Vec::new();
    for k in 0..3 {
        batches.push(presign(&env, relays, k * relays).await);
    }
    println!(
        "pre-signed 3 × {relays} relays in {:.1?}; nodes run {}",
        sign_started.elapsed(),
        binary.display()
    );
    let mut runs = Vec::new();
    // A short warm-up of the leader (connections, caches), not measured.
    let warmup: Vec<bytes::Bytes> = batches[0].drain(..relays / 10).collect();
    let leader_url = cluster.proc(leader).relay_url.clone();
    closed_loop("warm-up", &leader_url, warmup, concurrency, &raft_pids, &raft_metrics).await;
    let batch = std::mem::take(&mut batches[0]);
    runs.push(
        closed_loop(
            "raft, sent to the leader",
            &leader_url,
            batch,
            concurrency,
            &raft_pids,
            &raft_metrics,
        )
        .await,
    );
    let follower_url = cluster.proc(follower).relay_url.clone();
    let batch = std::mem::take(&mut batches[1]);
    runs.push(
        closed_loop(
            "raft, sent to a follower",
            &follower_url,
            batch,
            concurrency,
            &raft_pids,
            &raft_metrics,
        )
        .await,
    );
    for id in 1..=3 {
        cluster.kill(id);
    }
    cluster.start(9).await;
    cluster.miner_leads(9, Duration::from_secs(20)).await;
    let embedded_url = cluster.proc(9).relay_url.clone();
    let embedded_metrics = vec![cluster.proc(9).metrics_url.clone()];
    let embedded_pid = vec![pid(&cluster, 9)];
    let warmup: Vec<bytes::Bytes> = batches[2].drain(..relays / 10).collect();
    closed_loop(
        "warm-up",
        &embedded_url,
        warmup,
        concurrency,
        &embedded_pid,
        &embedded_metrics,
    )
    .await;
    let batch = std::mem::take(&mut batches[2]);
    runs.push(
        closed_loop(
            "embedded, one process",
            &embedded_url,
            batch,
            concurrency,
            &embedded_pid,
            &embedded_metrics,
        )
        .await,
    );
    drop(cluster);
    println!(
        "| target | relays/s | p50 / p99 ms | node CPU (cores) | generator process CPU (cores) | failed | mined | load avg before → after |"
    );
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.1} / {:.1} | {:.2} | {:.2} | {} | {} | {} → {} |",
            r.target,
            r.served as f64 / r.secs,
            r.p50_ms,
            r.p99_ms,
            r.node_cores,
            r.self_cores,
            r.failed,
            r.mined,
            r.load_before,
            r.load_after
        );
    }
    let rates: Vec<u64> = runs.iter().map(|r| (r.served as f64 / r.secs) as u64).collect();
    println!("relays/s (leader, follower, embedded) {rates:?} with {concurrency} in flight");
    for r in &runs {
        assert_eq!(r.failed, 0, "{}: failed requests", r.target);
    }
}
