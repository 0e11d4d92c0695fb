//! Nothing acknowledged is lost when the Redis server crashes: a server with `--appendonly yes --appendfsync
//! always` is killed with SIGKILL while appenders run, restarted on the same directory, and every append that
//! was acknowledged before the kill is present. The same backend value reconnects on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9_of_the_server() {
    let mut server = RedisServer::start(ServerOptions::durable()).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.response_timeout = Duration::from_millis(500);
    cfg.connection_timeout = Duration::from_millis(300);
    cfg.reconnect_retries = 2;
    let b = RedisBackend::connect(cfg).await.unwrap();
    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let log = b.storage().relay_log;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for batch in 0u64.. {
                let relays: Vec<_> = (0..16)
                    .map(|i| suite::relay("pokt1kill", "s1", (t << 48) | (batch * 16 + i)))
                    .collect();
                let hashes: Vec<Vec<u8>> = relays.iter().map(|r| r.relay_hash.clone()).collect();
                match log.append(relays).await {
                    Ok(ids) => {
                        assert_eq!(ids.len(), 16);
                        acked.lock().unwrap().extend(hashes);
                    }
                    Err(e) => {
                        // After the kill: retryable errors only, and the appender stops.
                        assert!(e.is_retryable(), "{e:?}");
                        failures += 1;
                        if failures >= 3 {
                            return;
                        }
                    }
                }
            }
        }));
    }
    suite::poll_until("enough acknowledged appends", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 4_000).then_some(()) }
    })
    .await;
    server.kill9().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<Vec<u8>> = std::mem::take(&mut *acked.lock().unwrap());

    server.restart().unwrap();
    suite::poll_until("the backend reconnects after the restart", || {
        let b = b.clone();
        async move { b.readiness().await.ok() }
    })
    .await;
    let log = b.storage().relay_log;
    let mut stored = HashSet::new();
    loop {
        let chunk = log.read("pokt1kill", "checker", 4096).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        stored.extend(chunk.into_iter().map(|e| e.relay.relay_hash));
    }
    let missing = acked.iter().filter(|h| !stored.contains(*h)).count();
    assert_eq!(missing, 0, "{missing} of {} acknowledged appends lost", acked.len());
    assert!(stored.len() >= acked.len());
    eprintln!("redis kill -9: {} acknowledged, {} stored", acked.len(), stored.len());
}
