//! JSON-RPC 2.0 for the demo backend: request validation, batches, the eth-style methods and the deterministic
//! fake chain behind them. Shared by the HTTP endpoint and the WebSocket endpoint (which adds subscriptions
//! through a hook). No IO here: bytes in, an optional JSON value out.
//!
//! Every block is a pure function of its height, so a test can recompute what the backend returns
//! ([`block_hash`], [`fake_block`]).

use serde_json::{Map, Value, json};

use super::Shared;
use super::config::MAX_BIG_RESPONSE_BYTES;
use super::stats::bump;

/// What `web3_clientVersion` answers.
pub const CLIENT_VERSION: &str = concat!("relay-miner-demo-backend/", env!("CARGO_PKG_VERSION"));

/// Unix time of the fake block 0; block `n` is `GENESIS_TIME + 12 * n`.
const GENESIS_TIME: u64 = 1_700_000_000;

/// A JSON-RPC error object (code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
}

impl RpcError {
    pub(crate) const PARSE_ERROR: i64 = -32700;
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    /// Implementation-defined server error (subscriptions over HTTP, limits).
    pub(crate) const SERVER_ERROR: i64 = -32000;

    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_PARAMS, message)
    }
}

/// A per-transport extension tried before the built-in methods (the WebSocket's `eth_subscribe`); `None` means
/// "not mine".
pub(crate) type Hook<'a> = &'a mut dyn FnMut(&str, &Value) -> Option<Result<Value, RpcError>>;

/// The outcome of one JSON-RPC payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Handled {
    /// The response to send; `None` when the payload held only notifications (nothing is sent back).
    pub(crate) reply: Option<Value>,
    /// Whether the payload was a batch.
    pub(crate) batch: bool,
}

/// Handles one JSON-RPC payload (a single call or a batch) as received on the wire.
pub(crate) fn handle_payload(shared: &Shared, body: &[u8], hook: Hook<'_>) -> Handled {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Handled {
                reply: Some(error_response(
                    Value::Null,
                    &RpcError::new(RpcError::PARSE_ERROR, format!("parse error: {e}")),
                )),
                batch: false,
            };
        }
    };
    match value {
        Value::Array(calls) => {
            let reply = if calls.is_empty() {
                Some(error_response(
                    Value::Null,
                    &RpcError::new(RpcError::INVALID_REQUEST, "empty batch"),
                ))
            } else if calls.len() > shared.config.max_batch_len {
                Some(error_response(
                    Value::Null,
                    &RpcError::new(
                        RpcError::INVALID_REQUEST,
                        format!("batch of {} exceeds {}", calls.len(), shared.config.max_batch_len),
                    ),
                ))
            } else {
                let replies: Vec<Value> = calls.into_iter().filter_map(|c| handle_call(shared, c, hook)).collect();
                (!replies.is_empty()).then_some(Value::Array(replies))
            };
            Handled { reply, batch: true }
        }
        single => Handled {
            reply: handle_call(shared, single, hook),
            batch: false,
        },
    }
}

/// Builds `{"jsonrpc":"2.0","error":{...},"id":id}`.
pub(crate) fn error_response(id: Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": e.code, "message": e.message}, "id": id})
}

/// Handles one call object; `None` for a valid notification (no `id`).
fn handle_call(shared: &Shared, call: Value, hook: Hook<'_>) -> Option<Value> {
    bump(&shared.counters.jsonrpc_calls);
    let invalid = |id: Value, why: &str| {
        Some(error_response(
            id,
            &RpcError::new(RpcError::INVALID_REQUEST, format!("invalid request: {why}")),
        ))
    };
    let Value::Object(mut obj) = call else {
        return invalid(Value::Null, "not an object");
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return invalid(Value::Null, "id must be a string, number or null"),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(id.unwrap_or(Value::Null), "jsonrpc must be \"2.0\"");
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return invalid(id.unwrap_or(Value::Null), "method must be a string");
    };
    let params = match obj.remove("params") {
        None => Value::Null,
        Some(p @ (Value::Array(_) | Value::Object(_))) => p,
        Some(_) => {
            return invalid(id.unwrap_or(Value::Null), "params must be an array or object");
        }
    };
    let result = hook(&method, &params).unwrap_or_else(|| dispatch(shared, &method, params));
    let id = id?;
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(e) => error_response(id, &e),
    })
}

