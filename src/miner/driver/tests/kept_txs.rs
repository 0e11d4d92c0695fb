//! Txs kept in storage across a failover or a restart (module `submit::kept`): a tx whose broadcast got no answer
//! (the node took it) is found out about by the next leader, or by the restarted process, from the session
//! record that stored it before it left, instead of a second tx being signed: the claim or proof lands once and
//! one fee is paid.

use super::rebroadcast::{balance, included_txs_of, supplier_rewards};
use super::*;
use crate::miner::lifecycle::State;

/// A miner over `plain` whose chain calls time out after 500 ms (what ends a broadcast whose answer is lost).
fn miner(f: &Fixture, plain: &storage::Storage, instance: &str, unordered: bool) -> Miner {
    let client = Arc::new(ChainClient::new(f.client.grpc().url(), Duration::from_millis(500)).unwrap());
    let config = MinerConfig {
        unordered,
        ..config(instance)
    };
    Miner::new(client, plain.clone(), f.keyring.clone(), config)
}

/// The txs the stored record of `key` holds.
async fn stored_txs(plain: &storage::Storage, key: &SessionKey) -> Vec<serde_json::Value> {
    let record = plain
        .sessions
        .get(&key.supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
    value
        .get("in_flight_txs")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default()
}

/// `a` stops leading (it resigns, as when raft or Redis leadership moves) and, a block later, a miner "b" leads the
/// same storage (a tx it signs then has another timeout or sequence than `a`'s: another hash); `a` then sees it
/// and stays a follower.
async fn fail_over(f: &Fixture, plain: &storage::Storage, a: &mut Miner, unordered: bool) -> Miner {
    let token = a.leader_token.unwrap();
    f.chain.produce_block();
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    let mut b = miner(f, plain, "b", unordered);
    b.step().await.unwrap();
    assert!(b.engine.is_leader());
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    b
}

/// The fixture's session with relays ingested by a leader "a" (over a fresh memory backend), the chain at its
/// claim window's opening, and that leader's claim broadcast whose answer is lost: the node took the tx, and
/// it was stored in the session's record before it left.
async fn claim_answer_lost(g: Genesis, unordered: bool) -> (Fixture, storage::Storage, Miner, u128) {
    let f = fixture_on(g).await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", unordered);
    ingest_until_claim_open(&f, &plain, &mut a).await;
    let before = balance(&f.chain, &f.supplier);
    f.chain.state().lose_broadcast_answers = 1;
    a.step().await.unwrap();
    assert_eq!(f.chain.state().mempool.len(), 1, "the node took the claim tx");
    assert_eq!(a.engine.session(&f.key).unwrap().claim_sent_at, Vec::<i64>::new());
    let stored = stored_txs(&plain, &f.key).await;
    assert_eq!(stored.len(), 1, "stored before it left: {stored:?}");
    assert_eq!(stored[0]["kind"], "claim");
    (f, plain, a, before)
}

/// Three blocks with `miner` leading, then: one tx of the supplier in the blocks (the first one's hash, when
/// given), one claim message ran, one fee paid; the claim is confirmed and its record holds no tx any more.
async fn assert_claim_landed_once(
    f: &Fixture,
    plain: &storage::Storage,
    miner: &mut Miner,
    before: u128,
    hash: Option<&str>,
) {
    for _ in 0..3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 1, "one tx of the supplier in the blocks: {txs:?}");
    if let Some(hash) = hash {
        assert_eq!(txs[0].0, hash, "the stored tx's very bytes");
    }
    let claims: Vec<_> = f.chain.records().into_iter().filter(|r| r.kind == "claim").collect();
    assert_eq!(claims.len(), 1, "one claim message ran: {claims:?}");
    assert_eq!(claims[0].rejected, None);
    assert_eq!(before - balance(&f.chain, &f.supplier), txs[0].1, "exactly one fee");
    let record = miner.engine.session(&f.key).unwrap();
    assert!(
        matches!(record.state, State::Claimed | State::Settled),
        "{:?}",
        record.state
    );
    assert_eq!(
        stored_txs(plain, &f.key).await,
        Vec::<serde_json::Value>::new(),
        "dropped"
    );
    assert_eq!(miner.kept_txs.len(), 0);
}

/// Leader A broadcasts a claim, the node takes it and the answer is lost, and A stops leading. B, leading the
/// same storage, restores the tx from the session's record and finds it in the node (the same bytes: code 19)
/// instead of signing a second claim tx (new timeout or sequence, new hash) that would land too and pay a second
/// fee. Unordered and ordered txs alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_lands_once_with_one_fee_after_a_failover() {
    for unordered in [true, false] {
        let (f, plain, mut a, before) = claim_answer_lost(genesis(), unordered).await;
        let mut b = fail_over(&f, &plain, &mut a, unordered).await;
        assert_claim_landed_once(&f, &plain, &mut b, before, None).await;
    }
}

