//! Group commit of mined relays in front of the storage relay log.
//!
//! Handlers hand relays to one appender task over a bounded channel. The task takes whatever is queued (at most
//! `max_batch_relays`; when the queue is short it waits up to `max_batch_delay_ms` from the first relay for more)
//! and appends it as one batch, with a few batches in flight so one slow commit does not stall the next. With
//! `durable_ack` the handler waits for its batch's append to return (durable); without it, the handler returns at
//! once and a failed batch is logged and counted as dropped. Either way no relay costs a commit of its own.
//!
//! A backend that group-commits concurrent appends itself ([`storage::RelayLog::coalesces_appends`], the
//! embedded redb log with its write-ahead log) gets durable appends straight from the handler: batching here
//! too would only add a task hop and a wake-up to every relay's latency.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Batches appended concurrently at most.
const IN_FLIGHT_BATCHES: usize = 4;
/// Relays queued in front of the appender at most (handlers wait when it is full: backpressure, no OOM).
const QUEUE_RELAYS: usize = 16_384;

type Ack = oneshot::Sender<Result<(), storage::StorageError>>;

/// Observes batch outcomes for metrics.
pub trait LogObserver: Send + Sync {
    /// A batch of `relays` relays was appended (`ok`) or failed.
    fn batch(&self, relays: usize, ok: bool);
    /// A durable append made without batching here (the backend coalesces appends) failed.
    fn append_failed(&self);
    /// A relay appended without durable ack was lost because its batch failed.
    fn dropped(&self, service_id: &str);
}

/// One queued relay.
struct Item {
    relay: storage::MinedRelay,
    service_id: String,
    ack: Option<Ack>,
}

/// Handle to the appender task (cheap to clone; the task ends when every handle is dropped).
#[derive(Clone)]
pub struct LogAppender {
    tx: mpsc::Sender<Item>,
    /// Set when the backend coalesces appends itself: durable appends go straight to it.
    direct: Option<(Arc<dyn storage::RelayLog>, Arc<dyn LogObserver>)>,
}

/// Settings of the appender.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Longest wait for more relays after the first one of a batch.
    pub max_delay: Duration,
    /// Largest batch.
    pub max_relays: usize,
}

impl LogAppender {
    /// Starts the appender over `log`. Must be called inside a tokio runtime.
    pub fn spawn(log: Arc<dyn storage::RelayLog>, settings: BatchSettings, observer: Arc<dyn LogObserver>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_RELAYS);
        let direct = log
            .coalesces_appends()
            .then(|| (Arc::clone(&log), Arc::clone(&observer)));
        tokio::spawn(run(log, rx, settings, observer));
        Self { tx, direct }
    }

    /// Queues `relay`; with `durable` returns once its batch is durable, else once it is queued.
    pub async fn append(
        &self,
        relay: storage::MinedRelay,
        service_id: &str,
        durable: bool,
    ) -> Result<(), storage::StorageError> {
        if durable && let Some((log, observer)) = &self.direct {
            let result = log.append(vec![relay]).await.map(|_| ());
            if let Err(e) = &result {
                observer.append_failed();
                tracing::error!(error = %e, "relay log append failed");
            }
            return result;
        }
        let gone = || storage::StorageError::Unavailable("relay log appender stopped".into());
        let (ack, done) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.tx
            .send(Item {
                relay,
                service_id: service_id.to_string(),
                ack,
            })
            .await
            .map_err(|_| gone())?;
        match done {
            Some(rx) => rx.await.map_err(|_| gone())?,
            None => Ok(()),
        }
    }
}

async fn run(
    log: Arc<dyn storage::RelayLog>,
    mut rx: mpsc::Receiver<Item>,
    settings: BatchSettings,
    observer: Arc<dyn LogObserver>,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_BATCHES));
    let max = settings.max_relays.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.max_delay;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing queued: commit now if a commit slot is free (low latency when idle), else keep
                    // gathering until a slot frees up or the delay is over.
                    if in_flight.available_permits() > 0 {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(item)) => batch.push(item),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let log = Arc::clone(&log);
        let observer = Arc::clone(&observer);
        tokio::spawn(async move {
            let _permit = permit;
            let mut relays = Vec::with_capacity(batch.len());
            let mut acks = Vec::with_capacity(batch.len());
            for item in batch {
                relays.push(item.relay);
                acks.push((item.service_id, item.ack));
            }
            let n = relays.len();
            let result = log.append(relays).await.map(|_| ());
            observer.batch(n, result.is_ok());
            if let Err(e) = &result {
                tracing::error!(error = %e, relays = n, "relay log append failed");
            }
            for (service_id, ack) in acks {
                match ack {
                    Some(ack) => {
                        let _ = ack.send(result.clone());
                    }
                    None if result.is_err() => observer.dropped(&service_id),
                    None => {}
                }
            }
        });
    }
}
