//! Failed commands and refused batches do not sink the other sessions' claims: the rest run, a refused batch is
//! sent again message by message, and a refusal before the mempool is tried again at the next block.

use super::*;

/// A leader miner with metrics, on a memory backend, that ingested relays 0..5 of the fixture's session, with the
/// chain at the claim window's opening (the miner has not seen it yet).
async fn leader_at_claim_open() -> Leading {
    at_claim_open(fixture().await, config("a"), Vec::new()).await
}

/// Sessions whose commands fail do not hold back the claims of the supplier's other sessions due at the same
/// height. Here two records from before session headers were persisted (their tries cannot be opened): one due
/// for its claim, in the same batch as the good session (its failed send is taken back, counted as
/// `build_failed`, and tried again at the next block), and one whose proof requirement is due at this height
/// (that check fails before the claims are sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_whose_commands_fail_do_not_hold_back_the_others_claims() {
    let Leading {
        f,
        telemetry,
        mut miner,
        schedule,
        ..
    } = leader_at_claim_open().await;
    let good = miner.engine.session(&f.key).unwrap().clone();
    let mut unclaimable = good.clone();
    unclaimable.key.session_id = "0".repeat(64);
    unclaimable.application_address = String::new();
    let unclaimable_key = unclaimable.key.clone();
    assert!(unclaimable_key < f.key, "it comes first in the supplier's batch");
    miner.engine.restore(unclaimable);
    let mut unchecked = good.clone();
    unchecked.key.session_id = "1".repeat(64);
    unchecked.application_address = String::new();
    unchecked.state = crate::miner::lifecycle::State::Claimed;
    unchecked.schedule.proof_open = schedule.claim_open + 1;
    assert_eq!(unchecked.schedule.proof_seed_height(), schedule.claim_open);
    miner.engine.restore(unchecked);

    assert!(
        miner.step().await.is_err(),
        "the failed proof-requirement check is reported"
    );
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key]).await;
    let build_failures = || {
        counter(
            &telemetry.render_metrics(),
            "ha_miner_claim_errors_total",
            "build_failed",
        )
    };
    assert_eq!(build_failures(), Some(1));
    assert_eq!(
        miner.engine.session(&unclaimable_key).unwrap().claim_sent_at,
        Vec::<i64>::new()
    );
    assert!(miner.step().await.is_err());
    assert_eq!(build_failures(), Some(2), "tried again at the next block");
}

/// A batch the node refuses because of one session's message (here a claim whose trie is empty: the chain
/// refuses a root of zero sum, §6.1) is sent again message by message, so the supplier's other claim due at the
/// same height still lands. The refused session is looked up, and tried again at the next block (a refusal
/// before the mempool costs nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_resent_message_by_message_so_one_bad_claim_does_not_sink_the_others() {
    let Leading {
        f,
        telemetry,
        mut miner,
        ..
    } = leader_at_claim_open().await;
    let mut empty = miner.engine.session(&f.key).unwrap().clone();
    empty.key.session_id = "0".repeat(64);
    let empty_key = empty.key.clone();
    miner.engine.restore(empty);

    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key]).await;
    assert_not_claimed(&f, &empty_key).await;
    assert_eq!(
        counter(&telemetry.render_metrics(), "ha_miner_claim_errors_total", "refused"),
        Some(1),
        "only the bad claim is refused"
    );
}

/// Two good claims and one bad one of a supplier due at the same height: the batch is refused (the bad claim)
/// and re-sent message by message while the latest block is unchanged. Each of those unordered txs needs its
/// own timeout (cosmos-sdk v0.53 keeps one nonce per (signer, timeout), refusing a repeat at CheckTx with code
/// 18), so both good claims land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resent_message_by_message_in_one_block_lands_every_good_claim() {
    let f = fixture_on(genesis_with_apps(&["app2"])).await;
    let (header2, key2) = app_session(&f, "app2").await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    plain
        .relay_log
        .append(relays(&f.supplier, &header2, 0..3))
        .await
        .unwrap();
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    assert_eq!(
        miner.engine.session(&key2).unwrap().schedule,
        miner.engine.session(&f.key).unwrap().schedule,
        "both due together"
    );
    let mut empty = miner.engine.session(&f.key).unwrap().clone();
    empty.key.session_id = "0".repeat(64);
    miner.engine.restore(empty);

    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key, &key2]).await;
}

/// The node's gRPC latest block can be one ahead of the committed state Simulate and CheckTx run on (CometBFT
/// stores a block before the app commits it), so a claim sent at `claim_open` can be refused once ("outside the
/// window"). A refusal before the mempool costs nothing and is not final: the claim is sent again at the next
/// block, without using up its re-send, and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_refused_once_by_simulate_at_window_open_lands_at_the_next_block() {
    let Leading {
        f,
        telemetry,
        mut miner,
        ..
    } = leader_at_claim_open().await;
    f.chain.state().refuse_simulations = 1;
    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_not_claimed(&f, &f.key).await;
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!(
        record.claim_sent_at,
        Vec::<i64>::new(),
        "the refused send is taken back"
    );
    assert!(record.claim_reached_node);
    assert_eq!(
        counter(&telemetry.render_metrics(), "ha_miner_claim_errors_total", "refused"),
        Some(1)
    );

    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key]).await;
    assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
}
