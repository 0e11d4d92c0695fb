//! Golden decodes of CometBFT 0.38 answers, written field for field from `rpc/core/types/responses.go`,
//! `types/block.go` and `types/events.go` as `libs/json` marshals them, plus proptests that random and mutated
//! input never panics.

use super::*;
use proptest::prelude::*;

const HASH: &str = "6B1E2A8B5B5E1AC5C0C3F9BC25C1E7F2A5E2D4A0F7C2B7C0A3F5E7D9A1B3C5E7";

fn hash_bytes() -> [u8; 32] {
    let mut h = [0u8; 32];
    hex::decode_to_slice(HASH, &mut h).unwrap();
    h
}

const STATUS: &str = r#"{"jsonrpc":"2.0","id":-1,"result":{"node_info":{"protocol_version":{"p2p":"8","block":"11","app":"0"},
"id":"5576458aef205977e18fd50b274e9b5d9014525a","listen_addr":"tcp://0.0.0.0:26656","network":"pocket-beta",
"version":"0.38.17","channels":"40202122233038606100","moniker":"node","other":{"tx_index":"on",
"rpc_address":"tcp://0.0.0.0:26657"}},"sync_info":{"latest_block_hash":"6B1E2A8B5B5E1AC5C0C3F9BC25C1E7F2A5E2D4A0F7C2B7C0A3F5E7D9A1B3C5E7",
"latest_app_hash":"1A2B","latest_block_height":"123456","latest_block_time":"2024-05-01T12:00:00.5Z",
"earliest_block_hash":"","earliest_app_hash":"","earliest_block_height":"1","earliest_block_time":"2024-01-01T00:00:00Z",
"catching_up":false},"validator_info":{"address":"AB","pub_key":{"type":"tendermint/PubKeyEd25519","value":"AAAA"},
"voting_power":"0"}}}"#;

#[test]
fn status_golden() {
    let r = decode_envelope("status", STATUS.as_bytes()).unwrap();
    let s = parse_status(r).unwrap();
    assert_eq!(
        s,
        Status {
            network: "pocket-beta".into(),
            latest_block_height: 123_456,
            latest_block_hash: Some(hash_bytes()),
            latest_block_time: BlockTime::new(1_714_564_800, 500_000_000),
            catching_up: false,
        }
    );
}

fn block_json(height: &str, hash: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"block_id":{{"hash":"{hash}","parts":{{"total":1,"hash":"AA"}}}},
"block":{{"header":{{"version":{{"block":"11","app":"0"}},"chain_id":"pocket-beta","height":"{height}",
"time":"2024-05-01T12:00:00.123456789Z","last_block_id":{{"hash":"","parts":{{"total":0,"hash":""}}}},
"last_commit_hash":"","data_hash":"","validators_hash":"","next_validators_hash":"","consensus_hash":"",
"app_hash":"","last_results_hash":"","evidence_hash":"","proposer_address":""}},"data":{{"txs":[]}},
"evidence":{{"evidence":[]}},"last_commit":{{"height":"0","round":0,"block_id":{{"hash":"","parts":{{"total":0,"hash":""}}}},
"signatures":[]}}}}}}}}"#
    )
}

#[test]
fn block_golden() {
    let r = decode_envelope("block", block_json("42", HASH).as_bytes()).unwrap();
    let b = parse_block(r).unwrap().unwrap();
    assert_eq!(b.height, 42);
    assert_eq!(b.hash, hash_bytes());
    assert_eq!(b.chain_id, "pocket-beta");
    assert_eq!(b.time, BlockTime::new(1_714_564_800, 123_456_789));
    // Lowercase hex is accepted too.
    let r = decode_envelope("block", block_json("42", &HASH.to_lowercase()).as_bytes()).unwrap();
    assert_eq!(parse_block(r).unwrap().unwrap().hash, hash_bytes());
}

