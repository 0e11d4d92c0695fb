//! `storage.redis.wait_replicas` / `wait_timeout_ms`: off by default, mapped as given, bad values refused naming
//! the key (storage crate, `redis::replicas` module, for what they do).

use super::{Config, ConfigError, MINIMAL, issue_keys};

const REDIS: &str = "storage:\n  mode: redis\n  redis:\n    url: redis://127.0.0.1:6379\n";

fn with(extra: &str) -> String {
    format!("{MINIMAL}{REDIS}{extra}")
}

#[test]
fn replica_acknowledgement_is_off_by_default_and_read_as_given() {
    let config = Config::from_yaml(&with("")).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(
        (config.storage.redis.wait_replicas, config.storage.redis.wait_timeout_ms),
        (0, 500)
    );
    let config = Config::from_yaml(&with("    wait_replicas: 2\n    wait_timeout_ms: 250\n")).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert_eq!(
        (config.storage.redis.wait_replicas, config.storage.redis.wait_timeout_ms),
        (2, 250)
    );
    // Off, a zero timeout is never used.
    assert!(issue_keys(&with("    wait_timeout_ms: 0\n")).is_empty());
    assert!(issue_keys(&with("    wait_replicas: 1\n    wait_timeout_ms: 10000\n")).is_empty());
}

#[test]
fn bad_replica_acknowledgement_values_are_refused_naming_the_key() {
    for bad in ["0", "10001", "3600000"] {
        assert_eq!(
            issue_keys(&with(&format!("    wait_replicas: 1\n    wait_timeout_ms: {bad}\n"))),
            vec!["storage.redis.wait_timeout_ms"],
            "{bad}"
        );
    }
    let text = with("    wait_replicas: 1\n    wait_timeout_ms: 0\n");
    let issue = &Config::from_yaml(&text).unwrap().validate()[0];
    assert!(issue.problem.contains("(0, 10000] ms"), "{issue}");
    for (yaml, key) in [
        ("    wait_replicas: -1\n", "storage.redis.wait_replicas"),
        ("    wait_replicas: two\n", "storage.redis.wait_replicas"),
        ("    wait_timeout_ms: -5\n", "storage.redis.wait_timeout_ms"),
        ("    wait_replica: 1\n", "storage.redis.wait_replica"),
    ] {
        match Config::from_yaml(&with(yaml)) {
            Err(ConfigError::Parse { key: got, problem }) => {
                assert_eq!(got, key, "{yaml}: {problem}");
                if key.ends_with("wait_replica") {
                    assert!(problem.contains("unknown field"), "{problem}");
                }
            }
            other => panic!("{yaml}: expected a parse error naming {key}, got {other:?}"),
        }
    }
}
