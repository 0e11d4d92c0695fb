//! `transaction.*`: how the miner builds, prices and times its claim and proof txs (gas, fees, timeouts, sizes,
//! the claim's delay and the unprofitable-claim rule), with the bounds `validate` checks them against.

use serde::Deserialize;

/// Largest `transaction.tx_timeout_default_seconds`. ADR-070 allows 10 minutes, but the node checks the timeout
/// against its check state's block time (the last block the app committed), which can be older than the latest
/// block the timeout is anchored on; close to 600 s a tx is refused ("unordered tx ttl exceeds 10m0s"). A minute
/// of headroom.
pub const MAX_TX_TIMEOUT_SECS: u64 = 540;

/// Smallest `transaction.gas_adjustment`. Simulate does not charge everything the block does: cosmos-sdk v0.53
/// skips the unordered nonce's store read and write in simulate mode (`verifyUnorderedNonce`), and state can
/// change between the simulation and the block. Below 10 % headroom a claim or proof risks running out of gas
/// in its block, which fails the tx and costs its fee.
pub const MIN_GAS_ADJUSTMENT: f64 = 1.1;

/// Default `transaction.max_gas_price`: ten times the `minimum-gas-prices` poktroll's `pocketd init` writes
/// (`1upokt`), so a node left at that default, or one that raised it a little, is paid; beyond it a node
/// naming its price cannot make the miner pay more without the operator's consent.
pub const DEFAULT_MAX_GAS_PRICE: &str = "10upokt";

/// Default `transaction.max_tx_bytes`: 900 KiB, under CometBFT's default `mempool.max_tx_bytes` of 1 MiB.
pub const DEFAULT_MAX_TX_BYTES: u64 = 900 * 1024;
/// Largest `transaction.max_tx_bytes`: the SDK gRPC server's default maximum message size (10 MiB).
pub const MAX_MAX_TX_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest `transaction.max_tx_bytes`: 64 KiB. A proof tx needs up to 16 KiB beyond its relay
/// ([`crate::smst::MAX_PROOF_OVERHEAD_BYTES`]) and a relay larger than what is left is never claimed, so a smaller
/// limit would leave nothing (or next to nothing) claimable.
pub const MIN_MAX_TX_BYTES: u64 = 64 * 1024;

/// Go `transaction.*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionConfig {
    /// Fixed gas limit of every claim/proof tx, Simulate skipped; 0 = simulate and multiply by `gas_adjustment`.
    /// Without Simulate a message the chain refuses is only found in its block, failing the whole tx (fee paid)
    /// instead of being refused for free and sent on its own.
    pub gas_limit: u64,
    /// Gas price with denom, e.g. `0.000001upokt`. Raised to the node's minimum gas price when that is higher
    /// (a node refuses a lower fee at CheckTx), up to `max_gas_price`.
    pub gas_price: String,
    /// The highest gas price paid when the node asks more than `gas_price` (its `minimum-gas-prices`, or the fee
    /// a refusal names), same denom, at least `gas_price`. A price, not a fee per tx: a large proof needs more gas
    /// than a claim and must not be refused by the cap where a claim passes. Guards against a node that names an
    /// absurd price ([`DEFAULT_MAX_GAS_PRICE`]).
    pub max_gas_price: String,
    /// Simulated gas × this; at least [`MIN_GAS_ADJUSTMENT`].
    pub gas_adjustment: f64,
    /// Send ADR-070 unordered txs (no sequence races between HA instances).
    pub unordered: bool,
    /// Unordered tx timeout after the chain's latest block time, at least (≤ [`MAX_TX_TIMEOUT_SECS`]); a claim or
    /// proof tx gets what its window needs at the chain's pace, up to that bound (the miner's `submit::ttl`).
    pub tx_timeout_default_seconds: u64,
    /// A supplier's claims or proofs due together go out in txs of at most this many encoded bytes (proofs
    /// carry relay payloads). Below the node's CometBFT `mempool.max_tx_bytes` (default 1 MiB; a larger tx is
    /// refused at CheckTx, code 21) and the SDK gRPC server's 10 MiB message limit.
    pub max_tx_bytes: u64,
    /// Blocks before a window closes by which a submission must have been sent (1 to
    /// [`MAX_SUBMISSION_BUFFER_BLOCKS`]: a tx sent at the closing height lands after it).
    pub submission_buffer_blocks: u64,
    /// Blocks after the claim window opens before a session's claim is first sent (at most
    /// [`MAX_CLAIM_DELAY_BLOCKS`]; never later than `submission_buffer_blocks` before the window closes), so
    /// relays accepted just before the window opened are in the claim.
    pub claim_delay_blocks: u64,
    /// Which claims are not sent because they would cost the supplier more than they earn
    /// (`crate::miner::driver` module `profit`).
    pub skip_unprofitable_claims: SkipUnprofitableClaims,
}

/// `transaction.skip_unprofitable_claims`: when a session's claim is not sent because it is not worth its cost.
/// A skipped session ends without a claim, counted in `ha_miner_claims_skipped_total{reason="unprofitable"}` and
/// its value in `ha_miner_claims_skipped_upokt_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipUnprofitableClaims {
    /// Skip a claim worth at most its expected cost: the claim's tx fee plus, weighted by the chance the chain
    /// requires its proof (`proof_request_probability`, or 1 at or above `proof_requirement_threshold`, spec
    /// §6.3), the proof's `proof_submission_fee` and tx fee; and always one worth at most 2 uPOKT (poktroll's
    /// rule). The supplier then never pays more for a claim than it earns, on average.
    #[default]
    ExpectedCost,
    /// poktroll's relay miner's rule alone: skip a claim worth at most 2 uPOKT (`ClaimAndProofGasCost`,
    /// pkg/relayer/session/claim.go), whatever a proof would cost.
    Poktroll,
    /// Claim every session with relays.
    Off,
}

/// Upper bound of `transaction.submission_buffer_blocks` (whether the chain's windows leave sends with it is
/// checked against the node at start: `crate::chain::claim_delay`).
pub const MAX_SUBMISSION_BUFFER_BLOCKS: u64 = 100;

/// Upper bound of `transaction.claim_delay_blocks`.
pub const MAX_CLAIM_DELAY_BLOCKS: u64 = 100;

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            gas_limit: 0,
            gas_price: "0.000001upokt".into(),
            max_gas_price: DEFAULT_MAX_GAS_PRICE.into(),
            gas_adjustment: 1.7,
            unordered: true,
            tx_timeout_default_seconds: 120,
            max_tx_bytes: DEFAULT_MAX_TX_BYTES,
            submission_buffer_blocks: 1,
            claim_delay_blocks: 1,
            skip_unprofitable_claims: SkipUnprofitableClaims::ExpectedCost,
        }
    }
}
