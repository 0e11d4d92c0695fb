//! The leader's re-send of a claim or proof tx the node took and no block included yet (module
//! `submit::resend`), with the production defaults: `claim_delay_blocks` = 1, one re-send, a buffer of 1 and the
//! default windows (claim and proof windows of 4 blocks; here claim at 13, its re-send at 15, the last sending
//! height; proof at 16, its re-send at 18, the last sending height 19). Only the first claim tx and the first
//! proof tx are held in the mempool (`inclusion_delay_blocks` while it is sent), later ones go into the next
//! block, as a tx stuck behind full blocks while a later one is not.

use super::inclusion_delay::{Run, assert_claimed_and_proved, assert_claimed_and_proved_once, run_session_with};
use super::*;
use crate::miner::lifecycle::{EngineConfig, SessionRecord};

/// A proof always required (so both messages run), the default windows.
fn always_prove() -> Genesis {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g
}

/// Holds the first claim tx and the first proof tx `claim` and `proof` blocks more in the mempool (`None`: not
/// held); every later tx goes into the next block.
fn hold_first_txs(claim: Option<i64>, proof: Option<i64>) -> impl FnMut(&SimChain, i64, &SessionRecord) {
    move |chain, height, record| {
        let s = record.schedule;
        let delay = if height >= s.claim_open && record.claim_sent_at.is_empty() {
            claim
        } else if height >= s.proof_open && record.proof_sent_at.is_empty() {
            proof
        } else {
            None
        };
        chain.state().inclusion_delay_blocks = delay.unwrap_or(0);
    }
}

/// One session with the production engine config, unordered txs unless `ordered`.
async fn run_one(ordered: bool, at_height: impl FnMut(&SimChain, i64, &SessionRecord)) -> (Fixture, Run) {
    run_session_with(always_prove(), !ordered, EngineConfig::default(), at_height).await
}

/// The (height, kind) of the supplier's txs in blocks, each with code 0.
fn landed(run: &Run) -> Vec<(i64, &'static str)> {
    assert!(run.txs.iter().all(|(_, _, code)| *code == 0), "{run:?}");
    run.txs.iter().map(|(h, kind, _)| (*h, *kind)).collect()
}

/// (a) A proof tx landing 2 blocks late (sent at 16, in block 19): the re-send at 18 finds its same bytes still in
/// the node's mempool (code 19) and signs nothing, so one proof tx lands and one fee is paid (before: a second
/// proof tx signed at 18 landed beside it in block 19, its fee and a second proof submission fee paid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_landing_two_blocks_late_pays_one_fee() {
    for ordered in [false, true] {
        let what = format!("ordered {ordered}");
        let (f, run) = run_one(ordered, hold_first_txs(None, Some(2))).await;
        assert_claimed_and_proved_once(&f, &run, &what);
        assert_eq!(landed(&run), [(14, "claim"), (19, "proof")], "{what}: {run:?}");
        let submission_fee = 1;
        assert_eq!(run.paid, run.fees + submission_fee, "{what}: {run:?}");
        assert_eq!((run.claims_sent, run.proofs_sent), (1, 1), "{what}: nothing new signed");
        assert_eq!(run.proof_sent_at, [16], "{what}: the re-send at 18 was taken back");
    }
}

/// (a) What the defaults leave: a claim tx landing 2 blocks late (sent at 13, in block 16) is re-sent at 15, the
/// last sending height, and a proof tx landing 3 blocks late (sent at 16, in block 20) is found waiting at 18 and
/// re-sent at 19, the last one: there a new tx is signed beside it (code 19 is no proof that the first tx will
/// land, and a lost claim or a slashed proof costs more than a fee), and both land. Nothing is lost; one more fee
/// for that message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_still_waiting_at_the_last_sending_height_gets_a_new_tx_beside_it() {
    for ordered in [false, true] {
        let what = format!("claim held 2, ordered {ordered}");
        let (f, run) = run_one(ordered, hold_first_txs(Some(2), None)).await;
        assert_claimed_and_proved(&f, &run, &what, 2);
        assert_eq!(
            landed(&run),
            [(16, "claim"), (16, "claim"), (18, "proof")],
            "{what}: {run:?}"
        );
        assert_eq!(run.claim_sent_at, [13, 15], "{what}");
        assert_eq!(run.paid, run.fees + 1, "{what}: {run:?}");

        let what = format!("proof held 3, ordered {ordered}");
        let (f, run) = run_one(ordered, hold_first_txs(None, Some(3))).await;
        assert_claimed_and_proved(&f, &run, &what, 2);
        assert_eq!(
            landed(&run),
            [(14, "claim"), (20, "proof"), (20, "proof")],
            "{what}: {run:?}"
        );
        assert_eq!(run.proof_sent_at, [16, 19], "{what}: waiting at 18, a new tx at 19");
        assert_eq!(run.paid, run.fees + 2, "{what}: two proof submission fees: {run:?}");
    }
}

