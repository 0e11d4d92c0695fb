//! Txs within the node's size limit: messages split into txs, proofs over the limit in several txs, a proof
//! without its sibling data when that is what makes it fit, and relays too large to prove kept out of the trie.

use super::*;

/// Splitting by size keeps the messages' order and each tx, signed, within `max_tx_bytes`; a message too large
/// for any tx goes alone.
#[test]
fn messages_are_split_into_txs_within_the_size_limit() {
    use crate::chain::tx::{Ordering, Timestamp, TxPlan, build_signed_tx};
    let message = |n: usize, len: usize| {
        (
            n,
            crate::protocol::wire::Any {
                type_url: crate::protocol::wire::MSG_SUBMIT_PROOF_TYPE_URL.into(),
                value: vec![7; len],
            },
        )
    };
    let max = 10_000;
    let messages: Vec<_> = (0..7)
        .map(|n| message(n, 3_000))
        .chain([message(7, 20_000), message(8, 10)])
        .collect();
    let txs = super::super::submit::split_by_size(messages, max);
    let order: Vec<Vec<usize>> = txs.iter().map(|tx| tx.iter().map(|(n, _)| *n).collect()).collect();
    assert_eq!(order, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6], vec![7], vec![8]]);
    let key = k256::ecdsa::SigningKey::from_slice(&Sha256::digest(b"size")).unwrap();
    for tx in txs.iter().filter(|tx| tx[0].0 != 7) {
        let plan = TxPlan {
            messages: tx.iter().map(|(_, m)| m.clone()).collect(),
            memo: String::new(),
            gas_limit: u64::MAX,
            fee_amount: u128::from(u64::MAX),
            fee_denom: "upokt".into(),
            ordering: Ordering::unordered(
                Timestamp {
                    seconds: i64::from(u32::MAX),
                    nanos: 999_999_999,
                },
                600,
            ),
            chain_id: "pocket-lego-testnet".into(),
            account_number: u64::MAX,
        };
        let size = build_signed_tx(&key, &plan).unwrap().tx_bytes.len();
        assert!(size <= max, "a tx of {size} bytes");
    }
}

/// Proofs carry relay payloads: a supplier's proofs due together can exceed the node's largest tx (CometBFT
/// `mempool.max_tx_bytes`, refused at CheckTx with code 21). They go out in several txs within
/// `max_tx_bytes`, none refused, and every proof is validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_over_the_size_limit_go_out_in_several_txs_and_all_land() {
    const APPS: [&str; 4] = ["app", "app2", "app3", "app4"];
    // Relays with a 10,000-byte payload make proof txs of ~22 KB: two proofs fit a tx, three do not, and each
    // relay is under the limit less the proof overhead (`MAX_PROOF_OVERHEAD_BYTES`), so it is mined.
    const LIMIT: usize = 48_000;
    let f = fixture_on(proving_genesis(&APPS[1..])).await;
    f.chain.state().max_tx_bytes = LIMIT;
    let mut keys = Vec::new();
    let mut mined = Vec::new();
    for app in APPS {
        let (header, key) = app_session(&f, app).await;
        mined.extend(signed_relays(&f, &header, app, 0..2, 10_000));
        keys.push(key);
    }
    let cfg = MinerConfig {
        max_tx_bytes: LIMIT,
        ..config("a")
    };
    let mut t = leading_configured(f, cfg, mined, false).await;
    t.blocks_through(t.schedule.proof_close).await;
    let (f, telemetry) = (&t.f, &t.telemetry);
    for key in &keys {
        assert_proof_validated(f, key);
    }
    // (height, proofs in the tx, tx size) of every tx with proofs.
    let proof_txs: Vec<(i64, usize, usize)> = f
        .chain
        .state()
        .block_txs
        .iter()
        .flat_map(|(height, txs)| txs.iter().map(move |tx| (*height, tx)))
        .filter_map(|(height, tx)| {
            let raw = crate::chain::tx::TxRaw::decode(tx.as_slice()).unwrap();
            let body = crate::chain::tx::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
            let proofs = body
                .messages
                .iter()
                .filter(|m| m.type_url == crate::protocol::wire::MSG_SUBMIT_PROOF_TYPE_URL)
                .count();
            (proofs > 0).then_some((height, proofs, tx.len()))
        })
        .collect();
    assert!(proof_txs.len() > 1, "one tx for every proof: {proof_txs:?}");
    assert!(proof_txs.len() < keys.len(), "not one tx per proof: {proof_txs:?}");
    assert_eq!(
        proof_txs.iter().map(|t| t.1).sum::<usize>(),
        keys.len(),
        "each proof sent once"
    );
    assert!(proof_txs.iter().all(|t| t.2 <= LIMIT), "{proof_txs:?}");
    let text = telemetry.render_metrics();
    assert_eq!(counter(&text, "ha_miner_proof_errors_total", "refused"), None, "{text}");
}

