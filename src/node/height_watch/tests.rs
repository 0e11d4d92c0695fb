//! The height watch against the simulator's CometBFT RPC over a real socket: the block subscription's counters
//! are on the node's `/metrics` with the subscription's values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;
use crate::chain::comet::{BlockTime, CometClient};
use crate::sim::comet::{AcceptAll, BlockProducer, CometBackend, MemoryChain, MemoryChainConfig, ServerConfig, serve};

/// The value of the unlabelled series `name` in `text`.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_block_subscription_counters_are_on_the_metrics() {
    let chain = MemoryChain::new(
        MemoryChainConfig {
            chain_id: "sim-test".into(),
            genesis_time: BlockTime::new(1_700_000_000, 0),
            block_interval: Duration::from_millis(20),
            max_mempool_txs: 100,
            event_capacity: 1024,
        },
        Arc::new(AcceptAll),
    );
    let backend: Arc<dyn CometBackend> = chain.clone();
    let server = serve(backend, "127.0.0.1:0".parse().unwrap(), ServerConfig::default())
        .await
        .unwrap();
    let producer = BlockProducer::start(chain.clone());
    let telemetry = Telemetry::new().unwrap();
    // The gRPC client is not used while CometBFT feeds the watch (nothing listens there).
    let client = Arc::new(ChainClient::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap());
    let comet = CometClient::new(&server.url()).unwrap();
    let (mut height, task) =
        spawn_height_watch(client, Some(comet), telemetry.clone(), 0, Duration::from_millis(20)).unwrap();
    let reached = tokio::time::timeout(Duration::from_secs(15), height.wait_for(|h| *h >= 5))
        .await
        .expect("height 5 before the deadline")
        .map(|h| *h)
        .unwrap();
    task.abort();
    producer.stop().await;

    let text = telemetry.render_metrics();
    // Heights 1..=reached were handed over one by one, each a published block.
    let published = value(&text, "ha_cache_block_events_published_total").expect(&text);
    assert!(
        published >= reached as f64,
        "published {published} < height {reached}\n{text}"
    );
    let received = value(&text, "ha_cache_block_events_received_total").expect(&text);
    let fills = value(&text, "ha_block_subscription_fills_total").expect(&text);
    assert!(
        received + fills >= published,
        "every block came from an event or a fill\n{text}"
    );
    assert!(
        value(&text, "ha_block_subscription_tip_height").expect(&text) >= reached as f64,
        "{text}"
    );
    assert!(
        value(&text, "ha_block_subscription_heartbeat_timestamp_seconds").expect(&text) > 1.7e9,
        "{text}"
    );
    for series in [
        "ha_block_subscription_events_dropped_total{reason=\"duplicate\"}",
        "ha_block_subscription_events_dropped_total{reason=\"cache_full\"}",
        "ha_block_subscription_reconnects_total",
        "ha_block_subscription_connect_failures_total",
        "ha_block_subscription_rpc_errors_total",
        "ha_block_subscription_polls_total",
        "ha_block_subscription_websocket_connected",
    ] {
        assert!(value(&text, series).is_some(), "missing {series}\n{text}");
    }
    server.shutdown().await.unwrap();
}
