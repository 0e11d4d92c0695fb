//! The relay meter against the application's on-chain budget, over real sockets with the harness of
//! [`crate::relayer`]: an app's `per_session_spend_limit` caps what an eager service serves however large its
//! stake, at what poktroll's settlement pays for it (net of the global inflation per claim it counts against the
//! app); a relay is refused while the inflation cannot be read; and in optimistic mode a relay already served that
//! the meter finds over budget is still mined (the work is done; the chain caps the claim), counted as
//! `over_serviced_mined`.

use relay_miner::protocol::wire::Coin;
use relay_miner::protocol::wire::method::TOKENOMICS_PARAMS;
use relay_miner::sim::chain::tokenomics;

use crate::relayer::{ChainFault, Net, error_code, eventually, metric, served_status};

/// Sets the simulated application's `per_session_spend_limit` (uPOKT) and makes the relayer's chain client read
/// it at the next validation.
fn set_spend_limit(net: &Net, upokt: u64) {
    net.chain
        .state()
        .applications
        .get_mut(&net.app.1)
        .unwrap()
        .per_session_spend_limit = Some(Coin {
        denom: "upokt".into(),
        amount: upokt.to_string(),
    });
    net.advance(0);
}

/// What the simulated chain settles at most for one of the 2 suppliers of a session of the app (uPOKT): its share
/// of the session budget (stake over pending sessions, capped by the spend limit), net of the global inflation.
fn chain_settlement_cap(net: &Net) -> u128 {
    let s = net.chain.state();
    let app = &s.applications[&net.app.1];
    let stake = app.stake.as_ref().unwrap().amount.parse::<u128>().unwrap();
    let limit = app
        .per_session_spend_limit
        .as_ref()
        .map(|c| c.amount.parse::<u128>().unwrap());
    let pending = tokenomics::num_pending_sessions(&s.shared);
    let (floor, _) = tokenomics::session_floor(stake, pending, 2, limit);
    tokenomics::settled_amount(u128::MAX, floor, &s.tokenomics).0
}

/// Stake 1e9 uPOKT (about 3M compute units per supplier and session), limit 2,520 uPOKT per session: 1,260 per
/// supplier (2 in the session), which the chain settles for at most 1,260 / 1.1 = 1,145 (the default inflation
/// 0.1 is counted against it); 42 uPOKT per compute unit → 27 compute units → 2 relays of 10. The third relay (a
/// 1,260 uPOKT claim, inside the share but over the settlement cap) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spend_limit_caps_what_an_eager_service_serves() {
    let net = Net::new(1_000_000_000).await;
    set_spend_limit(&net, 2_520);
    let cap = chain_settlement_cap(&net);
    assert_eq!(cap, 1_145);
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    for id in 0..2 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!((status, served_status(&net, &response)), (200, 200));
    }
    // Served: 2 relays × 10 CU × 42 uPOKT = 840 ≤ cap; one more would claim 1,260 > cap.
    assert!((2 * 10 * 42..3 * 10 * 42).contains(&cap));
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(
        (status, error_code(&response)),
        (429, Some(10)),
        "over-serviced past what the chain settles"
    );
    assert_eq!(net.recorded().await, 2);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relay_meter_consumptions_total{result=\"over_serviced\",service_id=\"anvil\"}"
        ),
        1
    );
}

