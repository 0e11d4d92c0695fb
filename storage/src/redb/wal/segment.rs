//! Segment files of the relay WAL: creation (zero-filled and fsynced), naming, in-place writes, and the
//! background maker of spare segments.
//!
//! Names are for people and for the order of work, not for correctness: recovery reads every file of the WAL
//! directory and orders records by their own sequence numbers, so renaming a spare into `{first_record_seq:020}.seg`
//! on rollover, or a checkpointed segment back into a spare, needs no directory fsync on the append path. What
//! does need one is a *new* file (its directory entry must be durable before acknowledged data lands in it), and
//! [`create`] does it before the segment is handed out.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread::JoinHandle;

use super::fault::{FaultHook, Site};

/// One preallocated segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub file: File,
    /// File size (fixed at creation).
    pub size: u64,
    /// Write offset: bytes of records written since the segment was (re)activated.
    pub len: u64,
    /// Sequence of the last record written into it since (re)activation; 0 = none. After a failed write into
    /// a segment holding records, that write's sequence (the segment waits for a checkpoint covering it).
    pub last: u64,
}

/// File name of a segment whose first record is `first`.
pub(crate) fn active_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// File name of the `n`-th spare of this run.
pub(crate) fn spare_name(n: u64) -> String {
    format!("spare-{n:020}.seg")
}

/// Fsyncs a directory (makes created, renamed or removed entries durable).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir/name` with `size` zero bytes actually written (no holes, so later in-place writes allocate
/// nothing and `fdatasync` flushes no metadata), fsyncs it and the directory.
pub(crate) fn create(dir: &Path, name: &str, size: u64) -> io::Result<Segment> {
    let path = dir.join(name);
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let filled = fill_zero(&file, size)
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_dir(dir));
    if let Err(e) = filled {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Segment {
        path,
        file,
        size,
        len: 0,
        last: 0,
    })
}

fn fill_zero(file: &File, size: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(size.max(1)) as usize];
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Opens an existing segment file for reuse (its old contents stay until overwritten).
pub(crate) fn open_existing(path: &Path) -> io::Result<Segment> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    Ok(Segment {
        path: path.to_owned(),
        file,
        size,
        len: 0,
        last: 0,
    })
}

impl Segment {
    /// Renames the file inside its directory (not fsynced: see the module docs).
    pub fn rename(&mut self, dir: &Path, name: &str) -> io::Result<()> {
        let to = dir.join(name);
        if to != self.path {
            std::fs::rename(&self.path, &to)?;
            self.path = to;
        }
        Ok(())
    }

    /// Room left for records.
    pub fn room(&self) -> u64 {
        self.size.saturating_sub(self.len)
    }

    /// Writes `record` (sequence `seq`) at the write offset with one `pwrite`, then `fdatasync`s. Only on `Ok`
    /// is the record durable; the offset advances only then.
    pub fn append(&mut self, record: &[u8], seq: u64, faults: &FaultHook) -> io::Result<()> {
        faults.run(
            Site::Write(seq),
            || self.file.write_all_at(record, self.len),
            io::Error::other,
        )?;
        faults.run(Site::Sync(seq), || self.file.sync_data(), io::Error::other)?;
        self.len += record.len() as u64;
        self.last = seq;
        Ok(())
    }
}

/// A spare segment being created on its own thread (creation takes tens of milliseconds: 16 MiB of zeros
/// plus two fsyncs, measured 20–80 ms here), so appends never wait for it unless a rollover comes first.
pub(crate) struct Maker {
    handle: Option<JoinHandle<()>>,
    rx: Receiver<io::Result<Segment>>,
}

impl Maker {
    /// Starts creating `dir/name` of `size` bytes.
    pub fn spawn(dir: PathBuf, name: String, size: u64) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("redb-wal-prep".into())
            .spawn(move || {
                let _ = tx.send(create(&dir, &name, size));
            })?;
        Ok(Self {
            handle: Some(handle),
            rx,
        })
    }

    /// The segment if it is ready.
    pub fn try_take(&mut self) -> Option<io::Result<Segment>> {
        match self.rx.try_recv() {
            Ok(r) => {
                self.join();
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.join();
                Some(Err(io::Error::other("WAL segment maker thread died")))
            }
        }
    }

    /// Waits for the segment.
    pub fn wait(mut self) -> io::Result<Segment> {
        let r = self
            .rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("WAL segment maker thread died")));
        self.join();
        r
    }

    fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Maker {
    fn drop(&mut self) {
        // Never leave the thread behind (it ends within one segment creation).
        self.join();
    }
}
