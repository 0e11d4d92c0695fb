//! Tests of the relay WAL's recovery: what a restart finds in its segments, torn, corrupt or valid.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::os::unix::fs::FileExt;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};

use super::*;
use crate::redb::log::seq_key;
use crate::redb::tables::{LOG, META, SUPPLIERS};
use crate::redb::wal::fault::FaultHook;
use crate::redb::wal::record::Entry;

const SEG: u64 = 64 << 10;

struct Env {
    _tmp: tempfile::TempDir,
    db: Database,
    cfg: WalConfig,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create(tmp.path().join("t.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(LOG).unwrap();
    txn.open_table(SUPPLIERS).unwrap();
    txn.open_table(META).unwrap();
    txn.commit().unwrap();
    let cfg = WalConfig {
        db: tmp.path().join("t.redb"),
        dir: tmp.path().join("t.redb.wal"),
        segment_bytes: SEG,
        checkpoint_bytes: 16 << 10,
        checkpoint_interval: Duration::from_secs(1),
        max_entries: 512,
        faults: FaultHook::none(),
    };
    std::fs::create_dir_all(&cfg.dir).unwrap();
    Env { _tmp: tmp, db, cfg }
}

/// Record `seq` holding one relay of `supplier` with per-supplier sequence `n` and a value naming both.
fn rec(seq: u64, supplier: &str, n: u64) -> Vec<u8> {
    record::encode(
        seq,
        &[Entry {
            supplier: supplier.into(),
            seq: n,
            value: format!("r{seq}-{supplier}-{n}").into_bytes(),
        }],
    )
    .unwrap()
}

/// Writes a zero-filled file of `size` with `records` back to back from offset 0.
fn segment(env: &Env, name: &str, size: u64, records: &[Vec<u8>]) -> PathBuf {
    let path = env.cfg.dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let mut at = 0u64;
    for r in records {
        f.write_all_at(r, at).unwrap();
        at += r.len() as u64;
    }
    path
}

fn set_applied(env: &Env, seq: u64) {
    let txn = env.db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(WAL_APPLIED, seq).unwrap();
    txn.commit().unwrap();
}

/// Every log entry as `(supplier, seq, value)`.
fn log(env: &Env) -> Vec<(String, u64, String)> {
    let txn = env.db.begin_read().unwrap();
    let names: Vec<(String, u32)> = txn
        .open_table(SUPPLIERS)
        .unwrap()
        .iter()
        .unwrap()
        .map(|i| {
            let (k, v) = i.unwrap();
            (k.value().to_owned(), v.value())
        })
        .collect();
    let name = |id: u32| names.iter().find(|(_, i)| *i == id).unwrap().0.clone();
    txn.open_table(LOG)
        .unwrap()
        .iter()
        .unwrap()
        .map(|i| {
            let (k, v) = i.unwrap();
            let (sid, seq) = k.value();
            (name(sid), seq, String::from_utf8(v.value().to_vec()).unwrap())
        })
        .collect()
}

fn meta(env: &Env, key: &str) -> u64 {
    read_meta(&env.db, key).unwrap()
}

fn entry(seq: u64, supplier: &str, n: u64) -> (String, u64, String) {
    (supplier.to_owned(), n, format!("r{seq}-{supplier}-{n}"))
}

/// The files of the WAL directory (not the identity directory).
fn files(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&env.cfg.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "identity")
        .collect();
    names.sort();
    names
}

#[test]
fn valid_records_are_applied_with_their_sequences() {
    let env = env();
    segment(
        &env,
        "00000000000000000001.seg",
        SEG,
        &[rec(1, "a", 1), rec(2, "b", 1), rec(3, "a", 2)],
    );
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 3);
    assert_eq!(log(&env), vec![entry(1, "a", 1), entry(3, "a", 2), entry(2, "b", 1)]);
    assert_eq!(meta(&env, WAL_APPLIED), 3);
    let sid_a = 0; // first supplier allocated
    assert_eq!(meta(&env, &seq_key(sid_a)), 2, "META seq raised to the max inserted");
    assert_eq!(
        files(&env),
        vec!["00000000000000000004.seg"],
        "the file is reused as the next active segment"
    );
    assert_eq!(r.active.size, SEG);
}

