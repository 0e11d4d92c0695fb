//! A fixed `transaction.gas_limit` (Simulate skipped) is per message: a batch of claims due together asks its
//! messages' limits together, so it never outgrows the limit one claim needs.

use super::rebroadcast::{balance, included_txs_of};
use super::*;

/// Three sessions of one supplier due together, `gas_limit` 100,000 (one claim's tx uses ~90,000 in the
/// simulator: tx bytes, fee deduction, signature, one message). One tx of the three claims asks 300,000 and runs:
/// each claim lands at the next block for one fee. With the limit for the whole tx, the batch ran out of gas in its
/// block (code 11, its fee paid, no claim made) and every claim was re-sent on its own two blocks later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_claims_with_a_fixed_gas_limit_runs_in_its_block() {
    let f = fixture_on(genesis_with_apps(&["app2", "app3"])).await;
    let plain = MemoryBackend::new().storage();
    let mut keys = vec![f.key.clone()];
    for (i, app) in ["app2", "app3"].into_iter().enumerate() {
        let (header, key) = app_session(&f, app).await;
        let first = 10 * (i as u64 + 1);
        plain
            .relay_log
            .append(relays(&f.supplier, &header, first..first + 3))
            .await
            .unwrap();
        keys.push(key);
    }
    let mut miner = Miner::new(
        f.client.clone(),
        plain.clone(),
        f.keyring.clone(),
        MinerConfig {
            gas_limit: 100_000,
            ..config("a")
        },
    );
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    let before = balance(&f.chain, &f.supplier);
    miner.step().await.unwrap();
    f.chain.produce_block();
    miner.step().await.unwrap();

    let failed: Vec<_> = f
        .chain
        .state()
        .txs
        .values()
        .filter(|r| r.code != 0)
        .map(|r| r.log.clone())
        .collect();
    assert_eq!(failed, Vec::<String>::new(), "no tx failed in its block");
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 1, "one tx for the three claims: {txs:?}");
    assert_eq!(before - balance(&f.chain, &f.supplier), txs[0].1, "one fee");
    let claims: Vec<_> = f.chain.records().into_iter().filter(|r| r.rejected.is_none()).collect();
    assert_eq!(claims.len(), 3, "{claims:?}");
    for key in &keys {
        assert!(matches!(
            miner.engine.session(key).unwrap().state,
            crate::miner::lifecycle::State::Claimed | crate::miner::lifecycle::State::Settled
        ));
    }
}
