//! Wire types (§1.2, §1.3) as hand-written prost structs (no build.rs, no protoc). prost emits fields in ascending
//! tag order and omits proto3 zero values, which is what gogoproto's stable marshaler does (§1.1); maps are
//! `BTreeMap` so they encode key-sorted and deterministic. Non-nullable embedded messages (`RelayRequest.meta`,
//! `RelayResponse.meta`) are `Option` here and are always `Some` after `protocol::relay` decoding normalizes them.
//!
//! Field docs are omitted where the field name and the spec table say it all; the message doc names the proto.
#![allow(missing_docs)]

mod query;
mod relay;

pub use query::*;
pub use relay::*;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Any {
    /// Type URL, e.g. `/pocket.proof.MsgCreateClaim`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl Any {
    /// Wraps an encoded prost message under `type_url`.
    pub fn pack<M: prost::Message>(type_url: &str, msg: &M) -> Self {
        Self {
            type_url: type_url.to_string(),
            value: msg.encode_to_vec(),
        }
    }
}

/// Any type URL of `MsgCreateClaim`.
pub const MSG_CREATE_CLAIM_TYPE_URL: &str = "/pocket.proof.MsgCreateClaim";
/// Any type URL of `MsgSubmitProof`.
pub const MSG_SUBMIT_PROOF_TYPE_URL: &str = "/pocket.proof.MsgSubmitProof";
/// Any type URL of a cosmos `BaseAccount`.
pub const BASE_ACCOUNT_TYPE_URL: &str = "/cosmos.auth.v1beta1.BaseAccount";

/// `cosmos.base.v1beta1.Coin`; `amount` is a decimal string.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Coin {
    #[prost(string, tag = "1")]
    pub denom: String,
    #[prost(string, tag = "2")]
    pub amount: String,
}

/// `pocket.session.SessionHeader`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SessionHeader {
    #[prost(string, tag = "1")]
    pub application_address: String,
    #[prost(string, tag = "2")]
    pub service_id: String,
    #[prost(string, tag = "3")]
    pub session_id: String,
    #[prost(int64, tag = "4")]
    pub session_start_block_height: i64,
    #[prost(int64, tag = "5")]
    pub session_end_block_height: i64,
}

/// `pocket.shared.Params` (§1.2 table).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SharedParams {
    #[prost(uint64, tag = "1")]
    pub num_blocks_per_session: u64,
    #[prost(uint64, tag = "2")]
    pub grace_period_end_offset_blocks: u64,
    #[prost(uint64, tag = "3")]
    pub claim_window_open_offset_blocks: u64,
    #[prost(uint64, tag = "4")]
    pub claim_window_close_offset_blocks: u64,
    #[prost(uint64, tag = "5")]
    pub proof_window_open_offset_blocks: u64,
    #[prost(uint64, tag = "6")]
    pub proof_window_close_offset_blocks: u64,
    #[prost(uint64, tag = "7")]
    pub supplier_unbonding_period_sessions: u64,
    #[prost(uint64, tag = "8")]
    pub application_unbonding_period_sessions: u64,
    #[prost(uint64, tag = "9")]
    pub compute_units_to_tokens_multiplier: u64,
    #[prost(uint64, tag = "10")]
    pub gateway_unbonding_period_sessions: u64,
    #[prost(uint64, tag = "11")]
    pub compute_unit_cost_granularity: u64,
    #[prost(int64, tag = "12")]
    pub session_grid_anchor_height: i64,
    #[prost(int64, tag = "13")]
    pub session_number_at_anchor: i64,
}

/// `pocket.proof.Params`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProofParams {
    #[prost(double, tag = "2")]
    pub proof_request_probability: f64,
    #[prost(message, optional, tag = "3")]
    pub proof_requirement_threshold: Option<Coin>,
    #[prost(message, optional, tag = "4")]
    pub proof_missing_penalty: Option<Coin>,
    #[prost(message, optional, tag = "5")]
    pub proof_submission_fee: Option<Coin>,
}

/// `pocket.session.Session`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Session {
    #[prost(message, optional, tag = "1")]
    pub header: Option<SessionHeader>,
    #[prost(string, tag = "2")]
    pub session_id: String,
    #[prost(int64, tag = "3")]
    pub session_number: i64,
    #[prost(int64, tag = "4")]
    pub num_blocks_per_session: i64,
    #[prost(message, optional, tag = "5")]
    pub application: Option<Application>,
    #[prost(message, repeated, tag = "6")]
    pub suppliers: Vec<Supplier>,
}

/// `pocket.session.Params`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionParams {
    #[prost(uint64, tag = "3")]
    pub num_suppliers_per_session: u64,
}

