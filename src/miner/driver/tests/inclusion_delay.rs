//! The miner against a chain that includes a tx CheckTx took later than the next block, or never (the simulator's
//! `inclusion_delay_blocks` and `drop_accepted_txs`): a claim or proof tx that lands a few blocks late is not
//! doubled by a second tx (the chain upserts claims and proofs: both would land and both pay a fee), a dropped one
//! is replaced in time, and one the chain would include only after the window costs no fee.

use super::rebroadcast::{balance, included_txs_of, supplier_rewards};
use super::*;
use crate::miner::lifecycle::{LossReason, State};

/// The fixture's genesis with a proof always required and claim and proof windows closing 8 blocks after they
/// open (a tx sent at the open and 3 blocks late still lands inside them, its re-send two blocks later too).
fn wide_windows() -> Genesis {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g.shared_params.claim_window_close_offset_blocks = 8;
    g.shared_params.proof_window_close_offset_blocks = 8;
    g
}

/// What one session cost and gave: the supplier's txs in blocks as (height, kind, code), what its balance lost
/// (settlement rewards added back) and what those txs' fees add up to, the last state the miner had for the
/// session before pruning it, sessions it counted lost, claims and proofs it counted sent.
#[derive(Debug)]
struct Run {
    txs: Vec<(i64, &'static str, u32)>,
    paid: u128,
    fees: u128,
    state: State,
    sessions_lost: u64,
    claims_sent: u64,
    proofs_sent: u64,
}

/// Kind of a tx: the type of its first message.
fn kind_of(bytes: &[u8]) -> &'static str {
    use crate::chain::tx::{TxBody, TxRaw};
    let body = TxBody::decode(TxRaw::decode(bytes).unwrap().body_bytes.as_slice()).unwrap();
    match body.messages[0].type_url.as_str() {
        crate::protocol::wire::MSG_CREATE_CLAIM_TYPE_URL => "claim",
        _ => "proof",
    }
}

/// A leader miner over `g` with `unordered` txs mines 3 signed relays of the fixture's session; `before_claim`
/// sets the chain's knobs when the claim window opens, `before_proof` when the proof window opens; then blocks
/// run (one miner step each) until the session is settled and one block more.
async fn run_session(
    g: Genesis,
    unordered: bool,
    before_claim: impl Fn(&SimChain),
    before_proof: impl Fn(&SimChain),
) -> (Fixture, Run) {
    let f = fixture_on(g).await;
    let plain = MemoryBackend::new().storage();
    let config = MinerConfig {
        unordered,
        ..config("a")
    };
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config);
    miner.step().await.unwrap();
    plain
        .relay_log
        .append(signed_relays(&f, &f.header, "app", 0..3, 100))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    let before = balance(&f.chain, &f.supplier);
    let mut state = State::Active;
    while f.chain.height() < schedule.settlement + 2 {
        f.chain.produce_block();
        let height = f.chain.height();
        if height == schedule.claim_open {
            before_claim(&f.chain);
        }
        if height == schedule.proof_open {
            before_proof(&f.chain);
        }
        miner.step().await.unwrap();
        // The last state the session had (it is pruned some blocks after it ends).
        if let Some(record) = miner.engine.session(&f.key) {
            state = record.state;
        }
    }
    let s = f.chain.state();
    let txs = s
        .block_txs
        .iter()
        .flat_map(|(height, txs)| txs.iter().map(move |tx| (*height, tx)))
        .filter(|(_, tx)| signed_by(tx, &f.supplier))
        .map(|(height, tx)| (height, kind_of(tx), s.txs[&crate::chain::tx::tx_hash(tx)].code))
        .collect();
    drop(s);
    let fees = included_txs_of(&f.chain, &f.supplier).iter().map(|(_, fee)| fee).sum();
    let rewards = supplier_rewards(&f.chain, &f.supplier);
    let run = Run {
        txs,
        paid: before + rewards - balance(&f.chain, &f.supplier),
        fees,
        state,
        sessions_lost: miner.stats.sessions_lost.load(std::sync::atomic::Ordering::Relaxed),
        claims_sent: miner.stats.claims_sent.load(std::sync::atomic::Ordering::Relaxed),
        proofs_sent: miner.stats.proofs_sent.load(std::sync::atomic::Ordering::Relaxed),
    };
    (f, run)
}

/// Whether `tx` is signed by `signer`.
fn signed_by(tx: &[u8], signer: &str) -> bool {
    use crate::chain::tx::{AuthInfo, TxRaw};
    let raw = TxRaw::decode(tx).unwrap();
    let auth = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap();
    let key =
        crate::chain::tx::Secp256k1PubKey::decode(auth.signer_infos[0].public_key.as_ref().unwrap().value.as_slice())
            .unwrap();
    crate::protocol::address::address_from_public_key(&key.key) == signer
}

/// One claim message and one proof message ran on chain, both accepted, and the chain settled the claim (paid);
/// the miner lost nothing.
fn assert_claimed_and_proved_once(f: &Fixture, run: &Run, what: &str) {
    assert_claimed_and_proved(f, run, what, 1);
}

/// At least one and at most `most` claim messages and as many proof messages ran on chain, all accepted (the
/// chain takes a second one as an update), and the chain settled the claim (paid); the miner lost nothing.
fn assert_claimed_and_proved(f: &Fixture, run: &Run, what: &str, most: usize) {
    let records = f.chain.records();
    for kind in ["claim", "proof"] {
        let of_kind: Vec<_> = records.iter().filter(|r| r.kind == kind).collect();
        assert!(
            (1..=most).contains(&of_kind.len()),
            "{what}: 1 to {most} {kind}s ran: {of_kind:?} ({run:?})"
        );
        assert!(of_kind.iter().all(|r| r.rejected.is_none()), "{what}");
    }
    let settled = f.chain.settlements();
    assert!(
        matches!(settled.as_slice(), [(id, _, crate::sim::chain::Settlement::Settled(_))] if *id == f.key.session_id),
        "{what}: {settled:?}"
    );
    assert_eq!(run.sessions_lost, 0, "{what}: {run:?}");
}

