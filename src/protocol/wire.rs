//! Wire types (§1.2, §1.3) as hand-written prost structs. prost emits fields in ascending tag order and omits
//! proto3 zero values, which is what gogoproto's stable marshaler does (§1.1). Non-nullable embedded messages
//! (`RelayRequest.meta`, `RelayResponse.meta`) are `Option` here and must always be `Some`.

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
