//! A kept proof tx only some of whose sessions went stale (module `submit::recheck`): its bytes are not sent
//! again, and only the sessions whose proof is still due get a new tx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::proof_funds::proof_sessions;
use super::*;
use crate::miner::lifecycle::TxKind;
use crate::protocol::wire;

/// The `MsgSubmitProof` of session `session_id` in the signed tx `bytes`.
fn proof_message_of(bytes: &[u8], session_id: &str) -> wire::Any {
    let raw = crate::chain::tx::TxRaw::decode(bytes).unwrap();
    let body = crate::chain::tx::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    body.messages
        .into_iter()
        .find(|m| {
            m.type_url == wire::MSG_SUBMIT_PROOF_TYPE_URL
                && wire::MsgSubmitProof::decode(m.value.as_slice())
                    .unwrap()
                    .session_header
                    .unwrap()
                    .session_id
                    == session_id
        })
        .unwrap()
}

/// Two sessions of one supplier, both proofs required (probability 1, threshold 0), go in one proof tx at
/// `proof_open`; its broadcast's answer is lost and the node did not take it (mempool full), so the tx is kept.
/// Before the next block one of its proofs lands in a tx of its own (as another instance's would): at that block
/// the kept tx is checked again, its bytes are not broadcast (they would pay again for the landed proof), the
/// landed session counts as sent, and exactly the other session's proof leaves in a new tx. Both claims are paid,
/// each proof on chain once, and no supplier tx fails in its block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_proof_tx_with_one_proof_landed_sends_only_the_other_again() {
    let f = fixture_on(proving_genesis(&["app2"])).await;
    // Chain calls time out after 500 ms: what ends a broadcast whose answer is lost.
    let client = Arc::new(ChainClient::new(f.client.grpc().url(), Duration::from_millis(500)).unwrap());
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let miner = Miner::new(client, plain.clone(), f.keyring.clone(), config("a"))
        .with_settlements_from(f.comet.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let (
        Leading {
            f, mut miner, schedule, ..
        },
        keys,
    ) = two_proofs_due(f, plain, telemetry, miner, [3, 3]).await;
    let chain = &f.chain;
    chain.produce_block();
    {
        let mut s = chain.state();
        s.lose_broadcast_answers = 1;
        s.mempool = vec![Vec::new(); crate::sim::chain::MAX_MEMPOOL_TXS];
    }
    miner.step().await.unwrap();
    chain.state().mempool.clear();
    let kept = miner.unknown_txs.get(TxKind::Proof, &keys[0]).unwrap().bytes.clone();
    assert_eq!(
        miner.unknown_txs.get(TxKind::Proof, &keys[1]).unwrap().bytes,
        kept,
        "one kept tx carries both proofs"
    );
    let mut carried = proof_sessions(&kept);
    carried.sort();
    let mut ids: Vec<String> = keys.iter().map(|k| k.session_id.clone()).collect();
    ids.sort();
    assert_eq!(carried, ids);

    // One of its proofs lands in a tx of its own.
    let (landed, due) = (&keys[0], &keys[1]);
    let (supplier_key, _, _) = actor(&key_hex("supplier")).unwrap();
    let account = f.client.account(&f.supplier).await.unwrap();
    let plan = crate::chain::tx::TxPlan {
        messages: vec![proof_message_of(&kept, &landed.session_id)],
        memo: String::new(),
        gas_limit: 1_000_000,
        fee_amount: 1_000,
        fee_denom: "upokt".into(),
        ordering: crate::chain::tx::Ordering::Ordered {
            sequence: account.sequence,
            timeout_height: 0,
        },
        chain_id: "pocket-fence".into(),
        account_number: account.account_number,
    };
    let other = crate::chain::tx::build_signed_tx(&supplier_key, &plan)
        .unwrap()
        .tx_bytes;
    assert!(
        matches!(chain.submit_tx(other), crate::sim::chain::Admission::Accepted),
        "the other tx is taken"
    );
    chain.produce_block();
    let validated = crate::protocol::wire::ClaimProofStatus::Validated as i32;
    let status = |key: &SessionKey| proof_status(chain, key);
    assert_eq!(status(landed), Some(validated), "{:?}", chain.records());
    assert_ne!(status(due), Some(validated));

    miner.step().await.unwrap();
    let sent: Vec<Vec<String>> = chain.state().mempool.iter().map(|tx| proof_sessions(tx)).collect();
    assert_eq!(
        sent,
        vec![vec![due.session_id.clone()]],
        "a new tx with the due proof alone; the kept bytes not broadcast again"
    );
    assert!(miner.unknown_txs.get(TxKind::Proof, landed).is_none(), "forgotten");
    assert_eq!(
        miner.engine.session(landed).unwrap().proof_sent_at.len(),
        1,
        "the landed proof counts as sent"
    );

    settle_with_no_failed_tx(chain, &mut miner, schedule.settlement).await;
    for key in [landed, due] {
        let proofs = chain
            .records()
            .into_iter()
            .filter(|r| r.kind == "proof" && r.session_id == key.session_id)
            .count();
        assert_eq!(proofs, 1, "{}: {:?}", key.session_id, chain.records());
        assert_eq!(status(key), Some(validated));
    }
    let settled = chain.settlements();
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert!(
        settled
            .iter()
            .all(|(_, _, s)| matches!(s, crate::sim::chain::Settlement::Settled(v) if *v > 0)),
        "{settled:?}"
    );
}
