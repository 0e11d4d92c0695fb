//! Relays that reach the miner late: after the claim was built (kept out of the claimed trie, counted once), or
//! at `claim_open` within the claim delay (in the claim).

use super::*;

/// A relay that reaches the miner after its session's claim was built (validated in the grace period and
/// appended only when the backend answered, or from a relayer whose height lags) stays out of the claimed
/// trie, which proofs are built from: its root stays the root on chain. The late relay is still counted once
/// (`relays_after_claim`), and a redelivered relay the claim already holds is not counted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_after_the_claim_stays_out_of_the_claimed_trie_so_its_root_stays_the_one_on_chain() {
    let Claimed {
        f,
        mut miner,
        plain,
        telemetry,
        on_chain,
        ..
    } = claimed(genesis()).await;
    let Fixture {
        chain,
        supplier,
        header,
        key,
        ..
    } = f;

    // A late relay, and a redelivery of a relay the claim holds.
    plain.relay_log.append(relays(&supplier, &header, 5..6)).await.unwrap();
    plain.relay_log.append(relays(&supplier, &header, 2..3)).await.unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&supplier).await.unwrap(), Backlog::default());
    let open = miner.tries.get_mut(&key).unwrap();
    assert_eq!(open.trie.count(), 5);
    assert_eq!(
        open.trie.root().to_vec(),
        on_chain.root_hash,
        "the claimed trie is the claim on chain"
    );
    assert_eq!(open.late.as_ref().map(|l| l.count()), Some(1));
    assert_eq!(miner.engine.session(&key).unwrap().relays, 6);

    // The next lookup confirms the claim: what it does not cover is recorded once, as relays_after_claim.
    for _ in 0..3 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let text = telemetry.render_metrics();
    let lost = |name: &str| counter(&text, name, "relays_after_claim");
    assert_eq!(lost("ha_miner_relays_lost_total"), Some(1));
    assert_eq!(lost("ha_miner_compute_units_lost_total"), Some(10));
    // What the claim pays for is its root: 5 relays of 10 compute units, not the 6 relays the trie reached.
    let (service, end) = {
        let r = miner.engine.session(&key).unwrap();
        (r.service_id.clone(), r.schedule.session_end)
    };
    let claim_value = miner.upokt(&service, end, 50).await.unwrap();
    assert_ne!(Some(claim_value), miner.upokt(&service, end, 60).await);
    let claimed = text
        .lines()
        .find(|l| l.starts_with("ha_miner_upokt_claimed_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(claimed, Some(claim_value), "uPOKT claimed is the root's value");

    // After a restart both tries reopen from storage as they were.
    let store = plain.tries.open(&supplier, &key.session_id).await.unwrap();
    let mut claimed = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    assert_eq!(claimed.root().to_vec(), on_chain.root_hash);
    let late_ns = super::super::ingest::late_namespace(&key.session_id);
    let store = plain.tries.open(&supplier, &late_ns).await.unwrap();
    let late = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    assert_eq!((late.count(), late.sum()), (1, 10));
}

/// With the default claim delay (one block) a relay accepted just before `claim_open` that reaches the log only
/// at `claim_open` (a relayer a block behind, a slow backend) is in the claim: the claim goes out a block
/// later, from a trie that holds it, and nothing is recorded lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_relay_appended_at_claim_open_is_in_the_claim_sent_after_the_delay() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(
        f.client.clone(),
        plain.clone(),
        f.keyring.clone(),
        MinerConfig {
            engine: Default::default(),
            ..config("a")
        },
    );
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at, Vec::<i64>::new());
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..6))
        .await
        .unwrap();
    f.chain.produce_block();
    assert_eq!(f.chain.height(), schedule.claim_open + 1);
    miner.step().await.unwrap();
    f.chain.produce_block();
    let claim = f.client.claim_at(&f.key.session_id, &f.supplier, None).await.unwrap();
    let claim = claim.unwrap_or_else(|| panic!("no claim on chain: {:?}", f.chain.records()));
    let (_, count) = crate::smst::hash::root_sum_count(&claim.root_hash).unwrap();
    assert_eq!(count, 6, "the grace relay is in the claim");
    let open = miner.tries.get_mut(&f.key).unwrap();
    assert!(open.late.is_none(), "nothing went to the late trie");
}
