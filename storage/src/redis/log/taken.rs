//! Relays a foreign consumer of our group took, acknowledged or not: `ha_storage_redis_relay_log_taken_by_foreign_total`.
//!
//! Why: the foreign-pending gauge (module `go_fleet`, "Relays read by a foreign consumer") sees only the entries
//! still pending for another consumer. A Go miner acknowledges with `XACKDEL` (Redis 8.2+): its entries then leave
//! both the pending lists and the stream, and nothing named them. The group itself counts them: `XINFO GROUPS`
//! answers `entries-read` (Redis 7+), the number of entries the group has delivered (its position in the stream's
//! history: every entry up to `last-delivered-id`, whichever consumer got it and whatever became of it since).
//! Between two observations of it, the entries our consumer got from new reads (`XREADGROUP ... >`, counted by
//! [`RedisBackend::count_new_reads`]) are ours; the rest of the difference went to other consumers.
//!
//! Each read round (`read_pending`) observes `entries-read` with its `XINFO CONSUMERS` (best effort: a server or
//! ACL refusing XINFO leaves it uncounted), and counts `entries-read − previous − our new reads since` when that is
//! positive, per stream. No count (the observation only becomes the next baseline) when the previous observation
//! was made under another fencing token (another leadership term: meanwhile the leader was another process, whose
//! reads under our consumer name are not ours to tell apart), when either value is unknown (Redis < 7, or
//! `entries-read` reported nil: Redis cannot tell it after some deletions ahead of the group), or when the
//! difference is negative (the group was created again, or moved with `XGROUP SETID`).
//!
//! What it counts beyond what a foreign consumer took (the limit): entries deleted before the group delivered
//! them to anyone count as delivered (`entries-read` counts positions, not deliveries). Only trims do that: our
//! `trim_session` of settled sessions, whose entries the miner read before claiming, and the Go relayer's `XTRIM
//! MINID` of entries older than its stream TTL (2 h), which a miner reading the stream every round has long read.
//! So it is exact while our miner reads the stream as it does, and otherwise over-counts only entries nobody read
//! for hours. A deposed leader's read still in flight at a failover (one batch at most) also counts as foreign
//! for the new leader. It does not count entries read by a foreign consumer while this process was not reading
//! the stream under the same token (before it led, between terms): those are the foreign-pending gauge's, if
//! still pending.

use std::collections::HashMap;

use super::RedisBackend;
use crate::redis::lock;

/// What a stream's last read round saw of its group (module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupReads {
    /// The fencing token of the view that observed it (`None`: an unfenced view).
    token: Option<u64>,
    /// The group's `entries-read` then, when known.
    entries_read: Option<u64>,
    /// Entries our new reads got since.
    ours: u64,
}

/// By stream.
pub(crate) type GroupReadsByStream = HashMap<String, GroupReads>;

impl RedisBackend {
    /// Our consumer got `n` entries of `stream` from a new read (`XREADGROUP ... >`).
    pub(super) fn count_new_reads(&self, stream: &str, n: usize) {
        if n == 0 {
            return;
        }
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let mut by_stream = lock(&self.inner.group_reads);
        let entry = by_stream.entry(stream.to_owned()).or_default();
        entry.ours = entry.ours.saturating_add(n);
    }

    /// A read round of `stream` by `reader` saw the group's `entries-read` (module docs): counts what other
    /// consumers got since the last round, and makes this the next baseline.
    pub(super) fn observe_group_reads(&self, stream: &str, reader: &str, entries_read: Option<u64>) {
        let token = self.fence.as_deref().map(|f| f.token);
        let taken = {
            let mut by_stream = lock(&self.inner.group_reads);
            let now = GroupReads {
                token,
                entries_read,
                ours: 0,
            };
            let was = by_stream.insert(stream.to_owned(), now).unwrap_or_default();
            match (was.entries_read, entries_read) {
                (Some(before), Some(after)) if was.token == token => {
                    after.checked_sub(before).and_then(|d| d.checked_sub(was.ours))
                }
                _ => None,
            }
        };
        let Some(taken) = taken.filter(|n| *n > 0) else {
            return;
        };
        if self.inner.stats.record_taken_by_foreign(taken) {
            tracing::error!(
                stream,
                group = self.keys().group(),
                reader,
                taken,
                taken_total = self.inner.stats.relay_log_taken_by_foreign(),
                "relays of this stream were delivered to another consumer of the group since the last read round \
                 (a Go miner, or a miner under another consumer name): they go into its tries, not ours, \
                 acknowledged or not (ha_storage_redis_relay_log_taken_by_foreign_total); stop the other miner"
            );
        }
    }
}
