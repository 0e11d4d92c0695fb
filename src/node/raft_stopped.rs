//! A raft node whose openraft core stopped for good (`running_state` Err): what the process does about it.
//!
//! openraft stops its core on any storage error (a raft log or state machine write that failed, e.g. `ENOSPC`
//! on a full data directory) and never runs it again in that process: the node takes no entries, gives no votes
//! and commits nothing, while the process would stay up and answer `/health` (a zombie its supervisor never
//! restarts). A restart on the same data directory brings it back: it reopens its files, and the leader sends it
//! what it missed. So the node reports not ready, naming the cause (`raft` component, reason `stopped`), refuses
//! relays (its storage writes fail at once), and exits non-zero with an ERROR as soon as its data directory has
//! room again ([`has_room`]), so its supervisor restarts it into a working node. Exiting at once instead would
//! only crash-loop a restart on a still full disk.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Bytes [`has_room`] writes: enough for the raft log and state machine files to grow by a few commits.
const ROOM_PROBE_BYTES: usize = 4 << 20;

/// The file [`has_room`] writes and removes in the data directory.
const ROOM_PROBE_FILE: &str = ".room-probe";

/// Whether `dir` can take [`ROOM_PROBE_BYTES`] (written, synced, removed again); the error says why not.
pub fn has_room(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(ROOM_PROBE_FILE);
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; ROOM_PROBE_BYTES])?;
        f.sync_all()
    })();
    let removed = std::fs::remove_file(&path);
    written?;
    removed
}

/// [`has_room`] off the async runtime.
pub async fn has_room_async(dir: PathBuf) -> Result<(), String> {
    match tokio::task::spawn_blocking(move || has_room(&dir)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        has_room(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(has_room(&dir.path().join("missing")).is_err());
    }
}
