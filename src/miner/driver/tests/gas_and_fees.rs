//! Gas and fees: a fixed gas limit skips Simulate, the node's minimum gas price is paid (read from the node or
//! from its refusal) up to `transaction.max_gas_price`, and the claim fits its gas at the smallest adjustment.

use super::*;

/// `transaction.gas_limit` ≠ 0: every tx carries that gas limit plus the gas of its size (and its fee) and Simulate
/// is not asked (here the node would refuse every simulation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_gas_limit_skips_simulate() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut cfg = config("a");
    cfg.gas_limit = 345_678;
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg);
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    f.chain.state().refuse_simulations = usize::MAX;
    miner.step().await.unwrap();
    f.chain.produce_block();
    assert!(
        f.client
            .claim_at(&f.key.session_id, &f.supplier, None)
            .await
            .unwrap()
            .is_some(),
        "{:?}",
        f.chain.records()
    );
    let fees = super::fixed_gas::included_gas(&f.chain);
    assert_eq!(fees.len(), 1, "{fees:?}");
    let (gas_limit, len, paid) = fees[0];
    assert_eq!(
        (gas_limit, paid),
        (super::fixed_gas::fixed_limit(345_678, 1, len), 1),
        "345,678 and the tx's size gas; 0.000001upokt × that, rounded up"
    );
}

/// The miner of the fixture's session (relays 0..5) with `config`, on a node that charges `minimum` (app.toml
/// `minimum-gas-prices`) and answers its `Config` query or not, after the one step at `claim_open` that sends the
/// claim and the block after it: the claim on chain, if any.
async fn claim_on_a_node_charging(
    minimum: &str,
    config_answers: bool,
    config: MinerConfig,
) -> (Fixture, Option<crate::protocol::wire::Claim>) {
    let f = fixture().await;
    f.chain.set_minimum_gas_prices(minimum).unwrap();
    f.chain.state().node_config_unavailable = !config_answers;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config);
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    f.chain.produce_block();
    let claim = f.client.claim_at(&f.key.session_id, &f.supplier, None).await.unwrap();
    (f, claim)
}

/// The fee of every claim tx the chain included, with its gas limit.
fn included_fees(chain: &SimChain) -> Vec<(u128, u64)> {
    use crate::chain::tx::{AuthInfo, TxRaw};
    chain
        .state()
        .txs
        .values()
        .filter(|t| t.code == 0)
        .map(|t| {
            let raw = TxRaw::decode(t.tx.as_slice()).unwrap();
            let fee = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap().fee.unwrap();
            let paid = fee.amount.iter().map(|c| c.amount.parse::<u128>().unwrap()).sum();
            (paid, fee.gas_limit)
        })
        .collect()
}

/// A node whose minimum gas price (poktroll's `pocketd init` default, `1upokt`) is a million times the
/// configured one refuses the configured fee at CheckTx; the miner reads the node's price from its `Config`
/// query and pays it, so the claim lands at its first send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_pays_the_node_minimum_gas_price_read_from_the_node() {
    let (f, claim) = claim_on_a_node_charging("1upokt", true, config("a")).await;
    assert!(claim.is_some(), "claim included: {:?}", f.chain.records());
    let fees = included_fees(&f.chain);
    assert_eq!(fees.len(), 1);
    let (paid, gas_limit) = fees[0];
    assert_eq!(paid, u128::from(gas_limit), "1upokt × the gas limit");
}

/// When the node's `Config` cannot be read (a gateway that forwards only some services), the first send at the
/// configured price is refused with code 13 and the SDK's "required:" fee; the miner sends again at that fee in
/// the same attempt, so the claim is in the next block, not a block (or a window) later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_refused_at_check_tx_is_sent_again_at_the_required_fee_in_the_same_attempt() {
    let (f, claim) = claim_on_a_node_charging("0.01upokt", false, config("a")).await;
    assert!(claim.is_some(), "claim included: {:?}", f.chain.records());
    let (paid, gas_limit) = included_fees(&f.chain)[0];
    assert_eq!(paid, u128::from(gas_limit).div_ceil(100), "ceil(0.01 × gas limit)");
}

/// A node that asks more than `transaction.max_gas_price` is not paid: neither from its `Config` nor from its
/// refusal (a misconfigured or hostile node cannot name the fee); nothing reaches a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asking_more_than_max_gas_price_is_not_paid() {
    for config_answers in [true, false] {
        let (f, claim) = claim_on_a_node_charging("11upokt", config_answers, config("a")).await;
        assert!(claim.is_none(), "config answers: {config_answers}");
        assert_eq!(included_fees(&f.chain), vec![], "config answers: {config_answers}");
    }
}

/// With the smallest `gas_adjustment` allowed (1.1), the claim still fits its gas limit: the draft is simulated
/// with a non-zero fee, so the estimate includes the fee transfer the block charges (the SDK skips it for a zero
/// fee; the simulator models that, and a tx short of gas fails in its block with its fee paid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_fits_its_gas_limit_at_the_smallest_gas_adjustment() {
    let config = MinerConfig {
        gas_adjustment: crate::config::MIN_GAS_ADJUSTMENT,
        ..config("a")
    };
    let (f, claim) = claim_on_a_node_charging("", true, config).await;
    assert_eq!(
        f.chain.state().last_simulated_fee,
        Some(1),
        "the draft was simulated with a non-zero fee"
    );
    let failed: Vec<_> = f.chain.state().txs.values().map(|t| (t.code, t.log.clone())).collect();
    assert!(claim.is_some(), "claim included; txs: {failed:?}");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 0);
}
