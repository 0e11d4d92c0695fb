//! The submission path when a broadcast's outcome is unknown (its answer lost after the node took the tx): the
//! tx is found out about (looked up by hash, its same bytes broadcast again) before any new tx is signed, so a
//! claim lands once and one fee is paid.

use super::*;
use crate::miner::lifecycle::{State, TxKind};

/// Every tx of `signer` the chain included (in any block), with the fee it paid.
pub(super) fn included_txs_of(chain: &SimChain, signer: &str) -> Vec<(String, u128)> {
    use crate::chain::tx::{AuthInfo, TxRaw};
    let s = chain.state();
    let mut txs = Vec::new();
    for bytes in s.block_txs.values().flatten() {
        let raw = TxRaw::decode(bytes.as_slice()).unwrap();
        let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap();
        let key = crate::chain::tx::Secp256k1PubKey::decode(
            auth.signer_infos[0].public_key.as_ref().unwrap().value.as_slice(),
        )
        .unwrap();
        if crate::protocol::address::address_from_public_key(&key.key) != signer {
            continue;
        }
        let fee = auth
            .fee
            .unwrap()
            .amount
            .iter()
            .map(|c| c.amount.parse::<u128>().unwrap())
            .sum();
        txs.push((crate::chain::tx::tx_hash(bytes), fee));
    }
    txs
}

pub(super) fn balance(chain: &SimChain, address: &str) -> u128 {
    chain.state().accounts[address].balance
}

/// What `supplier` has staked on the chain.
pub(super) fn stake_of(chain: &SimChain, supplier: &str) -> u128 {
    chain.supplier_stake(supplier).expect("a staked supplier")
}

/// What the chain's settlements so far credited `supplier` (its shares of each paid claim and of its inflation).
pub(super) fn supplier_rewards(chain: &SimChain, supplier: &str) -> u128 {
    let tokenomics = chain.state().tokenomics;
    chain
        .settlements()
        .iter()
        .filter_map(|(_, s, outcome)| match outcome {
            crate::sim::chain::Settlement::Settled(paid) if s == supplier => {
                Some(crate::sim::chain::tokenomics::supplier_reward(*paid, &tokenomics))
            }
            _ => None,
        })
        .sum()
}

/// A leader miner whose chain calls time out after `timeout` (what ends a broadcast whose answer is lost), with
/// `config`, that ingested relays 0..5 of the fixture's session, with the chain at the claim window's opening.
async fn leader_at_claim_open_with(config: MinerConfig, timeout: Duration) -> (Fixture, Miner) {
    let f = fixture().await;
    let client = Arc::new(ChainClient::new(f.client.grpc().url(), timeout).unwrap());
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), f.keyring.clone(), config);
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    (f, miner)
}

/// Relays 0..3 of a session the chain does not know (id `00…0`, the fixture session's heights), ingested by
/// `miner`; returns its key. Its claim passes the messages' `ValidateBasic`, so a node's CheckTx takes it, and
/// fails only when run (in Simulate or a block: no such session). A claim of an empty trie would not do: its
/// zero root is refused before the ante handler, with the proof module's code.
async fn ingest_unknown_session(f: &Fixture, miner: &mut Miner) -> SessionKey {
    let mut header = f.header.clone();
    header.session_id = "0".repeat(64);
    miner
        .storage
        .relay_log
        .append(relays(&f.supplier, &header, 0..3))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let key = SessionKey {
        supplier: f.supplier.clone(),
        session_id: header.session_id,
    };
    assert!(miner.engine.session(&key).is_some(), "ingested");
    key
}

/// The claim's first broadcast: CheckTx admits it and the answer is lost (our call times out), so the engine
/// takes the send back as `Retryable`, and the tx is kept.
async fn first_broadcast_answer_lost(f: &Fixture, miner: &mut Miner) {
    f.chain.state().lose_broadcast_answers = 1;
    miner.step().await.unwrap();
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!(
        record.claim_sent_at,
        Vec::<i64>::new(),
        "the unknown send is taken back"
    );
    assert!(!record.claim_reached_node, "no node answered");
    assert_eq!(f.chain.state().mempool.len(), 1, "but the node took the tx");
    assert_eq!(miner.unknown_txs.len(), 1, "and the miner kept it");
}