/// (b) The first claim tx, or the first proof tx, answered code 0 and dropped from the mempool: the claim is
/// re-sent at 15 (the last sending height: a new tx), the proof at 18 as its same bytes, which the node takes
/// again; each lands once, nothing lost, one fee each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tx_is_sent_again_in_time() {
    for ordered in [false, true] {
        for (kind, expected) in [
            ("claim", [(16, "claim"), (18, "proof")]),
            ("proof", [(14, "claim"), (19, "proof")]),
        ] {
            let what = format!("{kind} dropped, ordered {ordered}");
            let drop_first = |chain: &SimChain, height: i64, record: &SessionRecord| {
                let s = record.schedule;
                let open = if kind == "claim" { s.claim_open } else { s.proof_open };
                if height == open {
                    chain.state().drop_accepted_txs = 1;
                }
            };
            let (f, run) = run_one(ordered, drop_first).await;
            assert_claimed_and_proved_once(&f, &run, &what);
            assert_eq!(landed(&run), expected, "{what}: {run:?}");
            assert_eq!(run.paid, run.fees + 1, "{what}: {run:?}");
            let sent = if kind == "claim" {
                (run.claims_sent, run.claim_sent_at.clone())
            } else {
                (run.proofs_sent, run.proof_sent_at.clone())
            };
            let resent_at = if kind == "claim" { [13, 15] } else { [16, 18] };
            assert_eq!(sent, (2, resent_at.to_vec()), "{what}: sent twice");
        }
    }
}

/// (c) The node's minimum gas price raised while the first proof tx waits (held 10 blocks: it would never land in
/// the window): its same bytes are refused at the re-send (code 13), and a new tx is built in the same attempt at
/// the price the node names; it lands, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_refused_at_the_resend_get_a_new_tx_at_once() {
    let mut hold = hold_first_txs(None, Some(10));
    let first = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let first_proof = first.clone();
    let raise = move |chain: &SimChain, height: i64, record: &SessionRecord| {
        hold(chain, height, record);
        if height == record.schedule.proof_open + 1 {
            *first_proof.lock().unwrap() = chain.state().mempool.clone();
            chain.set_minimum_gas_prices("0.01upokt").unwrap();
        }
    };
    let (f, run) = run_one(false, raise).await;
    assert_claimed_and_proved_once(&f, &run, "raised fee");
    assert_eq!(landed(&run), [(14, "claim"), (19, "proof")], "{run:?}");
    assert_eq!(run.proof_sent_at, [16, 18], "the re-send at 18: {run:?}");
    let first = first.lock().unwrap().clone();
    assert_eq!(first.len(), 1, "the first proof tx waited");
    let landed_proof = f.chain.state().block_txs[&19].clone();
    assert_ne!(
        landed_proof, first,
        "a new tx at the raised price, not the refused bytes"
    );
    assert!(
        f.chain.state().mempool.is_empty(),
        "the first proof tx left the mempool"
    );
}

/// (d) The first proof tx held 10 blocks (it never lands in its window): the re-send at 18 finds it waiting
/// (code 19) and does not use up the engine's one re-send, which comes at 19, the last sending height, with a
/// new tx; it lands in block 20, the first tx never (no fee), nothing lost, one fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_19_at_the_resend_keeps_the_resend_for_a_later_height() {
    let (f, run) = run_one(false, hold_first_txs(None, Some(10))).await;
    assert_claimed_and_proved_once(&f, &run, "proof held 10");
    assert_eq!(landed(&run), [(14, "claim"), (20, "proof")], "{run:?}");
    assert_eq!(
        run.proof_sent_at,
        [16, 19],
        "waiting at 18 kept the re-send for 19: {run:?}"
    );
    assert_eq!(run.paid, run.fees + 1, "{run:?}");
}

/// (e) The first claim tx held 10 blocks (it never lands in its window): the re-send at 15 is at the last sending
/// height, so a new tx is signed; it lands in block 16, nothing lost, one fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_not_landed_at_the_last_sending_height_gets_a_new_tx() {
    let (f, run) = run_one(false, hold_first_txs(Some(10), None)).await;
    assert_claimed_and_proved_once(&f, &run, "claim held 10");
    assert_eq!(landed(&run), [(16, "claim"), (18, "proof")], "{run:?}");
    assert_eq!(run.claim_sent_at, [13, 15], "{run:?}");
    assert_eq!(run.paid, run.fees + 1, "{run:?}");
}
