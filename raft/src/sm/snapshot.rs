//! Snapshot files: built from one redb read transaction (an MVCC point in time that does not block apply),
//! written to a temp file, fsynced, renamed; installed in one write transaction.
//!
//! Layout: a sequence of frames `u32 LE length ++ postcard bytes`. Frame 0 is the [`SnapshotMeta`]; every further
//! frame is one [`Record`] (one table row), in table then key order. The meta inside the file is what
//! `get_current_snapshot` reports, so a snapshot file is self-describing.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::apply::{KV, LEASES, META, NODES, RELAY_SESSIONS, RELAYS, SEQS, SESSIONS};
use super::{K_APPLIED, K_MEMBERSHIP, io_err};
use crate::types::{LogId, SnapshotMeta, StoredMembership, decode, encode};

/// Largest frame accepted when reading a snapshot (a corrupt length must not allocate gigabytes).
const MAX_FRAME: usize = 256 << 20;

/// One table row of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Relay(String, u64, Vec<u8>),
    RelaySession(String, String, u64),
    Seq(String, u64),
    Session(String, String, Vec<u8>),
    Kv(String, Vec<u8>),
    Node(String, String, Vec<u8>, Vec<u8>),
    Lease(String, Vec<u8>),
}

fn write_frame(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "snapshot frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

/// Reads one frame; `Ok(None)` at a clean end of file.
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "snapshot frame too large"));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(Some(()))
}

/// Reads the meta frame at the start of a snapshot file.
pub(crate) fn read_meta(file: &mut File) -> io::Result<SnapshotMeta> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0))?;
    let mut buf = Vec::new();
    let mut r = BufReader::new(&mut *file);
    read_frame(&mut r, &mut buf)?.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty snapshot file"))?;
    let meta = decode(&buf)?;
    drop(r);
    file.seek(io::SeekFrom::Start(0))?;
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
        let file = File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        write_frame(&mut w, &encode(&meta)?)?;
        let mut put = |r: Record| -> io::Result<()> { write_frame(&mut w, &encode(&r)?) };
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
        let file = w.into_inner().map_err(|e| e.into_error())?;
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

/// Replaces the whole state of `db` by the snapshot in `file`, in one write transaction; returns its meta.
pub(crate) fn install(db: &Database, file: &mut File) -> io::Result<SnapshotMeta> {
    let meta = read_meta(file)?;
    let mut r = BufReader::new(&mut *file);
    let mut buf = Vec::new();
    read_frame(&mut r, &mut buf)?; // the meta frame
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
        while read_frame(&mut r, &mut buf)?.is_some() {
            match decode::<Record>(&buf)? {
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
