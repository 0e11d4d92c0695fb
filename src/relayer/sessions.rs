//! Which sessions optimistic mode may serve before their chain-backed validation (`validation_mode: optimistic`).
//!
//! Serving first and validating afterwards (Go's optimistic mode) served any well-formed request naming one of
//! our suppliers: an invented session header is never mined, but the backend had already worked for it, at the
//! supplier's expense. So optimistic mode serves first only relays of a (supplier, session header) pair it has
//! seen one fully valid relay of: the chain-backed checks (the header is the chain's session, the supplier is in
//! it, the app is staked, its ring resolves to on-chain keys) then held for that header, and the pair is recorded
//! here with its session's windows and the application's ring. A later relay of the pair is served first while its
//! arrival height is inside the session's relay window (grace period, before the claim window), and only after its
//! own ring signature verified against the recorded ring (the relayer does that before forwarding; a copied header
//! with a garbage signature gets nothing). What optimistic mode defers is then only what needs the chain: the
//! checks re-read at the arrival height, metering and mining, in the background.
//!
//! The first relay of a pair is validated before it is served, as in eager mode, and records the pair. A relay of
//! a recorded pair that fails its background validation for a reason of its own (the app unstaked or a gateway
//! undelegated since, the session no longer the chain's) revokes the pair: its next relay is validated before
//! serving again. Chain outages do not revoke (not the relay's fault; the session was proven valid).
//!
//! Bounded: at most [`CAPACITY`] pairs, evicted oldest first; pairs past their relay window are swept as the map
//! doubles (an evicted pair is only validated before serving again). Pure data and a mutex held for a map lookup;
//! no IO.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use prost::Message as _;

use crate::protocol::session::SessionWindows;
use crate::protocol::wire::SessionHeader;

/// Pairs remembered at most: far more than one relay miner's sessions at once (suppliers × apps × services per
/// session), so eviction only happens under a flood of distinct valid sessions.
pub const CAPACITY: usize = 65_536;

/// A (supplier, session header) pair: the header's encoding (every field, so a header differing in any height or
/// the app is another pair) and the supplier operator address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    header: Vec<u8>,
    supplier: String,
}

impl Key {
    fn new(header: &SessionHeader, supplier: &str) -> Self {
        Self {
            header: header.encode_to_vec(),
            supplier: supplier.to_owned(),
        }
    }
}

/// A recorded pair: its session's windows, the application's ring its first relay was verified against, and the
/// sequence number of the recording.
#[derive(Debug)]
struct Entry {
    windows: SessionWindows,
    ring: Arc<[[u8; 33]]>,
    seq: u64,
}

/// Pairs past their relay window are swept when the map reaches this many, then twice what is left.
const FIRST_SWEEP: usize = 1024;

#[derive(Debug)]
struct Inner {
    windows: HashMap<Key, Entry>,
    /// Recordings in order, for eviction; an entry whose sequence number is not its pair's current one is stale
    /// (the pair was revoked, or revoked and recorded again) and is skipped.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
    /// Map size at which pairs past their relay window are swept next.
    next_sweep: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            windows: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            next_sweep: FIRST_SWEEP,
        }
    }
}

/// Whether a relay arriving at `height` is inside the session's relay window (§2.6 steps 1 and 5).
fn in_relay_window(w: &SessionWindows, height: i64) -> bool {
    !w.grace_elapsed(height) && height < w.claim_open
}

/// The (supplier, session) pairs validated once, whose relays optimistic mode serves before validating.
#[derive(Debug)]
pub struct ValidatedSessions {
    inner: Mutex<Inner>,
    capacity: usize,
    gauge: prometheus::IntGauge,
}

