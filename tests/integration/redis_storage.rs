//! Redis storage mode seen from the node and the relayer, on a real `redis-server`: the backend's stats reach
//! the process's `/metrics` (an OOM shows as Go-named series), and the relay meter's counter lives at its own
//! key, apart from the Go relayer's uPOKT counter.

use std::sync::Arc;
use std::time::Duration;

use relay_miner::config::FailBehavior;
use relay_miner::node::OpenedStorage;
use relay_miner::relayer::RelayMeter;
use relay_miner::relayer::meter::{Budget, MeterKey, MeterObserver};
use relay_miner::telemetry::Telemetry;
use storage::StorageError;
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

/// The value of the first sample line of `text` starting with `series` (name plus labels as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A Redis OOM used to be visible only in logs in Redis mode: the node registered no collector for the
/// backend's stats. After acquisitions refused with OOM on a `--maxmemory` server, the node's registry shows
/// them under the Go fleet's names, with the OOM count and the memory gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stats_reach_metrics_after_an_oom() {
    let server = RedisServer::start(ServerOptions::max_memory(64 << 20)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.instance_id = "miner-test-1".into();
    // As against Redis before 7, where acquisitions are refused at maxmemory (on 7 they are flagged allow-oom).
    let backend = RedisBackend::connect(cfg).await.unwrap().without_script_flags();
    let monitor = backend.start_memory_monitor();
    let opened = OpenedStorage::Redis(backend.clone(), monitor);
    let telemetry = Telemetry::new().unwrap();
    let probe = opened
        .spawn_readiness(telemetry.clone(), tokio::sync::watch::channel(None).0)
        .unwrap();

    // Every write is refused from now on (used_memory > 1 byte, policy noeviction).
    assert_eq!(server.command(&["CONFIG", "SET", "maxmemory", "1"]).unwrap(), "+OK\r\n");
    let leadership = opened.storage().leadership;
    for _ in 0..3 {
        let err = leadership
            .campaign("miner", "miner-test-1", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::OutOfMemory(_)), "{err:?}");
    }
    backend.poll_memory().await.unwrap();

    let text = telemetry.render_metrics();
    assert_eq!(
        sample(
            &text,
            r#"ha_miner_leader_acquisition_failures_total{instance="miner-test-1",reason="redis_oom"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"ha_miner_leader_acquisition_failures_total{instance="miner-test-1",reason="redis_error"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "ha_storage_redis_leader_acquisition_consecutive_failures"),
        Some(3.0)
    );
    assert!(
        sample(&text, "ha_storage_redis_oom_errors_total").is_some_and(|v| v >= 3.0),
        "{text}"
    );
    assert_eq!(sample(&text, "ha_miner_redis_max_memory_bytes"), Some(1.0));
    assert!(sample(&text, "ha_miner_redis_used_memory_bytes").is_some_and(|v| v > 1.0));
    assert!(sample(&text, "ha_miner_redis_memory_usage_ratio").is_some_and(|v| v > 1.0));
    assert!(sample(&text, "ha_storage_redis_memory_last_poll_timestamp_seconds").is_some_and(|v| v > 1.0e9));
    assert_eq!(sample(&text, "ha_storage_redis_memory_poll_failures_total"), Some(0.0));
    if let Some(p) = probe {
        p.abort();
    }
}

struct NoObserver;
impl MeterObserver for NoObserver {
    fn storage_error(&self, _: &'static str) {}
}

/// The meter's counter over the Redis backend is `ha:cache:meter:{session}:{supplier}:consumed` in compute
/// units, not the Go relayer's `ha:meter:{session}:{supplier}:consumed` (uPOKT): a Go counter already at the
/// Go key neither feeds our budget nor is written by our charges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_counts_compute_units_apart_from_the_go_upokt_counter() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let backend = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    let go_key = "ha:meter:sess-1:pokt1sup:consumed";
    // A Go relayer has charged 5,000,000 uPOKT to this session.
    assert_eq!(server.command(&["SET", go_key, "5000000"]).unwrap(), "+OK\r\n");

    let (_height, rx) = tokio::sync::watch::channel(0);
    let meter = RelayMeter::spawn(
        Arc::clone(&backend.storage().kv),
        FailBehavior::Closed,
        Duration::from_secs(60),
        Duration::from_secs(3600),
        rx,
        Arc::new(NoObserver),
    );
    let key = MeterKey {
        session_id: "sess-1".into(),
        supplier: "pokt1sup".into(),
    };
    let budget = Budget {
        limit_compute_units: 100,
        forget_at_height: 1000,
    };
    let _charge = meter.charge(&key, budget, 7).await.unwrap();
    meter.sync().await;

    assert_eq!(
        server
            .command(&["GET", "ha:cache:meter:sess-1:pokt1sup:consumed"])
            .unwrap(),
        "$1\r\n7\r\n"
    );
    assert_eq!(server.command(&["GET", go_key]).unwrap(), "$7\r\n5000000\r\n");
    assert!(
        server
            .command(&["TTL", "ha:cache:meter:sess-1:pokt1sup:consumed"])
            .unwrap()
            .starts_with(':')
    );
}

/// `rediss://`: the Redis backend speaks TLS (rustls) to a TLS-only port of a real `redis-server`, verifying its
/// certificate against `storage.redis.tls_ca_file`'s CA; a plaintext URL to the same port does not work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_speak_tls() {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, private) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&private, key.signing_key.serialize_pem()).unwrap();
    let tls_port = crate::support::free_port();
    let mut options = ServerOptions::default();
    for (flag, value) in [
        ("--tls-port", tls_port.to_string()),
        ("--tls-cert-file", cert.display().to_string()),
        ("--tls-key-file", private.display().to_string()),
        ("--tls-ca-cert-file", cert.display().to_string()),
        ("--tls-auth-clients", "no".to_string()),
    ] {
        options.extra_args.extend([flag.to_string(), value]);
    }
    let _server = RedisServer::start(options).unwrap();
    let mut cfg = RedisConfig::new(format!("rediss://127.0.0.1:{tls_port}/"));
    cfg.tls_root_cert_pem = Some(key.cert.pem().into_bytes());
    let backend = RedisBackend::connect(cfg).await.unwrap();
    let kv = backend.storage().kv;
    kv.set("tls-probe", b"over tls".to_vec(), None).await.unwrap();
    assert_eq!(kv.get("tls-probe").await.unwrap(), Some(b"over tls".to_vec()));

    let mut plain = RedisConfig::new(format!("redis://127.0.0.1:{tls_port}/"));
    plain.connection_timeout = Duration::from_millis(500);
    plain.reconnect_retries = 0;
    assert!(RedisBackend::connect(plain).await.is_err(), "plaintext to the TLS port");
}