/// After the lost answer, the blocks up to the claim's confirmation: the claim is on chain once, from the one tx
/// the supplier sent, which paid the only fee.
async fn assert_landed_once_with_one_fee(f: &Fixture, miner: &mut Miner, balance_before: u128) {
    for _ in 0..3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 1, "one tx of the supplier in the blocks: {txs:?}");
    let claims: Vec<_> = f.chain.records().into_iter().filter(|r| r.kind == "claim").collect();
    assert_eq!(claims.len(), 1, "one claim message ran: {claims:?}");
    assert_eq!(claims[0].rejected, None);
    assert_eq!(
        balance_before - balance(&f.chain, &f.supplier),
        txs[0].1,
        "exactly one fee was paid"
    );
    let record = miner.engine.session(&f.key).unwrap();
    assert!(
        matches!(record.state, State::Claimed | State::Settled),
        "the claim is confirmed: {:?}",
        record.state
    );
    assert_eq!(record.claim_sent_at.len(), 1, "counted as one send");
    assert!(record.claim_reached_node);
    assert_eq!(miner.unknown_txs.len(), 0);
    assert_eq!(miner.stats.claims_sent.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// A claim whose first broadcast's answer is lost after the node took it: at the next block the miner looks the
/// tx up by hash, finds it included and counts it as sent, instead of signing a second claim tx (new timeout,
/// new hash) that the chain would also include and charge (poktroll takes a second claim of a session as an
/// update). Unordered and ordered txs alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_broadcast_answer_is_lost_lands_once_and_pays_one_fee() {
    for unordered in [true, false] {
        let (f, mut miner) = leader_at_claim_open_with(
            MinerConfig {
                unordered,
                ..config("a")
            },
            Duration::from_millis(500),
        )
        .await;
        let balance_before = balance(&f.chain, &f.supplier);
        first_broadcast_answer_lost(&f, &mut miner).await;
        assert_landed_once_with_one_fee(&f, &mut miner, balance_before).await;
    }
}

/// An ordered claim tx whose broadcast the node took and then answered with an error that is no timeout (gRPC
/// `Unknown`, e.g. its own hop to CometBFT failed): the outcome is unknown, the tx is kept and found out about,
/// not replaced by a second tx and a second fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_claim_whose_broadcast_failed_after_the_node_took_it_lands_once_and_pays_one_fee() {
    let (f, mut miner) = leader_at_claim_open_with(
        MinerConfig {
            unordered: false,
            ..config("a")
        },
        Duration::from_millis(500),
    )
    .await;
    let balance_before = balance(&f.chain, &f.supplier);
    f.chain.state().fail_broadcast_answers = 1;
    miner.step().await.unwrap();
    assert_eq!(f.chain.state().mempool.len(), 1, "the node took the tx");
    assert_eq!(miner.unknown_txs.len(), 1, "and the miner kept it");
    assert_landed_once_with_one_fee(&f, &mut miner, balance_before).await;
}

/// The same on a node whose tx index is off (`GetTx` cannot tell): the same bytes are broadcast again, the node
/// answers code 19 (already in its mempool or cache, cosmos-sdk `ErrTxInMempoolCache`), and that counts as sent,
/// not as a refusal or an HA conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebroadcast_the_node_already_has_counts_as_sent() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let (f, miner) = leader_at_claim_open_with(config("a"), Duration::from_millis(500)).await;
    let mut miner = miner.with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    f.chain.state().tx_index_disabled = true;
    let balance_before = balance(&f.chain, &f.supplier);
    first_broadcast_answer_lost(&f, &mut miner).await;
    assert_landed_once_with_one_fee(&f, &mut miner, balance_before).await;
    let metrics = telemetry.render_metrics();
    assert_eq!(counter(&metrics, "ha_miner_claim_errors_total", "refused"), None);
    assert_eq!(counter(&metrics, "ha_miner_claim_errors_total", "ha_conflict"), None);
    assert_eq!(
        counter(&metrics, "ha_miner_claim_errors_total", "retryable"),
        Some(1),
        "only the lost answer"
    );
}

