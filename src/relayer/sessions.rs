//! Which sessions optimistic mode may serve before validating (`validation_mode: optimistic`).
//!
//! Serving first and validating afterwards (Go's optimistic mode) is only safe for a session the relayer has
//! already seen one fully valid relay of: the chain-backed checks (the header is the chain's session, the supplier
//! is in it, the app is staked and its ring resolves) then hold for every relay carrying the same header, and only
//! the relay's own ring signature is left to check after serving. Without this set, any well-formed request naming
//! one of our suppliers was forwarded to the backend, for free: an invented session header is not mined, but the
//! backend had already worked for it, at the supplier's expense.
//!
//! So the first relay of a (supplier, session header) is validated before it is served, as in eager mode, and a
//! success records the pair here with its session's windows. Later relays of the pair are served first while their
//! arrival height is inside the session's relay window (grace period, before the claim window). A relay of a
//! recorded pair that fails validation for a reason of its own (bad signature, header mismatch, expired) revokes
//! the pair: the next relay is validated before serving again, so a client interleaving invalid relays with a
//! gateway's valid ones gets at most one free relay per valid one. Chain outages do not revoke (not the relay's
//! fault; the session was already proven valid).
//!
//! Bounded: at most [`CAPACITY`] pairs, evicted oldest first (an evicted pair is validated before serving again).
//! Pure data and a mutex held for a map lookup; no IO.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

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

#[derive(Debug, Default)]
struct Inner {
    /// Each pair's windows and the sequence number of its recording.
    windows: HashMap<Key, (SessionWindows, u64)>,
    /// Recordings in order, for eviction; an entry whose sequence number is not its pair's current one is stale
    /// (the pair was revoked, or revoked and recorded again) and is skipped.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
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

    /// Whether a relay of `header` for `supplier` arriving at `height` may be served before its validation: the
    /// pair was validated before and `height` is inside the session's relay window (not past the grace period,
    /// before the claim window opens, as §2.6 step 1 and 5 check it).
    pub fn serves_first(&self, header: &SessionHeader, supplier: &str, height: i64) -> bool {
        let key = Key::new(header, supplier);
        let Ok(inner) = self.inner.lock() else {
            return false;
        };
        inner
            .windows
            .get(&key)
            .is_some_and(|(w, _)| !w.grace_elapsed(height) && height < w.claim_open)
    }

    /// Records a pair whose relay passed full validation.
    pub fn record(&self, header: &SessionHeader, supplier: &str, windows: SessionWindows) {
        let key = Key::new(header, supplier);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Inner {
            windows: map,
            order,
            next_seq,
        } = &mut *inner;
        if let Some((w, _)) = map.get_mut(&key) {
            *w = windows;
        } else {
            let seq = *next_seq;
            *next_seq += 1;
            map.insert(key.clone(), (windows, seq));
            order.push_back((key, seq));
            while map.len() > self.capacity {
                let Some((oldest, seq)) = order.pop_front() else {
                    break;
                };
                if map.get(&oldest).is_some_and(|(_, s)| *s == seq) {
                    map.remove(&oldest);
                }
            }
        }
        // Revoked pairs leave stale entries in `order`; keep it from growing past twice the map's capacity.
        if order.len() > 2 * self.capacity {
            order.retain(|(k, seq)| map.get(k).is_some_and(|(_, s)| s == seq));
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

    fn set(capacity: usize) -> ValidatedSessions {
        ValidatedSessions::new(capacity, prometheus::IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn only_a_recorded_pair_inside_its_relay_window_is_served_first() {
        let s = set(8);
        let h = header("s1", 4);
        let w = windows(4);
        assert_eq!((w.grace_period_end, w.claim_open), (5, 6));
        assert!(!s.serves_first(&h, "pokt1sup", 2), "never validated");
        s.record(&h, "pokt1sup", w);
        assert!(s.serves_first(&h, "pokt1sup", 2));
        assert!(s.serves_first(&h, "pokt1sup", 5), "inside the grace period");
        assert!(!s.serves_first(&h, "pokt1sup", 6), "grace period over");
        assert!(!s.serves_first(&h, "pokt1other", 2), "another supplier");
        let mut other_app = h.clone();
        other_app.application_address = "pokt1evil".into();
        assert!(
            !s.serves_first(&other_app, "pokt1sup", 2),
            "any field differing is another pair"
        );
        let mut other_end = h.clone();
        other_end.session_end_block_height = 8;
        assert!(!s.serves_first(&other_end, "pokt1sup", 2));
        assert_eq!(s.gauge.get(), 1);
    }

    #[test]
    fn a_revoked_pair_is_validated_again_before_serving() {
        let s = set(8);
        let h = header("s1", 4);
        s.record(&h, "pokt1sup", windows(4));
        assert!(s.revoke(&h, "pokt1sup"));
        assert!(!s.revoke(&h, "pokt1sup"), "already gone");
        assert!(!s.serves_first(&h, "pokt1sup", 2));
        assert_eq!(s.gauge.get(), 0);
        s.record(&h, "pokt1sup", windows(4));
        assert!(s.serves_first(&h, "pokt1sup", 2));
    }

    #[test]
    fn the_oldest_pairs_are_evicted_at_capacity() {
        let s = set(3);
        let headers: Vec<_> = (0..5).map(|i| header(&format!("s{i}"), 4)).collect();
        for h in &headers {
            s.record(h, "pokt1sup", windows(4));
        }
        assert_eq!(s.inner.lock().unwrap().windows.len(), 3);
        assert_eq!(s.gauge.get(), 3);
        assert!(!s.serves_first(&headers[0], "pokt1sup", 2));
        assert!(!s.serves_first(&headers[1], "pokt1sup", 2));
        for h in &headers[2..] {
            assert!(s.serves_first(h, "pokt1sup", 2));
        }
        // Revocations and re-records do not grow the order queue without bound.
        for _ in 0..100 {
            s.revoke(&headers[4], "pokt1sup");
            s.record(&headers[4], "pokt1sup", windows(4));
        }
        assert!(s.inner.lock().unwrap().order.len() <= 6);
        assert_eq!(s.inner.lock().unwrap().windows.len(), 3);
    }
}
