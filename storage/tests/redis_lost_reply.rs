//! A Redis increment whose reply is lost after the server applied it: the server is stopped (SIGSTOP) while the
//! script is sent, the client gives up at its response timeout, and the server runs the script once continued.
//! `increment_once` retried with the same operation counts it once; the plain `increment` retried counts it
//! twice (why the relay meter syncs with `increment_once`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};
use storage::suite::poll_until;
use storage::{IncrementOnce, StorageError};

const TTL: Option<Duration> = Some(Duration::from_secs(600));

async fn backend(server: &RedisServer) -> RedisBackend {
    let cfg = RedisConfig {
        response_timeout: Duration::from_millis(300),
        ..RedisConfig::new(server.url())
    };
    RedisBackend::connect(cfg).await.unwrap()
}

/// The counter as the server holds it, read on a connection of its own.
fn server_value(server: &RedisServer, key: &str) -> String {
    server.command(&["GET", key]).unwrap()
}

/// Runs `call` while the server is stopped: the request sits in the server's socket until the client's response
/// timeout fails the call, then the server is continued and runs it. Returns the call's error once the server
/// has applied it (`applied` is the counter's expected reply then).
async fn lose_the_reply<T: std::fmt::Debug>(
    server: &RedisServer,
    key: &str,
    applied: &str,
    call: impl std::future::Future<Output = Result<T, StorageError>>,
) -> StorageError {
    server.pause().unwrap();
    let err = call.await.expect_err("the server is stopped: no reply");
    server.resume().unwrap();
    poll_until("the stopped call is applied", || async {
        (server_value(server, key) == applied).then_some(())
    })
    .await;
    err
}

/// `call` again until it is answered (the client may still be reconnecting after the timeout: a retryable error).
async fn answered<F, Fut>(mut call: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64, StorageError>>,
{
    poll_until("the call is answered", || {
        let fut = call();
        async move {
            match fut.await {
                Ok(v) => Some(v),
                Err(e) if e.is_retryable() => None,
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_increment_once_whose_reply_was_lost_counts_once() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server).await;
    let kv = b.storage().kv;
    let key = "meter:s1:pokt1sup:consumed";
    let wire = "ha:cache:meter:s1:pokt1sup:consumed";
    let op = |seq| IncrementOnce {
        writer: "relayer-a".into(),
        seq,
    };
    // Loads the script (a stopped server must get the script call itself, not a NOSCRIPT round).
    assert_eq!(kv.increment_once(key, &op(1), 10, TTL).await.unwrap(), 10);

    let err = lose_the_reply(&server, wire, "$2\r\n15\r\n", kv.increment_once(key, &op(2), 5, TTL)).await;
    assert!(err.is_retryable(), "{err:?}");
    let second = op(2);
    assert_eq!(
        answered(|| kv.increment_once(key, &second, 5, TTL)).await,
        15,
        "the retry finds operation 2 applied"
    );
    assert_eq!(server_value(&server, wire), "$2\r\n15\r\n");
    assert_eq!(
        server_value(&server, "ha:cache:meter:s1:pokt1sup:consumed:once:relayer-a"),
        "$1\r\n2\r\n"
    );
    let ttl: i64 = server.command(&["PTTL", wire]).unwrap()[1..].trim().parse().unwrap();
    assert!(ttl > 0, "the counter keeps its TTL: {ttl}");

    // The plain increment retried after the same loss counts twice.
    kv.increment("plain", 10, TTL).await.unwrap();
    lose_the_reply(&server, "ha:cache:plain", "$2\r\n15\r\n", kv.increment("plain", 5, TTL)).await;
    assert_eq!(answered(|| kv.increment("plain", 5, TTL)).await, 20);
}
