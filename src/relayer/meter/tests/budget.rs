//! The session budget: the app's `per_session_spend_limit` caps it as the chain's settlement does, each charge
//! brings its own (a top-up raises it, a settlement lowering the stake lowers it), and a relay already served is
//! charged past it ([`RelayMeter::force`]).

use super::*;

/// These tests are about the stake and the spend limit: no inflation taken off (see `inflation.rs`).
const NO_INFLATION: InflationPerClaim = InflationPerClaim::ZERO;

fn budget(limit_compute_units: u64) -> Budget {
    Budget {
        limit_compute_units,
        forget_at_height: 100,
    }
}

/// poktroll `getOrInitSessionBudget`: the per-session budget is `min(limit, stake / pending sessions)`, divided
/// by the suppliers; a limit absent or zero is none.
#[test]
fn the_spend_limit_caps_the_stake_share() {
    // Stake 1,000,000 uPOKT, 2 suppliers, 2 pending sessions → 250,000 each; 10 uPOKT per CU.
    let with = |limit| {
        Budget::from_stake(1_000_000, limit, 2, 2, NO_INFLATION, 10_000_000, 1_000_000, 100).limit_compute_units
    };
    assert_eq!(with(None), 25_000);
    assert_eq!(with(Some(0)), 25_000, "a zero limit is no limit");
    // Limit 600 uPOKT per session → 300 per supplier → 30 CU.
    assert_eq!(with(Some(600)), 30);
    // A limit above the stake share caps nothing.
    assert_eq!(with(Some(10_000_000)), 25_000);
    // Integer divisions: 601 / 2 = 300 uPOKT → 30 CU; 609 / 2 = 304 → 30.
    assert_eq!(with(Some(601)), 30);
    assert_eq!(with(Some(619)), 30);
    assert_eq!(with(Some(620)), 31);
}

/// The meter refuses at the limit's share, however large the stake.
#[tokio::test]
async fn the_meter_refuses_past_the_spend_limit() {
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Open);
    // Stake 1e9 uPOKT would pay 25M CU; the 600 uPOKT limit pays 30.
    let b = Budget::from_stake(1_000_000_000, Some(600), 2, 2, NO_INFLATION, 10_000_000, 1_000_000, 100);
    for _ in 0..3 {
        m.charge(&key(), b, 10).await.unwrap().commit();
    }
    assert!(matches!(
        m.charge(&key(), b, 10).await,
        Err(MeterError::OverServiced {
            consumed: 30,
            limit: 30,
            ..
        })
    ));
}

/// An app that tops up its stake mid-session: the next relay's validation reads the larger stake, and the session
/// refused at the old budget is served again.
#[tokio::test]
async fn a_raised_budget_lets_a_refused_session_charge_again() {
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Open);
    for _ in 0..2 {
        m.charge(&key(), budget(20), 10).await.unwrap().commit();
    }
    assert!(matches!(
        m.charge(&key(), budget(20), 10).await,
        Err(MeterError::OverServiced { limit: 20, .. })
    ));
    assert!(m.exhausted(&key(), 10));
    m.charge(&key(), budget(40), 10).await.unwrap().commit();
    // The precheck (optimistic mode, before serving) sees the raised budget too.
    assert!(!m.exhausted(&key(), 10));
    m.charge(&key(), budget(40), 10).await.unwrap().commit();
    assert!(m.exhausted(&key(), 1));
    m.sync().await;
    assert_eq!(store.kv.get(&storage_key(&key())).await.unwrap(), Some(b"40".to_vec()));
}

/// A settlement of an earlier session lowers the app's stake: the next charge brings the lower budget, and what
/// the first budget allowed is refused.
#[tokio::test]
async fn a_lowered_budget_refuses_what_the_first_allowed() {
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Open);
    m.charge(&key(), budget(40), 10).await.unwrap().commit();
    m.charge(&key(), budget(40), 10).await.unwrap().commit();
    assert!(matches!(
        m.charge(&key(), budget(25), 10).await,
        Err(MeterError::OverServiced {
            consumed: 20,
            limit: 25,
            ..
        })
    ));
    assert!(m.exhausted(&key(), 10), "the precheck keeps the lowered budget");
    m.charge(&key(), budget(25), 5).await.unwrap().commit();
}

/// A relay already served (optimistic mode) is charged past the budget, and the refusal it overrode is returned
/// (for the relayer's `over_serviced_mined` count); it counts in the shared total like any other charge.
#[tokio::test]
async fn a_forced_charge_is_kept_past_the_budget() {
    let store = storage::MemoryBackend::new().storage();
    let m = meter(Arc::clone(&store.kv), FailBehavior::Closed);
    let (charge, refusal) = m.force(&key(), budget(10), 10).await;
    assert_eq!(refusal, None);
    charge.commit();
    let (charge, refusal) = m.force(&key(), budget(10), 10).await;
    assert!(matches!(
        refusal,
        Some(MeterError::OverServiced {
            consumed: 10,
            limit: 10,
            cost: 10,
            ..
        })
    ));
    charge.commit();
    // A forced charge refunds like any other when its relay is not mined.
    let (charge, _) = m.force(&key(), budget(10), 10).await;
    charge.refund();
    assert!(m.charge(&key(), budget(10), 1).await.is_err());
    m.sync().await;
    assert_eq!(store.kv.get(&storage_key(&key())).await.unwrap(), Some(b"20".to_vec()));
}

/// Failing closed with storage down, a relay already served is still charged (locally), and the charge reaches
/// storage once it answers again.
#[tokio::test]
async fn a_forced_charge_is_kept_while_storage_is_down() {
    let store = storage::MemoryBackend::new().storage();
    let kv = Arc::new(FlakyKv {
        inner: Arc::clone(&store.kv),
        down: true.into(),
        gets: 0.into(),
    });
    let m = meter(kv.clone(), FailBehavior::Closed);
    assert!(matches!(
        m.charge(&key(), budget(100), 10).await,
        Err(MeterError::Unavailable(_))
    ));
    let (charge, refusal) = m.force(&key(), budget(100), 10).await;
    assert!(matches!(refusal, Some(MeterError::Unavailable(_))));
    charge.commit();
    kv.down.store(false, std::sync::atomic::Ordering::SeqCst);
    m.sync().await;
    assert_eq!(store.kv.get(&storage_key(&key())).await.unwrap(), Some(b"10".to_vec()));
    // The next charge reads the shared total (our forced 10 in it), not counting it twice.
    m.charge(&key(), budget(100), 10).await.unwrap().commit();
    m.sync().await;
    assert_eq!(store.kv.get(&storage_key(&key())).await.unwrap(), Some(b"20".to_vec()));
}
