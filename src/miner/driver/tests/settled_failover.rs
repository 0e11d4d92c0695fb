//! What the chain paid is counted across processes (module `settled`): a session pruned once its proof was
//! validated, before the chain settled it, leaves a tombstone stored awaiting its settlement, so whoever leads
//! at its settlement block counts it (after a restart of the embedded backend's only process, after a
//! failover); a session counted is stored as counted before it is, so no later leader counts it again.

use super::settled::{series, settlement_series};
use super::*;
use crate::miner::driver::TOMBSTONE_STATE;

/// The fixture's chain, where the session's 3 relays of 10 compute units (1 260 uPOKT) need a proof.
async fn proof_required() -> Fixture {
    let mut g = genesis();
    g.proof_params.proof_requirement_threshold_upokt = 1_000;
    fixture_on(g).await
}

/// Produces blocks, one `miner` step each, until the chain is at `height`.
async fn run_to(f: &Fixture, miner: &mut Miner, height: i64) {
    while f.chain.height() < height {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
}

/// The claims `telemetry` counted settled as proven.
fn proven(telemetry: &crate::telemetry::Telemetry) -> Option<u64> {
    series(
        &telemetry.render_metrics(),
        "ha_miner_claims_settled_by_status_total",
        &["status=\"proven\""],
    )
}

/// Whether the session's stored tombstone awaits its settlement's count.
async fn awaiting(plain: &storage::Storage, key: &SessionKey) -> bool {
    let stored = plain
        .sessions
        .get(&key.supplier, &key.session_id)
        .await
        .unwrap()
        .expect("a tombstone");
    assert_eq!(stored.state, TOMBSTONE_STATE);
    serde_json::from_slice::<SessionRecord>(&stored.data)
        .unwrap()
        .awaiting_settlement
}

/// The fixture every test here starts from: a chain where the session needs a proof, a leader ([`leading_with`],
/// instance "a") on `plain` that ingested 3 signed relays of it and led it through its proof up to the block
/// before its settlement's: its proof validated and the session pruned, its tombstone stored awaiting the
/// settlement.
async fn pruned_leader(plain: storage::Storage) -> Leading {
    let f = proof_required().await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    let mut leading = leading_with(f, plain, relays).await;
    let Leading {
        f,
        miner,
        plain,
        schedule,
        ..
    } = &mut leading;
    run_to(f, miner, schedule.settlement - 1).await;
    assert!(miner.engine.session(&f.key).is_none(), "pruned before its settlement");
    assert!(miner.engine.is_tombstoned(&f.key));
    assert!(f.chain.settlements().is_empty(), "not settled yet");
    assert!(awaiting(plain, &f.key).await);
    leading
}

/// The leader's process stops (without giving its lease up, as a crash) between the prune of a `Proved`
/// session and its settlement block, and starts again on the same database: it counts the settlement. The watch
/// lived in memory only, and the restarted process counted nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pruned_before_its_settlement_is_counted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner.redb");
    let Leading {
        f,
        miner,
        plain,
        telemetry,
        schedule,
    } = pruned_leader(open_redb(&path).await.storage()).await;
    assert_eq!(proven(&telemetry), None);
    drop((miner, plain, telemetry));

    let plain = open_redb(&path).await.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = settling_miner(&f, &plain, &telemetry, "a");
    run_to(&f, &mut miner, schedule.settlement + 2).await;
    assert!(miner.engine.is_leader());
    assert_eq!(f.chain.settlements().len(), 1);
    assert_eq!(proven(&telemetry), Some(1), "{}", telemetry.render_metrics());
    assert!(!awaiting(&plain, &f.key).await, "stored as counted");
}

