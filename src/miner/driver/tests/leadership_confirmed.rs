//! The leadership confirmed right before a submission: a claim whose deadline passed meanwhile, or decided by a
//! miner deposed before or while its tx was built, is not sent.

use super::*;

/// Confirming the leadership right before a submission can take blocks (a raft commit waits out a partition).
/// A claim whose deadline passed meanwhile is not sent: included after its window it would be refused and cost
/// its fee. The engine takes it as a send that never left, so the session is lost as `claim_window_missed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_deadline_passed_while_the_leadership_was_confirmed_is_not_sent() {
    let (c, miner) = Confirming::new().await;
    // The claim's confirmation is held while the chain passes the claim deadline (close − 1 block of buffer).
    let mut miner = c
        .step_holding_the_confirmation(miner, async |c: &Confirming| {
            while c.f.chain.height() < c.schedule.claim_close {
                c.f.chain.produce_block();
            }
        })
        .await;
    // Not broadcast after its deadline, and counted as not sent because of it, not as a node's refusal.
    c.assert_decided_but_not_sent(&miner, "deadline_passed");
    // Lost once the chain said "no claim" at two heights past the window (`SessionRecord::claim_absent_at`).
    for _ in 0..2 {
        c.f.chain.produce_block();
        miner.step().await.unwrap();
    }
    c.no_claim_on_chain();
    let text = c.telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "claim_window_missed"),
        Some(5)
    );
    assert!(miner.engine.session(&c.f.key).is_none(), "pruned and forgotten");
}

/// A miner that lost its leadership between deciding and sending sends nothing, and says so in its own error
/// reason (`not_leader`: routine in a cluster) instead of as a node's refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_decided_by_a_miner_that_lost_its_leadership_is_not_sent_and_counted_as_not_leader() {
    let (c, miner) = Confirming::new().await;
    let token = miner.leader_token.expect("the miner leads");
    let miner = c
        .step_holding_the_confirmation(miner, async move |c: &Confirming| {
            // Another instance takes over while the confirmation waits.
            c.hand_the_leadership_to_b(token).await;
        })
        .await;
    c.assert_decided_but_not_sent(&miner, "not_leader");
    c.no_claim_on_chain();
}

/// The leadership confirmed at the start of a submission holds only for a moment; building the tx (account,
/// block, simulation) takes longer. A miner deposed in between sends nothing: the leadership is confirmed once
/// more right before the tx leaves, and the send counts as `not_leader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_deposed_while_its_tx_was_being_built_does_not_send_it() {
    let (c, miner) = Confirming::new().await;
    let token = miner.leader_token.expect("the miner leads");
    let miner = c
        .step_holding_the_nth_confirmation(miner, 2, async move |c: &Confirming| {
            c.hand_the_leadership_to_b(token).await;
        })
        .await;
    c.assert_decided_but_not_sent(&miner, "not_leader");
    c.no_claim_on_chain();
}