/// The built-in methods.
fn dispatch(shared: &Shared, method: &str, params: Value) -> Result<Value, RpcError> {
    let cfg = &shared.config;
    match method {
        "eth_blockNumber" => Ok(quantity(cfg.head_block)),
        "eth_chainId" => Ok(quantity(cfg.chain_id)),
        "net_version" => Ok(Value::String(cfg.chain_id.to_string())),
        "web3_clientVersion" => Ok(Value::String(CLIENT_VERSION.to_owned())),
        "echo" => Ok(params),
        "big" => {
            let n = match positional(&params, 0) {
                None => cfg.big_response_bytes,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n <= MAX_BIG_RESPONSE_BYTES)
                    .ok_or_else(|| {
                        RpcError::invalid_params(format!("size must be an integer at most {MAX_BIG_RESPONSE_BYTES}"))
                    })?,
            };
            Ok(Value::String("x".repeat(n)))
        }
        "eth_getBalance" => {
            let addr = positional(&params, 0)
                .and_then(Value::as_str)
                .filter(|a| is_address(a))
                .ok_or_else(|| RpcError::invalid_params("first param must be a 0x-prefixed 20-byte address"))?;
            Ok(quantity(balance_of(addr)))
        }
        "eth_getBlockByNumber" => {
            let tag = positional(&params, 0).ok_or_else(|| RpcError::invalid_params("missing block number"))?;
            let n = parse_block_tag(tag, cfg.head_block)?;
            let full = match positional(&params, 1) {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(RpcError::invalid_params("second param must be a boolean")),
            };
            Ok(if n <= cfg.head_block {
                fake_block(n, full)
            } else {
                Value::Null
            })
        }
        "eth_subscribe" | "eth_unsubscribe" => Err(RpcError::new(
            RpcError::SERVER_ERROR,
            "notifications not supported: subscribe over the WebSocket at /ws",
        )),
        other => Err(RpcError::new(
            RpcError::METHOD_NOT_FOUND,
            format!("the method {other} does not exist/is not available"),
        )),
    }
}

/// The `i`-th positional parameter (`params` must be an array).
fn positional(params: &Value, i: usize) -> Option<&Value> {
    params.as_array().and_then(|a| a.get(i))
}

/// `0x`-prefixed minimal hex, the eth "quantity" encoding.
pub(crate) fn quantity(n: u64) -> Value {
    Value::String(format!("{n:#x}"))
}

