//! Relays a prune trims from the relay log before the ingest read them are counted lost (module `prune`), once,
//! and relays the session's trie holds are not, on every backend the driver runs on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering::Relaxed;

use super::*;
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

/// The sum of counter `name` over every label set (0 when it has none).
fn total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Relays 0..5 are ingested, then the miner's reads fail (it is behind) through the session's windows while
/// relays 5..8 and redeliveries of relays 1 and 2 reach the log. The session is claimed with its 5 ingested
/// relays, settled and pruned: the trim removes the 5 entries left, of which the 3 never ingested are counted
/// lost as `pruned_before_ingest` (relays, compute units and uPOKT) and the 2 the claimed trie holds are not
/// (claimed and paid). Before, the trim removed them all silently. A relay of the session appended after the
/// prune is the ingest's (`session_pruned`), not lost again.
async fn relays_trimmed_unread_are_counted_lost_once(plain: storage::Storage) {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = leader_on(&f, &plain, &telemetry).await;
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());

    let faults = hook_relay_log(&mut miner, None);
    faults.set(Failing::All);
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..8))
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 1..3))
        .await
        .unwrap();
    while miner.engine.session(&f.key).is_some() {
        assert!(f.chain.height() <= schedule.settlement + 1, "never pruned");
        f.chain.produce_block();
        if let Err(e) = miner.step().await {
            assert!(e.to_string().contains("read refused"), "{e}");
        }
    }
    assert!(miner.engine.is_tombstoned(&f.key));
    assert_eq!(
        plain.relay_log.backlog(&f.supplier).await.unwrap(),
        Backlog::default(),
        "trimmed"
    );
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "pruned_before_ingest"),
        Some(3)
    );
    assert_eq!(
        counter(&text, "ha_miner_compute_units_lost_total", "pruned_before_ingest"),
        Some(30)
    );
    assert!(counter(&text, "ha_miner_upokt_lost_total", "pruned_before_ingest").is_some());
    assert_eq!(miner.stats.relays_pruned_unread.load(Relaxed), 3);
    assert_eq!(
        miner.stats.claims_confirmed.load(Relaxed),
        1,
        "claimed with what was ingested"
    );
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 0);
    assert_eq!(
        total(&text, "ha_miner_relays_lost_total"),
        3,
        "5 entries trimmed, 2 of them relays the claimed trie holds: only the 3 others are lost\n{text}"
    );

    // Caught up again: a relay of the pruned session appended now is acknowledged as `session_pruned`.
    faults.set(Failing::None);
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 8..9))
        .await
        .unwrap();
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(rejected(&telemetry, "session_pruned"), 1);
    let text = telemetry.render_metrics();
    assert_eq!(total(&text, "ha_miner_relays_lost_total"), 3);
    assert_eq!(miner.stats.relays_pruned_unread.load(Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_trimmed_unread_are_counted_lost_once_in_memory() {
    relays_trimmed_unread_are_counted_lost_once(MemoryBackend::new().storage()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_trimmed_unread_are_counted_lost_once_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open_redb(&dir.path().join("miner.redb")).await;
    relays_trimmed_unread_are_counted_lost_once(backend.storage()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_trimmed_unread_are_counted_lost_once_on_redis() {
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let redis = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
    relays_trimmed_unread_are_counted_lost_once(redis.storage()).await;
}
