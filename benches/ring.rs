//! Ring signature benches (issue 2): verify n = 2, 3, 5 with a warm H_p cache, sign n = 2, cold H_p; the relayer's
//! fixed-base verifier (`FastRing`) with warm tables, n = 2.
//! Numbers and machine in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use k256::elliptic_curve::group::GroupEncoding as _;
use k256::elliptic_curve::ops::Reduce as _;
use k256::{ProjectivePoint, Scalar};
use relay_miner::protocol::ring::fast::{FastRing, HOT_AFTER};
use relay_miner::protocol::ring::{RawRingSignature, RingSignature, hash_to_curve};
use relay_miner::protocol::sha256;

fn keys(n: usize) -> (Vec<Scalar>, Vec<[u8; 33]>) {
    let secrets: Vec<Scalar> = (0..n)
        .map(|i| Scalar::reduce(&k256::FieldBytes::from(sha256(format!("key-{i}").as_bytes()))))
        .collect();
    let ring = secrets
        .iter()
        .map(|s| {
            let mut out = [0u8; 33];
            out.copy_from_slice(&(ProjectivePoint::GENERATOR * s).to_affine().to_bytes());
            out
        })
        .collect();
    (secrets, ring)
}

fn benches(c: &mut Criterion) {
    let message = sha256(b"relay request signable hash");
    for n in [2usize, 3, 5] {
        let (secrets, ring) = keys(n);
        let sig = RingSignature::sign(&ring, &message, &secrets[n - 1]).expect("sign");
        let bytes = sig.to_bytes();
        c.bench_function(&format!("ring_verify_n{n}_warm"), |b| {
            b.iter(|| relay_miner::protocol::ring::verify_relay_ring_signature(&bytes, &message).expect("verify"))
        });
    }
    let (secrets, ring) = keys(2);
    // The relayer's verifier with warm tables: one signer (one key image), 64 messages signed on their own (so
    // the scalars differ between iterations), every key hot before measuring.
    let signed: Vec<(RawRingSignature, [u8; 32])> = (0..64u32)
        .map(|i| {
            let message = sha256(&i.to_be_bytes());
            let bytes = RingSignature::sign(&ring, &message, &secrets[1])
                .expect("sign")
                .to_bytes();
            (RawRingSignature::parse(&bytes).expect("parse"), message)
        })
        .collect();
    let fast = FastRing::default();
    for (sig, m) in signed.iter().cycle().take(HOT_AFTER as usize + 64) {
        fast.verify(sig, m).expect("verify");
    }
    let mut next = signed.iter().cycle();
    c.bench_function("fast_ring_verify_n2_tables", |b| {
        b.iter(|| {
            let (sig, m) = next.next().expect("cycle");
            fast.verify(sig, m).expect("verify")
        })
    });
    c.bench_function("ring_sign_n2", |b| {
        b.iter(|| RingSignature::sign(&ring, &message, &secrets[1]).expect("sign"))
    });
    c.bench_function("hash_to_curve_cold", |b| {
        b.iter(|| hash_to_curve(&ring[0]).expect("hp"))
    });
}

criterion_group!(group, benches);
criterion_main!(group);