#[test]
fn torn_tail_is_dropped() {
    let env = env();
    let (r1, r2, r3) = (rec(1, "a", 1), rec(2, "a", 2), rec(3, "a", 3));
    let torn = r3[..r3.len() / 2].to_vec();
    segment(&env, "00000000000000000001.seg", SEG, &[r1, r2, torn]);
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(
        r.last, 2,
        "the torn record is not applied; its sequence is given out again"
    );
    assert_eq!(log(&env), vec![entry(1, "a", 1), entry(2, "a", 2)]);
}

#[test]
fn flipped_byte_in_the_last_record_is_dropped() {
    let env = env();
    let mut r3 = rec(3, "a", 3);
    let mid = r3.len() - 3;
    r3[mid] ^= 0x40;
    segment(
        &env,
        "00000000000000000001.seg",
        SEG,
        &[rec(1, "a", 1), rec(2, "a", 2), r3],
    );
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 2);
    assert_eq!(log(&env), vec![entry(1, "a", 1), entry(2, "a", 2)]);
}

/// `rec(seq, "a", seq)` with its checksum broken (a flipped byte in the payload; the header is intact).
fn corrupt(seq: u64) -> Vec<u8> {
    let mut r = rec(seq, "a", seq);
    let last = r.len() - 1;
    r[last] ^= 0xff;
    r
}

/// A corrupt record in the middle of a segment (valid records with the following sequences behind it, so
/// it was acknowledged: media corruption, not a torn tail) refuses the open, WAL on and off, naming the file
/// and both offsets, instead of silently dropping it and every acknowledged record after it; nothing is
/// applied or removed.
#[test]
fn a_corrupt_record_followed_by_newer_valid_ones_refuses_the_open() {
    let env = env();
    let (r1, r2) = (rec(1, "a", 1), corrupt(2));
    let (at2, at3) = (r1.len(), r1.len() + r2.len());
    let path = segment(
        &env,
        "00000000000000000001.seg",
        SEG,
        &[r1, r2, rec(3, "a", 3), rec(4, "a", 4)],
    );
    let before = snapshot(&env);
    for r in [
        recover(&env.db, &env.cfg).map(drop),
        recover_and_remove(&env.db, &env.cfg.db, &env.cfg.dir, &env.cfg.faults),
    ] {
        let Err(StorageError::Corrupt(msg)) = r else {
            panic!("expected a refusal, got {r:?}");
        };
        assert!(msg.contains(&path.display().to_string()), "names the file: {msg}");
        assert!(
            msg.contains(&format!("offset {at2} (checksum mismatch")) && msg.contains(&format!("offset {at3}")),
            "names both offsets: {msg}"
        );
        assert!(msg.contains("record 3"), "{msg}");
    }
    assert!(log(&env).is_empty(), "nothing applied");
    assert!(snapshot(&env) == before, "the WAL directory is unchanged");
}

/// The same, with the corrupt record first in the file and the newer one behind a second corrupt record.
#[test]
fn a_corrupt_first_record_followed_by_newer_valid_ones_refuses_the_open() {
    let env = env();
    segment(
        &env,
        "00000000000000000001.seg",
        SEG,
        &[corrupt(1), corrupt(2), rec(3, "a", 3)],
    );
    let r = recover(&env.db, &env.cfg).map(drop);
    assert!(
        matches!(&r, Err(StorageError::Corrupt(m)) if m.contains("offset 0 (")),
        "{r:?}"
    );
    assert!(log(&env).is_empty());
}

