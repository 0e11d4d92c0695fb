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

/// Room kept in a raft entry for everything around its relays (entry header, request, op and vector prefixes).
const ENTRY_OVERHEAD: usize = 4 << 10;
/// Largest relays ([`RelayRecord::encoded_len_bound`]) one raft entry can hold: a larger relay is refused.
pub(crate) const MAX_RELAY_BYTES: usize = crate::MAX_ENTRY_BYTES - ENTRY_OVERHEAD;

/// One caller's append (or one part of it) waiting for its batch.
pub(crate) struct AppendJob {
    relays: Vec<RelayRecord>,
    /// [`RelayRecord::encoded_len_bound`] of all its relays.
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<EntryId>, StorageError>>,
}

fn relay_bytes(relays: &[RelayRecord]) -> usize {
    relays
        .iter()
        .fold(0usize, |acc, r| acc.saturating_add(r.encoded_len_bound()))
}

/// The refusal of a relay no raft entry can hold (per relay: not a storage outage).
fn too_large(bytes: usize) -> StorageError {
    StorageError::TooLarge(format!(
        "relay of {bytes} bytes is too large for a raft entry (at most {MAX_RELAY_BYTES} bytes: a relay carries its \
         request and response, so the service's body limit must stay under half of that): refused"
    ))
}

/// Cuts `relays` (in order) into parts of at most `max_bytes` each; a larger relay is a part of its own.
fn split(relays: Vec<RelayRecord>, max_bytes: usize) -> Vec<Vec<RelayRecord>> {
    let mut parts: Vec<Vec<RelayRecord>> = Vec::new();
    let mut bytes = 0usize;
    for r in relays {
        let n = r.encoded_len_bound();
        match parts.last_mut() {
            Some(part) if bytes.saturating_add(n) <= max_bytes => {
                bytes = bytes.saturating_add(n);
                part.push(r);
            }
            _ => {
                bytes = n;
                parts.push(vec![r]);
            }
        }
    }
    parts
}

/// The jobs gathered into one raft entry.
struct Batch {
    jobs: Vec<AppendJob>,
    relays: usize,
    bytes: usize,
}

impl Batch {
    fn new(first: AppendJob) -> Self {
        Self {
            relays: first.relays.len(),
            bytes: first.bytes,
            jobs: vec![first],
        }
    }

    fn open(&self, cfg: &BatchConfig) -> bool {
        self.relays < cfg.max_batch_relays && self.bytes < cfg.max_batch_bytes
    }

