//! Relay-append throughput through a 3-node raft cluster on 127.0.0.1 (real nodes, temp dirs, fsync on).
//!
//! Pattern of the relayer: many concurrent callers, each appending one relay (or a small batch) and waiting for
//! its acknowledgement; the backend group-commits them into raft entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raft::{RaftConfig, RaftNode};
use storage::MinedRelay;

const TOKEN: &str = "bench";

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<RaftNode>,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let cfg = RaftConfig::new(
            id,
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join(format!("n{id}")),
            TOKEN,
        );
        nodes.push(RaftNode::start(cfg).await.unwrap());
    }
    let members: BTreeMap<_, _> = nodes.iter().map(|n| (n.id(), n.node_info())).collect();
    nodes[0].initialize(members).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().any(|n| n.is_leader()) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Cluster { _dir: dir, nodes }
}

fn relay(task: usize, n: u64) -> MinedRelay {
    MinedRelay {
        supplier: format!("pokt1supplier{}", task % 4),
        session_id: "session-1".into(),
        session_end_height: 100,
        relay_hash: n.to_be_bytes().repeat(4),
        payload: vec![7u8; 512],
    }
}

/// `tasks` callers each append `per_task` single relays, sequentially per caller.
async fn run(storage: &storage::Storage, tasks: usize, per_task: u64) {
    let mut hs = Vec::new();
    for t in 0..tasks {
        let log = storage.relay_log.clone();
        hs.push(tokio::spawn(async move {
            for n in 0..per_task {
                log.append(vec![relay(t, n)]).await.unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let cl = rt.block_on(cluster());
    let leader = cl.nodes.iter().find(|n| n.is_leader()).unwrap();
    let follower = cl.nodes.iter().find(|n| !n.is_leader()).unwrap();
    let mut g = c.benchmark_group("raft_append_3_nodes");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, node, tasks) in [
        ("leader_1_caller", leader, 1usize),
        ("leader_64_callers", leader, 64),
        ("follower_64_callers", follower, 64),
    ] {
        let per_task = if tasks == 1 { 256 } else { (4096 / tasks as u64).max(1) };
        g.throughput(Throughput::Elements(tasks as u64 * per_task));
        let storage = node.storage();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        run(&storage, tasks, per_task).await;
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
    rt.block_on(async {
        for n in cl.nodes {
            n.shutdown().await;
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
