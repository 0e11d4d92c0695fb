//! The local Pocket chain simulator and the demo backend (issue 5), used by tests, benches and `localnet`.
pub mod comet;
