//! Consumer-group bookkeeping shared by the in-process backends (memory, redb).
//!
//! Tracks, per supplier log, the delivery cursor (highest sequence ever delivered) and the pending entries
//! (delivered, not acknowledged) with their consumer, last delivery time and delivery count. Redis keeps the
//! same state in its stream consumer group; here it lives in memory, which is correct for the embedded backend
//! because after a restart every consumer of the old process is dead and every unacknowledged entry must be
//! delivered again (the cursor restarts at 0 and acknowledged entries are deleted from the log).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// One pending (delivered, unacknowledged) entry.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub consumer: String,
    pub delivered_at: Instant,
    pub deliveries: u64,
}

/// Cursor and pending list of one supplier's log.
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    /// Highest sequence delivered so far (0 = none; sequences start at 1).
    pub cursor: u64,
    pub pending: BTreeMap<u64, Pending>,
}

impl GroupState {
    /// Records `seq` as newly delivered to `consumer`; returns its delivery count (1).
    pub fn deliver_new(&mut self, seq: u64, consumer: &str, now: Instant) -> u64 {
        self.cursor = self.cursor.max(seq);
        self.pending.insert(
            seq,
            Pending {
                consumer: consumer.to_owned(),
                delivered_at: now,
                deliveries: 1,
            },
        );
        1
    }

    /// Sequences pending for `consumer`, in order, at most `max`; marks them redelivered.
    pub fn redeliver_own(&mut self, consumer: &str, max: usize, now: Instant) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (seq, p) in self.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if p.consumer == consumer {
                p.deliveries += 1;
                p.delivered_at = now;
                out.push((*seq, p.deliveries));
            }
        }
        out
    }

    /// Takes over entries pending for other consumers idle at least `min_idle`; returns `(seq, deliveries)`.
    pub fn claim(&mut self, consumer: &str, min_idle: Duration, max: usize, now: Instant) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (seq, p) in self.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if p.consumer != consumer && now.saturating_duration_since(p.delivered_at) >= min_idle {
                p.consumer = consumer.to_owned();
                p.deliveries += 1;
                p.delivered_at = now;
                out.push((*seq, p.deliveries));
            }
        }
        out
    }

    /// Forgets `seq` (acknowledged or removed); returns whether it was pending.
    pub fn remove(&mut self, seq: u64) -> bool {
        self.pending.remove(&seq).is_some()
    }
}
