//! A read of a supplier's log that storage cannot answer in time because it asks for too many bytes (a Redis
//! `XREADGROUP` whose reply outlasts the client's response timeout: the server delivered the entries, so they
//! are pending) is not asked again at the same size: the read size learned from small relays, kept after the
//! failure, failed every round, and the supplier's ingest stopped for good (its claims held, then built without
//! those relays). The next round starts with a probe and sizes up from what it reads.

use prost::Message as _;
use storage::MemoryBackend;

use super::super::INGEST_BATCH;
use super::backlog;
use crate::keys::{KeyMap, Keyring};
use crate::miner::driver::Miner;
use crate::miner::driver::tests::{config, genesis, key_hex, relays, serve_grpc};
use crate::sim::chain::{SimChain, actor};

/// `relays` each carrying `pad` more payload bytes, in a protobuf field the decoder skips (as an unknown field of a
/// newer relayer): the relay, its hash and its weight are unchanged, only its size in the log grows.
fn padded(relays: Vec<storage::MinedRelay>, pad: usize) -> Vec<storage::MinedRelay> {
    relays
        .into_iter()
        .map(|mut relay| {
            prost::encoding::bytes::encode(1000, &vec![7u8; pad], &mut relay.payload);
            relay
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_too_large_for_storage_to_answer_is_asked_again_small() {
    let chain = SimChain::new(genesis()).unwrap();
    let (client, header) = serve_grpc(&chain).await;
    let (supplier_key, supplier, _) = actor(&key_hex("supplier")).unwrap();
    let keyring = Keyring::new(KeyMap::from([(supplier.clone(), supplier_key)]));
    let backend = MemoryBackend::new();
    let plain = backend.storage();
    let mut miner = Miner::new(client, plain.clone(), keyring, config("a"));
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());

    // Small relays: full batches learned.
    let small = INGEST_BATCH as u64 + 1;
    plain
        .relay_log
        .append(relays(&supplier, &header, 0..small))
        .await
        .unwrap();
    miner.ingest().await.unwrap();
    assert_eq!(backlog(&plain, &supplier).await, 0);
    assert_eq!(miner.ingest_read_size.get(&supplier), Some(&INGEST_BATCH));

    // Then a backlog of 40 KB relays: a full batch of them (~20.5 MB) is more than storage answers in time (18 MiB).
    let big = padded(
        relays(&supplier, &header, small..small + INGEST_BATCH as u64 + 8),
        40_000,
    );
    let decoded = crate::protocol::wire::MinedRelayMessage::decode(big[0].payload.as_slice());
    assert!(decoded.is_ok(), "still a relay");
    plain.relay_log.append(big).await.unwrap();
    backend.faults().limit_read_bytes(Some(18 << 20));
    assert!(miner.ingest().await.is_err(), "the full-size read fails");
    let stuck = backlog(&plain, &supplier).await;
    assert_eq!(stuck, INGEST_BATCH as u64 + 8);

    miner.ingest().await.unwrap();
    assert_eq!(
        backlog(&plain, &supplier).await,
        0,
        "read again small, then sized from what was read: drained"
    );
}
