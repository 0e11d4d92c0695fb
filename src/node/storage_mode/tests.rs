//! The storage readiness probe loop: its heartbeat, and a probe that stops answering.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

mod abandoned;

/// The probe loop beats every round.
#[tokio::test]
async fn the_probe_loop_beats() {
    let telemetry = Telemetry::new().unwrap();
    let task = probe_storage(
        telemetry.clone(),
        Duration::from_millis(10),
        PROBE_STALE_AFTER,
        || async { Ok(()) },
    );
    telemetry.assert_heartbeat_advances("storage_probe").await;
    task.abort();
}

/// Polls `telemetry`'s readiness (virtual time: the test runs on a paused clock) until `ready(reasons)` holds.
async fn until(telemetry: &Telemetry, what: &str, ready: impl Fn(&Result<(), Vec<(String, String)>>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = telemetry.readiness();
        if ready(&now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: readiness stayed {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A probe that hangs after answering "ready" used to leave `/ready` at "ready" for as long as it hung: after
/// [`PROBE_STALE_AFTER`] storage counts as not ready (`probe_stalled`), and the hung probe's late answer sets
/// readiness again.
#[tokio::test(start_paused = true)]
async fn a_probe_that_stops_answering_makes_storage_not_ready_after_the_bound() {
    let telemetry = Telemetry::new().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let task = probe_storage(telemetry.clone(), PROBE_EVERY, PROBE_STALE_AFTER, {
        let (calls, release) = (Arc::clone(&calls), Arc::clone(&release));
        move || {
            let (n, release) = (calls.fetch_add(1, Ordering::SeqCst), Arc::clone(&release));
            async move {
                if n == 1 {
                    release.notified().await;
                }
                Ok(())
            }
        }
    });
    // The first probe answers: ready (set explicitly not-ready first, so "ready" is the probe's answer).
    telemetry.set_not_ready("storage", "starting", "no probe yet");
    until(&telemetry, "first probe", Result::is_ok).await;
    let started = tokio::time::Instant::now();
    until(&telemetry, "hung probe", |r| {
        r.as_ref().is_err_and(|reasons| {
            reasons
                .iter()
                .any(|(c, r)| c == "storage" && r.starts_with("probe_stalled"))
        })
    })
    .await;
    // Not before the bound: the second probe started a period after the first.
    assert!(started.elapsed() >= PROBE_STALE_AFTER, "{:?}", started.elapsed());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the hung probe is awaited, not replaced"
    );
    release.notify_one();
    until(&telemetry, "late answer", Result::is_ok).await;
    task.abort();
}
