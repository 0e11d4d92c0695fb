//! The funds checks read the spendable balance (bank `SpendableBalanceByDenom`): the ante handler and x/proof take
//! fees from what the account can spend, and a vesting account's locked coins, counted in its total balance, pay
//! for nothing. A node that does not serve the query is asked the total instead. Real simulator, its test knobs
//! `locked` (coins held but not spendable) and `spendable_balance_unimplemented`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::pending_funds::{PROOF_FEE, two_proofs_due};
use super::*;
use crate::protocol::wire::method;

/// Spendable, the balance pays one of two proofs after its tx's real fee; with the locked coins the total pays
/// both. Read as the total, both proofs left in one tx that failed whole in its block (x/proof checks the
/// spendable balance), both proofs missed. Read as spendable, the most valuable proof leaves alone and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_coins_pay_no_proof() {
    let mut t = two_proofs_due().await;
    let chain = t.f.chain.clone();
    {
        let mut s = chain.state();
        let account = s.accounts.get_mut(&t.f.supplier).unwrap();
        account.balance = u128::from(PROOF_FEE) * 2 + 2;
        account.locked = u128::from(PROOF_FEE) * 10;
    }
    chain.produce_block();
    t.miner.step().await.unwrap();
    assert_eq!(t.waiting(), vec![vec![t.valuable.session_id.clone()]]);
    t.settle_valuable_alone().await;
}

/// A node that answers `SpendableBalanceByDenom` with `Unimplemented` is asked `Balance` instead (there are no
/// locked coins here, so the total is what the account can spend): the proof tx still carries only the proof the
/// balance pays. The query is not asked again once the node said it does not serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_spendable_query_is_asked_the_total() {
    let mut t = two_proofs_due().await;
    let chain = t.f.chain.clone();
    chain.state().spendable_balance_unimplemented = true;
    chain.state().accounts.get_mut(&t.f.supplier).unwrap().balance = u128::from(PROOF_FEE) * 2 + 2;
    let balance_reads = chain.grpc_calls(method::BALANCE);
    chain.produce_block();
    t.miner.step().await.unwrap();
    assert_eq!(t.waiting(), vec![vec![t.valuable.session_id.clone()]]);
    assert!(chain.grpc_calls(method::BALANCE) > balance_reads, "the total is read");
    let asked = chain.grpc_calls(method::SPENDABLE_BALANCE_BY_DENOM);
    t.settle_valuable_alone().await;
    assert_eq!(
        chain.grpc_calls(method::SPENDABLE_BALANCE_BY_DENOM),
        asked,
        "not asked again"
    );
}

/// Three sessions worth 10, 5 and 2 relays at `claim_open`, the proof fee 400,000 upokt: the spendable 900,000 backs
/// two proofs, the total (1,000,000 more, locked) all three. Read as the total, the least valuable claim left
/// with a proof the account could not pay (a slash if required); read as spendable, it is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_coins_back_no_claim() {
    let mut g = genesis_with_apps(&["app2", "app3"]);
    g.proof_params.proof_submission_fee_upokt = 400_000;
    let f = fixture_on(g).await;
    let (low_header, low) = app_session(&f, "app2").await;
    let (high_header, high) = app_session(&f, "app3").await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    for (header, n) in [(&low_header, 100..102), (&high_header, 200..210)] {
        plain.relay_log.append(relays(&f.supplier, header, n)).await.unwrap();
    }
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    {
        let mut s = f.chain.state();
        let account = s.accounts.get_mut(&f.supplier).unwrap();
        account.balance = 900_000;
        account.locked = 1_000_000;
    }
    miner.step().await.unwrap();
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_claimed(&f, &[&high, &f.key]).await;
    assert_not_claimed(&f, &low).await;
}
