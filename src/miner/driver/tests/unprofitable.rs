//! Claims worth at most their expected cost are not sent (module `profit`, `transaction.skip_unprofitable_claims`):
//! the claim's tx fee would be paid for sure and the proof's fees with the chance a proof is required, so such a
//! claim loses the supplier money on average. The session ends without a claim, no fee paid, counted once.
//!
//! The sessions: the fixture's own (`low`, 5 relays) and `app2`'s (`high`, 10 relays), each relay 10 compute units
//! at 42 uPOKT each (the simulator's default params): worth 2,100 and 4,200 uPOKT. At the tests' default gas price
//! (0.000001 uPOKT) a claim's tx fee is 1 uPOKT.

use super::*;
use crate::config::SkipUnprofitableClaims;
use crate::miner::lifecycle::State;

/// Skips counted once their records are stored.
mod reports;

struct Sessions {
    f: Fixture,
    miner: Miner,
    plain: storage::Storage,
    /// The fault plan of `plain`'s memory backend.
    faults: storage::memory::Faults,
    /// The miner's view of the leadership (its confirmations can be held).
    view: Arc<LaggingView>,
    telemetry: crate::telemetry::Telemetry,
    schedule: crate::miner::lifecycle::Schedule,
    high: Option<SessionKey>,
}

/// A leader miner under `policy` that ingested the low session (and the high one when `with_high`), at the claim
/// window's open; the proof params are `fee` uPOKT, a probability of 0.25 and `threshold`.
async fn at_claim_open(policy: SkipUnprofitableClaims, fee: u64, threshold: u64, with_high: bool) -> Sessions {
    at_claim_open_with(config("a"), policy, fee, 0.25, threshold, with_high).await
}

/// [`at_claim_open`] with the miner's `config` and the proof request `probability`.
async fn at_claim_open_with(
    config: MinerConfig,
    policy: SkipUnprofitableClaims,
    fee: u64,
    probability: f64,
    threshold: u64,
    with_high: bool,
) -> Sessions {
    let mut g = genesis_with_apps(&["app2"]);
    g.proof_params.proof_submission_fee_upokt = fee;
    g.proof_params.proof_request_probability = probability;
    g.proof_params.proof_requirement_threshold_upokt = threshold;
    at_claim_open_on(g, config, policy, with_high).await
}

/// [`at_claim_open_with`] on genesis `g` (its proof params as they are).
async fn at_claim_open_on(
    g: Genesis,
    config: MinerConfig,
    policy: SkipUnprofitableClaims,
    with_high: bool,
) -> Sessions {
    let f = fixture_on(g).await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let backend = MemoryBackend::new();
    let faults = backend.faults().clone();
    let plain = backend.storage();
    let view = Arc::new(LaggingView::over(plain.leadership.clone()));
    let mut storage = plain.clone();
    storage.leadership = view.clone();
    let mut miner = Miner::new(f.client.clone(), storage, f.keyring.clone(), config)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap())
        .with_claim_policy(policy);
    let high = if with_high {
        let (high_header, high) = app_session(&f, "app2").await;
        plain
            .relay_log
            .append(relays(&f.supplier, &high_header, 200..210))
            .await
            .unwrap();
        Some(high)
    } else {
        None
    };
    // The fixture's own session gets relays 0..5.
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    Sessions {
        f,
        miner,
        plain,
        faults,
        view,
        telemetry,
        schedule,
        high,
    }
}

/// `ha_miner_claims_skipped_total{reason="unprofitable"}` in `telemetry`.
fn skipped(telemetry: &crate::telemetry::Telemetry) -> Option<u64> {
    counter(
        &telemetry.render_metrics(),
        "ha_miner_claims_skipped_total",
        "unprofitable",
    )
}

/// `ha_miner_claims_skipped_upokt_total{reason="unprofitable"}` in `telemetry`.
fn skipped_upokt(telemetry: &crate::telemetry::Telemetry) -> Option<u64> {
    counter(
        &telemetry.render_metrics(),
        "ha_miner_claims_skipped_upokt_total",
        "unprofitable",
    )
}

