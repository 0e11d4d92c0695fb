//! A batch a node refuses because of one of its messages is sent again without it, that message alone (module
//! `submit::refusal`; message by message when the refusal names none): the good sessions' claims land at the same
//! block and only the bad session is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message as _;

use super::*;

/// `relays` whose entries name `not_an_application` (an address that is no application's) as their session's
/// application: the claim built from them carries that header, and the chain refuses it wherever it runs
/// (poktroll `CreateClaim` hydrates the header's session: "application ... not found", §6.1). (A wrong
/// `compute_units_per_relay` no longer makes a bad claim: the miner weighs every relay with the chain's value.)
pub(super) fn unhydratable(relays: Vec<MinedRelay>, not_an_application: &str) -> Vec<MinedRelay> {
    relays
        .into_iter()
        .map(|mut relay| {
            let mut message = MinedRelayMessage::decode(relay.payload.as_slice()).unwrap();
            message.application_address = not_an_application.to_owned();
            relay.payload = message.encode_to_vec();
            relay
        })
        .collect()
}

/// One supplier with three sessions (three applications) due at the same height; the third one's relays name
/// no application in their header ([`unhydratable`]), so the chain refuses its claim (poktroll `CreateClaim`,
/// §6.1) wherever it runs: the one-tx batch of the three claims is refused at Simulate naming that message's index. Sent again
/// without it (the two good claims in one tx, the bad one alone), the two good claims are included at the next
/// block; the bad one is refused on its own (before the mempool, no fee), tried again each block until its
/// window's deadline, and lost as `claim_not_included` (a node answered it, no block has it): only its 4 relays
/// are counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_one_claim_lands_the_others_and_loses_only_that_one() {
    let f = fixture_on(genesis_with_apps(&["app2", "app3"])).await;
    let (good, good_key) = app_session(&f, "app2").await;
    let (bad, bad_key) = app_session(&f, "app3").await;

    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    plain
        .relay_log
        .append(relays(&f.supplier, &good, 10..13))
        .await
        .unwrap();
    plain
        .relay_log
        .append(unhydratable(relays(&f.supplier, &bad, 20..24), &f.supplier))
        .await
        .unwrap();
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    for key in [&good_key, &bad_key] {
        assert_eq!(
            miner.engine.session(key).unwrap().schedule,
            schedule,
            "all due together"
        );
    }

    // The batch is refused for its third claim, as a real node's Simulate does.
    let simulations = f.chain.grpc_calls(crate::protocol::wire::method::SIMULATE);
    miner.step().await.unwrap();
    assert_eq!(
        f.chain.grpc_calls(crate::protocol::wire::method::SIMULATE) - simulations,
        3,
        "the batch, then the two good claims together, then the bad one alone"
    );
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key, &good_key]).await;
    assert_not_claimed(&f, &bad_key).await;
    assert!(
        f.chain.records().iter().all(|r| r.session_id != bad_key.session_id),
        "the bad claim never reached a block (no fee): {:?}",
        f.chain.records()
    );

    // The bad claim is refused at each block until its deadline, then lost; the others are not.
    let lost = || {
        counter(
            &telemetry.render_metrics(),
            "ha_miner_relays_lost_total",
            "claim_not_included",
        )
    };
    while lost().is_none() && f.chain.height() <= schedule.proof_close {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "claim_not_included"),
        Some(4),
        "{text}"
    );
    assert_eq!(
        counter(&text, "ha_miner_compute_units_lost_total", "claim_not_included"),
        Some(40)
    );
    let lost_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ha_miner_relays_lost_total{"))
        .collect();
    assert_eq!(lost_lines.len(), 1, "no other loss: {lost_lines:?}");
    assert!(counter(&text, "ha_miner_claim_errors_total", "refused").unwrap() >= 1);
    assert!(
        f.chain.records().iter().all(|r| r.rejected.is_none()),
        "no tx failed in a block: {:?}",
        f.chain.records()
    );
}

/// The Simulate refusals a cosmos-sdk v0.53.7 node answers, as the chain client shows them (`gRPC <method>:
/// Unknown: <status message>`), the status message being `"%v with gas used: '%d'"` (x/auth/tx/service.go): one
/// message's refusal names its index (baseapp `runMsgs`) or was metered no gas (a message's `ValidateBasic`, refused
/// before the ante handler, its `[file:line]` frame before the gas); an ante refusal after gas was metered (a
/// sequence mismatch) or the timeout height (before any gas) is the whole tx's. The pre-v0.50.3 ending ("With gas wanted: '0' and gas used: '0' ") is
/// still read.
#[test]
fn simulate_refusals_of_one_message_are_told_from_the_whole_txs() {
    use super::super::submit::simulate_refused_a_message as one_message;
    let simulate = "gRPC /cosmos.tx.v1beta1.Service/Simulate: Unknown: ";
    let validate_basic = format!(
        "{simulate}expecting root hash to be 48 bytes, got 47 bytes: invalid root hash \
         [cosmossdk.io/errors@v1.0.2/errors.go:155] with gas used: '0'"
    );
    assert!(one_message(&validate_basic), "{validate_basic}");
    let message_index = format!(
        "{simulate}failed to execute message; message index: 2: rpc error: code = InvalidArgument desc = claim \
         compute units: 28 is not equal to number of relays 4 * compute units per relay 10 for service anvil: \
         mismatch: claim compute units != number of relays * service compute units per relay \
         [cosmos/cosmos-sdk@v0.53.7/baseapp/baseapp.go:1097] with gas used: '131790'"
    );
    assert!(one_message(&message_index), "{message_index}");
    let sequence = format!(
        "{simulate}account sequence mismatch, expected 4, got 5: incorrect account sequence \
         [cosmos/cosmos-sdk@v0.53.7/x/auth/ante/sigverify.go:294] with gas used: '10'"
    );
    assert!(!one_message(&sequence), "{sequence}");
    // The timeout height is checked before any gas too, but it is the whole tx's.
    let timeout = format!(
        "{simulate}block height: 120, timeout height: 119: tx timeout height \
         [cosmos/cosmos-sdk@v0.53.7/x/auth/ante/basic.go:238] with gas used: '0'"
    );
    assert!(!one_message(&timeout), "{timeout}");
    let legacy =
        format!("{simulate}must contain at least one message: invalid request With gas wanted: '0' and gas used: '0' ");
    assert!(one_message(&legacy), "{legacy}");
}
