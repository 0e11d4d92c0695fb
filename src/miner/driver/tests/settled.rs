//! What the chain paid (module `settled`), against the simulator over its gRPC and CometBFT RPC: three sessions
//! of one supplier settle in one block: one paid in full with its proof, one capped by its application's stake
//! (`EventApplicationOverserviced`) with its proof, one expired for a proof the chain required only at
//! settlement (`EventSupplierSlashed`). The settlement metrics equal what the simulator paid, each settlement
//! counted once, though the two proven sessions were pruned before the chain settled them. Across a restart and a
//! failover: module `settled_failover`.

use super::rebroadcast::stake_of;
use super::*;
use crate::miner::lifecycle::State;
use crate::sim::chain::Settlement;

/// The value of the series of `name` whose labels include every one of `labels` (`key="value"`), if any.
pub(super) fn series(text: &str, name: &str, labels: &[&str]) -> Option<u64> {
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|label| l.contains(label))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The settlement series of a rendering, to compare two renderings.
pub(super) fn settlement_series(text: &str) -> Vec<String> {
    let names = [
        "ha_miner_claims_settled_by_status_total",
        "ha_miner_relays_settled_by_status_total",
        "ha_miner_compute_units_settled",
        "ha_miner_upokt_earned_total",
        "ha_miner_upokt_settled_total",
        "ha_miner_claim_ceiling_exceeded",
        "ha_miner_supplier_slashed_total",
        "ha_miner_settlements_unread_total",
    ];
    text.lines()
        .filter(|l| names.iter().any(|n| l.starts_with(n)))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_are_counted_once_as_the_chain_paid_them() {
    let mut g = genesis();
    // 3 relays of 10 compute units are worth 3 × 10 × 42 = 1 260 uPOKT, 1 relay 420: a proof is required for
    // the first two sessions, not for the third (until the params change below).
    g.proof_params.proof_requirement_threshold_upokt = 1_000;
    let app = |label: &str, stake_upokt: u64| GenesisApplication {
        key_hex: key_hex(label),
        stake_upokt,
        services: vec!["anvil".into()],
        delegate_to: vec![0],
    };
    // `app2` can spend 1 000 uPOKT (in stake terms) on its one pending session: its 1 260 uPOKT claim is capped.
    g.applications.push(app("app2", 1_000));
    g.applications.push(app("app3", 1_000_000));
    let f = fixture_on(g).await;
    let header_of = |label: &'static str| {
        let client = f.client.clone();
        let height = f.chain.height();
        async move {
            let (_, address, _) = actor(&key_hex(label)).unwrap();
            client.session(&address, "anvil", height).await.unwrap().header.unwrap()
        }
    };
    let (paid, capped, expired) = (f.header.clone(), header_of("app2").await, header_of("app3").await);
    assert_eq!(capped.session_end_block_height, paid.session_end_block_height);
    let supplier = f.supplier.clone();
    let key = move |h: &SessionHeader| SessionKey {
        supplier: supplier.clone(),
        session_id: h.session_id.clone(),
    };
    let mut relays = signed_relays(&f, &paid, "app", 0..3, 100);
    relays.extend(signed_relays(&f, &capped, "app2", 0..3, 100));
    relays.extend(signed_relays(&f, &expired, "app3", 0..1, 100));
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = leading_with(f, MemoryBackend::new().storage(), relays).await;
    let stake_before = stake_of(&f.chain, &f.supplier);

    // Up to the block before the settlement's: both proofs validated, their sessions pruned (`Proved`).
    while f.chain.height() < schedule.proof_close - 1 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    for proven in [&paid, &capped] {
        assert!(miner.engine.session(&key(proven)).is_none(), "pruned before settlement");
        assert!(miner.engine.is_tombstoned(&key(proven)));
    }
    assert_eq!(miner.engine.session(&key(&expired)).unwrap().state, State::Settled);
    // Every claim now needs a proof, effective at the settlement block: too late for the third session's.
    let mut params = f.chain.state().proof.clone();
    params.proof_request_probability = 1.0;
    f.chain.set_proof_params(params);
    while f.chain.height() <= schedule.settlement + 2 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }

    // What the simulator did: paid 1 260, capped the second at 1 000 / 1.1 = 909, expired and slashed the third.
    let settled: std::collections::BTreeMap<String, Settlement> = f
        .chain
        .settlements()
        .into_iter()
        .map(|(session, supplier, outcome)| {
            assert_eq!(supplier, f.supplier);
            (session, outcome)
        })
        .collect();
    assert_eq!(settled[&paid.session_id], Settlement::Settled(1_260));
    assert_eq!(settled[&capped.session_id], Settlement::Settled(909));
    assert!(
        matches!(&settled[&expired.session_id], Settlement::Expired(r) if r == "required proof missing"),
        "{settled:?}"
    );
    let paid_total: u128 = settled
        .values()
        .map(|s| match s {
            Settlement::Settled(v) => *v,
            Settlement::Expired(_) | Settlement::Discarded(_) => 0,
        })
        .sum();
    assert_eq!(
        stake_before - stake_of(&f.chain, &f.supplier),
        320,
        "slashed by proof_missing_penalty"
    );

    // What the miner counted: exactly that.
    let text = telemetry.render_metrics();
    let supplier = format!("supplier=\"{}\"", f.supplier);
    let of = |name: &str, labels: &[&str]| {
        let mut all = vec![supplier.as_str(), "service_id=\"anvil\""];
        all.extend_from_slice(labels);
        series(&text, name, &all)
    };
    let proven = ["status=\"proven\""];
    let lost = ["status=\"expired\""];
    assert_eq!(
        of("ha_miner_upokt_settled_total", &[]),
        Some(u64::try_from(paid_total).unwrap()),
        "{text}"
    );
    // Earned: what the simulator credited the supplier (its shares of each settlement and of its inflation), not
    // what the application paid.
    let tokenomics = f.chain.state().tokenomics;
    let credited: u128 = settled
        .values()
        .map(|s| match s {
            Settlement::Settled(v) => crate::sim::chain::tokenomics::supplier_reward(*v, &tokenomics),
            Settlement::Expired(_) | Settlement::Discarded(_) => 0,
        })
        .sum();
    assert!(credited > 0 && credited != paid_total);
    assert_eq!(
        of("ha_miner_upokt_earned_total", &[]),
        Some(u64::try_from(credited).unwrap()),
        "{text}"
    );
    assert_eq!(
        of("ha_miner_claims_settled_by_status_total", &proven),
        Some(2),
        "{text}"
    );
    assert_eq!(of("ha_miner_claims_settled_by_status_total", &lost), Some(1), "{text}");
    assert_eq!(
        of("ha_miner_claims_settled_by_status_total", &["status=\"settled\""]),
        None
    );
    assert_eq!(of("ha_miner_relays_settled_by_status_total", &proven), Some(6));
    assert_eq!(of("ha_miner_relays_settled_by_status_total", &lost), Some(1));
    assert_eq!(of("ha_miner_compute_units_settled_by_status_total", &proven), Some(60));
    assert_eq!(of("ha_miner_compute_units_settled_by_status_total", &lost), Some(10));
    assert_eq!(of("ha_miner_compute_units_settled_total", &[]), Some(60));
    // The capped claim was worth 1 260 and settled for 909: 351 not paid (its stake terms, 1 386 asked of a
    // 1 000 budget, are the overserviced event's, not the supplier's loss).
    assert_eq!(of("ha_miner_claim_ceiling_exceeded_total", &[]), Some(1));
    assert_eq!(of("ha_miner_claim_ceiling_exceeded_upokt", &[]), Some(351));
    assert_eq!(of("ha_miner_supplier_slashed_total", &[]), Some(1));
    assert_eq!(series(&text, "ha_miner_settlements_unread_total", &[]), None, "{text}");
    // The loss metrics agree: the expired claim's relay is lost (the chain decided at settlement).
    assert_eq!(
        super::counter(&text, "ha_miner_relays_lost_total", "proof_window_missed"),
        Some(1),
        "{text}"
    );
}