/// `pocket.shared.ParamsUpdate` (history used by `ParamsAtHeight`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SharedParamsUpdate {
    #[prost(int64, tag = "1")]
    pub effective_height: i64,
    #[prost(message, optional, tag = "2")]
    pub params: Option<SharedParams>,
}

/// `pocket.application.Application`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Application {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(message, optional, tag = "2")]
    pub stake: Option<Coin>,
    #[prost(message, repeated, tag = "3")]
    pub service_configs: Vec<ApplicationServiceConfig>,
    #[prost(string, repeated, tag = "4")]
    pub delegatee_gateway_addresses: Vec<String>,
    /// Keyed by the session end height at which the undelegation was recorded (spec §2.4).
    #[prost(btree_map = "uint64, message", tag = "5")]
    pub pending_undelegations: std::collections::BTreeMap<u64, UndelegatingGatewayList>,
    #[prost(uint64, tag = "6")]
    pub unstake_session_end_height: u64,
    #[prost(message, optional, tag = "7")]
    pub pending_transfer: Option<PendingApplicationTransfer>,
    #[prost(message, optional, tag = "8")]
    pub per_session_spend_limit: Option<Coin>,
    #[prost(message, repeated, tag = "9")]
    pub service_config_history: Vec<ApplicationServiceConfigUpdate>,
}

/// `pocket.application.UndelegatingGatewayList`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UndelegatingGatewayList {
    #[prost(string, repeated, tag = "2")]
    pub gateway_addresses: Vec<String>,
}

/// `pocket.application.PendingApplicationTransfer`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PendingApplicationTransfer {
    #[prost(string, tag = "1")]
    pub destination_address: String,
    #[prost(uint64, tag = "2")]
    pub session_end_height: u64,
}

/// `pocket.application.ApplicationServiceConfigUpdate`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ApplicationServiceConfigUpdate {
    #[prost(string, tag = "1")]
    pub application_address: String,
    #[prost(message, optional, tag = "2")]
    pub service: Option<ApplicationServiceConfig>,
    #[prost(int64, tag = "3")]
    pub activation_height: i64,
    #[prost(int64, tag = "4")]
    pub deactivation_height: i64,
}

/// `pocket.gateway.Gateway`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Gateway {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(message, optional, tag = "2")]
    pub stake: Option<Coin>,
    #[prost(uint64, tag = "3")]
    pub unstake_session_end_height: u64,
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<Metadata>,
}

/// `pocket.shared.Service`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Service {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(uint64, tag = "3")]
    pub compute_units_per_relay: u64,
    #[prost(string, tag = "4")]
    pub owner_address: String,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
}

/// `pocket.shared.Metadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Metadata {
    #[prost(bytes = "vec", tag = "1")]
    pub card: Vec<u8>,
}

/// `pocket.shared.ApplicationServiceConfig`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ApplicationServiceConfig {
    #[prost(string, tag = "1")]
    pub service_id: String,
}

/// `pocket.shared.SupplierServiceConfig`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SupplierServiceConfig {
    #[prost(string, tag = "1")]
    pub service_id: String,
    #[prost(message, repeated, tag = "2")]
    pub endpoints: Vec<SupplierEndpoint>,
    #[prost(message, repeated, tag = "3")]
    pub rev_share: Vec<ServiceRevenueShare>,
}

/// `pocket.shared.SupplierEndpoint`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SupplierEndpoint {
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(enumeration = "RpcType", tag = "2")]
    pub rpc_type: i32,
    #[prost(message, repeated, tag = "3")]
    pub configs: Vec<ConfigOption>,
}

/// `pocket.shared.ServiceRevenueShare` (field 2 reserved).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ServiceRevenueShare {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(uint64, tag = "3")]
    pub rev_share_percentage: u64,
}

/// `pocket.shared.RPCType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RpcType {
    UnknownRpc = 0,
    Grpc = 1,
    Websocket = 2,
    JsonRpc = 3,
    Rest = 4,
    CometBft = 5,
}

/// `pocket.shared.ConfigOptions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfigOptions {
    UnknownConfig = 0,
    Timeout = 1,
}

/// `pocket.shared.ConfigOption`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfigOption {
    #[prost(enumeration = "ConfigOptions", tag = "1")]
    pub key: i32,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `pocket.shared.Supplier`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Supplier {
    #[prost(string, tag = "1")]
    pub owner_address: String,
    #[prost(string, tag = "2")]
    pub operator_address: String,
    #[prost(message, optional, tag = "3")]
    pub stake: Option<Coin>,
    #[prost(message, repeated, tag = "4")]
    pub services: Vec<SupplierServiceConfig>,
    #[prost(uint64, tag = "5")]
    pub unstake_session_end_height: u64,
    #[prost(message, repeated, tag = "6")]
    pub service_config_history: Vec<ServiceConfigUpdate>,
}

