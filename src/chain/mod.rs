//! The chain boundary: pocket gRPC queries, CometBFT RPC, and transaction building/signing/broadcast (issue 5).
//! Today only [`tx`] (pure tx building and signing, §6.5) exists.

pub mod comet;
pub mod tx;
