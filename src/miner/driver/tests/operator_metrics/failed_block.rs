//! The per-block gauges are observed in a block whose commands failed too, and
//! `ha_miner_session_block_processing_lag{supplier}` shows a supplier whose block work keeps failing.

use super::*;

/// A session whose proof-requirement check fails at every block (a record without its application: its
/// session cannot be read): each step fails, yet the height gauge follows the chain and the supplier's block
/// processing lag grows by one a block; once that session is gone, the lag is 0 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_follow_the_chain_through_failed_blocks_and_the_lag_shows_the_stuck_supplier() {
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = at_claim_open(fixture().await, config("a"), Vec::new()).await;
    let mut unchecked = miner.engine.session(&f.key).unwrap().clone();
    unchecked.key.session_id = "1".repeat(64);
    unchecked.application_address = String::new();
    unchecked.state = crate::miner::lifecycle::State::Claimed;
    unchecked.schedule.proof_open = schedule.claim_open + 1;
    let unchecked_key = unchecked.key.clone();
    miner.engine.restore(unchecked);
    let value = |name: &str, labels: &[(&str, &str)]| series(&telemetry.render_metrics(), name, labels);
    let supplier = [("supplier", f.supplier.as_str())];

    assert!(miner.step().await.is_err(), "the requirement check fails");
    let height = f.chain.height();
    assert_eq!(value("ha_miner_current_block_height", &[]), Some(height as f64));
    assert_eq!(
        value("ha_miner_sessions", &[("state", "claimed")]),
        Some(1.0),
        "the restored session is counted"
    );
    let first = value("ha_miner_session_block_processing_lag", &supplier).unwrap();
    assert!(first >= 1.0, "the failed block is not done: {first}");
    for more in 1..=2 {
        f.chain.produce_block();
        assert!(miner.step().await.is_err(), "failing at every block");
        assert_eq!(
            value("ha_miner_current_block_height", &[]),
            Some(f.chain.height() as f64),
            "the height follows the chain through a failed block"
        );
        assert_eq!(
            value("ha_miner_session_block_processing_lag", &supplier),
            Some(first + f64::from(more))
        );
    }

    miner.engine.forget(&unchecked_key);
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(value("ha_miner_session_block_processing_lag", &supplier), Some(0.0));
}
