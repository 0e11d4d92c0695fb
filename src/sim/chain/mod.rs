//! The local Pocket chain simulator (issue 5): chain state built from a genesis, deterministic blocks, the pocket and
//! cosmos gRPC services of spec §1.3 on their real paths, and claim/proof validation exactly as spec §5.4 and
//! §6.1–6.3 say the chain does (module `validate`). Every accepted or rejected message is recorded with the chain's
//! reason so tests and `localnet` can assert on them.
//!
//! The state is a plain struct behind a mutex; [`SimChain::produce_block`] advances it one block (include the
//! mempool, run end-block proof validation, settle claims). A timer task drives it in `relay-miner sim`/`localnet`;
//! tests call it directly for deterministic heights.

mod ante;
mod claim_history;
mod cometbft;
mod events;
pub mod fees;
pub mod genesis;
mod params_history;
mod service;
mod settle;
mod stakes;
pub mod tokenomics;
mod validate;
mod validate_basic;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use k256::ecdsa::SigningKey;
use tokio::sync::broadcast;

pub use genesis::Genesis;
pub use params_history::ParamChange;
pub use service::router;

use crate::protocol::wire::{self, SharedParams};
use crate::protocol::{address, sha256};

/// One message outcome recorded by the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgRecord {
    /// Height of the including block.
    pub height: i64,
    /// `claim` or `proof`.
    pub kind: &'static str,
    /// Supplier operator.
    pub supplier: String,
    /// Session id.
    pub session_id: String,
    /// `None` when accepted, else the chain's reason.
    pub rejected: Option<String>,
}

/// What happened to a claim at settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Settled for this many uPOKT: the claim's worth, capped by the application's session budget.
    Settled(u128),
    /// A required proof was missing or invalid: expired and slashed.
    Expired(String),
    /// The settlement failed (poktroll `discardFaultyClaim`: its token logic modules returned an error): the
    /// claim is dropped with an `EventClaimDiscarded` carrying the error, not paid and nobody slashed. Only by
    /// the test knob [`ChainState::discard_settlements`].
    Discarded(String),
}

/// A stored claim.
#[derive(Debug, Clone)]
pub struct ClaimEntry {
    /// The claim as stored (status updated by proof validation).
    pub claim: wire::Claim,
    /// Proof requirement decided at proof time or settlement.
    pub proof_required: Option<bool>,
    /// A proof was accepted at tx time and awaits end-block validation.
    pub proof_pending: Option<wire::MsgSubmitProof>,
    /// Settlement outcome once settled.
    pub settlement: Option<Settlement>,
}

/// A tx result as `GetTx` and CometBFT `tx?hash=` return it.
#[derive(Debug, Clone, Default)]
pub struct TxResult {
    /// Including block.
    pub height: i64,
    /// Position in the including block.
    pub index: u32,
    /// 0 = success.
    pub code: u32,
    /// Module of a non-zero code (`sdk` for ante-handler failures, `proof` for claim/proof failures).
    pub codespace: String,
    /// Failure reason.
    pub log: String,
    /// The raw tx bytes.
    pub tx: Vec<u8>,
}

/// What mempool admission (CheckTx) did with a tx; shared by gRPC `BroadcastTx` and CometBFT `broadcast_tx_sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// In the mempool; the next block includes it (unless held back: [`ChainState::inclusion_delay_blocks`], or
    /// dropped: [`ChainState::drop_accepted_txs`]).
    Accepted,
    /// The same bytes are already in the mempool or committed (CometBFT: "tx already exists in cache").
    Duplicate,
    /// The mempool holds [`MAX_MEMPOOL_TXS`] txs already.
    MempoolFull,
    /// Larger than the mempool's `max_tx_bytes`: CometBFT refuses it before the app's CheckTx (`ErrTxTooLarge`).
    TooLarge {
        /// The mempool's limit.
        max: usize,
        /// The tx's size.
        size: usize,
    },
    /// CheckTx failed: not kept. Codes as the SDK's (2 decode, 4 unauthorized, 5 insufficient funds, 32
    /// account sequence mismatch).
    Rejected {
        /// Non-zero ABCI code.
        code: u32,
        /// Codespace of the code.
        codespace: String,
        /// The SDK-style error text.
        log: String,
    },
}

