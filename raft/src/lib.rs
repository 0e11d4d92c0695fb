//! Raft HA mode (issue 8, not started): openraft with a redb log store and a redb state machine, implementing the
//! storage contract of the `storage` crate so relayer and miner run unchanged. Only the crate skeleton exists today.
#![forbid(unsafe_code)]

/// The openraft version this crate is pinned against (see `../shared/docs/deps.md`).
pub const OPENRAFT_VERSION: &str = "0.10.0-alpha.37";
