//! The data-directory check of `open` (`guard` module): a new store next to another mode's live data is refused
//! unless `storage.allow_abandoned_data` is set, a new store is reported as new, an existing one as existing.
//! Real redb files and raft nodes in temp dirs, opened through `storage_mode::open_at`.

use std::path::{Path, PathBuf};

use super::*;

/// A config on `data_dir` in `mode` (raft: node `node_id`, its port chosen by the OS, `token` as the cluster
/// token file), with `allow_abandoned_data`.
fn config(data_dir: &Path, mode: &str, node_id: u64, token: &Path, allow: bool) -> Config {
    Config::from_yaml(&format!(
        "services:\n  anvil:\n    backends:\n      jsonrpc:\n        url: http://127.0.0.1:8545\n\
         storage:\n  mode: {mode}\n  data_dir: {}\n  allow_abandoned_data: {allow}\n  raft:\n    node_id: {node_id}\n    \
         listen_addr: 127.0.0.1:0\n    cluster_token_file: {}\n",
        data_dir.display(),
        token.display()
    ))
    .unwrap()
}

struct Dir {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    token: PathBuf,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "a-cluster-token-of-32-characters").unwrap();
    Dir {
        data: tmp.path().join("data"),
        token,
        _tmp: tmp,
    }
}

/// Opens `config`'s store, checks it opened the kind asked for, returns it with what the check found.
async fn open_ok(config: &Config) -> (OpenedStorage, StoreLocation) {
    let (opened, location) = open_at(config, &RaftOverrides::default()).await.unwrap();
    assert_eq!(opened.name(), format!("{:?}", config.storage.mode).to_lowercase());
    (opened, location)
}

/// Closes `opened` and waits until no handle of this process holds the redb file `file` any more (the backend's
/// threads end after its last handle is dropped).
async fn close(opened: OpenedStorage, file: &Path) {
    opened.close().await;
    storage::suite::poll_until("the store is released", || async {
        (!matches!(storage::redb::probe_file(file), storage::redb::FileState::InUse)).then_some(())
    })
    .await;
}

/// The embedded store of `d` with `write` done on it, closed.
async fn embedded_with<F, Fut>(d: &Dir, write: F)
where
    F: FnOnce(storage::Storage) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (opened, location) = open_ok(&config(&d.data, "embedded", 0, &d.token, false)).await;
    assert!(!location.existed, "a new store is reported as new: {location:?}");
    let file = std::path::absolute(d.data.join(EMBEDDED_FILE)).unwrap();
    assert_eq!(location.path.as_deref(), Some(file.as_path()), "its absolute path");
    write(opened.storage()).await;
    close(opened, &file).await;
}

/// An embedded store with a live session record, then raft on the same data_dir: refused (it used to start on
/// a new, empty raft store), naming the key, the store found and its data, and creating nothing; with
/// `storage.allow_abandoned_data` it starts, reporting the store it abandons; the next start finds its own
/// store and needs no override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_raft_store_next_to_a_live_embedded_store_is_refused_unless_allowed() {
    let d = dir();
    embedded_with(&d, |s| async move {
        s.sessions
            .put("pokt1a", "s1", "active", b"x".to_vec(), 0)
            .await
            .unwrap();
    })
    .await;
    let (embedded, location) = open_ok(&config(&d.data, "embedded", 0, &d.token, false)).await;
    assert!(location.existed, "the store is found again: {location:?}");
    close(embedded, &d.data.join(EMBEDDED_FILE)).await;

    let err = match open_at(&config(&d.data, "raft", 1, &d.token, false), &RaftOverrides::default()).await {
        Ok(_) => panic!("raft started on a new store next to an embedded store with a live session"),
        Err(e) => e.to_string(),
    };
    let abs = std::path::absolute(&d.data).unwrap();
    for part in [
        "storage.data_dir".to_string(),
        "storage.mode is raft".into(),
        abs.join("raft-1").display().to_string(),
        abs.join(EMBEDDED_FILE).display().to_string(),
        "1 live session records, 0 relay-log entries".into(),
        "storage.allow_abandoned_data: true".into(),
    ] {
        assert!(err.contains(&part), "`{part}` missing from: {err}");
    }
    assert!(!d.data.join("raft-1").exists(), "the refused start created nothing");

    let (raft, location) = open_ok(&config(&d.data, "raft", 1, &d.token, true)).await;
    assert!(!location.existed, "{location:?}");
    assert_eq!(location.abandoned.len(), 1, "{location:?}");
    assert!(location.abandoned[0].contains(EMBEDDED_FILE), "{location:?}");
    close(raft, &d.data.join("raft-1").join("log.redb")).await;

    let (raft, location) = open_ok(&config(&d.data, "raft", 1, &d.token, false)).await;
    assert!(location.existed && location.abandoned.is_empty(), "{location:?}");
    close(raft, &d.data.join("raft-1").join("log.redb")).await;
}

