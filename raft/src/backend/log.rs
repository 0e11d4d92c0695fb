//! The relay log on raft: group-committed appends, local consumer-group state, replicated ack and trim (fenced at
//! apply for a fenced view; deliveries check the fence against this node's lease view, see the backend docs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use storage::{Backlog, EntryId, LogEntry, MinedRelay, RelayLog, StorageError};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{BatchConfig, RaftBackend, one, unexpected};
use crate::core::Core;
use crate::sm::apply::RelayValue;
use crate::types::{Op, OpResult, RelayRecord, Request};

/// One caller's append waiting for its batch.
pub(crate) struct AppendJob {
    relays: Vec<RelayRecord>,
    reply: oneshot::Sender<Result<Vec<EntryId>, StorageError>>,
}

/// A pending (delivered, unacknowledged) entry of this node's consumer group.
#[derive(Debug, Clone)]
struct Pending {
    consumer: String,
    delivered_at: Instant,
    deliveries: u64,
}

/// Delivery cursor and pending entries of one supplier's log, on this node.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Highest sequence delivered (0 = none).
    cursor: u64,
    pending: BTreeMap<u64, Pending>,
}

/// Gathers appends into raft entries: everything queued goes into one entry; while `max_in_flight` entries are
/// already in flight, the batch keeps gathering for up to `batch_linger` (or until it is full).
pub(crate) async fn batcher(
    core: Arc<Core>,
    mut rx: mpsc::Receiver<AppendJob>,
    cfg: BatchConfig,
    mut stop: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job { Some(j) => j, None => return },
            _ = stop.changed() => return,
        };
        let mut n = first.relays.len();
        let mut jobs = vec![first];
        while n < cfg.max_batch_relays {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.relays.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Busy: let the batch grow while an earlier entry commits.
                let deadline = Instant::now() + cfg.batch_linger;
                while n < cfg.max_batch_relays {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => {
                            n += j.relays.len();
                            jobs.push(j);
                        }
                        _ => break,
                    }
                }
                match in_flight.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        let core = core.clone();
        tokio::spawn(async move {
            let _permit = permit;
            commit(&core, jobs).await;
        });
    }
}

