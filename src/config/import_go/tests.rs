//! Unit tests of the Go config import: each mapped key lands on our key with its value, Go's zero-value defaults
//! are kept, every other key is reported dropped or needing attention, and a full Go relayer + miner pair (every
//! key set, `testdata/`) becomes a config our loader accepts.

use serde_norway::Value;

use super::{Fate, GoFile, Import, Options, go_duration_seconds, import};
use crate::config::{
    BackendEndpointConfig, Config, FailBehavior, LoadBalancing, LogFormat, StorageMode, ValidationMode,
};

const REAL_RELAYER: &str = include_str!("testdata/go-relayer.yaml");
const REAL_MINER: &str = include_str!("testdata/go-miner.yaml");

/// The smallest Go relayer our validator accepts once imported.
const MIN_RELAYER: &str = "services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n";

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

fn run(relayer: &str, miner: Option<&str>) -> Import {
    let miner = miner.map(yaml);
    import(&yaml(relayer), miner.as_ref(), &Options::default())
}

fn config(import: &Import) -> Config {
    Config::from_yaml(&import.yaml).unwrap_or_else(|e| panic!("{e}\n{}", import.yaml))
}

fn fate<'a>(import: &'a Import, file: GoFile, key: &str) -> &'a Fate {
    let found = import.items.iter().find(|i| i.file == file && i.key == key);
    &found
        .unwrap_or_else(|| panic!("no item for {file} {key}:\n{}", import.report()))
        .fate
}

fn assert_dropped(import: &Import, file: GoFile, key: &str) {
    assert!(
        matches!(fate(import, file, key), Fate::Dropped(_)),
        "{file} {key}: {:?}",
        fate(import, file, key)
    );
}

/// The reason a key was dropped (panics if it was not).
fn dropped_reason<'a>(import: &'a Import, file: GoFile, key: &str) -> &'a str {
    match fate(import, file, key) {
        Fate::Dropped(why) => why,
        other => panic!("{file} {key}: expected dropped, got {other:?}"),
    }
}

/// The attention text of a key (panics if the key is not an attention item).
fn attention<'a>(import: &'a Import, file: GoFile, key: &str) -> &'a str {
    match fate(import, file, key) {
        Fate::Attention(what) => what,
        other => panic!("{file} {key}: expected attention, got {other:?}"),
    }
}

