//! relay-miner: a relay miner for Pocket Network (Shannon).
//!
//! The library holds every layer so tests, benches and the thin binary share them (see
//! `../shared/docs/architecture.md` and `docs/style.md` for the layout):
//! - [`protocol`] and [`smst`] are PURE (no tokio, no IO) and byte-exact with the chain;
//! - [`conformance`] runs the JSON-Lines conformance vectors against them;
//! - [`cli`] is the command line.
#![forbid(unsafe_code)]

pub mod chain;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod keys;
pub mod loadgen;
pub mod miner;
pub mod node;
pub mod process;
pub mod protocol;
pub mod relayer;
pub mod sim;
pub mod smst;
pub mod telemetry;
