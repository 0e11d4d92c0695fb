//! SMST benches (issue 3): insert into tries prefilled with 1e3..1e6 leaves, root of N fresh leaves,
//! prove_closest, commit of a batch to the in-memory store, reopening a committed trie (load every leaf, link,
//! rehash), and resident and stored bytes per leaf (printed).
//! `SMST_BENCH_MAX` caps the largest size (default 1e6), `SMST_BENCH_MIN` skips smaller ones (default 0).
//! Numbers in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use relay_miner::protocol::sha256;
use relay_miner::smst::Smst;
use storage::MemoryNodeStore;

fn relay(i: u64) -> ([u8; 32], Vec<u8>) {
    let key = sha256(&i.to_be_bytes());
    (key, key[..16].to_vec())
}

fn prefilled(n: u64) -> Smst<MemoryNodeStore> {
    let mut t = Smst::new(MemoryNodeStore::new());
    for i in 0..n {
        let (k, v) = relay(i);
        t.insert_relay(&k, &v, 10);
    }
    t.commit().expect("commit");
    t.root();
    t
}

/// Deletes the leaves `n+1..=next` a bench inserted and commits, leaving `n` leaves.
fn restore(trie: &mut Smst<MemoryNodeStore>, n: u64, next: &mut u64) {
    for i in n + 1..=*next {
        let (k, _) = relay(i);
        assert!(trie.delete(&k));
    }
    *next = n;
    trie.commit().expect("commit");
    assert_eq!(trie.count(), n);
}

fn benches(c: &mut Criterion) {
    let max: u64 = std::env::var("SMST_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let min: u64 = std::env::var("SMST_BENCH_MIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut group = c.benchmark_group("smst");
    group.sample_size(10);
    for n in [1_000u64, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|n| (min..=max).contains(n))
    {
        let started = Instant::now();
        let mut trie = prefilled(n);
        let build = started.elapsed();
        eprintln!(
            "smst prefill {n}: {:.2?} ({:.2} µs/leaf incl. root+commit), resident {} B/leaf, stored {} B/leaf",
            build,
            build.as_secs_f64() * 1e6 / n as f64,
            trie.resident_bytes() / n as usize,
            trie.store().stored_bytes() / n as usize
        );
        // What a new leader or a restarted miner pays per open session (before the mutating benches below leave
        // freed leaf ids behind, which a relay trie, only ever inserted into, does not have).
        let root = trie.root();
        group.bench_function(format!("reopen_and_root_{n}"), |b| {
            b.iter_batched(
                || trie.store().clone(),
                |store| {
                    let mut reopened = Smst::open(store).expect("open");
                    assert_eq!(reopened.root(), root);
                    reopened
                },
                BatchSize::PerIteration,
            )
        });
        let mut next = n;
        // Each bench starts from a committed, fully hashed trie of exactly `n` leaves: the leaves a mutating bench
        // added are deleted again (and committed) before the next one, so no bench pays for another's leftovers
        // and the size in the name is the size measured (an insert bench alone adds ~1e6 leaves).
        group.bench_function(format!("insert_into_{n}"), |b| {
            b.iter(|| {
                next += 1;
                let (k, v) = relay(next);
                trie.insert_relay(&k, &v, 10);
            })
        });
        restore(&mut trie, n, &mut next);
        group.bench_function(format!("insert_and_root_into_{n}"), |b| {
            b.iter(|| {
                next += 1;
                let (k, v) = relay(next);
                trie.insert_relay(&k, &v, 10);
                trie.root()
            })
        });
        restore(&mut trie, n, &mut next);
        let mut probe = 0u64;
        group.bench_function(format!("prove_closest_{n}"), |b| {
            b.iter(|| {
                probe += 1;
                trie.prove_closest(&sha256(&probe.to_le_bytes())).expect("prove")
            })
        });
        group.bench_function(format!("insert_100_and_commit_into_{n}"), |b| {
            b.iter(|| {
                for _ in 0..100 {
                    next += 1;
                    let (k, v) = relay(next);
                    trie.insert_relay(&k, &v, 10);
                }
                trie.commit().expect("commit")
            })
        });
        restore(&mut trie, n, &mut next);
    }
    for n in [10_000u64, 100_000, 1_000_000]
        .into_iter()
        .filter(|n| (min..=max).contains(n))
    {
        group.bench_function(format!("root_of_{n}_fresh_leaves"), |b| {
            b.iter_batched(
                || {
                    let mut t = Smst::new(MemoryNodeStore::new());
                    for i in 0..n {
                        let (k, v) = relay(i);
                        t.insert_relay(&k, &v, 10);
                    }
                    t
                },
                |mut t| t.root(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