/// The same with the process restarted (a new miner of the same instance over the same storage, as after a
/// SIGKILL of the embedded node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_lands_once_with_one_fee_after_a_restart() {
    let (f, plain, a, before) = claim_answer_lost(genesis(), true).await;
    drop(a);
    f.chain.produce_block();
    let mut restarted = miner(&f, &plain, "a", true);
    restarted.step().await.unwrap();
    assert!(restarted.engine.is_leader());
    assert_claim_landed_once(&f, &plain, &mut restarted, before, None).await;
}

/// A tx stored and then never taken by the node (here: its mempool full, and the answer saying so lost; as a
/// crash between the store and the broadcast) is broadcast again as the same bytes by the restarted process and
/// lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_tx_the_node_never_took_is_sent_as_the_same_bytes_after_a_restart() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", true);
    ingest_until_claim_open(&f, &plain, &mut a).await;
    let before = balance(&f.chain, &f.supplier);
    {
        let mut s = f.chain.state();
        s.lose_broadcast_answers = 1;
        s.mempool = vec![Vec::new(); crate::sim::chain::MAX_MEMPOOL_TXS];
    }
    a.step().await.unwrap();
    drop(a);
    f.chain.state().mempool.clear();
    f.chain.produce_block();
    let stored = stored_txs(&plain, &f.key).await;
    assert_eq!(stored.len(), 1);
    let hash = stored[0]["hash"].as_str().unwrap().to_string();
    let mut restarted = miner(&f, &plain, "a", true);
    restarted.step().await.unwrap();
    assert_claim_landed_once(&f, &plain, &mut restarted, before, Some(&hash)).await;
}

/// A proof whose broadcast answer is lost, then a failover: one proof tx lands, one proof message runs, one fee
/// is paid (a second proof tx of the session would land too and pay its fee).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_whose_answer_was_lost_lands_once_with_one_fee_after_a_failover() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let submission_fee = u128::from(g.proof_params.proof_submission_fee_upokt);
    let f = fixture_on(g).await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", true);
    // Relays a proof can be built from and the chain validates.
    a.step().await.unwrap();
    plain
        .relay_log
        .append(signed_relays(&f, &f.header, "app", 0..3, 100))
        .await
        .unwrap();
    a.step().await.unwrap();
    let schedule = a.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() < schedule.proof_open - 1 {
        f.chain.produce_block();
        a.step().await.unwrap();
    }
    assert_eq!(a.engine.session(&f.key).unwrap().state, State::Proving);
    let txs_before = included_txs_of(&f.chain, &f.supplier).len();
    let before = balance(&f.chain, &f.supplier);
    f.chain.state().lose_broadcast_answers = 1;
    f.chain.produce_block();
    a.step().await.unwrap();
    assert_eq!(f.chain.state().mempool.len(), 1, "the node took the proof tx");
    let stored = stored_txs(&plain, &f.key).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["kind"], "proof");

    let mut b = fail_over(&f, &plain, &mut a, true).await;
    for _ in 0..3 {
        f.chain.produce_block();
        b.step().await.unwrap();
    }
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), txs_before + 1, "one proof tx: {txs:?}");
    let proofs: Vec<_> = f.chain.records().into_iter().filter(|r| r.kind == "proof").collect();
    assert_eq!(proofs.len(), 1, "one proof message ran: {proofs:?}");
    assert_eq!(proofs[0].rejected, None);
    let fee = txs.last().unwrap().1;
    // The claim may settle in these blocks: settlement credits the supplier its share of what it was paid.
    let rewards = supplier_rewards(&f.chain, &f.supplier);
    assert_eq!(
        before + rewards - balance(&f.chain, &f.supplier),
        fee + submission_fee,
        "exactly one tx fee (and the proof's submission fee, once)"
    );
}

