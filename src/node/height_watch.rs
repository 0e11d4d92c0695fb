//! The chain height watch of the node: the latest height for the relayer's timing checks and the `chain`
//! readiness component, from the CometBFT block subscription (whose counters it registers on `/metrics`) or,
//! without CometBFT, from polling the gRPC tip.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chain::query::ChainClient;
use crate::telemetry::{Telemetry, TelemetryError};

/// Feeds the chain's latest height into a watch (relayer timing checks) and the `chain` readiness component.
/// New blocks come from the CometBFT new-block subscription (websocket, falling back to polling, gap-free) when
/// the node's RPC answers at start; otherwise the gRPC latest block is polled. The subscription's counters are
/// registered with `telemetry` ([`crate::chain::comet::subscribe::SubscriptionCollector`]); the loop beats
/// `ha_loop_heartbeat_timestamp_seconds{loop="block_watch"}` every `period`.
pub(super) fn spawn_height_watch(
    client: Arc<ChainClient>,
    comet: Option<crate::chain::comet::CometClient>,
    telemetry: Telemetry,
    initial: i64,
    period: Duration,
) -> Result<(watch::Receiver<i64>, JoinHandle<()>), TelemetryError> {
    let (tx, rx) = watch::channel(initial);
    let heartbeat = telemetry.heartbeat("block_watch");
    let poller = Arc::clone(&client);
    let advance = move |height: i64| {
        // What the chain client may cache (shared params up to the current session's end) follows the chain.
        client.observe_height(height);
        let changed = tx.send_if_modified(|h| {
            let changed = height > *h;
            *h = (*h).max(height);
            changed
        });
        if changed {
            // New block: application rings may have changed (delegations).
            client.invalidate_applications();
        }
    };
    let task = match comet {
        Some(comet) => {
            let mut blocks = comet.subscribe_blocks(crate::chain::comet::SubscribeConfig {
                start_after: Some(initial),
                ..Default::default()
            });
            telemetry.register(Box::new(crate::chain::comet::subscribe::SubscriptionCollector::new(
                Arc::clone(blocks.stats()),
            )?))?;
            tokio::spawn(async move {
                let mut beat = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        block = blocks.recv() => match block {
                            Some(block) => {
                                telemetry.set_ready("chain");
                                advance(block.height);
                            }
                            None => {
                                telemetry.set_not_ready("chain", "subscription_ended", "CometBFT block subscription ended");
                                return;
                            }
                        },
                        _ = beat.tick() => heartbeat.beat(),
                    }
                }
            })
        }
        None => tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                heartbeat.beat();
                // The tip (node status), not the latest block: a block with proofs is MBs, and this polls every
                // `period` whenever CometBFT is unreachable.
                match poller.tip().await {
                    Ok(tip) => {
                        telemetry.set_ready("chain");
                        advance(tip.height);
                    }
                    Err(e) => telemetry.set_not_ready("chain", "unreachable", &e.to_string()),
                }
            }
        }),
    };
    Ok((rx, task))
}

#[cfg(test)]
mod tests;
