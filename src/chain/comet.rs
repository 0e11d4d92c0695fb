//! The CometBFT RPC boundary (issue 5): a JSON-RPC client for the handful of CometBFT 0.38 endpoints relay-miner
//! needs (`status`, `block`, `block_results`, `broadcast_tx_sync`, `tx`) and a gap-free new-block subscription over `/websocket`.
//!
//! Why CometBFT RPC and not the pocket gRPC: the block hash that seeds session ids (§3) and proof paths and the
//! proof lottery (§5.2, §6.3) is the CometBFT **block-ID hash** (`result.block_id.hash` of `block?height=H`,
//! spec §8 item 8), which only the CometBFT side serves directly. Tx inclusion (lessons.md: "code 0 from
//! broadcast is mempool only") is confirmed with `tx?hash=`.
//!
//! Layout:
//! - this file: the domain types shared with the simulator's server side (`sim::comet`) and the error type;
//! - [`time`]: RFC 3339 timestamps as CometBFT prints them (Go `time.Time`, UTC, nanoseconds, trailing zeros cut);
//! - [`wire`]: decoding the JSON-RPC envelopes and results (pure, proptested);
//! - [`client`]: [`CometClient`], HTTP JSON-RPC over hyper-util's pooled client with timeouts;
//! - [`subscribe`]: [`subscribe_blocks`], every height exactly once and in order, across websocket outages.
//!
//! Heights are `i64` like CometBFT and the spec's session math (§3: "all integer math is int64"); decoders reject
//! heights ≤ 0 where a block is expected.

pub mod client;
pub mod subscribe;
pub mod time;
pub mod wire;

pub use client::{ClientConfig, CometClient};
pub use subscribe::{BlockStream, StatsSnapshot, SubscribeConfig, SubscriptionStats, subscribe_blocks};
pub use time::BlockTime;

use std::time::Duration;

/// One committed block as relay-miner needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Block height (> 0).
    pub height: i64,
    /// The CometBFT block-ID hash (`block_id.hash`): the hash that seeds session ids and proof paths (§3, §5.2).
    pub hash: [u8; 32],
    /// Header time (`block.header.time`), the chain clock that tx timeouts anchor on (lessons.md).
    pub time: BlockTime,
    /// `block.header.chain_id`.
    pub chain_id: String,
}

/// The subset of `status` relay-miner uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `node_info.network`: the chain id.
    pub network: String,
    /// `sync_info.latest_block_height`; 0 before the first block.
    pub latest_block_height: i64,
    /// `sync_info.latest_block_hash` (block-ID hash), `None` before the first block (empty hex).
    pub latest_block_hash: Option<[u8; 32]>,
    /// `sync_info.latest_block_time`.
    pub latest_block_time: BlockTime,
    /// `sync_info.catching_up`: the node is still block-syncing, its latest height is not the chain's.
    pub catching_up: bool,
}

/// `broadcast_tx_sync` result: the CheckTx outcome. Code 0 means "accepted into the mempool", not "included"
/// (confirm with [`CometClient::tx`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastResult {
    /// ABCI CheckTx code, 0 = accepted.
    pub code: u32,
    /// CheckTx log (the error text when `code != 0`).
    pub log: String,
    /// Module codespace of a non-zero code (e.g. `sdk`).
    pub codespace: String,
    /// Tx hash: SHA-256 of the tx bytes.
    pub hash: [u8; 32],
}

/// An included tx as `tx?hash=` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxResult {
    /// Tx hash: SHA-256 of the tx bytes.
    pub hash: [u8; 32],
    /// Height of the including block (H_tx of the claim/proof windows, §3).
    pub height: i64,
    /// Index of the tx in its block.
    pub index: u32,
    /// ABCI ExecTxResult code, 0 = the messages executed successfully.
    pub code: u32,
    /// ExecTxResult log (the error text when `code != 0`).
    pub log: String,
    /// Module codespace of a non-zero code.
    pub codespace: String,
}

/// One ABCI event (`type` and its attributes in order), as CometBFT 0.38 prints it in `block_results`: keys and
/// values are plain strings (0.34 base64-encoded them). For a cosmos-sdk typed event every value is the JSON of
/// the proto field (strings and 64-bit integers quoted, 32-bit integers bare).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AbciEvent {
    /// Event type, e.g. `pocket.tokenomics.EventClaimSettled`.
    pub kind: String,
    /// `(key, value)` pairs in the order the node printed them.
    pub attributes: Vec<(String, String)>,
}

