//! The chain boundary (issue 5): typed pocket/cosmos gRPC queries with at-height caches ([`query`]), the
//! hand-written gRPC client ([`grpc`]), the CometBFT RPC client with a gap-free new-block subscription
//! ([`comet`]) and transaction building/signing ([`tx`], §6.5).

pub mod cache;
pub mod comet;
pub mod grpc;
pub mod query;
pub mod tx;
