//! A process-wide budget of request-body bytes buffered at once (`relay_server.max_body_bytes_in_flight`).
//!
//! Every request buffers its body whole (≤ the service's `max_body_size_bytes`) before it is decoded, and keeps it
//! (with the copies decoding makes) until its answer is sent. Without a bound, `max_connections` connections ×
//! HTTP/2 streams × 10 MiB bodies could take far more memory than the machine has. Each request reserves its body
//! bytes here before reading them: all of it up front when the client declared a `Content-Length`, chunk by chunk
//! as the body arrives otherwise. A reservation that cannot be had within `relay_server.body_budget_wait_ms` is
//! refused with `overloaded` (code 17, HTTP 503, counted in `ha_relayer_relays_rejected_total{reason="overloaded"}`),
//! so a gateway can retry elsewhere instead of the process running out of memory. The bytes are released when the
//! request's handler returns, or, for a relay whose gateway left while it was being mined, when that work ends
//! (module `detach`: such work is bounded by this budget as live relays are);
//! `ha_relayer_request_body_bytes_in_flight` shows what is reserved.
//!
//! Cost on the relay path: one uncontended semaphore acquire and release, and two gauge updates, per request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::RelayError;

/// The shared budget.
#[derive(Debug)]
pub(super) struct BodyBudget {
    /// One permit per byte.
    bytes: Arc<Semaphore>,
    /// The budget's size (a single reservation never asks for more, so it can always be satisfied eventually).
    total: usize,
    /// How long a reservation may wait for bytes to be released.
    wait: Duration,
    /// Bytes reserved now.
    gauge: prometheus::IntGauge,
}

/// Bytes reserved by one request; released when dropped.
#[derive(Debug)]
pub(super) struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    gauge: Option<prometheus::IntGauge>,
}

impl Reserved {
    /// A reservation of nothing (no budget configured).
    pub(super) fn none() -> Self {
        Self {
            permit: None,
            gauge: None,
        }
    }

    fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.sub(i64::try_from(self.bytes()).unwrap_or(i64::MAX));
        }
    }
}

impl BodyBudget {
    /// A budget of `total` bytes (at least 1); reservations wait at most `wait`.
    pub(super) fn new(total: usize, wait: Duration, gauge: prometheus::IntGauge) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            wait,
            gauge,
        }
    }

    /// Adds `bytes` to `held`, waiting at most the configured wait for them.
    pub(super) async fn reserve(&self, held: &mut Reserved, bytes: usize) -> Result<(), RelayError> {
        // Never more than the whole budget at once (it could never be granted); `validate` keeps the budget at
        // least as large as the largest body limit.
        let want = bytes.min(self.total.saturating_sub(held.bytes()));
        if want == 0 {
            return Ok(());
        }
        let n = u32::try_from(want).unwrap_or(u32::MAX);
        let permit = match Arc::clone(&self.bytes).try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(self.wait, Arc::clone(&self.bytes).acquire_many_owned(n)).await {
                Ok(Ok(permit)) => permit,
                // Timed out (or, never, closed): too many bytes buffered by other requests.
                Ok(Err(_)) | Err(_) => {
                    return Err(RelayError::Overloaded {
                        budget: self.total,
                        waited: self.wait,
                    });
                }
            },
        };
        self.gauge.add(i64::from(n));
        match &mut held.permit {
            Some(p) => p.merge(permit),
            None => held.permit = Some(permit),
        }
        held.gauge.get_or_insert_with(|| self.gauge.clone());
        Ok(())
    }

    /// Releases what `held` holds beyond `keep` bytes.
    pub(super) fn shrink(&self, held: &mut Reserved, keep: usize) {
        let surplus = held.bytes().saturating_sub(keep);
        if let Some(permit) = held.permit.as_mut()
            && let Some(freed) = permit.split(surplus).filter(|_| surplus > 0)
        {
            self.gauge.sub(i64::try_from(freed.num_permits()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn gauge() -> prometheus::IntGauge {
        prometheus::IntGauge::new("test_bytes_in_flight", "test").unwrap()
    }

    #[tokio::test]
    async fn a_shrunk_reservation_releases_its_surplus_at_once() {
        let g = gauge();
        let budget = BodyBudget::new(100, Duration::from_millis(20), g.clone());
        let mut a = Reserved::none();
        budget.reserve(&mut a, 90).await.unwrap();
        budget.shrink(&mut a, 30);
        assert_eq!((a.bytes(), g.get()), (30, 30));
        budget.shrink(&mut a, 50);
        assert_eq!((a.bytes(), g.get()), (30, 30), "never grows");
        let mut b = Reserved::none();
        budget.reserve(&mut b, 70).await.unwrap();
        drop(a);
        assert_eq!(g.get(), 70);
    }

    #[tokio::test]
    async fn reservations_beyond_the_budget_wait_then_are_refused_and_drops_release() {
        let g = gauge();
        let budget = BodyBudget::new(100, Duration::from_millis(20), g.clone());
        let mut a = Reserved::none();
        budget.reserve(&mut a, 60).await.unwrap();
        budget.reserve(&mut a, 30).await.unwrap();
        assert_eq!((a.bytes(), g.get()), (90, 90));
        let mut b = Reserved::none();
        match budget.reserve(&mut b, 20).await {
            Err(RelayError::Overloaded { budget: 100, .. }) => {}
            other => panic!("expected overloaded, got {other:?}"),
        }
        assert_eq!(g.get(), 90);
        // A waiting reservation gets the bytes a finishing request releases.
        let waiting = tokio::spawn(async move {
            let budget = budget;
            let mut b = Reserved::none();
            let r = budget.reserve(&mut b, 20).await;
            (r.is_ok(), b.bytes())
        });
        tokio::task::yield_now().await;
        drop(a);
        assert_eq!(waiting.await.unwrap(), (true, 20));
        assert_eq!(g.get(), 0, "every reservation released");
    }

    #[tokio::test]
    async fn one_reservation_never_asks_for_more_than_the_budget() {
        let budget = BodyBudget::new(10, Duration::from_millis(1), gauge());
        let mut a = Reserved::none();
        budget.reserve(&mut a, 1000).await.unwrap();
        assert_eq!(a.bytes(), 10);
    }
}
