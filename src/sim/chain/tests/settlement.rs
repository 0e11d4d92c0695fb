//! Settlement pays what the application can spend, as poktroll's tokenomics does (`getOrInitSessionBudget`,
//! `ensureClaimAmountLimits`, the `RelayBurnEqualsMint` and `GlobalMint` modules): a claim worth more than the
//! application's per-supplier session budget is settled at that budget, the application's stake is burnt by what
//! is paid and the supplier credited its share; a claim under the budget is paid in full.

use super::*;

/// A chain whose `anvil` target starts with `zero_bytes` zero bytes (each multiplies a relay's worth by about 256),
/// no proof ever required, the app staked 1e6 uPOKT.
async fn fixture_with_target(zero_bytes: usize) -> Fixture {
    let mut g = genesis(0.0);
    let mut target = vec![0u8; zero_bytes];
    target.resize(32, 0xff);
    g.services[0].difficulty_target_hex = Some(hex::encode(target));
    fixture_on(g).await
}

/// Claims `relays` relays of the fixture's session, runs to the settlement block and returns (the settlement,
/// the app's stake before and after, the supplier's balance before and after the settlement block, and the
/// event's `claimed_upokt` and `settled_upokt`).
async fn claim_and_settle(f: &Fixture, relays: u32) -> (Settlement, [u128; 2], [u128; 2], [String; 2]) {
    let mut trie = trie_with(f, relays, 10);
    let w = windows(f);
    advance_to(&f.chain, w.claim_open - 1);
    let rejected = rejection_in_block(f, claim_msg(f, &f.header, &trie.root()), &f.supplier).await;
    assert_eq!(rejected, None);
    advance_to(&f.chain, w.settlement - 1);
    let app = f.header.application_address.clone();
    let stake = |c: &SimChain| c.application_stake(&app).unwrap();
    let balance = |c: &SimChain| c.state().accounts[&f.supplier_address].balance;
    let before = (stake(&f.chain), balance(&f.chain));
    f.chain.produce_block();
    let after = (stake(&f.chain), balance(&f.chain));
    let settlements = f.chain.settlements();
    assert_eq!(settlements.len(), 1, "{settlements:?}");
    let events = crate::sim::comet::CometBackend::finalize_block_events(&f.chain, w.settlement);
    let settled = events
        .iter()
        .find(|e| e.kind == crate::chain::settlement::CLAIM_SETTLED)
        .expect("a settled claim");
    let attribute = |key: &str| {
        settled
            .attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    (
        settlements[0].2.clone(),
        [before.0, after.0],
        [before.1, after.1],
        [attribute("claimed_upokt"), attribute("settled_upokt")],
    )
}

/// 3 relays of 10 compute units at a target 65 536 times the base difficulty are worth 30 × 42 × 65 536 ≈ 82.6M
/// uPOKT; the app's budget for its one supplier in its one pending session is its whole stake, 1e6 in stake
/// terms, so 1e6 / 1.1 = 909 090 uPOKT of settlement (the default inflation of 0.1 counts against the stake).
#[tokio::test]
async fn a_claim_above_the_app_budget_is_settled_at_the_budget() {
    let f = fixture_with_target(2).await;
    let (outcome, stake, balance, [claimed, settled]) = claim_and_settle(&f, 3).await;
    assert_eq!(outcome, Settlement::Settled(909_090));
    assert_eq!(settled, "\"909090upokt\"");
    let claimed: u128 = claimed.trim_matches('"').trim_end_matches("upokt").parse().unwrap();
    assert!(claimed > 80_000_000, "{claimed}");
    assert_eq!(stake, [1_000_000, 1_000_000 - 909_090]);
    // 0.7 × 909 090 + 0.7 × ceil(0.1 × 909 090) = 636 363 + 63 636.
    assert_eq!(balance[1] - balance[0], 699_999);
    // Reported as poktroll does: what the claim asked of the stake (its worth plus inflation, rounded up) and
    // what the stake could give (the budget, 1e6).
    let events = crate::sim::comet::CometBackend::finalize_block_events(&f.chain, windows(&f).settlement);
    let (block, errors) = crate::chain::settlement::BlockSettlements::read(&events);
    assert_eq!(errors, vec![]);
    assert_eq!(block.overserviced.len(), 1, "{block:?}");
    let o = &block.overserviced[0];
    assert!(o.is_for(
        &f.supplier_address,
        &f.header.application_address,
        "anvil",
        f.header.session_end_block_height
    ));
    assert_eq!(o.expected_burn, claimed + claimed.div_ceil(10));
    assert_eq!(o.effective_burn, 1_000_000);
    assert_eq!(block.claims[0].settled_upokt, Some(909_090));
}

/// 3 relays at the base difficulty are worth 3 × 10 × 42 = 1 260 uPOKT, well within the budget: paid in full.
#[tokio::test]
async fn a_claim_under_the_app_budget_is_paid_in_full() {
    let f = fixture_with_target(0).await;
    let (outcome, stake, balance, [claimed, settled]) = claim_and_settle(&f, 3).await;
    assert_eq!(outcome, Settlement::Settled(1_260));
    assert_eq!((claimed.as_str(), settled.as_str()), ("\"1260upokt\"", "\"1260upokt\""));
    assert_eq!(stake, [1_000_000, 1_000_000 - 1_260]);
    // 0.7 × 1 260 + 0.7 × 126 = 882 + 88.
    assert_eq!(balance[1] - balance[0], 970);
    let events = crate::sim::comet::CometBackend::finalize_block_events(&f.chain, windows(&f).settlement);
    assert!(
        crate::chain::settlement::BlockSettlements::read(&events)
            .0
            .overserviced
            .is_empty()
    );
}

/// The `discard_settlements` knob: the claim's settlement fails as poktroll's `discardFaultyClaim` reports it
/// (`EventClaimDiscarded` with the error), the claim leaves the state, nothing is burnt, paid or slashed.
#[tokio::test]
async fn a_discarded_settlement_pays_nothing_and_reports_the_error() {
    let f = fixture_with_target(0).await;
    let mut trie = trie_with(&f, 3, 10);
    let w = windows(&f);
    advance_to(&f.chain, w.claim_open - 1);
    let rejected = rejection_in_block(&f, claim_msg(&f, &f.header, &trie.root()), &f.supplier).await;
    assert_eq!(rejected, None);
    advance_to(&f.chain, w.settlement - 1);
    f.chain.state().discard_settlements = 1;
    let app = f.header.application_address.clone();
    let holdings = |c: &SimChain| {
        let s = c.state();
        (
            s.applications[&app].stake.clone(),
            s.accounts[&f.supplier_address].balance,
            s.suppliers[&f.supplier_address].stake.clone(),
        )
    };
    let before = holdings(&f.chain);
    f.chain.produce_block();
    assert_eq!(holdings(&f.chain), before, "nothing burnt, paid or slashed");
    assert!(
        matches!(&f.chain.settlements()[..], [(_, _, Settlement::Discarded(e))] if e.contains("failed")),
        "{:?}",
        f.chain.settlements()
    );
    assert_eq!(f.chain.state().discard_settlements, 0, "one claim discarded");
    let events = crate::sim::comet::CometBackend::finalize_block_events(&f.chain, w.settlement);
    let (block, errors) = crate::chain::settlement::BlockSettlements::read(&events);
    assert_eq!(errors, vec![]);
    assert!(block.slashed.is_empty() && block.overserviced.is_empty(), "{block:?}");
    let [claim] = &block.claims[..] else {
        panic!("{block:?}")
    };
    assert!(claim.is_for(&f.supplier_address, &app, "anvil", f.header.session_end_block_height));
    assert!(
        matches!(&claim.outcome, crate::chain::settlement::SettlementOutcome::Discarded { error } if error.contains("failed")),
        "{claim:?}"
    );
}
