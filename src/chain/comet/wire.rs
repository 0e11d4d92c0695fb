//! Decoding CometBFT 0.38 JSON-RPC answers (pure, no IO).
//!
//! Shapes follow `rpc/core/types/responses.go` as marshalled by `libs/json`: 64-bit integers are decimal
//! *strings* (`"height":"42"`), 32-bit ones are numbers (`"code":0`, `"index":0`), `HexBytes` (hashes) are
//! uppercase hex, `[]byte` (tx, data) is base64, times are RFC 3339 (see [`super::time`]). `tx_result` is an
//! `abci.ExecTxResult` whose fields are `omitempty`, so a successful tx has no `code` at all. Errors are JSON-RPC
//! error objects `{code, message, data}` where CometBFT puts the real reason in `data`; URI (GET) calls return
//! them with HTTP 500, POST calls with HTTP 200, so the body decides, not the status.
//!
//! Decoders are lenient where CometBFT versions differ harmlessly (numbers given as JSON numbers, lowercase hex)
//! and strict where a wrong value would be dangerous (a block hash must be exactly 32 bytes).

use serde::Deserialize;
use serde_json::Value;

use super::time::BlockTime;
use super::{AbciEvent, BlockInfo, BlockResults, BroadcastResult, CometError, CometResult, Status, TxResult};

/// The query relay-miner subscribes to on `/websocket`.
pub const NEW_BLOCK_QUERY: &str = "tm.event='NewBlock'";
/// The amino-style type tag of a NewBlock event's data.
pub const NEW_BLOCK_EVENT_TYPE: &str = "tendermint/event/NewBlock";

/// Builds a JSON-RPC 2.0 request.
pub fn request(id: u64, method: &str, params: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorObject>,
}

#[derive(Deserialize)]
struct RpcErrorObject {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Value,
}

fn bad(method: &str, reason: impl Into<String>) -> CometError {
    CometError::BadResponse {
        method: method.to_string(),
        reason: reason.into(),
    }
}

fn rpc_error(method: &str, e: RpcErrorObject) -> CometError {
    let data = match e.data {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    };
    CometError::Rpc {
        method: method.to_string(),
        code: e.code,
        message: e.message,
        data,
    }
}

/// Splits a JSON-RPC response into its `result` or its error.
pub fn decode_envelope(method: &str, body: &[u8]) -> CometResult<Value> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| bad(method, format!("not a JSON-RPC response: {e}")))?;
    match (env.error, env.result) {
        (Some(e), _) => Err(rpc_error(method, e)),
        (None, Some(r)) => Ok(r),
        (None, None) => Err(bad(method, "neither result nor error")),
    }
}

fn de_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        S(String),
        N(i64),
    }
    match Int::deserialize(d)? {
        Int::N(n) => Ok(n),
        Int::S(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a decimal int64: {s:?}"))),
    }
}

/// Decodes a hex hash (either case). `Ok(None)` for the empty string CometBFT prints for "no hash".
pub fn parse_hash(method: &str, what: &str, s: &str) -> CometResult<Option<[u8; 32]>> {
    if s.is_empty() {
        return Ok(None);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| bad(method, format!("{what} {s:?} is not 32 hex bytes: {e}")))?;
    Ok(Some(out))
}

fn require_hash(method: &str, what: &str, s: &str) -> CometResult<[u8; 32]> {
    parse_hash(method, what, s)?.ok_or_else(|| bad(method, format!("{what} is empty")))
}

fn parse_time(method: &str, what: &str, s: &str) -> CometResult<BlockTime> {
    BlockTime::parse_rfc3339(s).map_err(|e| bad(method, format!("{what}: {e}")))
}

fn from_value<T: serde::de::DeserializeOwned>(method: &str, v: Value) -> CometResult<T> {
    serde_json::from_value(v).map_err(|e| bad(method, e.to_string()))
}

#[derive(Deserialize)]
struct StatusJson {
    node_info: NodeInfoJson,
    sync_info: SyncInfoJson,
}

