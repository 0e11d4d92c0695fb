//! The conformance suite on redb (relay WAL on and off), restart persistence, the kill -9 durability tests and
//! end-to-end checks of the relay WAL (rollover, oversized records, switching it off and on).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use storage::suite::{self, Fixture};
use storage::{MinedRelay, NodeBatch, RedbBackend, RedbConfig};

fn config(path: &Path, wal: bool) -> RedbConfig {
    let mut c = RedbConfig::new(path);
    c.relay_wal = wal;
    c
}

/// Small WAL segments and checkpoints, so rollover, recycling and checkpoints happen within a short test.
fn small_wal(path: &Path) -> RedbConfig {
    let mut c = RedbConfig::new(path);
    c.wal_segment_bytes = 64 << 10;
    c.wal_checkpoint_bytes = 16 << 10;
    c.wal_checkpoint_interval = Duration::from_millis(50);
    c
}

async fn fixture_with(wal: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::open(config(&dir.path().join("store.redb"), wal))
        .await
        .unwrap();
    Fixture::with_guard(backend.storage(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    suite::run_all(|| fixture_with(true)).await;
}

/// With applies deferred for an hour (and no checkpoint to end the wait), every relay-log read must still see
/// its writes at once: a read that waited for a deferred apply without flushing the writer would hang here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_applies_deferred_for_an_hour() {
    let suite = suite::run_all(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(&dir.path().join("store.redb"), true);
        c.wal_apply_delay = Duration::from_secs(3600);
        c.wal_checkpoint_interval = Duration::from_secs(3600);
        c.wal_checkpoint_bytes = 1 << 40;
        let backend = RedbBackend::open(c).await.unwrap();
        Fixture::with_guard(backend.storage(), dir)
    });
    tokio::time::timeout(Duration::from_secs(300), suite)
        .await
        .expect("a relay-log operation waited for deferred WAL applies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_without_wal() {
    suite::run_all(|| fixture_with(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_unacked_entries_are_redelivered() {
    restart_case(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_unacked_entries_are_redelivered_without_wal() {
    restart_case(false).await;
}

async fn restart_case(wal: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let first_token;
    {
        let b = RedbBackend::open(config(&path, wal)).await.unwrap();
        let s = b.storage();
        let ids = s
            .relay_log
            .append((0..10).map(|n| suite::relay("pokt1a", "s1", n)).collect())
            .await
            .unwrap();
        let got = s.relay_log.read("pokt1a", "miner-1", 6).await.unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(s.relay_log.ack("pokt1a", &ids[..3]).await.unwrap(), 3);
        s.sessions
            .put("pokt1a", "s1", "claimed", b"rec".to_vec(), 0)
            .await
            .unwrap();
        s.kv.set("cache", b"v".to_vec(), None).await.unwrap();
        let mut ns = s.tries.open("pokt1a", "s1").await.unwrap();
        tokio::task::spawn_blocking(move || {
            ns.write_batch(NodeBatch {
                puts: vec![(vec![7; 32], b"node".to_vec())],
                deletes: vec![],
            })
            .unwrap();
        })
        .await
        .unwrap();
        first_token = s
            .leadership
            .campaign("global", "me", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    }
    let b = suite::reopen_redb(config(&path, wal)).await;
    let s = b.storage();
    let again = s.relay_log.read("pokt1a", "miner-2", 100).await.unwrap();
    let hashes: Vec<Vec<u8>> = again.iter().map(|e| e.relay.relay_hash.clone()).collect();
    let expect: Vec<Vec<u8>> = (3..10).map(|n| suite::relay("pokt1a", "s1", n).relay_hash).collect();
    assert_eq!(
        hashes, expect,
        "every unacknowledged entry comes back, acknowledged ones do not"
    );
    let more = s
        .relay_log
        .append(vec![suite::relay("pokt1a", "s1", 10)])
        .await
        .unwrap();
    assert!(more[0] > again[again.len() - 1].id, "sequence continues after restart");
    assert_eq!(s.sessions.get("pokt1a", "s1").await.unwrap().unwrap().version, 1);
    assert_eq!(s.kv.get("cache").await.unwrap().as_deref(), Some(&b"v"[..]));
    let ns = s.tries.open("pokt1a", "s1").await.unwrap();
    let node = tokio::task::spawn_blocking(move || ns.get(&[7; 32]).unwrap())
        .await
        .unwrap();
    assert_eq!(node.as_deref(), Some(&b"node"[..]));
    let token = s
        .leadership
        .campaign("global", "me", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(
        token > first_token,
        "fencing token persisted across restarts: {token} after {first_token}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_sweep_deletes_expired_keys() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::open(RedbConfig::new(dir.path().join("s.redb")))
        .await
        .unwrap();
    let s = b.storage();
    s.kv.set("short", b"1".to_vec(), Some(Duration::from_millis(50)))
        .await
        .unwrap();
    s.kv.set("long", b"1".to_vec(), Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let removed = suite::poll_until("the sweep removes the expired key", || {
        let b = b.clone();
        async move { Some(b.sweep().await.unwrap()).filter(|n| *n == 1) }
    })
    .await;
    assert_eq!(removed, 1);
    assert_eq!(b.sweep().await.unwrap(), 0);
    assert!(s.kv.get("long").await.unwrap().is_some());
}

const CHILD_ENV: &str = "RELAY_MINER_STORAGE_KILL9_DB";
/// `0` runs the child with `relay_wal = false`.
const CHILD_WAL_ENV: &str = "RELAY_MINER_STORAGE_KILL9_WAL";
const HEAVY_ENV: &str = "RELAY_MINER_STORAGE_KILL9_HEAVY_DB";
const ROUND_ENV: &str = "RELAY_MINER_STORAGE_KILL9_ROUND";

/// Child side of `acknowledged_relays_survive_kill_9`: appends forever and prints each acknowledged relay id.
/// A no-op when the env var is unset (normal test runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_child_appender() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let wal = std::env::var(CHILD_WAL_ENV).map_or(true, |v| v != "0");
    let b = RedbBackend::open(config(Path::new(&path), wal)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let log = b.storage().relay_log;
        tasks.push(tokio::spawn(async move {
            for batch in 0u64.. {
                let relays: Vec<_> = (0..16)
                    .map(|i| suite::relay("pokt1kill", "s1", (t << 48) | (batch * 16 + i)))
                    .collect();
                let hashes: Vec<String> = relays.iter().map(|r| hex(&r.relay_hash)).collect();
                log.append(relays).await.unwrap();
                let mut out = std::io::stdout().lock();
                for h in hashes {
                    writeln!(out, "ACK {h}").unwrap();
                }
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs the child test `name` of this binary with `env`, hands every stdout line to `on_line` (which returns
/// whether the line counts towards `target`), SIGKILLs it once `target` lines counted (calling `before_kill`
/// first), then hands over the lines it printed before dying (a torn last line is ignored).
fn run_and_kill(
    name: &str,
    env: &[(&str, String)],
    target: usize,
    mut on_line: impl FnMut(&str) -> bool,
    before_kill: impl FnOnce(),
) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child: Child = cmd.spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut counted = 0;
    while counted < target {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "child exited early");
        if let Some(l) = line.strip_suffix('\n')
            && on_line(l)
        {
            counted += 1;
        }
    }
    before_kill();
    child.kill().unwrap(); // SIGKILL
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(l) = line.strip_suffix('\n') {
            on_line(l);
        }
    }
    child.wait().unwrap();
}

async fn kill9_case(wal: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill9.redb");
    let mut acked = Vec::new();
    // Kill mid-stream once enough appends were acknowledged (the child keeps appending meanwhile).
    run_and_kill(
        "kill9_child_appender",
        &[
            (CHILD_ENV, path.display().to_string()),
            (CHILD_WAL_ENV, if wal { "1" } else { "0" }.to_owned()),
        ],
        3_000,
        |l| match l.strip_prefix("ACK ") {
            Some(h) => {
                acked.push(h.to_owned());
                true
            }
            None => false,
        },
        || {},
    );

    let b = RedbBackend::open(config(&path, wal)).await.unwrap();
    let log = b.storage().relay_log;
    let mut stored = HashSet::new();
    loop {
        let chunk = log.read("pokt1kill", "checker", 4096).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        stored.extend(chunk.into_iter().map(|e| hex(&e.relay.relay_hash)));
    }
    let missing: Vec<&String> = acked.iter().filter(|h| !stored.contains(*h)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged relays lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(stored.len() >= acked.len());
    eprintln!(
        "kill -9 (wal {wal}): {} acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_relays_survive_kill_9() {
    kill9_case(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_relays_survive_kill_9_without_wal() {
    kill9_case(false).await;
}

/// The META table as the backend defines it (for stripping the identity off a database).
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

/// A database and WAL from before WAL identities (this version's files with the identity removed: META
/// `db_id` and the WAL's `identity/` directory), killed mid-stream, open and recover every acknowledged relay, and are bound to one
/// identity afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_database_and_wal_without_identity_recover_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.redb");
    let wal_dir = dir.path().join("legacy.redb.wal");
    let mut acked = Vec::new();
    run_and_kill(
        "kill9_child_appender",
        &[(CHILD_ENV, path.display().to_string()), (CHILD_WAL_ENV, "1".to_owned())],
        3_000,
        |l| match l.strip_prefix("ACK ") {
            Some(h) => {
                acked.push(h.to_owned());
                true
            }
            None => false,
        },
        || {},
    );
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.open_table(META).unwrap().remove("db_id").unwrap().is_some());
        txn.commit().unwrap();
    }
    std::fs::remove_dir_all(wal_dir.join("identity")).unwrap();

    let b = RedbBackend::open(config(&path, true)).await.unwrap();
    let log = b.storage().relay_log;
    let mut stored = HashSet::new();
    loop {
        let chunk = log.read("pokt1kill", "checker", 4096).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        stored.extend(chunk.into_iter().map(|e| hex(&e.relay.relay_hash)));
    }
    let missing = acked.iter().filter(|h| !stored.contains(*h)).count();
    assert_eq!(
        missing,
        0,
        "acknowledged relays lost after the upgrade ({} acknowledged)",
        acked.len()
    );
    drop((log, b));
    let b = suite::reopen_redb(config(&path, true)).await;
    drop(b);
    let bound = std::fs::read_to_string(wal_dir.join("identity/wal-id")).unwrap();
    let db_id = suite::poll_until("the database is closed", || async {
        let db = redb::Database::open(&path).ok()?;
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let id = txn.open_table(META).unwrap().get("db_id").unwrap().unwrap().value();
        Some(id)
    })
    .await;
    assert_eq!(bound, format!("relay-miner relay WAL of database {db_id:016x}\n"));
}

const HEAVY_SUPPLIERS: [&str; 3] = ["pokt1h0", "pokt1h1", "pokt1h2"];

/// A relay whose every field derives from `n` (payload 200..1500 bytes), so its exact bytes can be checked.
fn heavy_relay(supplier: &str, n: u64) -> MinedRelay {
    let len = 200 + (n % 1301) as usize;
    MinedRelay {
        supplier: supplier.to_owned(),
        session_id: format!("s{}", n % 5),
        session_end_height: n % 1000,
        relay_hash: n.to_be_bytes().repeat(4),
        payload: (0..len).map(|i| (n as usize).wrapping_add(i * 31) as u8).collect(),
    }
}

fn n_of(relay: &MinedRelay) -> u64 {
    u64::from_be_bytes(relay.relay_hash[..8].try_into().unwrap())
}

/// Child side of `acknowledged_relays_survive_kill_9_during_wal_rollover`: 6 appenders with batches of 1..24
/// relays over 3 suppliers on small WAL segments print `ACK task supplier id n` per acknowledged relay; one
/// consumer reads entries of the third supplier, prints `READ supplier id`, acknowledges them and prints
/// `DEL supplier id` once the ack returned. A no-op when the env var is unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_child_heavy() {
    let Ok(path) = std::env::var(HEAVY_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let b = suite::reopen_redb(small_wal(Path::new(&path))).await;
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let log = b.storage().relay_log;
        tasks.push(tokio::spawn(async move {
            let mut counter = 0u64;
            for k in 0u64.. {
                let size = 1 + (k * 7 + t) % 24;
                let relays: Vec<MinedRelay> = (0..size)
                    .map(|_| {
                        counter += 1;
                        let n = (round << 56) | (t << 40) | counter;
                        heavy_relay(HEAVY_SUPPLIERS[(n % 3) as usize], n)
                    })
                    .collect();
                let ids = log.append(relays.clone()).await.unwrap();
                let mut out = std::io::stdout().lock();
                for (r, id) in relays.iter().zip(ids) {
                    writeln!(out, "ACK {t} {} {} {}", r.supplier, id.major, n_of(r)).unwrap();
                }
                out.flush().unwrap();
            }
        }));
    }
    let log = b.storage().relay_log;
    tasks.push(tokio::spawn(async move {
        loop {
            let got = log.read(HEAVY_SUPPLIERS[2], "consumer", 32).await.unwrap();
            if got.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            let ids: Vec<_> = got.iter().map(|e| e.id).collect();
            {
                // Printed before the ack: a kill between the ack and its DEL lines leaves them READ only.
                let mut out = std::io::stdout().lock();
                for id in &ids {
                    writeln!(out, "READ {} {}", HEAVY_SUPPLIERS[2], id.major).unwrap();
                }
                out.flush().unwrap();
            }
            log.ack(HEAVY_SUPPLIERS[2], &ids).await.unwrap();
            let mut out = std::io::stdout().lock();
            for id in ids {
                writeln!(out, "DEL {} {}", HEAVY_SUPPLIERS[2], id.major).unwrap();
            }
            out.flush().unwrap();
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
}

/// What the parent learnt from the children's output, across rounds.
#[derive(Default)]
struct Ledger {
    /// (supplier, id) → n of every acknowledged append.
    acked: BTreeMap<(String, u64), u64>,
    /// (supplier, id) acknowledged as consumed (deleted) by the child's consumer.
    deleted: HashSet<(String, u64)>,
    /// (supplier, id) the consumer read and was about to acknowledge (deleted or not, depending on the kill).
    read: HashSet<(String, u64)>,
    /// Last id per (round, task, supplier): one caller's ids must increase.
    last_per_task: HashMap<(u64, String, String), u64>,
}

impl Ledger {
    fn line(&mut self, round: u64, l: &str) -> bool {
        let parts: Vec<&str> = l.split(' ').collect();
        match parts.as_slice() {
            ["ACK", task, supplier, id, n] => {
                let (id, n): (u64, u64) = (id.parse().unwrap(), n.parse().unwrap());
                let prev = self.acked.insert((supplier.to_string(), id), n);
                assert!(
                    prev.is_none(),
                    "id {supplier}/{id} acknowledged twice (n {prev:?} and {n})"
                );
                let last = self
                    .last_per_task
                    .entry((round, task.to_string(), supplier.to_string()))
                    .or_insert(0);
                assert!(id > *last, "ids of one caller increase: {supplier} {id} after {last}");
                *last = id;
                true
            }
            ["DEL", supplier, id] => {
                self.deleted.insert((supplier.to_string(), id.parse().unwrap()));
                false
            }
            ["READ", supplier, id] => {
                self.read.insert((supplier.to_string(), id.parse().unwrap()));
                false
            }
            _ => false,
        }
    }
}

/// Reopens, checks every acknowledged relay (exact bytes), deletions, id order and uniqueness, and that a new
/// append gets an id above every old one.
async fn verify_heavy(path: &Path, ledger: &mut Ledger, round: u64) {
    let b = suite::reopen_redb(small_wal(path)).await;
    let log = b.storage().relay_log;
    for (si, s) in HEAVY_SUPPLIERS.iter().enumerate() {
        let mut stored: BTreeMap<u64, MinedRelay> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut last = 0u64;
        loop {
            let chunk = log.read(s, "checker", 1024).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            for e in chunk {
                assert!(
                    e.id.major > last,
                    "{s}: ids strictly increase: {} after {last}",
                    e.id.major
                );
                last = e.id.major;
                let n = n_of(&e.relay);
                assert!(seen.insert(n), "{s}: relay {n} stored twice");
                assert_eq!(e.relay, heavy_relay(s, n), "{s}: stored bytes of relay {n}");
                stored.insert(e.id.major, e.relay);
            }
        }
        let mut checked = 0;
        for ((sup, id), n) in ledger.acked.range((s.to_string(), 0)..=(s.to_string(), u64::MAX)) {
            debug_assert_eq!(sup, s);
            let key = (sup.clone(), *id);
            if ledger.deleted.contains(&key) {
                assert!(
                    !stored.contains_key(id),
                    "{s}/{id} was acknowledged as consumed, yet it is back"
                );
            } else if ledger.read.contains(&key) {
                // Its ack may have committed right before the kill; if it is still there, it is intact (checked
                // above with every stored entry).
            } else {
                assert_eq!(
                    stored.get(id),
                    Some(&heavy_relay(s, *n)),
                    "{s}/{id} (relay {n}) lost or changed"
                );
                checked += 1;
            }
        }
        let max_old = ledger
            .acked
            .range((s.to_string(), 0)..=(s.to_string(), u64::MAX))
            .next_back()
            .map_or(0, |((_, id), _)| *id)
            .max(last);
        let n = (0xff << 56) | (round << 8) | si as u64;
        let new = log.append(vec![heavy_relay(s, n)]).await.unwrap();
        assert!(
            new[0].major > max_old,
            "{s}: new id {} after restart, old max {max_old}",
            new[0].major
        );
        ledger.acked.insert((s.to_string(), new[0].major), n);
        eprintln!(
            "round {round} {s}: {} stored, {checked} acknowledged checked, {} deleted, new id {}",
            stored.len(),
            ledger.deleted.iter().filter(|(x, _)| x == s).count(),
            new[0].major
        );
    }
}

/// Segment files of a WAL directory (name, first record sequence if named like an active segment).
fn wal_files(dir: &Path) -> Vec<(String, Option<u64>)> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let first = name.strip_suffix(".seg").and_then(|n| n.parse().ok());
                (name, first)
            })
            .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_relays_survive_kill_9_during_wal_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heavy.redb");
    let wal_dir = dir.path().join("heavy.redb.wal");
    let mut ledger = Ledger::default();
    for round in 0..2u64 {
        let mut listing = Vec::new();
        run_and_kill(
            "kill9_child_heavy",
            &[(HEAVY_ENV, path.display().to_string()), (ROUND_ENV, round.to_string())],
            6_000,
            |l| ledger.line(round, l),
            || listing = wal_files(&wal_dir),
        );
        // ~1 KB relays on 64 KiB segments: dozens of rollovers before the kill, yet only a handful of files
        // (recycled after checkpoints).
        let max_first = listing.iter().filter_map(|(_, f)| *f).max().unwrap_or(0);
        eprintln!("round {round}: WAL files before the kill: {listing:?}");
        assert!(max_first > 50, "segments rolled over: {listing:?}");
        assert!(listing.len() <= 12, "checkpointed segments are recycled: {listing:?}");
        verify_heavy(&path, &mut ledger, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_rollover_oversized_batches_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roll.redb");
    let mut expect: BTreeMap<u64, MinedRelay> = BTreeMap::new();
    {
        let b = RedbBackend::open(small_wal(&path)).await.unwrap();
        let log = b.storage().relay_log;
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 0..100u64 {
                    let relays: Vec<MinedRelay> = (0..5)
                        .map(|i| heavy_relay("pokt1roll", (t << 40) | (k * 5 + i)))
                        .collect();
                    let ids = log.append(relays.clone()).await.unwrap();
                    out.extend(ids.into_iter().map(|id| id.major).zip(relays));
                }
                out
            }));
        }
        for t in tasks {
            expect.extend(t.await.unwrap());
        }
        // One batch far larger than a 64 KiB segment gets a record (and segment) of its own.
        let big: Vec<MinedRelay> = (0..200).map(|i| heavy_relay("pokt1roll", (9 << 40) | i)).collect();
        let ids = log.append(big.clone()).await.unwrap();
        expect.extend(ids.into_iter().map(|id| id.major).zip(big));
        assert_eq!(expect.len(), 2_200, "ids are unique");
        let got = log.read("pokt1roll", "c", 10_000).await.unwrap();
        assert_eq!(got.len(), expect.len(), "reads see every acknowledged append");
    }
    let b = suite::reopen_redb(small_wal(&path)).await;
    let log = b.storage().relay_log;
    let got = log.read("pokt1roll", "c", 10_000).await.unwrap();
    let got: BTreeMap<u64, MinedRelay> = got.into_iter().map(|e| (e.id.major, e.relay)).collect();
    assert!(got == expect, "every relay back with its id after a clean restart");
    let more = log.append(vec![heavy_relay("pokt1roll", 1)]).await.unwrap();
    assert!(more[0].major > *expect.keys().next_back().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_can_be_switched_off_and_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switch.redb");
    let wal_dir = dir.path().join("switch.redb.wal");
    let relays = |from: u64, n: u64| {
        (from..from + n)
            .map(|i| suite::relay("pokt1s", "s1", i))
            .collect::<Vec<_>>()
    };
    {
        let b = RedbBackend::open(config(&path, true)).await.unwrap();
        let ids = b.storage().relay_log.append(relays(0, 10)).await.unwrap();
        assert_eq!(ids.last().unwrap().major, 10);
        assert!(wal_dir.is_dir());
    }
    {
        let b = suite::reopen_redb(config(&path, false)).await;
        let log = b.storage().relay_log;
        assert!(!wal_dir.exists(), "the WAL is applied and removed when switched off");
        assert_eq!(log.read("pokt1s", "c", 100).await.unwrap().len(), 10);
        assert_eq!(log.append(relays(10, 1)).await.unwrap()[0].major, 11);
    }
    let b = suite::reopen_redb(config(&path, true)).await;
    let log = b.storage().relay_log;
    assert_eq!(log.append(relays(11, 1)).await.unwrap()[0].major, 12);
    assert_eq!(log.read("pokt1s", "c", 100).await.unwrap().len(), 12);
}
