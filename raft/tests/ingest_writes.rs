//! What one miner ingest batch costs on a 3-node raft cluster (in-process nodes on 127.0.0.1, redb with fsync),
//! written as the miner wrote it before write sets (each session's trie batch, each session's record, then the
//! ack: one fenced raft entry each) and as one write set (one fenced entry). A measurement, not a check:
//!
//! `cargo test -p relay-miner-raft --test ingest_writes -- --ignored --nocapture`
//!
//! `INGEST_BENCH_ROUNDS` batches per shape (default 20); 512 relays of 1 KiB per batch (the miner's
//! `INGEST_BATCH`), spread over 1, 4 and 16 sessions; records of 1 KiB (the miner's JSON is ~0.6-1 KiB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, SUPPLIER};
use storage::{EntryId, Fence, LogAck, MinedRelay, NodeBatch, RecordWrite, Storage, TrieWrite, WriteSet};

const RELAYS: usize = 512;

fn batch(round: usize, session: usize, n: usize) -> NodeBatch {
    let mut puts = Vec::with_capacity(2 * n + 1);
    for i in 0..n {
        let id = u32::try_from(round * RELAYS + session * n + i).unwrap();
        let mut k = vec![b'L'];
        k.extend_from_slice(&id.to_be_bytes());
        puts.push((k.clone(), vec![7u8; 48]));
        k[0] = b'V';
        puts.push((k, vec![9u8; 1024]));
    }
    puts.push((b"R".to_vec(), vec![0u8; 8]));
    puts.sort();
    NodeBatch {
        puts,
        deletes: Vec::new(),
    }
}

async fn delivered(s: &Storage, round: usize) -> Vec<EntryId> {
    let relays = (0..RELAYS)
        .map(|i| MinedRelay {
            supplier: SUPPLIER.into(),
            session_id: format!("s{}", i % 16),
            session_end_height: 100,
            relay_hash: ((round * RELAYS + i) as u64).to_be_bytes().repeat(4),
            payload: vec![1u8; 1024],
        })
        .collect();
    s.relay_log.append(relays).await.unwrap();
    s.relay_log
        .read(SUPPLIER, "miner", RELAYS)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn ingest_batch_writes_one_by_one_vs_one_write_set() {
    let rounds: usize = std::env::var("INGEST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let c = Cluster::start(3).await;
    let leader = c.node(c.leader().await);
    let plain = leader.storage();
    let token = plain
        .leadership
        .campaign("global", "miner", Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    let s = plain.fenced(Fence::new("global", "miner", token));
    let mut versions = std::collections::HashMap::<String, u64>::new();
    let mut round = 0;
    for sessions in [1usize, 4, 16] {
        let mut stores = Vec::new();
        for i in 0..sessions {
            stores.push(s.tries.open(SUPPLIER, &format!("s{i}")).await.unwrap());
        }
        let mut stores = Some(stores);
        let (mut old, mut new) = (Vec::new(), Vec::new());
        let (mut old_entries, mut new_entries) = (0u64, 0u64);
        for r in 0..2 * rounds {
            round += 1;
            let ids = delivered(&s, round).await;
            let per = RELAYS / sessions;
            let before = leader.status().last_log_index.unwrap_or(0);
            let started = Instant::now();
            if r % 2 == 0 {
                // Before write sets: per session its trie batch then its record (`execute` per session), then the ack.
                let mut st = stores.take().unwrap();
                for (i, store) in st.iter_mut().enumerate() {
                    let b = batch(round, i, per);
                    let store = std::mem::replace(store, s.tries.open(SUPPLIER, &format!("s{i}")).await.unwrap());
                    let mut store = store;
                    tokio::task::spawn_blocking(move || store.write_batch(b).unwrap())
                        .await
                        .unwrap();
                    let key = format!("s{i}");
                    let v = versions.get(&key).copied().unwrap_or(0);
                    let nv = s
                        .sessions
                        .put(SUPPLIER, &key, "active", vec![3u8; 1024], v)
                        .await
                        .unwrap();
                    versions.insert(key, nv);
                }
                stores = Some(st);
                s.relay_log.ack(SUPPLIER, &ids).await.unwrap();
                old.push(started.elapsed());
                old_entries += leader.status().last_log_index.unwrap_or(0) - before;
            } else {
                let mut set = WriteSet::default();
                for i in 0..sessions {
                    let key = format!("s{i}");
                    set.tries.push(TrieWrite {
                        supplier: SUPPLIER.into(),
                        namespace: key.clone(),
                        batch: batch(round, i, per),
                    });
                    set.records.push(RecordWrite {
                        supplier: SUPPLIER.into(),
                        session_id: key.clone(),
                        state: "active".into(),
                        data: vec![3u8; 1024],
                        expected_version: versions.get(&key).copied().unwrap_or(0),
                    });
                }
                set.acks.push(LogAck {
                    supplier: SUPPLIER.into(),
                    ids,
                });
                let out = s.write_sets.write(set).await.unwrap();
                for (i, v) in out.versions.into_iter().enumerate() {
                    versions.insert(format!("s{i}"), v);
                }
                new.push(started.elapsed());
                new_entries += leader.status().last_log_index.unwrap_or(0) - before;
            }
        }
        old.sort();
        new.sort();
        println!(
            "{sessions:>2} sessions, {RELAYS} relays of 1 KiB: one by one {:.1} raft entries/batch, median {:.1} ms, \
             p90 {:.1} ms | write set {:.1} entries/batch, median {:.1} ms, p90 {:.1} ms ({rounds} batches each)",
            old_entries as f64 / rounds as f64,
            percentile(&old, 0.5),
            percentile(&old, 0.9),
            new_entries as f64 / rounds as f64,
            percentile(&new, 0.5),
            percentile(&new, 0.9),
        );
    }
    c.shutdown().await;
}