/// A claim whose broadcast never reached the node (the answer lost and the tx not taken, here: the mempool
/// refused it as full, and the answer saying so was lost): its same bytes broadcast again are taken once, and
/// the claim lands with one fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_the_node_never_took_is_taken_when_its_bytes_are_broadcast_again() {
    let (f, mut miner) = leader_at_claim_open_with(config("a"), Duration::from_millis(500)).await;
    let balance_before = balance(&f.chain, &f.supplier);
    {
        let mut s = f.chain.state();
        s.lose_broadcast_answers = 1;
        // A full mempool: CheckTx never runs, nothing is kept.
        s.mempool = vec![Vec::new(); crate::sim::chain::MAX_MEMPOOL_TXS];
    }
    miner.step().await.unwrap();
    assert_eq!(miner.unknown_txs.len(), 1);
    let kept = miner.unknown_txs.get(TxKind::Claim, &f.key).unwrap();
    f.chain.state().mempool.clear();
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(
        f.chain.state().mempool,
        vec![kept.bytes.clone()],
        "the same bytes, taken now"
    );
    assert_landed_once_with_one_fee(&f, &mut miner, balance_before).await;
}

/// The body of a signed tx.
fn body_of(bytes: &[u8]) -> crate::chain::tx::TxBody {
    use crate::chain::tx::{TxBody, TxRaw};
    TxBody::decode(TxRaw::decode(bytes).unwrap().body_bytes.as_slice()).unwrap()
}

/// An ordered claim tx carries the claim window's close as its `timeout_height`: held up (here taken out of the
/// mempool) and included after the window, it is refused before its fee is charged (code 30), instead of
/// landing with a failing claim and a fee paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_claim_tx_cannot_land_after_the_claim_window() {
    let (f, mut miner) = leader_at_claim_open_with(
        MinerConfig {
            unordered: false,
            ..config("a")
        },
        Duration::from_secs(5),
    )
    .await;
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    let held = std::mem::take(&mut f.chain.state().mempool);
    assert_eq!(held.len(), 1, "the claim tx was taken");
    let body = body_of(&held[0]);
    assert!(!body.unordered);
    assert_eq!(body.timeout_height, u64::try_from(schedule.claim_close).unwrap());

    let balance_before = balance(&f.chain, &f.supplier);
    while f.chain.height() < schedule.claim_close {
        f.chain.produce_block();
    }
    f.chain.state().mempool = held.clone();
    f.chain.produce_block();
    let result = f.chain.state().txs[&crate::chain::tx::tx_hash(&held[0])].clone();
    assert_eq!((result.code, result.codespace.as_str()), (30, "sdk"), "{}", result.log);
    assert_eq!(balance(&f.chain, &f.supplier), balance_before, "no fee paid");
    assert!(f.chain.records().iter().all(|r| r.kind != "claim"), "no claim ran");
}

/// In a batch, the earliest close among its sessions bounds the tx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_times_out_at_its_earliest_window_close() {
    let (f, mut miner) = leader_at_claim_open_with(config("a"), Duration::from_secs(5)).await;
    let mut earlier = miner.engine.session(&f.key).unwrap().clone();
    earlier.key.session_id = "0".repeat(64);
    earlier.schedule.claim_close -= 1;
    let close = miner.engine.session(&f.key).unwrap().schedule.claim_close;
    let earlier_key = earlier.key.clone();
    miner.engine.restore(earlier);
    assert_eq!(
        miner.timeout_height(TxKind::Claim, &[f.key.clone(), earlier_key.clone()]),
        u64::try_from(close - 1).unwrap()
    );
    assert_eq!(
        miner.timeout_height(TxKind::Claim, std::slice::from_ref(&f.key)),
        u64::try_from(close).unwrap()
    );
}

/// A batch of two claims refused for a reason of the whole tx (CheckTx: mempool full, code 20; the signer's
/// funds, code 5) is not sent again message by message (each tx would be refused the same): one refusal, both
/// sends taken back for the next block. A fixed gas limit skips Simulate, so the batch (one good claim, one of a
/// session the chain does not know, which passes `ValidateBasic`) reaches CheckTx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_the_whole_tx_is_not_split_into_one_tx_per_message() {
    for code in [20, 5] {
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let (f, miner) = leader_at_claim_open_with(
            MinerConfig {
                gas_limit: 1_000_000,
                ..config("a")
            },
            Duration::from_secs(5),
        )
        .await;
        let mut miner = miner.with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
        {
            let mut s = f.chain.state();
            if code == 20 {
                s.mempool = vec![Vec::new(); crate::sim::chain::MAX_MEMPOOL_TXS];
            } else {
                // No proof fee: the claims are not held back for it (module `afford`) and reach CheckTx.
                s.proof.proof_submission_fee = None;
                s.accounts.get_mut(&f.supplier).unwrap().balance = 0;
            }
        }
        // Ingested, then both claims sent in one tx at this step.
        let other_key = ingest_unknown_session(&f, &mut miner).await;
        assert_eq!(
            counter(&telemetry.render_metrics(), "ha_miner_claim_errors_total", "refused"),
            Some(1),
            "code {code}: one refusal of the batch, no tx per message"
        );
        for key in [&f.key, &other_key] {
            let record = miner.engine.session(key).unwrap();
            assert_eq!(record.claim_sent_at, Vec::<i64>::new(), "code {code}: taken back");
            assert!(record.claim_reached_node);
        }
    }
}

