//! Opening a redb file for writing while a read-only probe holds it for a moment.
//!
//! `relay-miner validate`, and the data_dir check of every starting process, open stores read-only to count their
//! live data ([`super::probe_embedded`], [`super::probe_file`]). That takes redb's shared file lock for a few
//! milliseconds. A `run` opening the same store for writing in that instant got `DatabaseAlreadyOpen` and exited,
//! as if another process were running on its data_dir. A writable open therefore tries again for a short while
//! ([`BUSY_WAIT`]); a store still held after that (another process really running on it) is refused with redb's
//! error, as before, only later.
//!
//! The embedded store and the raft node's files (its log and state machine) open through [`create_when_free`].

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError};

/// How long a writable open waits for a store held by another process's read to be let go.
pub const BUSY_WAIT: Duration = Duration::from_secs(3);

/// The pause between two tries while the store is held.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// `builder.create(path)`, tried again while redb answers `DatabaseAlreadyOpen`, for at most `wait`. The first
/// refusal is logged at INFO (the usual cause is a `relay-miner validate` reading the store); `on_busy` is called
/// with the number of refusals so far after each one. Blocks the calling thread: call it where the open itself
/// would block (a `spawn_blocking` task, a start-up path).
pub fn create_when_free(
    builder: &redb::Builder,
    path: &Path,
    wait: Duration,
    mut on_busy: impl FnMut(u32),
) -> Result<Database, DatabaseError> {
    let deadline = Instant::now() + wait;
    let mut refusals = 0u32;
    loop {
        match builder.create(path) {
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                refusals += 1;
                if refusals == 1 {
                    tracing::info!(
                        path = %path.display(),
                        wait_ms = wait.as_millis() as u64,
                        "store held by another open (a `relay-miner validate` reading it?): waiting for it to be let go"
                    );
                }
                on_busy(refusals);
                std::thread::sleep(BUSY_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn new_store(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("busy.redb");
        drop(Database::create(&path).unwrap());
        path
    }

    /// A store a probe reads while the open starts is opened once the probe lets go.
    #[test]
    fn an_open_waits_for_a_read_only_probe_to_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_store(&dir);
        let probe = redb::ReadOnlyDatabase::open(&path).unwrap();
        let (busy_tx, busy_rx) = mpsc::channel();
        let opener = {
            let path = path.clone();
            std::thread::spawn(move || {
                create_when_free(&redb::Builder::new(), &path, Duration::from_secs(60), |n| {
                    let _ = busy_tx.send(n);
                })
            })
        };
        // The open was refused at least once while the probe held the store...
        assert_eq!(
            busy_rx.recv_timeout(Duration::from_secs(60)),
            Ok(1),
            "the open was refused while held"
        );
        drop(probe);
        // ...and succeeds once it is let go.
        let db = opener.join().unwrap().expect("opened once the probe let go");
        assert!(db.begin_write().is_ok());
    }

    /// A store held for longer than the wait is refused with redb's error, after about the wait.
    #[test]
    fn a_store_held_longer_than_the_wait_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_store(&dir);
        let _held = redb::ReadOnlyDatabase::open(&path).unwrap();
        let started = Instant::now();
        let mut refusals = 0;
        let result = create_when_free(&redb::Builder::new(), &path, Duration::from_millis(200), |n| {
            refusals = n
        });
        assert!(
            matches!(result, Err(DatabaseError::DatabaseAlreadyOpen)),
            "{:?}",
            result.err()
        );
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert!(refusals >= 2, "tried again while waiting: {refusals}");
    }

    /// A free store opens at the first try.
    #[test]
    fn a_free_store_opens_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_store(&dir);
        let mut refusals = 0;
        create_when_free(&redb::Builder::new(), &path, BUSY_WAIT, |n| refusals = n).unwrap();
        assert_eq!(refusals, 0);
    }
}
