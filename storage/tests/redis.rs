//! The conformance suite on a real `redis-server`, the Go key layout on the wire, the blocking reader, and
//! cross-process behaviour (two backends on one server act like two miner processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{NotReady, RedisBackend, RedisConfig};
use storage::suite::{self, Fixture};
use storage::{NodeBatch, NodeStore as _};

async fn backend(server: &RedisServer, prefix: &str) -> RedisBackend {
    let mut cfg = RedisConfig::new(server.url()).with_prefix(prefix);
    cfg.leader_watch_interval = Duration::from_millis(20);
    RedisBackend::connect(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let server = Arc::new(RedisServer::start(ServerOptions::default()).unwrap());
    let n = AtomicU64::new(0);
    // Every check gets its own key prefix on the shared server: also proves the prefix isolates fleets.
    suite::run_all(|| {
        let server = server.clone();
        let prefix = format!("t{}", n.fetch_add(1, Ordering::Relaxed));
        async move {
            let b = backend(&server, &prefix).await;
            Fixture::with_guard(b.storage(), server)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_layout_on_the_wire() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    let s = b.storage();
    let ids = s.relay_log.append(vec![suite::relay("pokt1a", "s1", 1)]).await.unwrap();
    assert_eq!(server.command(&["TYPE", "ha:relays:pokt1a"]).unwrap(), "+stream\r\n");
    let entry = server.command(&["XRANGE", "ha:relays:pokt1a", "-", "+"]).unwrap();
    assert!(entry.contains(&ids[0].to_string()), "{entry}");
    assert!(entry.contains("$4\r\ndata\r\n$17\r\nrelay-pokt1a-s1-1\r\n"), "{entry}");
    s.relay_log.read("pokt1a", "miner-h-1", 10).await.unwrap();
    let groups = server.command(&["XINFO", "GROUPS", "ha:relays:pokt1a"]).unwrap();
    assert!(groups.contains("ha-miners"), "{groups}");

    let mut ns = s.tries.open("pokt1a", "s1").await.unwrap();
    tokio::task::spawn_blocking(move || {
        ns.write_batch(NodeBatch {
            puts: vec![(vec![0xab, 0x01], b"node".to_vec())],
            deletes: vec![],
        })
        .unwrap()
    })
    .await
    .unwrap();
    // The trie is relay-miner's own key, not the Go miner's SMST key (different formats).
    assert_eq!(
        server.command(&["HGET", "ha:miner:trie:pokt1a:s1", "ab01"]).unwrap(),
        "$4\r\nnode\r\n"
    );
    assert_eq!(
        server.command(&["EXISTS", "ha:smst:pokt1a:s1:nodes"]).unwrap(),
        ":0\r\n"
    );

    s.sessions
        .put("pokt1a", "s1", "claimed", b"rec".to_vec(), 0)
        .await
        .unwrap();
    assert_eq!(
        server
            .command(&["HGET", "ha:miner:sessions:pokt1a:s1", "state"])
            .unwrap(),
        "$7\r\nclaimed\r\n"
    );
    assert_eq!(
        server
            .command(&["SISMEMBER", "ha:miner:sessions:pokt1a:state:claimed", "s1"])
            .unwrap(),
        ":1\r\n"
    );
    let token = s
        .leadership
        .campaign("global", "host-42", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server.command(&["GET", "ha:miner:global_leader"]).unwrap(),
        "$7\r\nhost-42\r\n"
    );
    let pttl = server.command(&["PTTL", "ha:miner:global_leader"]).unwrap();
    assert!(pttl.starts_with(":2") || pttl.starts_with(":3"), "{pttl}");
    assert_eq!(
        server.command(&["GET", "ha:miner:global_leader:fencing"]).unwrap(),
        format!("${}\r\n{token}\r\n", token.to_string().len())
    );
    s.kv.set("application:pokt1app", b"v".to_vec(), None).await.unwrap();
    assert_eq!(
        server.command(&["GET", "ha:cache:application:pokt1app"]).unwrap(),
        "$1\r\nv\r\n"
    );
    // A Go miner's leader key (no token key) is seen as a holder and blocks us.
    server
        .command(&["SET", "ha:miner:leader:claim", "go-miner-1", "PX", "60000"])
        .unwrap();
    let held = s.leadership.leader("claim").await.unwrap().unwrap();
    assert_eq!((held.holder.as_str(), held.token), ("go-miner-1", 0));
    assert_eq!(
        s.leadership
            .campaign("claim", "me", Duration::from_secs(5))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_from_a_go_relayer_are_delivered() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    server
        .command(&["XADD", "ha:relays:pokt1go", "*", "data", "protobytes"])
        .unwrap();
    let got = b.storage().relay_log.read("pokt1go", "c", 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].relay.payload, b"protobytes");
    assert_eq!(got[0].relay.supplier, "pokt1go");
    assert!(got[0].relay.session_id.is_empty());
    assert_eq!(b.storage().relay_log.ack("pokt1go", &[got[0].id]).await.unwrap(), 1);
    assert_eq!(server.command(&["XLEN", "ha:relays:pokt1go"]).unwrap(), ":0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reader_waits_on_its_own_connection() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.block_timeout = Duration::from_secs(10);
    let b = RedisBackend::connect(cfg).await.unwrap();
    let mut reader = b.blocking_reader();
    // Nothing there yet: the read blocks (the stream and group get created for it).
    let waiting = tokio::spawn(async move {
        let got = reader.read("pokt1blk", "miner-1", 10).await.unwrap();
        (reader, got)
    });
    // Until the reader is parked in XREADGROUP BLOCK, there is no blocked client.
    suite::poll_until("the reader blocks", || {
        let s = server.command(&["INFO", "clients"]).unwrap();
        async move { s.contains("blocked_clients:1").then_some(()) }
    })
    .await;
    // The shared connection is not stalled behind the blocked read.
    let kv = b.storage().kv;
    let t = std::time::Instant::now();
    for i in 0..50 {
        kv.set(&format!("k{i}"), b"v".to_vec(), None).await.unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let ids = b
        .storage()
        .relay_log
        .append(vec![suite::relay("pokt1blk", "s1", 7)])
        .await
        .unwrap();
    let (mut reader, got) = waiting.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, ids[0]);
    assert_eq!(got[0].relay, suite::relay("pokt1blk", "s1", 7));
    // The reader keeps its connection for the next read.
    b.storage()
        .relay_log
        .append(vec![suite::relay("pokt1blk", "s1", 8)])
        .await
        .unwrap();
    assert_eq!(reader.read("pokt1blk", "miner-1", 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_leadership_tries_and_log() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let a = backend(&server, "ha").await.storage();
    let b = backend(&server, "ha").await.storage();
    let ttl = Duration::from_secs(30);
    let mut last = 0;
    for round in 0..5 {
        let (x, y) = tokio::join!(
            a.leadership.campaign("global", "a", ttl),
            b.leadership.campaign("global", "b", ttl)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x.is_some() ^ y.is_some(), "round {round}: exactly one wins");
        let (store, name, token) = match (x, y) {
            (Some(t), None) => (&a, "a", t),
            (None, Some(t)) => (&b, "b", t),
            _ => unreachable!(),
        };
        assert!(token > last, "token {token} after {last}");
        last = token;
        assert!(store.leadership.resign("global", name, token).await.unwrap());
    }

    // Trie nodes written by one process are prefetched by the other.
    let mut ns = a.tries.open("pokt1a", "s9").await.unwrap();
    tokio::task::spawn_blocking(move || {
        ns.write_batch(NodeBatch {
            puts: (0..3000u32).map(|i| (i.to_be_bytes().to_vec(), vec![7; 40])).collect(),
            deletes: vec![],
        })
        .unwrap();
    })
    .await
    .unwrap();
    let other = b.tries.open("pokt1a", "s9").await.unwrap();
    tokio::task::spawn_blocking(move || {
        for i in [0u32, 1500, 2999] {
            assert_eq!(other.get(&i.to_be_bytes()).unwrap(), Some(vec![7; 40]));
        }
        assert_eq!(other.get(&3000u32.to_be_bytes()).unwrap(), None);
    })
    .await
    .unwrap();

    // A consumer of one process dies; the other claims its entries.
    let ids = a
        .relay_log
        .append((0..5).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    assert_eq!(a.relay_log.read("pokt1a", "miner-a", 10).await.unwrap().len(), 5);
    let claimed = b
        .relay_log
        .claim("pokt1a", "miner-b", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(b.relay_log.ack("pokt1a", &ids).await.unwrap(), 5);

    // Session CAS across processes: the stale writer loses.
    a.sessions.put("pokt1a", "s1", "active", vec![], 0).await.unwrap();
    b.sessions.put("pokt1a", "s1", "claimed", vec![], 1).await.unwrap();
    assert!(a.sessions.put("pokt1a", "s1", "error", vec![], 1).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_memory_gauges() {
    let mut server = RedisServer::start(ServerOptions::max_memory(64 << 20)).unwrap();
    let mut cfg = RedisConfig::new(server.url());
    cfg.response_timeout = Duration::from_millis(500);
    cfg.connection_timeout = Duration::from_millis(300);
    cfg.reconnect_retries = 1;
    let b = RedisBackend::connect(cfg).await.unwrap();
    b.readiness().await.unwrap();
    let m = b.poll_memory().await.unwrap();
    assert_eq!(m.max_bytes, 64 << 20);
    assert!(m.used_bytes > 0 && m.ratio > 0.0 && m.ratio < 0.5, "{m:?}");
    assert!(m.last_poll_unix_ms > 0);
    assert_eq!(b.stats().memory(), m);

    server.kill9().unwrap();
    let err = b.readiness().await.unwrap_err();
    assert!(matches!(err, NotReady::Unreachable(_)), "{err:?}");
    assert_eq!(err.reason(), "redis_unreachable");
    let e = b.storage().kv.get("x").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(b.poll_memory().await.is_err());
    assert_eq!(b.stats().memory().poll_failures, 1);

    // The connection manager reconnects once the server is back.
    server.restart().unwrap();
    suite::poll_until("readiness after restart", || {
        let b = b.clone();
        async move { b.readiness().await.ok() }
    })
    .await;
}

fn server_with(args: &[&str]) -> RedisServer {
    RedisServer::start(ServerOptions {
        extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..ServerOptions::default()
    })
    .unwrap()
}

/// Under an evicting `maxmemory-policy` Redis deletes relay streams, tries and session records (`allkeys-*`) or
/// leases and meter counters (`volatile-*`) instead of refusing writes: readiness fails naming the setting,
/// whether the policy is read from `INFO MEMORY` or (when `INFO` is disabled) from `CONFIG GET`, and passes
/// once the policy is `noeviction`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_unless_the_eviction_policy_is_noeviction() {
    // Read from INFO MEMORY; CONFIG is disabled as on managed Redis.
    let server = server_with(&["--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""]);
    let b = backend(&server, "ha").await;
    assert_eq!(b.eviction_policy().await.unwrap().as_deref(), Some("allkeys-lru"));
    let err = b.readiness().await.unwrap_err();
    assert_eq!(err, NotReady::EvictionPolicy("allkeys-lru".into()));
    assert_eq!(err.reason(), "redis_eviction_policy");
    assert!(err.to_string().contains("maxmemory-policy is allkeys-lru"), "{err}");
    assert!(err.to_string().contains("noeviction"), "{err}");
    drop(b);
    drop(server);

    // Read from CONFIG GET when INFO is disabled; fixed at runtime, readiness passes.
    let server = server_with(&["--maxmemory-policy", "volatile-lru", "--rename-command", "INFO", ""]);
    let b = backend(&server, "ha").await;
    assert_eq!(b.eviction_policy().await.unwrap().as_deref(), Some("volatile-lru"));
    assert_eq!(
        b.readiness().await.unwrap_err(),
        NotReady::EvictionPolicy("volatile-lru".into())
    );
    assert_eq!(
        server
            .command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .unwrap(),
        "+OK\r\n"
    );
    assert_eq!(b.eviction_policy().await.unwrap().as_deref(), Some("noeviction"));
    b.readiness().await.unwrap();
    drop(b);
    drop(server);

    // The default policy (noeviction) passes.
    let server = server_with(&[]);
    let b = backend(&server, "ha").await;
    assert_eq!(b.eviction_policy().await.unwrap().as_deref(), Some("noeviction"));
    b.readiness().await.unwrap();
    drop(b);
    drop(server);

    // Neither readable: cannot be verified, not a known-bad policy; readiness passes (a WARN at connect).
    let server = server_with(&["--rename-command", "INFO", "", "--rename-command", "CONFIG", ""]);
    let b = backend(&server, "ha").await;
    assert_eq!(b.eviction_policy().await.unwrap(), None);
    b.readiness().await.unwrap();
}

/// Redis mode keeps relay-miner's tries at `ha:miner:trie:…`, apart from the Go miner's SMST at
/// `ha:smst:…:nodes` (different formats). A trie an earlier release kept at the Go key is found and moved to
/// relay-miner's key on open (or deleted with its namespace); a Go trie at that key is never read as
/// relay-miner's nor touched; a hash holding both is refused with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_at_the_go_key_are_taken_over_only_when_they_are_relay_miners() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    let s = b.storage();
    let hset = |key: &str, pairs: &[(&str, &str)]| {
        let mut args = vec!["HSET", key];
        for &(f, v) in pairs {
            args.push(f);
            args.push(v);
        }
        assert!(server.command(&args).unwrap().starts_with(':'));
    };
    // relay-miner's own trie, as an earlier release left it: root record "R", leaf and value records "L"/"V" + id.
    let ours = [("52", "root-rec"), ("4c00000000", "leaf-0"), ("5600000000", "value-0")];
    // A Go SMST node: the field is the hex of its 48-byte digest.
    let digest = "ab".repeat(48);
    let go = [(digest.as_str(), "go-node")];

    hset("ha:smst:pokt1a:old:nodes", &ours);
    let store = s.tries.open("pokt1a", "old").await.unwrap();
    assert_eq!(store.get(b"R").unwrap(), Some(b"root-rec".to_vec()));
    assert_eq!(store.get(&[b'V', 0, 0, 0, 0]).unwrap(), Some(b"value-0".to_vec()));
    assert_eq!(
        server.command(&["EXISTS", "ha:smst:pokt1a:old:nodes"]).unwrap(),
        ":0\r\n"
    );
    assert_eq!(server.command(&["HLEN", "ha:miner:trie:pokt1a:old"]).unwrap(), ":3\r\n");
    drop(store);
    // A second process opening it finds it at its own key.
    let other = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    let store = other.storage().tries.open("pokt1a", "old").await.unwrap();
    assert_eq!(store.get(b"R").unwrap(), Some(b"root-rec".to_vec()));
    drop(store);

    // A Go trie: not read, not changed; the namespace starts empty at relay-miner's key.
    hset("ha:smst:pokt1a:go:nodes", &go);
    let mut store = s.tries.open("pokt1a", "go").await.unwrap();
    assert_eq!(store.get(b"R").unwrap(), None);
    assert_eq!(
        store.get(&hex_of(&digest)).unwrap(),
        None,
        "a Go node is never read as ours"
    );
    tokio::task::spawn_blocking(move || {
        store
            .write_batch(NodeBatch {
                puts: vec![(b"R".to_vec(), b"ours".to_vec())],
                deletes: vec![],
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(server.command(&["HLEN", "ha:smst:pokt1a:go:nodes"]).unwrap(), ":1\r\n");
    assert_eq!(
        server.command(&["HGET", "ha:miner:trie:pokt1a:go", "52"]).unwrap(),
        "$4\r\nours\r\n"
    );
    s.tries.delete_namespace("pokt1a", "go").await.unwrap();
    assert_eq!(
        server.command(&["EXISTS", "ha:miner:trie:pokt1a:go"]).unwrap(),
        ":0\r\n"
    );
    assert_eq!(
        server.command(&["HLEN", "ha:smst:pokt1a:go:nodes"]).unwrap(),
        ":1\r\n",
        "the Go trie outlives our namespace"
    );

    // Both in one hash: refused, with the key in the error; nothing moved.
    hset("ha:smst:pokt1a:mixed:nodes", &ours);
    hset("ha:smst:pokt1a:mixed:nodes", &go);
    let Err(err) = s.tries.open("pokt1a", "mixed").await else {
        panic!("a hash of Go and relay-miner nodes was opened");
    };
    assert!(matches!(err, storage::StorageError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("ha:smst:pokt1a:mixed:nodes"), "{err}");
    assert_eq!(
        server.command(&["HLEN", "ha:smst:pokt1a:mixed:nodes"]).unwrap(),
        ":4\r\n"
    );
    assert_eq!(
        server.command(&["EXISTS", "ha:miner:trie:pokt1a:mixed"]).unwrap(),
        ":0\r\n"
    );

    // An earlier release's trie of a session pruned without being opened again goes with its namespace.
    hset("ha:smst:pokt1a:unopened:nodes", &ours);
    s.tries.delete_namespace("pokt1a", "unopened").await.unwrap();
    assert_eq!(
        server.command(&["EXISTS", "ha:smst:pokt1a:unopened:nodes"]).unwrap(),
        ":0\r\n"
    );
}

fn hex_of(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A trie's large values (relay bytes) are not held in the process's mirror: `get` reads them from Redis, so the
/// miner's memory does not grow with every relay of every live session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_trie_values_are_read_from_redis_not_held_in_memory() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "big").await;
    let small = vec![7u8; storage::redis::TRIE_INLINE_MAX];
    let large: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 4096]).collect();
    let mut ns = b.open_trie("pokt1a", "s1").await.unwrap();
    let (small2, large2) = (small.clone(), large.clone());
    let ns = tokio::task::spawn_blocking(move || {
        let mut puts = vec![(vec![b'R'], small2)];
        puts.extend(large2.into_iter().enumerate().map(|(i, v)| (vec![b'V', i as u8], v)));
        ns.write_batch(NodeBatch { puts, deletes: vec![] }).unwrap();
        ns
    })
    .await
    .unwrap();
    assert_eq!(
        ns.mirrored_bytes(),
        small.len(),
        "only the small record is held in memory"
    );
    assert_eq!(ns.len(), 51);
    let check = |ns: storage::redis::RedisNodeStore, large: Vec<Vec<u8>>, small: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            assert_eq!(ns.get(b"R").unwrap(), Some(small));
            for (i, v) in large.iter().enumerate() {
                assert_eq!(ns.get(&[b'V', i as u8]).unwrap().as_ref(), Some(v));
            }
            assert_eq!(ns.get(b"absent").unwrap(), None);
            ns
        })
    };
    let ns = check(ns, large.clone(), small.clone()).await.unwrap();
    drop(ns);
    // Opened again (prefetched from Redis by a new process): large values are still not held.
    let other = backend(&server, "big").await;
    let ns = other.open_trie("pokt1a", "s1").await.unwrap();
    assert_eq!(ns.mirrored_bytes(), small.len());
    let mut ns = check(ns, large.clone(), small.clone()).await.unwrap();
    // Deleted values are gone from both.
    let ns = tokio::task::spawn_blocking(move || {
        ns.write_batch(NodeBatch {
            puts: vec![],
            deletes: vec![vec![b'V', 0]],
        })
        .unwrap();
        assert_eq!(ns.get(&[b'V', 0]).unwrap(), None);
        ns
    })
    .await
    .unwrap();
    assert_eq!(ns.len(), 50);
}

/// A trie opened by a process that does not hold it yet (a failover's reload) is read one `HSCAN` page at a time,
/// each page's relay bytes dropped as it is mirrored: the load holds about a page of them at once, not the
/// session's (a standby was OOM-killed taking over when each reload held every relay of every session). Also for
/// an earlier release's trie taken over from the Go key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trie_load_holds_one_page_of_relay_bytes_not_the_sessions() {
    const VALUES: usize = 200;
    const SIZE: usize = 16 << 10;
    const TOTAL: u64 = (VALUES * SIZE) as u64;
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let writer = backend(&server, "load").await;
    let mut ns = writer.open_trie("pokt1a", "s1").await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut puts = vec![(vec![b'R'], vec![1u8; 8])];
        puts.extend((0..VALUES).map(|i| (vec![b'V', (i >> 8) as u8, i as u8], vec![i as u8; SIZE])));
        ns.write_batch(NodeBatch { puts, deletes: vec![] }).unwrap();
    })
    .await
    .unwrap();
    let reader = || async {
        let mut cfg = RedisConfig::new(server.url()).with_prefix("load");
        cfg.trie_scan_count = 10;
        RedisBackend::connect(cfg).await.unwrap()
    };
    let load = |b: RedisBackend| async move {
        let ns = b.open_trie("pokt1a", "s1").await.unwrap();
        assert_eq!(ns.len(), VALUES + 1);
        assert_eq!(ns.mirrored_bytes(), 8);
        let peak = b.stats().trie_load_peak_bytes();
        assert!(
            peak >= SIZE as u64 && peak <= TOTAL / 4,
            "held {peak} bytes at once loading {TOTAL} bytes of relays ten fields a page"
        );
        tokio::task::spawn_blocking(move || {
            assert_eq!(ns.get(&[b'V', 0, 7]).unwrap(), Some(vec![7u8; SIZE]));
        })
        .await
        .unwrap();
    };
    load(reader().await).await;

    // The same trie where an earlier release kept it (the Go key), taken over on open.
    assert_eq!(
        server
            .command(&["RENAME", "load:miner:trie:pokt1a:s1", "load:smst:pokt1a:s1:nodes"])
            .unwrap(),
        "+OK\r\n"
    );
    load(reader().await).await;
    assert_eq!(
        server.command(&["EXISTS", "load:smst:pokt1a:s1:nodes"]).unwrap(),
        ":0\r\n",
        "moved to relay-miner's key"
    );
}

/// When Redis cannot compute the consumer group's `lag` (an entry deleted after the group's last delivered id, as
/// trimming a pruned session does), the backlog counts the undelivered entries with an `XRANGE` capped at
/// `BACKLOG_COUNT_CAP` (uncapped, it held a whole outage's backlog, payloads included, in the script's memory
/// while Redis served nothing else): below the cap the count is exact, above it the cap is a lower bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_without_a_lag_counts_at_most_the_cap() {
    use storage::redis::BACKLOG_COUNT_CAP as CAP;
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let b = backend(&server, "lag").await;
    let s = b.storage();
    let ids = s
        .relay_log
        .append((0..CAP + 20).map(|n| suite::relay("pokt1a", "s1", n)).collect())
        .await
        .unwrap();
    assert_eq!(s.relay_log.read("pokt1a", "miner", 10).await.unwrap().len(), 10);
    let exact = s.relay_log.backlog("pokt1a").await.unwrap();
    assert_eq!((exact.undelivered, exact.pending), (CAP + 10, 10));
    // An undelivered entry deleted: Redis reports no lag any more.
    let stream = "lag:relays:pokt1a";
    assert_eq!(
        server.command(&["XDEL", stream, &ids[15].to_string()]).unwrap(),
        ":1\r\n"
    );
    let capped = s.relay_log.backlog("pokt1a").await.unwrap();
    assert_eq!(
        (capped.undelivered, capped.pending),
        (CAP, 10),
        "a lower bound at the cap"
    );
    // Below the cap it is exact again.
    let delivered = s.relay_log.read("pokt1a", "miner", 500).await.unwrap();
    assert_eq!(delivered.len(), 500);
    let below = s.relay_log.backlog("pokt1a").await.unwrap();
    assert_eq!((below.undelivered, below.pending), (CAP + 9 - 500, 510));
}
