//! The chain boundary (issue 5): typed pocket/cosmos gRPC queries with at-height caches ([`query`]) and their size
//! gauges ([`gauges`]), the
//! hand-written gRPC client ([`grpc`]), the CometBFT RPC client with a gap-free new-block subscription
//! ([`comet`]), transaction building/signing ([`tx`], §6.5), ordered-tx sequence tracking ([`sequence`]),
//! claim settlements read from block events ([`settlement`]) and accounts of every cosmos type ([`account`]).

pub mod account;
pub mod cache;
pub mod comet;
pub mod gauges;
pub mod grpc;
pub mod query;
pub mod sequence;
pub mod settlement;
pub mod tls;
pub mod tx;
