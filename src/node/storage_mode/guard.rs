//! The data-directory check before the store is opened: where the chosen mode's store is (its absolute path,
//! logged at start), whether it exists already, and whether starting on a new one would abandon another store's
//! live data.
//!
//! Why: redb and raft create a missing store silently, and `storage.data_dir` defaults to a relative path. An
//! upgrade that changes systemd's `WorkingDirectory` or a container's `WORKDIR`, a changed `storage.mode`, or a
//! changed `storage.raft.node_id` made `run` start on a new, empty store while the old one still held
//! acknowledged relays and sessions pending claim or proof: never claimed or proven (the proofs missing are
//! slashed), without a word in the logs.
//!
//! The rule: when the chosen store is new, every other store under `data_dir` is looked at read-only, and one
//! with live data refuses the start (a [`NodeError::Config`] naming `storage.data_dir`, the modes and the paths
//! found) unless `storage.allow_abandoned_data` is set, which starts anyway and logs each abandoned store at
//! WARN. "Live data", without the miner's record format:
//! - an embedded `relay-miner.redb` with any session record whose state is not the miner's tombstone
//!   ([`TOMBSTONE_STATE`]), any relay-log entry, or any relay only in its relay WAL (`relay-miner.redb.wal/`:
//!   acknowledged relays in records newer than the database's META `wal_applied`, which redb does not hold
//!   yet; after a crash they live only there) (`storage::redb::probe_embedded`: one read transaction and a
//!   read of the WAL's segments);
//! - a `raft-N` directory (N another node id than the chosen one, or any in the other modes) with a raft log
//!   file (`log.redb`): its state is not read; a raft member's data may live on in its cluster, but a node that
//!   changed its id or left raft no longer proves its sessions.
//!
//! `relay-miner validate` runs the same check ([`validate`]) so an operator learns before `run` refuses: the
//! refusal is the same error; what `run` would only log (a store abandoned under the override or in Redis mode,
//! a store about to be created empty) is a warning; and a store held open by another process is a warning,
//! not an error (a running node's contents cannot be read, and validating a running node's config is routine).
//!
//! A store another process holds open (redb's file lock) counts as live: a process still running on it (an old
//! one still draining during a rolling update, a node of another id sharing the directory) has data this start
//! cannot read and would leave behind; nodes sharing a host take one `data_dir` each. A store that cannot be
//! read read-only (not closed cleanly, damaged) counts as live too. Redis mode's own store is not
//! inspected (it is not in `data_dir`), so there the check runs at every start, and an old store left in
//! `data_dir` (which nothing prunes once the mode changed) is logged at ERROR, not refused: a refusal would stop
//! every later start of the deployment, an upgrade included. Not covered: a relay WAL whose
//! `relay-miner.redb` is gone (deleted or moved; without its `wal_applied` the WAL's relays cannot be told from
//! those already applied), which the embedded store refuses to open anyway.

use std::path::{Path, PathBuf};

use storage::redb::FileState;

use crate::miner::driver::TOMBSTONE_STATE;
use crate::node::NodeError;

/// The embedded store's file name under `data_dir`.
pub const EMBEDDED_FILE: &str = "relay-miner.redb";
/// The raft log file in a node's directory; its presence makes the directory a store.
const RAFT_LOG_FILE: &str = "log.redb";
/// How a store held open by another process is described.
const IN_USE: &str = "held open by another process: stop it first, or give this one its own storage.data_dir";
/// The config key that lets a start abandon another store's live data.
pub const ALLOW_KEY: &str = "storage.allow_abandoned_data";

/// The store a mode uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `{data_dir}/relay-miner.redb`.
    Embedded,
    /// `{data_dir}/raft-{node_id}/`.
    Raft(u64),
    /// Redis (nothing in `data_dir`).
    Redis,
}

/// Where the chosen store is, and what the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// Absolute path of the store (the redb file, the raft node's directory); `None` in Redis mode.
    pub path: Option<PathBuf>,
    /// The store existed before this start (`false`: it is created new and empty now). Always `true` in Redis
    /// mode (not inspected).
    pub existed: bool,
    /// The other stores with live data this start abandons (under `storage.allow_abandoned_data`), described.
    pub abandoned: Vec<String>,
}