#[derive(Deserialize)]
struct NodeInfoJson {
    #[serde(default)]
    network: String,
}

#[derive(Deserialize)]
struct SyncInfoJson {
    #[serde(default)]
    latest_block_hash: String,
    #[serde(deserialize_with = "de_i64")]
    latest_block_height: i64,
    latest_block_time: String,
    #[serde(default)]
    catching_up: bool,
}

/// Decodes a `status` result.
pub fn parse_status(result: Value) -> CometResult<Status> {
    const M: &str = "status";
    let s: StatusJson = from_value(M, result)?;
    if s.sync_info.latest_block_height < 0 {
        return Err(bad(M, "negative latest_block_height"));
    }
    Ok(Status {
        network: s.node_info.network,
        latest_block_height: s.sync_info.latest_block_height,
        latest_block_hash: parse_hash(M, "latest_block_hash", &s.sync_info.latest_block_hash)?,
        latest_block_time: parse_time(M, "latest_block_time", &s.sync_info.latest_block_time)?,
        catching_up: s.sync_info.catching_up,
    })
}

#[derive(Deserialize)]
struct BlockIdJson {
    #[serde(default)]
    hash: String,
}

#[derive(Deserialize)]
struct HeaderJson {
    #[serde(default)]
    chain_id: String,
    #[serde(deserialize_with = "de_i64")]
    height: i64,
    time: String,
}

#[derive(Deserialize)]
struct BlockJson {
    header: HeaderJson,
}

/// `ResultBlock` and `EventDataNewBlock` share `{block_id, block}`.
#[derive(Deserialize)]
struct BlockWithIdJson {
    block_id: Option<BlockIdJson>,
    block: Option<BlockJson>,
}

fn block_info(method: &str, b: BlockWithIdJson) -> CometResult<Option<BlockInfo>> {
    // CometBFT answers `{"block_id":{...empty...},"block":null}` when the store has no such block.
    let Some(block) = b.block else {
        return Ok(None);
    };
    let header = block.header;
    if header.height <= 0 {
        return Err(bad(method, format!("block height {} is not positive", header.height)));
    }
    let hash = require_hash(
        method,
        "block_id.hash",
        b.block_id.as_ref().map_or("", |id| id.hash.as_str()),
    )?;
    Ok(Some(BlockInfo {
        height: header.height,
        hash,
        time: parse_time(method, "block.header.time", &header.time)?,
        chain_id: header.chain_id,
    }))
}

/// Decodes a `block` result; `Ok(None)` when the node answered with a null block.
pub fn parse_block(result: Value) -> CometResult<Option<BlockInfo>> {
    const M: &str = "block";
    block_info(M, from_value(M, result)?)
}

#[derive(Deserialize)]
struct BroadcastJson {
    code: u32,
    #[serde(default)]
    log: String,
    #[serde(default)]
    codespace: String,
    hash: String,
}

/// Decodes a `broadcast_tx_sync` result.
pub fn parse_broadcast(result: Value) -> CometResult<BroadcastResult> {
    const M: &str = "broadcast_tx_sync";
    let b: BroadcastJson = from_value(M, result)?;
    Ok(BroadcastResult {
        code: b.code,
        log: b.log,
        codespace: b.codespace,
        hash: require_hash(M, "hash", &b.hash)?,
    })
}

#[derive(Deserialize, Default)]
struct ExecTxResultJson {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    log: String,
    #[serde(default)]
    codespace: String,
}

#[derive(Deserialize)]
struct TxJson {
    hash: String,
    #[serde(deserialize_with = "de_i64")]
    height: i64,
    #[serde(default)]
    index: u32,
    #[serde(default)]
    tx_result: ExecTxResultJson,
}