#[test]
fn every_relayer_key_with_a_meaning_lands_on_our_key_with_its_value() {
    let relayer = r#"
listen_addr: 127.0.0.1:18080
redis: {url: "redis://r:6380", namespace: {base_prefix: fleet}}
pocket_node: {query_node_rpc_url: "http://n:1", query_node_grpc_url: "https://n:2", grpc_insecure: true}
keys: {keys_file: /k.yaml}
default_validation_mode: eager
default_request_timeout_seconds: 17
default_max_body_size_bytes: 2000000
services:
  svc:
    validation_mode: optimistic
    timeout_profile: t
    pool_profile: p
    max_body_size_bytes: 1000000
    default_backend: rest
    backends:
      rest:
        urls: ["http://a:1", {name: b, url: "http://b:1"}]
        base_path: /api
        load_balancing: first_healthy
        headers: {X-A: b}
        authentication: {username: u, password: pw}
        health_check: {enabled: true, endpoint: /h, interval_seconds: 7, timeout_seconds: 2, unhealthy_threshold: 9,
                       healthy_threshold: 4, method: POST, request_body: "{}", content_type: text/plain,
                       expected_body: ok, expected_status: [201], headers: {X-P: q}}
        max_retries: 3
        recovery_timeout_seconds: 11
      grpc: {url: "g:9"}
timeout_profiles: {t: {request_timeout_seconds: 12, response_header_timeout_seconds: 6, dial_timeout_seconds: 2}}
pool_profiles: {p: {max_conns_per_host: 7, max_idle_conns_per_host: 3, idle_conn_timeout_seconds: 40}}
http_transport: {max_idle_conns: 11, max_idle_conns_per_host: 12, max_conns_per_host: 13, idle_conn_timeout_seconds: 14,
                 dial_timeout_seconds: 15, response_header_timeout_seconds: 16, tcp_keep_alive_seconds: 17}
relay_meter: {enabled: false, fail_behavior: closed, cache_ttl: 1h30m}
metrics: {enabled: false, addr: ":19090"}
health_check: {enabled: true, addr: "127.0.0.1:18081"}
logging: {level: warn, format: text}
"#;
    let import = run(relayer, None);
    assert!(import.issues.is_empty(), "{}", import.report());
    assert_eq!(import.attention().count(), 0, "{}", import.report());
    let c = config(&import);
    assert_eq!(c.listen_addr, "127.0.0.1:18080");
    assert_eq!(c.storage.mode, StorageMode::Redis);
    assert_eq!(
        (c.storage.redis.url.as_str(), c.storage.redis.base_prefix.as_str()),
        ("redis://r:6380", "fleet")
    );
    let node = &c.pocket_node;
    assert_eq!(
        (node.query_node_rpc_url.as_str(), node.query_node_grpc_url.as_str()),
        ("http://n:1", "https://n:2")
    );
    assert!(node.grpc_insecure);
    assert_eq!(c.keys.keys_file.as_deref(), Some(std::path::Path::new("/k.yaml")));
    assert_eq!(c.default_validation_mode, ValidationMode::Eager);
    assert_eq!(
        (c.default_request_timeout_seconds, c.default_max_body_size_bytes),
        (17, 2_000_000)
    );
    let svc = &c.services["svc"];
    assert_eq!(svc.validation_mode, Some(ValidationMode::Optimistic));
    assert_eq!(
        (svc.timeout_profile.as_deref(), svc.pool_profile.as_deref()),
        (Some("t"), Some("p"))
    );
    assert_eq!(
        (svc.max_body_size_bytes, svc.default_backend.as_deref()),
        (Some(1_000_000), Some("rest"))
    );
    let rest = &svc.backends["rest"];
    assert_eq!(
        rest.endpoints("rest"),
        vec![("a:1".into(), "http://a:1".into()), ("b".into(), "http://b:1".into())]
    );
    assert!(matches!(&rest.urls[0], BackendEndpointConfig::Url(u) if u == "http://a:1"));
    assert_eq!(
        (rest.base_path.as_deref(), rest.load_balancing),
        (Some("/api"), LoadBalancing::FirstHealthy)
    );
    assert_eq!(rest.headers["X-A"], "b");
    let auth = rest.authentication.as_ref().unwrap();
    assert_eq!(
        (auth.username.as_deref(), auth.password.as_deref()),
        (Some("u"), Some("pw"))
    );
    let hc = rest.health_check.as_ref().unwrap();
    assert!(hc.enabled);
    assert_eq!(
        (hc.endpoint.as_deref(), hc.interval_seconds, hc.timeout_seconds),
        (Some("/h"), 7, 2)
    );
    assert_eq!(
        (hc.unhealthy_threshold, hc.healthy_threshold, hc.method.as_str()),
        (9, 4, "POST")
    );
    assert_eq!(
        (hc.request_body.as_deref(), hc.content_type.as_deref()),
        (Some("{}"), Some("text/plain"))
    );
    assert_eq!(
        (hc.expected_body.as_deref(), hc.expected_status.as_slice()),
        (Some("ok"), &[201u16][..])
    );
    assert_eq!(hc.headers["X-P"], "q");
    assert_eq!((rest.max_retries, rest.recovery_timeout_seconds), (Some(3), Some(11)));
    assert_eq!(svc.backends["grpc"].url_for("grpc"), "http://g:9");
    let t = &c.timeout_profiles["t"];
    assert_eq!(
        (
            t.request_timeout_seconds,
            t.response_header_timeout_seconds,
            t.dial_timeout_seconds
        ),
        (12, 6, 2)
    );
    let p = &c.pool_profiles["p"];
    assert_eq!(
        (
            p.max_conns_per_host,
            p.max_idle_conns_per_host,
            p.idle_conn_timeout_seconds
        ),
        (7, 3, 40)
    );
    let h = &c.http_transport;
    assert_eq!(
        (h.max_idle_conns, h.max_idle_conns_per_host, h.max_conns_per_host),
        (11, 12, 13)
    );
    assert_eq!((h.idle_conn_timeout_seconds, h.dial_timeout_seconds), (14, 15));
    assert_eq!((h.response_header_timeout_seconds, h.tcp_keep_alive_seconds), (16, 17));
    let m = &c.relay_meter;
    assert_eq!(
        (m.enabled, m.fail_behavior, m.cache_ttl),
        (false, FailBehavior::Closed, 5400)
    );
    assert_eq!((c.metrics.enabled, c.metrics.addr.as_str()), (false, "0.0.0.0:19090"));
    assert_eq!(
        (c.health_check.enabled, c.health_check.addr.as_str()),
        (true, "127.0.0.1:18081")
    );
    assert_eq!((c.logging.level.as_str(), c.logging.format), ("warn", LogFormat::Text));
    // Reported where it went.
    assert_eq!(
        fate(&import, GoFile::Relayer, "redis.namespace.base_prefix"),
        &Fate::Mapped {
            to: "storage.redis.base_prefix".into(),
            note: None
        }
    );
}

