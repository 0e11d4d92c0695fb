//! What one fenced session-record write costs on a real 3-node cluster (fsync on), by record size: the miner
//! stores every claim/proof tx in a record before it leaves (relay-miner `miner::driver::submit::kept`), one such
//! write per tx. A measurement, not a check: `cargo test -p relay-miner-raft --test record_cost -- --ignored
//! --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use storage::Fence;

const ELECTION: &str = "miner";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints latencies"]
async fn fenced_record_write_latency_by_size() {
    let c = Cluster::start(3).await;
    let plain = c.node(c.leader().await).storage();
    let token = plain
        .leadership
        .campaign(ELECTION, "m", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let miner = plain.fenced(Fence::new(ELECTION, "m", token));
    // A record alone (~0.7 KB of JSON), with a claim tx (~1 KB, base64), with a proof tx of 30 KB and with one at
    // the default `transaction.max_tx_bytes` (900 KiB).
    for (label, size) in [
        ("record", 700),
        ("record + claim tx", 700 + 1_400),
        ("record + 30 KB proof tx", 700 + 40_000),
        ("record + 900 KiB proof tx", 700 + 1_228_800),
    ] {
        let mut took = Vec::new();
        let mut failed = 0;
        for i in 0..20 {
            let version = plain
                .sessions
                .get("pokt1s", label)
                .await
                .unwrap()
                .map_or(0, |r| r.version);
            let started = Instant::now();
            match miner
                .sessions
                .put("pokt1s", label, "claiming", vec![b'x'; size], version)
                .await
            {
                Ok(_) if i >= 5 => took.push(started.elapsed()),
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    println!("{label}: write {i} failed after {:?}: {e}", started.elapsed());
                }
            }
        }
        if took.is_empty() {
            println!("{label:>28} ({size:>9} B): every write failed");
            continue;
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{label:>28} ({size:>9} B): p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms, {failed} failed",
            ms(took[took.len() / 2]),
            ms(took[took.len() * 9 / 10]),
            ms(took[took.len() - 1])
        );
    }
    c.shutdown().await;
}