/// Runs the check (module docs) for `store` under `data_dir`; `allow_abandoned` is `storage.allow_abandoned_data`.
/// Reads only: nothing is created or written.
pub fn check(data_dir: &Path, store: Store, allow_abandoned: bool) -> Result<StoreLocation, NodeError> {
    let (dir, mut location) = locate(data_dir, store)?;
    // An existing store is not affected by the others (they were left behind by an earlier start, and refusing
    // now would stop a node that runs fine); Redis mode is not inspected, so it always checks.
    let Some(dir) = dir.filter(|_| !location.existed || store == Store::Redis) else {
        return Ok(location);
    };
    let found: Vec<String> = live_stores(&dir, store)?.into_iter().map(|o| o.desc).collect();
    if found.is_empty() {
        return Ok(location);
    }
    if store == Store::Redis && !allow_abandoned {
        // Redis mode keeps nothing in data_dir, so it would check at every start, and a store left there by an
        // earlier embedded or raft deployment never becomes "not live" by itself (nothing prunes it once the
        // mode changed): refusing would stop every start of a Redis deployment, an upgrade included, until
        // someone moves the file. Said loudly instead.
        for other in &found {
            tracing::error!(store = %other, "{REDIS_ABANDONS}");
        }
        location.abandoned = found;
        return Ok(location);
    }
    if allow_abandoned {
        for other in &found {
            tracing::warn!(store = %other, "{ALLOW_ABANDONS}");
        }
        location.abandoned = found;
        return Ok(location);
    }
    Err(refusal(&dir, store, &location, &found))
}

/// What `run` logs at ERROR (Redis mode) for each store with live data in `data_dir`.
const REDIS_ABANDONS: &str = "storage.mode is redis, and storage.data_dir holds another store with live data: its \
     sessions are not claimed or proven by this node (if it is an earlier deployment's, settle or move it; set \
     storage.allow_abandoned_data: true to silence this)";
/// What `run` logs at WARN for each store it abandons under `storage.allow_abandoned_data`.
const ALLOW_ABANDONS: &str = "storage.allow_abandoned_data is set: starting on a new store and abandoning this \
     one's live data (its sessions are not claimed or proven by this node)";

/// `data_dir` made absolute (`None`: Redis mode without one) and where `store` is in it, whether it exists.
fn locate(data_dir: &Path, store: Store) -> Result<(Option<PathBuf>, StoreLocation), NodeError> {
    if store == Store::Redis && data_dir.as_os_str().is_empty() {
        // Allowed in Redis mode (`validate`): no directory, nothing to look at.
        let location = StoreLocation {
            path: None,
            existed: true,
            abandoned: Vec::new(),
        };
        return Ok((None, location));
    }
    let dir = std::path::absolute(data_dir).map_err(|e| NodeError::Config {
        key: "storage.data_dir",
        problem: format!("cannot resolve {}: {e}", data_dir.display()),
    })?;
    let (path, existed) = match store {
        Store::Embedded => {
            let file = dir.join(EMBEDDED_FILE);
            let existed = file.exists();
            (Some(file), existed)
        }
        Store::Raft(id) => {
            let node_dir = dir.join(format!("raft-{id}"));
            let existed = node_dir.join(RAFT_LOG_FILE).exists();
            (Some(node_dir), existed)
        }
        Store::Redis => (None, true),
    };
    let location = StoreLocation {
        path,
        existed,
        abandoned: Vec::new(),
    };
    Ok((Some(dir), location))
}

/// The refusal of a start on `store` (new, at `location`) while `dir` holds the live stores `found`.
fn refusal(dir: &Path, store: Store, location: &StoreLocation, found: &[String]) -> NodeError {
    let chosen = match (store, &location.path) {
        (Store::Redis, _) | (_, None) => "storage.mode is redis (its store is not in storage.data_dir)".to_string(),
        (Store::Embedded, Some(p)) => format!(
            "storage.mode is embedded and its store {} does not exist (it would be created empty)",
            p.display()
        ),
        (Store::Raft(id), Some(p)) => format!(
            "storage.mode is raft with node id {id} and its store {} does not exist (it would be created empty)",
            p.display()
        ),
    };
    NodeError::Config {
        key: "storage.data_dir",
        problem: format!(
            "refusing to start: {chosen}, but storage.data_dir ({}) holds another store with live data: {}. \
             Starting would abandon its acknowledged relays and sessions pending claim or proof. Check storage.mode, \
             storage.data_dir (a relative path resolves against the working directory) and storage.raft.node_id; to \
             start anyway and abandon that data, set {ALLOW_KEY}: true",
            dir.display(),
            found.join("; ")
        ),
    }
}

