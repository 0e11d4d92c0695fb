//! The miner behind a load balancer whose query backends lag the node it reads its tip from (the simulator's
//! `query_lag_blocks`): a claim that landed in the last block of its window must not be read as absent from a
//! backend that has not committed that block yet. Read so, it was re-sent inside the window (a second fee) or,
//! past the close, said absent at two heights and expired as `claim_not_included`: no proof sent, the reward lost.
//! The claim lookups are pinned to the miner's tip (`x-cosmos-block-height`), so a lagging backend refuses the
//! height instead of answering from its older state (unless that state holds the claim), and the miner looks
//! again at its next block.
//!
//! A lag that lasts into the proof window: a claim a backend behind the tip answers with (its own, older state)
//! says of its proof what the chain said at that height, "not validated" when the proof landed since. Past the
//! window's close the lookup takes that status as unknown while the session waits on its proof (it fails as
//! `ChainError::Behind`, asked again at the next block: [`crate::chain::query::ClaimAnswer::behind`]): said not
//! validated at two heights past the close, the session expired as `proof_not_included` though the chain paid
//! it. Inside the window it is taken: the proof's re-send two blocks after its send broadcasts the kept tx's same
//! bytes (the chain takes no second fee), and a node behind at every block cannot hold back the re-send of a
//! proof that was dropped. An "absent" answer stamped below the height asked is covered at the query level
//! (`chain::query::behind_tests`).

use super::rebroadcast::included_txs_of;
use super::*;
use crate::miner::lifecycle::{EngineConfig, Schedule, State};

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
    assert_claimed_proved_and_settled_once(&f, &what);
    // The lagging backends were asked and refused the height (the lookups failed and came again).
    assert!(!failed.is_empty(), "{what}");
}

/// A leader miner (with metrics, reading settlements from CometBFT) mines 3 relays of the fixture's session, whose
/// proof the chain requires. From the block its proof lands in until two blocks past the proof window's close,
/// every query backend stays at the block before it (`query_lag_blocks` grows by one a block: the backends
/// stalled), then catches up. Blocks run (one miner step each, a failed step retried at the next block) until
/// the session is decided and pruned, or 5 blocks past the settlement. Returns every state the miner had for the
/// session (the last one before it was pruned), the sessions it counted lost, the proofs it sent, the block the
/// proof landed in, the session's schedule and the failed steps.
async fn run_with_backends_stalled_before_the_proof(
    f: &Fixture,
    telemetry: &crate::telemetry::Telemetry,
) -> (Vec<State>, u64, u64, i64, Schedule, Vec<String>) {
    let plain = MemoryBackend::new().storage();
    let mut miner = settling_miner(f, &plain, telemetry, "a");
    miner.step().await.unwrap();
    plain
        .relay_log
        .append(signed_relays(f, &f.header, "app", 0..3, 100))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    let mut states = vec![State::Active];
    let mut failed = Vec::new();
    let mut proved_at = None;
    while f.chain.height() < schedule.settlement + 5 {
        let height = f.chain.produce_block();
        if proved_at.is_none() && f.chain.records().iter().any(|r| r.kind == "proof") {
            proved_at = Some(height);
        }
        f.chain.state().query_lag_blocks = match proved_at {
            Some(at) if height <= schedule.proof_close + 2 => height - (at - 1),
            _ => 0,
        };
        if let Err(e) = miner.step().await {
            failed.push(format!("{height}: {e}"));
        }
        match miner.engine.session(&f.key) {
            Some(record) if states.last() != Some(&record.state) => states.push(record.state),
            Some(_) => {}
            None => break,
        }
    }
    let lost = miner.stats.sessions_lost.load(std::sync::atomic::Ordering::Relaxed);
    let sent = miner.stats.proofs_sent.load(std::sync::atomic::Ordering::Relaxed);
    (states, lost, sent, proved_at.unwrap_or(0), schedule, failed)
}

/// The required proof lands inside its window and the query backends stall at the block before it until two
/// blocks past the window's close: the claim they answer with says "proof not validated" as of their height,
/// which is not what the chain says at the tip. The session is proved and paid with one proof tx (one proof
/// fee: the re-send inside the window broadcasts the kept tx's same bytes), nothing lost, never expired. Said
/// not validated at two heights past the window's close, the session expired as `proof_not_included`: a false
/// loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_read_through_backends_stalled_before_it_past_its_window_is_proved_once() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let f = fixture_on(g).await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let (states, lost, proofs_sent, proved_at, schedule, failed) =
        run_with_backends_stalled_before_the_proof(&f, &telemetry).await;
    let records = f.chain.records();
    let text = telemetry.render_metrics();
    let what = format!(
        "states {states:?}, proof landed at {proved_at}, schedule {schedule:?}, failed steps {failed:?}, records \
         {records:?}"
    );
    // The stall covers a re-send's height (two blocks after the send), the window's close and the two heights
    // past it that expire a session.
    assert!(
        proved_at >= schedule.proof_open
            && proved_at - 1 + crate::miner::lifecycle::CLAIM_RESEND_SPACING < schedule.proof_close,
        "the proof landed in its window, a re-send due before its close: {what}"
    );
    assert!(schedule.settlement >= schedule.proof_close, "{what}");
    assert_eq!(lost, 0, "nothing lost: {what}");
    assert!(!text.contains("_lost_total{"), "{text}");
    assert!(
        !text.contains("ha_miner_sessions_failed_total{"),
        "never expired: {what}\n{text}"
    );
    let series = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("outcome=\"validated\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(
        series("ha_miner_proof_inclusion_outcome_total"),
        Some(1),
        "proved: {what}\n{text}"
    );
    // Inside the window the stale "not validated" is taken (a node behind every block must not keep a dropped
    // proof from its re-send): the kept tx is broadcast again two blocks after its send, the same bytes.
    assert_eq!(proofs_sent, 2, "the proof sent, then its kept tx again: {what}");
    // One claim tx and one proof tx in blocks: one proof fee.
    assert_claimed_proved_and_settled_once(&f, &what);
    // The stalled backends' answers were not taken (the lookups failed and came again).
    assert!(failed.iter().any(|e| e.contains("proof validation status")), "{what}");
}

/// The chain ran one claim and one proof of the fixture's session, both accepted, from two txs in blocks (one fee
/// each), and settled the session. `what` describes the run for the failure messages.
fn assert_claimed_proved_and_settled_once(f: &Fixture, what: &str) {
    let records = f.chain.records();
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
}
