//! The tx fee the claim funds check reserves per proof is the median of the supplier's last proof txs' fees per
//! proof, stored (module `fees::proof_fees`): one outlier does not set it, and a process that leads again reads
//! what another leader stored meanwhile. Real storage (memory backend, its leases) and simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::super::afford::proof_tx_fee_key;
use super::*;
use crate::miner::lifecycle::TxKind;

/// A process that signed proof txs at 300 upokt per proof, then one re-send at 4×: a restarted process reserves
/// 300 per proof, not the outlier (which, stored alone, held claims back for hours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_outlier_does_not_set_the_reserved_proof_tx_fee() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
    for fee in [300, 300, 1_200] {
        miner
            .gas_pricing
            .note_signed(TxKind::Proof, &f.supplier, 100_000, fee, 1);
        miner.store_proof_tx_fee(&f.supplier).await;
    }
    assert_eq!(miner.proof_tx_fee_estimate(&f.supplier).await, 300);
    assert_eq!(
        plain.kv.get(&proof_tx_fee_key(&f.supplier)).await.unwrap(),
        Some(b"300,300,1200".to_vec())
    );

    drop(miner);
    let mut restarted = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    restarted.step().await.unwrap();
    assert_eq!(restarted.proof_tx_fee_estimate(&f.supplier).await, 300);
}

/// Leader `a` reads the stored fees (its own, 300); leadership moves to `b`, which signs and stores fees of 900; when
/// `a` leads again it reserves `b`'s, read at its leadership gain. Before, `a` kept the fee it had read for as long as
/// it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_again_reads_the_fees_another_leader_stored() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let supplier = f.supplier.clone();
    let mut a = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    let mut b = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("b"));
    a.step().await.unwrap();
    a.gas_pricing.note_signed(TxKind::Proof, &supplier, 100_000, 300, 1);
    a.store_proof_tx_fee(&supplier).await;
    assert_eq!(a.proof_tx_fee_estimate(&supplier).await, 300);

    // `a` gives the lease up and sees it at its next step; `b` leads.
    let token = a.leader_token.unwrap();
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    b.step().await.unwrap();
    assert!(b.engine.is_leader());
    for _ in 0..3 {
        b.gas_pricing.note_signed(TxKind::Proof, &supplier, 100_000, 900, 1);
    }
    b.store_proof_tx_fee(&supplier).await;
    assert_eq!(
        plain.kv.get(&proof_tx_fee_key(&supplier)).await.unwrap(),
        Some(b"300,900,900,900".to_vec()),
        "b merged a's stored fee with its own"
    );

    // Back to `a`.
    let token = b.leader_token.unwrap();
    assert!(plain.leadership.resign(ELECTION, "b", token).await.unwrap());
    b.step().await.unwrap();
    a.step().await.unwrap();
    assert!(a.engine.is_leader());
    assert_eq!(a.proof_tx_fee_estimate(&supplier).await, 900);
}
