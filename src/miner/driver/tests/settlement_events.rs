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