/// Mempool capacity (every queue bounded).
pub const MAX_MEMPOOL_TXS: usize = 10_000;
/// CometBFT's default `mempool.max_tx_bytes`: a larger tx is refused before CheckTx.
pub const DEFAULT_MAX_TX_BYTES: usize = 1024 * 1024;
/// Capacity of the new-block broadcast: a CometBFT websocket subscriber further behind loses its subscription.
const BLOCK_EVENT_CAPACITY: usize = 1024;

/// An account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Compressed public key (known from genesis or the first tx).
    pub pubkey: Option<[u8; 33]>,
    /// Account number.
    pub number: u64,
    /// Sequence of ordered txs.
    pub sequence: u64,
    /// Spendable uPOKT.
    pub balance: u128,
    /// Test knob: uPOKT the account holds but cannot spend (a vesting account's locked coins): bank `Balance`
    /// counts it, `SpendableBalanceByDenom`, the ante handler and x/proof do not. 0 from genesis.
    pub locked: u128,
}

/// The chain state.
#[derive(Debug)]
pub struct ChainState {
    /// The genesis it started from.
    pub genesis: Genesis,
    /// Latest committed height.
    pub height: i64,
    /// Block hashes by height.
    pub block_hashes: BTreeMap<i64, [u8; 32]>,
    /// Unix seconds of the genesis block.
    pub genesis_time: i64,
    /// The live shared params (`Params`): the last [`ChainState::shared_history`] entry whose effective height
    /// was reached (promoted at that block's end, as poktroll's shared end blocker does), or a change of no
    /// session-timing param at once (poktroll `recordParamsHistory`; `ChainState::record_shared_params`).
    pub shared: SharedParams,
    /// Shared params by effective height (poktroll `ParamsUpdate`; genesis at 1, a change effective at the next
    /// session start): `ParamsAtHeight(h)` answers the last entry at or before `h` ([`ChainState::shared_at`]).
    pub shared_history: BTreeMap<i64, SharedParams>,
    /// Proof params: the chain keeps no history of them and reads the live ones wherever it uses them (proof
    /// requirement at proof submission and again at settlement, the proof submission fee).
    pub proof: wire::ProofParams,
    /// Services by id, with their live `compute_units_per_relay` (what `Service` answers).
    pub services: BTreeMap<String, wire::Service>,
    /// `compute_units_per_relay` per service by effective height (poktroll's CUPR history: the genesis value at
    /// 1, a change effective at the next session start): [`ChainState::compute_units_at`].
    pub compute_units_history: BTreeMap<String, BTreeMap<i64, u64>>,
    /// Live difficulty target per service (what `RelayMiningDifficulty` answers).
    pub targets: BTreeMap<String, Vec<u8>>,
    /// Difficulty target per service by effective height (poktroll's relay mining difficulty history: genesis at
    /// 1, a change effective at the next session start): [`ChainState::target_at`].
    pub difficulty_history: BTreeMap<String, BTreeMap<i64, Vec<u8>>>,
    /// Changes asked for by the test knobs ([`SimChain::set_compute_units_per_relay`] and the like), applied when
    /// the next block is produced, as the tx making them would be included there.
    pub pending_changes: Vec<ParamChange>,
    /// Tokenomics params settlement reads (poktroll's defaults; tests may change them).
    pub tokenomics: tokenomics::TokenomicsParams,
    /// Applications by address (their stake is burnt by what their sessions' claims are settled for).
    pub applications: BTreeMap<String, wire::Application>,
    /// Gateways by address.
    pub gateways: BTreeMap<String, wire::Gateway>,
    /// Suppliers by operator address.
    pub suppliers: BTreeMap<String, wire::Supplier>,
    /// Accounts by address.
    pub accounts: BTreeMap<String, Account>,
    /// Live claims by (session id, supplier): a `Claim` query finds these.
    pub claims: BTreeMap<(String, String), ClaimEntry>,
    /// The claims as of each height they changed at: a `Claim` query pinned to a height, or answered by a
    /// lagging node, reads them ([`ChainState::claim_at`]).
    pub claim_history: claim_history::ClaimHistory,
    /// Claims removed at settlement (poktroll deletes them from state; an archive node still has them), with
    /// their outcome; for tests and `localnet` reports.
    pub settled: BTreeMap<(String, String), ClaimEntry>,
    /// Finalize-block events by height (`block_results`): the settlements of each block.
    pub finalize_events: BTreeMap<i64, Vec<crate::chain::comet::AbciEvent>>,
    /// Txs waiting for a block (the next one, or a later one: [`ChainState::inclusion_delay_blocks`]).
    pub mempool: Vec<Vec<u8>>,
    /// The txs of each block, in order (CometBFT `block.data.txs`).
    pub block_txs: BTreeMap<i64, Vec<Vec<u8>>>,
    /// CheckTx state: the next sequence per signer counting ordered txs admitted to the mempool since the last
    /// block (the SDK's `checkState`); cleared at each block and filled again by the
    /// recheck of the txs still waiting.
    pub check_sequences: BTreeMap<String, u64>,
    /// Committed unordered nonces: (timeout as (unix seconds, nanos), signer) of every unordered tx delivered whose
    /// timeout has not passed (cosmos-sdk v0.53 `x/auth` `UnorderedNonces`, pruned each block before its txs).
    pub unordered_nonces: BTreeSet<((i64, i32), String)>,
    /// Unordered nonces of txs admitted to the mempool since the last block (the check state's view on top of
    /// the committed ones); cleared at each block and filled again by
    /// the recheck of the txs still waiting.
    pub check_unordered_nonces: BTreeSet<((i64, i32), String)>,
    /// Test knob: the next this many Simulate calls are refused (gRPC `Unknown`), as a node whose committed state
    /// is a block behind its latest block refuses a claim sent at `claim_open` ("outside the claim window").
    pub refuse_simulations: usize,
    /// Test knob: the next this many `BroadcastTx` calls run CheckTx as usual (an admitted tx is in the mempool)
    /// and then never answer, so the caller's call times out: the answer lost after the node took the tx.
    pub lose_broadcast_answers: usize,
    /// Test knob: the next this many `BroadcastTx` calls run CheckTx as usual (an admitted tx is in the mempool)
    /// and then answer a gRPC `Unknown` error (a node whose own hop to CometBFT failed after CheckTx): an error
    /// that is no timeout, with the tx taken all the same.
    pub fail_broadcast_answers: usize,
    /// Test knob: each of the next this many `BroadcastTx` calls commits a block before it answers (a slow answer
    /// while the chain moves on), which includes the tx if CheckTx admitted it.
    pub blocks_after_broadcasts: usize,
    /// Test knob: `SpendableBalanceByDenom` is answered gRPC `Unimplemented`, as by a node whose SDK predates it.
    pub spendable_balance_unimplemented: bool,
    /// Test knob: `GetTx` fails as on a node whose tx indexer is off (`indexer = "null"`): whether a tx was
    /// included cannot be looked up.
    pub tx_index_disabled: bool,
    /// Test knob: the node answering queries is this many blocks behind the chain, as behind a load balancer
    /// whose backends lag: its answers carry `x-cosmos-block-height` = height − lag, and the at-height
    /// difficulty and compute-units queries answer what such a node knows: the history entries effective up to
    /// one block past its height (the chain writes the entry a session start takes at a settlement during the
    /// session before, in the end block just before it at the latest; this simulator writes entries early).
    /// `Claim` queries answer the claims as of its height ([`ChainState::claim_at`]); a query pinned above it
    /// (`x-cosmos-block-height`) is refused as cosmos-sdk refuses a height in the future.
    pub query_lag_blocks: i64,
    /// Test knob: each tx CheckTx admits while this is N waits N blocks more in the mempool before a block includes
    /// it (taken at height h, it lands at h + 1 + N), as when blocks are full or the proposers' mempools are behind
    /// ours. A waiting tx is checked again after each block (CometBFT's recheck, `mempool.recheck = true`: dropped,
    /// and out of the cache, if CheckTx now refuses it, e.g. its unordered timeout passed) and run against the
    /// state of the block that finally includes it (a claim landing after its window fails there, in its block).
    pub inclusion_delay_blocks: i64,
    /// The earliest height at which a block may include each waiting tx, by uppercase hex hash
    /// ([`ChainState::inclusion_delay_blocks`]); a tx of the mempool without an entry goes in the next block.
    pub included_not_before: HashMap<String, i64>,
    /// Test knob: the next this many txs CheckTx admits (answered code 0) leave the mempool at once and are never
    /// included: gone from the node's cache and check state too, as after a node restart (CometBFT keeps both in
    /// memory), so the same bytes broadcast again are taken anew.
    pub drop_accepted_txs: usize,
    /// Test knob: the next this many claims a settlement would pay fail to settle instead
    /// ([`Settlement::Discarded`]).
    pub discard_settlements: usize,
    /// Test knob: the lowest block the CometBFT endpoints still serve (`block`, `block_results`), as a node
    /// with pruning (CometBFT `retain_height`); lower heights are answered with CometBFT's error. 0 = all.
    pub lowest_served_height: i64,
    /// Test knob: how many blocks the CometBFT endpoint's `block` / `block_results` by height lag the chain (its
    /// RPC on other infrastructure than the gRPC node): a height within them is answered "must be less than or
    /// equal to the current blockchain height". 0 = none.
    pub comet_lag_blocks: i64,
    /// The mempool's largest tx (CometBFT `mempool.max_tx_bytes`; [`DEFAULT_MAX_TX_BYTES`]).
    pub max_tx_bytes: usize,
    /// The node's `minimum-gas-prices` (app.toml; [`SimChain::set_minimum_gas_prices`]): CheckTx refuses a lower
    /// fee with code 13. None by default, as poktroll's localnet app.toml (`0upokt`).
    pub minimum_gas_prices: Vec<crate::chain::fees::GasPrice>,
    /// Test knob: the validators' minimum gas price, above the node's: CheckTx (the node's) takes a tx paying less,
    /// which then stays in the mempool and no block includes it, as when validators refuse the gossiped tx
    /// ([`fees::below_inclusion_price`]; parse with [`fees::parse_minimum_gas_prices`]). None by default.
    pub min_inclusion_gas_prices: Vec<crate::chain::fees::GasPrice>,
    /// Test knob: the node's `cosmos.base.node.v1beta1.Service/Config` answers `Unimplemented`, as behind a
    /// gateway that forwards only the pocket and tx services; CheckTx still applies the minimum gas prices.
    pub node_config_unavailable: bool,
    /// The upokt fee of the last tx Simulate ran (for tests: what fee the gas estimate included).
    pub last_simulated_fee: Option<u128>,
    /// Results of included txs by uppercase hex hash.
    pub txs: HashMap<String, TxResult>,
    /// Every claim/proof message outcome, in order.
    pub records: Vec<MsgRecord>,
    /// Settlement outcomes, in order: (session id, supplier, outcome).
    pub settlements: Vec<(String, String, Settlement)>,
}

