//! The one integration-test binary (ripgrep style): one module per feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod configs;
mod conformance_vectors;
mod localnet;
mod miner_process;
mod raft_chaos;
mod relayer;
mod sim;
mod tx_cosmrs_oracle;
