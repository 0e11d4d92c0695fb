//! The local Pocket chain simulator and the demo backend (issue 5), used by tests, benches and `localnet`:
//! [`chain`] judges claims and proofs like the chain and serves its gRPC queries ([`grpc`] routes them);
//! [`comet`] serves the CometBFT RPC (HTTP + websocket); [`backend`] is the RPC node relays are forwarded to;
//! [`node`] runs them together on 127.0.0.1 with a block timer (`relay-miner sim`).

pub mod backend;
pub mod chain;
pub mod comet;
pub mod grpc;
pub mod node;

pub use node::{BlockTimer, SimNode, SimNodeConfig, SimNodeError};