/// A claim the node took and answered for (its record says sent), and the leader stops leading before a block
/// includes it (here it is held out of the mempool). The next leader, told by the chain that the claim is not
/// there, re-sends a predecessor's send at once: the kept tx, not a new one, so when the held tx reaches a block
/// after all, it is the only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_sent_before_a_failover_and_not_yet_included_is_sent_again_as_the_same_tx() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", true);
    ingest_until_claim_open(&f, &plain, &mut a).await;
    let before = balance(&f.chain, &f.supplier);
    a.step().await.unwrap();
    assert_eq!(a.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
    assert_eq!(a.unknown_txs.len(), 0, "answered: not a tx of unknown outcome here");
    assert_eq!(
        stored_txs(&plain, &f.key).await.len(),
        1,
        "but kept until it is on chain"
    );
    let held = std::mem::take(&mut f.chain.state().mempool);
    assert_eq!(held.len(), 1);

    // B's first block: the lookup says "not there", and the send is repeated.
    let mut b = fail_over(&f, &plain, &mut a, true).await;
    assert_eq!(b.engine.session(&f.key).unwrap().claim_sent_at.len(), 2, "sent again");
    {
        // The held tx reaches the mempool after all (unless these very bytes are there already).
        let mut s = f.chain.state();
        if !s.mempool.contains(&held[0]) {
            s.mempool.push(held[0].clone());
        }
    }
    assert_claim_landed_once(&f, &plain, &mut b, before, Some(&crate::chain::tx::tx_hash(&held[0]))).await;
}

/// The fixture's session and one of "app2" with relays ingested by a leader "a" (over a fresh memory backend), due
/// together: a's next step sends both claims in one tx. With the supplier's balance before that.
async fn two_sessions_due() -> (Fixture, storage::Storage, Miner, SessionKey, u128) {
    let f = fixture_on(genesis_with_apps(&["app2"])).await;
    let (other, other_key) = app_session(&f, "app2").await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", true);
    plain
        .relay_log
        .append(relays(&f.supplier, &other, 10..13))
        .await
        .unwrap();
    let schedule = ingest_until_claim_open(&f, &plain, &mut a).await;
    assert_eq!(a.engine.session(&other_key).unwrap().schedule, schedule, "due together");
    let before = balance(&f.chain, &f.supplier);
    (f, plain, a, other_key, before)
}

/// One tx of the supplier in the blocks, `hash`, one fee paid since `before`, and one claim of each of `keys` ran.
fn assert_one_tx_claiming_each_once(f: &Fixture, before: u128, hash: &str, keys: &[&SessionKey]) {
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 1, "one tx of the supplier in the blocks: {txs:?}");
    assert_eq!(txs[0].0, hash, "the kept tx's very bytes");
    assert_eq!(before - balance(&f.chain, &f.supplier), txs[0].1, "exactly one fee");
    for key in keys {
        let claims: Vec<_> = f
            .chain
            .records()
            .into_iter()
            .filter(|r| r.kind == "claim" && r.session_id == key.session_id)
            .collect();
        assert_eq!(claims.len(), 1, "one claim of {key:?}: {claims:?}");
        assert_eq!(claims[0].rejected, None);
    }
}

/// One claim tx carrying two sessions' claims (one supplier, two applications, due together) is stored in its
/// holder's record and never reaches the node (as a leader killed between the store and the broadcast), and the
/// leadership moves. The next leader restores it for both sessions and sends the stored bytes again, once: one
/// tx lands, each session is claimed once, one fee is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_two_session_claim_tx_lands_once_per_session_after_a_failover() {
    let (f, plain, mut a, other_key, before) = two_sessions_due().await;
    {
        let mut s = f.chain.state();
        s.lose_broadcast_answers = 1;
        s.mempool = vec![Vec::new(); crate::sim::chain::MAX_MEMPOOL_TXS];
    }
    a.step().await.unwrap();
    let mut stored = stored_txs(&plain, &f.key).await;
    stored.extend(stored_txs(&plain, &other_key).await);
    assert_eq!(stored.len(), 1, "one tx, stored once: {stored:?}");
    let hash = stored[0]["hash"].as_str().unwrap().to_string();
    f.chain.state().mempool.clear();

    let mut b = fail_over(&f, &plain, &mut a, true).await;
    for _ in 0..3 {
        f.chain.produce_block();
        b.step().await.unwrap();
    }
    assert_one_tx_claiming_each_once(&f, before, &hash, &[&f.key, &other_key]);
    for key in [&f.key, &other_key] {
        assert!(matches!(
            b.engine.session(key).unwrap().state,
            State::Claimed | State::Settled
        ));
    }
    assert_eq!(b.kept_txs.len(), 0);
}

