//! Redis persistence: without AOF a Redis restart loses acknowledged relays and the tries of claimed sessions.
//! Readiness fails on a real `redis-server` without `--appendonly yes` (unless told to accept it), passes with
//! it; the setting is also read from `INFO persistence` when `CONFIG` is disabled (managed Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{NotReady, Persistence, RedisBackend, RedisConfig};

use common::metrics;

async fn connect(server: &RedisServer, require_aof: bool) -> RedisBackend {
    let mut cfg = RedisConfig::new(server.url());
    cfg.require_aof = require_aof;
    RedisBackend::connect(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_without_aof_unless_accepted() {
    let server = RedisServer::start(ServerOptions::without_aof()).unwrap();
    let b = connect(&server, true).await;
    assert_eq!(
        b.persistence().await.unwrap(),
        Persistence {
            aof: Some(false),
            appendfsync: Some("everysec".into())
        }
    );
    let err = b.readiness().await.unwrap_err();
    assert_eq!(err, NotReady::NoAof);
    assert_eq!(err.reason(), "redis_no_aof");
    assert!(err.to_string().contains("allow_without_aof"), "{err}");
    // Opted out: ready.
    connect(&server, false).await.readiness().await.unwrap();
    // AOF turned on at runtime: ready again.
    server.command(&["CONFIG", "SET", "appendonly", "yes"]).unwrap();
    b.readiness().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aof_is_read_with_config_and_without_it() {
    for (options, fsync) in [
        (ServerOptions::durable(), "always"),
        (ServerOptions::default(), "everysec"),
    ] {
        let server = RedisServer::start(options).unwrap();
        let b = connect(&server, true).await;
        assert_eq!(
            b.persistence().await.unwrap(),
            Persistence {
                aof: Some(true),
                appendfsync: Some(fsync.into())
            }
        );
        b.readiness().await.unwrap();
    }
    // CONFIG disabled (renamed away, as managed Redis does): AOF from INFO persistence, appendfsync unknown.
    for (aof, ready) in [(true, true), (false, false)] {
        let mut options = if aof {
            ServerOptions::default()
        } else {
            ServerOptions::without_aof()
        };
        options.extra_args = vec!["--rename-command".into(), "CONFIG".into(), String::new()];
        let server = RedisServer::start(options).unwrap();
        let b = connect(&server, true).await;
        assert_eq!(
            b.persistence().await.unwrap(),
            Persistence {
                aof: Some(aof),
                appendfsync: None
            }
        );
        assert_eq!(b.readiness().await.is_ok(), ready);
    }
}

/// What an acknowledged write has survived is on `/metrics`, as read at connect: with Redis's defaults
/// (`appendfsync everysec`, no `wait_replicas`) only the primary applied it; `always` and replicas are shown
/// as such, and what Redis does not say is `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_durability_of_an_acknowledged_write_is_a_gauge() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = connect(&server, true).await;
    let everysec = r#"ha_storage_redis_ack_durability{aof="yes",appendfsync="everysec",wait_replicas="0"} 1"#;
    assert!(metrics(&b).contains(everysec), "{}", metrics(&b));

    let durable = RedisServer::start(ServerOptions::durable()).unwrap();
    let mut cfg = RedisConfig::new(durable.url());
    cfg.wait_replicas = 1;
    let b = RedisBackend::connect(cfg).await.unwrap();
    let always = r#"ha_storage_redis_ack_durability{aof="yes",appendfsync="always",wait_replicas="1"} 1"#;
    assert!(metrics(&b).contains(always), "{}", metrics(&b));

    let hidden = RedisServer::start(ServerOptions {
        extra_args: vec!["--rename-command".into(), "CONFIG".into(), String::new()],
        ..ServerOptions::default()
    })
    .unwrap();
    let b = connect(&hidden, true).await;
    let unknown = r#"ha_storage_redis_ack_durability{aof="yes",appendfsync="unknown",wait_replicas="0"} 1"#;
    assert!(metrics(&b).contains(unknown), "{}", metrics(&b));
}