/// Replicates one batch as one raft entry and hands every caller its ids.
async fn commit(core: &Core, jobs: Vec<AppendJob>) {
    let mut relays = Vec::with_capacity(jobs.iter().map(|j| j.relays.len()).sum());
    let mut lens = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for j in jobs {
        lens.push(j.relays.len());
        relays.extend(j.relays);
        replies.push(j.reply);
    }
    let total = relays.len();
    let result = core
        .write(Request {
            now_ms: 0,
            ops: vec![Op::Append(relays)],
        })
        .await
        .and_then(one)
        .and_then(|r| match r {
            OpResult::Seqs(s) if s.len() == total => Ok(s),
            other => Err(unexpected(other)),
        });
    match result {
        Ok(seqs) => {
            let mut it = seqs.into_iter();
            for (len, reply) in lens.into_iter().zip(replies) {
                let ids = it.by_ref().take(len).map(|s| EntryId::new(s, 0)).collect();
                let _ = reply.send(Ok(ids));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn entry(supplier: &str, seq: u64, v: RelayValue, deliveries: u64) -> LogEntry {
    LogEntry {
        id: EntryId::new(seq, 0),
        relay: MinedRelay {
            supplier: supplier.to_owned(),
            session_id: v.session_id,
            session_end_height: v.session_end_height,
            relay_hash: v.relay_hash,
            payload: v.payload,
        },
        deliveries,
    }
}

impl RaftBackend {
    fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Redelivers pending entries chosen by `pick` (in sequence order, at most `max`), dropping pending entries
    /// whose relay no longer exists (trimmed or acknowledged through another node).
    fn redeliver(
        &self,
        supplier: &str,
        consumer: &str,
        max: usize,
        pick: impl Fn(&Pending, Instant) -> bool,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let now = Instant::now();
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(supplier) else {
            return Ok(Vec::new());
        };
        let candidates: Vec<u64> = group
            .pending
            .iter()
            .filter(|(_, p)| pick(p, now))
            .map(|(s, _)| *s)
            .collect();
        let values = self.reader.relays_at(supplier, &candidates)?;
        let mut out = Vec::new();
        for (seq, v) in candidates.into_iter().zip(values) {
            let Some(v) = v else {
                group.pending.remove(&seq);
                continue;
            };
            if out.len() >= max {
                break;
            }
            if let Some(p) = group.pending.get_mut(&seq) {
                p.consumer = consumer.to_owned();
                p.deliveries += 1;
                p.delivered_at = now;
                out.push(entry(supplier, seq, v, p.deliveries));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl RelayLog for RaftBackend {
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError> {
        if relays.is_empty() {
            return Ok(Vec::new());
        }
        if self.fence.is_some() {
            // A fenced append is its own entry (the group-commit batcher mixes callers).
            let n = relays.len();
            return match self
                .write1(Op::Append(relays.into_iter().map(RelayRecord::from).collect()))
                .await?
            {
                OpResult::Seqs(s) if s.len() == n => Ok(s.into_iter().map(|s| EntryId::new(s, 0)).collect()),
                other => Err(unexpected(other)),
            };
        }
        let (tx, rx) = oneshot::channel();
        self.appends
            .send(AppendJob {
                relays: relays.into_iter().map(RelayRecord::from).collect(),
                reply: tx,
            })
            .await
            .map_err(|_| StorageError::Unavailable("raft node stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Unavailable("raft node stopped".into()))?
    }

    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        self.check_local_fence()?;
        let now = Instant::now();
        let mut groups = self.groups();
        let group = groups.entry(supplier.to_owned()).or_default();
        let rows = self.reader.relays_after(supplier, group.cursor, max)?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, v) in rows {
            group.cursor = group.cursor.max(seq);
            group.pending.insert(
                seq,
                Pending {
                    consumer: consumer.to_owned(),
                    delivered_at: now,
                    deliveries: 1,
                },
            );
            out.push(entry(supplier, seq, v, 1));
        }
        Ok(out)
    }

    async fn read_pending(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<LogEntry>, StorageError> {
        self.check_local_fence()?;
        self.redeliver(supplier, consumer, max, |p, _| p.consumer == consumer)
    }

    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.check_local_fence()?;
        self.redeliver(supplier, consumer, max, |p, now| {
            p.consumer != consumer && now.saturating_duration_since(p.delivered_at) >= min_idle
        })
    }

    async fn ack(&self, supplier: &str, ids: &[EntryId]) -> Result<u64, StorageError> {
        let seqs: Vec<u64> = {
            let groups = self.groups();
            let Some(group) = groups.get(supplier) else {
                return Ok(0);
            };
            ids.iter()
                .filter(|id| id.minor == 0 && group.pending.contains_key(&id.major))
                .map(|id| id.major)
                .collect()
        };
        if seqs.is_empty() {
            return Ok(0);
        }
        self.write1(Op::Ack {
            supplier: supplier.to_owned(),
            seqs: seqs.clone(),
        })
        .await?;
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(supplier) else {
            return Ok(0);
        };
        Ok(seqs.into_iter().filter(|s| group.pending.remove(s).is_some()).count() as u64)
    }

    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        match self
            .write1(Op::TrimSession {
                supplier: supplier.to_owned(),
                session_id: session_id.to_owned(),
            })
            .await?
        {
            OpResult::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        let (cursor, pending): (u64, Vec<u64>) = {
            let groups = self.groups();
            match groups.get(supplier) {
                Some(g) => (g.cursor, g.pending.keys().copied().collect()),
                None => (0, Vec::new()),
            }
        };
        let undelivered = self.reader.count_after(supplier, cursor)?;
        let live = self
            .reader
            .relays_at(supplier, &pending)?
            .iter()
            .filter(|v| v.is_some())
            .count() as u64;
        Ok(Backlog {
            undelivered,
            pending: live,
        })
    }
}
