//! The chain boundary (issue 5): typed pocket/cosmos gRPC queries with at-height caches ([`query`]) and their size
//! gauges ([`gauges`]), the
//! hand-written gRPC client ([`grpc`]), the CometBFT RPC client with a gap-free new-block subscription
//! ([`comet`]), transaction building/signing ([`tx`], §6.5), the fee a node takes ([`fees`]), ordered-tx sequence
//! tracking ([`sequence`]), claim settlements read from block events ([`settlement`]), accounts of every cosmos type
//! ([`account`]), the node's chain id against the configured one ([`chain_id`]) and the claim delay against the
//! chain's claim window ([`claim_delay`]).

pub mod account;
pub mod cache;
pub mod chain_id;
pub mod claim_delay;
pub mod comet;
pub mod fee_check;
pub mod fees;
pub mod gauges;
pub mod grpc;
pub mod pace;
pub mod query;
pub mod sequence;
pub mod settlement;
pub mod tls;
pub mod tx;
