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

/// `relay-miner validate --config` refuses what `run` would refuse before starting (a missing keys file, a
/// backend header the relayer cannot send), naming each key, and accepts the config once they are fixed.
#[test]
fn validate_command_runs_the_checks_run_makes_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    let config = dir.path().join("config.yaml");
    let write_config = |headers: &str| {
        let yaml = format!(
            "keys:\n  keys_file: {}\nservices:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n{headers}",
            keys.display()
        );
        std::fs::write(&config, yaml).unwrap();
    };
    let validate = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay-miner"))
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The config's own checks come first (a header name no HTTP request can carry), then what `run` checks
    // before it opens anything (the keys file).
    write_config("        headers: {\"bad header\": x}\n");
    let (code, out) = validate();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("services.anvil.backends.jsonrpc.headers.bad header: not a valid HTTP header name"),
        "{out}"
    );
    write_config("        headers: {x-api-key: secret}\n");
    let (code, out) = validate();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("keys.keys_file: cannot read keys file"), "{out}");

    crate::support::node::write_keys(&keys, &[hex::encode([1u8; 32])]);
    write_config("        headers: {x-api-key: secret}\n");
    let (code, out) = validate();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("valid (1 services"), "{out}");
}

/// `relay-miner validate --config` refuses a config on which `run` would refuse to start: a new embedded store
/// in a `storage.data_dir` holding another raft node's store. It used to validate, and only `run` refused.
/// Nothing is created.
#[test]
fn validate_command_refuses_a_start_that_would_abandon_another_stores_data() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    crate::support::node::write_keys(&keys, &[hex::encode([1u8; 32])]);
    let data = dir.path().join("data");
    let log = data.join("raft-1").join("log.redb");
    std::fs::create_dir_all(data.join("raft-1")).unwrap();
    drop(raft::LogStore::open(&log).unwrap());
    // The log's writer thread releases the file after its last handle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while matches!(storage::redb::probe_file(&log), storage::redb::FileState::InUse) {
        assert!(std::time::Instant::now() < deadline, "the raft log is never released");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let config = dir.path().join("config.yaml");
    let yaml = format!(
        "keys:\n  keys_file: {}\nservices:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n\
         storage:\n  data_dir: {}\n",
        keys.display(),
        data.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for part in [
        "storage.data_dir: refusing to start: storage.mode is embedded",
        "raft node 1's store",
    ] {
        assert!(stdout.contains(part), "`{part}` missing from: {stdout}");
    }
    assert!(!data.join("relay-miner.redb").exists(), "validate created nothing");
}
