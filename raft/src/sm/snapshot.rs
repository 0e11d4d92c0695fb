//! Snapshot files: built from one redb read transaction (an MVCC point in time that does not block apply),
//! written to a temp file, fsynced, renamed; installed in one write transaction.
//!
//! Layout (format 2): the header [`MAGIC`] (`RMSNAP` and the format version byte), then frames
//! `u32 LE length ++ postcard bytes`. Frame 0 is the [`SnapshotMeta`]; every further frame is a [`Frame`]: one
//! [`Record`] (one table row) per frame, in table then key order, then exactly one [`Frame::End`] carrying the
//! number of record frames and the CRC-32C of every byte before the end frame (header included). Nothing follows
//! the end frame. Install checks the count, the checksum and the end of file, so a truncated or damaged file (a
//! transfer cut short, a torn copy) is an error and never installs as a complete but partial state. The meta
//! inside the file is what `get_current_snapshot` reports, so a snapshot file is self-describing.
//!
//! Format 1 (no header, no end frame: the end of the file was the end of the records) is only read to upgrade a
//! node's own snapshot file when the state machine opens ([`open_current`]); it is never installed.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::apply::{KV, LEASES, META, NODES, RELAY_SESSIONS, RELAYS, SEQS, SESSIONS};
use super::{K_APPLIED, K_MEMBERSHIP, io_err};
use crate::types::{LogId, SnapshotMeta, StoredMembership, decode, encode};

/// Header of a format-2 snapshot file: `RMSNAP` and the format version. Read as a format-1 length prefix it is
/// over [`MAX_FRAME`], so an older reader refuses the file instead of misreading it.
pub(crate) const MAGIC: [u8; 7] = *b"RMSNAP\x02";

/// Largest frame accepted when reading a snapshot (a corrupt length must not allocate gigabytes).
const MAX_FRAME: usize = 256 << 20;

/// One table row of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Relay(String, u64, #[serde(with = "serde_bytes")] Vec<u8>),
    RelaySession(String, String, u64),
    Seq(String, u64),
    Session(String, String, #[serde(with = "serde_bytes")] Vec<u8>),
    Kv(String, #[serde(with = "serde_bytes")] Vec<u8>),
    Node(
        String,
        String,
        #[serde(with = "serde_bytes")] Vec<u8>,
        #[serde(with = "serde_bytes")] Vec<u8>,
    ),
    Lease(String, #[serde(with = "serde_bytes")] Vec<u8>),
}

/// A frame after the meta frame (format 2).
#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    /// One table row.
    Record(Record),
    /// The last frame: how many record frames precede it, and the CRC-32C of every byte before it.
    End { records: u64, crc: u32 },
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Writes frames, keeping the running checksum and the record count of the end frame.
struct FrameWriter<W: Write> {
    w: W,
    crc: u32,
    records: u64,
}

impl<W: Write> FrameWriter<W> {
    fn new(mut w: W, meta: &SnapshotMeta) -> io::Result<Self> {
        w.write_all(&MAGIC)?;
        let mut fw = Self {
            w,
            crc: crc32c::crc32c(&MAGIC),
            records: 0,
        };
        fw.frame(&encode(meta)?)?;
        Ok(fw)
    }

    fn frame(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| invalid("snapshot frame too large"))?;
        let len = len.to_le_bytes();
        self.crc = crc32c::crc32c_append(crc32c::crc32c_append(self.crc, &len), bytes);
        self.w.write_all(&len)?;
        self.w.write_all(bytes)
    }

    fn record(&mut self, r: Record) -> io::Result<()> {
        self.frame(&encode(&Frame::Record(r))?)?;
        self.records += 1;
        Ok(())
    }

    /// Writes the end frame; returns the inner writer.
    fn finish(mut self) -> io::Result<W> {
        let end = encode(&Frame::End {
            records: self.records,
            crc: self.crc,
        })?;
        self.frame(&end)?;
        Ok(self.w)
    }
}

/// Reads one frame into `buf`; `Ok(false)` at an end of file exactly at a frame boundary, an error for an end of
/// file inside a frame. Feeds every byte read into `crc`.
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, crc: &mut u32) -> io::Result<bool> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(invalid("snapshot truncated inside a frame length")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(invalid("snapshot frame too large"));
    }
    buf.resize(n, 0);
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            invalid("snapshot truncated inside a frame")
        } else {
            e
        }
    })?;
    *crc = crc32c::crc32c_append(crc32c::crc32c_append(*crc, &len), buf);
    Ok(true)
}

