//! The raft network client: openraft's `RaftNetworkV2` over the HTTP wire of [`crate::wire`].
//!
//! One cached [`PeerClient`] (pooled keep-alive connections) per peer address, shared by the replication,
//! heartbeat and snapshot streams to that peer. Every RPC has the deadline openraft gives it, except appends
//! carrying entries: at least 1 s plus 1 s per 8 MiB of payload (an append holds at most
//! [`crate::RaftConfig::max_payload_bytes`] of entries beyond its first, see [`crate::log_store`]); a connect
//! failure is `Unreachable` (openraft backs off, with the configured backoff), a timeout is `Timeout`. Snapshots are
//! streamed as 1 MiB chunks of the snapshot file, each chunk its own request, with the cancel signal checked
//! between chunks.
//!
//! Until the node's start check passed ([`crate::rollback`]) every RPC fails as `Unreachable` without being sent
//! (no campaign from a node whose data may have gone back in time); a granted vote is recorded in the witness.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::identity::Identity;
use crate::rollback::Witness;
use crate::types::{NodeInfo, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};
use crate::wire::{PeerClient, WireError, path};

/// Smallest deadline of an append that carries entries.
const APPEND_DEADLINE_FLOOR: Duration = Duration::from_secs(1);
/// Bytes of append payload per extra second of deadline (sending, decoding and fsyncing large relay entries;
/// a release build does far better, a debug build under load about this).
const APPEND_BYTES_PER_SEC: usize = 8 << 20;

/// Deadline of an append RPC of `body` encoded bytes carrying entries: [`APPEND_DEADLINE_FLOOR`] plus one second
/// per [`APPEND_BYTES_PER_SEC`], at least `ttl` (openraft's).
fn append_deadline(ttl: Duration, body: usize) -> Duration {
    let extra = Duration::from_secs_f64(body as f64 / APPEND_BYTES_PER_SEC as f64);
    ttl.max(APPEND_DEADLINE_FLOOR + extra)
}

/// Size of one snapshot chunk on the wire.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// One chunk of a snapshot transfer; the last one carries the vote and meta and triggers the install.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotChunk {
    /// Identifies one transfer (sender node and a sender-local counter).
    pub transfer: String,
    /// Byte offset of `data` in the snapshot file.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Set on the last chunk.
    pub done: Option<(Vote, SnapshotMeta)>,
}

/// Creates one network client per target; clients are cached per address.
#[derive(Clone)]
pub struct NetworkFactory {
    node_id: u64,
    identity: Arc<Identity>,
    features: Arc<Features>,
    /// What this node knows of its peers, and the start gate ([`crate::rollback`]).
    witness: Arc<Witness>,
    token: String,
    clients: Arc<Mutex<HashMap<String, PeerClient>>>,
    transfers: Arc<std::sync::atomic::AtomicU64>,
    stats: Option<crate::RaftStats>,
}

impl NetworkFactory {
    /// A factory for the node of `identity`, advertising `features`, recording in (and gated by) `witness`,
    /// using the cluster `token`.
    pub fn new(identity: Arc<Identity>, features: Arc<Features>, witness: Arc<Witness>, token: &str) -> Self {
        Self {
            node_id: identity.node_id(),
            identity,
            features,
            witness,
            token: token.to_owned(),
            clients: Arc::new(Mutex::new(HashMap::new())),
            transfers: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            stats: None,
        }
    }

    /// Counts snapshots sent in `stats`.
    pub fn with_stats(mut self, stats: crate::RaftStats) -> Self {
        self.stats = Some(stats);
        self
    }

    /// What this node knows of its peers, and the start gate.
    pub(crate) fn witness(&self) -> &Arc<Witness> {
        &self.witness
    }