/// Relay-log entries alone are live data; tombstones alone (settled sessions) are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_log_entries_are_live_data_and_tombstones_are_not() {
    let d = dir();
    embedded_with(&d, |s| async move {
        let tombstone = crate::miner::driver::TOMBSTONE_STATE;
        s.sessions
            .put("pokt1a", "s0", tombstone, b"x".to_vec(), 0)
            .await
            .unwrap();
    })
    .await;
    let (raft, location) = open_ok(&config(&d.data, "raft", 1, &d.token, false)).await;
    assert!(!location.existed && location.abandoned.is_empty(), "{location:?}");
    close(raft, &d.data.join("raft-1").join("log.redb")).await;

    let d = dir();
    embedded_with(&d, |s| async move {
        s.relay_log
            .append(vec![storage::suite::relay("pokt1a", "s1", 0)])
            .await
            .unwrap();
    })
    .await;
    let err = guard::check(&d.data, Store::Raft(1), false).unwrap_err().to_string();
    assert!(err.contains("0 live session records, 1 relay-log entries"), "{err}");
}

/// A raft node that changed its id (a new `raft-2` next to `raft-1`), or a switch from raft to embedded, is
/// refused, also while the old node still runs (a rolling update: it cannot be read, it is not abandoned yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_raft_node_ids_store_is_live_data() {
    let d = dir();
    let (raft, location) = open_ok(&config(&d.data, "raft", 1, &d.token, false)).await;
    assert!(!location.existed, "{location:?}");
    let held = guard::check(&d.data, Store::Raft(2), false).unwrap_err().to_string();
    assert!(
        held.contains("raft node 1's store, held open by another process"),
        "{held}"
    );
    close(raft, &d.data.join("raft-1").join("log.redb")).await;

    for (store, mode) in [(Store::Raft(2), "raft with node id 2"), (Store::Embedded, "embedded")] {
        let err = guard::check(&d.data, store, false).unwrap_err().to_string();
        let raft_dir = std::path::absolute(d.data.join("raft-1")).unwrap();
        for part in [
            format!("storage.mode is {mode}"),
            format!("{} (raft node 1's store)", raft_dir.display()),
        ] {
            assert!(err.contains(&part), "`{part}` missing from: {err}");
        }
        let allowed = guard::check(&d.data, store, true).unwrap();
        assert_eq!(allowed.abandoned.len(), 1, "{allowed:?}");
    }
}

/// A fresh data_dir starts, reporting a new store; Redis mode with an embedded store's live data in data_dir
/// starts (it keeps nothing there, so it checks at every start, and a refusal would stop every later start of
/// the deployment), reporting the store it abandons (logged at ERROR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_dir_starts_new_and_redis_checks_data_dir() {
    let d = dir();
    let fresh = guard::check(&d.data, Store::Embedded, false).unwrap();
    assert!(!fresh.existed && fresh.abandoned.is_empty(), "{fresh:?}");
    assert!(!d.data.exists(), "the check creates nothing");
    let redis = guard::check(&d.data, Store::Redis, false).unwrap();
    assert_eq!((redis.path, redis.existed), (None, true));

    embedded_with(&d, |s| async move {
        s.sessions
            .put("pokt1a", "s1", "claimed", b"x".to_vec(), 0)
            .await
            .unwrap();
    })
    .await;
    let redis = guard::check(&d.data, Store::Redis, false).unwrap();
    assert_eq!(redis.abandoned.len(), 1, "{redis:?}");
    assert!(redis.abandoned[0].contains("1 live session records"), "{redis:?}");
    assert!(guard::check(&d.data, Store::Redis, true).is_ok());
}

