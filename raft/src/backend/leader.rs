//! Leadership on raft: an election's lease can only be taken on the raft leader, and the fencing token carries
//! the raft term.
//!
//! `campaign` / `renew` / `resign` succeed only on a node that is the raft leader with a recent quorum
//! acknowledgement; they are proposed as raft entries (never forwarded), and apply checks the lease against the
//! entry's own term, so a lease granted in term `T` is void in every later term. The token of the `n`-th grant
//! in term `T` is `T << 32 | n` ([`crate::types::lease_token`]): a new raft leader always hands out a greater
//! token than any earlier one, and so does a new holder within one term. `watch` follows the raft metrics (term
//! and applied index changes) plus a 50 ms tick for lease expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openraft::async_runtime::watch::WatchReceiver;
use storage::{LeaderInfo, Leadership, StorageError};
use tokio::sync::watch;

use super::{RaftBackend, one, unexpected};
use crate::core::{Core, unavailable};
use crate::sm::SmReader;
use crate::types::{Op, OpResult, Request, now_ms};
use crate::wire::WireError;

type Watches = Arc<Mutex<HashMap<String, watch::Sender<Option<LeaderInfo>>>>>;

fn current(core: &Core, reader: &SmReader, election: &str) -> Result<Option<LeaderInfo>, StorageError> {
    let term = core.view().term;
    Ok(reader.lease_holder(election, term, now_ms())?.map(|h| LeaderInfo {
        holder: h.candidate,
        token: h.token,
    }))
}

/// Republishes every watched election when raft metrics change, and every 50 ms for expiries.
pub(crate) async fn watcher(core: Arc<Core>, reader: SmReader, watches: Watches, mut stop: watch::Receiver<bool>) {
    let mut metrics = core.raft.metrics();
    loop {
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => return,
        }
        let names: Vec<String> = watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            let Ok(info) = current(&core, &reader, &name) else {
                continue;
            };
            let w = watches.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = w.get(&name) {
                tx.send_if_modified(|cur| {
                    if *cur == info {
                        false
                    } else {
                        *cur = info;
                        true
                    }
                });
            }
        }
    }
}

impl RaftBackend {
    /// Proposes one leadership op on this node only; `None` when this node is not (or no longer) the leader.
    ///
    /// The answer must hold when it is returned, not only when the entry was proposed: a leader cut off right
    /// after its entry reached a follower waits for the commit, and a later leader may commit that entry. Its
    /// result (a renewal that succeeded in the old term) would then tell a deposed node it still leads, and its
    /// miner would submit next to the new leader's. So the entry's term must still be the current term, with
    /// this node still leading it.
    ///
    /// Both checks go through [`Core::confirm_leader`]: a leader whose quorum acknowledgement is only late (a
    /// loaded follower) is confirmed once the next one arrives, not refused at once.
    async fn lease_op(&self, op: Op) -> Result<Option<OpResult>, StorageError> {
        if !self.core.confirm_leader(None).await {
            tracing::debug!("leadership op refused: this node is not the raft leader");
            return Ok(None);
        }
        match self
            .core
            .propose_local(Request {
                now_ms: 0,
                ops: vec![op],
            })
            .await
        {
            Ok(proposed) => {
                let now = self.core.view().term;
                if proposed.term != now || !self.core.confirm_leader(Some(proposed.term)).await {
                    tracing::info!(
                        proposed_in = proposed.term,
                        term = now,
                        "leadership op committed after this node lost the raft leadership: it confirms nothing"
                    );
                    return Ok(None);
                }
                one(proposed.data).map(Some)
            }
            Err(WireError::NotLeader { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl Leadership for RaftBackend {
    async fn campaign(&self, election: &str, candidate: &str, ttl: Duration) -> Result<Option<u64>, StorageError> {
        let op = Op::Campaign {
            election: election.to_owned(),
            candidate: candidate.to_owned(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        match self.lease_op(op).await? {
            None => Ok(None),
            Some(OpResult::Token(t)) => Ok(t),
            Some(other) => Err(unexpected(other)),
        }
    }

    async fn renew(&self, election: &str, candidate: &str, token: u64, ttl: Duration) -> Result<bool, StorageError> {
        let op = Op::Renew {
            election: election.to_owned(),
            candidate: candidate.to_owned(),
            token,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        match self.lease_op(op).await? {
            None => Ok(false),
            Some(OpResult::Bool(b)) => Ok(b),
            Some(other) => Err(unexpected(other)),
        }
    }

    async fn resign(&self, election: &str, candidate: &str, token: u64) -> Result<bool, StorageError> {
        let op = Op::Resign {
            election: election.to_owned(),
            candidate: candidate.to_owned(),
            token,
        };
        match self.lease_op(op).await? {
            None => Ok(false),
            Some(OpResult::Bool(b)) => Ok(b),
            Some(other) => Err(unexpected(other)),
        }
    }

    async fn leader(&self, election: &str) -> Result<Option<LeaderInfo>, StorageError> {
        current(&self.core, &self.reader, election)
    }

    async fn watch(&self, election: &str) -> Result<watch::Receiver<Option<LeaderInfo>>, StorageError> {
        let info = current(&self.core, &self.reader, election)?;
        let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w.entry(election.to_owned()).or_insert_with(|| watch::Sender::new(info));
        Ok(tx.subscribe())
    }
}
