//! A fixed `transaction.gas_limit` (Simulate skipped) is per message: a batch of claims due together asks its
//! messages' limits together, so it never outgrows the limit one claim needs.

use super::rebroadcast::{balance, included_txs_of};
use super::*;
use crate::miner::lifecycle::TxKind;

/// (gas limit, length in bytes, fee in uPOKT) of every tx the chain included, in block order.
pub(super) fn included_gas(chain: &SimChain) -> Vec<(u64, usize, u128)> {
    let s = chain.state();
    s.block_txs
        .values()
        .flatten()
        .map(|tx| {
            let raw = crate::chain::tx::TxRaw::decode(tx.as_slice()).unwrap();
            let fee = crate::chain::tx::AuthInfo::decode(raw.auth_info_bytes.as_slice())
                .unwrap()
                .fee
                .unwrap();
            let paid = fee.amount.iter().map(|c| c.amount.parse::<u128>().unwrap()).sum();
            (fee.gas_limit, tx.len(), paid)
        })
        .collect()
}

/// The gas limit of a tx of `messages` messages and `len` bytes signed with a fixed `per_message` limit: the
/// messages' share, plus 10 gas per byte of the tx and a 32-byte margin (`fees::fixed_gas_limit`).
pub(super) fn fixed_limit(per_message: u64, messages: u64, len: usize) -> u64 {
    per_message * messages + 10 * (len as u64 + 32)
}

/// Three sessions of one supplier due together, `gas_limit` 100,000 (one claim's tx uses ~90,000 in the
/// simulator: tx bytes, fee deduction, signature, one message). One tx of the three claims asks 300,000 and runs:
/// each claim lands at the next block for one fee. With the limit for the whole tx, the batch ran out of gas in its
/// block (code 11, its fee paid, no claim made) and every claim was re-sent on its own two blocks later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_claims_with_a_fixed_gas_limit_runs_in_its_block() {
    let f = fixture_on(genesis_with_apps(&["app2", "app3"])).await;
    let mut keys = vec![f.key.clone()];
    let mut mined = Vec::new();
    for (i, app) in ["app2", "app3"].into_iter().enumerate() {
        let (header, key) = app_session(&f, app).await;
        let first = 10 * (i as u64 + 1);
        mined.extend(relays(&f.supplier, &header, first..first + 3));
        keys.push(key);
    }
    let Leading { f, mut miner, .. } = at_claim_open(f, fixed_gas_config(100_000), mined).await;
    let before = balance(&f.chain, &f.supplier);
    miner.step().await.unwrap();
    f.chain.produce_block();
    miner.step().await.unwrap();

    assert_eq!(
        failed_in_block(&f.chain),
        Vec::<String>::new(),
        "no tx failed in its block"
    );
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

/// A proof carries relay payloads, and the ante handler meters 10 gas per tx byte before anything else: under a
/// fixed `gas_limit` of 100,000 (enough for a claim) a proof of two 10,000-byte relays (a tx of ~11 KB, ~110,000
/// gas of size alone) was refused at CheckTx at every block (out of gas, code 11) and the supplier slashed. Its
/// limit covers its size gas now: the claim and the proof land, each in one tx, none refused or failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_proof_with_a_fixed_gas_limit_sized_for_a_claim_lands() {
    let f = fixture_on(proving_genesis(&[])).await;
    let relays = signed_relays(&f, &f.header, "app", 0..2, 10_000);
    let mut t = leading_configured(f, fixed_gas_config(100_000), relays, false).await;
    t.blocks_through(t.schedule.proof_close).await;
    assert_proof_validated(&t.f, &t.f.key);
    assert_eq!(
        failed_in_block(&t.f.chain),
        Vec::<String>::new(),
        "no tx failed in its block"
    );
    let txs = included_txs_of(&t.f.chain, &t.f.supplier);
    assert_eq!(txs.len(), 2, "one claim tx, one proof tx: {txs:?}");
    let text = t.telemetry.render_metrics();
    assert_eq!(counter(&text, "ha_miner_proof_errors_total", "refused"), None, "{text}");
}