impl AbciEvent {
    /// The value of the first attribute named `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The subset of `block_results` relay-miner reads: the events of the block's `FinalizeBlock` outside its txs
/// (begin and end block), where poktroll reports each claim's settlement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockResults {
    /// The block's height.
    pub height: i64,
    /// `finalize_block_events`.
    pub finalize_block_events: Vec<AbciEvent>,
}

/// JSON-RPC code CometBFT uses for every handler error (`RPCInternalError`).
pub const RPC_INTERNAL_ERROR: i64 = -32603;
/// JSON-RPC code of a subscription cancelled by the server (`RPCServerError`).
pub const RPC_SERVER_ERROR: i64 = -32000;

/// Everything that can go wrong talking to a CometBFT node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CometError {
    /// The base URL cannot be used (not `http://host[:port][/path]`).
    #[error("invalid CometBFT URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Connecting, sending or receiving failed (connection refused, reset, websocket error).
    #[error("CometBFT transport error calling {method}: {message}")]
    Transport {
        /// The RPC method or channel.
        method: String,
        /// The underlying error, rendered.
        message: String,
    },
    /// No complete answer within the configured timeout.
    #[error("CometBFT {method} timed out after {after:?}")]
    Timeout {
        /// The RPC method or channel.
        method: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The node answered with a JSON-RPC error object.
    #[error("CometBFT {method} failed: rpc error {code} {message}: {data}")]
    Rpc {
        /// The RPC method.
        method: String,
        /// JSON-RPC error code (CometBFT uses -32603 for handler errors).
        code: i64,
        /// JSON-RPC error message.
        message: String,
        /// JSON-RPC error data: CometBFT puts the real reason here.
        data: String,
    },
    /// A non-JSON HTTP error (proxy, wrong port).
    #[error("CometBFT {method}: HTTP {status}: {body}")]
    Http {
        /// The RPC method.
        method: String,
        /// HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer did not have the CometBFT 0.38 shape.
    #[error("bad CometBFT {method} response: {reason}")]
    BadResponse {
        /// The RPC method.
        method: String,
        /// What was wrong.
        reason: String,
    },
}

impl CometError {
    /// Whether retrying the same call later may succeed: transport failures, timeouts, HTTP 5xx/429, a height
    /// the node does not have yet, and server-side cancellations. Rejections of the request itself are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            Self::Rpc { code, .. } => *code == RPC_SERVER_ERROR || self.is_height_not_available(),
            Self::InvalidUrl { .. } | Self::BadResponse { .. } => false,
        }
    }

    /// Whether this is CometBFT's "height H must be less than or equal to the current blockchain height" error:
    /// the block does not exist *yet*.
    pub fn is_height_not_available(&self) -> bool {
        matches!(self, Self::Rpc { code, data, .. }
            if *code == RPC_INTERNAL_ERROR && data.contains("must be less than or equal to the current blockchain height"))
    }

    /// Whether this is CometBFT's "tx (HASH) not found" error.
    pub fn is_tx_not_found(&self) -> bool {
        matches!(self, Self::Rpc { code, data, .. }
            if *code == RPC_INTERNAL_ERROR && data.starts_with("tx (") && data.ends_with(") not found"))
    }
}

/// Result alias for this module.
pub type CometResult<T> = Result<T, CometError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i64, data: &str) -> CometError {
        CometError::Rpc {
            method: "m".into(),
            code,
            message: "Internal error".into(),
            data: data.into(),
        }
    }

    #[test]
    fn retryable_classification() {
        let t = CometError::Transport {
            method: "status".into(),
            message: "refused".into(),
        };
        assert!(t.is_retryable());
        let to = CometError::Timeout {
            method: "status".into(),
            after: Duration::from_secs(1),
        };
        assert!(to.is_retryable());
        let h = |status| CometError::Http {
            method: "x".into(),
            status,
            body: String::new(),
        };
        assert!(h(503).is_retryable());
        assert!(h(429).is_retryable());
        assert!(!h(404).is_retryable());
        let not_yet = rpc(
            RPC_INTERNAL_ERROR,
            "height 9 must be less than or equal to the current blockchain height 8",
        );
        assert!(not_yet.is_height_not_available());
        assert!(not_yet.is_retryable());
        assert!(!rpc(RPC_INTERNAL_ERROR, "height must be greater than 0, but got 0").is_retryable());
        assert!(rpc(RPC_SERVER_ERROR, "subscription was canceled").is_retryable());
        assert!(rpc(RPC_INTERNAL_ERROR, "tx (AB) not found").is_tx_not_found());
        assert!(!rpc(RPC_INTERNAL_ERROR, "tx (AB) not found").is_retryable());
        let bad = CometError::BadResponse {
            method: "block".into(),
            reason: "x".into(),
        };
        assert!(!bad.is_retryable());
    }
}