/// The format of a snapshot file, read from its start (the reader is left after the header).
fn read_format(r: &mut impl Read) -> io::Result<u8> {
    let mut head = [0u8; MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == head.len() && head[..MAGIC.len() - 1] == MAGIC[..MAGIC.len() - 1] {
        return match head[MAGIC.len() - 1] {
            2 => Ok(2),
            v => Err(invalid(format!(
                "snapshot format {v} is not supported (this build reads format 2)"
            ))),
        };
    }
    Ok(1)
}

/// Opens a reader on `file` positioned after the header and the meta frame; returns the format, the meta and
/// the running checksum.
fn open_reader(file: &mut File) -> io::Result<(BufReader<&mut File>, u8, SnapshotMeta, u32)> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0))?;
    let format = read_format(&mut *file)?;
    if format == 1 {
        file.seek(io::SeekFrom::Start(0))?;
    }
    let mut crc = crc32c::crc32c(&MAGIC);
    let mut r = BufReader::new(&mut *file);
    let mut buf = Vec::new();
    if !read_frame(&mut r, &mut buf, &mut crc)? {
        return Err(invalid("empty snapshot file"));
    }
    let meta = decode(&buf)?;
    Ok((r, format, meta, crc))
}

/// Opens this node's newest snapshot file at `path`: a format-1 file (written by an earlier build, which fsynced
/// and renamed it, so it is complete) is rewritten in format 2 in place first. Returns its meta.
pub(crate) fn open_current(path: &Path) -> io::Result<SnapshotMeta> {
    let mut file = File::open(path)?;
    let (mut r, format, meta, _) = open_reader(&mut file)?;
    if format == 2 {
        return Ok(meta);
    }
    tracing::info!(path = %path.display(), "upgrading a format-1 snapshot file to format 2");
    let tmp = path.with_extension("upgrade.tmp");
    {
        let mut w = FrameWriter::new(BufWriter::new(File::create(&tmp)?), &meta)?;
        let (mut buf, mut crc) = (Vec::new(), 0);
        while read_frame(&mut r, &mut buf, &mut crc)? {
            w.record(decode::<Record>(&buf)?)?;
        }
        let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(meta)
}

/// Builds a snapshot of `db` at `dir/current.snap` (via a temp file and a rename); returns its meta.
pub(crate) fn build(db: &Database, dir: &Path, unique: u64) -> io::Result<(SnapshotMeta, PathBuf)> {
    let txn = db.begin_read().map_err(io_err)?;
    let meta_t = txn.open_table(META).map_err(io_err)?;
    let applied: Option<LogId> = match meta_t.get(K_APPLIED).map_err(io_err)? {
        Some(v) => decode(v.value())?,
        None => None,
    };
    let membership: StoredMembership = match meta_t.get(K_MEMBERSHIP).map_err(io_err)? {
        Some(v) => decode(v.value())?,
        None => StoredMembership::default(),
    };
    let meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
    };
    let tmp = dir.join(format!("snapshot-{unique}.tmp"));
    {
        let mut w = FrameWriter::new(BufWriter::new(File::create(&tmp)?), &meta)?;
        let mut put = |r: Record| -> io::Result<()> { w.record(r) };
        for item in txn.open_table(RELAYS).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            let (s, q) = k.value();
            put(Record::Relay(s.to_owned(), q, v.value().to_vec()))?;
        }
        for item in txn.open_table(RELAY_SESSIONS).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, _) = item.map_err(io_err)?;
            let (s, sess, q) = k.value();
            put(Record::RelaySession(s.to_owned(), sess.to_owned(), q))?;
        }
        for item in txn.open_table(SEQS).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            put(Record::Seq(k.value().to_owned(), v.value()))?;
        }
        for item in txn.open_table(SESSIONS).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            let (s, sess) = k.value();
            put(Record::Session(s.to_owned(), sess.to_owned(), v.value().to_vec()))?;
        }
        for item in txn.open_table(KV).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            put(Record::Kv(k.value().to_owned(), v.value().to_vec()))?;
        }
        for item in txn.open_table(NODES).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            let (s, sess, key) = k.value();
            put(Record::Node(
                s.to_owned(),
                sess.to_owned(),
                key.to_vec(),
                v.value().to_vec(),
            ))?;
        }
        for item in txn.open_table(LEASES).map_err(io_err)?.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            put(Record::Lease(k.value().to_owned(), v.value().to_vec()))?;
        }
        let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    drop(txn);
    let path = dir.join(format!("snapshot-{unique}.snap"));
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((meta, path))
}

fn clear_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(RELAYS)?.retain(|_, _| false)?;
    txn.open_table(RELAY_SESSIONS)?.retain(|_, _| false)?;
    txn.open_table(SEQS)?.retain(|_, _| false)?;
    txn.open_table(SESSIONS)?.retain(|_, _| false)?;
    txn.open_table(KV)?.retain(|_, _| false)?;
    txn.open_table(NODES)?.retain(|_, _| false)?;
    txn.open_table(LEASES)?.retain(|_, _| false)?;
    Ok(())
}

