//! What the relayer answers before a relay is in the relay log, and what its shutdown drain
//! (`Relayer::drain_settlements`) does about it, over real sockets with the harness of [`crate::relayer`] (the
//! memory storage backend where a test stalls or refuses writes): without `relay_log.durable_ack` a relay counts as
//! mined only once its batch is appended, and the drain waits until every relay answered is in the log; the drain
//! is bounded, and what it gives up on is counted.

use std::sync::Arc;
use std::time::Duration;

use relay_miner::protocol::wire::method::APPLICATION;

use crate::relayer::{ChainFault, Net, eventually, metric, served_status};

/// A relayer without durable ack on the memory backend (whose writes a test can stall or refuse), its meter never
/// syncing on its own (its KV writes would be held too).
async fn lazy_ack_net() -> (Net, storage::MemoryBackend) {
    let backend = storage::MemoryBackend::new();
    let mut net = Net::new(1_000_000_000).await;
    net.storage = backend.storage();
    net.config.relay_log.durable_ack = false;
    net.config.relay_meter.sync_interval_ms = 3_600_000;
    (net, backend)
}

/// One relay sent to a fresh relayer without durable ack, its batch appended or refused by storage (`refuse`); once
/// the batch settled: the relays counted mined, recorded in the log, and dropped with a storage error.
async fn one_relay_without_durable_ack(refuse: bool) -> (u64, u64, u64) {
    let (net, backend) = lazy_ack_net().await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    if refuse {
        let down = storage::StorageError::Unavailable("test: storage down".into());
        backend.faults().refuse_writes(Some(down));
    }
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(
        (status, served_status(&net, &response)),
        (200, 200),
        "answered once queued"
    );
    // A batch is counted once its relays are settled.
    eventually("the relay's batch to be settled", || async {
        metric(&r.telemetry, "ha_relayer_relay_log_batch_size_count") == 1
    })
    .await;
    (
        metric(&r.telemetry, "ha_relayer_relays_mined_total{service_id=\"anvil\"}"),
        net.recorded().await,
        metric(
            &r.telemetry,
            "ha_relayer_relays_dropped_total{reason=\"storage_error\",service_id=\"anvil\"}",
        ),
    )
}

/// Without durable ack a relay is answered once it is queued for the relay log; it counts in
/// `ha_relayer_relays_mined_total` only once its batch is appended. Before, it counted when queued: a relay lost
/// with its failed batch was counted as mined (and as dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_ack_a_relay_counts_as_mined_only_once_its_batch_is_appended() {
    assert_eq!(one_relay_without_durable_ack(false).await, (1, 1, 0), "appended: mined");
    assert_eq!(
        one_relay_without_durable_ack(true).await,
        (0, 0, 1),
        "lost with its failed batch: dropped, not mined"
    );
}

/// Without durable ack a relay is answered once it is queued for the relay log; the shutdown's drain waits until
/// every such relay is appended (the miner's final ingest and the storage close come after it). Before, the drain
/// did not wait for the appender: relays answered but still queued or in a batch being appended were lost at the
/// stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_ack_the_drain_waits_until_every_answered_relay_is_in_the_log() {
    let (net, backend) = lazy_ack_net().await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    backend.faults().stall_writes();
    for id in 0..20 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!(
            (status, served_status(&net, &response)),
            (200, 200),
            "answered once queued"
        );
    }
    // The relays' appends are held (the first batch's at least; the others queued behind it or held too).
    tokio::time::timeout(Duration::from_secs(10), backend.faults().wait_stalled(1))
        .await
        .expect("an append is held");
    assert_eq!(net.recorded().await, 0);
    let mut drained = tokio::spawn({
        let relayer = Arc::clone(&r.relayer);
        async move { relayer.drain_settlements().await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut drained)
            .await
            .is_err(),
        "the drain returned while answered relays were held on their way to the log"
    );
    backend.faults().release_writes();
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the drain ends once the appends went through")
        .unwrap();
    assert_eq!(
        net.recorded().await,
        20,
        "every answered relay is in the log when the drain returns"
    );
}

/// The shutdown's drain syncs the relay meter a last time: the compute units charged since its last periodic sync
/// (an hour away here) reach the shared total in storage, which the other relayers on the same storage count.
/// Before, they were lost with the process: the others could serve the session past its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_syncs_the_relay_meter_a_last_time() {
    let mut net = Net::new(1_000_000_000).await;
    net.config.relay_meter.sync_interval_ms = 3_600_000;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    for id in 0..2 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!((status, served_status(&net, &response)), (200, 200));
    }
    let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
    assert_eq!(net.storage.kv.get(&key).await.unwrap(), None, "not synced yet");
    r.relayer.drain_settlements().await;
    assert_eq!(
        net.storage.kv.get(&key).await.unwrap(),
        Some(b"20".to_vec()),
        "two relays' compute units in the shared total"
    );
}

/// The drain is bounded: an optimistic relay answered whose settlement is still running at the limit (here its
/// application read hangs until the chain client's 5 s timeout; an unreachable node makes such reads retry for
/// up to 30 s) is abandoned then, counted in `ha_relayer_shutdown_abandoned_total{kind="optimistic"}` (and logged
/// at ERROR) and returned, so a stop fits its grace period. Before, the drain waited for it however long it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_gives_up_on_a_settlement_at_its_limit_and_counts_it() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("lazy").await;
    // The session's first relay is validated before serving and records the session.
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(status, 200);
    // A new block makes the application stale: the next relay's settlement reads it again, and the read hangs.
    net.chain_tap
        .set_fault(APPLICATION, Some(ChainFault::Delay(Duration::from_secs(600))));
    net.advance(0);
    let reads = net.chain_tap.calls(APPLICATION);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200), "served first");
    eventually("the settlement to read the chain", || async {
        net.chain_tap.calls(APPLICATION) > reads
    })
    .await;
    let limit = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let abandoned = tokio::time::timeout(Duration::from_secs(10), r.relayer.drain_settlements_within(limit))
        .await
        .expect("the drain ends at its limit");
    assert_eq!(
        abandoned,
        relay_miner::relayer::Abandoned {
            optimistic: 1,
            ..Default::default()
        },
        "what it abandoned is returned (the node exits with code 1 on it)"
    );
    let took = started.elapsed();
    assert!(
        (limit..Duration::from_secs(3)).contains(&took),
        "the drain ends at its limit: {took:?}"
    );
    assert_eq!(
        metric(&r.telemetry, "ha_relayer_shutdown_abandoned_total{kind=\"optimistic\"}"),
        1
    );
    assert_eq!(net.recorded().await, 1, "the abandoned relay is not in the log");
}