/// Every tx held 1, 2 or 3 blocks (inside windows of 8): the session is claimed, proved and paid, nothing lost,
/// with one claim tx and one proof tx, two tx fees and the proof submission fee. Held 2 or 3, the engine's
/// re-send (the chain does not show the message two blocks after its send) broadcasts the kept tx's same bytes
/// again (module `kept`; the node still has them, code 19) instead of signing a second tx that would land beside
/// the late one and be charged as an update (before: one more tx fee, and a second proof submission fee).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txs_landing_one_to_three_blocks_late_are_claimed_and_proved_with_one_fee_each() {
    for unordered in [true, false] {
        for delay in 1..=3 {
            let what = format!("delay {delay}, unordered {unordered}");
            let set = |chain: &SimChain| chain.state().inclusion_delay_blocks = delay;
            let (f, run) = run_session(wide_windows(), unordered, set, |_| {}).await;
            let submission_fee = 1;
            assert_claimed_and_proved_once(&f, &run, &what);
            let kinds: Vec<_> = run.txs.iter().map(|(_, kind, code)| (*kind, *code)).collect();
            assert_eq!(kinds, [("claim", 0), ("proof", 0)], "{what}: {run:?}");
            assert_eq!(run.paid, run.fees + submission_fee, "{what}: {run:?}");
            assert!(f.chain.state().mempool.is_empty(), "{what}: nothing left waiting");
        }
    }
}

/// A claim tx the node answered code 0 for and then dropped (never included), and the same for the proof: the
/// miner sends each again two blocks later, in time, and the session is claimed and proved with one tx of each
/// in blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_claim_or_proof_tx_is_sent_again_in_time() {
    for unordered in [true, false] {
        let drop_next = |chain: &SimChain| chain.state().drop_accepted_txs = 1;
        let (f, run) = run_session(wide_windows(), unordered, drop_next, drop_next).await;
        let what = format!("unordered {unordered}");
        assert_claimed_and_proved_once(&f, &run, &what);
        let kinds: Vec<_> = run.txs.iter().map(|(_, kind, code)| (*kind, *code)).collect();
        assert_eq!(kinds, [("claim", 0), ("proof", 0)], "{what}: {run:?}");
        assert_eq!(run.paid, run.fees + 1, "{what}: {run:?}");
        assert_eq!((run.claims_sent, run.proofs_sent), (2, 2), "{what}: each sent twice");
    }
}

/// The default windows (`claim_close` = `claim_open` + 4) and every tx held 4 blocks: the claim, sent when its
/// window opens, can land only after the window. Its `timeout_height` (the window's close) has the chain refuse it in that block before its fee
/// is charged; the re-send does not make a second tx that would fail too; the session is lost as
/// `claim_not_included`, with no fee paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_delayed_past_its_window_is_lost_without_a_fee() {
    let mut g = wide_windows();
    g.shared_params = GenesisSharedParams::default();
    let set = |chain: &SimChain| chain.state().inclusion_delay_blocks = 4;
    let (f, run) = run_session(g, true, set, |_| {}).await;
    let records = f.chain.records();
    assert!(
        records.iter().all(|r| r.kind != "claim"),
        "no claim ran: {records:?} {run:?}"
    );
    assert_eq!(run.txs.len(), 1, "{run:?}");
    assert_eq!(run.txs[0].1, "claim");
    assert_eq!(run.txs[0].2, 30, "refused for its timeout height: {run:?}");
    assert_eq!(run.paid, 0, "{run:?}");
    assert_eq!(run.sessions_lost, 1, "{run:?}");
    assert!(
        matches!(
            run.state,
            State::Claiming | State::Expired(LossReason::ClaimNotIncluded)
        ),
        "{run:?}"
    );
}

/// Pocket mainnet's ~60 s blocks (CometBFT stamps a block with about the time the one before it was committed):
/// a claim or proof held 2 or 3 blocks (a full block at a window's open), and with Beta testnet's 5-minute blocks
/// every tx in the next block, still lands — the unordered timeout covers the window at the chain's pace (module
/// `submit::ttl`). With a fixed 120 s after the tip's time, each of those txs was refused in its block for its
/// passed timeout, both sends of the claim, and the session lost. (5-minute blocks leave no room for a tx held a
/// block: the block after next is 10 min after the tip, the SDK's bound on any unordered timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_blocks_do_not_expire_a_claim_or_proof_held_a_few_blocks() {
    for (block_time_ms, delay) in [(62_000, 2), (62_000, 3), (300_000, 0)] {
        let what = format!("{block_time_ms} ms blocks, held {delay}");
        let mut g = wide_windows();
        g.block_time_ms = block_time_ms;
        let set = move |chain: &SimChain| chain.state().inclusion_delay_blocks = delay;
        let (f, run) = run_session(g, true, set, |_| {}).await;
        // One claim tx and one proof tx: the re-send two blocks after a send broadcasts the same bytes again
        // (the node still has them), so no second tx lands beside the first and charges a second fee.
        assert_claimed_and_proved_once(&f, &run, &what);
        let kinds: Vec<_> = run.txs.iter().map(|(_, kind, code)| (*kind, *code)).collect();
        assert_eq!(kinds, [("claim", 0), ("proof", 0)], "{what}: {run:?}");
        assert_eq!(run.paid, run.fees + 1, "{what}: one proof submission fee: {run:?}");
    }
}