/// What may legitimately follow the invalid record that ends a file's records does not refuse the open:
/// stale records of the file's earlier use (older, covered by `wal_applied`), found by following the torn
/// record's length, and records the database already holds behind a corrupt one (nothing is lost).
#[test]
fn only_older_or_applied_records_behind_an_invalid_one_open_as_before() {
    let env = env();
    set_applied(&env, 10);
    // A reused segment: new records 11, 12, then 13 torn (its header intact), then stale 9 and 10 right
    // behind it.
    segment(
        &env,
        "00000000000000000011.seg",
        SEG,
        &[
            rec(11, "a", 11),
            rec(12, "a", 12),
            corrupt(13),
            rec(9, "a", 9),
            rec(10, "a", 10),
        ],
    );
    // Records 4 to 6 with 5 corrupt, all older than wal_applied.
    segment(
        &env,
        "00000000000000000004.seg",
        SEG,
        &[rec(4, "a", 4), corrupt(5), rec(6, "a", 6)],
    );
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 12, "the torn record is not applied");
    assert_eq!(log(&env), vec![entry(11, "a", 11), entry(12, "a", 12)]);
}

#[test]
fn stale_records_of_a_reused_segment_are_ignored() {
    let env = env();
    set_applied(&env, 10);
    // A spare holding old, checkpointed records (valid checksums).
    segment(
        &env,
        "spare-00000000000000000003.seg",
        SEG,
        &[rec(5, "old", 5), rec(6, "old", 6)],
    );
    // A reused segment: new records 11, 12 written from offset 0, then stale records 9 and 10 of its
    // previous use (valid checksums, header well aligned right behind the new ones: the worst case).
    segment(
        &env,
        "00000000000000000011.seg",
        SEG,
        &[
            rec(11, "new", 1),
            rec(12, "new", 2),
            rec(9, "old", 9),
            rec(10, "old", 10),
        ],
    );
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 12);
    assert_eq!(log(&env), vec![entry(11, "new", 1), entry(12, "new", 2)]);
    assert_eq!(files(&env).len(), 2, "both files kept: active and spare");
    assert!(r.spare.is_some());
}

#[test]
fn applied_records_are_not_applied_twice() {
    let env = env();
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1), rec(2, "a", 2)]);
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 2);
    // The consumer acknowledges (deletes) entry 1; the WAL still holds its record if the file was kept
    // unchanged (simulate by rewriting it with records 1..4).
    let txn = env.db.begin_write().unwrap();
    txn.open_table(LOG).unwrap().remove((0, 1)).unwrap();
    txn.commit().unwrap();
    for f in files(&env) {
        std::fs::remove_file(env.cfg.dir.join(f)).unwrap();
    }
    segment(
        &env,
        "00000000000000000001.seg",
        SEG,
        &[rec(1, "a", 1), rec(2, "a", 2), rec(3, "a", 3), rec(4, "a", 4)],
    );
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 4);
    assert_eq!(
        log(&env),
        vec![entry(2, "a", 2), entry(3, "a", 3), entry(4, "a", 4)],
        "the acknowledged entry stays deleted"
    );
    // Recovering again changes nothing.
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 4);
    assert_eq!(log(&env).len(), 3);
}

#[test]
fn empty_or_missing_wal_dir() {
    let env = env();
    set_applied(&env, 7);
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 7);
    assert!(r.spare.is_none());
    assert_eq!(files(&env), vec!["00000000000000000008.seg"]);
    std::fs::remove_dir_all(&env.cfg.dir).unwrap();
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 7);
    assert_eq!(
        std::fs::metadata(&r.active.path).unwrap().len(),
        SEG,
        "created zero-filled"
    );
    assert!(log(&env).is_empty());
}

#[test]
fn record_larger_than_a_segment() {
    let env = env();
    let big = record::encode(
        1,
        &[Entry {
            supplier: "a".into(),
            seq: 1,
            value: vec![7; (SEG as usize) * 2],
        }],
    )
    .unwrap();
    let size = (big.len() as u64).next_multiple_of(4096);
    segment(&env, "00000000000000000001.seg", size, &[big]);
    segment(&env, "00000000000000000002.seg", SEG, &[rec(2, "a", 2)]);
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 2);
    let got = log(&env);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].2.len(), (SEG as usize) * 2);
    assert_eq!(got[1], entry(2, "a", 2));
    assert_eq!(
        files(&env),
        vec!["00000000000000000003.seg"],
        "the oversized file is removed"
    );
}