#[test]
fn block_rejections() {
    for (h, hash) in [
        ("0", HASH),
        ("-3", HASH),
        ("x", HASH),
        ("5", ""),
        ("5", "ABCD"),
        ("5", &HASH[2..]),
    ] {
        let r = decode_envelope("block", block_json(h, hash).as_bytes()).unwrap();
        assert!(
            matches!(parse_block(r), Err(CometError::BadResponse { .. })),
            "{h} {hash}"
        );
    }
    // A null block (store has no such block) is "absent", not an error.
    let r = serde_json::json!({"block_id":{"hash":"","parts":{"total":0,"hash":""}},"block":null});
    assert_eq!(parse_block(r).unwrap(), None);
}

#[test]
fn rpc_error_golden() {
    let body = br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"height 100 must be less than or equal to the current blockchain height 50"}}"#;
    let e = decode_envelope("block", body).unwrap_err();
    assert!(e.is_height_not_available(), "{e}");
    match e {
        CometError::Rpc { code, message, .. } => {
            assert_eq!(code, -32603);
            assert_eq!(message, "Internal error");
        }
        other => panic!("{other:?}"),
    }
    let body =
        br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"tx (6B1E) not found"}}"#;
    assert!(decode_envelope("tx", body).unwrap_err().is_tx_not_found());
    assert!(matches!(
        decode_envelope("x", b"<html>"),
        Err(CometError::BadResponse { .. })
    ));
    assert!(matches!(
        decode_envelope("x", br#"{"jsonrpc":"2.0","id":1}"#),
        Err(CometError::BadResponse { .. })
    ));
}

#[test]
fn broadcast_golden() {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":3,"result":{{"code":13,"data":"","log":"insufficient fee","codespace":"sdk","hash":"{HASH}"}}}}"#
    );
    let b = parse_broadcast(decode_envelope("broadcast_tx_sync", body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        b,
        BroadcastResult {
            code: 13,
            log: "insufficient fee".into(),
            codespace: "sdk".into(),
            hash: hash_bytes()
        }
    );
}

#[test]
fn tx_golden() {
    // ExecTxResult fields are omitempty: a successful tx has no code, log or codespace.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":4,"result":{{"hash":"{HASH}","height":"77","index":2,"tx_result":{{"data":"EiYKJC9wb2NrZXQ=",
"gas_wanted":"200000","gas_used":"91234","events":[{{"type":"tx","attributes":[{{"key":"fee","value":"1upokt","index":true}}]}}]}},
"tx":"CpIBCo8BCh0="}}}}"#
    );
    let t = parse_tx(decode_envelope("tx", body.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        t,
        TxResult {
            hash: hash_bytes(),
            height: 77,
            index: 2,
            code: 0,
            log: String::new(),
            codespace: String::new()
        }
    );
    let failed = serde_json::json!({"hash": HASH, "height": "78", "index": 0,
        "tx_result": {"code": 1105, "log": "claim window closed", "codespace": "proof"}, "tx": ""});
    let t = parse_tx(failed).unwrap();
    assert_eq!(
        (t.code, t.log.as_str(), t.codespace.as_str()),
        (1105, "claim window closed", "proof")
    );
}

#[test]
fn block_results_golden() {
    // CometBFT 0.38: attributes are plain strings (0.34 base64-encoded them); `txs_results` and the other
    // fields are not read. A block without finalize-block events has `null` there.
    let body = r#"{"jsonrpc":"2.0","id":5,"result":{"height":"120","txs_results":[{"code":0,"data":"","log":"",
"gas_wanted":"1","gas_used":"1","events":[],"codespace":""}],"finalize_block_events":[
{"type":"coin_received","attributes":[{"key":"receiver","value":"pokt1x","index":true},{"key":"amount","value":"5upokt","index":true}]},
{"type":"pocket.tokenomics.EventClaimSettled","attributes":[{"key":"application_address","value":"\"pokt1app\"","index":true},
{"key":"session_end_block_height","value":"\"110\"","index":true},{"key":"mode","value":"EndBlock","index":true},{"key":"empty"}]}],
"validator_updates":null,"consensus_param_updates":null,"app_hash":"AAAA"}}"#;
    let r = parse_block_results(decode_envelope("block_results", body.as_bytes()).unwrap()).unwrap();
    assert_eq!(r.height, 120);
    assert_eq!(r.finalize_block_events.len(), 2);
    let e = &r.finalize_block_events[1];
    assert_eq!(e.kind, "pocket.tokenomics.EventClaimSettled");
    assert_eq!(e.attribute("application_address"), Some("\"pokt1app\""));
    assert_eq!(e.attribute("session_end_block_height"), Some("\"110\""));
    assert_eq!(e.attribute("mode"), Some("EndBlock"));
    assert_eq!(e.attribute("empty"), Some(""));
    assert_eq!(e.attribute("absent"), None);

    let empty = serde_json::json!({"height": "121", "txs_results": null, "finalize_block_events": null});
    assert!(parse_block_results(empty).unwrap().finalize_block_events.is_empty());
    assert!(parse_block_results(serde_json::json!({"height": "0"})).is_err());
    assert!(parse_block_results(serde_json::json!({"finalize_block_events": []})).is_err());
}