/// Replaces the whole state of `db` by the format-2 snapshot in `file`, in one write transaction; returns its
/// meta. Nothing is committed unless the file is complete: its end frame's count and checksum match and nothing
/// follows it.
pub(crate) fn install(db: &Database, file: &mut File) -> io::Result<SnapshotMeta> {
    let (mut r, format, meta, mut crc) = open_reader(file)?;
    if format != 2 {
        return Err(invalid(
            "snapshot in format 1 (no end frame, so a truncated file cannot be told apart): not installed",
        ));
    }
    let mut buf = Vec::new();
    let txn = db.begin_write().map_err(io_err)?;
    clear_tables(&txn).map_err(io_err)?;
    {
        let mut relays = txn.open_table(RELAYS).map_err(io_err)?;
        let mut by_session = txn.open_table(RELAY_SESSIONS).map_err(io_err)?;
        let mut seqs = txn.open_table(SEQS).map_err(io_err)?;
        let mut sessions = txn.open_table(SESSIONS).map_err(io_err)?;
        let mut kv = txn.open_table(KV).map_err(io_err)?;
        let mut nodes = txn.open_table(NODES).map_err(io_err)?;
        let mut leases = txn.open_table(LEASES).map_err(io_err)?;
        let mut records = 0u64;
        loop {
            let before = crc;
            if !read_frame(&mut r, &mut buf, &mut crc)? {
                return Err(invalid(format!(
                    "snapshot truncated: the file ends after {records} records without its end frame"
                )));
            }
            let record = match decode::<Frame>(&buf)? {
                Frame::Record(record) => record,
                Frame::End { records: n, crc: sum } => {
                    if n != records || sum != before {
                        return Err(invalid(format!(
                            "snapshot damaged: end frame says {n} records with CRC {sum:08x}, read {records} with \
                             CRC {before:08x}"
                        )));
                    }
                    let mut extra = [0u8; 1];
                    if r.read(&mut extra)? != 0 {
                        return Err(invalid("snapshot damaged: data after the end frame"));
                    }
                    break;
                }
            };
            records += 1;
            match record {
                Record::Relay(s, q, v) => {
                    relays.insert((s.as_str(), q), v.as_slice()).map_err(io_err)?;
                }
                Record::RelaySession(s, sess, q) => {
                    by_session.insert((s.as_str(), sess.as_str(), q), ()).map_err(io_err)?;
                }
                Record::Seq(s, q) => {
                    seqs.insert(s.as_str(), q).map_err(io_err)?;
                }
                Record::Session(s, sess, v) => {
                    sessions
                        .insert((s.as_str(), sess.as_str()), v.as_slice())
                        .map_err(io_err)?;
                }
                Record::Kv(k, v) => {
                    kv.insert(k.as_str(), v.as_slice()).map_err(io_err)?;
                }
                Record::Node(s, sess, k, v) => {
                    nodes
                        .insert((s.as_str(), sess.as_str(), k.as_slice()), v.as_slice())
                        .map_err(io_err)?;
                }
                Record::Lease(k, v) => {
                    leases.insert(k.as_str(), v.as_slice()).map_err(io_err)?;
                }
            }
        }
        let mut m = txn.open_table(META).map_err(io_err)?;
        m.insert(K_APPLIED, encode(&meta.last_log_id)?.as_slice())
            .map_err(io_err)?;
        m.insert(K_MEMBERSHIP, encode(&meta.last_membership)?.as_slice())
            .map_err(io_err)?;
    }
    txn.commit().map_err(io_err)?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
        }
    }

    fn format2(records: Vec<Record>) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new(), &meta()).unwrap();
        for r in records {
            w.record(r).unwrap();
        }
        w.finish().unwrap()
    }

    fn rows() -> Vec<Record> {
        vec![Record::Kv("k".into(), vec![1, 2, 3]), Record::Seq("s".into(), 7)]
    }

    fn db() -> (tempfile::TempDir, Database) {
        let d = tempfile::tempdir().unwrap();
        let sm = super::super::StateMachine::open(d.path()).unwrap();
        drop(sm);
        let db = Database::create(d.path().join("state.redb")).unwrap();
        (d, db)
    }

    fn install_bytes(db: &Database, dir: &Path, bytes: &[u8]) -> io::Result<SnapshotMeta> {
        let p = dir.join("in");
        std::fs::write(&p, bytes).unwrap();
        install(db, &mut File::open(&p).unwrap())
    }

    #[test]
    fn a_damaged_byte_or_trailing_data_is_refused_on_install() {
        let (d, db) = db();
        let good = format2(rows());
        install_bytes(&db, d.path(), &good).unwrap();
        for i in MAGIC.len()..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(install_bytes(&db, d.path(), &bad).is_err(), "byte {i} flipped");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(install_bytes(&db, d.path(), &long).is_err(), "data after the end frame");
    }

    #[test]
    fn a_format_1_snapshot_is_upgraded_when_opened_and_never_installed() {
        let (d, db) = db();
        let mut v1 = Vec::new();
        let mut w = |b: &[u8]| {
            v1.extend_from_slice(&u32::try_from(b.len()).unwrap().to_le_bytes());
            v1.extend_from_slice(b);
        };
        w(&encode(&meta()).unwrap());
        for r in rows() {
            w(&encode(&r).unwrap());
        }
        assert!(install_bytes(&db, d.path(), &v1).is_err(), "format 1 is not installed");
        let p = d.path().join("snapshot-3.snap");
        std::fs::write(&p, &v1).unwrap();
        assert_eq!(open_current(&p).unwrap(), meta());
        assert_eq!(std::fs::read(&p).unwrap(), format2(rows()), "rewritten in format 2");
        install(&db, &mut File::open(&p).unwrap()).unwrap();
    }
}