#[test]
fn every_miner_key_with_a_meaning_lands_on_our_key_with_its_value() {
    let miner = r#"
redis: {url: "redis://r:6380", consumer_name: m-1, claim_idle_timeout_ms: 5000}
pocket_node: {query_timeout_seconds: 9, chain_id: pocket-beta}
keys: {keys_file: /k.yaml}
hot_reload_enabled: false
leader_election: {leader_ttl_seconds: 40, heartbeat_rate_seconds: 12}
transaction: {gas_limit: 500000, gas_price: 0.000002upokt, gas_adjustment: 1.5, tx_timeout_min_seconds: 300,
              tx_timeout_default_seconds: 200}
balance_monitor: {enabled: false, check_interval_seconds: 60, balance_threshold_upokt: 42,
                  stake_warning_proof_threshold: 8, stake_critical_proof_threshold: 2}
"#;
    let import = run(MIN_RELAYER, Some(miner));
    assert!(import.issues.is_empty(), "{}", import.report());
    let c = config(&import);
    let r = &c.storage.redis;
    assert_eq!(
        (r.consumer_name.as_deref(), r.claim_idle_timeout_ms),
        (Some("m-1"), 5000)
    );
    assert_eq!((r.leader_ttl_seconds, r.heartbeat_rate_seconds), (40, 12));
    assert_eq!(
        (c.pocket_node.query_timeout_seconds, c.pocket_node.chain_id.as_str()),
        (9, "pocket-beta")
    );
    assert_eq!(c.keys.hot_reload, Some(false));
    let t = &c.transaction;
    assert_eq!(
        (t.gas_limit, t.gas_price.as_str(), t.gas_adjustment),
        (500_000, "0.000002upokt", 1.5)
    );
    // Go's floor is our minimum; Go's fallback (`tx_timeout_default_seconds`) is not.
    assert_eq!(t.tx_timeout_default_seconds, 300);
    assert_dropped(&import, GoFile::Miner, "transaction.tx_timeout_default_seconds");
    let b = &c.balance_monitor;
    assert_eq!(
        (b.enabled, b.check_interval_seconds, b.balance_threshold_upokt),
        (false, 60, 42)
    );
    assert_eq!(
        (b.stake_warning_proof_threshold, b.stake_critical_proof_threshold),
        (8, 2)
    );
    assert!(matches!(
        fate(&import, GoFile::Miner, "leader_election.leader_ttl_seconds"),
        Fate::Mapped { to, .. } if to == "storage.redis.leader_ttl_seconds"
    ));
}

