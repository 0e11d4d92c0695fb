//! gRPC query/tx request and response types (§1.3) with their full method paths, for the chain client and the
//! simulator, plus the cosmos auth/bank/tx-service messages they need.

use super::*;

/// gRPC method paths (§1.3).
pub mod method {
    pub const GET_SESSION: &str = "/pocket.session.Query/GetSession";
    pub const SESSION_PARAMS: &str = "/pocket.session.Query/Params";
    pub const SHARED_PARAMS: &str = "/pocket.shared.Query/Params";
    pub const SHARED_PARAMS_AT_HEIGHT: &str = "/pocket.shared.Query/ParamsAtHeight";
    pub const APPLICATION: &str = "/pocket.application.Query/Application";
    pub const ALL_APPLICATIONS: &str = "/pocket.application.Query/AllApplications";
    pub const GATEWAY: &str = "/pocket.gateway.Query/Gateway";
    pub const ALL_GATEWAYS: &str = "/pocket.gateway.Query/AllGateways";
    pub const SUPPLIER: &str = "/pocket.supplier.Query/Supplier";
    pub const ALL_SUPPLIERS: &str = "/pocket.supplier.Query/AllSuppliers";
    pub const SERVICE: &str = "/pocket.service.Query/Service";
    pub const RELAY_MINING_DIFFICULTY: &str = "/pocket.service.Query/RelayMiningDifficulty";
    pub const RELAY_MINING_DIFFICULTY_AT_HEIGHT: &str = "/pocket.service.Query/RelayMiningDifficultyAtHeight";
    pub const COMPUTE_UNITS_PER_RELAY_AT_HEIGHT: &str = "/pocket.service.Query/ComputeUnitsPerRelayAtHeight";
    pub const SERVICE_PARAMS: &str = "/pocket.service.Query/Params";
    pub const PROOF_PARAMS: &str = "/pocket.proof.Query/Params";
    pub const CLAIM: &str = "/pocket.proof.Query/Claim";
    pub const ALL_CLAIMS: &str = "/pocket.proof.Query/AllClaims";
    pub const PROOF: &str = "/pocket.proof.Query/Proof";
    pub const TOKENOMICS_PARAMS: &str = "/pocket.tokenomics.Query/Params";
    pub const ACCOUNT: &str = "/cosmos.auth.v1beta1.Query/Account";
    pub const BALANCE: &str = "/cosmos.bank.v1beta1.Query/Balance";
    /// What an account can spend of a denom: its balance less the coins a vesting schedule still locks (what the
    /// ante handler and x/proof check); cosmos-sdk ≥ 0.47 (poktroll v0.1.35: 0.50's bank Query service). Its
    /// request and answer have the fields of `Balance`'s ([`super::QueryBalanceRequest`]).
    pub const SPENDABLE_BALANCE_BY_DENOM: &str = "/cosmos.bank.v1beta1.Query/SpendableBalanceByDenom";
    pub const SIMULATE: &str = "/cosmos.tx.v1beta1.Service/Simulate";
    pub const BROADCAST_TX: &str = "/cosmos.tx.v1beta1.Service/BroadcastTx";
    pub const GET_TX: &str = "/cosmos.tx.v1beta1.Service/GetTx";
    /// The node's operator configuration (`minimum-gas-prices` of its `app.toml`).
    pub const NODE_CONFIG: &str = "/cosmos.base.node.v1beta1.Service/Config";
    /// The node's latest committed height and its block time, without the block (a few dozen bytes, where
    /// `GetLatestBlock` returns the whole block twice).
    pub const NODE_STATUS: &str = "/cosmos.base.node.v1beta1.Service/Status";
}

/// An empty request (all `Params` queries).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryParamsRequest {}

/// `cosmos.base.query.v1beta1.PageRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PageRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    #[prost(uint64, tag = "3")]
    pub limit: u64,
    #[prost(bool, tag = "4")]
    pub count_total: bool,
    #[prost(bool, tag = "5")]
    pub reverse: bool,
}

