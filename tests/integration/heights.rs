//! Values that change over heights, as on chain (poktroll v0.1.35, spec §3–§6), over real sockets: the simulator
//! keeps their history and judges claims and proofs at the heights the chain does, `relay-miner run` serves and
//! claims. A service's compute units per relay and its difficulty changed in the middle of a session are claimed
//! and proven with the session-start values (the live ones would refuse the claim, or prove a relay below the
//! target); proof params changed after a session ended decide its proof requirement as the chain's (live at the
//! proof window), while an earlier session keeps its own answer.
//!
//! The chain is driven block by block: each block is produced once the miner handled the one before
//! ([`blocks_to`]), so no step depends on how fast a loaded machine runs.

use std::time::{Duration, Instant};

use relay_miner::loadgen::Outcome;
use relay_miner::protocol::difficulty::BASE_TARGET;
use relay_miner::protocol::session::SessionWindows;
use relay_miner::protocol::wire;
use relay_miner::sim::chain::Settlement;

use crate::support::claims::{Proofs, Served, assert_claims, claimed_counts, claimed_roots};
use crate::support::node::{MinerProcess, Net, NetOpts, spawn_miner, start_net, wait_up};
use crate::support::{http_get, metric_sum, scrape};

const SERVICE: &str = "anvil";

