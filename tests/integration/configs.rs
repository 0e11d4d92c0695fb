//! Every config file shipped in `config/` loads and validates, so the documented commands keep working.

use relay_miner::config::Config;

#[test]
fn shipped_relay_miner_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in ["relay-miner.example.yaml", "relay-miner.sim.yaml"] {
        let path = dir.join(name);
        if let Err(e) = Config::load(&path) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn shipped_sim_genesis_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sim-genesis.yaml");
    let genesis = relay_miner::sim::chain::Genesis::load(&path).unwrap();
    relay_miner::sim::chain::SimChain::new(genesis).unwrap();
}
