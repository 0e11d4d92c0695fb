//! Raft HA mode (issue 8): openraft with a redb log store and a redb state machine, implementing the storage
//! contract of the `storage` crate so relayer and miner run unchanged.
//!
//! - [`types`]: the raft type config (std leader ids, so the term is the fencing epoch) and the replicated ops.
//! - [`log_store`]: the raft log on its own redb file, group-committed by one writer thread.
//! - [`sm`]: the state machine on a second redb file; deterministic apply; file snapshots.
//! - [`network`] / [`wire`]: openraft RPCs over HTTP on the raft port, with a pre-shared cluster token.
//! - [`RaftNode`]: one member (files, raft port, openraft) serving the storage contract through [`RaftBackend`].
//! - [`bootstrap`]: the lowest-id peer initializes a new cluster only when no listed peer holds raft state.
//! - [`recover`]: offline, a stopped survivor of a lost majority made the single voter (`raft recover-single`).
//! - [`AdminClient`]: init, add-learner, promote, remove, transfer-leader, status, for the CLI.
//! - `transfer`: a leader hands its role to a voter (admin command, graceful stop).
//! - [`identity`]: which data directory a node id speaks for; a wiped voter cannot rejoin under its old id.
//! - [`rollback`]: a node restarted on an older copy of its data directory (backup, VM snapshot) refuses to start
//!   before it votes or acknowledges anything: its peers remember its votes and acknowledgements.
//! - `schema`: the schema version of the node's redb files ([`SCHEMA_VERSION`]); a newer binary's files are
//!   refused at open.
//! - [`features`]: what each node can apply, advertised on every raft RPC; the leader proposes a write set
//!   ([`Op::WriteSet`]) as one entry only while every member advertises it (a rolling upgrade keeps its older
//!   members), else the caller writes its parts one by one.
//!
//! # Using it
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raft::{AdminClient, NodeInfo, RaftConfig, RaftNode};
//! let node = RaftNode::start(RaftConfig::new(1, "0.0.0.0:7001".parse()?, "/var/lib/rm/raft", "secret")).await?;
//! let storage = node.storage(); // hand to relayer and miner, as with the redb backend
//! // Once, on one node of a new cluster:
//! AdminClient::new("10.0.0.1:7001", "secret")
//!     .init(vec![(1, NodeInfo::new("10.0.0.1:7001")), (2, NodeInfo::new("10.0.0.2:7001"))])
//!     .await?;
//! # drop(storage); Ok(()) }
//! ```
//!
//! # Safety rules kept here
//! - Every relay append is acknowledged only after its raft entry is committed (fsynced on a quorum) and
//!   applied on the appending node.
//! - One leader per term (std leader ids); lease tokens carry the term in their high 32 bits
//!   ([`token_term`]), so a new raft leader's miner always holds a greater fencing token than any before it.
//! - A voter whose data directory was wiped cannot vote or acknowledge under its old id: raft RPCs carry node
//!   incarnations and peers refuse a known id under a new one ([`identity`]).
//! - A node whose data directory went back in time (an older vote, a shorter log than its peers saw it
//!   acknowledge) refuses to start, and no node votes or acknowledges before that check ([`rollback`]).
//! - A leader that has not heard from a quorum within the lower election timeout reports not-leader and
//!   not-ready ([`RaftNode::readiness`]), and its writes fail as `Unavailable`; `campaign`/`renew` on it send a
//!   heartbeat round and wait up to the upper election timeout for a quorum's acknowledgement (one that is
//!   only late, on a loaded host, confirms it), then refuse.
//! - Every write answers in bounded time: a proposal not committed within 5 s (plus a second per 2 MiB of
//!   relays), e.g. on a leader that lost its quorum, fails as `Unavailable` ("commit status unknown": it may
//!   still commit once the partition heals; the relayer refuses the relay, and a relay committed anyway is
//!   counted once, the miner's tries being keyed by relay hash), so no caller and no relay-batch permit waits
//!   for a partition to heal.
//! - Entries stay under the raft port's 64 MiB request limit: relay batches are cut at 8 MiB, a relay over
//!   [`MAX_ENTRY_BYTES`] is refused, and an append RPC carries at most 16 MiB of entries beyond its first, so a
//!   large entry never wedges replication or a lagging follower's catch-up.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app_health;
mod backend;
pub mod bootstrap;
mod core;
pub mod features;
pub mod identity;
pub mod log_store;
mod membership_guard;
pub mod network;
mod node;
pub mod recover;
pub mod rollback;
mod schema;
mod server;
pub mod sm;
mod stats;
mod transfer;
pub mod types;
pub mod wire;

pub use admin::{AdminClient, AdminError, MemberFeatures, MembershipChange, Replication, Status};
pub use app_health::AppHealth;
pub use backend::{BatchConfig, RaftBackend};
pub use bootstrap::{Bootstrap, BootstrapOutcome};
pub use features::FeatureSet;
pub use log_store::LogStore;
pub use node::{NodeError, RaftConfig, RaftNode};
pub use schema::SCHEMA_VERSION;
pub use sm::StateMachine;
pub use stats::RaftStats;
pub use types::{NodeInfo, Op, OpResult, Request, Response, TypeConfig, lease_token, token_term};
pub use wire::MAX_ENTRY_BYTES;

/// The openraft version this crate is pinned against (see `../shared/docs/deps.md`).
pub const OPENRAFT_VERSION: &str = "0.10.0-alpha.37";