impl ChainState {
    /// Counts a tx CheckTx took in the check state: the signer's next sequence, or its unordered nonce.
    fn admit(&mut self, signer: String, body: &crate::chain::tx::TxBody) {
        if body.unordered {
            validate::record_unordered_nonce(self, &signer, body, validate::Mode::Check);
        } else {
            let next = validate::expected_sequence(self, &signer, validate::Mode::Check).saturating_add(1);
            self.check_sequences.insert(signer, next);
        }
    }

    /// CometBFT's recheck after a block (`mempool.recheck = true`): the txs still waiting go through CheckTx again,
    /// in order, against the state just committed; those it refuses now (their sequence used, their unordered
    /// timeout or timeout height passed, their fee no longer covered) leave the mempool and, with the default
    /// `keep-invalid-txs-in-cache = false`, the cache: broadcast again, they meet CheckTx anew.
    fn recheck(&mut self, waiting: Vec<Vec<u8>>) {
        for tx in waiting {
            let hash = crate::chain::tx::tx_hash(&tx);
            match validate::check_tx(self, &tx, validate::Mode::Check) {
                Ok((signer, body, _)) => {
                    self.admit(signer, &body);
                    self.mempool.push(tx);
                }
                Err(refusal) => {
                    tracing::debug!(tx = %hash, code = refusal.code, log = %refusal.log, "sim: recheck dropped a tx");
                    self.included_not_before.remove(&hash);
                }
            }
        }
        let mempool: std::collections::HashSet<String> =
            self.mempool.iter().map(|tx| crate::chain::tx::tx_hash(tx)).collect();
        self.included_not_before.retain(|hash, _| mempool.contains(hash));
    }
}

