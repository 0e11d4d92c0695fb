//! Raft HA mode (issue 8): openraft with a redb log store and a redb state machine, implementing the storage
//! contract of the `storage` crate so relayer and miner run unchanged.
//!
//! - [`types`]: the raft type config (std leader ids, so the term is the fencing epoch) and the replicated ops.
//! - [`log_store`]: the raft log on its own redb file, group-committed by one writer thread.
//! - [`sm`]: the state machine on a second redb file; deterministic apply; file snapshots.
//! - [`network`] / [`wire`]: openraft RPCs over HTTP on the raft port, with a pre-shared cluster token.
//! - [`RaftNode`]: one member (files, raft port, openraft) serving the storage contract through [`RaftBackend`].
//! - [`AdminClient`]: init, add-learner, promote, remove, status, for the CLI.
#![forbid(unsafe_code)]

pub mod admin;
mod backend;
mod core;
pub mod log_store;
pub mod network;
mod node;
mod server;
pub mod sm;
pub mod types;
pub mod wire;

pub use admin::{AdminClient, AdminError, MembershipChange, Replication, Status};
pub use backend::{BatchConfig, RaftBackend};
pub use log_store::LogStore;
pub use node::{NodeError, RaftConfig, RaftNode};
pub use sm::StateMachine;
pub use types::{NodeInfo, Op, OpResult, Request, Response, TypeConfig, lease_token, token_term};

/// The openraft version this crate is pinned against (see `../shared/docs/deps.md`).
pub const OPENRAFT_VERSION: &str = "0.10.0-alpha.37";