#[test]
fn names_are_not_trusted_and_many_files_are_trimmed() {
    let env = env();
    // Records 1..3 in a file named like a spare, 4 in one named like an old active; plus junk and a file
    // already named like the next active segment (stale, empty).
    segment(
        &env,
        "spare-00000000000000000000.seg",
        SEG,
        &[rec(1, "a", 1), rec(2, "a", 2), rec(3, "a", 3)],
    );
    segment(&env, "00000000000000000001.seg", SEG, &[rec(4, "a", 4)]);
    segment(&env, "00000000000000000005.seg", SEG, &[]);
    std::fs::write(env.cfg.dir.join("junk"), b"not a segment").unwrap();
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 4);
    assert_eq!(log(&env).len(), 4);
    assert_eq!(
        files(&env),
        vec!["00000000000000000005.seg", "spare-00000000000000000000.seg"]
    );
}

#[test]
fn gap_after_a_failed_write_is_tolerated() {
    let env = env();
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    segment(&env, "00000000000000000003.seg", SEG, &[rec(3, "a", 3)]);
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 3);
    assert_eq!(log(&env), vec![entry(1, "a", 1), entry(3, "a", 3)]);
}

#[test]
fn wal_off_applies_then_removes_the_directory() {
    let env = env();
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    recover_and_remove(&env.db, &env.cfg.db, &env.cfg.dir, &env.cfg.faults).unwrap();
    assert_eq!(log(&env), vec![entry(1, "a", 1)]);
    assert!(!env.cfg.dir.exists());
    recover_and_remove(&env.db, &env.cfg.db, &env.cfg.dir, &env.cfg.faults).unwrap();
}

// Identity (see `identity`): the test env's database has tables but no `db_id`, like one created before
// identities; `set_db_id` makes it one created since.

fn set_db_id(env: &Env, id: u64) {
    let txn = env.db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(identity::DB_ID, id).unwrap();
    txn.commit().unwrap();
}

fn write_id(env: &Env, name: &str, id: u64) {
    std::fs::create_dir_all(env.cfg.dir.join("identity")).unwrap();
    std::fs::write(
        env.cfg.dir.join("identity").join(name),
        format!("relay-miner relay WAL of database {id:016x}\n"),
    )
    .unwrap();
}

fn read_id(env: &Env, name: &str) -> Option<String> {
    std::fs::read_to_string(env.cfg.dir.join("identity").join(name)).ok()
}

/// Every file of the WAL directory and its identity directory, with its bytes.
fn snapshot(env: &Env) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for dir in [env.cfg.dir.clone(), env.cfg.dir.join("identity")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                all.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    all.sort();
    all
}

/// Recovery (WAL on and off) refuses with `Corrupt` naming both paths, applies nothing, changes no file.
fn assert_refused(env: &Env) -> String {
    let before = snapshot(env);
    let mut msgs = Vec::new();
    for r in [
        recover(&env.db, &env.cfg).map(drop),
        recover_and_remove(&env.db, &env.cfg.db, &env.cfg.dir, &env.cfg.faults),
    ] {
        let Err(StorageError::Corrupt(msg)) = r else {
            panic!("expected a refusal, got {r:?}");
        };
        assert!(msg.contains(&env.cfg.db.display().to_string()), "{msg}");
        assert!(msg.contains(&env.cfg.dir.display().to_string()), "{msg}");
        msgs.push(msg);
    }
    assert!(log(env).is_empty(), "nothing applied");
    assert_eq!(meta(env, WAL_APPLIED), 0);
    assert!(snapshot(env) == before, "the WAL directory is unchanged");
    msgs.swap_remove(0)
}

#[test]
fn a_wal_bound_to_another_database_is_refused() {
    let env = env();
    set_db_id(&env, 0xaaaa);
    write_id(&env, "wal-id", 0xbbbb);
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    let msg = assert_refused(&env);
    assert!(
        msg.contains("000000000000bbbb") && msg.contains("000000000000aaaa"),
        "{msg}"
    );
    // Also when the binding was not finished (a `wal-id.new` naming the other database).
    let id_dir = env.cfg.dir.join("identity");
    std::fs::rename(id_dir.join("wal-id"), id_dir.join("wal-id.new")).unwrap();
    assert_refused(&env);
}

