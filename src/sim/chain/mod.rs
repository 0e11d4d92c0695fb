//! The local Pocket chain simulator (issue 5): chain state built from a genesis, deterministic blocks, the pocket and
//! cosmos gRPC services of spec §1.3 on their real paths, and claim/proof validation exactly as spec §5.4 and
//! §6.1–6.3 say the chain does (module `validate`). Every accepted or rejected message is recorded with the chain's
//! reason so tests and `localnet` can assert on them.
//!
//! The state is a plain struct behind a mutex; [`SimChain::produce_block`] advances it one block (include the
//! mempool, run end-block proof validation, settle claims). A timer task drives it in `relay-miner sim`/`localnet`;
//! tests call it directly for deterministic heights.

pub mod genesis;
mod service;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use k256::ecdsa::SigningKey;

pub use genesis::Genesis;
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
    /// Rewarded with this many uPOKT.
    Settled(u128),
    /// A required proof was missing or invalid: expired and slashed.
    Expired(String),
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

/// A tx result as `GetTx` returns it.
#[derive(Debug, Clone)]
pub struct TxResult {
    /// Including block.
    pub height: i64,
    /// 0 = success.
    pub code: u32,
    /// Failure reason.
    pub log: String,
}

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
    /// Shared params (constant in the simulator; served for every height).
    pub shared: SharedParams,
    /// Proof params.
    pub proof: wire::ProofParams,
    /// Services by id.
    pub services: BTreeMap<String, wire::Service>,
    /// Difficulty target per service.
    pub targets: BTreeMap<String, Vec<u8>>,
    /// Applications by address.
    pub applications: BTreeMap<String, wire::Application>,
    /// Gateways by address.
    pub gateways: BTreeMap<String, wire::Gateway>,
    /// Suppliers by operator address.
    pub suppliers: BTreeMap<String, wire::Supplier>,
    /// Accounts by address.
    pub accounts: BTreeMap<String, Account>,
    /// Claims by (session id, supplier).
    pub claims: BTreeMap<(String, String), ClaimEntry>,
    /// Txs waiting for the next block.
    pub mempool: Vec<Vec<u8>>,
    /// Results of included txs by uppercase hex hash.
    pub txs: HashMap<String, TxResult>,
    /// Every claim/proof message outcome, in order.
    pub records: Vec<MsgRecord>,
    /// Settlement outcomes, in order: (session id, supplier, outcome).
    pub settlements: Vec<(String, String, Settlement)>,
}

/// The simulator handle: shared state.
#[derive(Debug, Clone)]
pub struct SimChain {
    state: Arc<Mutex<ChainState>>,
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

/// Key and address of a genesis actor.
pub fn actor(key_hex: &str) -> Result<(SigningKey, String, [u8; 33]), genesis::GenesisError> {
    let key = address::signing_key_from_hex(key_hex).map_err(|e| genesis::GenesisError::Invalid(e.to_string()))?;
    let pubkey = address::compressed_public_key(key.verifying_key());
    Ok((key.clone(), address::address_of(&key), pubkey))
}

impl SimChain {
    /// A chain at height 1 built from `genesis`.
    pub fn new(genesis: Genesis) -> Result<Self, genesis::GenesisError> {
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
        for s in &g.services {
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
            shared,
            proof,
            services,
            targets,
            applications,
            gateways,
            suppliers,
            accounts,
            claims: BTreeMap::new(),
            mempool: Vec::new(),
            txs: HashMap::new(),
            records: Vec::new(),
            settlements: Vec::new(),
        };
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Locks the state (poisoning is ignored: the state is only mutated by whole, checked steps).
    pub fn state(&self) -> MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current height.
    pub fn height(&self) -> i64 {
        self.state().height
    }

    /// Commits the next block: includes the mempool (each tx atomically), validates pending proofs (end block),
    /// settles claims whose proof window closed. Returns the new height.
    pub fn produce_block(&self) -> i64 {
        let mut s = self.state();
        s.height += 1;
        let height = s.height;
        let hash = block_hash(&s.genesis.chain_id, height);
        s.block_hashes.insert(height, hash);
        let txs = std::mem::take(&mut s.mempool);
        for tx in txs {
            let hash = crate::chain::tx::tx_hash(&tx);
            let result = validate::deliver_tx(&mut s, &tx, height);
            s.txs.insert(hash, result);
        }
        validate::end_block(&mut s, height);
        height
    }

    /// Block time of `height` (unix seconds, one block per `block_time_ms`).
    pub fn block_time(&self, height: i64) -> wire::BlockTime {
        let s = self.state();
        let ms = s.genesis.block_time_ms.max(1) as i64;
        let total_ms = s.genesis_time * 1000 + height * ms;
        wire::BlockTime {
            seconds: total_ms / 1000,
            nanos: ((total_ms % 1000) * 1_000_000) as i32,
        }
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
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
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
