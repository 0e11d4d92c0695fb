//! Log throttling for failures that repeat per request.
//!
//! Why: when storage refuses writes (a full disk, Redis OOM, no raft quorum) every relay fails the same way; at
//! 2,000 relays/s one ERROR line per relay is a log storm that buries the first, useful line and costs I/O
//! on a disk that may be the one that is full. The failures are counted in metrics either way; the log keeps
//! the first one and then at most one line per interval, saying how many it left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Admits one log line per interval and counts the ones it holds back.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether to log now: `Some(n)` with the lines held back since the last one admitted, `None` to stay quiet.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`Self::admit`] at `now` (for tests without a clock).
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.last.is_some_and(|t| now.saturating_duration_since(t) < self.every) {
            s.suppressed += 1;
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.suppressed))
    }

    /// Forgets the last line admitted and the count held back: the next [`Self::admit`] passes at once (a new
    /// streak of failures starts).
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_passes_then_one_per_interval_with_the_count_held_back() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit_at(t0), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(t.admit_at(t0 + Duration::from_millis(ms)), None, "{ms} ms");
        }
        assert_eq!(t.admit_at(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(t.admit_at(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_secs(5)), Some(1));
        // A clock read out of order never panics and counts as inside the interval.
        assert_eq!(t.admit_at(t0), None);
    }

    #[test]
    fn after_a_reset_the_next_line_passes_at_once_with_nothing_held_back() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit_at(t0), Some(0));
        assert_eq!(t.admit_at(t0 + Duration::from_millis(100)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_millis(200)), None);
        t.reset();
        assert_eq!(t.admit_at(t0 + Duration::from_millis(300)), Some(0));
        assert_eq!(t.admit_at(t0 + Duration::from_millis(400)), None);
    }
}
