//! Relay hashing and supplier signature benches (issue 2): supplier sign and verify, and decoding a relay
//! request + response with a 1 KB payload plus both signable hashes. Numbers in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use relay_miner::protocol::wire::{RelayRequest, RelayRequestMetadata, SessionHeader};
use relay_miner::protocol::{address, relay, sha256, supplier_sig};

fn benches(c: &mut Criterion) {
    let key = address::signing_key_from_hex(&hex::encode(sha256(b"demo-supplier-key"))).expect("key");
    let pubkey = address::compressed_public_key(key.verifying_key());
    let digest = sha256(b"signable");
    c.bench_function("supplier_sign", |b| b.iter(|| supplier_sig::sign(&key, &digest)));
    let sig = supplier_sig::sign(&key, &digest);
    c.bench_function("supplier_verify", |b| {
        b.iter(|| supplier_sig::verify(&pubkey, &digest, &sig).expect("verify"))
    });

    let header = SessionHeader {
        application_address: "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4".into(),
        service_id: "anvil".into(),
        session_id: "fea5d6f7544ff6d8af5c22529b2ccf01ed7930b3d454d42dda5ccc0b65b6ebfd".into(),
        session_start_block_height: 9,
        session_end_block_height: 12,
    };
    let request = RelayRequest {
        meta: Some(RelayRequestMetadata {
            session_header: Some(header),
            signature: vec![7; 199],
            supplier_operator_address: address::address_of(&key),
        }),
        payload: vec![b'x'; 1024],
    };
    let response = relay::sign_response(&request, vec![b'y'; 1024], &key);
    let request_bytes = relay::encode_relay_request(&request);
    let response_bytes = relay::encode_relay_response(&response);
    c.bench_function("decode_and_signable_hashes_1kb", |b| {
        b.iter(|| {
            let req = relay::decode_relay_request(&request_bytes, relay::MAX_RELAY_MESSAGE_BYTES).expect("req");
            let res = relay::decode_relay_response(&response_bytes, relay::MAX_RELAY_MESSAGE_BYTES).expect("res");
            (relay::request_signable_hash(&req), relay::response_signable_hash(&res))
        })
    });
    c.bench_function("relay_bytes_and_hash_1kb", |b| {
        b.iter(|| relay::relay_hash(&relay::relay_bytes(&request, &response)))
    });
}

criterion_group!(group, benches);
criterion_main!(group);
