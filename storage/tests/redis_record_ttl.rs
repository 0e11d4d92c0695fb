//! Session record keys shared with the Go miner's layout lose the TTL the Go miner gave them once relay-miner
//! writes a record there: an index set expiring with our records in it hid them from the next leader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

fn ttl(server: &RedisServer, key: &str) -> String {
    server.command(&["TTL", key]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_write_persists_the_go_keys_it_touches() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    let s = b.storage();
    let (record, index) = ("ha:miner:sessions:pokt1a:s1", "ha:miner:sessions:pokt1a:index");
    let (active, claimed) = (
        "ha:miner:sessions:pokt1a:state:active",
        "ha:miner:sessions:pokt1a:state:claimed",
    );
    // What the Go miner leaves: its own session in the index and state sets, everything with session_ttl.
    for (cmd, key, arg) in [
        ("SADD", index, "go-session"),
        ("SADD", active, "go-session"),
        ("SADD", claimed, "go-session"),
    ] {
        server.command(&[cmd, key, arg]).unwrap();
        server.command(&["EXPIRE", key, "3600"]).unwrap();
    }
    server
        .command(&["HSET", record, "state", "active", "relay_count", "3"])
        .unwrap();
    server.command(&["EXPIRE", record, "3600"]).unwrap();
    assert_eq!(ttl(&server, index), ":3600\r\n");

    // The record exists with version 0 (no `version` field): written as new.
    let v = s
        .sessions
        .put("pokt1a", "s1", "active", b"one".to_vec(), 0)
        .await
        .unwrap();
    for key in [record, index, active, "ha:miner:sessions:suppliers"] {
        assert_eq!(ttl(&server, key), ":-1\r\n", "{key} keeps no TTL");
    }
    // Moved to another state: that state's set (with its Go TTL) is persisted too.
    assert_eq!(ttl(&server, claimed), ":3600\r\n");
    s.sessions
        .put("pokt1a", "s1", "claimed", b"two".to_vec(), v)
        .await
        .unwrap();
    assert_eq!(ttl(&server, claimed), ":-1\r\n");
    let listed = s.sessions.list(Some("pokt1a"), None).await.unwrap();
    assert!(listed.iter().any(|r| r.session_id == "s1" && r.data == b"two"));
}