impl Sessions {
    fn skipped(&self) -> Option<u64> {
        skipped(&self.telemetry)
    }

    /// `ha_miner_claims_skipped_upokt_total{reason="unprofitable"}`.
    fn skipped_upokt(&self) -> Option<u64> {
        skipped_upokt(&self.telemetry)
    }

    fn balance(&self) -> u128 {
        self.f.chain.state().accounts.get(&self.f.supplier).unwrap().balance
    }

    /// Sends the claims due at the window's open and includes them.
    async fn claim(&mut self) {
        self.miner.step().await.unwrap();
        self.f.chain.produce_block();
        self.miner.step().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_worth_less_than_its_expected_cost_is_not_sent_and_its_session_ends_unclaimed() {
    // 2,100 uPOKT ≤ 0.25 × 10,000.
    let mut s = at_claim_open(SkipUnprofitableClaims::ExpectedCost, 10_000, u64::MAX, false).await;
    let before = s.balance();
    s.claim().await;
    assert_not_claimed(&s.f, &s.f.key).await;
    assert_eq!(s.balance(), before, "no claim tx paid for");
    assert_eq!(s.skipped(), Some(1));
    assert_eq!(s.skipped_upokt(), Some(2_100), "the claim's value");
    assert!(
        s.miner.engine.session(&s.f.key).is_none() && s.miner.engine.is_tombstoned(&s.f.key),
        "ended and pruned, its tombstone kept: {:?}",
        s.miner.engine.session(&s.f.key)
    );
    let tombstone = assert_session_pruned(&s.plain, &s.f.supplier, &s.f.key.session_id).await;
    assert_eq!(tombstone.state, State::Discarded);
    assert!(
        tombstone.claim_sent_at.is_empty() && !tombstone.claim_built,
        "{tombstone:?}"
    );

    // Past the claim window: still no claim, no fee, counted once, and not recorded as lost.
    while s.f.chain.height() <= s.schedule.claim_close + 2 {
        s.f.chain.produce_block();
        s.miner.step().await.unwrap();
    }
    assert_not_claimed(&s.f, &s.f.key).await;
    assert_eq!(s.balance(), before);
    assert_eq!(s.skipped(), Some(1));
    assert_eq!(s.skipped_upokt(), Some(2_100));
    let metrics = s.telemetry.render_metrics();
    assert!(
        !metrics.lines().any(|l| l.starts_with("ha_miner_relays_lost_total{")),
        "no loss recorded: {metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("ha_miner_claims_discarded_total{"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_worth_more_than_its_expected_cost_is_sent_beside_a_skipped_one() {
    // 4,200 > 2,500 ≥ 2,100.
    let mut s = at_claim_open(SkipUnprofitableClaims::ExpectedCost, 10_000, u64::MAX, true).await;
    let high = s.high.clone().unwrap();
    s.claim().await;
    assert_claimed(&s.f, &[&high]).await;
    assert_not_claimed(&s.f, &s.f.key).await;
    assert_eq!(s.skipped(), Some(1), "the low session alone, once");
    assert_eq!(s.skipped_upokt(), Some(2_100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_policy_off_every_session_is_claimed() {
    let mut s = at_claim_open(SkipUnprofitableClaims::Off, 10_000, u64::MAX, true).await;
    let high = s.high.clone().unwrap();
    s.claim().await;
    assert_claimed(&s.f, &[&high, &s.f.key]).await;
    assert_eq!(s.skipped(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_at_the_threshold_counts_the_whole_proof_fee() {
    // Threshold 4,000: the high session (4,200) needs a proof for sure, and 4,200 ≤ 5,000 is not worth it; the
    // low one (2,100) needs one with p = 0.25, 1,250 expected, and is claimed.
    let mut s = at_claim_open(SkipUnprofitableClaims::ExpectedCost, 5_000, 4_000, true).await;
    let high = s.high.clone().unwrap();
    s.claim().await;
    assert_claimed(&s.f, &[&s.f.key]).await;
    assert_not_claimed(&s.f, &high).await;
    assert_eq!(s.skipped(), Some(1));
    assert_eq!(s.skipped_upokt(), Some(4_200), "the high session's value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poktrolls_rule_ignores_the_proof_fee() {
    let mut s = at_claim_open(SkipUnprofitableClaims::Poktroll, 10_000, u64::MAX, false).await;
    s.claim().await;
    assert_claimed(&s.f, &[&s.f.key]).await;
    assert_eq!(s.skipped(), None);
}

/// A claim tx of one message in the simulator uses ~85,000 gas (10 per byte, the fee transfer, the signature, the
/// message), × 1.7 signed: at 0.02 uPOKT per gas its fee is ~2,900 uPOKT, between the two sessions' values.
const PRICE: &str = "0.02upokt";

/// With no proof fee and no proof ever required (the claim's own tx fee alone decides) and `config`'s gas at
/// [`PRICE`]: the 4,200 uPOKT session is claimed, the 2,100 one skipped; returns the fees paid.
async fn only_the_high_session_claimed_at_price(config: MinerConfig) -> (u128, usize) {
    let config = MinerConfig {
        gas_price: PRICE.into(),
        ..config
    };
    let mut s = at_claim_open_with(config, SkipUnprofitableClaims::ExpectedCost, 0, 0.0, u64::MAX, true).await;
    let high = s.high.clone().unwrap();
    let before = s.balance();
    s.claim().await;
    assert_claimed(&s.f, &[&high]).await;
    assert_not_claimed(&s.f, &s.f.key).await;
    assert_eq!(s.skipped(), Some(1));
    let txs = super::fixed_gas::included_gas(&s.f.chain);
    assert_eq!(txs.len(), 1, "one claim tx: {txs:?}");
    (before - s.balance(), txs[0].1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claims_simulated_tx_fee_is_part_of_its_cost() {
    let (paid, _) = only_the_high_session_claimed_at_price(config("a")).await;
    assert!(
        (2_100..4_200).contains(&paid),
        "one claim tx paid, its fee between the two values: {paid}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_gas_limit_prices_each_claim_at_its_share() {
    // 150,000 gas × 0.02 = 3,000 uPOKT per claim message: 2,100 ≤ 3,000 < 4,200. The tx also pays for its size
    // gas (10 per byte, `fees::fixed_gas_limit`), which the estimate leaves out.
    let config = MinerConfig {
        gas_limit: 150_000,
        ..config("a")
    };
    let (paid, len) = only_the_high_session_claimed_at_price(config).await;
    let gas = super::fixed_gas::fixed_limit(150_000, 1, len);
    assert_eq!(
        paid,
        u128::from(gas).div_ceil(50),
        "one claim message's fee, and its size gas"
    );
}

/// A session inherited from another leader (this process began to lead after its claim window opened) is claimed
/// even when not worth its cost: its record says no claim left, but a store that lost an acknowledged write (a
/// Redis failover without `wait_replicas`) could say so of a claim on chain whose proof would then be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_inherited_after_its_claim_window_opened_is_claimed_whatever_its_worth() {
    let s = at_claim_open(SkipUnprofitableClaims::ExpectedCost, 10_000, u64::MAX, false).await;
    let mut first = s.miner;
    first.resign().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut next = Miner::new(s.f.client.clone(), s.plain.clone(), s.f.keyring.clone(), config("b"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap())
        .with_claim_policy(SkipUnprofitableClaims::ExpectedCost);
    next.step().await.unwrap();
    assert!(next.engine.is_leader());
    while s.f.chain.height() <= s.schedule.claim_close {
        s.f.chain.produce_block();
        next.step().await.unwrap();
    }
    assert_claimed(&s.f, &[&s.f.key]).await;
    assert_eq!(skipped(&telemetry), None);
}

/// The tx fee in the cost is at `transaction.gas_price`, not at a node's higher minimum or a price a refusal
/// named: those can be passing (a spike), and a claim skipped for them is gone for good. Here the node asks
/// 0.02 uPOKT per gas (3,000 uPOKT a claim message, more than the low session's 2,100): both are claimed, each
/// at the price the node asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_higher_gas_price_does_not_skip_claims() {
    let config = MinerConfig {
        gas_limit: 150_000,
        ..config("a")
    };
    let mut s = at_claim_open_with(config, SkipUnprofitableClaims::ExpectedCost, 0, 0.0, u64::MAX, true).await;
    s.f.chain.set_minimum_gas_prices(PRICE).unwrap();
    let high = s.high.clone().unwrap();
    let before = s.balance();
    s.claim().await;
    assert_claimed(&s.f, &[&s.f.key, &high]).await;
    assert_eq!(s.skipped(), None);
    // Two claim messages (150,000 gas each) and the txs' size gas, at the node's price.
    let txs = super::fixed_gas::included_gas(&s.f.chain);
    let size_gas: u64 = txs.iter().map(|&(_, len, _)| 10 * (len as u64 + 32)).sum();
    let gas: u64 = txs.iter().map(|&(gas, _, _)| gas).sum();
    assert_eq!(gas, 300_000 + size_gas, "{txs:?}");
    let fees: u128 = txs.iter().map(|&(gas, _, _)| u128::from(gas).div_ceil(50)).sum();
    assert_eq!(txs.iter().map(|t| t.2).sum::<u128>(), fees, "{txs:?}");
    assert_eq!(before - s.balance(), fees, "{txs:?}");
}

/// The claimed uPOKT a claim is valued at scales with the relay mining difficulty at its session's start (spec §4,
/// §6.3.1: `floor(sum_CU × (2²⁵⁶−1)/target × CUTTM / granularity)`, one floor at the end). At target `7f…ff` the
/// multiplier is `(2²⁵⁶−1)/(2²⁵⁵−1)`, 2 plus 1/(2²⁵⁵−1): the low session's 50 compute units are worth
/// `floor(4,200 + 2,100/(2²⁵⁵−1))` = 4,200 uPOKT, not its 2,100 at base difficulty. A fixed gas limit of
/// 1,000,000 at 0.000001 uPOKT makes each tx fee in the cost exactly 1 uPOKT: the cost is `1 + 0.25 × (fee + 1)`.
async fn at_twice_the_difficulty(fee: u64) -> Sessions {
    let mut g = genesis();
    g.services[0].difficulty_target_hex = Some(format!("7f{}", "ff".repeat(31)));
    g.proof_params.proof_submission_fee_upokt = fee;
    g.proof_params.proof_request_probability = 0.25;
    g.proof_params.proof_requirement_threshold_upokt = u64::MAX;
    let config = MinerConfig {
        gas_limit: 1_000_000,
        ..config("a")
    };
    let s = at_claim_open_on(g, config, SkipUnprofitableClaims::ExpectedCost, false).await;
    let end = s.schedule.session_end;
    assert_eq!(
        s.miner.upokt("anvil", end, 50).await,
        Some(4_200),
        "valued at the difficulty"
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_below_its_cost_at_base_difficulty_is_claimed_at_twice_the_difficulty() {
    // 2,100 ≤ 1 + 0.25 × 10,001 = 2,501.25 < 4,200: skipped at base difficulty, claimed here.
    let mut s = at_twice_the_difficulty(10_000).await;
    s.claim().await;
    assert_claimed(&s.f, &[&s.f.key]).await;
    assert_eq!(s.skipped(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_at_twice_the_difficulty_is_valued_after_one_final_floor() {
    // 1 + 0.25 × 16,796 = 4,200: the claim's value, floored, equals its cost and is skipped; unfloored (4,200 plus
    // a fraction) it would have been claimed.
    let mut s = at_twice_the_difficulty(16_795).await;
    s.claim().await;
    assert_not_claimed(&s.f, &s.f.key).await;
    assert_eq!((s.skipped(), s.skipped_upokt()), (Some(1), Some(4_200)));
    // One uPOKT less of cost (4,199): claimed.
    let mut s = at_twice_the_difficulty(16_791).await;
    s.claim().await;
    assert_claimed(&s.f, &[&s.f.key]).await;
    assert_eq!(s.skipped(), None);
}