/// Decodes a `tx` result.
pub fn parse_tx(result: Value) -> CometResult<TxResult> {
    const M: &str = "tx";
    let t: TxJson = from_value(M, result)?;
    if t.height <= 0 {
        return Err(bad(M, format!("tx height {} is not positive", t.height)));
    }
    Ok(TxResult {
        hash: require_hash(M, "hash", &t.hash)?,
        height: t.height,
        index: t.index,
        code: t.tx_result.code,
        log: t.tx_result.log,
        codespace: t.tx_result.codespace,
    })
}

#[derive(Deserialize)]
struct AttributeJson {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct EventJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    attributes: Option<Vec<AttributeJson>>,
}

#[derive(Deserialize)]
struct BlockResultsJson {
    #[serde(deserialize_with = "de_i64")]
    height: i64,
    /// `null` in a block without such events.
    #[serde(default)]
    finalize_block_events: Option<Vec<EventJson>>,
}

/// Decodes a `block_results` result (CometBFT 0.38: `finalize_block_events`, attributes as plain strings). A
/// missing key or value reads as empty, as CometBFT prints an attribute without one.
pub fn parse_block_results(result: Value) -> CometResult<BlockResults> {
    const M: &str = "block_results";
    let r: BlockResultsJson = from_value(M, result)?;
    if r.height <= 0 {
        return Err(bad(M, format!("height {} is not positive", r.height)));
    }
    let finalize_block_events = r
        .finalize_block_events
        .unwrap_or_default()
        .into_iter()
        .map(|e| AbciEvent {
            kind: e.kind,
            attributes: e
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.key.unwrap_or_default(), a.value.unwrap_or_default()))
                .collect(),
        })
        .collect();
    Ok(BlockResults {
        height: r.height,
        finalize_block_events,
    })
}

/// One message read from a `/websocket` subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// The answer to a request (`subscribe` acknowledges with an empty result).
    Ack {
        /// The request id echoed.
        id: Value,
    },
    /// A NewBlock event. `block` is `None` when the event carries no `block_id` (pre-0.38 nodes): the height is
    /// still a valid tip, the block itself must be fetched.
    NewBlock {
        /// The new block's height.
        height: i64,
        /// The block, when the event carries its block-ID hash.
        block: Option<BlockInfo>,
    },
    /// A JSON-RPC error (a refused subscribe, or a subscription cancelled by the node).
    Error(CometError),
}

#[derive(Deserialize)]
struct WsEnvelope {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorObject>,
}

#[derive(Deserialize)]
struct EventResultJson {
    data: EventDataJson,
}

#[derive(Deserialize)]
struct EventDataJson {
    #[serde(rename = "type")]
    kind: String,
    value: Value,
}

/// Decodes one websocket text message.
pub fn parse_ws_message(text: &str) -> CometResult<WsMessage> {
    const M: &str = "websocket";
    let env: WsEnvelope = serde_json::from_str(text).map_err(|e| bad(M, format!("not JSON-RPC: {e}")))?;
    if let Some(e) = env.error {
        return Ok(WsMessage::Error(rpc_error(M, e)));
    }
    let Some(result) = env.result else {
        return Err(bad(M, "neither result nor error"));
    };
    // `subscribe` answers `{}`; events carry `query`, `data`, `events`.
    if result.get("data").is_none() {
        return Ok(WsMessage::Ack { id: env.id });
    }
    let ev: EventResultJson = from_value(M, result)?;
    if ev.data.kind != NEW_BLOCK_EVENT_TYPE {
        return Err(bad(M, format!("unexpected event type {:?}", ev.data.kind)));
    }
    let b: BlockWithIdJson = from_value(M, ev.data.value)?;
    let Some(header) = b.block.as_ref().map(|blk| &blk.header) else {
        return Err(bad(M, "NewBlock event without a block"));
    };
    let height = header.height;
    let has_id = b.block_id.as_ref().is_some_and(|id| !id.hash.is_empty());
    let block = if has_id { block_info(M, b)? } else { None };
    if height <= 0 {
        return Err(bad(M, format!("block height {height} is not positive")));
    }
    Ok(WsMessage::NewBlock { height, block })
}

#[cfg(test)]
mod tests;
