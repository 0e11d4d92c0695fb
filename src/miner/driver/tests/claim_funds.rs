//! Claims the supplier's balance could not prove are held back, most valuable first (module `afford`): a claim
//! whose required proof is refused for funds expires unpaid and is slashed, so the balance backs the claims worth
//! most, and a held claim goes out at the first block after the operator topped the account up.

use super::*;
use crate::miner::lifecycle::TxKind;

/// Three sessions worth 10 (`high`), 5 (the fixture's own) and 2 (`low`) relays; the proof fee 400,000 upokt.
pub(super) struct ThreeSessions {
    pub f: Fixture,
    pub miner: Miner,
    pub telemetry: crate::telemetry::Telemetry,
    pub high: SessionKey,
    pub low: SessionKey,
}

async fn three_sessions_at_claim_open(balance: u128) -> ThreeSessions {
    three_sessions_with(balance, config("a")).await
}

/// [`ThreeSessions`] ingested up to `claim_open` by a miner of `cfg`, the supplier's balance then set to `balance`.
pub(super) async fn three_sessions_with(balance: u128, cfg: MinerConfig) -> ThreeSessions {
    let mut g = genesis_with_apps(&["app2", "app3"]);
    g.proof_params.proof_submission_fee_upokt = 400_000;
    let f = fixture_on(g).await;
    let (low_header, low) = app_session(&f, "app2").await;
    let (high_header, high) = app_session(&f, "app3").await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    plain
        .relay_log
        .append(relays(&f.supplier, &low_header, 100..102))
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &high_header, 200..210))
        .await
        .unwrap();
    // The fixture's own session gets relays 0..5.
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = balance;
    ThreeSessions {
        f,
        miner,
        telemetry,
        high,
        low,
    }
}

fn skipped(t: &ThreeSessions) -> Option<u64> {
    counter(
        &t.telemetry.render_metrics(),
        "ha_miner_claims_skipped_total",
        "insufficient_funds",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_short_of_every_proof_fee_claims_the_most_valuable_sessions_and_the_rest_after_a_top_up() {
    // 900,000 > 2 × 400,000: two proofs can be paid, not three.
    let mut t = three_sessions_at_claim_open(900_000).await;
    t.miner.step().await.unwrap();
    t.f.chain.produce_block();
    t.miner.step().await.unwrap();
    assert_claimed(&t.f, &[&t.high, &t.f.key]).await;
    assert_not_claimed(&t.f, &t.low).await;
    assert_eq!(
        skipped(&t),
        Some(1),
        "the least valuable session held back, counted once"
    );

    // Still short (the two claimed sessions may owe their proof fees): held again, not counted again.
    t.f.chain.produce_block();
    t.miner.step().await.unwrap();
    assert_not_claimed(&t.f, &t.low).await;
    assert_eq!(skipped(&t), Some(1));
    assert_eq!(
        t.miner.engine.session(&t.low).unwrap().state,
        crate::miner::lifecycle::State::Claiming,
        "a held claim waits in its window, its trie not frozen: {:?}",
        t.miner.engine.session(&t.low)
    );
    assert!(!t.miner.engine.session(&t.low).unwrap().claim_built);

    // Topped up: the held claim goes out at the next block and lands.
    t.f.chain.state().accounts.get_mut(&t.f.supplier).unwrap().balance = 5_000_000;
    t.f.chain.produce_block();
    t.miner.step().await.unwrap();
    t.f.chain.produce_block();
    t.miner.step().await.unwrap();
    assert_claimed(&t.f, &[&t.low]).await;
    assert_eq!(skipped(&t), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_covering_every_proof_fee_holds_nothing_back() {
    // 1,200,007 > 3 × (400,000 + 1): no proof tx signed yet, each proof's tx fee is estimated (module `afford`)
    // at 0.000001upokt per gas for 200,000 gas of message and 164,160 of size: 1 upokt.
    let mut t = three_sessions_at_claim_open(1_200_007).await;
    t.miner.step().await.unwrap();
    t.f.chain.produce_block();
    t.miner.step().await.unwrap();
    assert_claimed(&t.f, &[&t.high, &t.low, &t.f.key]).await;
    assert_eq!(skipped(&t), None);
}

/// Each proof tx's fee is taken before its proof fee is checked: a balance just above three proof fees pays
/// only two proofs with their tx fees (estimated from the supplier's last proof tx), so the least valuable claim
/// is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proof_tx_fees_count_against_the_balance_too() {
    // 1,200,001 > 3 × 400,000, but not > 3 × (400,000 + 50,000): the last proof tx paid 100,000 for two proofs.
    let mut t = three_sessions_at_claim_open(1_200_001).await;
    t.miner
        .gas_pricing
        .note_signed(TxKind::Proof, &t.f.supplier, 200_000, 100_000, 2);
    t.miner.step().await.unwrap();
    t.f.chain.produce_block();
    t.miner.step().await.unwrap();
    assert_claimed(&t.f, &[&t.high, &t.f.key]).await;
    assert_not_claimed(&t.f, &t.low).await;
    assert_eq!(skipped(&t), Some(1));
}

/// The tx fee the funds check reserves per proof is that of the supplier's last proof tx, stored with it: a
/// restarted process reserves the same, not the estimate it falls back on before any proof tx (module `afford`).
/// Before, it reserved 0 until it signed a proof tx itself, and a balance that could not pay the tx fees of the
/// proofs it was claiming was found out only when a required proof was refused for funds (a slash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_miner_reserves_the_tx_fee_of_the_last_proof_tx() {
    let f = fixture_on(proving_genesis(&[])).await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    // A price at which fees are not all 1 upokt: the fee paid and the estimate differ.
    let cfg = MinerConfig {
        gas_price: "0.01upokt".into(),
        ..config("a")
    };
    let mut t = leading_configured(f, cfg.clone(), relays, false).await;
    t.blocks_through(t.schedule.proof_close).await;
    assert_proof_validated(&t.f, &t.f.key);
    let txs = super::rebroadcast::included_txs_of(&t.f.chain, &t.f.supplier);
    assert_eq!(txs.len(), 2, "the claim's tx and the proof's: {txs:?}");
    let paid = txs[1].1;
    let supplier = t.f.supplier.clone();
    assert_eq!(t.miner.proof_tx_fee_estimate(&supplier).await, paid);
    assert_eq!(
        t.plain
            .kv
            .get(&super::super::afford::proof_tx_fee_key(&supplier))
            .await
            .unwrap(),
        Some(paid.to_string().into_bytes())
    );

    drop(t.miner);
    let mut restarted = Miner::new(t.f.client.clone(), t.plain.clone(), t.f.keyring.clone(), cfg);
    restarted.step().await.unwrap();
    assert!(restarted.engine.is_leader());
    let estimate = restarted.estimated_proof_tx_fee().await;
    assert!(estimate > paid, "the estimate is conservative: {estimate} vs {paid}");
    assert_eq!(restarted.proof_tx_fee_estimate(&supplier).await, paid);
}