/// `cosmos.base.query.v1beta1.PageResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PageResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub next_key: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub total: u64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetSessionRequest {
    #[prost(string, tag = "1")]
    pub application_address: String,
    #[prost(string, tag = "2")]
    pub service_id: String,
    /// 0 ⇒ current height.
    #[prost(int64, tag = "3")]
    pub block_height: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryGetSessionResponse {
    #[prost(message, optional, tag = "1")]
    pub session: Option<Session>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuerySessionParamsResponse {
    #[prost(message, optional, tag = "1")]
    pub params: Option<SessionParams>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuerySharedParamsResponse {
    #[prost(message, optional, tag = "1")]
    pub params: Option<SharedParams>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryParamsAtHeightRequest {
    #[prost(int64, tag = "1")]
    pub height: i64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetApplicationRequest {
    #[prost(string, tag = "1")]
    pub address: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryGetApplicationResponse {
    #[prost(message, optional, tag = "1")]
    pub application: Option<Application>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAllApplicationsRequest {
    #[prost(message, optional, tag = "1")]
    pub pagination: Option<PageRequest>,
    #[prost(string, tag = "2")]
    pub delegatee_gateway_address: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryAllApplicationsResponse {
    #[prost(message, repeated, tag = "1")]
    pub applications: Vec<Application>,
    #[prost(message, optional, tag = "2")]
    pub pagination: Option<PageResponse>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetGatewayRequest {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(bool, tag = "2")]
    pub dehydrated: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetGatewayResponse {
    #[prost(message, optional, tag = "1")]
    pub gateway: Option<Gateway>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetSupplierRequest {
    #[prost(string, tag = "1")]
    pub operator_address: String,
    #[prost(bool, tag = "2")]
    pub dehydrated: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetSupplierResponse {
    #[prost(message, optional, tag = "1")]
    pub supplier: Option<Supplier>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAllSuppliersRequest {
    #[prost(message, optional, tag = "1")]
    pub pagination: Option<PageRequest>,
    #[prost(string, tag = "2")]
    pub service_id: String,
    #[prost(string, tag = "3")]
    pub operator_address: String,
    #[prost(string, tag = "4")]
    pub owner_address: String,
    #[prost(bool, tag = "5")]
    pub dehydrated: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAllSuppliersResponse {
    #[prost(message, repeated, tag = "1")]
    pub supplier: Vec<Supplier>,
    #[prost(message, optional, tag = "2")]
    pub pagination: Option<PageResponse>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetServiceRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub dehydrated: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub service: Option<Service>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetRelayMiningDifficultyRequest {
    #[prost(string, tag = "1")]
    pub service_id: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetRelayMiningDifficultyAtHeightRequest {
    #[prost(string, tag = "1")]
    pub service_id: String,
    #[prost(int64, tag = "2")]
    pub block_height: i64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetRelayMiningDifficultyResponse {
    #[prost(message, optional, tag = "1")]
    pub relay_mining_difficulty: Option<RelayMiningDifficulty>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetComputeUnitsPerRelayAtHeightRequest {
    #[prost(string, tag = "1")]
    pub service_id: String,
    #[prost(int64, tag = "2")]
    pub block_height: i64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetComputeUnitsPerRelayAtHeightResponse {
    #[prost(uint64, tag = "1")]
    pub compute_units_per_relay: u64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryServiceParamsResponse {
    #[prost(message, optional, tag = "1")]
    pub params: Option<ServiceParams>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryProofParamsResponse {
    #[prost(message, optional, tag = "1")]
    pub params: Option<ProofParams>,
}

/// `pocket.tokenomics.QueryParamsResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryTokenomicsParamsResponse {
    #[prost(message, optional, tag = "1")]
    pub params: Option<TokenomicsParams>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetClaimRequest {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(string, tag = "2")]
    pub supplier_operator_address: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetClaimResponse {
    #[prost(message, optional, tag = "1")]
    pub claim: Option<Claim>,
}

/// The `oneof filter` of `QueryAllClaimsRequest`.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum ClaimsFilter {
    #[prost(string, tag = "2")]
    SupplierOperatorAddress(String),
    #[prost(string, tag = "3")]
    SessionId(String),
    #[prost(uint64, tag = "4")]
    SessionEndHeight(u64),
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAllClaimsRequest {
    #[prost(message, optional, tag = "1")]
    pub pagination: Option<PageRequest>,
    #[prost(oneof = "ClaimsFilter", tags = "2, 3, 4")]
    pub filter: Option<ClaimsFilter>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAllClaimsResponse {
    #[prost(message, repeated, tag = "1")]
    pub claims: Vec<Claim>,
    #[prost(message, optional, tag = "2")]
    pub pagination: Option<PageResponse>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetProofRequest {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(string, tag = "2")]
    pub supplier_operator_address: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryGetProofResponse {
    #[prost(message, optional, tag = "1")]
    pub proof: Option<Proof>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAccountRequest {
    #[prost(string, tag = "1")]
    pub address: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryAccountResponse {
    /// `Any` of `/cosmos.auth.v1beta1.BaseAccount`.
    #[prost(message, optional, tag = "1")]
    pub account: Option<Any>,
}

/// `cosmos.auth.v1beta1.BaseAccount`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BaseAccount {
    #[prost(string, tag = "1")]
    pub address: String,
    /// `Any` of `/cosmos.crypto.secp256k1.PubKey` (33 B); absent until the account signed a tx.
    #[prost(message, optional, tag = "2")]
    pub pub_key: Option<Any>,
    #[prost(uint64, tag = "3")]
    pub account_number: u64,
    #[prost(uint64, tag = "4")]
    pub sequence: u64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryBalanceRequest {
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(string, tag = "2")]
    pub denom: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryBalanceResponse {
    #[prost(message, optional, tag = "1")]
    pub balance: Option<Coin>,
}

/// `cosmos.tx.v1beta1.SimulateRequest` (field 1, the decoded tx, is deprecated).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SimulateRequest {
    #[prost(bytes = "vec", tag = "2")]
    pub tx_bytes: Vec<u8>,
}

/// `cosmos.base.abci.v1beta1.GasInfo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GasInfo {
    #[prost(uint64, tag = "1")]
    pub gas_wanted: u64,
    #[prost(uint64, tag = "2")]
    pub gas_used: u64,
}

/// `cosmos.base.abci.v1beta1.Result` (only the log).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AbciResult {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(string, tag = "2")]
    pub log: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SimulateResponse {
    #[prost(message, optional, tag = "1")]
    pub gas_info: Option<GasInfo>,
    #[prost(message, optional, tag = "2")]
    pub result: Option<AbciResult>,
}

/// `cosmos.base.node.v1beta1.ConfigRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NodeConfigRequest {}

/// `cosmos.base.node.v1beta1.ConfigResponse` (cosmos-sdk `proto/cosmos/base/node/v1beta1/query.proto`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NodeConfigResponse {
    /// The node's minimum gas prices as `DecCoins.String()`: `0.000001000000000000upokt` (18 decimals, several
    /// joined by `,`), empty when the node takes any fee.
    #[prost(string, tag = "1")]
    pub minimum_gas_price: String,
    #[prost(string, tag = "2")]
    pub pruning_keep_recent: String,
    #[prost(string, tag = "3")]
    pub pruning_interval: String,
    #[prost(uint64, tag = "4")]
    pub halt_height: u64,
}

/// `cosmos.base.node.v1beta1.StatusRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NodeStatusRequest {}

/// `cosmos.base.node.v1beta1.StatusResponse` (cosmos-sdk `proto/cosmos/base/node/v1beta1/query.proto`, v0.50+):
/// the query context's height, i.e. the latest height the application committed, with that block's header time.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NodeStatusResponse {
    /// The earliest height the node's store still holds (0 when the node does not say).
    #[prost(uint64, tag = "1")]
    pub earliest_store_height: u64,
    /// The latest committed height.
    #[prost(uint64, tag = "2")]
    pub height: u64,
    /// The header time of block `height`.
    #[prost(message, optional, tag = "3")]
    pub timestamp: Option<BlockTime>,
    /// The header's app hash.
    #[prost(bytes = "vec", tag = "4")]
    pub app_hash: Vec<u8>,
    /// The header's validators hash.
    #[prost(bytes = "vec", tag = "5")]
    pub validator_hash: Vec<u8>,
}

/// `cosmos.tx.v1beta1.BroadcastMode`: SYNC = 2.
pub const BROADCAST_MODE_SYNC: i32 = 2;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BroadcastTxRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub tx_bytes: Vec<u8>,
    #[prost(int32, tag = "2")]
    pub mode: i32,
}

/// `cosmos.base.abci.v1beta1.TxResponse` (the fields relay-miner reads).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TxResponse {
    #[prost(int64, tag = "1")]
    pub height: i64,
    #[prost(string, tag = "2")]
    pub txhash: String,
    #[prost(string, tag = "3")]
    pub codespace: String,
    #[prost(uint32, tag = "4")]
    pub code: u32,
    #[prost(string, tag = "5")]
    pub data: String,
    #[prost(string, tag = "6")]
    pub raw_log: String,
    #[prost(string, tag = "8")]
    pub info: String,
    #[prost(int64, tag = "9")]
    pub gas_wanted: i64,
    #[prost(int64, tag = "10")]
    pub gas_used: i64,
    #[prost(string, tag = "12")]
    pub timestamp: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BroadcastTxResponse {
    #[prost(message, optional, tag = "1")]
    pub tx_response: Option<TxResponse>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTxRequest {
    #[prost(string, tag = "1")]
    pub hash: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTxResponse {
    #[prost(message, optional, tag = "2")]
    pub tx_response: Option<TxResponse>,
}

/// `/cosmos.base.tendermint.v1beta1.Service/GetLatestBlock` and `GetBlockByHeight` paths.
pub mod tendermint_method {
    pub const GET_LATEST_BLOCK: &str = "/cosmos.base.tendermint.v1beta1.Service/GetLatestBlock";
    pub const GET_BLOCK_BY_HEIGHT: &str = "/cosmos.base.tendermint.v1beta1.Service/GetBlockByHeight";
    /// The node's p2p identity, whose `network` is the chain id (no block read).
    pub const GET_NODE_INFO: &str = "/cosmos.base.tendermint.v1beta1.Service/GetNodeInfo";
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetNodeInfoRequest {}

/// `cosmos.base.tendermint.v1beta1.GetNodeInfoResponse` (field 2, `application_version`, is not read).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetNodeInfoResponse {
    #[prost(message, optional, tag = "1")]
    pub default_node_info: Option<DefaultNodeInfo>,
}

/// `tendermint.p2p.DefaultNodeInfo` (the fields relay-miner reads or the simulator fills).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DefaultNodeInfo {
    #[prost(string, tag = "2")]
    pub default_node_id: String,
    /// The chain id.
    #[prost(string, tag = "4")]
    pub network: String,
    /// The CometBFT version.
    #[prost(string, tag = "5")]
    pub version: String,
    #[prost(string, tag = "7")]
    pub moniker: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetLatestBlockRequest {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetBlockByHeightRequest {
    #[prost(int64, tag = "1")]
    pub height: i64,
}

/// `tendermint.types.BlockID` (only the hash; the part-set header is ignored).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BlockId {
    /// The block-id hash: seeds session ids and proof paths (§3, §5.2).
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BlockTime {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `tendermint.types.Header` (the fields relay-miner reads).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BlockHeader {
    #[prost(string, tag = "2")]
    pub chain_id: String,
    #[prost(int64, tag = "3")]
    pub height: i64,
    #[prost(message, optional, tag = "4")]
    pub time: Option<BlockTime>,
}

/// `tendermint.types.Block` (header only).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Block {
    #[prost(message, optional, tag = "1")]
    pub header: Option<BlockHeader>,
}

/// Response of both block queries.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetBlockResponse {
    #[prost(message, optional, tag = "1")]
    pub block_id: Option<BlockId>,
    #[prost(message, optional, tag = "2")]
    pub block: Option<Block>,
}