/// The deadline (window close − `submission_buffer_blocks`) is checked before each tx of a submission, not once
/// for all: here two claims due at the last height the buffer allows go in two txs (split by size), and the chain
/// commits a block while the first is broadcast. The second is then past its deadline and is not sent (it
/// would be included after the window, its claim failing and its fee paid); it counts as `deadline_passed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_of_a_split_submission_whose_deadline_passed_meanwhile_is_not_sent() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut config = config("a");
    // Simulate skipped (the unknown session's claim reaches the mempool), one claim per tx, sent at the last height.
    config.gas_limit = 1_000_000;
    config.engine.claim_delay_blocks = 100;
    let (f, miner) = leader_at_claim_open_with(config, Duration::from_secs(5)).await;
    let mut miner = miner.with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    // Sent most valuable first (module `afford`): the fixture's session, then the unknown one (which the chain
    // cannot value).
    let second = ingest_unknown_session(&f, &mut miner).await;
    // After the ingest, which keeps out relays too large for a tx of this size.
    miner.config.max_tx_bytes = 512 + 400;
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    let last_height = schedule.claim_close - miner.config.engine.submission_buffer_blocks;
    while f.chain.height() < last_height {
        f.chain.produce_block();
    }
    f.chain.state().blocks_after_broadcasts = 1;
    miner.step().await.unwrap();

    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 1, "only the first tx left: {txs:?}");
    assert!(f.chain.state().mempool.is_empty(), "the second did not");
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_claim_errors_total",
            "deadline_passed"
        ),
        Some(1)
    );
    let record = miner.engine.session(&second).unwrap();
    assert_eq!(record.claim_sent_at, Vec::<i64>::new(), "never sent");
    assert!(!record.claim_reached_node);
    assert!(!miner.engine.session(&f.key).unwrap().claim_sent_at.is_empty());
}

/// A batch (two sessions' claims in one tx) whose broadcast answer is lost is found out about as one tx: at the
/// next block both sessions count as sent from it, no claim is signed again, and one fee is paid for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_broadcast_answer_is_lost_lands_once_and_pays_one_fee() {
    let f = fixture_on(genesis_with_apps(&["app2"])).await;
    let (header2, key2) = app_session(&f, "app2").await;
    let client = Arc::new(ChainClient::new(f.client.grpc().url(), Duration::from_millis(500)).unwrap());
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), f.keyring.clone(), config("a"));
    plain
        .relay_log
        .append(relays(&f.supplier, &header2, 0..3))
        .await
        .unwrap();
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    let balance_before = balance(&f.chain, &f.supplier);

    f.chain.state().lose_broadcast_answers = 1;
    miner.step().await.unwrap();
    assert_eq!(f.chain.state().mempool.len(), 1, "one tx for both claims");
    assert_eq!(miner.unknown_txs.len(), 2, "kept for both sessions");
    for _ in 0..3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let txs = included_txs_of(&f.chain, &f.supplier);
    assert_eq!(txs.len(), 1, "{txs:?}");
    assert_eq!(balance_before - balance(&f.chain, &f.supplier), txs[0].1, "one fee");
    let claims = f.chain.records().into_iter().filter(|r| r.kind == "claim").count();
    assert_eq!(claims, 2, "each claim ran once");
    for key in [&f.key, &key2] {
        let record = miner.engine.session(key).unwrap();
        assert!(
            matches!(record.state, State::Claimed | State::Settled),
            "{:?}",
            record.state
        );
        assert_eq!(record.claim_sent_at.len(), 1);
    }
    assert_eq!(miner.unknown_txs.len(), 0);
}