/// Values Go reads as "its default" (zeros, empties, absent keys whose Go default differs from ours) are written
/// with Go's meaning, each with a note.
#[test]
fn zero_and_unset_values_keep_the_go_meaning() {
    let relayer = r#"
redis: {url: "redis://r:1"}
default_request_timeout_seconds: 0
services:
  a: {backends: {jsonrpc: {url: "http://a:1"}}}
  s: {timeout_profile: streaming, pool_profile: medium, backends: {rest: {url: "http://b:1"}}}
  z: {timeout_profile: zero, backends: {rest: {url: "http://c:1"}}}
timeout_profiles: {zero: {request_timeout_seconds: 45, response_header_timeout_seconds: 0}}
logging: {level: TRACE, format: console}
"#;
    let miner = r#"
redis: {claim_idle_timeout_ms: 0}
leader_election: {leader_ttl_seconds: 0, heartbeat_rate_seconds: 0}
pocket_node: {chain_id: ""}
transaction: {gas_price: "", gas_adjustment: 0, tx_timeout_min_seconds: 0}
balance_monitor: {check_interval_seconds: 0, stake_warning_proof_threshold: 0, stake_critical_proof_threshold: 0}
"#;
    let import = run(relayer, Some(miner));
    assert!(import.issues.is_empty(), "{}", import.report());
    let c = config(&import);
    assert_eq!(c.default_request_timeout_seconds, 30);
    // Go's grpc_insecure default is false (TLS); ours is true.
    assert!(!c.pocket_node.grpc_insecure);
    assert!(matches!(
        fate(&import, GoFile::Relayer, "pocket_node.grpc_insecure (not set)"),
        Fate::Mapped { note: Some(_), .. }
    ));
    // A service without a profile uses Go's `fast`; Go's built-in profiles a service uses are written.
    assert_eq!(c.services["a"].timeout_profile.as_deref(), Some("fast"));
    let fast = &c.timeout_profiles["fast"];
    assert_eq!(
        (
            fast.request_timeout_seconds,
            fast.response_header_timeout_seconds,
            fast.dial_timeout_seconds
        ),
        (30, 30, 5)
    );
    let streaming = &c.timeout_profiles["streaming"];
    assert_eq!(
        (
            streaming.request_timeout_seconds,
            streaming.response_header_timeout_seconds
        ),
        (600, 600)
    );
    let medium = &c.pool_profiles["medium"];
    assert_eq!(
        (
            medium.max_conns_per_host,
            medium.max_idle_conns_per_host,
            medium.idle_conn_timeout_seconds
        ),
        (100, 20, 90)
    );
    assert!(!c.pool_profiles.contains_key("low"), "unused built-ins are not written");
    // Go's 0 header timeout is none: only the request timeout bounds it.
    assert_eq!(c.timeout_profiles["zero"].response_header_timeout_seconds, 45);
    assert_eq!((c.logging.level.as_str(), c.logging.format), ("info", LogFormat::Json));
    let r = &c.storage.redis;
    assert_eq!(
        (r.claim_idle_timeout_ms, r.leader_ttl_seconds, r.heartbeat_rate_seconds),
        (60_000, 30, 10)
    );
    assert_eq!(c.pocket_node.chain_id, "pocket");
    let t = &c.transaction;
    assert_eq!(
        (t.gas_price.as_str(), t.gas_adjustment, t.tx_timeout_default_seconds),
        ("0.00001upokt", 1.7, 120)
    );
    let b = &c.balance_monitor;
    assert_eq!(
        (
            b.check_interval_seconds,
            b.stake_warning_proof_threshold,
            b.stake_critical_proof_threshold
        ),
        (300, 10, 3)
    );
    assert!(matches!(
        fate(&import, GoFile::Miner, "redis.claim_idle_timeout_ms"),
        Fate::Mapped { note: Some(n), .. } if n.contains("60000")
    ));
}

#[test]
fn keys_without_a_meaning_are_dropped_with_a_reason_and_not_written() {
    let relayer = format!(
        "{MIN_RELAYER}redis: {{url: \"redis://r:1\", pool_size: 50, namespace: {{streams_prefix: relays}}}}\n\
         pprof: {{enabled: true, addr: \"0.0.0.0:6060\"}}\nlogging: {{async: true, sampling: true}}\n\
         cache_warmup: {{enabled: true}}\nhttp_transport: {{disable_compression: true}}\n\
         timeout_profiles: {{fast: {{tls_handshake_timeout_seconds: 3}}}}\n"
    );
    let miner = "metrics: {addr: \"0.0.0.0:9090\"}\nworker_pools: {cpu_multiplier: 8}\ndeduplication_ttl_blocks: 10\n\
                 supplier_claiming: {claim_ttl_seconds: 90}\n\
                 transaction: {max_rebroadcasts: 2, tx_timeout_max_seconds: 590}\nbatch_size: 10\n";
    let import = run(&relayer, Some(miner));
    assert!(import.issues.is_empty(), "{}", import.report());
    for key in [
        "redis.pool_size",
        "redis.namespace.streams_prefix",
        "pprof.enabled",
        "pprof.addr",
        "logging.async",
        "logging.sampling",
        "cache_warmup.enabled",
        "http_transport.disable_compression",
        "timeout_profiles.fast.tls_handshake_timeout_seconds",
    ] {
        assert_dropped(&import, GoFile::Relayer, key);
    }
    for key in [
        "worker_pools.cpu_multiplier",
        "deduplication_ttl_blocks",
        "supplier_claiming.claim_ttl_seconds",
        "transaction.max_rebroadcasts",
        "transaction.tx_timeout_max_seconds",
        "batch_size",
    ] {
        assert_dropped(&import, GoFile::Miner, key);
    }
    for absent in [
        "pprof",
        "pool_size",
        "worker_pools",
        "cache_warmup",
        "max_rebroadcasts",
        "deduplication",
    ] {
        assert!(!import.yaml.contains(absent), "{absent} written:\n{}", import.yaml);
    }
    assert_eq!(import.attention().count(), 0, "{}", import.report());
}