#[test]
fn an_unbound_wal_with_records_next_to_a_database_with_identity_is_refused() {
    let env = env();
    set_db_id(&env, 0xaaaa);
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1), rec(2, "a", 2)]);
    let msg = assert_refused(&env);
    assert!(msg.contains("2 valid record"), "{msg}");
}

#[test]
fn a_bound_wal_next_to_a_database_without_identity_is_refused() {
    let env = env();
    write_id(&env, "wal-id", 0xbbbb);
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    assert_refused(&env);
}

#[test]
fn a_corrupt_identity_file_is_refused() {
    let env = env();
    set_db_id(&env, 0xaaaa);
    std::fs::create_dir_all(env.cfg.dir.join("identity")).unwrap();
    std::fs::write(env.cfg.dir.join("identity/wal-id"), b"garbage").unwrap();
    let before = snapshot(&env);
    let r = recover(&env.db, &env.cfg).map(drop);
    assert!(
        matches!(&r, Err(StorageError::Corrupt(m)) if m.contains("wal-id")),
        "{r:?}"
    );
    assert!(snapshot(&env) == before);
}

#[test]
fn an_empty_wal_is_bound_to_the_database() {
    let env = env();
    set_db_id(&env, 0xaaaa);
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 0);
    assert_eq!(
        read_id(&env, "wal-id").unwrap(),
        "relay-miner relay WAL of database 000000000000aaaa\n"
    );
    assert_eq!(read_id(&env, "wal-id.new"), None);
    // A missing directory too.
    std::fs::remove_dir_all(&env.cfg.dir).unwrap();
    recover(&env.db, &env.cfg).unwrap();
    assert!(read_id(&env, "wal-id").unwrap().ends_with("aaaa\n"));
}

#[test]
fn a_database_and_wal_without_identity_are_upgraded_and_recovered() {
    let env = env();
    set_applied(&env, 1);
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1), rec(2, "a", 2)]);
    let r = recover(&env.db, &env.cfg).unwrap();
    assert_eq!(r.last, 2);
    assert_eq!(
        log(&env),
        vec![entry(2, "a", 2)],
        "only the record newer than wal_applied"
    );
    let id = meta(&env, identity::DB_ID);
    assert_ne!(id, 0);
    assert_eq!(
        read_id(&env, "wal-id").unwrap(),
        format!("relay-miner relay WAL of database {id:016x}\n")
    );
    drop(r);
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 2, "bound: opens again");
    assert_eq!(meta(&env, identity::DB_ID), id);
}

#[test]
fn an_upgrade_interrupted_before_the_database_took_the_identity_starts_over() {
    let env = env();
    write_id(&env, "wal-id.new", 0xbbbb);
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 1);
    let id = meta(&env, identity::DB_ID);
    assert!(id != 0 && id != 0xbbbb);
    assert!(read_id(&env, "wal-id").unwrap().ends_with(&format!("{id:016x}\n")));
    assert_eq!(read_id(&env, "wal-id.new"), None);
}

#[test]
fn a_binding_interrupted_before_the_rename_is_finished() {
    let env = env();
    set_db_id(&env, 0xaaaa);
    write_id(&env, "wal-id.new", 0xaaaa);
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    assert_eq!(recover(&env.db, &env.cfg).unwrap().last, 1);
    assert_eq!(log(&env), vec![entry(1, "a", 1)]);
    assert!(read_id(&env, "wal-id").unwrap().ends_with("aaaa\n"));
    assert_eq!(read_id(&env, "wal-id.new"), None);
}

#[test]
fn wal_off_upgrades_the_database_after_removing_its_wal() {
    let env = env();
    segment(&env, "00000000000000000001.seg", SEG, &[rec(1, "a", 1)]);
    recover_and_remove(&env.db, &env.cfg.db, &env.cfg.dir, &env.cfg.faults).unwrap();
    assert_eq!(log(&env), vec![entry(1, "a", 1)]);
    assert!(!env.cfg.dir.exists());
    assert_ne!(meta(&env, identity::DB_ID), 0);
}