/// Two relays each under the per-relay limit, side by side in the trie: a proof of either carries the other whole
/// as `SiblingData` (the sibling is a leaf), which would make a proof no node takes and the supplier slashed. The
/// proof message leaves `SiblingData` out exactly then; it still verifies as the chain verifies it (§5.4 step 17,
/// `SiblingData` checked only when present) and fits the tx. A small proof keeps it, as poktroll's prover sends it.
#[test]
fn a_proof_too_large_with_its_sibling_data_goes_without_it_and_still_verifies() {
    use prost::Message as _;
    let max_tx_bytes = 200 * 1024;
    let relay_limit = max_tx_bytes - crate::smst::MAX_PROOF_OVERHEAD_BYTES;
    let mut trie = crate::smst::Smst::new(storage::MemoryNodeStore::new());
    trie.insert_relay(&[1u8; 32], &vec![0xaa; relay_limit], 10);
    trie.insert_relay(&[2u8; 32], &vec![0xbb; relay_limit], 10);
    let root = trie.root();
    let proof = trie.prove_closest(&[0u8; 32]).unwrap();
    assert!(
        proof.sibling_data.as_ref().is_some_and(|s| s.len() > relay_limit),
        "the sibling is the other relay"
    );
    let message = super::super::submit::proof_message("pokt1sup", None, &proof, max_tx_bytes);
    assert!(
        message.encoded_len() + 512 <= max_tx_bytes,
        "{} bytes",
        message.encoded_len()
    );
    let sent = crate::protocol::wire::MsgSubmitProof::decode(message.value.as_slice()).unwrap();
    let verified = crate::smst::verify_compact_closest_proof(&sent.proof, &root).unwrap();
    assert_eq!(verified.sibling_data, None);
    assert_eq!(verified.closest_value_hash, proof.closest_value_hash);

    // Small relays: the proof goes as poktroll's prover makes it, SiblingData included.
    let mut small = crate::smst::Smst::new(storage::MemoryNodeStore::new());
    small.insert_relay(&[1u8; 32], b"one", 10);
    small.insert_relay(&[2u8; 32], b"two", 10);
    let root = small.root();
    let proof = small.prove_closest(&[0u8; 32]).unwrap();
    let message = super::super::submit::proof_message("pokt1sup", None, &proof, max_tx_bytes);
    let sent = crate::protocol::wire::MsgSubmitProof::decode(message.value.as_slice()).unwrap();
    let verified = crate::smst::verify_compact_closest_proof(&sent.proof, &root).unwrap();
    assert!(verified.sibling_data.is_some());
}

/// A relay whose proof would not fit a tx (`max_tx_bytes` less the proof's overhead) is not counted into the
/// trie: picked for the proof, it would make the claim unprovable (expired, slashed). It is acknowledged and
/// counted as `too_large_to_prove`; the session's other relays are claimed as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_too_large_to_prove_is_not_counted_into_the_trie() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = miner_proving_4k(&f, plain.clone(), &telemetry);
    miner.step().await.unwrap();
    let sized = |i: u64, len: usize| resized(relays(&f.supplier, &f.header, i..i + 1).remove(0), len, i as u8);
    plain
        .relay_log
        .append(vec![sized(1, 4096), sized(2, 4097), sized(3, 100)])
        .await
        .unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(
        miner.engine.session(&f.key).unwrap().relays,
        2,
        "the 4097-byte relay is out"
    );
    assert_eq!(
        miner.stats.relays_too_large.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_relays_rejected_total",
            "too_large_to_prove"
        ),
        Some(1)
    );
}