#[test]
fn the_files_disagreeing_on_the_node_is_an_attention_item_and_the_relayer_value_is_written() {
    let relayer =
        format!("{MIN_RELAYER}pocket_node: {{query_node_rpc_url: \"http://a:26657\", grpc_insecure: false}}\n");
    let miner = "pocket_node: {query_node_rpc_url: \"http://b:26657\", grpc_insecure: false}\n";
    let import = run(&relayer, Some(miner));
    let what = attention(&import, GoFile::Miner, "pocket_node.query_node_rpc_url");
    assert!(
        what.contains("http://a:26657") && what.contains("http://b:26657"),
        "{what}"
    );
    assert_eq!(config(&import).pocket_node.query_node_rpc_url, "http://a:26657");
    // Agreeing values are reported as such.
    assert!(matches!(
        fate(&import, GoFile::Miner, "pocket_node.grpc_insecure"),
        Fate::Mapped { note: Some(n), .. } if n.contains("same as the relayer")
    ));
    // A miner file not setting grpc_insecure means Go's false: a relayer with true disagrees with it.
    let relayer = format!("{MIN_RELAYER}pocket_node: {{grpc_insecure: true}}\n");
    let import = run(&relayer, Some("pocket_node: {}\n"));
    attention(&import, GoFile::Miner, "pocket_node.grpc_insecure (not set)");
}

/// Go's miner served its metrics on their own listener; one process serves one: the relayer's stands and the
/// miner's is reported as dropped, naming both (scrape configs must follow), not as a decision to make.
#[test]
fn one_metrics_listener_for_two_go_listeners_keeps_the_relayers() {
    let relayer = format!("{MIN_RELAYER}metrics: {{addr: \"0.0.0.0:9090\"}}\n");
    let import = run(&relayer, Some("metrics: {addr: \":9092\"}\n"));
    let why = dropped_reason(&import, GoFile::Miner, "metrics.addr");
    assert!(
        why.contains("0.0.0.0:9092") && why.contains("0.0.0.0:9090") && why.contains("scrapes"),
        "{why}"
    );
    assert_eq!(import.attention().count(), 0, "{}", import.report());
    assert_eq!(config(&import).metrics.addr, "0.0.0.0:9090");
}

/// Go's default listeners count: a miner file without `metrics` served on :9092, which this process does not.
#[test]
fn go_default_listeners_are_compared_too() {
    let import = run(MIN_RELAYER, Some("redis: {url: \"redis://r:1\"}\n"));
    let why = dropped_reason(&import, GoFile::Miner, "metrics.addr (not set)");
    assert!(why.contains("0.0.0.0:9092") && why.contains("0.0.0.0:9090"), "{why}");
    assert_eq!(import.attention().count(), 0, "{}", import.report());
    let c = config(&import);
    assert_eq!(
        (c.metrics.addr.as_str(), c.health_check.addr.as_str()),
        ("0.0.0.0:9090", "0.0.0.0:8081")
    );
    // Set to the relayer's default, nothing to decide.
    let import = run(MIN_RELAYER, Some("metrics: {addr: \"0.0.0.0:9090\"}\n"));
    assert_eq!(import.attention().count(), 0, "{}", import.report());
}

/// An empty `redis.url` is not set: the other file's URL is used, without a disagreement.
#[test]
fn an_empty_redis_url_is_not_set() {
    let relayer = format!("{MIN_RELAYER}redis: {{url: \"\"}}\nmetrics: {{addr: \":9092\"}}\n");
    let import = run(&relayer, Some("redis: {url: \"redis://r:1\"}\n"));
    assert_eq!(import.attention().count(), 0, "{}", import.report());
    assert_dropped(&import, GoFile::Relayer, "redis.url");
    assert_eq!(config(&import).storage.redis.url, "redis://r:1");
}

