//! The relay WAL belongs to its database: a WAL kept next to a deleted or replaced `.redb` file refuses the
//! open (naming both paths) instead of being replayed into the wrong database, and the two ways out the error
//! names (restore the database, or move the WAL directory away) work. Real redb files in temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use storage::suite;
use storage::{RedbBackend, RedbConfig, StorageError};

fn config(path: &Path, wal: bool) -> RedbConfig {
    let mut c = RedbConfig::new(path);
    c.relay_wal = wal;
    c
}

fn wal_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap().to_os_string();
    name.push(".wal");
    db.with_file_name(name)
}

/// Waits until no handle of this process holds the database file (the backend's threads end after its last
/// handle is dropped), so it can be copied, deleted or replaced.
async fn wait_closed(path: &Path) {
    suite::poll_until("the database file is released", || async {
        match redb::Database::open(path) {
            Ok(_) => Some(()),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => None,
            Err(e) => panic!("cannot check {}: {e}", path.display()),
        }
    })
    .await;
}

/// Opens `path`, appends `n` relays of `supplier`, closes; returns the relays' payloads by id.
async fn fill(path: &Path, supplier: &str, n: u64) -> BTreeMap<u64, Vec<u8>> {
    let b = RedbBackend::open(config(path, true)).await.unwrap();
    let relays: Vec<_> = (0..n).map(|i| suite::relay(supplier, "s1", i)).collect();
    let ids = b.storage().relay_log.append(relays.clone()).await.unwrap();
    drop(b);
    wait_closed(path).await;
    ids.into_iter()
        .map(|id| id.major)
        .zip(relays.into_iter().map(|r| r.payload))
        .collect()
}

/// Every file of the WAL directory and its `identity/` subdirectory, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for d in [dir.to_owned(), dir.join("identity")] {
        // A WAL from before identities has no `identity/`.
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                all.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    all
}

/// Opening must fail with `Corrupt` naming both paths and both ways out, and leave the WAL as it was.
async fn assert_refused(path: &Path, wal: bool) -> String {
    let dir = wal_dir(path);
    let before = snapshot(&dir);
    let err = match RedbBackend::open(config(path, wal)).await {
        Ok(_) => panic!("{} opened with another database's WAL", path.display()),
        Err(e) => e,
    };
    let StorageError::Corrupt(msg) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    for needle in [
        path.display().to_string(),
        dir.display().to_string(),
        "Restore the database".into(),
        "move the WAL directory away".into(),
    ] {
        assert!(msg.contains(&needle), "error names {needle:?}: {msg}");
    }
    wait_closed(path).await;
    assert!(
        snapshot(&dir) == before,
        "a refused open leaves the WAL directory unchanged"
    );
    msg.clone()
}

async fn payloads(path: &Path, supplier: &str) -> BTreeMap<u64, Vec<u8>> {
    let b = RedbBackend::open(config(path, true)).await.unwrap();
    let got = b.storage().relay_log.read(supplier, "checker", 10_000).await.unwrap();
    drop(b);
    wait_closed(path).await;
    got.into_iter().map(|e| (e.id.major, e.relay.payload)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_database_with_kept_wal_refuses_to_open_and_replays_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store.redb");
    let relays = fill(&path, "pokt1a", 20).await;
    let backup = tmp.path().join("backup.redb");
    std::fs::copy(&path, &backup).unwrap();

    std::fs::remove_file(&path).unwrap();
    let msg = assert_refused(&path, true).await;
    assert!(msg.contains("written for database identity"), "{msg}");
    // Again (the new, empty database file now exists and has its own identity): still refused.
    assert_refused(&path, true).await;
    // ... also with the WAL switched off (which would replay, then delete the WAL).
    assert_refused(&path, false).await;

    // Way out 1: restore the database the WAL was written with.
    std::fs::copy(&backup, &path).unwrap();
    assert_eq!(
        payloads(&path, "pokt1a").await,
        relays,
        "the restored pair opens with every relay"
    );

    // Way out 2: move the WAL away; the database (here: a new one) opens without its relays.
    std::fs::remove_file(&path).unwrap();
    assert_refused(&path, true).await;
    std::fs::rename(wal_dir(&path), tmp.path().join("orphaned.wal")).unwrap();
    let b = RedbBackend::open(config(&path, true)).await.unwrap();
    let log = b.storage().relay_log;
    assert!(
        log.read("pokt1a", "checker", 100).await.unwrap().is_empty(),
        "nothing replayed"
    );
    let id = log.append(vec![suite::relay("pokt1a", "s1", 99)]).await.unwrap();
    assert_eq!(id[0].major, 1, "a new database starts its own sequences");
    drop((log, b));
    wait_closed(&path).await;
    assert_eq!(payloads(&path, "pokt1a").await.len(), 1, "the new pair reopens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_replaced_by_another_databases_file_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.redb"), tmp.path().join("b.redb"));
    let relays_a = fill(&a, "pokt1a", 10).await;
    let relays_b = fill(&b, "pokt1b", 7).await;
    let saved = tmp.path().join("a-saved.redb");
    std::fs::rename(&a, &saved).unwrap();
    std::fs::copy(&b, &a).unwrap();

    let msg = assert_refused(&a, true).await;
    assert!(msg.contains("written for database identity"), "{msg}");
    assert_refused(&a, false).await;

    // Neither database got the other's relays.
    std::fs::rename(&saved, &a).unwrap();
    assert_eq!(payloads(&a, "pokt1a").await, relays_a);
    assert!(payloads(&a, "pokt1b").await.is_empty());
    assert_eq!(payloads(&b, "pokt1b").await, relays_b);
    assert!(payloads(&b, "pokt1a").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_wal_off_and_on_keeps_the_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.redb");
    let relays = fill(&path, "pokt1s", 5).await;
    // Off: applied and removed (identity files included).
    let b = RedbBackend::open(config(&path, false)).await.unwrap();
    drop(b);
    wait_closed(&path).await;
    assert!(!wal_dir(&path).exists());
    // On again: a new WAL directory, bound to the same database.
    assert_eq!(payloads(&path, "pokt1s").await, relays);
    assert!(wal_dir(&path).join("identity/wal-id").is_file());
    assert_eq!(payloads(&path, "pokt1s").await, relays);
}

/// A WAL from before identities (no `identity/` directory) holding records, next to a brand-new database
/// (the old file deleted): its records cannot be told apart from another database's, so the open is refused
/// too; restoring the old file (which has no identity either) upgrades the pair and recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_database_next_to_a_wal_from_before_identities_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("old.redb");
    let relays = fill(&path, "pokt1o", 12).await;
    // Make the pair look like one written before identities.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        assert!(txn.open_table(meta).unwrap().remove("db_id").unwrap().is_some());
        txn.commit().unwrap();
    }
    std::fs::remove_dir_all(wal_dir(&path).join("identity")).unwrap();
    let backup = tmp.path().join("backup.redb");
    std::fs::rename(&path, &backup).unwrap();

    let msg = assert_refused(&path, true).await;
    assert!(msg.contains("valid record(s) but is bound to no database"), "{msg}");

    std::fs::rename(&backup, &path).unwrap();
    assert_eq!(
        payloads(&path, "pokt1o").await,
        relays,
        "the restored pair is upgraded and opens"
    );
    assert!(wal_dir(&path).join("identity/wal-id").is_file());
}
