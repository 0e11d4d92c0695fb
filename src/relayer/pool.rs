//! Backend pools: the endpoints (URLs) one backend of a service lists (`backends.{kind}.urls`), which of them a
//! request goes to (`load_balancing`), and a passive circuit breaker per endpoint, as in the Go relayer's `pool`
//! package (behaviour read, not copied).
//!
//! The breaker: a failure is a transport error that is neither a timeout nor the gateway going away, or a 5xx
//! (for gRPC also a server-side `grpc-status`, `forward::mined_status`); `unhealthy_threshold`
//! consecutive failures take the endpoint out; any success resets the count and brings it back. An endpoint
//! taken out is tried again by one request (half-open) each time `recovery_timeout` elapsed since it went down
//! or was last tried; `None` = no half-open try (a success while every endpoint is out, or an active health
//! check, module `health`, brings it back).
//!
//! What "out" means depends on who decides. Without active health checks the breaker only orders the endpoints:
//! a request goes to one in service, and when none is, to one taken out anyway (round robin), never refused for it
//! (fail-open). Relays are money: a backend of one URL, or several taken out by a burst of 5xx answers (which an
//! application's own requests can cause), must not be refused while a node may serve them; and a node back up is
//! found by the next request, not after `recovery_timeout`. With active health checks (module `health`) their
//! verdict is authoritative: an endpoint their probes took out gets no relay (but its half-open try), and when
//! every endpoint is, a relay fails fast as `backend_unavailable` before any work ([`Pool::serves_none`]), as the
//! Go relayer does; endpoints taken out by relays alone are still tried then.
//!
//! Everything here is lock-free atomics on state owned by the endpoint, and time is passed in (`now`), so the
//! logic is unit-tested with an injected clock. Selection allocates nothing: the endpoints already tried by a
//! request are a bit set (a backend lists at most [`crate::config::MAX_BACKEND_ENDPOINTS`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::backend_url::BackendUrl;
pub use crate::config::LoadBalancing;

/// One URL of a backend.
#[derive(Debug)]
pub struct Endpoint {
    /// Its name (`urls[].name`, default `host:port`): metric label and log field.
    pub name: String,
    /// The configured URL.
    pub url: String,
    /// The URL parsed: relay URLs are joined onto it.
    pub target: BackendUrl,
    /// Bounds connections in use to this endpoint (Go `max_conns_per_host`); `None` = no limit.
    pub permits: Option<Arc<Semaphore>>,
    healthy: AtomicBool,
    /// Consecutive failures of relays (passive) and of probes (active).
    failures: AtomicU32,
    /// Consecutive successful probes while taken out.
    probe_successes: AtomicU32,
    /// Consecutive failed probes.
    probe_failures: AtomicU32,
    /// Taken out by the health checks (not by relays alone): with health checks, only such an endpoint is
    /// refused relays (module docs).
    probed_out: AtomicBool,
    /// When it went down or was last tried half-open: nanoseconds since the pool's epoch.
    down_at: AtomicU64,
    /// When it went down (for the downtime logged when it comes back).
    went_down: AtomicU64,
}

impl Endpoint {
    /// An endpoint, healthy.
    pub fn new(name: String, url: String, target: BackendUrl, permits: Option<Arc<Semaphore>>) -> Self {
        Self {
            name,
            url,
            target,
            permits,
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            probe_failures: AtomicU32::new(0),
            probed_out: AtomicBool::new(false),
            down_at: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
        }
    }

    /// Whether it is in service (not taken out by the breaker or the health checks).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// A health change of one endpoint, for its caller to log and put in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Taken out after this many consecutive failures.
    Down {
        /// The failure count.
        failures: u32,
    },
    /// Back in service after this long out.
    Up {
        /// How long it was out.
        downtime: Duration,
    },
}

/// The endpoints of one backend and their selection.
#[derive(Debug)]
pub struct Pool {
    endpoints: Box<[Endpoint]>,
    policy: LoadBalancing,
    next: AtomicUsize,
    unhealthy_threshold: u32,
    recovery_timeout: Option<Duration>,
    epoch: Instant,
}

/// A set of endpoint indexes (the ones a request already tried).
pub type Tried = u64;

impl Pool {
    /// A pool of `endpoints` (at least one; at most 64 are addressable by [`Tried`]). Only active health checks
    /// (module `health`, through [`Pool::record_probe_failure`]) make an endpoint refuse relays (module docs).
    pub fn new(
        endpoints: Vec<Endpoint>,
        policy: LoadBalancing,
        unhealthy_threshold: u32,
        recovery_timeout: Option<Duration>,
        epoch: Instant,
    ) -> Self {
        Self {
            endpoints: endpoints.into_boxed_slice(),
            policy,
            next: AtomicUsize::new(0),
            unhealthy_threshold: unhealthy_threshold.max(1),
            recovery_timeout,
            epoch,
        }
    }