#[test]
fn keys_we_cannot_read_say_what_to_do_instead() {
    let relayer = format!("{MIN_RELAYER}keys: {{keys_dir: /keys}}\n");
    let miner = "keys: {keyring: {backend: file, dir: /kr, app_name: pocket, key_names: [s1, s2]}}\n";
    let import = run(&relayer, Some(miner));
    let dir = attention(&import, GoFile::Relayer, "keys.keys_dir");
    assert!(
        dir.contains("private_key_hex") && dir.contains("keys.keys_file"),
        "{dir}"
    );
    let ring = attention(&import, GoFile::Miner, "keys.keyring");
    assert!(
        ring.contains("pocketd keys export") && ring.contains("--keyring-backend file"),
        "{ring}"
    );
    assert!(ring.contains("s1, s2") && ring.contains("keys.keys_file"), "{ring}");
    assert!(
        !import.yaml.contains("keys_dir") && !import.yaml.contains("keyring"),
        "{}",
        import.yaml
    );
}

#[test]
fn features_we_do_not_have_and_unknown_keys_need_attention() {
    let relayer = format!(
        "{MIN_RELAYER}simulation: {{enabled: true, max_concurrent: 4}}\nredis: {{url: \"redis://r:1\", namespace: \
         {{streams_prefix: rl}}}}\nlisten_adr: 0.0.0.0:1\nsuppliers: []\n"
    );
    let miner = "transaction: {disable_claim_batching: true}\nservice_factors: {anvil: 0.5}\n\
                 balance_monitor: {check_interval: 5}\ntransaction_x: 1\n";
    let import = run(&relayer, Some(miner));
    attention(&import, GoFile::Relayer, "simulation.enabled");
    assert_dropped(&import, GoFile::Relayer, "simulation.max_concurrent");
    assert!(attention(&import, GoFile::Relayer, "redis.namespace.streams_prefix").contains("`rl`"));
    for key in ["listen_adr", "suppliers"] {
        assert!(attention(&import, GoFile::Relayer, key).contains("not a key of the Go relayer config"));
    }
    attention(&import, GoFile::Miner, "transaction.disable_claim_batching");
    attention(&import, GoFile::Miner, "service_factors");
    attention(&import, GoFile::Miner, "balance_monitor.check_interval");
    attention(&import, GoFile::Miner, "transaction_x");
    // Miner-only keys in the relayer's file are unknown there (the Go relayer ignored them).
    let import = run(
        &format!("{MIN_RELAYER}redis: {{url: \"redis://r:1\", consumer_name: x}}\n"),
        None,
    );
    attention(&import, GoFile::Relayer, "redis.consumer_name");
    assert!(import.issues.is_empty(), "{}", import.report());
}

#[test]
fn a_wrong_type_is_an_attention_item_not_a_guess() {
    let import = run(
        &format!("{MIN_RELAYER}default_request_timeout_seconds: soon\nmetrics: {{enabled: yes-ish}}\n"),
        None,
    );
    assert!(attention(&import, GoFile::Relayer, "default_request_timeout_seconds").contains("`soon`"));
    attention(&import, GoFile::Relayer, "metrics.enabled");
    assert!(!import.yaml.contains("soon"), "{}", import.yaml);
}

/// A Go value our validator refuses is written as it is; the validation names our key, the reason and the Go key
/// it came from.
#[test]
fn a_value_our_validator_refuses_is_kept_and_reported_with_its_go_key() {
    let miner = "transaction: {tx_timeout_min_seconds: 590, gas_adjustment: 1.05}\n";
    let import = run(MIN_RELAYER, Some(miner));
    assert!(
        import.yaml.contains("tx_timeout_default_seconds: 590"),
        "{}",
        import.yaml
    );
    assert!(import.yaml.contains("gas_adjustment: 1.05"), "{}", import.yaml);
    let keys: Vec<&str> = import.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["transaction.gas_adjustment", "transaction.tx_timeout_default_seconds"],
        "{}",
        import.report()
    );
    let report = import.report();
    assert!(
        report.contains("validation: the output does not validate (2 problems)"),
        "{report}"
    );
    assert!(
        report.contains("transaction.tx_timeout_default_seconds: must be between 1 and 540")
            && report.contains("[from the miner file's `transaction.tx_timeout_min_seconds`]"),
        "{report}"
    );
    // An issue of a key under a written mapping is traced to it.
    let relayer = "services: {a: {backends: {jsonrpc: {url: \"http://a:1\", headers: {\"bad header\": x}}}}}\n";
    let import = run(relayer, None);
    assert_eq!(
        import.origin_of("services.a.backends.jsonrpc.headers.bad header"),
        Some(&(GoFile::Relayer, "services.a.backends.jsonrpc.headers".to_string()))
    );
}

