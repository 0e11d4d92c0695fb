//! The funds checks pay first for the supplier's txs that may still land (modules `afford`, `submit::funds`): a
//! kept tx held up in mempools takes its fees when a block includes it, after the balance was read for the next
//! tx. Real simulator: a tx waits in its mempool (`inclusion_delay_blocks`) while the next block's submission of
//! the same supplier is decided.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::claim_funds::{ThreeSessions, three_sessions_with};
use super::proof_funds::proof_sessions;
use super::*;

/// Two sessions of one supplier, both proofs required (fee [`PROOF_FEE`]), worth 2 (`cheap`) and 4 (`valuable`)
/// relays, claimed, the chain at `proof_open − 1` and the miner stepped through it; proof txs signed at 0.001upokt
/// per gas (some hundreds of upokt).
pub(super) struct TwoProofs {
    pub f: Fixture,
    pub miner: Miner,
    pub telemetry: crate::telemetry::Telemetry,
    pub cheap: SessionKey,
    pub valuable: SessionKey,
    pub schedule: crate::miner::lifecycle::Schedule,
}

/// The proof submission fee of [`TwoProofs`].
pub(super) const PROOF_FEE: u64 = 1_000_000;

pub(super) async fn two_proofs_due() -> TwoProofs {
    let mut g = genesis_with_apps(&["app2"]);
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g.proof_params.proof_submission_fee_upokt = PROOF_FEE;
    let f = fixture_on(g).await;
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = u128::from(PROOF_FEE) * 10;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let config = MinerConfig {
        gas_price: "0.001upokt".into(),
        ..config("a")
    };
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config)
        .with_settlements_from(f.comet.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    miner.step().await.unwrap();
    let mut sessions = Vec::new();
    for app in ["app", "app2"] {
        let (header, key) = app_session(&f, app).await;
        sessions.push((header, key, app));
    }
    sessions.sort_by(|a, b| a.1.session_id.cmp(&b.1.session_id));
    let mut keys = Vec::new();
    for ((header, key, app), relays) in sessions.into_iter().zip([2, 4]) {
        plain
            .relay_log
            .append(signed_relays(&f, &header, app, 0..relays, 100))
            .await
            .unwrap();
        keys.push(key);
    }
    let (valuable, cheap) = (keys.pop().unwrap(), keys.pop().unwrap());
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&cheap).unwrap().schedule;
    while f.chain.height() < schedule.proof_open - 1 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_claimed(&f, &[&cheap, &valuable]).await;
    TwoProofs {
        f,
        miner,
        telemetry,
        cheap,
        valuable,
        schedule,
    }
}

impl TwoProofs {
    /// The sessions of each proof tx waiting in the mempool.
    pub fn waiting(&self) -> Vec<Vec<String>> {
        self.f
            .chain
            .state()
            .mempool
            .iter()
            .map(|tx| proof_sessions(tx))
            .collect()
    }

    /// Steps the chain and the miner through the settlement, then asserts that no tx failed in its block and that
    /// only the valuable proof was validated.
    pub async fn settle_valuable_alone(&mut self) {
        let chain = &self.f.chain;
        while chain.height() <= self.schedule.settlement + 2 {
            chain.produce_block();
            self.miner.step().await.unwrap();
        }
        assert_eq!(
            failed_in_block(chain),
            Vec::<String>::new(),
            "no tx failed in its block"
        );
        let status = |key: &SessionKey| {
            let s = chain.state();
            let id = (key.session_id.clone(), self.f.supplier.clone());
            s.settled
                .get(&id)
                .or_else(|| s.claims.get(&id))
                .map(|e| e.claim.proof_validation_status)
        };
        let validated = Some(crate::protocol::wire::ClaimProofStatus::Validated as i32);
        assert_eq!(status(&self.valuable), validated, "{:?}", chain.records());
        assert_ne!(status(&self.cheap), validated, "{:?}", chain.records());
    }
}