    /// The endpoints in config order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Endpoint `i`.
    pub fn endpoint(&self, i: usize) -> &Endpoint {
        &self.endpoints[i]
    }

    /// How many endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether it has none (never, once built from a valid config).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether an endpoint taken out is due for a half-open try at `now` (read only).
    fn recovery_due(&self, e: &Endpoint, now: Instant) -> bool {
        self.recovery_timeout.is_some_and(|timeout| {
            let since = self.nanos(now).saturating_sub(e.down_at.load(Ordering::Relaxed));
            since >= u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
        })
    }

    /// Whether some endpoint is in service (no clock read: the relay path's common case).
    pub fn any_healthy(&self) -> bool {
        self.endpoints.iter().any(Endpoint::is_healthy)
    }

    /// Whether some endpoint could take a request at `now` (healthy, or due for a half-open try).
    pub fn has_candidate(&self, now: Instant) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.is_healthy() || self.recovery_due(e, now))
    }

    /// Whether a relay arriving at `now` is refused without the backend: health checks took every endpoint out
    /// and none is due for a half-open try (module docs). No clock read while an endpoint is in service.
    pub fn serves_none(&self, now: Instant) -> bool {
        !self.any_healthy()
            && self.endpoints.iter().all(|e| e.probed_out.load(Ordering::Relaxed))
            && !self.has_candidate(now)
    }

    /// Claims endpoint `i` for a request at `now`: yes when healthy; when taken out, yes for the one request
    /// that claims its half-open try once the recovery timeout elapsed (the clock of the next try restarts).
    fn claim(&self, i: usize, now: Instant) -> bool {
        let e = &self.endpoints[i];
        if e.is_healthy() {
            return true;
        }
        let Some(timeout) = self.recovery_timeout else {
            return false;
        };
        let at = e.down_at.load(Ordering::Relaxed);
        let now_nanos = self.nanos(now);
        now_nanos.saturating_sub(at) >= u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
            && e.down_at
                .compare_exchange(at, now_nanos, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The endpoint a request goes to at `now`, none of `tried`: by the pool's policy among the endpoints in
    /// service (round robin: the next one from a shared counter; first healthy: the first in config order); when
    /// none is, one taken out by relays alone (not by health checks) in the same order (module docs); `None`
    /// when every one was tried or health checks took them all out.
    pub fn select(&self, now: Instant, tried: Tried) -> Option<usize> {
        let n = self.endpoints.len();
        let start = match (self.policy, n) {
            (_, 0) => return None,
            (_, 1) => 0,
            (LoadBalancing::RoundRobin, _) => self.next.fetch_add(1, Ordering::Relaxed) % n,
            (LoadBalancing::FirstHealthy, _) => 0,
        };
        let untried = |i: usize| i >= 64 || tried & (1 << i) == 0;
        let mut order = (0..n).map(|k| (start + k) % n);
        order
            .clone()
            .find(|&i| untried(i) && self.claim(i, now))
            .or_else(|| order.find(|&i| untried(i) && !self.endpoints[i].probed_out.load(Ordering::Relaxed)))
    }

    /// A relay (or probe) on endpoint `i` failed at `now`; `Down` when this took it out.
    pub fn record_failure(&self, i: usize, now: Instant) -> Option<Transition> {
        let e = &self.endpoints[i];
        e.probe_successes.store(0, Ordering::Relaxed);
        let failures = e.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if failures >= self.unhealthy_threshold && e.is_healthy() {
            e.down_at.store(self.nanos(now), Ordering::Relaxed);
            e.went_down.store(self.nanos(now), Ordering::Relaxed);
            if e.healthy.swap(false, Ordering::AcqRel) {
                return Some(Transition::Down { failures });
            }
        }
        None
    }

    /// A relay on endpoint `i` succeeded at `now`: the failure count resets and it is back in service; `Up`
    /// when it was out. Writes nothing when it was healthy with no failures (the common case).
    pub fn record_success(&self, i: usize, now: Instant) -> Option<Transition> {
        let e = &self.endpoints[i];
        if e.failures.load(Ordering::Relaxed) != 0 {
            e.failures.store(0, Ordering::Relaxed);
        }
        if e.is_healthy() {
            return None;
        }
        self.bring_up(e, now)
    }

    /// A health probe of endpoint `i` failed at `now`: `unhealthy_threshold` in a row take it out as the
    /// breaker does, and mark it taken out by the health checks (module docs); `Down` when this took it out.
    pub fn record_probe_failure(&self, i: usize, now: Instant) -> Option<Transition> {
        let e = &self.endpoints[i];
        let failures = e.probe_failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let transition = self.record_failure(i, now);
        // Out, and the probes agree: refused relays (an endpoint relays keep serving stays in, whatever probes say).
        if failures >= self.unhealthy_threshold && !e.is_healthy() {
            e.probed_out.store(true, Ordering::Relaxed);
        }
        transition
    }

    /// A health probe of endpoint `i` succeeded at `now`: after `healthy_threshold` in a row an endpoint taken
    /// out is back (`Up`); a healthy one just has its failure count reset.
    pub fn record_probe_success(&self, i: usize, now: Instant, healthy_threshold: u32) -> Option<Transition> {
        let e = &self.endpoints[i];
        e.failures.store(0, Ordering::Relaxed);
        e.probe_failures.store(0, Ordering::Relaxed);
        e.probed_out.store(false, Ordering::Relaxed);
        if e.is_healthy() {
            e.probe_successes.store(0, Ordering::Relaxed);
            return None;
        }
        let successes = e.probe_successes.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if successes >= healthy_threshold.max(1) {
            e.probe_successes.store(0, Ordering::Relaxed);
            return self.bring_up(e, now);
        }
        None
    }

    fn bring_up(&self, e: &Endpoint, now: Instant) -> Option<Transition> {
        e.probed_out.store(false, Ordering::Relaxed);
        e.probe_failures.store(0, Ordering::Relaxed);
        let down_at = e.went_down.load(Ordering::Relaxed);
        if e.healthy.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Transition::Up {
            downtime: Duration::from_nanos(self.nanos(now).saturating_sub(down_at)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pool(n: usize, policy: LoadBalancing, recovery: Option<Duration>) -> (Pool, Instant) {
        let epoch = Instant::now();
        let endpoints = (0..n)
            .map(|i| {
                let url = format!("http://10.0.0.{i}:80");
                Endpoint::new(format!("e{i}"), url.clone(), BackendUrl::parse(&url).unwrap(), None)
            })
            .collect();
        (Pool::new(endpoints, policy, 3, recovery, epoch), epoch)
    }

    #[test]
    fn round_robin_spreads_and_skips_unhealthy_endpoints() {
        let (p, t0) = pool(3, LoadBalancing::RoundRobin, Some(Duration::from_secs(30)));
        let picks: Vec<_> = (0..6).map(|_| p.select(t0, 0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        for _ in 0..2 {
            assert_eq!(p.record_probe_failure(1, t0), None);
        }
        assert_eq!(p.record_probe_failure(1, t0), Some(Transition::Down { failures: 3 }));
        let picks: Vec<_> = (0..4).map(|_| p.select(t0, 0).unwrap()).collect();
        assert_eq!(picks, [0, 2, 2, 0], "endpoint 1 is skipped");
        // A request's retry never goes to an endpoint it tried.
        assert_eq!(p.select(t0, 0b001), Some(2));
        assert_eq!(p.select(t0, 0b101), None);
    }

    #[test]
    fn without_health_checks_every_endpoint_out_still_takes_requests() {
        // Fail-open: the breaker orders the endpoints, only health checks refuse (module docs).
        let (p, t0) = pool(2, LoadBalancing::RoundRobin, None);
        for i in 0..2 {
            for _ in 0..3 {
                p.record_failure(i, t0);
            }
        }
        assert!(!p.any_healthy());
        assert!(!p.serves_none(t0));
        let picks: Vec<_> = (0..4).map(|_| p.select(t0, 0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1], "round robin over the endpoints taken out");
        assert_eq!(p.select(t0, 0b01), Some(1), "never one the request tried");
        assert_eq!(p.select(t0, 0b11), None);
        // One endpoint back in service is preferred again.
        p.record_success(1, t0);
        assert_eq!((p.select(t0, 0), p.select(t0, 0)), (Some(1), Some(1)));
        // With health checks, endpoints their probes took out are refused relays; ones relays took out are not.
        let (p, t0) = pool(2, LoadBalancing::RoundRobin, None);
        for _ in 0..3 {
            p.record_failure(0, t0);
            p.record_probe_failure(1, t0);
        }
        assert!(!p.serves_none(t0));
        assert_eq!((p.select(t0, 0), p.select(t0, 0)), (Some(0), Some(0)));
        for _ in 0..3 {
            p.record_probe_failure(0, t0);
        }
        assert!(p.serves_none(t0));
        assert_eq!(p.select(t0, 0), None);
        // A probe success run brings one back (threshold 1 here).
        assert!(p.record_probe_success(1, t0, 1).is_some());
        assert!(!p.serves_none(t0));
        assert_eq!(p.select(t0, 0), Some(1));
    }

    #[test]
    fn failing_probes_refuse_an_endpoint_only_while_it_is_out() {
        // Probes failing while relays keep the endpoint serving: it stays in, and once relays alone take it out it
        // is still tried (fail-open), not refused as if the probes had taken it out.
        let (p, t0) = pool(1, LoadBalancing::RoundRobin, None);
        for _ in 0..5 {
            p.record_probe_failure(0, t0);
            p.record_success(0, t0);
        }
        assert!(p.endpoint(0).is_healthy());
        for _ in 0..3 {
            p.record_failure(0, t0);
        }
        assert!(!p.endpoint(0).is_healthy());
        assert!(!p.serves_none(t0));
        assert_eq!(p.select(t0, 0), Some(0));
        // Probes failing now, while it is out: refused.
        for _ in 0..3 {
            p.record_probe_failure(0, t0);
        }
        assert!(p.serves_none(t0));
        // One probe success ends the probes' verdict (the endpoint comes back at healthy_threshold).
        assert_eq!(p.record_probe_success(0, t0, 2), None);
        assert!(!p.serves_none(t0));
    }

    #[test]
    fn first_healthy_prefers_config_order() {
        let (p, t0) = pool(3, LoadBalancing::FirstHealthy, None);
        assert_eq!(p.select(t0, 0), Some(0));
        assert_eq!(p.select(t0, 0), Some(0));
        for _ in 0..3 {
            p.record_probe_failure(0, t0);
        }
        assert_eq!(p.select(t0, 0), Some(1));
        assert_eq!(p.select(t0, 0b010), Some(2));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let (p, t0) = pool(2, LoadBalancing::RoundRobin, None);
        p.record_failure(0, t0);
        p.record_failure(0, t0);
        assert_eq!(p.record_success(0, t0), None);
        p.record_failure(0, t0);
        p.record_failure(0, t0);
        assert!(
            p.endpoint(0).is_healthy(),
            "2 failures after a success are below the threshold of 3"
        );
        assert!(p.record_failure(0, t0).is_some());
        assert!(!p.endpoint(0).is_healthy());
    }

    #[test]
    fn half_open_after_the_recovery_timeout_one_request_at_a_time() {
        let (p, t0) = pool(1, LoadBalancing::RoundRobin, Some(Duration::from_secs(30)));
        for _ in 0..3 {
            p.record_probe_failure(0, t0);
        }
        assert!(!p.has_candidate(t0 + Duration::from_secs(29)));
        assert_eq!(p.select(t0 + Duration::from_secs(29), 0), None);
        let t30 = t0 + Duration::from_secs(30);
        assert!(p.has_candidate(t30));
        assert_eq!(p.select(t30, 0), Some(0), "the half-open try");
        assert_eq!(p.select(t30, 0), None, "only one request tries it");
        assert!(!p.has_candidate(t30 + Duration::from_secs(1)));
        // The try failed: out for another recovery timeout.
        assert_eq!(p.record_probe_failure(0, t30), None);
        assert_eq!(p.select(t30 + Duration::from_secs(29), 0), None);
        let t60 = t30 + Duration::from_secs(30);
        assert_eq!(p.select(t60, 0), Some(0));
        assert_eq!(
            p.record_success(0, t60),
            Some(Transition::Up {
                downtime: Duration::from_secs(60)
            })
        );
        assert_eq!(p.select(t60, 0), Some(0));
        assert_eq!(p.select(t60, 0), Some(0));
    }

    #[test]
    fn no_recovery_timeout_means_only_probes_bring_it_back() {
        let (p, t0) = pool(1, LoadBalancing::RoundRobin, None);
        for _ in 0..3 {
            p.record_probe_failure(0, t0);
        }
        let later = t0 + Duration::from_secs(86_400);
        assert!(!p.has_candidate(later));
        assert_eq!(p.select(later, 0), None);
        assert_eq!(p.record_probe_success(0, later, 2), None);
        assert_eq!(
            p.record_probe_success(0, later, 2),
            Some(Transition::Up {
                downtime: Duration::from_secs(86_400)
            })
        );
        assert_eq!(p.select(later, 0), Some(0));
    }
}