impl ValidatedSessions {
    /// An empty set of at most `capacity` pairs; its size is kept in `gauge` (`ha_relayer_optimistic_sessions`).
    pub fn new(capacity: usize, gauge: prometheus::IntGauge) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            gauge,
        }
    }

    /// The application's ring to verify a relay's signature against, and the session's windows, when a relay of
    /// `header` for `supplier` arriving at `height` may be served before its chain-backed validation: the pair was
    /// validated before and `height` is inside the session's relay window (not past the grace period, before the
    /// claim window opens, as §2.6 steps 1 and 5 check it). `None`: validate fully before serving.
    pub fn serves_first(
        &self,
        header: &SessionHeader,
        supplier: &str,
        height: i64,
    ) -> Option<(Arc<[[u8; 33]]>, SessionWindows)> {
        let key = Key::new(header, supplier);
        let inner = self.inner.lock().ok()?;
        inner
            .windows
            .get(&key)
            .filter(|e| in_relay_window(&e.windows, height))
            .map(|e| (Arc::clone(&e.ring), e.windows))
    }

    /// Records a pair whose relay (arrived at `height`) passed full validation against `ring`.
    pub fn record(
        &self,
        header: &SessionHeader,
        supplier: &str,
        windows: SessionWindows,
        ring: Arc<[[u8; 33]]>,
        height: i64,
    ) {
        let key = Key::new(header, supplier);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner {
            windows: map,
            order,
            next_seq,
            next_sweep,
        } = &mut *inner;
        if let Some(entry) = map.get_mut(&key) {
            entry.windows = windows;
            entry.ring = ring;
        } else {
            if map.len() >= *next_sweep {
                map.retain(|_, e| in_relay_window(&e.windows, height));
                *next_sweep = (2 * map.len()).max(FIRST_SWEEP);
            }
            let seq = *next_seq;
            *next_seq += 1;
            map.insert(key.clone(), Entry { windows, ring, seq });
            order.push_back((key, seq));
            while map.len() > self.capacity {
                let Some((oldest, seq)) = order.pop_front() else {
                    break;
                };
                if map.get(&oldest).is_some_and(|e| e.seq == seq) {
                    map.remove(&oldest);
                }
            }
        }
        // Revoked and swept pairs leave stale entries in `order`; keep it from growing past twice the capacity.
        if order.len() > 2 * self.capacity {
            order.retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
        self.gauge.set(i64::try_from(inner.windows.len()).unwrap_or(i64::MAX));
    }

    /// Forgets a pair one of whose relays failed validation: its next relay is validated before serving.
    /// Returns whether it was recorded.
    pub fn revoke(&self, header: &SessionHeader, supplier: &str) -> bool {
        let key = Key::new(header, supplier);
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let removed = inner.windows.remove(&key).is_some();
        self.gauge.set(i64::try_from(inner.windows.len()).unwrap_or(i64::MAX));
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::SharedParams;

    fn header(id: &str, end: i64) -> SessionHeader {
        SessionHeader {
            application_address: "pokt1app".into(),
            service_id: "anvil".into(),
            session_id: id.into(),
            session_start_block_height: end - 3,
            session_end_block_height: end,
        }
    }

    /// Sessions of 4 blocks, grace 1 block, claim window opening 2 blocks after the end.
    fn windows(end: i64) -> SessionWindows {
        let params = SharedParams {
            num_blocks_per_session: 4,
            grace_period_end_offset_blocks: 1,
            claim_window_open_offset_blocks: 1,
            claim_window_close_offset_blocks: 4,
            proof_window_open_offset_blocks: 0,
            proof_window_close_offset_blocks: 4,
            ..Default::default()
        };
        SessionWindows::new(&params, end).unwrap()
    }

    fn ring() -> Arc<[[u8; 33]]> {
        vec![[2u8; 33], [3u8; 33]].into()
    }

    fn set(capacity: usize) -> ValidatedSessions {
        ValidatedSessions::new(capacity, prometheus::IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn only_a_recorded_pair_inside_its_relay_window_is_served_first() {
        let s = set(8);
        let h = header("s1", 4);
        let w = windows(4);
        assert_eq!((w.grace_period_end, w.claim_open), (5, 6));
        assert!(s.serves_first(&h, "pokt1sup", 2).is_none(), "never validated");
        s.record(&h, "pokt1sup", w, ring(), 2);
        assert!(s.serves_first(&h, "pokt1sup", 2).is_some());
        assert!(s.serves_first(&h, "pokt1sup", 5).is_some(), "inside the grace period");
        assert!(s.serves_first(&h, "pokt1sup", 6).is_none(), "grace period over");
        assert!(s.serves_first(&h, "pokt1other", 2).is_none(), "another supplier");
        let mut other_app = h.clone();
        other_app.application_address = "pokt1evil".into();
        assert!(
            s.serves_first(&other_app, "pokt1sup", 2).is_none(),
            "any field differing is another pair"
        );
        let mut other_end = h.clone();
        other_end.session_end_block_height = 8;
        assert!(s.serves_first(&other_end, "pokt1sup", 2).is_none());
        assert_eq!(s.gauge.get(), 1);
    }

    #[test]
    fn a_revoked_pair_is_validated_again_before_serving() {
        let s = set(8);
        let h = header("s1", 4);
        s.record(&h, "pokt1sup", windows(4), ring(), 2);
        assert!(s.revoke(&h, "pokt1sup"));
        assert!(!s.revoke(&h, "pokt1sup"), "already gone");
        assert!(s.serves_first(&h, "pokt1sup", 2).is_none());
        assert_eq!(s.gauge.get(), 0);
        s.record(&h, "pokt1sup", windows(4), ring(), 2);
        assert!(s.serves_first(&h, "pokt1sup", 2).is_some());
    }

    #[test]
    fn the_oldest_pairs_are_evicted_at_capacity() {
        let s = set(3);
        let headers: Vec<_> = (0..5).map(|i| header(&format!("s{i}"), 4)).collect();
        for h in &headers {
            s.record(h, "pokt1sup", windows(4), ring(), 2);
        }
        assert_eq!(s.inner.lock().unwrap().windows.len(), 3);
        assert_eq!(s.gauge.get(), 3);
        assert!(s.serves_first(&headers[0], "pokt1sup", 2).is_none());
        assert!(s.serves_first(&headers[1], "pokt1sup", 2).is_none());
        for h in &headers[2..] {
            assert!(s.serves_first(h, "pokt1sup", 2).is_some());
        }
        // Revocations and re-records do not grow the order queue without bound.
        for _ in 0..100 {
            s.revoke(&headers[4], "pokt1sup");
            s.record(&headers[4], "pokt1sup", windows(4), ring(), 2);
        }
        assert!(s.inner.lock().unwrap().order.len() <= 6);
        assert_eq!(s.inner.lock().unwrap().windows.len(), 3);
    }

    /// Pairs past their relay window leave as the map grows: the gauge does not climb with every session ever seen.
    #[test]
    fn pairs_past_their_relay_window_are_swept() {
        let s = set(CAPACITY);
        for i in 0..FIRST_SWEEP {
            s.record(&header(&format!("old{i}"), 4), "pokt1sup", windows(4), ring(), 2);
        }
        assert_eq!(s.gauge.get(), FIRST_SWEEP as i64);
        // The sessions ending at 4 no longer take relays at 6: recording a pair of the next session sweeps them.
        s.record(&header("new", 8), "pokt1sup", windows(8), ring(), 6);
        assert_eq!(s.gauge.get(), 1);
        assert!(s.serves_first(&header("new", 8), "pokt1sup", 6).is_some());
        assert_eq!(s.inner.lock().unwrap().next_sweep, FIRST_SWEEP);
    }
}