/// `pocket.shared.ServiceConfigUpdate`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ServiceConfigUpdate {
    #[prost(string, tag = "1")]
    pub operator_address: String,
    #[prost(message, optional, tag = "2")]
    pub service: Option<SupplierServiceConfig>,
    #[prost(int64, tag = "3")]
    pub activation_height: i64,
    #[prost(int64, tag = "4")]
    pub deactivation_height: i64,
}

/// `pocket.proof.Proof`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Proof {
    #[prost(string, tag = "1")]
    pub supplier_operator_address: String,
    #[prost(message, optional, tag = "2")]
    pub session_header: Option<SessionHeader>,
    #[prost(bytes = "vec", tag = "3")]
    pub closest_merkle_proof: Vec<u8>,
}

/// `pocket.proof.Claim`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Claim {
    #[prost(string, tag = "1")]
    pub supplier_operator_address: String,
    #[prost(message, optional, tag = "2")]
    pub session_header: Option<SessionHeader>,
    #[prost(bytes = "vec", tag = "3")]
    pub root_hash: Vec<u8>,
    #[prost(enumeration = "ClaimProofStatus", tag = "4")]
    pub proof_validation_status: i32,
}

/// `pocket.proof.ProofRequirementReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ProofRequirementReason {
    NotRequired = 0,
    Probabilistic = 1,
    Threshold = 2,
}

/// `pocket.proof.ClaimProofStage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ClaimProofStage {
    Claimed = 0,
    Proven = 1,
    Settled = 2,
    Expired = 3,
}

/// `pocket.proof.ClaimProofStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ClaimProofStatus {
    PendingValidation = 0,
    Validated = 1,
    Invalid = 2,
}

/// `pocket.proof.SessionSMT` (off-chain).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionSmt {
    #[prost(message, optional, tag = "1")]
    pub session_header: Option<SessionHeader>,
    #[prost(string, tag = "2")]
    pub supplier_operator_address: String,
    #[prost(bytes = "vec", tag = "3")]
    pub smt_root: Vec<u8>,
}

/// `pocket.proof.MsgCreateClaim` (signer = field 1).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MsgCreateClaim {
    #[prost(string, tag = "1")]
    pub supplier_operator_address: String,
    #[prost(message, optional, tag = "2")]
    pub session_header: Option<SessionHeader>,
    #[prost(bytes = "vec", tag = "3")]
    pub root_hash: Vec<u8>,
}

/// `pocket.proof.MsgCreateClaimResponse` (field 1 reserved).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MsgCreateClaimResponse {}

/// `pocket.proof.MsgSubmitProof`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MsgSubmitProof {
    #[prost(string, tag = "1")]
    pub supplier_operator_address: String,
    #[prost(message, optional, tag = "2")]
    pub session_header: Option<SessionHeader>,
    #[prost(bytes = "vec", tag = "3")]
    pub proof: Vec<u8>,
}

/// `pocket.proof.MsgSubmitProofResponse` (field 1 reserved).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MsgSubmitProofResponse {}

/// `pocket.service.RelayMiningDifficulty`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayMiningDifficulty {
    #[prost(string, tag = "1")]
    pub service_id: String,
    #[prost(int64, tag = "2")]
    pub block_height: i64,
    #[prost(uint64, tag = "3")]
    pub num_relays_ema: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub target_hash: Vec<u8>,
}

/// `pocket.service.RelayMiningDifficultyUpdate`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayMiningDifficultyUpdate {
    #[prost(int64, tag = "1")]
    pub effective_height: i64,
    #[prost(message, optional, tag = "2")]
    pub difficulty: Option<RelayMiningDifficulty>,
}

/// `pocket.service.ServiceComputeUnitsPerRelayUpdate`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ServiceComputeUnitsPerRelayUpdate {
    #[prost(int64, tag = "1")]
    pub effective_height: i64,
    #[prost(string, tag = "2")]
    pub service_id: String,
    #[prost(uint64, tag = "3")]
    pub compute_units_per_relay: u64,
}

/// `pocket.service.Params`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ServiceParams {
    #[prost(message, optional, tag = "1")]
    pub add_service_fee: Option<Coin>,
    #[prost(uint64, tag = "2")]
    pub target_num_relays: u64,
}

/// `pocket.tokenomics.Params` (only what relay-miner reads; unknown fields are ignored on decode).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TokenomicsParams {
    /// Minted on top of each claim's settlement and counted against the application's stake
    /// ([`crate::protocol::inflation`]).
    #[prost(double, tag = "7")]
    pub global_inflation_per_claim: f64,
}