/// [`TwoProofs`] with a balance that pays one proof after the real fee of its tx (two proof submission fees + 2
/// upokt). The most valuable proof leaves alone at `proof_open`, and its tx waits two blocks in the mempool. At the
/// next block the other proof is tried again: the balance read still shows the first tx's fees, so without
/// counting it the second proof leaves, lands first, and the first tx then fails in its block (x/proof: the balance
/// no longer exceeds the proof fee), the most valuable proof missed. Counted, the second proof is held back (the
/// balance never pays it) and no tx fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_tx_still_in_the_mempool_is_paid_before_the_next_proof() {
    let mut t = two_proofs_due().await;
    let chain = t.f.chain.clone();
    chain.state().accounts.get_mut(&t.f.supplier).unwrap().balance = u128::from(PROOF_FEE) * 2 + 2;

    // proof_open: the valuable proof alone leaves; its tx waits two blocks (lands at proof_open + 3).
    chain.state().inclusion_delay_blocks = 2;
    chain.produce_block();
    t.miner.step().await.unwrap();
    chain.state().inclusion_delay_blocks = 0;
    let valuable = vec![vec![t.valuable.session_id.clone()]];
    assert_eq!(t.waiting(), valuable);

    // The next block: the cheap proof is tried again while the first tx is still in the mempool.
    chain.produce_block();
    t.miner.step().await.unwrap();
    assert_eq!(
        t.waiting(),
        valuable,
        "the cheap proof is held back while the valuable one's tx may still land"
    );
    let held = counter(
        &t.telemetry.render_metrics(),
        "ha_miner_proof_errors_total",
        "insufficient_funds",
    );
    assert_eq!(held, Some(2), "held at proof_open and again at the next block");
    t.settle_valuable_alone().await;
}

/// Three sessions worth 10, 5 and 2 relays at `claim_open`, the proof fee 400,000 upokt and a gas price at which a
/// claim tx costs thousands of upokt. The balance backs two proofs: the two most valuable claims leave in one tx,
/// which waits a block in the mempool, and the least valuable is held. The operator then tops the account up to
/// back all three proofs only if that claim tx's fee were not taken: at the next block the held claim is tried
/// again while the claim tx is still pending. Counting it, the claim stays held (its proof could not be paid once
/// the pending tx lands); without, it leaves and the balance can no longer back the three proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_tx_still_in_the_mempool_is_paid_before_the_next_claim() {
    let cfg = MinerConfig {
        gas_price: "0.01upokt".into(),
        ..config("a")
    };
    let ThreeSessions {
        f,
        mut miner,
        telemetry,
        high,
        low,
    } = three_sessions_with(900_000, cfg).await;

    // claim_open: two claims leave in one tx, which lands a block late; the least valuable is held.
    f.chain.state().inclusion_delay_blocks = 1;
    miner.step().await.unwrap();
    f.chain.state().inclusion_delay_blocks = 0;
    let mempool = f.chain.state().mempool.clone();
    assert_eq!(mempool.len(), 1, "one claim tx");
    let claim_fee = crate::chain::tx::fee_paid(&mempool[0], "upokt").unwrap();
    assert!(claim_fee >= 1_000, "a claim tx fee that counts: {claim_fee}");
    let skipped = || {
        counter(
            &telemetry.render_metrics(),
            "ha_miner_claims_skipped_total",
            "insufficient_funds",
        )
    };
    assert_eq!(skipped(), Some(1));

    // Topped up to back three proofs (with their tx fees) but for half the pending claim tx's fee.
    let per_proof = 400_000 + miner.proof_tx_fee_estimate(&f.supplier).await;
    let balance = 3 * per_proof + claim_fee / 2;
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = balance;
    f.chain.produce_block();
    miner.step().await.unwrap();
    let waiting = f.chain.state().mempool.len();
    assert_eq!(
        waiting,
        1,
        "the held claim stays held while the claim tx may still land: {:?}",
        f.chain.records()
    );
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_claimed(&f, &[&high, &f.key]).await;
    assert_not_claimed(&f, &low).await;
    let left = f.chain.state().accounts[&f.supplier].balance;
    assert_eq!(left, balance - claim_fee);
    assert!(left > 2 * per_proof, "the two claims on chain are backed: {left}");
}
