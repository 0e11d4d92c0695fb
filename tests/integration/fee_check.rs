//! `transaction.max_gas_price` and `transaction.gas_price` against the node's `minimum-gas-prices`, over real
//! sockets to the simulator: a node asking more than the cap, or only another denomination, would refuse every
//! claim and proof, so `relay-miner validate` and `relay-miner run` refuse it, naming the key to change and the
//! node's price; a node minimum above the configured price but within the cap is accepted (the miner raises its
//! price to it).

use std::time::Duration;

use relay_miner::sim::chain::Genesis;

use super::chain_id::{relay_miner, write_config_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_run_refuse_a_node_whose_minimum_gas_price_no_fee_within_the_cap_meets() {
    let genesis = Genesis::from_yaml(relay_miner::cli::DEMO_GENESIS).unwrap();
    let chain_id = genesis.chain_id.clone();
    let (node, dir) = super::chain_id::manual_node(genesis).await;
    let config = dir.path().join("relay-miner.yaml");
    let transaction = "transaction:\n  gas_price: \"0.000001upokt\"\n  max_gas_price: \"2upokt\"\n";
    write_config_with(&config, dir.path(), &node, &chain_id, transaction);

    // Above the cap: refused by both, naming the key and the node's price.
    node.chain().set_minimum_gas_prices("2.5upokt").unwrap();
    let out = relay_miner(&["validate"], &config).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for part in [
        "transaction.max_gas_price",
        "minimum gas price of 2.5upokt",
        "above 2upokt",
    ] {
        assert!(stdout.contains(part), "`{part}` missing from: {stdout}");
    }
    // `run` refuses before it serves anything; the deadline turns a run that starts anyway into a failure.
    let child = relay_miner(&["run"], &config).spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("`relay-miner run` started against a node whose minimum gas price is above the cap")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("transaction.max_gas_price"), "{stderr}");
    assert!(stderr.contains("2.5upokt"), "{stderr}");

    // Only another denomination: refused, naming transaction.gas_price.
    node.chain().set_minimum_gas_prices("1uatom").unwrap();
    let out = relay_miner(&["validate"], &config).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for part in ["transaction.gas_price", "only in 1uatom", "not in upokt"] {
        assert!(stdout.contains(part), "`{part}` missing from: {stdout}");
    }

    // Above the configured price, within the cap: accepted (the miner pays the node's price).
    node.chain().set_minimum_gas_prices("2upokt").unwrap();
    let out = relay_miner(&["validate"], &config).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}
