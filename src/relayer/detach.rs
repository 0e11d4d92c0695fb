//! Work a relay handler must finish once it started it, even when hyper drops the handler.
//!
//! hyper drops a handler's future when its gateway disconnects. Most of a relay's work may stop there (a relay
//! abandoned while the backend works is refunded and not mined), but not the append of a mined relay and the
//! settlement of its meter charge: a relay handed to the relay log appender is in the log once the append
//! succeeds, and the miner claims it, so its charge must stay committed and it must count as mined. Were the
//! handler's await of the append simply dropped, the charge would refund itself (its `Drop`) while the relay is
//! claimed anyway: the application's stake meter would under-count what it consumed and the metrics would
//! disagree with the log.
//!
//! [`Detached`] runs such work inline in the handler, as any future (one allocation, no task), and only when it
//! is dropped unfinished hands the rest to a spawned task, which the relayer's shutdown waits for
//! ([`Detachments::idle`]). So the common path costs no task spawn, and the work's outcome is always the real
//! one: the spawned task awaits the same append (no guess about what storage does with an append whose caller
//! went away: with redb the request is already with the WAL or writer thread and is committed regardless; with
//! the memory backend a dropped append would be lost; the batched path's queue task appends regardless), and
//! settles the charge by its result.
//!
//! A streamed answer (module `stream`) runs in such a counted task from the start ([`Detachments::run`]): its
//! handler returns the response head at once, and the relay is mined when the backend's stream ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// Work handed to spawned tasks by dropped [`Detached`] futures and not finished yet (cheap to clone).
#[derive(Clone)]
pub(crate) struct Detachments(Arc<watch::Sender<usize>>);

impl Default for Detachments {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Detachments {
    /// Waits until no detached work is running.
    pub(crate) async fn idle(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: the wait ends only when the count is zero.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Detached work running now.
    pub(crate) fn running(&self) -> usize {
        *self.0.borrow()
    }

    /// Runs `work` in a task of its own from the start, counted here until it ends: work that outlives its handler
    /// by design, e.g. a streamed answer whose relay is mined when the backend's stream ends (module `stream`).
    pub(crate) fn run(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.spawn(Box::pin(work));
    }

    fn spawn(&self, work: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Dropped outside any runtime: nothing can run it any more (the work's own drops settle what they
            // hold, e.g. an uncommitted charge refunds itself).
            tracing::warn!("relay work dropped outside a runtime; not finished");
            return;
        };
        self.0.send_modify(|n| *n += 1);
        let running = Running(self.clone());
        runtime.spawn(async move {
            let _running = running;
            work.await;
        });
    }
}

/// Decrements the count when the spawned work ends (or is dropped with its runtime).
struct Running(Detachments);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A future that finishes even when dropped: polled inline like any future; dropped before it completed, its
/// remaining work goes on in a spawned task counted in its [`Detachments`].
pub(crate) struct Detached<T: Send + 'static> {
    work: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    detachments: Detachments,
}

impl<T: Send + 'static> Detached<T> {
    pub(crate) fn new(detachments: &Detachments, work: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            work: Some(Box::pin(work)),
            detachments: detachments.clone(),
        }
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // `None` only once it returned `Ready`: a future is not polled again after that.
        let Some(work) = self.work.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            self.detachments.spawn(Box::pin(async move {
                work.await;
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::sync::oneshot;

    /// Finished inline: no task. Dropped unfinished: the rest runs in a task, which `idle` waits for.
    #[tokio::test]
    async fn dropped_work_finishes_in_a_task_and_idle_waits_for_it() {
        let detachments = Detachments::default();
        assert_eq!(Detached::new(&detachments, async { 7 }).await, 7);
        assert_eq!(*detachments.0.borrow(), 0);

        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (done_tx, mut done_rx) = oneshot::channel::<()>();
        let work = Detached::new(&detachments, async move {
            go_rx.await.unwrap();
            done_tx.send(()).unwrap();
        });
        // Polled once (pending), then dropped, as hyper drops a handler.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(1), work)
                .await
                .is_err()
        );
        assert_eq!(*detachments.0.borrow(), 1, "the rest runs in a task");
        assert!(done_rx.try_recv().is_err());
        go_tx.send(()).unwrap();
        detachments.idle().await;
        done_rx.await.unwrap();
    }
}
