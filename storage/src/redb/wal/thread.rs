//! The `redb-wal` thread: group commit into the WAL, hand-off to the redb writer, checkpoints and segment
//! rollover / recycling. See the module docs of [`super`] for the crash-safety argument.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::watch;

use super::fault::Site;
use super::record::{Encoder, Entry, HEADER_LEN};
use super::segment::{self, Maker, Segment};
use super::{
    Applied, Msg, Recovered, Request, WAL_APPLIED, WAL_CHECKPOINT, WalConfig, WalStats, WriteFailure, apply_record,
    follows_applied, io_err, last_seqs, wal_gone,
};
use crate::StorageError;
use crate::contract::EntryId;
use crate::lease::LeaseTable;
use crate::redb::lock_leases;
use crate::redb::tables::{META, db_err};
use crate::redb::writer::{Durable, Writer};

/// What the thread is built from (besides the recovered files).
pub(super) struct Parts {
    pub cfg: WalConfig,
    pub db: Arc<Database>,
    pub writer: Writer,
    pub leases: Arc<Mutex<LeaseTable>>,
    pub durable: Arc<AtomicU64>,
    pub applied: Arc<watch::Sender<Applied>>,
    /// Set while writes fail, cleared by the next that succeeds ([`super::Wal::write_failure`]).
    pub write_failure: Arc<Mutex<Option<WriteFailure>>>,
    pub tx: Sender<Msg>,
    pub rx: Receiver<Msg>,
    pub stats: WalStats,
}

/// Checkpoint bookkeeping (all record sequences).
#[derive(Debug, Default)]
struct Checkpoint {
    /// Last record handed to the redb writer.
    sent: u64,
    /// Records up to this one are covered by the checkpoint in flight or the last one requested.
    requested: u64,
    /// Records up to this one are durable in redb: a checkpoint commit returned `Ok` and found them applied
    /// (META `wal_applied`), which is what lets their segments be reused.
    done: u64,
    in_flight: bool,
    /// WAL bytes written since the last request.
    bytes: u64,
    /// When the first record not covered by a request was written.
    dirty_since: Option<Instant>,
}

/// How far (in WAL bytes) the WAL may run ahead of redb at most: past it the thread waits for applies before
/// taking the next group. Bounds memory, the wait of reads (`caught_up`) and the segments awaiting a checkpoint
/// when redb applies slower than the WAL writes (a saturating load; 2,000 relays/s never gets near it).
const MAX_UNAPPLIED_BYTES: u64 = 4 << 20;

pub(super) struct WalThread {
    p: Parts,
    /// Records handed to the writer and not yet applied, `(record_seq, bytes)`, oldest first.
    unapplied: VecDeque<(u64, u64)>,
    unapplied_bytes: u64,
    applied_rx: watch::Receiver<Applied>,
    /// Last sequence per supplier (loaded from redb on first use after recovery).
    seqs: HashMap<String, u64>,
    next_record: u64,
    /// `None` only after a failed rollover (the next group retries it).
    active: Option<Segment>,
    /// Segments holding acknowledged records, full (or retired by a failed write), waiting for a checkpoint to
    /// cover their last record, oldest first.
    closed: VecDeque<Segment>,
    spare: Option<Segment>,
    maker: Option<Maker>,
    spares_named: u64,
    enc: Encoder,
    ckpt: Checkpoint,
}

impl WalThread {
    pub fn new(p: Parts, r: Recovered) -> Self {
        let applied_rx = p.applied.subscribe();
        Self {
            p,
            unapplied: VecDeque::new(),
            unapplied_bytes: 0,
            applied_rx,
            seqs: HashMap::new(),
            next_record: r.last + 1,
            active: Some(r.active),
            closed: VecDeque::new(),
            spare: r.spare,
            maker: None,
            spares_named: r.spares_named,
            enc: Encoder::default(),
            ckpt: Checkpoint {
                sent: r.last,
                requested: r.last,
                done: r.last,
                ..Checkpoint::default()
            },
        }
    }