/// Produces blocks up to `height`, each once the miner handled the one before (its height gauge is set after the
/// block's submissions left).
async fn blocks_to(net: &Net, height: i64) {
    while net.chain.height() < height {
        let h = net.chain.produce_block();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = http_get(&net.metrics_url).await.unwrap_or_default();
            if metric_sum(&metrics, "ha_miner_current_block_height", &[]) >= h as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the miner did not handle block {h} within 30 s (records {:?})",
                net.chain.records()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends relays at the current height until every (supplier, application) pair of the session was served at
/// least `per_pair` times; every relay must be served.
async fn serve(net: &Net, n: &mut u64, per_pair: u64) -> Served {
    let pairs = {
        let state = net.chain.state();
        state.genesis.applications.len() * state.genesis.suppliers.len()
    };
    let height = net.chain.height();
    let mut served = Served::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.len() < pairs || served.values().any(|c| *c < per_pair) {
        assert!(Instant::now() < deadline, "load not served within 60 s: {served:?}");
        *n += 1;
        match net.loadgen.send(*n, height).await {
            Outcome::Served {
                supplier, session_id, ..
            } => *served.entry((supplier, session_id)).or_default() += 1,
            other => panic!("relay {n} at height {height} not served: {other:?}"),
        }
    }
    assert_eq!(net.chain.height(), height, "only the test produces blocks");
    served
}

/// The windows of the session after the one of the current height.
fn next_session(net: &Net) -> SessionWindows {
    let params = net.chain.state().shared.clone();
    let current = SessionWindows::new(&params, net.chain.height()).unwrap();
    SessionWindows::new(&params, current.end + 1).unwrap()
}

/// The uPOKT a claim of `compute_units` is worth at `target` with the demo genesis's shared params (§6.3.1).
fn upokt(net: &Net, compute_units: u64, target: &[u8]) -> u128 {
    use num_traits::ToPrimitive as _;
    let params = net.chain.state().shared.clone();
    relay_miner::protocol::lottery::claimed_upokt(
        compute_units,
        target,
        params.compute_units_to_tokens_multiplier,
        params.compute_unit_cost_granularity,
    )
    .unwrap()
    .to_u128()
    .unwrap()
}

/// The settlement reward of every settled (supplier, session); panics on an expired or discarded one.
fn rewards(net: &Net) -> std::collections::BTreeMap<(String, String), u128> {
    net.chain
        .settlements()
        .into_iter()
        .map(|(session, supplier, outcome)| match outcome {
            Settlement::Settled(v) => ((supplier, session), v),
            Settlement::Expired(reason) => panic!("{supplier} {session} expired: {reason}"),
            Settlement::Discarded(error) => panic!("{supplier} {session} discarded: {error}"),
        })
        .collect()
}

/// A demo network whose blocks the test produces (200 ms block time otherwise) and its miner, up.
async fn manual_net() -> (Net, MinerProcess) {
    let net = start_net(NetOpts {
        manual_blocks: true,
        ..NetOpts::blocks_every(200)
    })
    .await;
    let miner = spawn_miner(&net.config);
    wait_up(&net).await;
    (net, miner)
}

/// The service's compute units per relay change in the second block of a session (its owner's `MsgAddService`):
/// `Service` answers the new value at once, `ComputeUnitsPerRelayAtHeight(start)` the old one. Every relay of the
/// session is weighted with the old one, so each claim is `count × old` and the chain (which checks that) accepts
/// it and settles it at the old worth. Weighting with the live value would have the whole claim refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_units_changed_mid_session_are_claimed_at_the_session_start_value() {
    let (net, mut miner) = manual_net().await;
    let before = net.chain.state().services[SERVICE].compute_units_per_relay;
    let after = before * 3;
    let session = next_session(&net);
    blocks_to(&net, session.start).await;
    net.chain.set_compute_units_per_relay(SERVICE, after).unwrap();
    blocks_to(&net, session.start + 1).await;
    assert!(session.start < session.end, "the change is inside the session");
    assert_eq!(net.chain.state().services[SERVICE].compute_units_per_relay, after);
    assert_eq!(net.chain.state().compute_units_at(SERVICE, session.start), Some(before));
    assert_eq!(
        net.chain.state().compute_units_at(SERVICE, session.end + 1),
        Some(after)
    );

    // Every relay is served after the change (none warmed a cache with the value from before).
    let mut n = 0;
    let served = serve(&net, &mut n, 3).await;
    blocks_to(&net, session.settlement).await;
    miner.kill().unwrap();
    miner.wait().unwrap();

    assert_claims(&net.chain, &served, 0, Proofs::None);
    let sums = claimed_roots(&net.chain);
    let rewards = rewards(&net);
    for (key, (sum, count)) in &sums {
        assert_eq!(
            *sum,
            count * before,
            "{key:?}: claimed with another weight than the session start's"
        );
        assert_eq!(
            rewards[key],
            upokt(&net, count * before, &BASE_TARGET),
            "{key:?}: reward"
        );
    }
    assert_eq!(sums.len(), served.len());
}

/// The service's difficulty target is 0x7f… from a session's start and changes back to the base target in its
/// second block (live at once, effective in the history from the next session). The relays of the session are
/// mined against the session-start 0x7f… target (about half are below it and skipped), so every relay in a claim
/// meets the target the chain checks a proof against, and every required proof is valid. Mining against the live
/// target would claim every relay and prove ones the chain refuses (an invalid proof: the claim expires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_difficulty_changed_mid_session_mines_against_the_session_start_target() {
    let net = start_net(NetOpts {
        manual_blocks: true,
        proof_probability: 1.0,
        ..NetOpts::blocks_every(200)
    })
    .await;
    let mut miner = spawn_miner(&net.config);
    wait_up(&net).await;
    let mut harder = BASE_TARGET;
    harder[0] = 0x7f;
    // Effective from the next session's start.
    net.chain.set_relay_mining_difficulty(SERVICE, harder).unwrap();
    blocks_to(&net, net.chain.height() + 1).await;
    let effective = *net.chain.state().difficulty_history[SERVICE].keys().last().unwrap();
    let session = SessionWindows::new(&net.chain.state().shared.clone(), effective).unwrap();
    assert_eq!(session.start, effective);
    blocks_to(&net, session.start).await;
    net.chain.set_relay_mining_difficulty(SERVICE, BASE_TARGET).unwrap();
    blocks_to(&net, session.start + 1).await;
    assert_eq!(net.chain.state().targets[SERVICE], BASE_TARGET.to_vec(), "live target");
    assert_eq!(
        net.chain.state().target_at(SERVICE, session.start),
        Some(harder.to_vec())
    );
    assert_eq!(
        net.client.difficulty_target_at(SERVICE, session.start).await.unwrap(),
        harder.to_vec()
    );

    let mut n = 0;
    let served = serve(&net, &mut n, 8).await;
    let total: u64 = served.values().sum();
    blocks_to(&net, session.settlement).await;
    let metrics = scrape(&net.metrics_url).await;
    miner.kill().unwrap();
    miner.wait().unwrap();

    let records = net.chain.records();
    let rejected: Vec<_> = records.iter().filter(|r| r.rejected.is_some()).collect();
    assert!(rejected.is_empty(), "simulator rejected: {rejected:?}");
    let skipped = metric_sum(&metrics, "ha_relayer_relays_skipped_difficulty_total", &[]) as u64;
    assert!(skipped > 0, "no relay of {total} was below the session-start target");
    let claimed = claimed_counts(&net.chain);
    assert_eq!(
        claimed.values().sum::<u64>() + skipped,
        total,
        "claimed {claimed:?} + skipped {skipped} != served {served:?}"
    );
    let rewards = rewards(&net);
    for (key, count) in &claimed {
        let proofs = records
            .iter()
            .filter(|r| r.kind == "proof" && r.supplier == key.0 && r.session_id == key.1)
            .count();
        assert_eq!(proofs, 1, "{key:?}: every claim needs a proof (probability 1)");
        let proof_status = net.chain.state().settled[&(key.1.clone(), key.0.clone())]
            .claim
            .proof_validation_status;
        assert_eq!(proof_status, wire::ClaimProofStatus::Validated as i32, "{key:?}");
        let per_relay = net.chain.state().compute_units_at(SERVICE, session.start).unwrap();
        assert_eq!(rewards[key], upokt(&net, count * per_relay, &harder), "{key:?}: reward");
    }
    assert_eq!(rewards.len(), claimed.len(), "every claimed session settles");
}