fn is_address(a: &str) -> bool {
    a.strip_prefix("0x")
        .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A block tag (`latest`, `earliest`, `pending`, `safe`, `finalized`) or a hex quantity, as a height.
/// `pending` is the block after the head, which does not exist yet.
pub(crate) fn parse_block_tag(tag: &Value, head: u64) -> Result<u64, RpcError> {
    let s = tag
        .as_str()
        .ok_or_else(|| RpcError::invalid_params("block number must be a string"))?;
    match s {
        "latest" | "safe" | "finalized" => Ok(head),
        "earliest" => Ok(0),
        "pending" => Ok(head.saturating_add(1)),
        hex => hex
            .strip_prefix("0x")
            .filter(|h| !h.is_empty() && h.len() <= 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| RpcError::invalid_params(format!("invalid block number {hex:?}"))),
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed deterministic hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic 32-byte hex string for (domain, n).
fn hash32(domain: u64, n: u64) -> String {
    let mut s = String::with_capacity(66);
    s.push_str("0x");
    for lane in 0..4u64 {
        s.push_str(&format!("{:016x}", mix(domain ^ mix(n ^ mix(lane)))));
    }
    s
}

/// The fake hash of block `n`.
pub fn block_hash(n: u64) -> String {
    hash32(1, n)
}

/// The fake balance of an address (case-insensitive), in wei.
fn balance_of(addr: &str) -> u64 {
    // FNV-1a over the lower-cased address, then mixed; shifted so it looks like a plausible wei amount.
    let h = addr
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        });
    mix(h) >> 4
}

/// The fake block header at height `n` (what `newHeads` pushes).
pub fn fake_header(n: u64) -> Value {
    let parent = if n == 0 {
        format!("0x{}", "0".repeat(64))
    } else {
        block_hash(n - 1)
    };
    json!({
        "number": quantity(n),
        "hash": block_hash(n),
        "parentHash": parent,
        "nonce": "0x0000000000000000",
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "logsBloom": format!("0x{}", "0".repeat(512)),
        "transactionsRoot": hash32(3, n),
        "stateRoot": hash32(4, n),
        "receiptsRoot": hash32(5, n),
        "miner": format!("0x{:040x}", mix(n) & 0xffff),
        "difficulty": "0x0",
        "extraData": "0x",
        "gasLimit": quantity(30_000_000),
        "gasUsed": quantity(21_000 * (n % 4)),
        "timestamp": quantity(GENESIS_TIME.saturating_add(n.saturating_mul(12))),
        "baseFeePerGas": quantity(1_000_000_000 + mix(n) % 1_000_000_000),
    })
}

/// The fake block at height `n`: its header plus `n % 4` transactions (hashes, or objects when `full`).
pub fn fake_block(n: u64, full: bool) -> Value {
    let mut block = match fake_header(n) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let txs: Vec<Value> = (0..n % 4)
        .map(|i| {
            let hash = hash32(2, mix(n) ^ i);
            if full {
                json!({
                    "hash": hash,
                    "blockNumber": quantity(n),
                    "blockHash": block_hash(n),
                    "transactionIndex": quantity(i),
                    "from": format!("0x{:040x}", mix(n ^ i) & 0xffff_ffff),
                    "to": format!("0x{:040x}", mix(n ^ i ^ 1) & 0xffff_ffff),
                    "value": quantity(mix(n ^ i) >> 8),
                    "gas": quantity(21_000),
                    "input": "0x",
                })
            } else {
                Value::String(hash)
            }
        })
        .collect();
    block.insert("size".into(), quantity(540 + 110 * (n % 4)));
    block.insert("transactions".into(), Value::Array(txs));
    block.insert("uncles".into(), Value::Array(Vec::new()));
    Value::Object(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::backend::BackendConfig;
    use proptest::prelude::*;

    fn shared() -> Shared {
        Shared::new(BackendConfig {
            max_batch_len: 4,
            big_response_bytes: 10,
            ..BackendConfig::default()
        })
    }

    fn call(s: &Shared, body: &str) -> Option<Value> {
        handle_payload(s, body.as_bytes(), &mut |_, _| None).reply
    }

    fn err_code(v: &Value) -> i64 {
        v["error"]["code"].as_i64().unwrap()
    }

    #[test]
    fn methods() {
        let s = shared();
        let r = call(&s, r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#).unwrap();
        assert_eq!(r, json!({"jsonrpc":"2.0","id":1,"result":"0x1000"}));
        let r = call(&s, r#"{"jsonrpc":"2.0","id":"a","method":"eth_chainId","params":[]}"#).unwrap();
        assert_eq!(r["result"], "0x1");
        assert_eq!(r["id"], "a");
        let r = call(&s, r#"{"jsonrpc":"2.0","id":2,"method":"big"}"#).unwrap();
        assert_eq!(r["result"].as_str().unwrap().len(), 10);
        let r = call(&s, r#"{"jsonrpc":"2.0","id":2,"method":"big","params":[3]}"#).unwrap();
        assert_eq!(r["result"], "xxx");
        let r = call(&s, r#"{"jsonrpc":"2.0","id":2,"method":"big","params":[1e30]}"#).unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_PARAMS);
        let r = call(&s, r#"{"jsonrpc":"2.0","id":3,"method":"echo","params":{"k":[1,2]}}"#).unwrap();
        assert_eq!(r["result"], json!({"k":[1,2]}));
        let r = call(&s, r#"{"jsonrpc":"2.0","id":3,"method":"web3_clientVersion"}"#).unwrap();
        assert_eq!(r["result"], CLIENT_VERSION);
    }

    #[test]
    fn balances_are_deterministic_and_validated() {
        let s = shared();
        let q = |a: &str| {
            call(
                &s,
                &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["{a}","latest"]}}"#),
            )
            .unwrap()
        };
        let a = "0x00000000000000000000000000000000000000aa";
        let b = "0x00000000000000000000000000000000000000bb";
        assert_eq!(q(a)["result"], q(&a.to_uppercase().replace("0X", "0x"))["result"]);
        assert_ne!(q(a)["result"], q(b)["result"]);
        assert_eq!(err_code(&q("0x1234")), RpcError::INVALID_PARAMS);
    }

    #[test]
    fn blocks_chain_together() {
        let s = shared();
        let get = |tag: &str| {
            call(
                &s,
                &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["{tag}",false]}}"#),
            )
            .unwrap()["result"]
                .clone()
        };
        let latest = get("latest");
        assert_eq!(latest["number"], "0x1000");
        assert_eq!(latest["hash"], block_hash(0x1000));
        assert_eq!(get("0xfff")["hash"], latest["parentHash"]);
        assert_eq!(get("0xfff"), get("0xfff"));
        assert_eq!(get("0x1001"), Value::Null);
        assert_eq!(get("pending"), Value::Null);
        assert_eq!(get("earliest")["parentHash"], format!("0x{}", "0".repeat(64)));
        let b3 = get("0x3");
        assert_eq!(b3["transactions"].as_array().unwrap().len(), 3);
        assert!(b3["transactions"][0].is_string());
        let full = fake_block(3, true);
        assert_eq!(full["transactions"][0]["hash"], b3["transactions"][0]);
        let r = call(
            &s,
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0xzz"]}"#,
        )
        .unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_PARAMS);
    }

    #[test]
    fn protocol_errors() {
        let s = shared();
        let r = call(&s, "{not json").unwrap();
        assert_eq!(err_code(&r), RpcError::PARSE_ERROR);
        assert_eq!(r["id"], Value::Null);
        let r = call(&s, r#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#).unwrap();
        assert_eq!((err_code(&r), r["id"].clone()), (RpcError::METHOD_NOT_FOUND, json!(7)));
        let r = call(&s, r#"{"jsonrpc":"1.0","id":7,"method":"echo"}"#).unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_REQUEST);
        let r = call(&s, r#"{"jsonrpc":"2.0","id":7}"#).unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_REQUEST);
        let r = call(&s, r#"{"jsonrpc":"2.0","id":7,"method":"echo","params":3}"#).unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_REQUEST);
        let r = call(&s, r#"{"jsonrpc":"2.0","id":[1],"method":"echo"}"#).unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_REQUEST);
        let r = call(&s, "[]").unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_REQUEST);
        let r = call(&s, "[1,2,3,4,5]").unwrap();
        assert_eq!(err_code(&r), RpcError::INVALID_REQUEST);
        let r = call(
            &s,
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
        )
        .unwrap();
        assert_eq!(err_code(&r), RpcError::SERVER_ERROR);
        // A notification gets no answer, even when it fails.
        assert_eq!(call(&s, r#"{"jsonrpc":"2.0","method":"nope"}"#), None);
        assert_eq!(call(&s, r#"[{"jsonrpc":"2.0","method":"echo"}]"#), None);
    }

    #[test]
    fn batch_keeps_order_and_skips_notifications() {
        let s = shared();
        let r = call(
            &s,
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},
                {"jsonrpc":"2.0","method":"echo"},
                5,
                {"jsonrpc":"2.0","id":"x","method":"nope"}]"#,
        )
        .unwrap();
        let a = r.as_array().unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0]["result"], "0x1");
        assert_eq!(err_code(&a[1]), RpcError::INVALID_REQUEST);
        assert_eq!(
            (err_code(&a[2]), a[2]["id"].clone()),
            (RpcError::METHOD_NOT_FOUND, json!("x"))
        );
    }

    #[test]
    fn hook_overrides_builtins() {
        let s = shared();
        let r = handle_payload(
            &s,
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
            &mut |m, _| (m == "eth_subscribe").then(|| Ok(json!("0xabc"))),
        );
        assert_eq!(r.reply.unwrap()["result"], "0xabc");
    }

    fn assert_well_formed(reply: &Value) {
        let one = |v: &Value| {
            assert_eq!(v["jsonrpc"], "2.0");
            assert!(v.get("result").is_some() ^ v.get("error").is_some());
        };
        match reply {
            Value::Array(a) => a.iter().for_each(one),
            v => one(v),
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let s = shared();
            if let Some(r) = handle_payload(&s, &body, &mut |_, _| None).reply {
                assert_well_formed(&r);
            }
        }

        #[test]
        fn mutated_requests_never_panic(pos in 0usize..120, byte in any::<u8>(), cut in 0usize..200) {
            let s = shared();
            let base = br#"[{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x10",true]},{"jsonrpc":"2.0","id":2,"method":"big","params":[4]}]"#;
            let mut body = base.to_vec();
            if let Some(b) = body.get_mut(pos) { *b = byte; }
            body.truncate(cut.max(1));
            if let Some(r) = handle_payload(&s, &body, &mut |_, _| None).reply {
                assert_well_formed(&r);
            }
        }
    }
}