/// A proof required at its seed block (probability 1, threshold 0) whose first broadcast, at `proof_open`, got no
/// answer: kept, it is found out about at the next block. The node `taken` it, else it did not (the mempool full,
/// the answer saying so lost; the mempool is then emptied). Returns the fixture, the leader (chain calls timing out
/// after 500 ms, settlements read from CometBFT, `telemetry`'s metrics) and the kept tx's bytes, the chain at
/// `proof_open`.
async fn a_proof_kept(telemetry: &crate::telemetry::Telemetry, taken: bool) -> (Fixture, Miner, Vec<u8>) {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let f = fixture_on(g).await;
    let client = Arc::new(ChainClient::new(f.client.grpc().url(), Duration::from_millis(500)).unwrap());
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), f.keyring.clone(), config("a"))
        .with_settlements_from(f.comet.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(telemetry).unwrap());
    miner.step().await.unwrap();
    plain.relay_log.append(relays).await.unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() < schedule.proof_open - 1 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!((record.state, record.proof_required), (State::Proving, Some(true)));
    f.chain.produce_block();
    {
        let mut s = f.chain.state();
        s.lose_broadcast_answers = 1;
        if !taken {
            s.mempool = vec![Vec::new(); crate::sim::chain::MAX_MEMPOOL_TXS];
        }
    }
    miner.step().await.unwrap();
    assert_eq!(miner.unknown_txs.len(), 1, "the proof tx is kept");
    let kept = miner.unknown_txs.get(TxKind::Proof, &f.key).unwrap().bytes.clone();
    if taken {
        assert_eq!(f.chain.state().mempool, vec![kept.clone()], "the node took it");
    } else {
        f.chain.state().mempool.clear();
    }
    (f, miner, kept)
}

/// The chain's proof params made unreachable (probability 0, threshold above any claim): no proof required.
fn no_proof_required(chain: &SimChain) {
    let mut params = chain.state().proof.clone();
    params.proof_request_probability = 0.0;
    params.proof_requirement_threshold = Some(crate::protocol::wire::Coin {
        denom: "upokt".into(),
        amount: u64::MAX.to_string(),
    });
    chain.set_proof_params(params);
}

/// Runs the chain and the miner to `settlement` + 2; returns the logs of the txs that failed in their block (their
/// fee paid for nothing).
async fn run_to_settlement(f: &Fixture, miner: &mut Miner, settlement: i64) -> Vec<String> {
    while f.chain.height() <= settlement + 2 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    super::failed_in_block(&f.chain)
}

/// A kept proof tx whose proof governance made not required before its bytes go out again: broadcast again, the
/// bytes pass CheckTx (no Simulate for them) and the proof is refused in its block, the fee paid. So it is checked
/// again first: not broadcast, the session settled without a proof, the claim's tx the supplier's only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_proof_no_longer_required_is_not_broadcast_again() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let (f, mut miner, _) = a_proof_kept(&telemetry, false).await;
    let settlement = miner.engine.session(&f.key).unwrap().schedule.settlement;
    no_proof_required(&f.chain);
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(f.chain.state().mempool, Vec::<Vec<u8>>::new(), "not broadcast again");
    assert_eq!(miner.unknown_txs.len(), 0, "forgotten");
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!((record.state, record.proof_required), (State::Settled, Some(false)));
    let failed = run_to_settlement(&f, &mut miner, settlement).await;
    assert_eq!(failed, Vec::<String>::new(), "no tx failed in its block");
    assert!(
        f.chain.records().iter().all(|r| r.kind != "proof"),
        "{:?}",
        f.chain.records()
    );
    assert_eq!(included_txs_of(&f.chain, &f.supplier).len(), 1, "the claim's tx alone");
    assert!(
        matches!(&f.chain.settlements()[..], [(_, _, crate::sim::chain::Settlement::Settled(v))] if *v > 0),
        "the chain paid the claim: {:?}",
        f.chain.settlements()
    );
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_proof_errors_total",
            "not_required"
        ),
        Some(1)
    );
}