/// `relay-miner validate` (`validate_data_dir`) reports what `run` would refuse, with the same error, without
/// creating anything: a raft config next to an embedded store with a live session used to validate, then `run`
/// refused. With `storage.allow_abandoned_data` (or in Redis mode) the store is a warning; the store's own
/// config validates without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_a_start_that_would_abandon_live_data() {
    let d = dir();
    let fresh = validate_data_dir(
        &config(&d.data, "embedded", 0, &d.token, false),
        &RaftOverrides::default(),
    )
    .unwrap();
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(
        fresh[0].contains("no store at") && fresh[0].contains(EMBEDDED_FILE),
        "{fresh:?}"
    );
    assert!(!d.data.exists(), "validate creates nothing");
    embedded_with(&d, |s| async move {
        s.sessions
            .put("pokt1a", "s1", "proved", b"x".to_vec(), 0)
            .await
            .unwrap();
    })
    .await;
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(&d.data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();

    let raft = config(&d.data, "raft", 1, &d.token, false);
    let err = validate_data_dir(&raft, &RaftOverrides::default())
        .unwrap_err()
        .to_string();
    let refused = guard::check(&d.data, Store::Raft(1), false).unwrap_err().to_string();
    assert_eq!(err, refused, "the same refusal as run's");
    assert!(err.contains("1 live session records"), "{err}");
    assert_eq!(listing(), before, "validate created nothing");

    let redis = RaftOverrides {
        mode: Some(StorageMode::Redis),
        ..RaftOverrides::default()
    };
    for (config, overrides) in [
        (config(&d.data, "raft", 1, &d.token, true), RaftOverrides::default()),
        (config(&d.data, "embedded", 0, &d.token, false), redis),
    ] {
        let warnings = validate_data_dir(&config, &overrides).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(EMBEDDED_FILE) && w.contains("1 live session records")),
            "{warnings:?}"
        );
    }
    assert_eq!(listing(), before, "validate created nothing");
    let own = validate_data_dir(
        &config(&d.data, "embedded", 0, &d.token, false),
        &RaftOverrides::default(),
    );
    assert_eq!(own.unwrap(), Vec::<String>::new());
}

/// A store held open by a running node is not an error for `validate` (its data cannot be read, and the node
/// validating its own config is the usual case): its own config validates silently; another mode's or node
/// id's config gets a warning naming the store, where `run` refuses. Once the node stopped, the store's data
/// is read: a raft node's store is live data, refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_warns_about_a_store_held_open_by_a_running_node() {
    let d = dir();
    let (running, _) = open_ok(&config(&d.data, "raft", 1, &d.token, false)).await;
    let own = validate_data_dir(&config(&d.data, "raft", 1, &d.token, false), &RaftOverrides::default());
    assert_eq!(own.unwrap(), Vec::<String>::new(), "a running node's own config");
    let raft_dir = std::path::absolute(d.data.join("raft-1")).unwrap();
    for (store, mode) in [(Store::Raft(2), "raft"), (Store::Embedded, "embedded")] {
        assert!(guard::check(&d.data, store, false).is_err(), "run refuses");
        let node_id = if mode == "raft" { 2 } else { 0 };
        let warnings = validate_data_dir(
            &config(&d.data, mode, node_id, &d.token, false),
            &RaftOverrides::default(),
        )
        .unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&raft_dir.display().to_string()) && w.contains("held open by another process")),
            "{mode}: {warnings:?}"
        );
    }
    close(running, &d.data.join("raft-1").join("log.redb")).await;
    let err = validate_data_dir(&config(&d.data, "raft", 2, &d.token, false), &RaftOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("raft node 1's store"), "{err}");
}
