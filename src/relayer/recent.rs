//! The relays this relayer appended lately, by relay hash, so the same relay is not appended and charged twice.
//!
//! A relay's hash covers its request and its supplier-signed response, and the supplier's signature is
//! deterministic (RFC 6979): a WebSocket backend repeating a message (a keep-alive such as graphql-ws `{"type":
//! "ka"}`) while the gateway's latest request is unchanged, or a gateway replaying a signed request to a backend
//! that answers alike, makes the very same relay again. The session's trie holds it once (its leaf is keyed by the
//! hash), so the chain pays it once; appending and charging it again would only spend the application's budget in
//! the relay meter for nothing, and later relays of the session would be refused as `over_serviced`. A repeat is
//! still answered to the gateway; it is neither appended nor charged (its charge refunded).
//!
//! Bounded: the last [`CAPACITY`] hashes, oldest forgotten first (a repeat after that is appended again, which
//! costs budget, never money). Per process: relayers sharing a session each remember their own. A hash is recorded
//! only once its relay's append is durable, or without `durable_ack` once its batch is appended (or the relay was
//! kept below the difficulty target, charged, not appended), so a relay whose append failed, or whose batch is still
//! in flight, is appended when it comes again. Two repeats arriving together may both be appended (the check and the record are apart, around the
//! append): the chain still pays one. Pure data and one mutex held for a set lookup; no IO.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Hashes remembered at most (~3 MB).
pub const CAPACITY: usize = 65_536;

/// The recently appended relay hashes.
#[derive(Debug, Default)]
pub struct RecentRelays {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl RecentRelays {
    /// Whether the relay with `hash` was appended lately.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.inner.lock().is_ok_and(|inner| inner.set.contains(hash))
    }

    /// Records that the relay with `hash` was appended.
    pub fn insert(&self, hash: [u8; 32]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.set.insert(hash) {
            return;
        }
        inner.order.push_back(hash);
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_capacity_hashes() {
        let r = RecentRelays::default();
        let h = |i: usize| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_be_bytes());
            h
        };
        assert!(!r.contains(&h(0)));
        r.insert(h(0));
        r.insert(h(0));
        assert!(r.contains(&h(0)));
        for i in 1..=CAPACITY {
            r.insert(h(i));
        }
        assert!(!r.contains(&h(0)), "the oldest forgotten");
        assert!(r.contains(&h(1)) && r.contains(&h(CAPACITY)));
    }
}