#[test]
fn storage_is_redis_when_the_go_files_have_a_redis_url_unless_chosen() {
    let import = run(MIN_RELAYER, None);
    assert_eq!(import.storage, StorageMode::Embedded);
    assert!(import.issues.is_empty(), "{}", import.report());
    let import = run(MIN_RELAYER, Some("redis: {url: \"redis://r:1\"}\n"));
    assert_eq!(
        (import.storage, config(&import).storage.mode),
        (StorageMode::Redis, StorageMode::Redis)
    );
    assert!(
        import
            .report()
            .starts_with("storage.mode: redis (the Go files have a redis.url"),
        "{}",
        import.report()
    );
    let miner = yaml("redis: {url: \"redis://r:1\", consumer_name: m}\nleader_election: {leader_ttl_seconds: 9}\n");
    let options = Options {
        storage: Some(StorageMode::Embedded),
    };
    let import = super::import(&yaml(MIN_RELAYER), Some(&miner), &options);
    assert_eq!(config(&import).storage.mode, StorageMode::Embedded);
    assert!(import.issues.is_empty(), "{}", import.report());
    assert!(!import.yaml.contains("redis"), "{}", import.yaml);
    assert_dropped(&import, GoFile::Miner, "redis.url");
    assert_dropped(&import, GoFile::Miner, "leader_election.leader_ttl_seconds");
}

/// Every leaf key of a Go file, dotted (sequences are leaves).
fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let k = k.as_str().unwrap();
                leaves(
                    &if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    },
                    v,
                    out,
                );
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// A Go relayer + miner pair with every key of the surface doc set imports to a config our loader accepts, and
/// every key of both files is reported.
#[test]
fn a_full_go_pair_imports_to_a_valid_config_and_every_key_is_reported() {
    let import = run(REAL_RELAYER, Some(REAL_MINER));
    assert!(import.issues.is_empty(), "{}\n{}", import.report(), import.yaml);
    let c = config(&import);
    assert_eq!(c.services.len(), 3);
    assert_eq!(c.storage.mode, StorageMode::Redis);
    for (file, text) in [(GoFile::Relayer, REAL_RELAYER), (GoFile::Miner, REAL_MINER)] {
        let mut keys = Vec::new();
        leaves("", &yaml(text), &mut keys);
        for key in keys {
            let reported = import.items.iter().any(|i| {
                i.file == file && (i.key == key || key.strip_prefix(i.key.as_str()).is_some_and(|r| r.starts_with('.')))
            });
            assert!(reported, "{file} {key} not reported:\n{}", import.report());
        }
    }
    // A typical pair leaves nothing to decide (Go's miner metrics on :9092 are reported as dropped).
    assert_eq!(import.attention().count(), 0, "{}", import.report());
    assert!(dropped_reason(&import, GoFile::Miner, "metrics.addr").contains("0.0.0.0:9092"));
    assert!(
        import
            .yaml
            .starts_with("# relay-miner config written by `relay-miner import-go-config`")
    );
}

#[test]
fn go_durations_convert_to_whole_seconds() {
    for (text, secs) in [
        ("2h", 7200),
        ("1h30m", 5400),
        ("90s", 90),
        ("1.5h", 5400),
        ("0", 0),
        ("2000ms", 2),
    ] {
        assert_eq!(go_duration_seconds(text), Ok(secs), "{text}");
    }
    for bad in ["", "2", "-1h", "1500ms", "2d", "h"] {
        assert!(go_duration_seconds(bad).is_err(), "{bad}");
    }
}

/// Go's `tx_timeout_max_seconds` below our 540 s cap is a decision (we may keep a tx alive longer than Go did); at
/// or above it (Go's default 590), or 0 (Go's default), it is dropped with our cap as the reason.
#[test]
fn go_tx_timeout_max_below_our_cap_needs_attention_and_its_default_is_dropped() {
    let import = run(MIN_RELAYER, Some("transaction: {tx_timeout_max_seconds: 300}\n"));
    let what = attention(&import, GoFile::Miner, "transaction.tx_timeout_max_seconds");
    assert!(what.contains("up to 540 s"), "{what}");
    assert!(!import.yaml.contains("300"), "{}", import.yaml);
    for max in ["590", "0", "600"] {
        let import = run(
            MIN_RELAYER,
            Some(&format!("transaction: {{tx_timeout_max_seconds: {max}}}\n")),
        );
        let why = dropped_reason(&import, GoFile::Miner, "transaction.tx_timeout_max_seconds");
        assert!(why.contains("caps a tx's timeout at 540 s"), "{max}: {why}");
        assert_eq!(import.attention().count(), 0, "{}", import.report());
    }
}