    /// Serves requests until [`Msg::Shutdown`].
    pub fn run(mut self) {
        self.keep_spare();
        loop {
            self.throttle();
            let first = match self.checkpoint_deadline() {
                None => match self.p.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
                Some(at) => match self.p.rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.maybe_checkpoint();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut group = Vec::new();
            let (mut relays, mut bytes) = (0usize, 0usize);
            let byte_cap = usize::try_from(self.p.cfg.segment_bytes / 2)
                .unwrap_or(usize::MAX)
                .max(64 << 10);
            let mut stop = self.take(first, &mut group, &mut relays, &mut bytes);
            // No time window: whatever queued while the last fdatasync ran forms this group.
            while !stop && relays < self.p.cfg.max_entries && bytes < byte_cap {
                match self.p.rx.try_recv() {
                    Ok(m) => stop = self.take(m, &mut group, &mut relays, &mut bytes),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(group, bytes);
            }
            self.maybe_checkpoint();
            self.keep_spare();
            if stop {
                break;
            }
        }
        self.finish();
    }

    /// Waits (before taking the next group, so requests keep queuing into it) while more than
    /// [`MAX_UNAPPLIED_BYTES`] of WAL records are not applied to redb yet.
    fn throttle(&mut self) {
        let limit = MAX_UNAPPLIED_BYTES.min(self.p.cfg.segment_bytes);
        loop {
            let (applied, failed) = {
                let a = self.applied_rx.borrow();
                (a.seq, a.error.is_some())
            };
            while self.unapplied.front().is_some_and(|(seq, _)| *seq <= applied) {
                if let Some((_, len)) = self.unapplied.pop_front() {
                    self.unapplied_bytes -= len;
                }
            }
            if self.unapplied_bytes <= limit || failed {
                return;
            }
            let Some(&(target, _)) = self.unapplied.front() else {
                return;
            };
            // The applies may be deferred in the writer; this thread is about to wait for them.
            let _ = self.p.writer.flush();
            let waited =
                futures::executor::block_on(self.applied_rx.wait_for(|a| a.seq >= target || a.error.is_some()));
            if waited.is_err() {
                return;
            }
        }
    }

    /// Files one message; returns whether it asked the thread to stop.
    fn take(&mut self, m: Msg, group: &mut Vec<Request>, relays: &mut usize, bytes: &mut usize) -> bool {
        match m {
            Msg::Append(r) => {
                *relays += r.entries.len();
                *bytes = bytes.saturating_add(r.bytes);
                group.push(r);
                false
            }
            Msg::Checkpointed { requested, covered } => {
                self.on_checkpoint(requested, covered);
                false
            }
            Msg::Shutdown => true,
        }
    }

    /// Writes one record for the group, acknowledges it, hands it to redb.
    fn commit(&mut self, group: Vec<Request>, bytes: usize) {
        let taken = Instant::now();
        for r in &group {
            self.p.stats.queued(taken.saturating_duration_since(r.queued));
        }
        if let Some(e) = self.p.applied.borrow().error.clone() {
            return fail_all(group, &e);
        }
        if let Err(e) = self.load_seqs(&group) {
            return fail_all(group, &e);
        }
        // Room for the largest record this group can make (fence refusals only shrink it).
        let bound = (HEADER_LEN + 4).saturating_add(bytes) as u64;
        if self.active.as_ref().is_none_or(|a| a.room() < bound)
            && let Err(e) = self.roll(bound)
        {
            tracing::error!(error = %e, "relay WAL rollover failed; failing the appends of this group");
            self.write_failed(&e);
            return fail_all(group, &e);
        }
        // Fenced requests are checked with the lease table locked, and it stays locked until the record is
        // durable: a campaign installs a new term under the same lock, so a fenced append is durable before the
        // term that deposes its leader exists (and reads after that campaign wait for it), or it is refused.
        let leases = self.p.leases.clone();
        let guard = group.iter().any(|r| r.fence.is_fenced()).then(|| lock_leases(&leases));
        let mut accepted = Vec::with_capacity(group.len());
        for r in group {
            if let Some(g) = &guard
                && let Err(e) = r.fence.check_locked(g)
            {
                let _ = r.reply.send(Err(e));
                continue;
            }
            accepted.push(r);
        }
        if accepted.is_empty() {
            return;
        }
        let record_seq = self.next_record;
        let mut entries = Vec::with_capacity(accepted.iter().map(|r| r.entries.len()).sum());
        let mut replies = Vec::with_capacity(accepted.len());
        self.enc.begin(bytes);
        let mut encoded = Ok(());
        for r in accepted {
            let mut ids = Vec::with_capacity(r.entries.len());
            for (supplier, value) in r.entries {
                // `load_seqs` loaded every supplier of the group; a missing one would start at 1.
                let seq = self.seqs.get(supplier.as_str()).map_or(1, |s| s + 1);
                match self.seqs.get_mut(supplier.as_str()) {
                    Some(last) => *last = seq,
                    None => {
                        self.seqs.insert(supplier.clone(), seq);
                    }
                }
                ids.push(EntryId::new(seq, 0));
                if encoded.is_ok() {
                    encoded = self.enc.push(&supplier, seq, &value);
                }
                entries.push(Entry { supplier, seq, value });
            }
            replies.push((r.reply, ids));
        }
        let relays = entries.len();
        let written = self.write_record(record_seq, encoded, relays);
        // The sequence is burnt whatever happened: a failed write may still have reached the disk.
        self.next_record += 1;
        match written {
            Ok(len) => {
                self.write_succeeded();
                // Published before any acknowledgement: a read that starts after an acknowledged append waits
                // for this record to be applied.
                self.p.durable.store(record_seq, Ordering::Release);
                drop(guard);
                for (reply, ids) in replies {
                    let _ = reply.send(Ok(ids));
                }
                self.hand_to_writer(record_seq, entries);
                self.unapplied.push_back((record_seq, len as u64));
                self.unapplied_bytes += len as u64;
                self.ckpt.bytes += len as u64;
                self.ckpt.dirty_since.get_or_insert_with(Instant::now);
            }
            Err(e) => {
                drop(guard);
                tracing::error!(error = %e, record_seq, "relay WAL write failed; failing its appends");
                self.write_failed(&e);
                for (reply, _) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                // No record goes after a failed one in this file: the next group rolls. A segment holding
                // acknowledged records is reused only once a checkpoint covers this record too (it may be valid
                // on disk); one holding nothing acknowledged (this write was its first) is reused by the rollover
                // at once, so writes that keep failing make no new files (see `roll`).
                if let Some(a) = self.active.as_mut() {
                    if a.last != 0 {
                        a.last = record_seq;
                    }
                    a.len = a.size;
                }
            }
        }
    }

    /// Publishes a failed write (readiness is red until one succeeds, see [`super::Wal::write_failure`]).
    fn write_failed(&self, e: &StorageError) {
        self.p.stats.write_failed();
        let mut f = self.p.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        let consecutive = f.as_ref().map_or(0, |f| f.consecutive) + 1;
        *f = Some(WriteFailure {
            error: e.clone(),
            consecutive,
        });
    }

    fn write_succeeded(&self) {
        let mut f = self.p.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(was) = f.take() {
            tracing::info!(failed = was.consecutive, "relay WAL writes succeed again");
        }
    }

    /// Seals the encoded record and writes it (one `pwrite` + `fdatasync`); returns its length.
    fn write_record(
        &mut self,
        record_seq: u64,
        encoded: Result<(), StorageError>,
        relays: usize,
    ) -> Result<usize, StorageError> {
        encoded?;
        let rec = self.enc.finish(record_seq)?;
        let active = self
            .active
            .as_mut()
            .ok_or_else(|| StorageError::Backend("relay WAL has no active segment".into()))?;
        let started = Instant::now();
        active
            .append(rec, record_seq, &self.p.cfg.faults)
            .map_err(|e| io_err("write", e))?;
        self.p.stats.written(relays, started.elapsed());
        Ok(rec.len())
    }

    /// Loads the last sequence of every supplier of `group` not seen yet in this run.
    fn load_seqs(&mut self, group: &[Request]) -> Result<(), StorageError> {
        let unknown: HashSet<&str> = group
            .iter()
            .flat_map(|r| r.entries.iter().map(|(s, _)| s.as_str()))
            .filter(|s| !self.seqs.contains_key(*s))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        for (s, last) in last_seqs(&self.p.db, unknown.into_iter())? {
            self.seqs.insert(s.to_owned(), last);
        }
        Ok(())
    }

    /// Queues the non-durable redb commit of a record.
    fn hand_to_writer(&mut self, record_seq: u64, entries: Vec<Entry>) {
        let applied = self.p.applied.clone();
        let weight = entries.len();
        let faults = self.p.cfg.faults.clone();
        let previous = self.ckpt.sent;
        let queued = self.p.writer.submit_deferred(
            weight,
            move |txn| {
                // Writes nothing (and does not abort the other writes of the transaction) if the record handed
                // before this one is not applied.
                if let Err(e) = follows_applied(txn, previous, record_seq) {
                    return Ok(Err(e));
                }
                faults
                    .run(
                        Site::Apply(record_seq),
                        || apply_record(txn, record_seq, &entries),
                        StorageError::Backend,
                    )
                    .map(Ok)
            },
            move |r: Result<(), StorageError>| note_applied(&applied, record_seq, r),
        );
        if let Err(e) = queued {
            note_applied(&self.p.applied, record_seq, Err(e));
        }
        self.ckpt.sent = record_seq;
    }

    /// Moves to a fresh segment with room for `need` bytes.
    fn roll(&mut self, need: u64) -> Result<(), StorageError> {
        // Retire the active segment first (this frees its name): with acknowledged records it waits for a
        // checkpoint; never written, it is reusable at once; holding only a failed write (nothing acknowledged
        // in it), it is taken again below unless the spare is there, and then becomes the spare: while writes
        // keep failing, the WAL alternates between two files instead of making (and keeping) one per failure.
        let mut burnt = None;
        if let Some(old) = self.active.take() {
            if old.last != 0 {
                self.closed.push_back(old);
            } else if old.len > 0 && old.size == self.p.cfg.segment_bytes {
                burnt = Some(old);
            } else {
                self.recycle(old);
            }
        }
        let name = segment::active_name(self.next_record);
        let mut seg = if need > self.p.cfg.segment_bytes {
            if let Some(b) = burnt.take() {
                self.recycle(b);
            }
            // A record larger than a segment gets a segment of its own size (created now: rare and slow).
            let size = need.next_multiple_of(4096);
            tracing::info!(
                size,
                record_seq = self.next_record,
                "relay WAL: creating an oversized segment"
            );
            segment::create(&self.p.cfg.dir, &name, size).map_err(|e| io_err("create segment", e))?
        } else if let Some(s) = self.spare.take() {
            s
        } else if let Some(b) = burnt.take() {
            b
        } else {
            self.take_spare()?
        };
        if let Some(b) = burnt {
            self.recycle(b);
        }
        seg.len = 0;
        seg.last = 0;
        if let Err(e) = seg.rename(&self.p.cfg.dir, &name) {
            self.recycle(seg);
            return Err(io_err("rename segment", e));
        }
        self.active = Some(seg);
        Ok(())
    }

    fn take_spare(&mut self) -> Result<Segment, StorageError> {
        if let Some(s) = self.spare.take() {
            return Ok(s);
        }
        if let Some(m) = self.maker.take() {
            match m.wait() {
                Ok(s) => return Ok(s),
                Err(e) => tracing::warn!(error = %e, "relay WAL: preparing a spare segment failed"),
            }
        }
        // Nothing prepared (checkpoints lag far behind): create one on the append path.
        tracing::warn!("relay WAL: no spare segment ready at rollover; creating one now");
        let name = self.next_spare_name();
        segment::create(&self.p.cfg.dir, &name, self.p.cfg.segment_bytes).map_err(|e| io_err("create segment", e))
    }

    fn next_spare_name(&mut self) -> String {
        let name = segment::spare_name(self.spares_named);
        self.spares_named += 1;
        name
    }

    /// Keeps one spare: the next checkpoint recycles a closed segment if there is one to wait for, else a maker
    /// thread creates a new file.
    fn keep_spare(&mut self) {
        if let Some(m) = self.maker.as_mut()
            && let Some(r) = m.try_take()
        {
            self.maker = None;
            match r {
                Ok(seg) => self.recycle(seg),
                Err(e) => tracing::warn!(error = %e, "relay WAL: preparing a spare segment failed"),
            }
        }
        if self.spare.is_some() || self.maker.is_some() {
            return;
        }
        if self.closed.front().is_some_and(|s| s.last <= self.ckpt.sent) {
            self.request_checkpoint();
            return;
        }
        let name = self.next_spare_name();
        match Maker::spawn(self.p.cfg.dir.clone(), name, self.p.cfg.segment_bytes) {
            Ok(m) => self.maker = Some(m),
            Err(e) => tracing::warn!(error = %e, "relay WAL: cannot start the spare segment maker"),
        }
    }

    /// Makes a segment whose records are all durable in redb, or that holds nothing acknowledged, the spare (or
    /// deletes it if a spare exists or it is not of the configured size). Not fsynced: a lost rename or unlink
    /// leaves a file whose records recovery skips (all `<= wal_applied`) or, for a failed write, may apply
    /// (point 5 of the crash-safety argument).
    fn recycle(&mut self, mut seg: Segment) {
        if self.spare.is_none() && seg.size == self.p.cfg.segment_bytes {
            let name = self.next_spare_name();
            match seg.rename(&self.p.cfg.dir, &name) {
                Ok(()) => {
                    seg.len = 0;
                    seg.last = 0;
                    self.spare = Some(seg);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, path = ?seg.path, "relay WAL: cannot recycle a segment"),
            }
        }
        if let Err(e) = std::fs::remove_file(&seg.path) {
            tracing::warn!(error = %e, path = ?seg.path, "relay WAL: cannot remove a segment");
        }
    }

    fn checkpoint_deadline(&self) -> Option<Instant> {
        if self.ckpt.in_flight {
            return None; // its reply wakes the thread
        }
        self.ckpt.dirty_since.map(|t| t + self.p.cfg.checkpoint_interval)
    }

    fn maybe_checkpoint(&mut self) {
        let due = self.ckpt.bytes >= self.p.cfg.checkpoint_bytes
            || self
                .ckpt
                .dirty_since
                .is_some_and(|t| t.elapsed() >= self.p.cfg.checkpoint_interval);
        if due {
            self.request_checkpoint();
        }
    }

    /// Queues a durable redb commit behind every apply sent so far; its reply comes back as a message, so the
    /// append path never waits for it.
    fn request_checkpoint(&mut self) {
        if self.ckpt.in_flight || self.ckpt.sent <= self.ckpt.requested {
            return;
        }
        let seq = self.ckpt.sent;
        let tx = self.p.tx.clone();
        let (started, bytes) = (Instant::now(), self.ckpt.bytes);
        let faults = self.p.cfg.faults.clone();
        let stats = self.p.stats.clone();
        let queued = self.p.writer.submit(
            1,
            Durable::Now,
            move |txn| {
                let covered = checkpoint(txn, seq)?;
                Ok(faults.run(Site::CheckpointReply(seq), || Ok(covered), StorageError::Backend))
            },
            move |r: Result<u64, StorageError>| {
                let took = started.elapsed();
                tracing::debug!(seq, bytes, ?took, covered = ?r, "relay WAL checkpoint");
                stats.checkpointed(took);
                let _ = tx.send(Msg::Checkpointed {
                    requested: seq,
                    covered: r,
                });
            },
        );
        match queued {
            Ok(()) => {
                self.ckpt.in_flight = true;
                self.ckpt.requested = seq;
                self.ckpt.bytes = 0;
                self.ckpt.dirty_since = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay WAL: cannot queue a checkpoint; retrying later");
                self.ckpt.dirty_since = Some(Instant::now());
                self.ckpt.bytes = 0;
            }
        }
    }

    /// A checkpoint asked to cover records ≤ `requested` committed (`Ok(covered)`) or failed.
    fn on_checkpoint(&mut self, requested: u64, covered: Result<u64, StorageError>) {
        self.ckpt.in_flight = false;
        match covered {
            Ok(covered) => {
                if covered < requested {
                    // An apply failed (the error is latched; appends and reads fail until a reopen): the records
                    // from it on are durable in the WAL only, so their segments must stay.
                    tracing::warn!(
                        requested,
                        covered,
                        "relay WAL checkpoint: records handed to redb before it are not applied; keeping their \
                         segments for recovery"
                    );
                }
                self.ckpt.done = self.ckpt.done.max(covered);
                if self.p.applied.borrow().error.is_some() {
                    // Belt and braces: while an apply failure is outstanding nothing is reused; the reopen that
                    // repairs it recovers from every file anyway.
                    return self.checkpoint_taken(covered);
                }
                while self.closed.front().is_some_and(|s| s.last <= self.ckpt.done) {
                    if let Some(seg) = self.closed.pop_front() {
                        self.recycle(seg);
                    }
                }
                self.checkpoint_taken(covered);
            }
            Err(e) => {
                tracing::warn!(error = %e, seq = requested, "relay WAL checkpoint failed; retrying later");
                self.ckpt.requested = self.ckpt.done;
                self.ckpt.dirty_since = Some(Instant::now());
            }
        }
    }

    /// Tells the tests' fault hook that a successful checkpoint was taken (nothing outside tests).
    fn checkpoint_taken(&self, covered: u64) {
        let _ = self
            .p
            .cfg
            .faults
            .run(Site::CheckpointTaken(covered), || Ok::<(), String>(()), |e| e);
    }

    /// Shutdown: fail appends of dropped callers, make every applied record durable in redb (so the next open
    /// replays nothing), join the maker.
    fn finish(mut self) {
        while let Ok(m) = self.p.rx.try_recv() {
            if let Msg::Append(r) = m {
                let _ = r.reply.send(Err(wal_gone()));
            }
        }
        if self.ckpt.sent > self.ckpt.done {
            let seq = self.ckpt.sent;
            let r = self.p.writer.call_blocking(1, move |txn| checkpoint(txn, seq).map(Ok));
            if let Err(e) = r {
                tracing::warn!(error = %e, "relay WAL: final checkpoint failed (recovery replays the WAL)");
            }
        }
        drop(self.maker.take());
    }
}

/// The writes of a checkpoint meant to cover records ≤ `seq` (the last one handed to redb before it): records
/// META `wal_checkpoint` and returns what it really covers, `min(seq, wal_applied)`. Applies run before it in
/// record order, so that is `seq` unless an apply failed; then the failed record and those after it (refused by
/// [`follows_applied`]) are not in redb, and a checkpoint claiming them would let their segments be reused.
fn checkpoint(txn: &WriteTransaction, seq: u64) -> Result<u64, StorageError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let applied = meta.get(WAL_APPLIED).map_err(db_err)?.map_or(0, |g| g.value());
    let covered = seq.min(applied);
    meta.insert(WAL_CHECKPOINT, covered).map_err(db_err)?;
    Ok(covered)
}

fn fail_all(group: Vec<Request>, e: &StorageError) {
    for r in group {
        let _ = r.reply.send(Err(e.clone()));
    }
}

/// Publishes the outcome of applying `seq` (called on the writer thread after its commit).
fn note_applied(applied: &watch::Sender<Applied>, seq: u64, r: Result<(), StorageError>) {
    match r {
        Ok(()) => {
            applied.send_if_modified(|a| {
                let advance = a.error.is_none() && seq > a.seq;
                if advance {
                    a.seq = seq;
                }
                advance
            });
        }
        Err(e) => {
            tracing::error!(error = %e, seq, "relay WAL record could not be applied to redb");
            applied.send_if_modified(|a| {
                if a.error.is_some() {
                    return false;
                }
                a.error = Some(StorageError::Unavailable(format!(
                    "relay WAL record {seq} could not be applied to redb ({e}); it is durable in the WAL and is \
                     applied when the WAL or the database is reopened"
                )));
                true
            });
        }
    }
}
