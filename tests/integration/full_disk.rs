//! A full disk under a running node (embedded mode, the default): `relay-miner run` with its data directory on
//! a small tmpfs, relays flowing, then a filler file takes every free byte. The relay WAL's preallocated
//! segments keep acknowledging relays until redb cannot grow (`ENOSPC`); then redb refuses every write, the
//! WAL every append, and relays are refused. Once the filler is removed the node's readiness loop reopens the
//! database in place (no restart): `/ready` is green, relays are served again, and
//! after the sessions settle every relay the node answered is in an accepted claim, those acknowledged just
//! before the disk filled included. While appends fail, most relays are refused before the backend serves
//! them. Needs root for the mount.

use std::time::{Duration, Instant};

use relay_miner::loadgen::Outcome;
use relay_miner::protocol::session::SessionWindows;
use storage::suite::fill;

use crate::support::claims::{Proofs, Served, assert_claims};
use crate::support::node::{Net, NetOpts, spawn_miner, start_net, wait_up};
use crate::support::{http_get_status, metric_sum, scrape, wait_height};

/// Sends relay `n + 1`; a served one is counted in `served`. Returns whether it was served.
async fn send(net: &Net, n: &mut u64, served: &mut Served) -> bool {
    *n += 1;
    match net.loadgen.send(*n, net.chain.height()).await {
        Outcome::Served {
            supplier, session_id, ..
        } => {
            *served.entry((supplier, session_id)).or_default() += 1;
            true
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_recording_and_once_freed_every_served_relay_is_claimed() {
    // 3 s blocks: the disk is full for a few seconds, well inside a claim window (4 blocks).
    let net = start_net(NetOpts {
        // Room for the database, the two preallocated 16 MiB WAL segments and some growth.
        data_tmpfs: Some("48M"),
        ..NetOpts::blocks_every(3000)
    })
    .await;
    let ready_url = net.metrics_url.replace("/metrics", "/ready");
    let mut miner = spawn_miner(&net.config);
    wait_up(&net).await;
    let mut served = Served::new();
    let mut n = 0u64;
    // Ready first (on a loaded host the node can answer /metrics well before it serves relays), then 20 served;
    // a failure names the node's last answer instead of only "none served".
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get_status(&ready_url).await, Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "node not ready: {:?}",
            http_get_status(&ready_url).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last = None;
    while served.values().sum::<u64>() < 20 {
        assert!(Instant::now() < deadline, "no relays served; last answer: {last:?}");
        n += 1;
        match net.loadgen.send(n, net.chain.height()).await {
            Outcome::Served {
                supplier, session_id, ..
            } => *served.entry((supplier, session_id)).or_default() += 1,
            other => {
                last = Some(other);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    // Fill the disk; relays go on until the node refuses them (the WAL's preallocated segments acknowledge a
    // few more first).
    let data = net.data.as_ref().unwrap();
    let filler = data.path().join("filler");
    fill(&filler);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut refused, mut in_a_row) = (0u64, 0u32);
    while in_a_row < 20 {
        assert!(Instant::now() < deadline, "relays still served with a full disk");
        if send(&net, &mut n, &mut served).await {
            in_a_row = 0;
        } else {
            refused += 1;
            in_a_row += 1;
        }
    }

    // Room again: the node reopens its database by itself (at its next readiness probe) and serves again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "not serving again after the disk was freed");
        let ok = send(&net, &mut n, &mut served).await;
        if !ok {
            refused += 1;
        }
        if ok && matches!(http_get_status(&ready_url).await, Some((200, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = scrape(&net.metrics_url).await;
    assert!(
        metric_sum(&metrics, "ha_storage_redb_reopens_total", &[("result", "ok")]) >= 1.0,
        "reopened in place, not restarted:\n{metrics}"
    );
    assert!(miner.try_wait().unwrap().is_none(), "the node kept running");
    // Most refused relays never reached the backend: after a failed append the relayer refuses new relays
    // for a second before serving them; only the ones let through after it fail their append again.
    let append_failures = metric_sum(&metrics, "ha_relayer_relay_log_append_failures_total", &[]);
    eprintln!("full disk: {refused} relays refused, {append_failures} of them after the backend served them");
    assert!(
        append_failures * 4.0 <= refused as f64,
        "{append_failures} failed appends for {refused} refused relays"
    );
    for _ in 0..20 {
        send(&net, &mut n, &mut served).await;
    }

    // Every served relay is claimed once its session settles; refused ones are in no claim.
    let params = net.chain.state().shared.clone();
    let windows = SessionWindows::new(&params, net.chain.height()).unwrap();
    wait_height(&net.chain, windows.settlement + 1, Duration::from_secs(90)).await;
    miner.kill().unwrap();
    miner.wait().unwrap();
    eprintln!(
        "full disk: {} relays served, {refused} refused while full",
        served.values().sum::<u64>()
    );
    assert_claims(&net.chain, &served, 0, Proofs::None);
}