/// The simulator handle: shared state.
#[derive(Debug, Clone)]
pub struct SimChain {
    /// Everything, behind one lock: each step (a block, a CheckTx, a query) sees a consistent state.
    state: Arc<Mutex<ChainState>>,
    /// Committed blocks for CometBFT `/websocket` subscribers; sent after the state lock is released.
    events: broadcast::Sender<crate::chain::comet::BlockInfo>,
    /// gRPC requests received per method path by every [`router`] of this chain (tests assert what clients ask).
    grpc_calls: crate::sim::grpc::CallCounts,
    /// gRPC requests every [`router`] of this chain fails (test faults, [`SimChain::fail_grpc_next`]).
    grpc_faults: crate::sim::grpc::Faults,
}

/// Deterministic block hash of the simulator: SHA256(chain id ‖ height).
pub fn block_hash(chain_id: &str, height: i64) -> [u8; 32] {
    let mut input = chain_id.as_bytes().to_vec();
    input.extend_from_slice(&height.to_be_bytes());
    sha256(&input)
}

fn coin(amount: u64) -> Option<wire::Coin> {
    Some(wire::Coin {
        denom: "upokt".into(),
        amount: amount.to_string(),
    })
}

/// Block time of `height` in `s` (no lock taken: callers already hold it).
fn block_time_of(s: &ChainState, height: i64) -> wire::BlockTime {
    let ms = i64::try_from(s.genesis.block_time_ms.max(1)).unwrap_or(i64::MAX);
    let total_ms = s
        .genesis_time
        .saturating_mul(1000)
        .saturating_add(height.saturating_mul(ms));
    wire::BlockTime {
        seconds: total_ms.div_euclid(1000),
        nanos: i32::try_from(total_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Key and address of a genesis actor.
pub fn actor(key_hex: &str) -> Result<(SigningKey, String, [u8; 33]), genesis::GenesisError> {
    let key = address::signing_key_from_hex(key_hex).map_err(|e| genesis::GenesisError::Invalid(e.to_string()))?;
    let pubkey = address::compressed_public_key(key.verifying_key());
    Ok((key.clone(), address::address_of(&key), pubkey))
}

impl SimChain {
    /// A chain at height 1 built from `genesis`.
    pub fn new(genesis: Genesis) -> Result<Self, genesis::GenesisError> {
        genesis.validate()?;
        let g = &genesis;
        let sp = &g.shared_params;
        let shared = SharedParams {
            num_blocks_per_session: sp.num_blocks_per_session,
            grace_period_end_offset_blocks: sp.grace_period_end_offset_blocks,
            claim_window_open_offset_blocks: sp.claim_window_open_offset_blocks,
            claim_window_close_offset_blocks: sp.claim_window_close_offset_blocks,
            proof_window_open_offset_blocks: sp.proof_window_open_offset_blocks,
            proof_window_close_offset_blocks: sp.proof_window_close_offset_blocks,
            supplier_unbonding_period_sessions: 1,
            application_unbonding_period_sessions: 1,
            compute_units_to_tokens_multiplier: sp.compute_units_to_tokens_multiplier,
            gateway_unbonding_period_sessions: 1,
            compute_unit_cost_granularity: sp.compute_unit_cost_granularity,
            session_grid_anchor_height: 1,
            session_number_at_anchor: 1,
        };
        let pp = &g.proof_params;
        let proof = wire::ProofParams {
            proof_request_probability: pp.proof_request_probability,
            proof_requirement_threshold: coin(pp.proof_requirement_threshold_upokt),
            proof_missing_penalty: coin(pp.proof_missing_penalty_upokt),
            proof_submission_fee: coin(pp.proof_submission_fee_upokt),
        };
        let mut services = BTreeMap::new();
        let mut targets = BTreeMap::new();
        let mut compute_units_history = BTreeMap::new();
        let mut difficulty_history = BTreeMap::new();
        for s in &g.services {
            compute_units_history.insert(s.id.clone(), BTreeMap::from([(1, s.compute_units_per_relay)]));
            services.insert(
                s.id.clone(),
                wire::Service {
                    id: s.id.clone(),
                    name: s.id.clone(),
                    compute_units_per_relay: s.compute_units_per_relay,
                    ..Default::default()
                },
            );
            let target = match &s.difficulty_target_hex {
                Some(h) => hex::decode(h)
                    .ok()
                    .filter(|t| t.len() == 32)
                    .ok_or_else(|| genesis::GenesisError::Invalid(format!("service {} target", s.id)))?,
                None => crate::protocol::difficulty::BASE_TARGET.to_vec(),
            };
            difficulty_history.insert(s.id.clone(), BTreeMap::from([(1, target.clone())]));
            targets.insert(s.id.clone(), target);
        }
        let mut accounts = BTreeMap::new();
        let mut add_account = |address: &str, pubkey: [u8; 33], balance: u128| {
            let number = accounts.len() as u64 + 1;
            accounts.insert(
                address.to_string(),
                Account {
                    pubkey: Some(pubkey),
                    number,
                    sequence: 0,
                    balance,
                    locked: 0,
                },
            );
        };
        let mut gateways = BTreeMap::new();
        let mut gateway_addresses = Vec::new();
        for gw in &g.gateways {
            let (_, addr, pubkey) = actor(&gw.key_hex)?;
            add_account(&addr, pubkey, 1_000_000);
            gateways.insert(
                addr.clone(),
                wire::Gateway {
                    address: addr.clone(),
                    stake: coin(gw.stake_upokt),
                    ..Default::default()
                },
            );
            gateway_addresses.push(addr);
        }
        let mut applications = BTreeMap::new();
        for app in &g.applications {
            let (_, addr, pubkey) = actor(&app.key_hex)?;
            add_account(&addr, pubkey, 1_000_000);
            let delegatees = app
                .delegate_to
                .iter()
                .filter_map(|i| gateway_addresses.get(*i).cloned())
                .collect();
            applications.insert(
                addr.clone(),
                wire::Application {
                    address: addr.clone(),
                    stake: coin(app.stake_upokt),
                    service_configs: app
                        .services
                        .iter()
                        .map(|s| wire::ApplicationServiceConfig { service_id: s.clone() })
                        .collect(),
                    delegatee_gateway_addresses: delegatees,
                    ..Default::default()
                },
            );
        }
        let mut suppliers = BTreeMap::new();
        for sup in &g.suppliers {
            let (_, addr, pubkey) = actor(&sup.key_hex)?;
            add_account(&addr, pubkey, u128::from(sup.balance_upokt));
            let services = sup
                .services
                .iter()
                .map(|s| wire::SupplierServiceConfig {
                    service_id: s.service_id.clone(),
                    endpoints: vec![wire::SupplierEndpoint {
                        url: s.url.clone(),
                        rpc_type: wire::RpcType::JsonRpc as i32,
                        configs: vec![],
                    }],
                    rev_share: vec![],
                })
                .collect::<Vec<_>>();
            let history = services
                .iter()
                .map(|s| wire::ServiceConfigUpdate {
                    operator_address: addr.clone(),
                    service: Some(s.clone()),
                    activation_height: 1,
                    deactivation_height: 0,
                })
                .collect();
            suppliers.insert(
                addr.clone(),
                wire::Supplier {
                    owner_address: addr.clone(),
                    operator_address: addr.clone(),
                    stake: coin(sup.stake_upokt),
                    services,
                    unstake_session_end_height: 0,
                    service_config_history: history,
                },
            );
        }
        let mut block_hashes = BTreeMap::new();
        block_hashes.insert(1, block_hash(&g.chain_id, 1));
        let state = ChainState {
            genesis: genesis.clone(),
            height: 1,
            block_hashes,
            genesis_time: 1_700_000_000,
            shared_history: BTreeMap::from([(1, shared.clone())]),
            shared,
            proof,
            services,
            compute_units_history,
            targets,
            difficulty_history,
            pending_changes: Vec::new(),
            tokenomics: tokenomics::TokenomicsParams::default(),
            applications,
            gateways,
            suppliers,
            accounts,
            claims: BTreeMap::new(),
            claim_history: claim_history::ClaimHistory::default(),
            mempool: Vec::new(),
            block_txs: BTreeMap::new(),
            check_sequences: BTreeMap::new(),
            unordered_nonces: BTreeSet::new(),
            check_unordered_nonces: BTreeSet::new(),
            refuse_simulations: 0,
            lose_broadcast_answers: 0,
            fail_broadcast_answers: 0,
            blocks_after_broadcasts: 0,
            spendable_balance_unimplemented: false,
            tx_index_disabled: false,
            query_lag_blocks: 0,
            inclusion_delay_blocks: 0,
            included_not_before: HashMap::new(),
            drop_accepted_txs: 0,
            discard_settlements: 0,
            lowest_served_height: 0,
            comet_lag_blocks: 0,
            max_tx_bytes: DEFAULT_MAX_TX_BYTES,
            minimum_gas_prices: Vec::new(),
            min_inclusion_gas_prices: Vec::new(),
            node_config_unavailable: false,
            last_simulated_fee: None,
            txs: HashMap::new(),
            records: Vec::new(),
            settlements: Vec::new(),
            settled: BTreeMap::new(),
            finalize_events: BTreeMap::new(),
        };
        let (events, _) = broadcast::channel(BLOCK_EVENT_CAPACITY);
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            events,
            grpc_calls: Default::default(),
            grpc_faults: Default::default(),
        })
    }

    /// Locks the state (poisoning is ignored: the state is only mutated by whole, checked steps).
    pub fn state(&self) -> MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the node's `minimum-gas-prices` as app.toml writes it (`1upokt`; empty or `0upokt` for none).
    pub fn set_minimum_gas_prices(&self, prices: &str) -> Result<(), String> {
        let prices = fees::parse_minimum_gas_prices(prices)?;
        self.state().minimum_gas_prices = prices;
        Ok(())
    }

    /// Changes `service`'s `compute_units_per_relay` in the next block (its owner's `MsgAddService`): `Service`
    /// answers the new value from that block on, `ComputeUnitsPerRelayAtHeight` from the next session start.
    pub fn set_compute_units_per_relay(&self, service: &str, compute_units_per_relay: u64) -> Result<(), String> {
        let mut s = self.state();
        if !s.services.contains_key(service) {
            return Err(format!("service {service} not found"));
        }
        if compute_units_per_relay == 0 {
            return Err("compute_units_per_relay must be positive".into());
        }
        s.pending_changes.push(ParamChange::ComputeUnitsPerRelay {
            service: service.to_string(),
            compute_units_per_relay,
        });
        Ok(())
    }

    /// Changes `service`'s relay mining difficulty target in the next block: `RelayMiningDifficulty` answers it
    /// from that block on, `RelayMiningDifficultyAtHeight` from the next session start.
    pub fn set_relay_mining_difficulty(&self, service: &str, target: [u8; 32]) -> Result<(), String> {
        let mut s = self.state();
        if !s.services.contains_key(service) {
            return Err(format!("service {service} not found"));
        }
        s.pending_changes.push(ParamChange::Difficulty {
            service: service.to_string(),
            target: target.to_vec(),
        });
        Ok(())
    }

    /// Changes the shared params in the next block: in `ParamsAtHeight` (and every check reading it) from the
    /// next session start; live (`Params`) then too, or in that block already when no session-timing param changes
    /// (poktroll `recordParamsHistory`; `ChainState::record_shared_params`). The anchor fields of `params` are
    /// replaced.
    pub fn set_shared_params(&self, params: SharedParams) -> Result<(), String> {
        crate::protocol::session::SessionGrid::new(&params).map_err(|e| e.to_string())?;
        self.state().pending_changes.push(ParamChange::Shared(params));
        Ok(())
    }

    /// Changes the proof params in the next block (live from that block on, as on chain: no history).
    pub fn set_proof_params(&self, params: wire::ProofParams) {
        self.state().pending_changes.push(ParamChange::Proof(params));
    }

    /// Current height.
    pub fn height(&self) -> i64 {
        self.state().height
    }

    /// Commits the next block: includes the mempool (each tx atomically, against this block's state) but the txs
    /// held back for a later block ([`ChainState::inclusion_delay_blocks`]), validates pending proofs (end block),
    /// settles claims whose proof window closed, rechecks the txs still waiting, then publishes the block to
    /// CometBFT subscribers. Returns the new height.
    pub fn produce_block(&self) -> i64 {
        let block = {
            let mut s = self.state();
            s.height += 1;
            let height = s.height;
            let hash = block_hash(&s.genesis.chain_id, height);
            s.block_hashes.insert(height, hash);
            s.apply_pending_changes(height);
            // Every admitted tx is in this block but those held back (`inclusion_delay_blocks`, or below the
            // validators' price): the check state starts again from the committed sequences, and the held ones are
            // checked again after the block.
            let (waiting, txs): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
                std::mem::take(&mut s.mempool).into_iter().partition(|tx| {
                    s.included_not_before
                        .get(&crate::chain::tx::tx_hash(tx))
                        .is_some_and(|not_before| *not_before > height)
                        || fees::below_inclusion_price(&s.min_inclusion_gas_prices, tx)
                });
            s.check_sequences.clear();
            s.check_unordered_nonces.clear();
            let now = block_time_of(&s, height);
            validate::expire_unordered_nonces(&mut s, (now.seconds, now.nanos));
            for (index, tx) in txs.iter().enumerate() {
                let hash = crate::chain::tx::tx_hash(tx);
                let recorded = s.records.len();
                let mut result = validate::deliver_tx(&mut s, tx, height);
                result.index = u32::try_from(index).unwrap_or(u32::MAX);
                result.tx = tx.clone();
                if result.code != 0 {
                    // The result's log may be redacted ("internal"), as a node's: the messages' reasons too.
                    let reasons: Vec<&str> = s.records[recorded..]
                        .iter()
                        .filter_map(|r| r.rejected.as_deref())
                        .collect();
                    tracing::debug!(height, tx = %hash, code = result.code, log = %result.log, ?reasons, "sim: tx failed");
                }
                s.txs.insert(hash, result);
            }
            s.block_txs.insert(height, txs);
            settle::end_block(&mut s, height);
            if let Some(params) = s.shared_history.get(&height).cloned() {
                s.shared = params;
            }
            s.recheck(waiting);
            let ChainState {
                claims, claim_history, ..
            } = &mut *s;
            claim_history.record(height, claims);
            cometbft::block_info(&s, height)
        };
        let height = block.as_ref().map_or(0, |b| b.height);
        if let Some(block) = block {
            // No subscriber is fine.
            let _ = self.events.send(block);
        }
        height
    }

    /// Mempool admission (CheckTx): authenticates `tx` against the check state (ordered txs must carry the
    /// signer's next sequence counting txs already admitted, like the SDK's `checkState`) and queues it for the
    /// next block.
    pub fn submit_tx(&self, tx: Vec<u8>) -> Admission {
        let mut s = self.state();
        let hash = crate::chain::tx::tx_hash(&tx);
        // CometBFT v0.38's mempool cache (mempool/clist_mempool.go): a tx in the mempool, or committed with code
        // 0, is "already in cache"; one that failed in its block was removed from the cache (`Update`, with the
        // default `keep-invalid-txs-in-cache = false`), so it goes through CheckTx again, which refuses it for the
        // sequence or unordered nonce its ante handler already used in that block.
        let committed_ok = s.txs.get(&hash).is_some_and(|r| r.code == 0);
        if committed_ok || s.mempool.contains(&tx) {
            return Admission::Duplicate;
        }
        if s.mempool.len() >= MAX_MEMPOOL_TXS {
            return Admission::MempoolFull;
        }
        if tx.len() > s.max_tx_bytes {
            // CometBFT's mempool refuses it before the app sees it; the SDK's broadcast answers code 21.
            return Admission::TooLarge {
                max: s.max_tx_bytes,
                size: tx.len(),
            };
        }
        match validate::check_tx(&s, &tx, validate::Mode::Check) {
            Ok(_) if s.drop_accepted_txs > 0 => {
                // Answered as taken, then lost with the node's memory of it (`drop_accepted_txs`).
                s.drop_accepted_txs -= 1;
                tracing::debug!(tx = %hash, "sim: tx admitted and dropped from the mempool");
                Admission::Accepted
            }
            Ok((signer, body, _)) => {
                s.admit(signer, &body);
                if s.inclusion_delay_blocks > 0 {
                    let not_before = s.height.saturating_add(1).saturating_add(s.inclusion_delay_blocks);
                    s.included_not_before.insert(hash, not_before);
                }
                s.mempool.push(tx);
                Admission::Accepted
            }
            Err(refusal) => {
                tracing::debug!(tx = %hash, code = refusal.code, log = %refusal.log, "sim: CheckTx rejected");
                Admission::Rejected {
                    code: refusal.code,
                    codespace: refusal.codespace.to_string(),
                    log: refusal.log,
                }
            }
        }
    }

    /// Block time of `height` (unix seconds, one block per `block_time_ms`).
    pub fn block_time(&self, height: i64) -> wire::BlockTime {
        block_time_of(&self.state(), height)
    }

    /// The committed block at `height` as CometBFT reports it (`None` if not committed).
    pub fn block_info(&self, height: i64) -> Option<crate::chain::comet::BlockInfo> {
        cometbft::block_info(&self.state(), height)
    }

    /// New committed blocks (subscribe before reading state so nothing is missed).
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<crate::chain::comet::BlockInfo> {
        self.events.subscribe()
    }

    /// Every message outcome so far.
    pub fn records(&self) -> Vec<MsgRecord> {
        self.state().records.clone()
    }

    /// Every settlement so far.
    pub fn settlements(&self) -> Vec<(String, String, Settlement)> {
        self.state().settlements.clone()
    }

    /// Runs blocks every `block_time_ms` until `shutdown` resolves.
    pub async fn run_blocks(&self, shutdown: impl std::future::Future<Output = ()>) {
        let interval_ms = self.state().genesis.block_time_ms.max(1);
        self.run_blocks_every(std::time::Duration::from_millis(interval_ms), shutdown)
            .await;
    }

    /// Runs blocks every `interval` until `shutdown` resolves; after a stall it keeps the cadence rather than
    /// bursting blocks.
    pub async fn run_blocks_every(
        &self,
        interval: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let interval = interval.max(std::time::Duration::from_millis(1));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => { self.produce_block(); }
            }
        }
    }
}

#[cfg(test)]
mod tests;