fn new_block_event(height: &str, with_id: bool) -> String {
    let id = if with_id {
        format!(r#""block_id":{{"hash":"{HASH}","parts":{{"total":1,"hash":"AA"}}}},"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"query":"tm.event='NewBlock'","data":{{"type":"tendermint/event/NewBlock",
"value":{{"block":{{"header":{{"version":{{"block":"11"}},"chain_id":"pocket-beta","height":"{height}",
"time":"2024-05-01T12:00:00Z"}},"data":{{"txs":[]}},"evidence":{{"evidence":[]}},"last_commit":null}},{id}
"result_finalize_block":{{"events":[],"tx_results":[],"app_hash":""}}}}}},
"events":{{"tm.event":["NewBlock"]}}}}}}"#
    )
}

#[test]
fn ws_messages_golden() {
    assert_eq!(
        parse_ws_message(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap(),
        WsMessage::Ack {
            id: serde_json::json!(1)
        }
    );
    match parse_ws_message(&new_block_event("9", true)).unwrap() {
        WsMessage::NewBlock { height, block } => {
            assert_eq!(height, 9);
            let b = block.unwrap();
            assert_eq!(
                (b.height, b.hash, b.chain_id.as_str()),
                (9, hash_bytes(), "pocket-beta")
            );
            assert_eq!(b.time, BlockTime::new(1_714_564_800, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_ws_message(&new_block_event("10", false)).unwrap(),
        WsMessage::NewBlock {
            height: 10,
            block: None
        }
    );
    assert!(parse_ws_message(&new_block_event("0", true)).is_err());
    let cancelled = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"Server error","data":"subscription was canceled (reason: CometBFT exited)"}}"#;
    match parse_ws_message(cancelled).unwrap() {
        WsMessage::Error(e) => assert!(e.is_retryable()),
        other => panic!("{other:?}"),
    }
    let tx_event =
        r#"{"jsonrpc":"2.0","id":1,"result":{"query":"q","data":{"type":"tendermint/event/Tx","value":{}}}}"#;
    assert!(parse_ws_message(tx_event).is_err());
}

proptest! {
    #[test]
    fn random_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_envelope("x", &bytes);
        let _ = parse_ws_message(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_input_never_panics(pos in 0usize..900, byte in any::<u8>(), which in 0usize..4) {
        let base = match which {
            0 => STATUS.to_string(),
            1 => block_json("42", HASH),
            2 => new_block_event("9", true),
            _ => format!(r#"{{"jsonrpc":"2.0","id":3,"result":{{"code":0,"log":"","codespace":"","hash":"{HASH}"}}}}"#),
        };
        let mut b = base.into_bytes();
        let len = b.len();
        if let Some(slot) = b.get_mut(pos % len) { *slot = byte; }
        if let Ok(v) = decode_envelope("x", &b) {
            let _ = parse_status(v.clone());
            let _ = parse_block(v.clone());
            let _ = parse_broadcast(v.clone());
            let _ = parse_block_results(v.clone());
            let _ = parse_tx(v);
        }
        let _ = parse_ws_message(&String::from_utf8_lossy(&b));
    }
}
