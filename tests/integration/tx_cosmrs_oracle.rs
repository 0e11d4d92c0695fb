//! Golden oracle for ordered txs: the same inputs through cosmrs 0.22 (the reference Rust cosmos stack, pinned to
//! SDK 0.50 protos) give byte-identical `TxRaw` bytes. Unordered txs use SDK 0.53 fields cosmrs lacks, so they
//! are covered by unit tests in `chain::tx` instead.

use relay_miner::chain::tx::{Any, Ordering, TxPlan, build_signed_tx};

#[test]
fn ordered_tx_bytes_equal_cosmrs() {
    let secret = relay_miner::protocol::sha256(b"demo-supplier-key");
    let ours = k256::ecdsa::SigningKey::from_slice(&secret).unwrap();
    let theirs = cosmrs::crypto::secp256k1::SigningKey::from_slice(&secret).unwrap();

    for (sequence, account_number, gas, fee, memo, n_msgs) in [
        (0u64, 0u64, 1u64, 1u128, "", 1usize),
        (17, 42, 250_000, 425, "relay-miner claims", 3),
    ] {
        let msgs: Vec<(String, Vec<u8>)> = (0..n_msgs)
            .map(|i| {
                (
                    "/pocket.proof.MsgCreateClaim".to_string(),
                    vec![0x0a, 0x02, b'a', b'0' + i as u8],
                )
            })
            .collect();
        let plan = TxPlan {
            messages: msgs
                .iter()
                .map(|(t, v)| Any {
                    type_url: t.clone(),
                    value: v.clone(),
                })
                .collect(),
            memo: memo.to_string(),
            gas_limit: gas,
            fee_amount: fee,
            fee_denom: "upokt".into(),
            ordering: Ordering::Ordered {
                sequence,
                timeout_height: 0,
            },
            chain_id: "pocket".into(),
            account_number,
        };
        let ours_tx = build_signed_tx(&ours, &plan).unwrap();

        let body = cosmrs::tx::Body::new(
            msgs.iter().map(|(t, v)| cosmrs::Any {
                type_url: t.clone(),
                value: v.clone(),
            }),
            memo,
            0u32,
        );
        let coin = cosmrs::Coin::new(fee, "upokt").unwrap();
        let auth_info = cosmrs::tx::SignerInfo::single_direct(Some(theirs.public_key()), sequence)
            .auth_info(cosmrs::tx::Fee::from_amount_and_gas(coin, gas));
        let chain_id: cosmrs::tendermint::chain::Id = "pocket".parse().unwrap();
        let doc = cosmrs::tx::SignDoc::new(&body, &auth_info, &chain_id, account_number).unwrap();
        let raw = doc.sign(&theirs).unwrap();
        assert_eq!(
            hex::encode(&ours_tx.tx_bytes),
            hex::encode(raw.to_bytes().unwrap()),
            "sequence {sequence}"
        );
    }
}
