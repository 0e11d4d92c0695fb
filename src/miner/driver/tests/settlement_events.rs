//! A claim settled before the miner looked it up is read from the settlement events.

use super::*;

/// A claim the miner confirms only after its session settled (it was down from the block after its send until
/// past the settlement): poktroll paid the claim and deleted it, so the lookup finds no claim. The miner reads
/// the settlement from the block's events (CometBFT `block_results`) and counts the claim included and paid, not
/// lost. A miner that cannot read them counts the same session as `claim_not_included`, a false alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_settled_before_the_miner_looked_it_up_is_read_from_the_settlement_events_not_counted_lost() {
    for with_events in [true, false] {
        let Claimed {
            f,
            miner,
            telemetry,
            schedule,
            ..
        } = claimed(genesis()).await;
        let mut miner = if with_events {
            miner.with_settlements_from(f.comet.clone())
        } else {
            miner
        };
        assert_eq!(
            miner.engine.session(&f.key).unwrap().state,
            crate::miner::lifecycle::State::Claiming
        );
        assert_eq!(schedule.settlement, schedule.proof_close);
        while f.chain.height() <= schedule.settlement {
            f.chain.produce_block();
        }
        assert!(
            matches!(&f.chain.settlements()[..], [(_, _, crate::sim::chain::Settlement::Settled(v))] if *v > 0),
            "{:?}",
            f.chain.settlements()
        );
        assert!(
            f.client
                .claim_at(&f.key.session_id, &f.supplier, None)
                .await
                .unwrap()
                .is_none()
        );
        miner.step().await.unwrap();
        if !with_events {
            // No claim and no settlement read: lost only when said again at a later height
            // (`SessionRecord::claim_absent_at`).
            assert_eq!(
                miner.engine.session(&f.key).unwrap().state,
                crate::miner::lifecycle::State::Claiming
            );
            f.chain.produce_block();
            miner.step().await.unwrap();
        }
        // Decided and, as its settlement is past, pruned in the same step.
        assert!(miner.engine.session(&f.key).is_none(), "pruned and forgotten");
        let text = telemetry.render_metrics();
        let series = |name: &str, label: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains(label))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        };
        if with_events {
            assert_eq!(series("ha_miner_claim_inclusion_outcome_total", "included"), Some(1));
            assert!(
                series("ha_miner_upokt_claimed_total", "anvil").is_some_and(|v| v > 0),
                "{text}"
            );
            assert!(!text.contains("ha_miner_upokt_lost_total{"), "{text}");
        } else {
            assert_eq!(
                counter(&text, "ha_miner_relays_lost_total", "claim_not_included"),
                Some(5)
            );
        }
    }
}

/// The same with a CometBFT endpoint lagging the gRPC node the miner follows (often other infrastructure): its
/// "must be less than or equal to the current blockchain height" for the settlement block is waited out, not
/// counted among the few failed reads after which the session is judged without the events; once it serves the
/// block, the claim counts as included and paid. Judged after 3 blocks before: `claim_not_included`, a false
/// loss of a paid claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_comet_endpoint_is_waited_for_not_judged_without_the_settlement() {
    let Claimed {
        f,
        miner,
        telemetry,
        schedule,
        ..
    } = claimed(genesis()).await;
    let mut miner = miner.with_settlements_from(f.comet.clone());
    while f.chain.height() <= schedule.settlement {
        f.chain.produce_block();
    }
    assert!(f.client.claim(&f.key.session_id, &f.supplier).await.unwrap().is_none());
    let lag = super::super::lookup::SETTLEMENT_READ_BLOCKS + 4;
    f.chain.state().comet_lag_blocks = lag;
    // Past the settlement by more than SETTLEMENT_READ_BLOCKS while the endpoint does not have its block.
    for _ in 1..lag {
        let result = miner.step().await;
        // Past the first few blocks the wait is not a failure of the block's work (no WARN per block, no
        // processing lag): the lookup gives no answer and the engine asks again.
        if f.chain.height() > schedule.settlement + super::super::lookup::SETTLEMENT_READ_BLOCKS {
            result.unwrap();
        }
        assert_eq!(
            miner.engine.session(&f.key).map(|r| r.state),
            Some(crate::miner::lifecycle::State::Claiming),
            "at {}: waiting for the settlement block",
            f.chain.height()
        );
        f.chain.produce_block();
    }
    f.chain.state().comet_lag_blocks = 0;
    miner.step().await.unwrap();
    assert!(miner.engine.session(&f.key).is_none(), "decided and pruned");
    let text = telemetry.render_metrics();
    let included = text
        .lines()
        .find(|l| l.starts_with("ha_miner_claim_inclusion_outcome_total{") && l.contains("outcome=\"included\""));
    assert!(included.is_some_and(|l| l.ends_with(" 1")), "{text}");
    assert!(!text.contains("ha_miner_upokt_lost_total{"), "{text}");
}