/// `password: 123456` is the string "123456" for Go's yaml.v3: written quoted, so our loader reads the same
/// string.
#[test]
fn an_unquoted_number_password_or_token_is_written_as_its_text() {
    let relayer = "services:\n  a:\n    backends:\n      jsonrpc:\n        url: http://a:1\n        \
                   authentication: {username: 42, password: 123456}\n      rest:\n        url: http://b:1\n        \
                   authentication: {bearer_token: 987654}\n";
    let import = run(relayer, None);
    assert!(import.issues.is_empty(), "{}", import.report());
    let c = config(&import);
    let backends = &c.services["a"].backends;
    let auth = backends["jsonrpc"].authentication.as_ref().unwrap();
    assert_eq!(
        (auth.username.as_deref(), auth.password.as_deref()),
        (Some("42"), Some("123456"))
    );
    let auth = backends["rest"].authentication.as_ref().unwrap();
    assert_eq!(auth.bearer_token.as_deref(), Some("987654"));
    assert!(
        import.yaml.contains("password: '123456'") || import.yaml.contains("password: \"123456\""),
        "{}",
        import.yaml
    );
}

/// The report (stderr, often a CI log) never carries a credential: URL userinfo, query values and API-key path
/// segments are redacted in every printed value (the files disagreeing, a value of the wrong type, a URL our
/// validator refuses), and a password, token or header value is named by its key only.
#[test]
fn the_report_never_prints_a_credential() {
    let relayer = "redis: {url: \"redis://:hunter2secret@r:6379\"}\n\
                   pocket_node: {query_node_rpc_url: \"https://user:apikeyrpc@node:443\", \
                   query_node_grpc_url: \"https://node:9090?api_key=qsgrpcsecret\"}\n\
                   services:\n  a:\n    backends:\n      jsonrpc:\n        \
                   url: \"ftp://eth.example/v2/abcdef1234567890abcdef\"\n        \
                   headers: {X-Api-Key: [hdrsecret]}\n        authentication: {password: [pwsecret]}\n";
    let miner = "redis: {url: \"redis://:otherpass@r:6379\"}\n\
                 pocket_node: {query_node_rpc_url: \"https://user:apikeyminer@node:443\", \
                 query_node_grpc_url: \"https://node:9090?api_key=qsminersecret\"}\n";
    let import = run(relayer, Some(miner));
    let report = import.report();
    for secret in [
        "hunter2secret",
        "otherpass",
        "apikeyrpc",
        "apikeyminer",
        "qsgrpcsecret",
        "qsminersecret",
        "abcdef1234567890abcdef",
        "hdrsecret",
        "pwsecret",
    ] {
        assert!(!report.contains(secret), "{secret} printed:\n{report}");
    }
    // What is printed still says what happened, and where.
    assert!(
        report.contains("miner: redis.url: attention: the relayer file has `redis://***@r:6379`"),
        "{report}"
    );
    assert!(report.contains("`https://node:9090?api_key=***`"), "{report}");
    assert!(report.contains("`ftp://eth.example/v2/***` is not a URL"), "{report}");
    assert!(
        report.contains("services.a.backends.jsonrpc.headers.X-Api-Key: attention: `<not printed: credentials>`"),
        "{report}"
    );
    assert!(
        report.contains("services.a.backends.jsonrpc.authentication.password: attention:"),
        "{report}"
    );
    // A conflict on a credential key names the key only.
    let relayer = format!("{MIN_RELAYER}keys: {{keys_file: /k.yaml}}\n");
    let import = run(&relayer, Some("keys: {keys_file: /k2.yaml}\n"));
    assert!(import.report().contains("/k2.yaml"), "{}", import.report());
    assert!(super::is_secret("services.a.backends.rest.authentication"));
    assert!(super::is_secret("services.a.backends.rest.health_check.headers.X-K"));
    assert!(!super::is_secret("storage.redis.url"));
    assert_eq!(
        super::mask_quoted("invalid type: string `s3cret`, expected \"x\" or `y"),
        "invalid type: string `***`, expected \"***\" or `***"
    );
}
