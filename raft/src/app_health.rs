//! What the application on each member reports about its own ability to do the leader's work, shared over the
//! raft port so a leader whose application cannot work can hand the raft leadership (and with it the miner
//! lease, which only the raft leader can hold) to a member whose application can.
//!
//! The raft crate does not interpret the report: the application publishes it on its node
//! ([`crate::RaftNode::set_app_health`]) and, on the leader, reads its peers' ([`crate::RaftNode::peer_app_health`])
//! before choosing a target ([`crate::RaftNode::hand_off_to`]). A member that publishes nothing (not started yet,
//! or a build without this route, which answers 404) is reported as unknown, and a careful caller treats it as
//! unable.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The raft-port route answering a member's [`AppHealth`] (`Option`: `None` until its application published one).
pub const PATH: &str = "/admin/app-health";

/// One member's application health as it last published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHealth {
    /// The highest chain height the member's application read successfully (0: none yet).
    pub chain_height: i64,
    /// Milliseconds since that height last advanced (`None`: it never did).
    pub progressed_ms_ago: Option<u64>,
    /// The chain's block time as the member measured it, in ms (`None`: not measured yet).
    pub block_time_ms: Option<u64>,
    /// The member's application considers itself unable to do the leader's work (its chain reads stalled).
    pub stalled: bool,
}

/// The report a node serves, shared by the node and its raft port.
pub(crate) type Shared = Arc<Mutex<Option<AppHealth>>>;
