//! Fees against a node that charges more than the miner's configured gas price, with the real binary
//! (`relay-miner run`) and the simulator over real sockets. The simulator node is set to `minimum-gas-prices =
//! "1upokt"`, what poktroll's `pocketd init` writes, a million times the configured `0.000001upokt`: CheckTx
//! refuses a lower fee (code 13) after Simulate accepted it. Every claim and required proof must still land,
//! each paying at least the node's price × its gas limit.

use std::time::Duration;

use prost::Message as _;
use relay_miner::chain::tx::{AuthInfo, TxRaw};
use relay_miner::protocol::session::SessionWindows;

use crate::support::claims::{Proofs, Served, assert_claims};
use crate::support::node::{NetOpts, load_until, spawn_miner, start_net, wait_up};
use crate::support::wait_height;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_proofs_land_on_a_node_whose_minimum_gas_price_is_above_the_configured_one() {
    let net = start_net(NetOpts {
        proof_probability: 1.0,
        ..NetOpts::blocks_every(300)
    })
    .await;
    net.chain.set_minimum_gas_prices("1upokt").unwrap();
    let mut miner = spawn_miner(&net.config);
    wait_up(&net).await;
    let params = net.chain.state().shared.clone();
    let session = SessionWindows::new(&params, net.chain.height()).unwrap();
    let mut served = Served::new();
    let mut n = 0;
    load_until(&net, session.end + 1, &mut n, &mut served).await;
    assert!(!served.is_empty(), "the load was served");
    wait_height(&net.chain, session.settlement + 1, Duration::from_secs(60)).await;
    let claimed = assert_claims(&net.chain, &served, 0, Proofs::EveryClaim);
    assert_eq!(claimed.len(), served.len(), "one claim per served session: {claimed:?}");

    let state = net.chain.state();
    let included: Vec<_> = state.txs.values().filter(|t| t.code == 0).collect();
    assert!(!included.is_empty());
    for result in included {
        let raw = TxRaw::decode(result.tx.as_slice()).unwrap();
        let fee = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap().fee.unwrap();
        let paid: u128 = fee.amount.iter().map(|c| c.amount.parse::<u128>().unwrap()).sum();
        assert!(
            paid >= u128::from(fee.gas_limit),
            "a tx included at height {} paid {paid} upokt for {} gas: below the node's 1upokt",
            result.height,
            fee.gas_limit
        );
    }
    drop(state);
    miner.kill().unwrap();
    miner.wait().unwrap();
}
