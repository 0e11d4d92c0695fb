//! A session decided "no proof required" whose settlement the chain cannot tell (here: the CometBFT node is
//! unreachable, as a node pruning or discarding its block results cannot answer either) is not pruned as paid
//! because lookups were *asked*: they are asked again at every block, and once the wait is over the session ends
//! with its settlement unknown, counted as such (`ha_miner_settlement_unknown_total`), neither paid nor lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::miner::driver::MinerError;
use crate::miner::lifecycle::{SETTLED_LOOKUP_BLOCKS, SETTLEMENT_WAIT_BLOCKS, State};

/// Steps `miner` and produces a block until the chain is at `height`; a step may only fail for the CometBFT
/// node (the first blocks past the settlement fail the lookup: module `lookup`).
async fn run_to(f: &Fixture, miner: &mut Miner, height: i64) {
    while f.chain.height() < height {
        f.chain.produce_block();
        if let Err(e) = miner.step().await {
            assert!(matches!(e, MinerError::Comet(_)), "{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_the_chain_cannot_tell_ends_unknown_not_paid() {
    let f = fixture().await;
    // A CometBFT RPC address nothing listens on: every read is refused (a transport error).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = crate::chain::comet::CometClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let plain = MemoryBackend::new().storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_settlements_from(dead)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    run_to(&f, &mut miner, schedule.settlement + SETTLED_LOOKUP_BLOCKS + 3).await;
    let record = miner
        .engine
        .session(&f.key)
        .expect("not pruned while the settlement is not read");
    assert_eq!((record.state, record.proof_required), (State::Settled, Some(false)));
    assert!(!record.settlement_seen && !record.pruned, "{record:?}");
    assert!(i64::from(record.settlement_lookups) >= SETTLED_LOOKUP_BLOCKS);

    run_to(&f, &mut miner, schedule.settlement + SETTLEMENT_WAIT_BLOCKS + 2).await;
    assert!(miner.engine.session(&f.key).is_none(), "pruned once given up");
    let tombstone = assert_session_pruned(&plain, &f.supplier, &f.key.session_id).await;
    assert!(
        tombstone.settlement_unknown && tombstone.state == State::Settled,
        "{tombstone:?}"
    );
    let text = telemetry.render_metrics();
    assert_eq!(
        super::settled::series(&text, "ha_miner_settlement_unknown_total", &["service_id=\"anvil\""]),
        Some(1),
        "{text}"
    );
    assert_eq!(
        miner
            .stats
            .settlements_unknown
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ha_miner_") && l.contains("_lost_total") && !l.ends_with(" 0")),
        "nothing counted lost: {text}"
    );
}
