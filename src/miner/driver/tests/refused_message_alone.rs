//! A batch a node refuses at Simulate naming one of its messages ("message index: N", cosmos-sdk `runMsgs`) is
//! sent again without that message, which goes alone (module `submit::refusal`): the good claims land in one tx,
//! one fee, instead of one tx and one fee each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::rebroadcast::{balance, included_txs_of};
use super::split_on_refusal::unhydratable;
use super::*;
use crate::protocol::wire::method::{BROADCAST_TX, SIMULATE};

/// What one claim step of five sessions of one supplier, `bad` of them refused by the chain, cost and gave.
struct Sent {
    /// Simulate requests of the step (each tx built asks one).
    simulations: u64,
    /// Broadcasts of the step (txs that passed Simulate).
    broadcasts: u64,
    /// The supplier's txs in the next block, and the fees they paid.
    included: Vec<(String, u128)>,
    /// What the supplier's balance lost in that block.
    fees_paid: u128,
    good: Vec<SessionKey>,
    bad: Vec<SessionKey>,
    miner: Miner,
    telemetry: crate::telemetry::Telemetry,
    f: Fixture,
}

/// The fixture's session and applications `app2`..`app5`'s, all of one supplier and due together; the sessions
/// of the applications in `bad` carry relays whose header names no application ([`unhydratable`]), so the chain
/// refuses their claims wherever they run (poktroll `CreateClaim`, §6.1): at Simulate, naming the message's index
/// in the tx. One claim step is run, then a block produced.
async fn claim_five_sessions(bad: &[&str]) -> Sent {
    let apps = ["app2", "app3", "app4", "app5"];
    let f = fixture_on(genesis_with_apps(&apps)).await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let (mut good, mut bad_keys) = (vec![f.key.clone()], Vec::new());
    for (i, app) in apps.into_iter().enumerate() {
        let (header, key) = app_session(&f, app).await;
        let first = 10 * (i as u64 + 1);
        let mut mined = relays(&f.supplier, &header, first..first + 3);
        if bad.contains(&app) {
            mined = unhydratable(mined, &f.supplier);
            bad_keys.push(key);
        } else {
            good.push(key);
        }
        plain.relay_log.append(mined).await.unwrap();
    }
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    for key in good.iter().chain(&bad_keys) {
        assert_eq!(
            miner.engine.session(key).unwrap().schedule,
            schedule,
            "all due together"
        );
    }

    let (simulations, broadcasts) = (f.chain.grpc_calls(SIMULATE), f.chain.grpc_calls(BROADCAST_TX));
    let before = balance(&f.chain, &f.supplier);
    miner.step().await.unwrap();
    let simulations = f.chain.grpc_calls(SIMULATE) - simulations;
    let broadcasts = f.chain.grpc_calls(BROADCAST_TX) - broadcasts;
    f.chain.produce_block();
    Sent {
        simulations,
        broadcasts,
        included: included_txs_of(&f.chain, &f.supplier),
        fees_paid: before - balance(&f.chain, &f.supplier),
        good,
        bad: bad_keys,
        miner,
        telemetry,
        f,
    }
}

/// Every good claim is on chain, no bad one is, and each bad session took its own refusal (the send taken back,
/// counted once each as `refused`); no tx failed in its block.
async fn assert_good_landed_and_bad_refused(sent: &Sent) {
    let good: Vec<&SessionKey> = sent.good.iter().collect();
    assert_claimed(&sent.f, &good).await;
    for key in &sent.bad {
        assert_not_claimed(&sent.f, key).await;
        let record = sent.miner.engine.session(key).unwrap();
        assert_eq!(
            record.claim_sent_at,
            Vec::<i64>::new(),
            "the refused send is taken back"
        );
        assert!(record.claim_reached_node, "a node answered it");
    }
    assert_eq!(
        counter(
            &sent.telemetry.render_metrics(),
            "ha_miner_claim_errors_total",
            "refused"
        ),
        Some(sent.bad.len() as u64),
        "one refusal per bad session, none for the refused batches"
    );
    assert!(
        sent.f.chain.records().iter().all(|r| r.rejected.is_none()),
        "no message failed in a block: {:?}",
        sent.f.chain.records()
    );
}

/// Five claims, one refused: the batch (Simulate refused, naming it), then the four others as one tx and the bad
/// one alone (refused again at Simulate, no fee). One tx lands, one fee paid. Message by message it was five
/// more Simulates and four txs, four fees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_one_claim_sends_the_others_in_one_tx_and_that_one_alone() {
    let sent = claim_five_sessions(&["app4"]).await;
    assert_good_landed_and_bad_refused(&sent).await;
    assert_eq!(
        sent.included.len(),
        1,
        "one tx for the 4 good claims: {:?}",
        sent.included
    );
    assert_eq!(sent.fees_paid, sent.included[0].1, "one fee");
    assert_eq!(
        sent.simulations, 3,
        "the batch of 5, the 4 others, the bad one alone (message by message: 1 + 5)"
    );
    assert_eq!(sent.broadcasts, 1, "only the 4 others' tx passed Simulate");
    assert_eq!(
        sent.f.chain.records().len(),
        4,
        "the 4 good claims, in that tx: {:?}",
        sent.f.chain.records()
    );
}

/// Five claims, two refused: each refusal of the batch names one of them, so it is taken out and the rest sent
/// again; the three good claims land in one tx, and each bad one is refused alone. At most two Simulates per
/// message (here 5: the batches of 5, 4 and 3, then the two bad ones), one fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_two_claims_lands_the_others_in_one_tx() {
    let sent = claim_five_sessions(&["app2", "app5"]).await;
    assert_good_landed_and_bad_refused(&sent).await;
    assert_eq!(
        sent.included.len(),
        1,
        "one tx for the 3 good claims: {:?}",
        sent.included
    );
    assert_eq!(sent.fees_paid, sent.included[0].1, "one fee");
    assert!(sent.simulations <= 2 * 5, "bounded: {}", sent.simulations);
    assert_eq!(
        sent.simulations, 5,
        "the batches of 5, 4 and 3, then each bad one alone (message by message: 1 + 5)"
    );
    assert_eq!(sent.broadcasts, 1, "only the 3 good claims' tx passed Simulate");
    assert_eq!(sent.f.chain.records().len(), 3, "{:?}", sent.f.chain.records());
}