/// A node that cannot answer `block_results` (here: it pruned the block): the session, decided "no proof
/// required", is held until its settlement is given up as unknown (module `lookup`: the node's own refusal, once
/// its read budget passed); then its settlement is tried for a few blocks more, given up and counted once as
/// unread, never as settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_settlement_block_is_given_up_and_counted_once() {
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = leading().await;
    // The node refuses the block for good (pruned: "height X is not available"); a node that does not answer,
    // or does not have the block yet, is waited for longer (`lookup::SETTLEMENT_LAG_BLOCKS`).
    f.chain.state().lowest_served_height = schedule.settlement + 1;
    let unread = |text: &str| series(text, "ha_miner_settlements_unread_total", &["reason=\"read_failed\""]);
    let mut given_up_at = None;
    let read_blocks = super::super::lookup::SETTLEMENT_READ_BLOCKS;
    while f.chain.height() <= schedule.settlement + 4 * read_blocks + 20 {
        f.chain.produce_block();
        // Failed reads fail the lookup's command (tried again at the next block), not the miner.
        let _ = miner.step().await;
        if given_up_at.is_none() && unread(&telemetry.render_metrics()).is_some() {
            given_up_at = Some(f.chain.height());
        }
    }
    assert!(miner.engine.is_tombstoned(&f.key), "pruned");
    let text = telemetry.render_metrics();
    assert_eq!(unread(&text), Some(1), "{text}");
    assert!(given_up_at.unwrap() > schedule.settlement + read_blocks);
    assert_eq!(
        series(&text, "ha_miner_settlement_unknown_total", &[]),
        Some(1),
        "{text}"
    );
    assert_eq!(
        series(&text, "ha_miner_claims_settled_by_status_total", &[]),
        None,
        "{text}"
    );
}