/// The same kept proof, still required, when the check cannot be made (the node fails the proof params read):
/// its same bytes are broadcast again, and the proof lands and is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_proof_whose_requirement_cannot_be_checked_is_broadcast_again() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let (f, mut miner, kept) = a_proof_kept(&telemetry, false).await;
    let settlement = miner.engine.session(&f.key).unwrap().schedule.settlement;
    let params = crate::protocol::wire::method::PROOF_PARAMS;
    f.chain.fail_grpc_next(params, 1);
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(f.chain.grpc_faults_pending(params), 0, "the check's read failed");
    assert_eq!(f.chain.state().mempool, vec![kept], "the same bytes, broadcast again");
    let failed = run_to_settlement(&f, &mut miner, settlement).await;
    assert_eq!(failed, Vec::<String>::new(), "no tx failed in its block");
    let proofs: Vec<_> = f.chain.records().into_iter().filter(|r| r.kind == "proof").collect();
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    assert_eq!(proofs[0].rejected, None);
    assert!(
        matches!(&f.chain.settlements()[..], [(_, _, crate::sim::chain::Settlement::Settled(v))] if *v > 0),
        "the chain paid the claim: {:?}",
        f.chain.settlements()
    );
}

/// A kept proof tx that landed though it cannot be found by hash (the node's tx index is off): its proof is on
/// chain (the claim's proof validated), so its bytes are not broadcast again (refused as a duplicate; had another
/// tx of ours carried the proof, a second fee for nothing): the session counts as sent and the claim is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_proof_already_on_chain_is_not_broadcast_again() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let (f, mut miner, _) = a_proof_kept(&telemetry, true).await;
    let settlement = miner.engine.session(&f.key).unwrap().schedule.settlement;
    f.chain.state().tx_index_disabled = true;
    f.chain.produce_block();
    assert!(
        f.chain
            .records()
            .iter()
            .any(|r| r.kind == "proof" && r.rejected.is_none()),
        "{:?}",
        f.chain.records()
    );
    let broadcasts = f.chain.grpc_calls(crate::protocol::wire::method::BROADCAST_TX);
    miner.step().await.unwrap();
    assert_eq!(
        f.chain.grpc_calls(crate::protocol::wire::method::BROADCAST_TX),
        broadcasts,
        "not broadcast again"
    );
    assert_eq!(miner.unknown_txs.len(), 0, "forgotten");
    let failed = run_to_settlement(&f, &mut miner, settlement).await;
    assert_eq!(failed, Vec::<String>::new(), "no tx failed in its block");
    assert_eq!(
        included_txs_of(&f.chain, &f.supplier).len(),
        2,
        "the claim's tx and the proof's"
    );
    assert!(
        matches!(&f.chain.settlements()[..], [(_, _, crate::sim::chain::Settlement::Settled(v))] if *v > 0),
        "the chain paid the claim: {:?}",
        f.chain.settlements()
    );
    let text = telemetry.render_metrics();
    assert_eq!(counter(&text, "ha_miner_proof_errors_total", "refused"), None, "{text}");
}