    /// The cached client for `addr`.
    pub fn client(&self, addr: &str) -> PeerClient {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(addr.to_owned())
            .or_insert_with(|| PeerClient::new(addr, &self.token))
            .clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Self::Network {
        Network {
            target,
            client: self.client(&node.raft_addr),
            from: self.node_id,
            identity: self.identity.clone(),
            features: self.features.clone(),
            witness: self.witness.clone(),
            transfers: self.transfers.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// The client for one target node.
pub struct Network {
    target: u64,
    client: PeerClient,
    from: u64,
    identity: Arc<Identity>,
    features: Arc<Features>,
    witness: Arc<Witness>,
    transfers: Arc<std::sync::atomic::AtomicU64>,
    stats: Option<crate::RaftStats>,
}

/// The error of an RPC not sent because the start check has not passed yet.
fn gated() -> WireError {
    WireError::Unreachable("this node's start check has not passed yet: it sends no raft RPC".into())
}

fn rpc_err<E: std::error::Error>(target: u64, e: WireError) -> RPCError<TypeConfig, E> {
    match e {
        // A peer of another identity is treated as unreachable: openraft backs off, and nothing it said counts.
        WireError::Unreachable(_)
        | WireError::Unauthorized
        | WireError::Identity(_)
        | WireError::IdentityRefused(_) => RPCError::Unreachable(Unreachable::new(&e)),
        WireError::Timeout(_) => RPCError::Network(NetworkError::new(&e)),
        other => RPCError::Network(NetworkError::new(&WireErrorAt { target, error: other })),
    }
}

/// A wire error tagged with the target node (for logs).
#[derive(Debug, thiserror::Error)]
#[error("node {target}: {error}")]
struct WireErrorAt {
    target: u64,
    error: WireError,
}

impl Network {
    /// Sends one raft RPC of `body` to the target on `route` with this node's identity and features, its wire
    /// errors mapped as openraft expects them ([`rpc_err`]).
    async fn call<Resp: serde::de::DeserializeOwned, E: std::error::Error>(
        &self,
        route: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Resp, RPCError<TypeConfig, E>> {
        if !self.witness.is_open() {
            return Err(rpc_err(self.target, gated()));
        }
        self.client
            .call_raft(route, body, deadline, (&self.identity, &self.features), self.target)
            .await
            .map_err(|e| rpc_err(self.target, e))
    }

    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        chunk: usize,
        timeout: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let transfer = format!(
            "{}-{}",
            self.from,
            self.transfers.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut file: SnapshotData = snapshot.snapshot;
        let meta = snapshot.meta;
        let mut offset = 0u64;
        if !self.witness.is_open() {
            return Err(StreamingError::Unreachable(Unreachable::new(&gated())));
        }
        loop {
            let mut data = vec![0u8; chunk];
            let mut filled = 0;
            while filled < chunk {
                let n = file
                    .read(&mut data[filled..])
                    .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            data.truncate(filled);
            let last = filled < chunk;
            let msg = SnapshotChunk {
                transfer: transfer.clone(),
                offset,
                data,
                done: last.then(|| (vote, meta.clone())),
            };
            offset += filled as u64;
            let body = crate::types::encode(&msg).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            let resp: Option<SnapshotResponse<TypeConfig>> = self
                .client
                .call_raft(
                    path::SNAPSHOT,
                    body,
                    timeout,
                    (&self.identity, &self.features),
                    self.target,
                )
                .await
                .map_err(|e| match e {
                    WireError::Unreachable(_)
                    | WireError::Unauthorized
                    | WireError::Identity(_)
                    | WireError::IdentityRefused(_) => StreamingError::Unreachable(Unreachable::new(&e)),
                    other => StreamingError::Network(NetworkError::new(&other)),
                })?;
            if last {
                return resp.ok_or_else(|| {
                    StreamingError::Network(NetworkError::from_string("snapshot install gave no response"))
                });
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft gives every append the heartbeat interval as its deadline; an append carrying entries (up to
        // `max_payload_entries` relay batches, `max_payload_bytes` of them) can take longer on a loaded node, and
        // timing it out only resends the same entries and costs the leader its quorum lease. So an append with
        // entries gets at least a second, plus a second per 8 MiB. Heartbeats keep the short deadline.
        let body = crate::types::encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let deadline = if rpc.entries.is_empty() {
            option.hard_ttl()
        } else {
            append_deadline(option.hard_ttl(), body.len())
        };
        self.call(path::APPEND, body, deadline).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let body = crate::types::encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp: VoteResponse<TypeConfig> = self.call(path::VOTE, body, option.hard_ttl()).await?;
        if resp.vote_granted {
            // Saved by the voter before it answered: it must never vote in an earlier term again.
            let incarnation = self.identity.target(self.target).incarnation;
            self.witness
                .record_vote(self.target, incarnation, rpc.vote.leader_id().term);
        }
        Ok(resp)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let body = crate::types::encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(path::PRE_VOTE, body, option.hard_ttl()).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        // The target answers once its log holds the leader's last entry; a lagging target may need longer than
        // a heartbeat's deadline for that, so the call gets at least a second.
        let body = crate::types::encode(&req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let deadline = option.hard_ttl().max(Duration::from_secs(1));
        self.call(path::TRANSFER_LEADER, body, deadline).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK)
            .clamp(64 << 10, 8 << 20);
        let timeout = option.hard_ttl().max(Duration::from_secs(5));
        let sent = tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.send_snapshot(vote, snapshot, chunk, timeout) => r,
        };
        if sent.is_ok()
            && let Some(stats) = &self.stats
        {
            stats.snapshot("sent");
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_deadlines_grow_with_the_payload() {
        let ttl = Duration::from_millis(50);
        assert_eq!(append_deadline(ttl, 0), APPEND_DEADLINE_FLOOR);
        assert_eq!(append_deadline(ttl, 48 << 20), Duration::from_secs(7));
        assert_eq!(append_deadline(Duration::from_secs(9), 1), Duration::from_secs(9));
    }
}