/// Optimistic mode: the limit is lowered (from 31 to 9 compute units) after two relays were charged; the meter's
/// local view still has the old budget, which the next relay fits, so it is served first, and its settlement
/// finds it over the new budget. It is mined anyway and counted as over-serviced-but-mined; the relay after it is
/// refused before serving (the meter now knows the session is exhausted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimistic_relay_found_over_budget_is_mined() {
    let net = Net::new(1_000_000_000).await;
    // 2,940 uPOKT per session → 1,470 per supplier → 1,336 net of inflation → 31 compute units: 3 relays fit.
    set_spend_limit(&net, 2_940);
    let r = net.relayer().await;
    let header = net.header("lazy").await;
    let served_first = "ha_relayer_relays_served_optimistically_total{rpc_type=\"jsonrpc\",service_id=\"lazy\"}";
    let over_mined = "ha_relayer_relay_meter_consumptions_total{result=\"over_serviced_mined\",service_id=\"lazy\"}";
    let dropped = "ha_relayer_relays_dropped_total{reason=\"over_serviced\",service_id=\"lazy\"}";
    // The session's first relay goes the eager way (and records the session), the second is served first.
    for id in 0..2 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!((status, served_status(&net, &response)), (200, 200));
    }
    assert_eq!(metric(&r.telemetry, served_first), 1);
    eventually("the relay served first to be recorded", || async {
        net.recorded().await == 2
    })
    .await;

    // 840 uPOKT per session → 420 per supplier → 381 net of inflation → 9 compute units, 20 already consumed.
    set_spend_limit(&net, 840);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    assert_eq!(metric(&r.telemetry, served_first), 2);
    eventually("the over-budget relay to be settled", || async {
        metric(&r.telemetry, over_mined) + metric(&r.telemetry, dropped) > 0
    })
    .await;
    assert_eq!(metric(&r.telemetry, dropped), 0, "served work dropped");
    eventually("the over-budget relay to be recorded", || async {
        net.recorded().await == 3
    })
    .await;
    assert_eq!(metric(&r.telemetry, over_mined), 1);

    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(3))).await;
    assert_eq!((status, error_code(&response)), (429, Some(10)));
    assert_eq!(net.recorded().await, 3);
}

/// The meter's budget needs the tokenomics `global_inflation_per_claim`: while the chain cannot answer it (and the
/// relayer holds no earlier answer), a relay is refused as `chain_unavailable` (7, HTTP 503) before the backend
/// works, never metered without the inflation; once the chain answers, it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_is_refused_while_the_inflation_cannot_be_read() {
    let net = Net::new(1_000_000_000).await;
    net.chain_tap
        .set_fault(TOKENOMICS_PARAMS, Some(ChainFault::Unavailable));
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(0))).await;
    assert_eq!((status, error_code(&response)), (503, Some(7)), "{response:?}");
    assert_eq!(net.recorded().await, 0);
    assert!(net.chain_tap.calls(TOKENOMICS_PARAMS) > 0);

    net.chain_tap.set_fault(TOKENOMICS_PARAMS, None);
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, served_status(&net, &response)), (200, 200));
    assert_eq!(net.recorded().await, 1);
}

/// Optimistic mode refuses before serving a relay the meter already knows the session cannot pay for, costed at
/// the session's compute units (10 per relay, cached since its first relay), not at one. The limit leaves 27
/// compute units: two relays (20) fit, a third (30) does not. Before, the check before serving took one compute
/// unit (21 ≤ 27): the third relay was served and mined past the budget, work the chain does not pay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_mode_refuses_before_serving_a_relay_over_the_budget_at_its_compute_units() {
    let net = Net::new(1_000_000_000).await;
    set_spend_limit(&net, 2_520);
    let r = net.relayer().await;
    let header = net.header("lazy").await;
    let served_first = "ha_relayer_relays_served_optimistically_total{rpc_type=\"jsonrpc\",service_id=\"lazy\"}";
    // The session's first relay goes the eager way (and records the session), the second is served first.
    for id in 0..2 {
        let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(id))).await;
        assert_eq!((status, served_status(&net, &response)), (200, 200));
    }
    assert_eq!(metric(&r.telemetry, served_first), 1);
    // Charged when it was settled, before it was appended.
    eventually("the relay served first to be recorded", || async {
        net.recorded().await == 2
    })
    .await;

    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(
        (status, error_code(&response)),
        (429, Some(10)),
        "refused before serving: {response:?}"
    );
    assert_eq!(metric(&r.telemetry, served_first), 1);
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relay_meter_consumptions_total{result=\"over_serviced_mined\",service_id=\"lazy\"}"
        ),
        0
    );
    assert_eq!(net.recorded().await, 2);
}