/// What a session on a chain `set` up (at genesis) gave a leader signing at `0.000001upokt` with
/// `transaction.max_gas_price` `0.001upokt` (a fee the supplier can pay): the supplier's txs in blocks as (kind,
/// fee), whether the chain settled the claim, the sessions the miner counted lost, and the metrics.
struct StuckRun {
    txs: Vec<(&'static str, u128)>,
    settled: bool,
    sessions_lost: u64,
    metrics: String,
}

/// A leader (`unordered` txs) mines 3 signed relays of the fixture's session, its proof always required and its
/// windows closing 8 blocks after they open; blocks run (one miner step each) until the session is settled.
async fn run_session_on(unordered: bool, set: impl Fn(&SimChain)) -> StuckRun {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g.shared_params.claim_window_close_offset_blocks = 8;
    g.shared_params.proof_window_close_offset_blocks = 8;
    let f = fixture_on(g).await;
    set(&f.chain);
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let config = MinerConfig {
        unordered,
        max_gas_price: "0.001upokt".into(),
        ..config("a")
    };
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    miner.step().await.unwrap();
    plain
        .relay_log
        .append(signed_relays(&f, &f.header, "app", 0..3, 100))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() < schedule.settlement + 2 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let kinds: std::collections::HashMap<String, &'static str> = f
        .chain
        .state()
        .block_txs
        .values()
        .flatten()
        .map(|tx| {
            let body = crate::chain::tx::TxBody::decode(
                crate::chain::tx::TxRaw::decode(tx.as_slice())
                    .unwrap()
                    .body_bytes
                    .as_slice(),
            )
            .unwrap();
            let kind = match body.messages[0].type_url.as_str() {
                crate::protocol::wire::MSG_CREATE_CLAIM_TYPE_URL => "claim",
                _ => "proof",
            };
            (crate::chain::tx::tx_hash(tx), kind)
        })
        .collect();
    let txs = included_txs_of(&f.chain, &f.supplier)
        .into_iter()
        .map(|(hash, fee)| (kinds[&hash], fee))
        .collect();
    let settled = matches!(
        f.chain.settlements().as_slice(),
        [(id, _, crate::sim::chain::Settlement::Settled(_))] if *id == f.key.session_id
    );
    StuckRun {
        txs,
        settled,
        sessions_lost: miner.stats.sessions_lost.load(std::sync::atomic::Ordering::Relaxed),
        metrics: telemetry.render_metrics(),
    }
}

/// [`run_session_on`] under validators that include no tx below `0.0001upokt` per gas (the simulator's
/// `min_inclusion_gas_prices`; the node itself asks nothing).
async fn run_under_validators_minimum(unordered: bool) -> StuckRun {
    run_session_on(unordered, |chain| {
        chain.state().min_inclusion_gas_prices =
            crate::sim::chain::fees::parse_minimum_gas_prices("0.0001upokt").unwrap();
    })
    .await
}

/// The value of the series of counter `name` with `labels` (`k="v"` each) in a metrics rendering.
fn series(metrics: &str, name: &str, labels: &[&str]) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A claim and a proof tx our node takes (code 0) but the validators never include (their minimum gas price is
/// above the tx's): two blocks later the engine's re-send finds the tx in no block and its same bytes still in
/// the node's mempool (code 19). Broadcasting them again cannot help and used the session's only re-send (the
/// claim lost); instead a new tx at `transaction.max_gas_price` replaces each, lands inside its window, and the
/// session is claimed, proved and paid: one tx of each in blocks (the stuck originals never land).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_and_proof_stuck_in_the_mempool_are_replaced_at_the_max_price_and_land() {
    let run = run_under_validators_minimum(true).await;
    let kinds: Vec<&str> = run.txs.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, ["claim", "proof"], "{:?}", run.txs);
    assert!(run.settled, "the claim is paid: {:?}", run.txs);
    assert_eq!(run.sessions_lost, 0);
    for kind in ["claim", "proof"] {
        let labels = [&format!("kind=\"{kind}\"") as &str, "reason=\"stuck_in_mempool\""];
        assert_eq!(
            series(&run.metrics, "ha_miner_txs_replaced_total", &labels),
            Some(1),
            "{kind}"
        );
    }
}

/// The same with ordered txs: a tx of the stuck one's sequence is refused while it is in the mempool, so nothing
/// replaces it: logged at ERROR, counted as `stuck_in_mempool`, and the claim is lost (the operator must set
/// `transaction.gas_price` at or above the validators' minimum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_claim_stuck_in_the_mempool_is_counted_and_not_replaced() {
    let run = run_under_validators_minimum(false).await;
    assert_eq!(run.txs, [], "nothing landed");
    assert!(!run.settled);
    assert_eq!(run.sessions_lost, 1);
    assert_eq!(
        series(
            &run.metrics,
            "ha_miner_claim_errors_total",
            &["reason=\"stuck_in_mempool\""]
        ),
        Some(1)
    );
    assert_eq!(series(&run.metrics, "ha_miner_txs_replaced_total", &[]), None);
}

/// A claim and a proof tx merely late (every tx held 3 blocks, as behind full blocks): at the re-send two blocks
/// on, the node still holds them (code 19) and no block has them, like stuck ones, but they are not replaced yet
/// (the re-send waits up to 4 blocks after the first broadcast): each lands, one tx and one fee each, and nothing
/// counts as replaced. Replaced at the re-send, the replacement (at a max price the supplier can pay) landed too:
/// a second claim and proof, and their fees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_and_proof_held_up_three_blocks_are_not_replaced() {
    let run = run_session_on(true, |chain| chain.state().inclusion_delay_blocks = 3).await;
    let kinds: Vec<&str> = run.txs.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, ["claim", "proof"], "{:?}", run.txs);
    assert!(run.settled);
    assert_eq!(run.sessions_lost, 0);
    assert_eq!(series(&run.metrics, "ha_miner_txs_replaced_total", &[]), None);
}