/// A claim whose settlement fails on chain (the simulator's `discard_settlements`: poktroll `discardFaultyClaim`,
/// `EventClaimDiscarded`) is counted `discarded`, paid nothing, and its relays lost as `settlement_discarded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_settlement_is_counted_discarded_and_not_paid() {
    let Leading {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = leading().await;
    f.chain.state().discard_settlements = 1;
    while f.chain.height() <= schedule.settlement + 2 {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    assert!(
        matches!(&f.chain.settlements()[..], [(_, _, Settlement::Discarded(_))]),
        "{:?}",
        f.chain.settlements()
    );
    let text = telemetry.render_metrics();
    let claims = |status: &str| {
        series(
            &text,
            "ha_miner_claims_settled_by_status_total",
            &[&format!("status=\"{status}\"")],
        )
    };
    assert_eq!(claims("discarded"), Some(1), "{text}");
    assert_eq!(claims("settled"), None, "{text}");
    for paid in ["ha_miner_upokt_settled_total", "ha_miner_upokt_earned_total"] {
        assert_eq!(series(&text, paid, &[]), None, "{text}");
    }
    assert_eq!(
        super::counter(&text, "ha_miner_relays_lost_total", "settlement_discarded"),
        Some(3),
        "{text}"
    );
    assert!(miner.engine.is_tombstoned(&f.key), "pruned");
}

/// A pruning node answers that an old block is not available: that fails the old block's read only, not a newer
/// block's in the same miner block (watches restored after a restart or a failover span several settlement
/// heights, and the oldest may be gone from the node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_block_a_pruning_node_no_longer_serves_does_not_fail_newer_reads() {
    let Leading { f, mut miner, .. } = leading().await;
    for _ in 0..3 {
        f.chain.produce_block();
    }
    let now = f.chain.height();
    f.chain.state().lowest_served_height = now - 1;
    let old = miner.read_settlements(now - 2).await.unwrap_err();
    assert!(old.to_string().contains("is not available, lowest height is"), "{old}");
    assert!(
        miner.read_settlements(now - 1).await.unwrap(),
        "the newer block is read"
    );
    assert!(miner.read_settlements(now).await.unwrap());
    assert!(
        miner.read_settlements(now - 2).await.is_err(),
        "the old block still fails"
    );
}
