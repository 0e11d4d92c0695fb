//! The freeze read (module `ingest`, `Miner::freeze_read`): the claimed trie freezes at a point in the relay
//! log, read right before the claims a block decided are built.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// The chain is already at the claim's block when the leader's iteration runs: its round reads the supplier's
/// log (nothing new), then a relayer whose check passed a block earlier lands relay 5 and acknowledges it to its
/// gateway, then the block's step decides the claim. Before the freeze read the claim was built from the trie
/// as the round left it: relay 5 went to the late trie, served and never paid. Now it is in the claim. A relay
/// appended after the freeze read (relay 6, right after that read) is late: kept out of the claimed trie,
/// counted once (`relays_late`, then `relays_after_claim` when the claim is confirmed), never silently lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_landing_at_the_claims_block_before_the_freeze_read_is_in_the_claim() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until(&f, &plain, &mut miner, |s| s.claim_open - 1).await;
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    // The claim's block (claim delay 0 in these tests: its first send height is `claim_open`).
    f.chain.produce_block();
    assert_eq!(f.chain.height(), schedule.claim_open);

    // Relay 5 lands right after the iteration's first read of new entries, relay 6 right after the second.
    let reads = Arc::new(AtomicUsize::new(0));
    let (supplier, header) = (f.supplier.clone(), f.header.clone());
    let counted = Arc::clone(&reads);
    let appends = AfterRead::appending(move || match counted.fetch_add(1, Ordering::SeqCst) {
        0 => relays(&supplier, &header, 5..6),
        1 => relays(&supplier, &header, 6..7),
        _ => Vec::new(),
    });
    hook_relay_log(&mut miner, Some(appends));
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&f.key).unwrap().claim_sent_at,
        vec![schedule.claim_open],
        "claim sent at its block"
    );
    f.chain.produce_block();
    let claim = f.client.claim_at(&f.key.session_id, &f.supplier, None).await.unwrap();
    let claim = claim.unwrap_or_else(|| panic!("no claim on chain: {:?}", f.chain.records()));
    assert_eq!(
        crate::smst::hash::root_sum_count(&claim.root_hash),
        Some((60, 6)),
        "relay 5, appended before the freeze read, is in the claim; relay 6 is not"
    );
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "the round's read, then the freeze read"
    );

    // Relay 6 is ingested next, into the late trie, counted once and, at the claim's confirmation, lost.
    for _ in 0..3 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    let open = miner.tries.get_mut(&f.key).unwrap();
    assert_eq!(open.trie.count(), 6);
    assert_eq!(open.late.as_ref().map(|l| (l.count(), l.sum())), Some((1, 10)));
    assert_eq!(miner.stats().relays_late.load(Ordering::SeqCst), 1);
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 7);
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "relays_after_claim"),
        Some(1),
        "{text}"
    );
}
