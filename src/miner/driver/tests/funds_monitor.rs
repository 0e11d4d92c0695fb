//! The supplier funds monitor (module `balance`): the leading miner reads the operator account's balance and the
//! supplier's stake from the chain at its interval and reports their level: a balance below the configured
//! threshold is a warning, below the proof submission fees its claimed sessions may owe critical; a stake covering
//! fewer missed-proof penalties than the thresholds likewise.

use super::*;
use crate::miner::driver::BalanceMonitor;
use crate::miner::lifecycle::State;

/// The value of the (single-supplier) sample of `name`.
fn value(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sets the supplier's balance and stake (upokt) on chain, moves a block and waits for the check it starts; the
/// metrics after it.
async fn check_with(
    f: &Fixture,
    miner: &mut Miner,
    telemetry: &crate::telemetry::Telemetry,
    balance: u128,
    stake: u64,
) -> String {
    {
        let mut s = f.chain.state();
        s.accounts.get_mut(&f.supplier).unwrap().balance = balance;
        s.suppliers.get_mut(&f.supplier).unwrap().stake = Some(crate::protocol::wire::Coin {
            denom: "upokt".into(),
            amount: stake.to_string(),
        });
    }
    f.chain.produce_block();
    miner.step().await.unwrap();
    miner.funds_checked().await;
    telemetry.render_metrics()
}

fn monitored(f: &Fixture, every: Duration, telemetry: &crate::telemetry::Telemetry) -> Miner {
    let plain = MemoryBackend::new().storage();
    Miner::new(f.client.clone(), plain, f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(telemetry).unwrap())
        .with_balance_monitor(BalanceMonitor {
            every,
            balance_threshold_upokt: 1_000_000,
            stake_warning_proofs: 10,
            stake_critical_proofs: 3,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_each_suppliers_balance_and_stake_levels() {
    let mut g = genesis();
    g.proof_params.proof_submission_fee_upokt = 400_000;
    g.proof_params.proof_missing_penalty_upokt = 1_000;
    let f = fixture_on(g).await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = monitored(&f, Duration::ZERO, &telemetry);
    let text = check_with(&f, &mut miner, &telemetry, 5_000_000, 20_000).await;
    assert_eq!(value(&text, "ha_miner_supplier_balance_upokt"), Some(5_000_000));
    assert_eq!(value(&text, "ha_miner_supplier_balance_health_status"), Some(0));
    assert_eq!(value(&text, "ha_miner_supplier_stake_upokt"), Some(20_000));
    assert_eq!(value(&text, "ha_miner_supplier_stake_health_ratio"), Some(20));
    assert_eq!(value(&text, "ha_miner_supplier_stake_warning_alerts_total"), None);

    // Below the threshold, above one proof fee: warning. Stake for 5 penalties: warning.
    let text = check_with(&f, &mut miner, &telemetry, 999_999, 5_000).await;
    assert_eq!(value(&text, "ha_miner_supplier_balance_health_status"), Some(1));
    assert_eq!(value(&text, "ha_miner_supplier_balance_warning_alerts_total"), Some(1));
    assert_eq!(value(&text, "ha_miner_supplier_stake_health_ratio"), Some(5));
    assert_eq!(value(&text, "ha_miner_supplier_stake_warning_alerts_total"), Some(1));

    // Below one proof submission fee: critical (a required proof could not be paid). Stake for 2: critical.
    let text = check_with(&f, &mut miner, &telemetry, 399_999, 2_000).await;
    assert_eq!(value(&text, "ha_miner_supplier_balance_upokt"), Some(399_999));
    assert_eq!(value(&text, "ha_miner_supplier_balance_health_status"), Some(2));
    assert_eq!(value(&text, "ha_miner_supplier_balance_critical_alerts_total"), Some(1));
    assert_eq!(value(&text, "ha_miner_supplier_stake_critical_alerts_total"), Some(1));
    assert_eq!(value(&text, "ha_miner_supplier_monitor_errors_total"), None);
}

/// Sessions whose claim is sent or on chain may each need a paid proof: the balance is critical below their fees
/// together, not only below one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_sessions_raise_the_critical_level_to_their_proof_fees() {
    let mut g = genesis_with_apps(&["app2"]);
    g.proof_params.proof_submission_fee_upokt = 400_000;
    let f = fixture_on(g).await;
    let (other, _) = app_session(&f, "app2").await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap())
        .with_balance_monitor(BalanceMonitor {
            every: Duration::ZERO,
            balance_threshold_upokt: 0,
            stake_warning_proofs: 0,
            stake_critical_proofs: 0,
        });
    plain
        .relay_log
        .append(relays(&f.supplier, &other, 10..13))
        .await
        .unwrap();
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    // 900,000 pays both claims' proof fees (a claim the balance could not prove is held back, module `afford`).
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = 900_000;
    miner.step().await.unwrap();
    f.chain.produce_block();
    // 600,000: one fee is covered, the two claimed sessions' are not.
    f.chain.state().accounts.get_mut(&f.supplier).unwrap().balance = 600_000;
    miner.step().await.unwrap();
    // A check started after the claims were sent.
    miner.funds_checked().await;
    f.chain.produce_block();
    miner.step().await.unwrap();
    miner.funds_checked().await;
    let claiming = miner
        .engine
        .sessions()
        .filter(|r| matches!(r.state, State::Claiming | State::Claimed))
        .count();
    assert_eq!(claiming, 2, "both sessions claimed");
    let text = telemetry.render_metrics();
    assert_eq!(value(&text, "ha_miner_supplier_balance_health_status"), Some(2));
}

/// Between checks the chain is not read again: one check per interval, not per block. The check runs on a task
/// of its own, so its reads never hold up the block's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funds_are_checked_once_per_interval() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = monitored(&f, Duration::from_secs(3600), &telemetry);
    let calls = || {
        f.chain
            .grpc_calls(crate::protocol::wire::method::SPENDABLE_BALANCE_BY_DENOM)
    };
    f.chain.produce_block();
    miner.step().await.unwrap();
    miner.funds_checked().await;
    assert_eq!(calls(), 1, "checked at the first block");
    for _ in 0..3 {
        f.chain.produce_block();
        miner.step().await.unwrap();
        miner.funds_checked().await;
    }
    assert_eq!(calls(), 1, "not again within the interval");
}