/// The check for `relay-miner validate`: what [`check`] would find at a start from this directory, without
/// starting. `Err` is what `run` refuses with (the same [`NodeError::Config`]); `Ok` holds warnings: each store
/// `run` would abandon (Redis mode, or under `storage.allow_abandoned_data`), each store held open by another
/// process (a running node: its contents cannot be read now, so `validate` does not fail on it; `run` refuses
/// while it is held, and afterwards if it holds live data), and a store that does not exist yet (`run` starts
/// it empty). Reads only, like [`check`]: nothing is created or written, and a store's file is opened only
/// read-only, for one read transaction (redb's shared lock).
pub fn validate(data_dir: &Path, store: Store, allow_abandoned: bool) -> Result<Vec<String>, NodeError> {
    let (dir, location) = locate(data_dir, store)?;
    let Some(dir) = dir.filter(|_| !location.existed || store == Store::Redis) else {
        return Ok(Vec::new());
    };
    let (held, live): (Vec<Other>, Vec<Other>) = live_stores(&dir, store)?.into_iter().partition(|o| o.in_use);
    let live: Vec<String> = live.into_iter().map(|o| o.desc).collect();
    let mut warnings: Vec<String> = held
        .into_iter()
        .map(|o| {
            format!(
                "storage.data_dir holds {}: its data cannot be checked while it is open (by a running node); \
                 unless {ALLOW_KEY} is set, `run` on a new store refuses to start while it is held open, and \
                 afterwards if it holds live data",
                o.desc
            )
        })
        .collect();
    if !live.is_empty() {
        if store == Store::Redis && !allow_abandoned {
            warnings.extend(live.iter().map(|o| format!("{o}: {REDIS_ABANDONS}")));
        } else if allow_abandoned {
            warnings.extend(live.iter().map(|o| format!("{o}: {ALLOW_ABANDONS}")));
        } else {
            return Err(refusal(&dir, store, &location, &live));
        }
    }
    if let (false, Some(path)) = (location.existed, &location.path) {
        warnings.push(format!(
            "no store at {} yet: `run` starts on a new, empty store (if this node ran before, check storage.mode, \
             storage.data_dir: a relative path resolves against the working directory of `run`, and \
             storage.raft.node_id)",
            path.display()
        ));
    }
    Ok(warnings)
}

/// A store under `data_dir`, other than the chosen one, that counts as live.
struct Other {
    /// What and where it is, and what it holds.
    desc: String,
    /// Held open by another process (its contents not read).
    in_use: bool,
}

/// The stores under `dir` other than `chosen`'s with live data (module docs), described with their paths.
fn live_stores(dir: &Path, chosen: Store) -> Result<Vec<Other>, NodeError> {
    let mut found = Vec::new();
    let live = |desc: String| Other { desc, in_use: false };
    let held = |desc: String| Other { desc, in_use: true };
    if chosen != Store::Embedded {
        let file = dir.join(EMBEDDED_FILE);
        match storage::redb::probe_embedded(&file, TOMBSTONE_STATE) {
            Ok(contents) if contents.is_live() => found.push(live(format!(
                "{} (embedded store: {} live session records, {} relay-log entries, {} relays only in its relay \
                 WAL)",
                file.display(),
                contents.live_sessions,
                contents.relay_log_entries,
                contents.wal_relays
            ))),
            Ok(_) | Err(FileState::Absent | FileState::Present) => {}
            Err(FileState::InUse) => found.push(held(format!("{} (embedded store {IN_USE})", file.display()))),
            Err(FileState::Unreadable(why)) => found.push(live(format!(
                "{} (embedded store that cannot be read, so counted as live: {why})",
                file.display()
            ))),
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => {
            return Err(NodeError::Config {
                key: "storage.data_dir",
                problem: format!("cannot list {}: {e}", dir.display()),
            });
        }
    };
    let mut raft_dirs: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = e.file_name().to_str()?.strip_prefix("raft-")?.parse::<u64>().ok()?;
            Some((id, e.path()))
        })
        .filter(|(id, path)| chosen != Store::Raft(*id) && path.is_dir())
        .collect();
    raft_dirs.sort();
    for (id, path) in raft_dirs {
        let log = path.join(RAFT_LOG_FILE);
        match storage::redb::probe_file(&log) {
            FileState::Absent => {}
            FileState::InUse => found.push(held(format!("{} (raft node {id}'s store, {IN_USE})", path.display()))),
            FileState::Present => found.push(live(format!("{} (raft node {id}'s store)", path.display()))),
            FileState::Unreadable(why) => found.push(live(format!(
                "{} (raft node {id}'s store; its log cannot be read: {why})",
                path.display()
            ))),
        }
    }
    Ok(found)
}
