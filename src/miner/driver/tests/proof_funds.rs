//! A proof tx near an empty balance carries only the proofs the balance pays (module `submit::funds`): Simulate,
//! run with a 1-upokt fee, takes a batch the balance pays only without its real fee, and the batch would fail in
//! its block, every proof in it missed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// The sessions whose proofs the signed tx `bytes` carries, in its order.
pub(super) fn proof_sessions(bytes: &[u8]) -> Vec<String> {
    use crate::protocol::wire;
    let raw = crate::chain::tx::TxRaw::decode(bytes).unwrap();
    let body = crate::chain::tx::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    body.messages
        .iter()
        .filter(|m| m.type_url == wire::MSG_SUBMIT_PROOF_TYPE_URL)
        .map(|m| {
            wire::MsgSubmitProof::decode(m.value.as_slice())
                .unwrap()
                .session_header
                .unwrap()
                .session_id
        })
        .collect()
}

/// Two sessions of one supplier, both proofs required, worth 4 and 2 relays. Once the claims are on chain the
/// balance is set to 2 proof submission fees + 2 upokt: Simulate (1-upokt fee) takes both proofs, but the real fee
/// of their tx (`0.001upokt` per gas, some hundreds of upokt) leaves less than 2 fees, so that tx would fail in its
/// block at the second proof, the first with it. Instead one tx leaves at `proof_open` with the most valuable
/// proof alone; it lands. The other is held back (ERROR, `ha_miner_proof_errors_total{reason=
/// "insufficient_funds"}`) and, the balance never topped up, is never sent: no supplier tx fails in a block.
/// Without the check the two-proof tx fails in its block, its fee paid and both proofs missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_paying_one_of_two_proofs_after_the_real_fee_lands_that_one() {
    one_of_two_proofs_paid(true).await;
}

/// The same with ordered txs (signed inside the sequencer: the tx not sent consumes no sequence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_proof_tx_the_balance_cannot_pay_in_full_lands_the_proof_it_pays() {
    one_of_two_proofs_paid(false).await;
}

/// The scenario of [`a_balance_paying_one_of_two_proofs_after_the_real_fee_lands_that_one`], with `unordered` txs
/// or not.
async fn one_of_two_proofs_paid(unordered: bool) {
    const FEE: u64 = 1_000_000;
    let mut g = proving_genesis(&["app2"]);
    g.proof_params.proof_submission_fee_upokt = FEE;
    let f = fixture_on(g).await;
    // Enough for both claims' proof fees until the claims are on chain (module `afford` holds claims back else).
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = u128::from(FEE) * 10;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let config = MinerConfig {
        gas_price: "0.001upokt".into(),
        unordered,
        ..config("a")
    };
    let miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config)
        .with_settlements_from(f.comet.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    // The engine hands them over in the order of their ids: the least valuable first.
    let (
        Leading {
            f,
            mut miner,
            telemetry,
            schedule,
            ..
        },
        keys,
    ) = two_proofs_due(f, plain, telemetry, miner, [2, 4]).await;
    let [cheap, valuable] = &keys;
    let chain = &f.chain;
    let balance = u128::from(FEE) * 2 + 2;
    chain.state().accounts.get_mut(&f.supplier).unwrap().balance = balance;

    chain.produce_block();
    miner.step().await.unwrap();
    let mempool = chain.state().mempool.clone();
    let sent: Vec<Vec<String>> = mempool.iter().map(|tx| proof_sessions(tx)).collect();
    assert_eq!(
        sent,
        vec![vec![valuable.session_id.clone()]],
        "one tx, the most valuable proof alone"
    );
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_proof_errors_total", "insufficient_funds"),
        Some(1),
        "{text}"
    );

    settle_with_no_failed_tx(chain, &mut miner, schedule.settlement).await;
    let status = |key: &SessionKey| proof_status(chain, key);
    let validated = Some(crate::protocol::wire::ClaimProofStatus::Validated as i32);
    assert_eq!(status(valuable), validated, "{:?}", chain.records());
    assert_ne!(status(cheap), validated, "{:?}", chain.records());
    let proof_txs: Vec<Vec<String>> = chain
        .state()
        .block_txs
        .values()
        .flatten()
        .map(|tx| proof_sessions(tx))
        .filter(|sessions| !sessions.is_empty())
        .collect();
    assert_eq!(
        proof_txs,
        vec![vec![valuable.session_id.clone()]],
        "one proof tx in a block"
    );
}
