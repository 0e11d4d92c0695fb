//! The miner's per-block work: a tick reads the chain's tip (node status), not the latest block; a submission
//! reuses it; a leadership confirmation is reused within its window; a record whose only change is
//! `queried_at` is not written again.

use std::sync::atomic::Ordering::SeqCst;

use super::*;
use crate::protocol::wire::{method, tendermint_method};

fn blocks_read(chain: &SimChain) -> u64 {
    chain.grpc_calls(tendermint_method::GET_LATEST_BLOCK) + chain.grpc_calls(tendermint_method::GET_BLOCK_BY_HEIGHT)
}

/// Ticks at an unchanged height read the tip and nothing else from the chain: no `GetLatestBlock` (the whole
/// block, twice, MBs once proofs are in it) every 100 ms. A claim is decided, checked against its deadline and
/// sent (its unordered timeout anchored on the tip's block time) without reading any block, and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_and_claims_read_the_tip_not_a_block() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    let blocks_before = blocks_read(&f.chain);
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    let status_before = f.chain.grpc_calls(method::NODE_STATUS);
    const TICKS: u64 = 5;
    for _ in 0..TICKS {
        miner.step().await.unwrap();
    }
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!(
        record.claim_sent_at.len(),
        1,
        "the claim was sent at the window's opening"
    );
    let status = f.chain.grpc_calls(method::NODE_STATUS) - status_before;
    // One tip per tick, plus one for the submission's deadline check and one right before its tx leaves (the
    // deadline again, and the block time its unordered timeout anchors on).
    assert_eq!(status, TICKS + 2);
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert!(
        f.client
            .claim_at(&f.key.session_id, &f.supplier, None)
            .await
            .unwrap()
            .is_some(),
        "the claim landed: {:?}",
        f.chain.records()
    );
    assert_eq!(blocks_read(&f.chain), blocks_before, "a block was read");
    // Its unordered timeout: the configured 120 s after the tip's time, the pace of the tips seen (50 ms blocks)
    // asking for less (the bound, 540 s, would mean the pace was unknown).
    let s = f.chain.state();
    let (height, tx) = s
        .block_txs
        .iter()
        .flat_map(|(h, txs)| txs.iter().map(move |tx| (*h, tx)))
        .last()
        .unwrap();
    let raw = crate::chain::tx::TxRaw::decode(tx.as_slice()).unwrap();
    let body = crate::chain::tx::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    let timeout = body.timeout_timestamp.unwrap();
    drop(s);
    let tip_time = f.chain.block_time(height - 1);
    assert_eq!(timeout.seconds - tip_time.seconds, 120, "{timeout:?} {tip_time:?}");
}

/// A submission confirms the leadership before building its tx and again right before it leaves. Within the
/// reuse window the first check takes the last confirmation's answer (here the lease taken when the miner started
/// leading); the one right before the tx leaves always asks storage. One replicated renewal per tx instead of
/// two; without a window (zero) both ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leadership_confirmation_is_reused_within_its_window() {
    for (reuse, renewals) in [(Duration::ZERO, 2), (Duration::from_secs(60), 1)] {
        let f = fixture().await;
        let plain = MemoryBackend::new().storage();
        let view = Arc::new(LaggingView::over(plain.leadership.clone()));
        let mut storage = plain.clone();
        storage.leadership = view.clone();
        let mut miner =
            Miner::new(f.client.clone(), storage, f.keyring.clone(), config("a")).with_confirmation_reuse(reuse);
        ingest_until_claim_open(&f, &plain, &mut miner).await;
        let before = view.renewals.load(SeqCst);
        miner.step().await.unwrap();
        assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
        assert_eq!(view.renewals.load(SeqCst) - before, renewals, "reuse {reuse:?}");
        f.chain.produce_block();
        miner.step().await.unwrap();
        assert!(
            f.client
                .claim_at(&f.key.session_id, &f.supplier, None)
                .await
                .unwrap()
                .is_some()
        );
    }
}

