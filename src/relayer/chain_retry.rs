//! Chain reads of an optimistic relay's settlement, retried while the node is unreachable.
//!
//! In optimistic mode a relay is served before the chain-backed checks (module `sessions`); its validation and
//! costs are read afterwards, in the background. A read that fails because the node is unreachable (restart,
//! upgrade, a load balancer's blip) is not the relay's fault, and the relay was served already: given up at
//! once, it was never mined, work done for nothing. So such a read is tried again with a growing pause, for up
//! to [`RETRY_FOR`]; the relay's settlement keeps its permit meanwhile (the `OPTIMISTIC_IN_FLIGHT` bound), so a
//! long outage fills the permits and later relays settle inline: the gateway then waits instead of being served
//! for nothing. Any other error (an invalid relay) ends it at once. A relay that can no longer be claimed by the
//! time a read succeeds is refused by the append's own window check. A stop waits for these settlements
//! (`Relayer::drain_settlements`) for at most its `SETTLEMENT_DRAIN_LIMIT` (10 s), shorter than [`RETRY_FOR`]:
//! one still retrying then is abandoned (its relay, answered, is not mined), logged and counted (module `drain`).

use std::future::Future;
use std::time::Duration;

use super::RelayError;

/// How long an optimistic relay's chain reads are tried again.
pub(super) const RETRY_FOR: Duration = Duration::from_secs(30);

/// The first pause; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(4);

/// Runs `read` until it succeeds, fails with anything but [`RelayError::Chain`], or `retry_for` has passed (the
/// last error is returned); `on_retry` is called before each pause (a metric).
pub(super) async fn retry_chain_errors<T, F, Fut>(
    retry_for: Duration,
    mut read: F,
    mut on_retry: impl FnMut(),
) -> Result<T, RelayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RelayError>>,
{
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut pause = FIRST_PAUSE;
    loop {
        match read().await {
            Err(RelayError::Chain(e)) if tokio::time::Instant::now() + pause <= deadline => {
                tracing::debug!(error = %e, ?pause, "chain read of a relay served first failed; trying again");
                on_retry();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::chain::query::ChainError;

    fn outage() -> RelayError {
        RelayError::Chain(ChainError::BadResponse("node unreachable".into()))
    }

    /// Failing twice while the node is out, then answering: the read's answer, after pauses of 250 and 500 ms.
    #[tokio::test(start_paused = true)]
    async fn a_read_is_tried_again_until_the_node_answers() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let mut retries = 0;
        let outcome = retry_chain_errors(
            RETRY_FOR,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(outage()),
                    _ => Ok(7),
                }
            },
            || retries += 1,
        )
        .await;
        assert_eq!((outcome.unwrap(), retries), (7, 2));
        assert_eq!(started.elapsed(), Duration::from_millis(750));
    }

    /// Another error (the relay itself is invalid) ends it at once.
    #[tokio::test(start_paused = true)]
    async fn an_invalid_relay_is_not_tried_again() {
        let calls = AtomicU32::new(0);
        let mut retries = 0;
        let outcome = retry_chain_errors(
            RETRY_FOR,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(RelayError::Malformed("bad".into()))
            },
            || retries += 1,
        )
        .await;
        assert!(matches!(outcome, Err(RelayError::Malformed(_))));
        assert_eq!((calls.load(Ordering::SeqCst), retries), (1, 0));
    }

    /// A node out for longer than the retry period: the last error, no later than the period's end, pauses capped
    /// at 4 s.
    #[tokio::test(start_paused = true)]
    async fn an_outage_outlasting_the_period_ends_with_its_error() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let mut retries = 0;
        let outcome = retry_chain_errors(
            RETRY_FOR,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(outage())
            },
            || retries += 1,
        )
        .await;
        assert!(matches!(outcome, Err(RelayError::Chain(_))));
        assert!(started.elapsed() <= RETRY_FOR);
        // 0.25 + 0.5 + 1 + 2 + 4 × 6 = 27.75 s; the next 4 s pause would pass the 30 s.
        assert_eq!(retries, 10);
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        assert_eq!(started.elapsed(), Duration::from_millis(27_750));
    }
}