/// A fixed `gas_limit` of 65,000 covers a claim's ante (its size gas, the fee deduction, the signature: ~60,000
/// besides the size in the simulator) but not its message (20,000 more): its tx runs out of gas in its block (code
/// 11, its fee paid). The same limit would fail the same way at every attempt until the window closed; once the
/// kept tx's lookup shows code 11, the session's next tx asks twice the per-message gas and the claim lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_ran_out_of_gas_is_sent_again_with_twice_the_gas() {
    let Leading {
        f, mut miner, schedule, ..
    } = at_claim_open(fixture().await, fixed_gas_config(65_000), Vec::new()).await;
    while f.chain.height() <= schedule.claim_close {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_claimed(&f, &[&f.key]).await;
    assert_eq!(
        block_codes(&f.chain),
        vec![11, 0],
        "one tx out of gas, then one that ran"
    );
    let gas = included_gas(&f.chain);
    assert_eq!(gas[0].0, fixed_limit(65_000, 1, gas[0].1), "{gas:?}");
    assert_eq!(gas[1].0, fixed_limit(130_000, 1, gas[1].1), "{gas:?}");
}

/// The result code of every tx the chain included, in block order.
fn block_codes(chain: &SimChain) -> Vec<u32> {
    let s = chain.state();
    s.block_txs
        .values()
        .flatten()
        .map(|tx| s.txs[&crate::chain::tx::tx_hash(tx)].code)
        .collect()
}

/// As above, but leader A, having seen its claim run out of gas (the kept tx's lookup: code 11) and noted the
/// session stuck at the cap, stops leading before its next attempt. Both are stored in the session's record, so
/// B, leading the same storage, signs that attempt at twice the per-message gas and at `max_gas_price`, and the
/// claim lands at its one re-send. Kept in A's memory only, B asked 1× the gas again: a second tx out of gas, a
/// second fee, and with a proof a slash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_the_doubled_gas_and_the_cap_of_a_session_that_ran_out_of_gas() {
    let cfg = |instance: &str| MinerConfig {
        max_gas_price: "0.0001upokt".into(),
        instance: instance.into(),
        ..fixed_gas_config(65_000)
    };
    let Leading {
        f,
        miner: mut a,
        plain,
        schedule,
        ..
    } = at_claim_open(fixture().await, cfg("a"), Vec::new()).await;
    let claim = |m: &Miner| m.gas_pricing.gas_doublings(TxKind::Claim, std::slice::from_ref(&f.key));
    while claim(&a) == 0 {
        assert!(f.chain.height() <= schedule.claim_close, "the lookup saw code 11");
        a.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_eq!(block_codes(&f.chain), vec![11], "one tx, out of gas");
    assert!(f.chain.state().mempool.is_empty(), "no new tx yet");
    a.gas_pricing
        .stuck_in_mempool(TxKind::Claim, std::slice::from_ref(&f.key));
    a.persist(&[], &mut Vec::new()).await.unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored_data(&plain, &f.key).await).unwrap();
    assert_eq!(
        stored["gas"],
        serde_json::json!({"claim": {"doublings": 1, "at_cap": true}}),
        "{stored}"
    );

    let token = a.leader_token.unwrap();
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    let mut b = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg("b"));
    b.step().await.unwrap();
    assert!(b.engine.is_leader());
    assert_eq!(claim(&b), 1, "restored");
    while f.chain.height() <= schedule.claim_close {
        b.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_claimed(&f, &[&f.key]).await;
    assert_eq!(block_codes(&f.chain), vec![11, 0], "the re-send ran");
    let gas = included_gas(&f.chain);
    assert_eq!(gas[1].0, fixed_limit(130_000, 1, gas[1].1), "{gas:?}");
    let cap = crate::chain::tx::parse_gas_price("0.0001").unwrap();
    assert_eq!(
        gas[1].2,
        crate::chain::tx::fee_for_gas(&cap, gas[1].0).unwrap(),
        "{gas:?}"
    );
}
