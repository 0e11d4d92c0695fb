//! Tests of the semantic config checks (`validate`): each problem is reported with its key.

use super::super::*;

mod skip_unprofitable_claims;
mod wait_replicas;

const MINIMAL: &str = "
services:
  anvil:
    backends:
      jsonrpc:
        url: http://127.0.0.1:8545
";

/// The keys validation names for the config `yaml`.
fn issue_keys(yaml: &str) -> Vec<String> {
    Config::from_yaml(yaml)
        .unwrap()
        .validate()
        .into_iter()
        .map(|i| i.key)
        .collect()
}

#[test]
fn minimal_config_is_valid_with_go_defaults() {
    let config = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(config.validate(), vec![]);
    assert_eq!(config.listen_addr, "0.0.0.0:8080");
    assert_eq!(config.http_transport.max_idle_conns_per_host, 100);
    assert_eq!(config.transaction.gas_adjustment, 1.7);
    assert_eq!(config.validation_mode("anvil"), ValidationMode::Optimistic);
    assert_eq!(config.max_body_size_bytes("anvil"), 10 * 1024 * 1024);
    assert_eq!(config.storage.mode, StorageMode::Embedded);
    assert_eq!(config.relay_server.limits(), crate::relayer::ServerLimits::default());
}

/// A relative `storage.data_dir` is a warning (it resolves against the working directory), not an error; an
/// absolute one, or any in Redis mode (which keeps nothing there), is not.
#[test]
fn a_relative_data_dir_is_a_warning() {
    let config = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(config.validate(), vec![], "not an error");
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "storage.data_dir");
    assert!(
        warnings[0].problem.contains("./relay-miner-data") && warnings[0].problem.contains("working directory"),
        "{}",
        warnings[0]
    );
    for storage in [
        "storage:\n  data_dir: /var/lib/relay-miner\n",
        "storage:\n  mode: redis\n  redis:\n    url: redis://127.0.0.1:6379\n",
    ] {
        let config = Config::from_yaml(&format!("{MINIMAL}{storage}")).unwrap();
        assert_eq!(config.warnings(), vec![], "{storage}");
    }
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let text = MINIMAL.replace("url:", "urll:");
    match Config::from_yaml(&text) {
        Err(ConfigError::Parse { key, problem }) => {
            assert_eq!(key, "services.anvil.backends.jsonrpc.urll");
            assert!(problem.contains("unknown field `urll`"), "{problem}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    match Config::from_yaml("listen_adr: 1\n") {
        Err(ConfigError::Parse { problem, .. }) => {
            assert!(problem.contains("listen_adr"), "{problem}")
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = "
listen_addr: nowhere
storage:
  mode: raft
  raft:
    peers: [\"1=a:1\", \"bad\"]
services:
  anvil:
    default_backend: rest
    timeout_profile: missing
    backends:
      jsonrpc:
        url: ftp://x
        max_retries: 9
      carrier_pigeon:
        url: http://x
transaction:
  gas_price: cheap
  tx_timeout_default_seconds: 900
  max_tx_bytes: 100
relay_server:
  idle_timeout_seconds: 0
  body_read_timeout_seconds: 100000000000
  max_connections: 0
  max_connections_per_ip: 5
";
    let config = Config::from_yaml(text).unwrap();
    let keys: Vec<String> = config.validate().into_iter().map(|i| i.key).collect();
    for expected in [
        "listen_addr",
        "storage.raft.node_id",
        "storage.raft.listen_addr",
        "storage.raft.peers[1]",
        "services.anvil.backends.jsonrpc.url",
        "services.anvil.backends.jsonrpc.max_retries",
        "services.anvil.backends.carrier_pigeon",
        "services.anvil.default_backend",
        "services.anvil.timeout_profile",
        "transaction.gas_price",
        "transaction.tx_timeout_default_seconds",
        "transaction.max_tx_bytes",
        "relay_server.idle_timeout_seconds",
        "relay_server.body_read_timeout_seconds",
        "relay_server.max_connections",
        "relay_server.max_connections_per_ip",
    ] {
        assert!(keys.iter().any(|k| k == expected), "missing {expected} in {keys:?}");
    }
}

/// The keys validation names for the minimal config plus `transaction:` lines `lines`.
fn transaction_issues(lines: &str) -> Vec<String> {
    let text = format!("{MINIMAL}transaction:\n{lines}");
    issue_keys(&text)
}

#[test]
fn tx_timeout_leaves_headroom_below_the_10_minute_unordered_limit() {
    let with = |seconds: u64| transaction_issues(&format!("  tx_timeout_default_seconds: {seconds}\n"));
    assert_eq!(with(540), Vec::<String>::new());
    assert_eq!(with(1), Vec::<String>::new());
    for bad in [0, 541, 600] {
        assert_eq!(with(bad), vec!["transaction.tx_timeout_default_seconds"], "{bad}");
    }
}

#[test]
fn balance_monitor_values_are_checked() {
    let with = |lines: &str| issue_keys(&format!("{MINIMAL}balance_monitor:\n{lines}"));
    assert_eq!(with("  enabled: false\n"), Vec::<String>::new());
    assert_eq!(with("  check_interval_seconds: 60\n"), Vec::<String>::new());
    for bad in [0, 86_401] {
        assert_eq!(
            with(&format!("  check_interval_seconds: {bad}\n")),
            vec!["balance_monitor.check_interval_seconds"],
            "{bad}"
        );
    }
    assert_eq!(
        with("  stake_warning_proof_threshold: 2\n  stake_critical_proof_threshold: 3\n"),
        vec!["balance_monitor.stake_critical_proof_threshold"]
    );
    let typo = Config::from_yaml(&format!("{MINIMAL}balance_monitor:\n  balance_thresold_upokt: 1\n"));
    assert!(
        matches!(&typo, Err(crate::config::ConfigError::Parse { key, .. }) if key == "balance_monitor.balance_thresold_upokt"),
        "{typo:?}"
    );
}

#[test]
fn submission_buffer_is_at_least_one_block() {
    let with = |blocks: u64| transaction_issues(&format!("  submission_buffer_blocks: {blocks}\n"));
    assert_eq!(with(1), Vec::<String>::new());
    assert_eq!(with(100), Vec::<String>::new());
    for bad in [0, 101] {
        assert_eq!(with(bad), vec!["transaction.submission_buffer_blocks"], "{bad}");
    }
}

#[test]
fn claim_delay_is_bounded() {
    let with = |blocks: u64| transaction_issues(&format!("  claim_delay_blocks: {blocks}\n"));
    assert_eq!(with(0), Vec::<String>::new());
    assert_eq!(with(100), Vec::<String>::new());
    assert_eq!(with(101), vec!["transaction.claim_delay_blocks"]);
}

#[test]
fn gas_prices_are_upokt_and_the_cap_is_not_below_the_price() {
    let with =
        |price: &str, max: &str| transaction_issues(&format!("  gas_price: \"{price}\"\n  max_gas_price: \"{max}\"\n"));
    assert_eq!(with("0.000001upokt", "10upokt"), Vec::<String>::new());
    assert_eq!(with("1upokt", "1upokt"), Vec::<String>::new());
    assert_eq!(
        with("0.000001", "0.5"),
        Vec::<String>::new(),
        "the denom defaults to upokt"
    );
    assert_eq!(with("2upokt", "1upokt"), vec!["transaction.max_gas_price"]);
    assert_eq!(with("0.01uatom", "10upokt"), vec!["transaction.gas_price"]);
    assert_eq!(with("0.01upokt", "lots"), vec!["transaction.max_gas_price"]);
    let config = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(config.transaction.max_gas_price, crate::config::DEFAULT_MAX_GAS_PRICE);
}

#[test]
fn gas_adjustment_below_the_minimum_is_refused() {
    let with = |value: &str| transaction_issues(&format!("  gas_adjustment: {value}\n  gas_limit: 250000\n"));
    assert_eq!(with("1.1"), Vec::<String>::new());
    assert_eq!(with("2"), Vec::<String>::new());
    for bad in ["1.09", "1.0", "0.5", "-1", ".nan"] {
        assert_eq!(with(bad), vec!["transaction.gas_adjustment"], "{bad}");
    }
}

#[test]
fn redis_mode_needs_a_url_and_sane_lease() {
    let text = format!("{MINIMAL}storage:\n  mode: redis\n  redis:\n    heartbeat_rate_seconds: 30\n");
    let issues = Config::from_yaml(&text).unwrap().validate();
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, vec!["storage.redis.url", "storage.redis.heartbeat_rate_seconds"]);
}

/// The relay memory threshold and the warning below it: shares of maxmemory in (0, 1], the warning first.
#[test]
fn redis_memory_ratios_are_shares_with_the_warning_first() {
    let redis = "storage:\n  mode: redis\n  redis:\n    url: redis://127.0.0.1:6379\n";
    let config = Config::from_yaml(&format!("{MINIMAL}{redis}")).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(
        (
            config.storage.redis.relay_max_memory_ratio,
            config.storage.redis.memory_warn_ratio
        ),
        (0.9, 0.8)
    );
    let keys = |extra: &str| issue_keys(&format!("{MINIMAL}{redis}{extra}"));
    assert!(keys("    relay_max_memory_ratio: 1\n    memory_warn_ratio: 0.95\n").is_empty());
    for bad in ["0", "-0.5", "1.2", ".nan"] {
        assert_eq!(
            keys(&format!("    relay_max_memory_ratio: {bad}\n")),
            vec!["storage.redis.relay_max_memory_ratio"],
            "{bad}"
        );
        assert_eq!(
            keys(&format!("    memory_warn_ratio: {bad}\n")),
            vec!["storage.redis.memory_warn_ratio"],
            "{bad}"
        );
    }
    let warn_at_or_above = keys("    relay_max_memory_ratio: 0.7\n");
    assert_eq!(warn_at_or_above, vec!["storage.redis.memory_warn_ratio"]);
    let text = format!("{MINIMAL}{redis}    relay_max_memory_ratio: 0.8\n");
    let issue = &Config::from_yaml(&text).unwrap().validate()[0];
    assert!(
        issue
            .problem
            .contains("below storage.redis.relay_max_memory_ratio (0.8)"),
        "{issue}"
    );
}

#[test]
fn raft_timing_keys_override_the_defaults_and_are_checked() {
    let raft = "storage:\n  mode: raft\n  raft:\n    node_id: 1\n    listen_addr: 127.0.0.1:7001\n    peers: [\"1=127.0.0.1:7001\"]\n";
    let config = Config::from_yaml(&format!("{MINIMAL}{raft}")).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let ms = std::time::Duration::from_millis;
    assert_eq!(config.storage.raft.timing(), (ms(50), (ms(150), ms(300))));
    assert_eq!(config.storage.raft.start_check_wait(), ms(10_000));
    let text = format!(
        "{MINIMAL}{raft}    heartbeat_interval_ms: 40\n    election_timeout_min_ms: 200\n    election_timeout_max_ms: 500\n    pre_vote: false\n    start_check_wait_ms: 2000\n"
    );
    let config = Config::from_yaml(&text).unwrap();
    assert_eq!(config.storage.raft.timing(), (ms(40), (ms(200), ms(500))));
    assert_eq!(config.storage.raft.pre_vote, Some(false));
    assert_eq!(config.storage.raft.start_check_wait(), ms(2000));
    let text = format!("{MINIMAL}{raft}    heartbeat_interval_ms: 200\n    election_timeout_max_ms: 150\n");
    let keys = issue_keys(&text);
    assert_eq!(
        keys,
        vec![
            "storage.raft.election_timeout_min_ms",
            "storage.raft.election_timeout_max_ms"
        ]
    );
}

/// The shared counter's TTL is fixed when a session's first relay creates it: below an hour it could expire
/// mid-session (the count restarts at 0 and the app is over-served), so such a TTL is refused; with the meter
/// disabled it is not used and not checked.
#[test]
fn meter_cache_ttl_must_outlive_a_session() {
    let issues = |meter: &str| -> Vec<String> {
        let text = format!("{MINIMAL}relay_meter:\n{meter}");
        issue_keys(&text)
    };
    for short in ["1", "90s", "30m", "3599"] {
        assert_eq!(
            issues(&format!("  cache_ttl: {short}\n")),
            vec!["relay_meter.cache_ttl"],
            "{short}"
        );
    }
    for long in ["1h", "3600", "2h", "1d"] {
        assert_eq!(
            issues(&format!("  cache_ttl: {long}\n")),
            Vec::<String>::new(),
            "{long}"
        );
    }
    assert_eq!(issues("  enabled: false\n  cache_ttl: 1\n"), Vec::<String>::new());
}

#[test]
fn meter_cache_ttl_takes_go_durations() {
    let text = format!("{MINIMAL}relay_meter:\n  cache_ttl: 2h\n");
    assert_eq!(Config::from_yaml(&text).unwrap().relay_meter.cache_ttl, 7200);
    let text = format!("{MINIMAL}relay_meter:\n  cache_ttl: 90\n");
    assert_eq!(Config::from_yaml(&text).unwrap().relay_meter.cache_ttl, 90);
    let text = format!("{MINIMAL}relay_meter:\n  cache_ttl: soon\n");
    match Config::from_yaml(&text) {
        Err(ConfigError::Parse { key, .. }) => assert_eq!(key, "relay_meter.cache_ttl"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert_eq!(parse_duration_seconds("30m"), Some(1800));
    assert_eq!(parse_duration_seconds("1d"), Some(86_400));
    assert_eq!(parse_duration_seconds("h"), None);
}

#[test]
fn backend_urls_and_headers_the_relayer_cannot_use_are_refused() {
    let text = "
services:
  anvil:
    backends:
      jsonrpc:
        url: http:///no-host
      rest:
        url: http://127.0.0.1:1/v2/KEY?apikey=x
        headers: {\"bad header\": x, ok: \"line\\nbreak\"}
";
    let keys = issue_keys(text);
    assert_eq!(
        keys,
        vec![
            "services.anvil.backends.jsonrpc.url",
            "services.anvil.backends.rest.headers.bad header",
            "services.anvil.backends.rest.headers.ok",
        ]
    );
}

#[test]
fn a_grpc_backend_may_be_a_bare_host_and_port_and_only_it() {
    let text = "
services:
  anvil:
    backends:
      grpc:
        url: 127.0.0.1:50051
      jsonrpc:
        url: 127.0.0.1:8545
  other:
    backends:
      grpc:
        url: ws://127.0.0.1:50051
";
    assert_eq!(
        issue_keys(text),
        vec![
            "services.anvil.backends.jsonrpc.url",
            "services.other.backends.grpc.url"
        ]
    );
    let config = Config::from_yaml(text).unwrap();
    let backends = &config.services["anvil"].backends;
    assert_eq!(backends["grpc"].url_for("grpc"), "http://127.0.0.1:50051");
    assert_eq!(backends["jsonrpc"].url_for("jsonrpc"), "127.0.0.1:8545");
    let tls = BackendConfig {
        url: "https://grpc.example.net".into(),
        ..BackendConfig::default()
    };
    assert_eq!(tls.url_for("grpc"), "https://grpc.example.net");
}

#[test]
fn transport_and_profile_values_are_bounded() {
    let text = format!(
        "{MINIMAL}default_request_timeout_seconds: 86401
http_transport:
  max_conns_per_host: 4000000000
  max_idle_conns_per_host: 1000001
  idle_conn_timeout_seconds: 18446744073709551615
  dial_timeout_seconds: 3601
  response_header_timeout_seconds: 86401
  tcp_keep_alive_seconds: 32768
timeout_profiles:
  t: {{request_timeout_seconds: 86401, response_header_timeout_seconds: 86401, dial_timeout_seconds: 3601}}
pool_profiles:
  p: {{max_conns_per_host: 1000001, max_idle_conns_per_host: 1000001, idle_conn_timeout_seconds: 86401}}
"
    );
    let keys = issue_keys(&text);
    assert_eq!(
        keys,
        vec![
            "default_request_timeout_seconds",
            "http_transport.max_conns_per_host",
            "http_transport.max_idle_conns_per_host",
            "http_transport.idle_conn_timeout_seconds",
            "http_transport.dial_timeout_seconds",
            "http_transport.response_header_timeout_seconds",
            "http_transport.tcp_keep_alive_seconds",
            "timeout_profiles.t.request_timeout_seconds",
            "timeout_profiles.t.response_header_timeout_seconds",
            "timeout_profiles.t.dial_timeout_seconds",
            "pool_profiles.p.max_conns_per_host",
            "pool_profiles.p.max_idle_conns_per_host",
            "pool_profiles.p.idle_conn_timeout_seconds",
        ]
    );
    // Zeros are Go's "no limit" / defaults, and the largest values are fine.
    let text = format!(
        "{MINIMAL}http_transport:
  max_conns_per_host: 0
  max_idle_conns_per_host: 0
  idle_conn_timeout_seconds: 0
  dial_timeout_seconds: 0
  response_header_timeout_seconds: 86400
  tcp_keep_alive_seconds: 32767
"
    );
    assert_eq!(Config::from_yaml(&text).unwrap().validate(), vec![]);
}

#[test]
fn body_limits_are_capped_per_storage_mode() {
    let with = |extra: &str| -> Vec<String> {
        let text = format!("{MINIMAL}{extra}");
        issue_keys(&text)
    };
    let over = MAX_BODY_SIZE_BYTES + 1;
    assert_eq!(
        with(&format!("default_max_body_size_bytes: {MAX_BODY_SIZE_BYTES}\n")),
        Vec::<String>::new()
    );
    assert_eq!(
        with(&format!("default_max_body_size_bytes: {over}\n")),
        vec!["default_max_body_size_bytes"]
    );
    let text = MINIMAL.replace(
        "    backends:",
        &format!("    max_body_size_bytes: {over}\n    backends:"),
    );
    let keys = issue_keys(&text);
    assert_eq!(keys, vec!["services.anvil.max_body_size_bytes"]);
    let raft = "storage:\n  mode: raft\n  raft:\n    node_id: 1\n    listen_addr: 127.0.0.1:7001\n    peers: [\"1=127.0.0.1:7001\"]\n";
    assert_eq!(
        with(&format!(
            "{raft}default_max_body_size_bytes: {MAX_BODY_SIZE_BYTES_RAFT}\n"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        with(&format!(
            "{raft}default_max_body_size_bytes: {}\n",
            MAX_BODY_SIZE_BYTES_RAFT + 1
        )),
        vec!["default_max_body_size_bytes"]
    );
    assert!(2 * MAX_BODY_SIZE_BYTES_RAFT < raft::MAX_ENTRY_BYTES as u64);
}

#[test]
fn tls_ca_files_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let text = format!(
        "{MINIMAL}http_transport:\n  tls_ca_file: {m}\npocket_node:\n  tls_ca_file: {m}\nstorage:\n  mode: redis\n  redis:\n    url: redis://127.0.0.1:6379\n    tls_ca_file: {m}\n",
        m = missing.display()
    );
    let keys = issue_keys(&text);
    assert_eq!(
        keys,
        vec![
            "http_transport.tls_ca_file",
            "pocket_node.tls_ca_file",
            "storage.redis.tls_ca_file",
            "storage.redis.tls_ca_file",
        ]
    );
}

#[test]
fn the_body_budget_holds_the_largest_body() {
    let with = |lines: &str| -> Vec<String> {
        let text = format!("{MINIMAL}default_max_body_size_bytes: 1000\nrelay_server:\n{lines}");
        issue_keys(&text)
    };
    assert_eq!(with("  max_body_bytes_in_flight: 1000\n"), Vec::<String>::new());
    assert_eq!(with("  max_body_bytes_in_flight: 0\n"), Vec::<String>::new());
    assert_eq!(
        with("  max_body_bytes_in_flight: 999\n"),
        vec!["relay_server.max_body_bytes_in_flight"]
    );
    assert_eq!(
        with("  body_budget_wait_ms: 60001\n"),
        vec!["relay_server.body_budget_wait_ms"]
    );
    let config = Config::from_yaml(MINIMAL).unwrap();
    assert_eq!(config.relay_server.max_body_bytes_in_flight, 1 << 30);
}

#[test]
fn example_config_in_repo_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/relay-miner.example.yaml");
    let config = Config::load(&path).unwrap();
    assert!(!config.services.is_empty());
}

/// A Go relayer config's backend pool (`urls` mixing plain URLs and `{name, url}`, with every pool key) loads.
#[test]
fn go_style_backend_pools_load() {
    let yaml = "
services:
  anvil:
    backends:
      jsonrpc:
        urls:
          - http://10.0.0.1:8545
          - {name: backup, url: \"http://10.0.0.2:8545/v2\"}
        load_balancing: first_healthy
        base_path: /rpc
        authentication: {username: u, password: p}
        max_retries: 2
        recovery_timeout_seconds: 0
        health_check:
          enabled: true
          endpoint: /health
          interval_seconds: 5
          unhealthy_threshold: 3
          healthy_threshold: 1
          method: POST
          request_body: '{\"jsonrpc\":\"2.0\"}'
          expected_status: [200, 204]
          expected_body: ok
          headers: {x-probe: '1'}
      grpc:
        urls: [\"10.0.0.1:9090\", \"10.0.0.2:9090\"]
";
    let config = Config::from_yaml(yaml).unwrap();
    assert_eq!(config.validate(), vec![]);
    let backends = &config.services["anvil"].backends;
    let jsonrpc = &backends["jsonrpc"];
    assert_eq!(
        jsonrpc.endpoints("jsonrpc"),
        [
            ("10.0.0.1:8545".to_string(), "http://10.0.0.1:8545".to_string()),
            ("backup".to_string(), "http://10.0.0.2:8545/v2".to_string()),
        ]
    );
    assert_eq!(jsonrpc.load_balancing, LoadBalancing::FirstHealthy);
    assert_eq!((jsonrpc.max_retries(), jsonrpc.recovery_timeout_seconds()), (2, 0));
    assert_eq!(jsonrpc.unhealthy_threshold(), 3);
    assert_eq!(
        jsonrpc.authentication.as_ref().unwrap().header_value().as_deref(),
        Some("Basic dTpw")
    );
    // Bare gRPC host:port entries, as `url` accepts them.
    assert_eq!(backends["grpc"].endpoints("grpc")[1].1, "http://10.0.0.2:9090");
    // Unset: Go's defaults.
    let minimal = &Config::from_yaml(MINIMAL).unwrap().services["anvil"].backends["jsonrpc"];
    assert_eq!(
        (
            minimal.max_retries(),
            minimal.recovery_timeout_seconds(),
            minimal.unhealthy_threshold()
        ),
        (1, 30, 5)
    );
}

/// Every pool key is checked, each problem naming its key.
#[test]
fn backend_pool_errors_name_the_key() {
    let p = "services.anvil.backends.jsonrpc";
    let cases: [(&str, String); 10] = [
        ("url: http://a:1\n        urls: [http://b:1]", format!("{p}.urls")),
        ("headers: {}", format!("{p}.url")),
        (
            "urls: [http://a:1, {name: a:1, url: \"http://c:1\"}]",
            format!("{p}.urls[1].name"),
        ),
        ("urls: [http://a:1, \"ftp://b\"]", format!("{p}.urls[1]")),
        ("url: http://a:1\n        max_retries: 4", format!("{p}.max_retries")),
        ("url: http://a:1\n        base_path: api", format!("{p}.base_path")),
        (
            "url: http://a:1\n        authentication: {bearer_token: x, plain_token: y}",
            format!("{p}.authentication"),
        ),
        (
            "url: http://a:1\n        authentication: {username: x}",
            format!("{p}.authentication.password"),
        ),
        (
            "url: http://a:1\n        health_check: {enabled: true}",
            format!("{p}.health_check.endpoint"),
        ),
        (
            "url: http://a:1\n        health_check: {enabled: true, endpoint: /h, interval_seconds: 0}",
            format!("{p}.health_check.interval_seconds"),
        ),
    ];
    for (backend, key) in cases {
        let yaml = format!("services:\n  anvil:\n    backends:\n      jsonrpc:\n        {backend}\n");
        assert_eq!(issue_keys(&yaml), vec![key.clone()], "{backend}");
    }
    // An unknown policy or key: a parse error naming the key and, for the policy, the valid values.
    let yaml =
        "services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://a:1\n        load_balancing: random\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(
        err.contains("load_balancing") && err.contains("round_robin") && err.contains("first_healthy"),
        "{err}"
    );
    let yaml = "services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://a:1\n        health_check: {intervall: 1}\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(err.contains("health_check") && err.contains("intervall"), "{err}");
}
