//! An ingest batch is counted when its entries are acknowledged: a command of its step failing afterwards (here a
//! prune the engine issued again) does not skip the count, or nobody would ever count those relays (they are never
//! read again).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use storage::{MemoryBackend, StorageError};

use super::super::{BatchCounts, Rejections, TOO_LARGE};
use crate::keys::{KeyMap, Keyring};
use crate::miner::driver::Miner;
use crate::miner::driver::tests::{config, genesis, key_hex, relays, serve_grpc};
use crate::miner::lifecycle::{Command, SessionKey, Step};
use crate::sim::chain::{SimChain, actor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_batch_is_counted_even_when_a_command_of_its_step_fails() {
    let chain = SimChain::new(genesis()).unwrap();
    let (client, header) = serve_grpc(&chain).await;
    let (supplier_key, supplier, _) = actor(&key_hex("supplier")).unwrap();
    let keyring = Keyring::new(KeyMap::from([(supplier.clone(), supplier_key)]));
    let backend = MemoryBackend::new();
    let faults = backend.faults().clone();
    let plain = backend.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(client.clone(), plain.clone(), keyring, config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());

    plain.relay_log.append(relays(&supplier, &header, 0..3)).await.unwrap();
    let entries = plain.relay_log.read(&supplier, "miner", 10).await.unwrap();
    assert_eq!(entries.len(), 3);
    let ids: Vec<storage::EntryId> = entries.iter().map(|e| e.id).collect();
    let mut rejected = Rejections::default();
    rejected.note(TOO_LARGE, "anvil");
    let counts = BatchCounts {
        entries: 3,
        consumed: HashMap::from([("anvil".to_owned(), 2)]),
        rejected,
        ..BatchCounts::default()
    };
    // The batch's write set is the next write and succeeds; the step's prune fails at its first delete.
    let doomed = SessionKey {
        supplier: supplier.clone(),
        session_id: "another-session".into(),
    };
    let step = Step {
        commands: vec![Command::Prune { key: doomed }],
        ..Step::default()
    };
    faults.fail_nth_write(2, StorageError::Unavailable("test: the prune's delete fails".into()));
    let written = miner.commit_batch(&supplier, Vec::new(), step, ids, counts).await;
    assert!(written.is_err(), "the prune's failure is returned");

    assert_eq!(
        plain.relay_log.backlog(&supplier).await.unwrap(),
        storage::Backlog::default(),
        "the entries are acknowledged: never read again"
    );
    assert_eq!(miner.stats.relays_ingested.load(Ordering::Relaxed), 3);
    assert_eq!(miner.stats.relays_too_large.load(Ordering::Relaxed), 1);
    let text = telemetry.render_metrics();
    let value = |prefix: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert_eq!(value("ha_miner_relays_consumed_from_stream_total{"), Some(2));
    assert_eq!(value("ha_miner_relays_rejected_total{"), Some(1));
}

/// A batch that acknowledges relays without mining them is durable even when nothing else would make it so:
/// their rejections are counted right after the write, and an eventual write lost in a crash would deliver them
/// again to be counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_rejected_relays_is_written_durably() {
    use storage::SetDurability::{Eventual, Immediate};
    let chain = SimChain::new(genesis()).unwrap();
    let (client, _) = serve_grpc(&chain).await;
    let (supplier_key, supplier, _) = actor(&key_hex("supplier")).unwrap();
    let keyring = Keyring::new(KeyMap::from([(supplier, supplier_key)]));
    let mut miner = Miner::new(client, MemoryBackend::new().storage(), keyring, config("a"));
    miner.step().await.unwrap();
    let plain = BatchCounts {
        entries: 2,
        consumed: HashMap::from([("anvil".to_owned(), 2)]),
        ..BatchCounts::default()
    };
    assert_eq!(miner.batch_durability(&Step::default(), &plain), Eventual);
    let mut rejected = Rejections::default();
    rejected.note(TOO_LARGE, "anvil");
    let with_rejection = BatchCounts {
        entries: 2,
        consumed: HashMap::from([("anvil".to_owned(), 1)]),
        rejected,
        ..BatchCounts::default()
    };
    assert_eq!(miner.batch_durability(&Step::default(), &with_rejection), Immediate);
}