    /// Adds `job` if its bytes fit; else hands it back (it starts the next batch).
    fn add(&mut self, job: AppendJob, cfg: &BatchConfig) -> Result<(), AppendJob> {
        if self.bytes.saturating_add(job.bytes) > cfg.max_batch_bytes {
            return Err(job);
        }
        self.relays += job.relays.len();
        self.bytes = self.bytes.saturating_add(job.bytes);
        self.jobs.push(job);
        Ok(())
    }
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

/// Gathers appends into raft entries: everything queued goes into one entry, up to `max_batch_relays` relays and
/// `max_batch_bytes` bytes (a job that does not fit starts the next entry); while `max_in_flight` entries are
/// already in flight, the batch keeps gathering for up to `batch_linger` (or until it is full).
pub(crate) async fn batcher(
    core: Arc<Core>,
    mut rx: mpsc::Receiver<AppendJob>,
    mut cfg: BatchConfig,
    mut stop: watch::Receiver<bool>,
) {
    cfg.max_batch_bytes = cfg.max_batch_bytes.clamp(1, MAX_RELAY_BYTES);
    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let mut carry: Option<AppendJob> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => tokio::select! {
                job = rx.recv() => match job { Some(j) => j, None => return },
                _ = stop.changed() => return,
            },
        };
        let mut batch = Batch::new(first);
        while batch.open(&cfg) {
            match rx.try_recv() {
                Ok(j) => {
                    if let Err(j) = batch.add(j, &cfg) {
                        carry = Some(j);
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Busy: let the batch grow while an earlier entry commits.
                let deadline = Instant::now() + cfg.batch_linger;
                while carry.is_none() && batch.open(&cfg) {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => {
                            if let Err(j) = batch.add(j, &cfg) {
                                carry = Some(j);
                            }
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
            commit(&core, batch.jobs).await;
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

    /// The sequences of `ids` pending in this node's consumer group of `supplier` (what an ack deletes).
    pub(super) fn pending_seqs(&self, supplier: &str, ids: &[EntryId]) -> Vec<u64> {
        let groups = self.groups();
        let Some(group) = groups.get(supplier) else {
            return Vec::new();
        };
        ids.iter()
            .filter(|id| id.minor == 0 && group.pending.contains_key(&id.major))
            .map(|id| id.major)
            .collect()
    }

    /// Ends the delivery bookkeeping of acknowledged `seqs` once their ack applied; how many were pending.
    pub(super) fn acked(&self, supplier: &str, seqs: Vec<u64>) -> u64 {
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(supplier) else {
            return 0;
        };
        seqs.into_iter().filter(|s| group.pending.remove(s).is_some()).count() as u64
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
    fn relay_fits(&self, relay: &MinedRelay) -> bool {
        RelayRecord::len_bound(&relay.supplier, &relay.session_id, &relay.relay_hash, &relay.payload) <= MAX_RELAY_BYTES
    }

    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<EntryId>, StorageError> {
        if relays.is_empty() {
            return Ok(Vec::new());
        }
        let relays: Vec<RelayRecord> = relays.into_iter().map(RelayRecord::from).collect();
        if let Some(big) = relays
            .iter()
            .map(RelayRecord::encoded_len_bound)
            .find(|n| *n > MAX_RELAY_BYTES)
        {
            return Err(too_large(big));
        }
        if self.fence.is_some() {
            // A fenced append is its own entry (the group-commit batcher mixes callers).
            let bytes = relay_bytes(&relays);
            if bytes > MAX_RELAY_BYTES {
                return Err(StorageError::Backend(format!(
                    "fenced append of {bytes} bytes is too large for one raft entry (at most {MAX_RELAY_BYTES})"
                )));
            }
            let n = relays.len();
            return match self.write1(Op::Append(relays)).await? {
                OpResult::Seqs(s) if s.len() == n => Ok(s.into_iter().map(|s| EntryId::new(s, 0)).collect()),
                other => Err(unexpected(other)),
            };
        }
        // An append larger than one entry may hold goes as several entries, one after the other (so its relays
        // keep their order). If a later part fails, the earlier ones stay committed; the caller sees a failure, as
        // for any write whose commit status is unknown.
        let mut ids = Vec::with_capacity(relays.len());
        for part in split(relays, self.max_batch_bytes) {
            let (tx, rx) = oneshot::channel();
            self.appends
                .send(AppendJob {
                    bytes: relay_bytes(&part),
                    relays: part,
                    reply: tx,
                })
                .await
                .map_err(|_| StorageError::Unavailable("raft node stopped".into()))?;
            ids.extend(
                rx.await
                    .map_err(|_| StorageError::Unavailable("raft node stopped".into()))??,
            );
        }
        Ok(ids)
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
        let seqs = self.pending_seqs(supplier, ids);
        if seqs.is_empty() {
            return Ok(0);
        }
        self.write1(Op::Ack {
            supplier: supplier.to_owned(),
            seqs: seqs.clone(),
        })
        .await?;
        Ok(self.acked(supplier, seqs))
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

    /// Read from this node's applied state machine, as the other reads are.
    async fn session_relay_hashes(&self, supplier: &str, session_id: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        self.reader.session_relay_hashes(supplier, session_id)
    }

    /// Read from this node's applied state machine, as the other reads are (a follower lists what it applied).
    async fn suppliers(&self) -> Result<Vec<String>, StorageError> {
        self.reader.suppliers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(n: u8, bytes: usize) -> RelayRecord {
        RelayRecord {
            supplier: "a".into(),
            session_id: "s".into(),
            session_end_height: 1,
            relay_hash: vec![n],
            payload: vec![n; bytes],
        }
    }

    #[test]
    fn appends_are_cut_into_parts_in_order_and_a_large_relay_goes_alone() {
        let one = relay(0, 1000).encoded_len_bound();
        let relays = vec![
            relay(1, 1000),
            relay(2, 1000),
            relay(3, 5000),
            relay(4, 1000),
            relay(5, 1000),
        ];
        let parts: Vec<Vec<u8>> = split(relays, 2 * one)
            .iter()
            .map(|p| p.iter().map(|r| r.relay_hash[0]).collect())
            .collect();
        assert_eq!(parts, vec![vec![1, 2], vec![3], vec![4, 5]]);
        assert_eq!(split(Vec::new(), 10).len(), 0);
    }
}
