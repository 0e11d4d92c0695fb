//! The miner behind a load balancer whose query backends lag the node it reads its tip from (the simulator's
//! `query_lag_blocks`): a claim that landed in the last block of its window must not be read as absent from a
//! backend that has not committed that block yet. Read so, it was re-sent inside the window (a second fee) or,
//! past the close, said absent at two heights and expired as `claim_not_included`: no proof sent, the reward lost.
//! The claim lookups are pinned to the miner's tip (`x-cosmos-block-height`), so a lagging backend refuses the
//! height instead of answering from its older state (unless that state holds the claim), and the miner looks
//! again at its next block.
//!
//! Not covered: a lag that lasts into the proof window. A lagging backend's claim says "proof not validated" as
//! of its height, and the engine re-sends a proof it does not see validated two blocks after the send (a second
//! fee, no loss); the lookup would have to take that status as unknown when the answer is older than the tip
//! ([`crate::chain::query::ChainClient::claim_as_of`]).

use super::rebroadcast::included_txs_of;
use super::*;
use crate::miner::lifecycle::{EngineConfig, State};

/// Blocks the query backends lag the tip from the claim's block on: enough for the old lookups to read the claim
/// absent at the two heights past the close that expire a session.
const LAG: i64 = 3;

/// A leader miner mines 3 relays of the fixture's session with its claim sent at the last height it may be sent
/// (`claim_close − 1`, `claim_delay_blocks` clamped), so it lands in the window's last block; from that block on
/// every query backend lags the tip by [`LAG`] for [`LAG`] + 1 blocks, then catches up. Blocks run (one miner step each; a step that fails, as a lookup
/// refused by a lagging backend does, is retried at the next block) until the session is settled and two more.
/// Returns the last state the miner had for the session, the sessions it counted lost, the claims it sent, and
/// the failed steps.
async fn run_with_lagging_backends(f: &Fixture) -> (State, u64, u64, Vec<String>) {
    let plain = MemoryBackend::new().storage();
    let config = MinerConfig {
        engine: EngineConfig {
            claim_delay_blocks: 100,
            ..config("a").engine
        },
        ..config("a")
    };
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config);
    miner.step().await.unwrap();
    plain
        .relay_log
        .append(signed_relays(f, &f.header, "app", 0..3, 100))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    let mut state = State::Active;
    let mut failed = Vec::new();
    while f.chain.height() < schedule.settlement + 2 {
        let height = f.chain.produce_block();
        if height == schedule.claim_close {
            assert!(
                f.chain
                    .state()
                    .claims
                    .contains_key(&(f.key.session_id.clone(), f.supplier.clone())),
                "the claim landed in the window's last block: {:?}",
                f.chain.records()
            );
            f.chain.state().query_lag_blocks = LAG;
        }
        // The backends caught up (the balancer's next pick), before the proof is sent (see the module docs).
        if height == schedule.claim_close + LAG + 1 {
            f.chain.state().query_lag_blocks = 0;
        }
        if let Err(e) = miner.step().await {
            failed.push(format!("{height}: {e}"));
        }
        if let Some(record) = miner.engine.session(&f.key) {
            state = record.state;
        }
    }
    let lost = miner.stats.sessions_lost.load(std::sync::atomic::Ordering::Relaxed);
    let sent = miner.stats.claims_sent.load(std::sync::atomic::Ordering::Relaxed);
    (state, lost, sent, failed)
}

/// The claim lands in the last block of its window and the query backends lag 3 blocks from then until it is
/// confirmed: the
/// session is proved and settled, with one claim tx and one proof tx (no re-send, nothing lost). The old,
/// un-pinned lookups read the claim absent at `claim_close + 1` and `+ 2` and expired the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_the_last_block_of_its_window_read_through_lagging_backends_is_proved_and_settled() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    // Room in the proof window for the lookups that wait for the lagging backends.
    g.shared_params.proof_window_close_offset_blocks = 8;
    let f = fixture_on(g).await;
    let (state, lost, claims_sent, failed) = run_with_lagging_backends(&f).await;
    let records = f.chain.records();
    let what = format!("last state {state:?}, failed steps {failed:?}, records {records:?}");
    assert_eq!(lost, 0, "nothing lost: {what}");
    assert_eq!(claims_sent, 1, "the claim sent once: {what}");
    for kind in ["claim", "proof"] {
        let of_kind: Vec<_> = records.iter().filter(|r| r.kind == kind).collect();
        assert_eq!(of_kind.len(), 1, "one {kind} ran: {what}");
        assert!(of_kind[0].rejected.is_none(), "{kind} accepted: {what}");
    }
    assert_eq!(
        included_txs_of(&f.chain, &f.supplier).len(),
        2,
        "two txs in blocks: {what}"
    );
    let settled = f.chain.settlements();
    assert!(
        matches!(settled.as_slice(), [(id, _, crate::sim::chain::Settlement::Settled(_))] if *id == f.key.session_id),
        "settled: {settled:?} ({what})"
    );
    // The lagging backends were asked and refused the height (the lookups failed and came again).
    assert!(!failed.is_empty(), "{what}");
}