/// Proof params change after a session ended (and after the session before it was decided): the proof
/// requirement threshold drops between the two sessions' worth. The chain keeps no history of proof params: it
/// decides with the live ones at the proof window and again at settlement. The second session's claims now need
/// a proof and get one; the first session's, still below the threshold, need none and get none. A miner deciding
/// with the params it saw before (e.g. cached from the first session) would send no proof: the claims expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_params_changed_after_a_session_ended_decide_its_proof_requirement() {
    let (net, mut miner) = manual_net().await;
    let per_relay = net.chain.state().services[SERVICE].compute_units_per_relay;
    let first = next_session(&net);
    blocks_to(&net, first.start).await;
    let mut n = 0;
    let served_first = serve(&net, &mut n, 1).await;
    let most = *served_first.values().max().unwrap();
    let second = SessionWindows::new(&net.chain.state().shared.clone(), first.end + 1).unwrap();
    blocks_to(&net, second.start).await;
    let served_second = serve(&net, &mut n, most + 1).await;
    // The first session's requirement is decided (its proof window is open) and the second's claims are on chain
    // before the change, which lands in the second session's seed block.
    assert!(first.proof_open < second.proof_seed_height());
    blocks_to(&net, second.proof_seed_height() - 1).await;
    let threshold = upokt(&net, (most + 1) * per_relay, &BASE_TARGET);
    let mut params = net.chain.state().proof.clone();
    params.proof_requirement_threshold = Some(wire::Coin {
        denom: "upokt".into(),
        amount: threshold.to_string(),
    });
    net.chain.set_proof_params(params);
    blocks_to(&net, second.settlement).await;
    miner.kill().unwrap();
    miner.wait().unwrap();

    let records = net.chain.records();
    let rejected: Vec<_> = records.iter().filter(|r| r.rejected.is_some()).collect();
    assert!(rejected.is_empty(), "simulator rejected: {rejected:?}");
    let proofs_of = |served: &Served| -> Vec<usize> {
        served
            .keys()
            .map(|(supplier, session)| {
                records
                    .iter()
                    .filter(|r| r.kind == "proof" && &r.supplier == supplier && &r.session_id == session)
                    .count()
            })
            .collect()
    };
    assert!(proofs_of(&served_first).iter().all(|p| *p == 0), "{records:?}");
    assert!(proofs_of(&served_second).iter().all(|p| *p == 1), "{records:?}");
    let mut served = served_first.clone();
    served.extend(served_second.clone());
    // Every served relay claimed, and every claim settled (none expired for a missing proof) at its whole worth.
    let claimed = claimed_counts(&net.chain);
    assert_eq!(claimed, served, "claimed relays per (supplier, session)");
    let rewards = rewards(&net);
    assert_eq!(rewards.len(), claimed.len(), "every claimed session settles");
    for (key, count) in &claimed {
        assert_eq!(
            rewards[key],
            upokt(&net, count * per_relay, &BASE_TARGET),
            "{key:?}: reward"
        );
    }
}
