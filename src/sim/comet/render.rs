//! JSON of CometBFT 0.38 results, field for field as `libs/json` marshals `rpc/core/types/responses.go`:
//! int64 as decimal strings, uint32 as numbers, `HexBytes` as uppercase hex, `[]byte` as base64, `omitempty`
//! honoured on `abci.ExecTxResult`. Written independently of the client's decoders so a shape mistake on one
//! side is not mirrored on the other. Fields the simulator has no value for are present with empty values.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{CometBackend, TxRecord};
use crate::chain::comet::wire::{NEW_BLOCK_EVENT_TYPE, NEW_BLOCK_QUERY};
use crate::chain::comet::{BlockInfo, BlockTime, BroadcastResult};

fn hex_up(b: &[u8]) -> String {
    hex::encode_upper(b)
}

fn block_id(hash: Option<&[u8; 32]>) -> Value {
    match hash {
        Some(h) => json!({"hash": hex_up(h), "parts": {"total": 1, "hash": hex_up(h)}}),
        None => json!({"hash": "", "parts": {"total": 0, "hash": ""}}),
    }
}

/// `ResultStatus`.
pub(super) fn status(backend: &dyn CometBackend) -> Value {
    let latest = backend.latest();
    let earliest = backend.block(1);
    let hash = |b: &Option<BlockInfo>| b.as_ref().map_or(String::new(), |b| hex_up(&b.hash));
    let height = |b: &Option<BlockInfo>| b.as_ref().map_or(0, |b| b.height).to_string();
    let time = |b: &Option<BlockInfo>| b.as_ref().map_or(BlockTime::default(), |b| b.time).to_string();
    json!({
        "node_info": {
            "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
            "id": "0000000000000000000000000000000000000000",
            "listen_addr": "tcp://127.0.0.1:26656",
            "network": backend.chain_id(),
            "version": "0.38.17",
            "channels": "40202122233038606100",
            "moniker": "relay-miner-sim",
            "other": {"tx_index": "on", "rpc_address": "tcp://127.0.0.1:26657"}
        },
        "sync_info": {
            "latest_block_hash": hash(&latest),
            "latest_app_hash": "",
            "latest_block_height": height(&latest),
            "latest_block_time": time(&latest),
            "earliest_block_hash": hash(&earliest),
            "earliest_app_hash": "",
            "earliest_block_height": height(&earliest),
            "earliest_block_time": time(&earliest),
            "catching_up": false
        },
        "validator_info": {
            "address": "",
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": ""},
            "voting_power": "0"
        }
    })
}

/// `types.Block` of `b` with `txs`; `last_block_id` points at the previous block.
fn block(b: &BlockInfo, prev: Option<&BlockInfo>, txs: &[Vec<u8>]) -> Value {
    json!({
        "header": {
            "version": {"block": "11", "app": "0"},
            "chain_id": b.chain_id,
            "height": b.height.to_string(),
            "time": b.time.to_string(),
            "last_block_id": block_id(prev.map(|p| &p.hash)),
            "last_commit_hash": "",
            "data_hash": "",
            "validators_hash": "",
            "next_validators_hash": "",
            "consensus_hash": "",
            "app_hash": "",
            "last_results_hash": "",
            "evidence_hash": "",
            "proposer_address": ""
        },
        "data": {"txs": txs.iter().map(|t| B64.encode(t)).collect::<Vec<_>>()},
        "evidence": {"evidence": []},
        "last_commit": {
            "height": (b.height - 1).to_string(),
            "round": 0,
            "block_id": block_id(prev.map(|p| &p.hash)),
            "signatures": []
        }
    })
}

/// `ResultBlock` for `height` (validated by the caller); a missing block is CometBFT's empty id + null block.
pub(super) fn block_result(backend: &dyn CometBackend, height: i64) -> Value {
    match backend.block(height) {
        Some(b) => {
            let prev = backend.block(height - 1);
            json!({
                "block_id": block_id(Some(&b.hash)),
                "block": block(&b, prev.as_ref(), &backend.block_txs(height)),
            })
        }
        None => json!({"block_id": block_id(None), "block": null}),
    }
}

/// `ResultBlockResults` for `height` (validated by the caller): each included tx's `ExecTxResult` (events are
/// not kept, so empty) and the block's finalize-block events, attributes as plain strings (0.38).
pub(super) fn block_results(backend: &dyn CometBackend, height: i64) -> Value {
    let txs: Vec<Value> = backend
        .block_txs(height)
        .iter()
        .filter_map(|tx| backend.tx(&crate::protocol::sha256(tx)))
        .map(|rec| {
            let r = &rec.result;
            json!({"code": r.code, "data": null, "log": r.log, "info": "", "gas_wanted": "0", "gas_used": "0",
                "events": [], "codespace": r.codespace})
        })
        .collect();
    let events: Vec<Value> = backend
        .finalize_block_events(height)
        .iter()
        .map(|e| {
            let attributes: Vec<Value> = e
                .attributes
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v, "index": true}))
                .collect();
            json!({"type": e.kind, "attributes": attributes})
        })
        .collect();
    json!({
        "height": height.to_string(),
        "txs_results": if txs.is_empty() { Value::Null } else { Value::Array(txs) },
        "finalize_block_events": events,
        "validator_updates": [],
        "consensus_param_updates": null,
        "app_hash": "",
    })
}

/// `ResultBroadcastTx` (`data` is `HexBytes`: uppercase hex, empty here).
pub(super) fn broadcast(r: &BroadcastResult) -> Value {
    json!({"code": r.code, "data": "", "log": r.log, "codespace": r.codespace, "hash": hex_up(&r.hash)})
}

/// `ResultTx` with `abci.ExecTxResult`'s `omitempty` fields left out when empty.
pub(super) fn tx(rec: &TxRecord) -> Value {
    let r = &rec.result;
    let mut exec = serde_json::Map::new();
    if r.code != 0 {
        exec.insert("code".into(), json!(r.code));
    }
    if !r.log.is_empty() {
        exec.insert("log".into(), json!(r.log));
    }
    if !r.codespace.is_empty() {
        exec.insert("codespace".into(), json!(r.codespace));
    }
    json!({
        "hash": hex_up(&r.hash),
        "height": r.height.to_string(),
        "index": r.index,
        "tx_result": Value::Object(exec),
        "tx": B64.encode(&rec.tx),
    })
}

/// A `ResultEvent` for a NewBlock (`EventDataNewBlock` carries `block`, `block_id` and
/// `result_finalize_block` since 0.38).
pub(super) fn new_block_event(backend: &dyn CometBackend, b: &BlockInfo) -> Value {
    let prev = backend.block(b.height - 1);
    json!({
        "query": NEW_BLOCK_QUERY,
        "data": {
            "type": NEW_BLOCK_EVENT_TYPE,
            "value": {
                "block": block(b, prev.as_ref(), &backend.block_txs(b.height)),
                "block_id": block_id(Some(&b.hash)),
                "result_finalize_block": {}
            }
        },
        "events": {"tm.event": ["NewBlock"]}
    })
}
