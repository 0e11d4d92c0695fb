//! Storage that lost trie records the miner committed (a Redis failover the client did not see rolls back the
//! last trie batch and the ack after it): the relays are delivered again, and a session whose claimed trie is
//! frozen writes their leaves back unchanged, so its stored trie has the claim's root again (what a proof, or the
//! next leader, is built from).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_delivered_again_write_back_the_leaves_storage_lost_under_a_frozen_trie() {
    let Claimed {
        f,
        mut miner,
        plain,
        on_chain,
        ..
    } = claimed(genesis()).await;
    assert_eq!(stored_trie(&plain, &f.supplier, &f.key.session_id).await, (5, 50));

    // The rollback: the claimed trie's records are gone from storage, its relays are delivered again.
    plain
        .tries
        .delete_namespace(&f.supplier, &f.key.session_id)
        .await
        .unwrap();
    assert_eq!(stored_trie(&plain, &f.supplier, &f.key.session_id).await, (0, 0));
    deliver(&plain, &mut miner, relays(&f.supplier, &f.header, 0..5)).await;
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());

    // Written back as they were: the stored trie has the claim's root; nothing counted late or twice.
    let store = plain.tries.open(&f.supplier, &f.key.session_id).await.unwrap();
    let mut stored = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    assert_eq!((stored.count(), stored.sum()), (5, 50));
    assert_eq!(stored.root().to_vec(), on_chain.root_hash);
    let open = miner.tries.get_mut(&f.key).unwrap();
    assert_eq!(open.trie.root().to_vec(), on_chain.root_hash);
    assert!(open.late.as_ref().is_none_or(|l| l.count() == 0));
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
}