/// A leader counts a settlement, then gives its lease up; the next leader restores the session's tombstone,
/// stored as counted, and counts nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_counted_by_one_leader_is_not_counted_again_by_the_next() {
    let Leading {
        f,
        mut miner,
        plain,
        telemetry,
        schedule,
    } = pruned_leader(MemoryBackend::new().storage()).await;
    run_to(&f, &mut miner, schedule.settlement + 1).await;
    assert_eq!(proven(&telemetry), Some(1), "{}", telemetry.render_metrics());
    miner.resign().await;

    let next_telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut next = settling_miner(&f, &plain, &next_telemetry, "b");
    run_to(&f, &mut next, schedule.settlement + 5).await;
    assert!(next.engine.is_leader());
    assert!(next.engine.is_tombstoned(&f.key), "the tombstone is restored");
    assert_eq!(
        settlement_series(&next_telemetry.render_metrics()),
        Vec::<String>::new(),
        "counted again"
    );
}

/// Leadership moves between the prune and the settlement: the new leader counts the settlement, and the first
/// one, leading again later with the watch of its first term still in memory, counts nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_back_after_a_failover_does_not_count_what_the_other_counted() {
    leader_back_after_a_failover(MemoryBackend::new().storage()).await;
}

/// The same on a real `redis-server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_back_after_a_failover_does_not_count_what_the_other_counted_on_redis() {
    use storage::redis::server::{RedisServer, ServerOptions};
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let redis = storage::redis::RedisBackend::connect(storage::redis::RedisConfig::new(server.url()))
        .await
        .unwrap();
    leader_back_after_a_failover(redis.storage()).await;
}

async fn leader_back_after_a_failover(plain: storage::Storage) {
    let Leading {
        f,
        mut miner,
        plain,
        telemetry,
        schedule,
    } = pruned_leader(plain).await;
    miner.resign().await;

    let other_telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut other = settling_miner(&f, &plain, &other_telemetry, "b");
    run_to(&f, &mut other, schedule.settlement + 1).await;
    assert!(other.engine.is_leader());
    assert_eq!(
        proven(&other_telemetry),
        Some(1),
        "{}",
        other_telemetry.render_metrics()
    );
    assert!(!awaiting(&plain, &f.key).await, "stored as counted");
    other.resign().await;

    run_to(&f, &mut miner, schedule.settlement + 5).await;
    assert!(miner.engine.is_leader(), "leads again");
    assert_eq!(
        settlement_series(&telemetry.render_metrics()),
        Vec::<String>::new(),
        "counted again"
    );
}

/// A supplier removed from the keys file between its session's prune and its settlement, then a failover whose
/// listing of the keyless suppliers' sessions fails (storage in trouble, as when the leadership moves): the
/// listing is owed and tried again at the next blocks, once per block (not at a tick without a new block), so the
/// new leader restores the session's tombstone (forgotten when due) and counts what the chain paid for it. Only
/// logged, the listing was not made again for the whole term: the tombstone stayed in storage and the
/// settlement was never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_suppliers_settlement_is_counted_though_the_listing_failed_at_the_failover() {
    let backend = MemoryBackend::new();
    let Leading {
        f,
        mut miner,
        plain,
        schedule,
        ..
    } = pruned_leader(backend.storage()).await;
    f.keyring.replace(KeyMap::new());
    miner.resign().await;

    // The listing at the leadership change fails, and so does the one at the new leader's first block.
    backend
        .faults()
        .fail_session_lists(2, StorageError::Unavailable("test: storage in trouble".into()));
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut next = settling_miner(&f, &plain, &telemetry, "b");
    next.step().await.unwrap();
    assert!(next.engine.is_leader());
    assert!(!next.engine.is_tombstoned(&f.key), "both listings failed");
    // Storage answers again, but no new block: not listed yet (at most once a block).
    next.step().await.unwrap();
    assert!(
        !next.engine.is_tombstoned(&f.key),
        "listed again at a tick without a block"
    );

    run_to(&f, &mut next, schedule.settlement + 1).await;
    assert!(next.engine.is_tombstoned(&f.key), "restored by the owed listing");
    assert_eq!(f.chain.settlements().len(), 1);
    assert_eq!(proven(&telemetry), Some(1), "{}", telemetry.render_metrics());
    assert!(!awaiting(&plain, &f.key).await, "stored as counted");
}