/// A reused confirmation is one of the current token only, and none survives leaving leader mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_confirmation_is_the_current_tokens_and_dies_with_the_leadership() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_confirmation_reuse(Duration::from_secs(60));
    miner.step().await.unwrap();
    let token = miner.leader_token.expect("the miner leads");
    assert!(miner.still_leader().await);
    assert!(miner.recently_confirmed(token));
    assert!(!miner.recently_confirmed(token + 1), "another token's confirmation");
    miner.leave_leader_mode();
    assert!(!miner.recently_confirmed(token), "survived leaving leader mode");
    assert!(!miner.still_leader().await);
    // A confirmation storage refuses drops the one before it.
    miner.step().await.unwrap();
    let token = miner.leader_token.expect("the miner leads again");
    assert!(miner.still_leader().await);
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    miner.confirmation_reuse = Duration::ZERO;
    assert!(!miner.still_leader().await, "resigned");
    miner.confirmation_reuse = Duration::from_secs(60);
    assert!(
        !miner.recently_confirmed(token),
        "a refused confirmation left the old one standing"
    );
}

/// `queried_at` only keeps the engine from asking the chain twice in one block: a record whose only change is
/// that field is not written again (one storage write per session and block, a raft commit each, for every
/// claim or proof being looked up), while any other change is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_only_change_is_queried_at_is_not_written_again() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    miner.step().await.unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let version = async || {
        plain
            .sessions
            .get(&f.supplier, &f.key.session_id)
            .await
            .unwrap()
            .unwrap()
            .version
    };
    let written = version().await;
    let mut record = miner.engine.session(&f.key).unwrap().clone();
    record.queried_at = Some(record.queried_at.unwrap_or(0) + 7);
    miner.engine.restore(record.clone());
    assert_eq!(
        miner
            .persist(std::slice::from_ref(&f.key), &mut Vec::new())
            .await
            .unwrap(),
        0
    );
    assert_eq!(version().await, written, "a queried_at-only change was written");
    record.relays += 1;
    miner.engine.restore(record);
    assert_eq!(
        miner
            .persist(std::slice::from_ref(&f.key), &mut Vec::new())
            .await
            .unwrap(),
        1
    );
    assert!(version().await > written, "a real change was not written");
    let stored: SessionRecord = serde_json::from_slice(
        &plain
            .sessions
            .get(&f.supplier, &f.key.session_id)
            .await
            .unwrap()
            .unwrap()
            .data,
    )
    .unwrap();
    assert_eq!(&stored, miner.engine.session(&f.key).unwrap());
}

/// A step's submissions run before its requirement checks, lookups and prunes (each prune is several storage
/// writes: run first, they delayed the block's claims and proofs towards their deadlines); within a kind the
/// engine's order is kept.
#[test]
fn a_steps_submissions_run_before_its_lookups_and_prunes() {
    use crate::miner::lifecycle::Command;
    let key = |n: &str| SessionKey {
        supplier: "s".into(),
        session_id: n.into(),
    };
    let mut commands = [
        Command::Prune { key: key("p1") },
        Command::LookupOnChain { key: key("l") },
        Command::Forget { key: key("f") },
        Command::CheckProofRequirement { key: key("c") },
        Command::SubmitClaims {
            supplier: "s".into(),
            keys: vec![key("claim")],
        },
        Command::Prune { key: key("p2") },
        Command::SubmitProofs {
            supplier: "s".into(),
            keys: vec![key("proof")],
        },
    ];
    commands.sort_by_key(super::super::execute::urgency);
    let names: Vec<String> = commands
        .iter()
        .map(|c| match c {
            Command::SubmitClaims { keys, .. } | Command::SubmitProofs { keys, .. } => keys[0].session_id.clone(),
            Command::Prune { key }
            | Command::Forget { key }
            | Command::LookupOnChain { key }
            | Command::CheckProofRequirement { key } => key.session_id.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(names, ["claim", "proof", "c", "l", "p1", "f", "p2"]);
}