/// One claim tx carrying two sessions' claims, taken and answered by the node (both records say sent, the tx is
/// kept in its holder's record) and held out of a block, then the leadership moves. The next leader, told by the
/// chain that neither claim is there, repeats each predecessor's send on its own: the first re-broadcast of the
/// kept bytes answers for both sessions, so the second session must not get a new tx of its own, which would land
/// beside the kept one and claim that session twice (a second fee). Found by raft_chaos (a claim included twice
/// at one height after a leader kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_session_claim_tx_sent_before_a_failover_is_sent_again_as_the_same_tx_for_both() {
    let (f, plain, mut a, other_key, before) = two_sessions_due().await;
    a.step().await.unwrap();
    for key in [&f.key, &other_key] {
        assert_eq!(a.engine.session(key).unwrap().claim_sent_at.len(), 1);
    }
    let held = std::mem::take(&mut f.chain.state().mempool);
    assert_eq!(held.len(), 1, "one tx for both claims");

    let mut b = fail_over(&f, &plain, &mut a, true).await;
    for key in [&f.key, &other_key] {
        assert_eq!(b.engine.session(key).unwrap().claim_sent_at.len(), 2, "sent again");
    }
    {
        let mut s = f.chain.state();
        if !s.mempool.contains(&held[0]) {
            s.mempool.push(held[0].clone());
        }
    }
    for _ in 0..3 {
        f.chain.produce_block();
        b.step().await.unwrap();
    }
    let hash = crate::chain::tx::tx_hash(&held[0]);
    assert_one_tx_claiming_each_once(&f, before, &hash, &[&f.key, &other_key]);
}

/// An ordered claim tx the node took and then lost (here: taken out of the mempool), whose sequence another tx of
/// the supplier used meanwhile, and the leadership moves. The next leader repeats the predecessor's send with the
/// kept bytes, which the node now refuses for their sequence (code 32): that tx can never land, so the send must
/// not count as made (it was taken as another instance's tx, the session's last re-send spent, and the claim
/// never sent again: the session's reward lost). Undone, the session is sent anew at the next block and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_ordered_tx_whose_sequence_was_used_is_replaced_after_a_failover() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", false);
    ingest_until_claim_open(&f, &plain, &mut a).await;
    a.step().await.unwrap();
    assert_eq!(a.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
    {
        let mut s = f.chain.state();
        let lost = std::mem::take(&mut s.mempool);
        assert_eq!(lost.len(), 1, "the node took the claim tx");
        // Another tx of the supplier's account used that sequence.
        s.check_sequences.clear();
        s.accounts.get_mut(&f.supplier).unwrap().sequence += 1;
    }
    let mut b = fail_over(&f, &plain, &mut a, false).await;
    for _ in 0..4 {
        f.chain.produce_block();
        b.step().await.unwrap();
    }
    let claims: Vec<_> = f.chain.records().into_iter().filter(|r| r.kind == "claim").collect();
    assert_eq!(claims.len(), 1, "claimed once: {claims:?}");
    assert_eq!(claims[0].rejected, None);
    assert!(matches!(
        b.engine.session(&f.key).unwrap().state,
        State::Claimed | State::Settled
    ));
}

/// A claim tx the node took and answered for (the record says sent, the tx kept in it) that a block includes but
/// whose message fails there (here: the service is unknown in that block; on a real chain,
/// say, out of gas), and the leadership moves. The next leader repeats the predecessor's send, finds the kept tx
/// in a block with a failure code and must not take that as the send made: it was, the inherited re-send spent on
/// a tx that did nothing, and no claim was ever sent again (the session's reward lost). Undone, a new tx is sent
/// at the next block and the claim lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tx_that_failed_in_its_block_is_replaced_after_a_failover() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut a = miner(&f, &plain, "a", true);
    let schedule = ingest_until_claim_open(&f, &plain, &mut a).await;
    a.step().await.unwrap();
    assert_eq!(a.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
    let kept = stored_txs(&plain, &f.key).await;
    assert_eq!(kept.len(), 1, "kept until it is on chain");
    let failed_hash = kept[0]["hash"].as_str().unwrap().to_string();
    {
        let service = a.engine.session(&f.key).unwrap().service_id.clone();
        let entry = f.chain.state().services.remove(&service).unwrap();
        f.chain.produce_block();
        f.chain.state().services.insert(service, entry);
    }
    let failed = f.chain.state().txs.get(&failed_hash).map(|r| r.code);
    assert!(failed.is_some_and(|code| code != 0), "in a block, failed: {failed:?}");
    assert!(
        f.chain.records().iter().all(|r| r.rejected.is_some()),
        "the claim did nothing"
    );

    let mut b = fail_over(&f, &plain, &mut a, true).await;
    while f.chain.height() < schedule.claim_close {
        f.chain.produce_block();
        b.step().await.unwrap();
    }
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 2, "the failed tx and one new tx: {txs:?}");
    let claims: Vec<_> = f.chain.records().into_iter().filter(|r| r.rejected.is_none()).collect();
    assert_eq!(claims.len(), 1, "claimed once: {claims:?}");
    assert!(matches!(
        b.engine.session(&f.key).unwrap().state,
        State::Claimed | State::Settled
    ));
    assert_eq!(b.kept_txs.len(), 0);
}
