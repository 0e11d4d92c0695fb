//! New-block subscription: every height exactly once, in order, across websocket outages and node restarts.
//!
//! One task per subscription owns a websocket to `/websocket` subscribed to `tm.event='NewBlock'` and a delivery
//! cursor `next`. The two are decoupled on purpose (lessons.md: a slow consumer once stalled claims for 52 min):
//! - the websocket side never waits for the consumer: each event only raises the known `tip` and, if room is
//!   left in a bounded cache (`max_cached_events`), keeps the decoded block. Events at or below the cursor, or
//!   already cached, are duplicates and dropped (counted). This is the coalescing policy: a burst of events while
//!   the consumer is slow collapses into "the tip is now H"; nothing the consumer needs is lost, because
//! - the delivery side hands heights `next, next+1, ..` up to `tip` to the consumer, taking each block from the
//!   cache or fetching it with `block?height=` (a *fill*, counted). Memory stays bounded however far the consumer
//!   lags; it simply catches up through fills.
//!
//! While the websocket is down, the task reconnects with capped exponential backoff (with jitter, so a fleet
//! does not reconnect in lockstep after a node restart) and polls `status` every `poll_interval` so heights keep
//! flowing over plain HTTP. A websocket that is silent longer than `ws_idle_timeout` (CometBFT pings every 27 s)
//! is treated as dead. After each (re)connect the task polls `status` once to learn blocks produced meanwhile,
//! and while connected it still polls every `connected_poll_interval`, in case the node stops feeding a
//! subscription without closing it.
//!
//! A `start_after` below the node's pruning base cannot be served: those fetches fail (counted in
//! `rpc_errors`, logged) and are retried every `fetch_retry`; the consumer must start above the base.
//!
//! Why a bounded `mpsc` and not a `watch`: the miner's session lifecycle needs *every* height (a claim window
//! opening, the proof seed block at exactly proof-window-open − 1, §5.2), and a `watch` keeps only the newest
//! value. Bounded, because the consumer's backlog must not grow without limit; a full channel only pauses the
//! cursor, never the websocket reader. The consumer that fans out to many suppliers is the one that coalesces
//! per supplier.
//!
//! CometBFT has instant finality, so a delivered height is never revoked. A node that comes back *behind* the
//! cursor (restored from an older snapshot) just delays delivery until it passes the cursor again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod metrics;

pub use metrics::SubscriptionCollector;

use super::wire::{self, WsMessage};
use super::{BlockInfo, CometClient, CometError, CometResult};

/// Tunables of a block subscription.
#[derive(Clone, Debug)]
pub struct SubscribeConfig {
    /// Deliver heights strictly above this one (resume after the last height the consumer processed).
    /// `None`: start with the node's latest block at subscription time.
    pub start_after: Option<i64>,
    /// Capacity of the consumer channel.
    pub channel_capacity: usize,
    /// First reconnect delay after the websocket fails.
    pub backoff_initial: Duration,
    /// Cap of the exponential reconnect delay.
    pub backoff_max: Duration,
    /// `status` polling period while the websocket is down; also the heartbeat period.
    pub poll_interval: Duration,
    /// A websocket with no frame at all for this long is dropped and reconnected.
    pub ws_idle_timeout: Duration,
    /// `status` polling period while the websocket is up: a safety net so a subscription the node stopped
    /// feeding without closing it cannot stall delivery for longer than this.
    pub connected_poll_interval: Duration,
    /// Wait after a failed `block?height=` fetch before retrying it.
    pub fetch_retry: Duration,
    /// Blocks decoded from events kept for delivery; beyond this they are refetched later.
    pub max_cached_events: usize,
    /// Largest websocket message accepted (a NewBlock event carries the whole block).
    pub max_ws_message_bytes: usize,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        Self {
            start_after: None,
            channel_capacity: 64,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            ws_idle_timeout: Duration::from_secs(60),
            connected_poll_interval: Duration::from_secs(30),
            fetch_retry: Duration::from_millis(500),
            max_cached_events: 256,
            max_ws_message_bytes: 64 << 20,
        }
    }
}

/// Live counters of one subscription, exported by [`SubscriptionCollector`].
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    /// Successful websocket connections after the first.
    pub reconnects: AtomicU64,
    /// Failed websocket connection attempts.
    pub connect_failures: AtomicU64,
    /// Blocks fetched by height because no event supplied them (gaps, polling mode, cache overflow).
    pub fills: AtomicU64,
    /// NewBlock events received.
    pub ws_events: AtomicU64,
    /// Events dropped because their height was already delivered or cached.
    pub duplicates: AtomicU64,
    /// Events whose block was not cached because the cache was full (refetched later as fills).
    pub cache_overflows: AtomicU64,
    /// Unparseable websocket messages ignored.
    pub bad_messages: AtomicU64,
    /// `status` polls made.
    pub polls: AtomicU64,
    /// Failed `status` polls and `block` fetches.
    pub rpc_errors: AtomicU64,
    /// Blocks handed to the consumer.
    pub delivered: AtomicU64,
    /// Highest height known to exist.
    pub tip: AtomicI64,
    /// Whether the websocket is currently subscribed.
    pub ws_connected: AtomicBool,
    /// Unix milliseconds of the task's last loop iteration; advances at least every `poll_interval`, idle or not.
    pub heartbeat_unix_ms: AtomicU64,
}

/// A point-in-time copy of [`SubscriptionStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`SubscriptionStats::reconnects`].
    pub reconnects: u64,
    /// See [`SubscriptionStats::connect_failures`].
    pub connect_failures: u64,
    /// See [`SubscriptionStats::fills`].
    pub fills: u64,
    /// See [`SubscriptionStats::ws_events`].
    pub ws_events: u64,
    /// See [`SubscriptionStats::duplicates`].
    pub duplicates: u64,
    /// See [`SubscriptionStats::cache_overflows`].
    pub cache_overflows: u64,
    /// See [`SubscriptionStats::bad_messages`].
    pub bad_messages: u64,
    /// See [`SubscriptionStats::polls`].
    pub polls: u64,
    /// See [`SubscriptionStats::rpc_errors`].
    pub rpc_errors: u64,
    /// See [`SubscriptionStats::delivered`].
    pub delivered: u64,
    /// See [`SubscriptionStats::tip`].
    pub tip: i64,
    /// See [`SubscriptionStats::ws_connected`].
    pub ws_connected: bool,
    /// See [`SubscriptionStats::heartbeat_unix_ms`].
    pub heartbeat_unix_ms: u64,
}

impl SubscriptionStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            reconnects: r(&self.reconnects),
            connect_failures: r(&self.connect_failures),
            fills: r(&self.fills),
            ws_events: r(&self.ws_events),
            duplicates: r(&self.duplicates),
            cache_overflows: r(&self.cache_overflows),
            bad_messages: r(&self.bad_messages),
            polls: r(&self.polls),
            rpc_errors: r(&self.rpc_errors),
            delivered: r(&self.delivered),
            tip: self.tip.load(Ordering::Relaxed),
            ws_connected: self.ws_connected.load(Ordering::Relaxed),
            heartbeat_unix_ms: r(&self.heartbeat_unix_ms),
        }
    }

    fn inc(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    fn beat(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.heartbeat_unix_ms.store(ms, Ordering::Relaxed);
    }
}

/// The consumer end of a subscription. Dropping it stops the subscription task.
#[derive(Debug)]
pub struct BlockStream {
    /// Blocks in height order, each exactly once.
    rx: mpsc::Receiver<BlockInfo>,
    /// Shared with the task.
    stats: Arc<SubscriptionStats>,
    /// The task, aborted on drop.
    task: JoinHandle<()>,
}

impl BlockStream {
    /// The next block (height = previous + 1). `None` only if the task ended, which it does not on its own.
    pub async fn recv(&mut self) -> Option<BlockInfo> {
        self.rx.recv().await
    }

    /// The subscription's counters.
    pub fn stats(&self) -> &Arc<SubscriptionStats> {
        &self.stats
    }
}

impl Drop for BlockStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a subscription task on the current tokio runtime; see the module docs for the guarantees.
pub fn subscribe_blocks(client: CometClient, config: SubscribeConfig) -> BlockStream {
    let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
    let stats = Arc::new(SubscriptionStats::default());
    let now = Instant::now();
    let sub = Subscriber {
        next: config.start_after.map(|h| h.saturating_add(1).max(1)),
        backoff: config.backoff_initial,
        client,
        stats: Arc::clone(&stats),
        tx,
        tip: 0,
        cache: BTreeMap::new(),
        ws: None,
        ws_deadline: now,
        reconnect_at: now,
        next_poll: now,
        next_safety_poll: now,
        fetch_blocked_until: None,
        ever_connected: false,
        config,
    };
    let task = tokio::spawn(sub.run());
    BlockStream { rx, stats, task }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// State of the subscription task.
struct Subscriber {
    client: CometClient,
    config: SubscribeConfig,
    stats: Arc<SubscriptionStats>,
    tx: mpsc::Sender<BlockInfo>,
    /// Next height to deliver; `None` until the start is known (`start_after: None`).
    next: Option<i64>,
    /// Highest height known to exist (0 = none yet).
    tip: i64,
    /// Blocks from events, all ≥ `next`, at most `max_cached_events`.
    cache: BTreeMap<i64, BlockInfo>,
    ws: Option<Ws>,
    /// When the websocket counts as dead if it stays silent.
    ws_deadline: Instant,
    /// Current reconnect delay (doubles up to `backoff_max`).
    backoff: Duration,
    reconnect_at: Instant,
    /// Next `status` poll (disconnected) or heartbeat (connected).
    next_poll: Instant,
    /// Next `status` poll while connected.
    next_safety_poll: Instant,
    /// Set after a failed fetch: delivery pauses until then.
    fetch_blocked_until: Option<Instant>,
    ever_connected: bool,
}

/// The next websocket message, or pending forever when there is no websocket.
async fn ws_next(ws: &mut Option<Ws>) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Subscriber {
    async fn run(mut self) {
        loop {
            self.stats.beat();
            let deliverable = self.fetch_blocked_until.is_none() && self.next.is_some_and(|n| n <= self.tip);
            let connected = self.ws.is_some();
            tokio::select! {
                biased;
                () = self.tx.closed() => return,
                permit = self.tx.clone().reserve_owned(), if deliverable => match permit {
                    Ok(permit) => self.deliver_one(permit).await,
                    Err(_) => return,
                },
                msg = ws_next(&mut self.ws), if connected => self.on_ws(msg),
                () = sleep_until(self.ws_deadline), if connected => {
                    tracing::warn!(url = self.client.ws_url(), "CometBFT websocket silent too long, reconnecting");
                    self.disconnect();
                }
                () = sleep_until(self.reconnect_at), if !connected => self.connect().await,
                () = sleep_until(self.next_poll) => {
                    let now = Instant::now();
                    if self.ws.is_none() || self.next.is_none() || now >= self.next_safety_poll {
                        self.poll().await;
                    }
                    self.next_poll = now + self.config.poll_interval;
                }
                () = sleep_until_opt(self.fetch_blocked_until), if self.fetch_blocked_until.is_some() => {
                    self.fetch_blocked_until = None;
                }
            }
        }
    }

    fn raise_tip(&mut self, height: i64) {
        if height > self.tip {
            self.tip = height;
            self.stats.tip.store(height, Ordering::Relaxed);
        }
        if self.next.is_none() && height > 0 {
            // `start_after: None`: the first height learned is the first delivered.
            self.next = Some(height);
        }
    }

    async fn deliver_one(&mut self, permit: mpsc::OwnedPermit<BlockInfo>) {
        let Some(h) = self.next else { return };
        let block = match self.cache.remove(&h) {
            Some(b) => b,
            None => match self.client.block(h).await {
                Ok(b) => {
                    SubscriptionStats::inc(&self.stats.fills);
                    b
                }
                Err(e) => {
                    SubscriptionStats::inc(&self.stats.rpc_errors);
                    tracing::warn!(height = h, error = %e, "fetching a block for the subscription failed");
                    self.fetch_blocked_until = Some(Instant::now() + self.config.fetch_retry);
                    return;
                }
            },
        };
        permit.send(block);
        SubscriptionStats::inc(&self.stats.delivered);
        self.next = Some(h + 1);
    }

    fn on_ws(&mut self, msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        self.ws_deadline = Instant::now() + self.config.ws_idle_timeout;
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                tracing::warn!(url = self.client.ws_url(), "CometBFT websocket closed, reconnecting");
                self.disconnect();
            }
            Some(Ok(Message::Text(text))) => match wire::parse_ws_message(&text) {
                Ok(m) => self.on_ws_message(m),
                Err(e) => {
                    SubscriptionStats::inc(&self.stats.bad_messages);
                    tracing::warn!(error = %e, "ignoring an unreadable CometBFT websocket message");
                }
            },
            // Pings are answered by tungstenite itself; every frame proves the connection alive.
            Some(Ok(_)) => {}
        }
    }

    fn on_ws_message(&mut self, m: WsMessage) {
        match m {
            WsMessage::Ack { .. } => {}
            WsMessage::Error(e) => {
                tracing::warn!(error = %e, "CometBFT cancelled the block subscription, reconnecting");
                self.disconnect();
            }
            WsMessage::NewBlock { height, block } => {
                SubscriptionStats::inc(&self.stats.ws_events);
                self.raise_tip(height);
                let delivered = self.next.is_some_and(|n| height < n);
                if delivered || self.cache.contains_key(&height) {
                    SubscriptionStats::inc(&self.stats.duplicates);
                    return;
                }
                if let Some(b) = block {
                    if self.cache.len() < self.config.max_cached_events {
                        self.cache.insert(height, b);
                    } else {
                        SubscriptionStats::inc(&self.stats.cache_overflows);
                    }
                }
            }
        }
    }

    fn disconnect(&mut self) {
        self.ws = None;
        self.stats.ws_connected.store(false, Ordering::Relaxed);
        let now = Instant::now();
        self.reconnect_at = now + self.jittered_backoff();
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
        // Keep heights flowing over HTTP right away.
        self.next_poll = now;
    }

    /// Equal jitter: half the delay fixed, half random.
    fn jittered_backoff(&self) -> Duration {
        let half = self.backoff / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::random_range(0..=jitter_ms))
    }

    async fn connect(&mut self) {
        let timeout = self.client.config().request_timeout;
        let attempt = tokio::time::timeout(timeout, self.open_subscription()).await;
        let result = attempt.unwrap_or_else(|_| {
            Err(CometError::Timeout {
                method: "subscribe".into(),
                after: timeout,
            })
        });
        match result {
            Ok((ws, early)) => {
                if self.ever_connected {
                    SubscriptionStats::inc(&self.stats.reconnects);
                }
                self.ever_connected = true;
                self.backoff = self.config.backoff_initial;
                self.ws = Some(ws);
                self.ws_deadline = Instant::now() + self.config.ws_idle_timeout;
                self.stats.ws_connected.store(true, Ordering::Relaxed);
                tracing::info!(url = self.client.ws_url(), "subscribed to CometBFT NewBlock events");
                for m in early {
                    self.on_ws_message(m);
                }
                // Learn blocks produced while we were away without waiting for the next event.
                self.poll().await;
            }
            Err(e) => {
                SubscriptionStats::inc(&self.stats.connect_failures);
                tracing::warn!(url = self.client.ws_url(), error = %e, "CometBFT websocket subscribe failed");
                self.reconnect_at = Instant::now() + self.jittered_backoff();
                self.backoff = (self.backoff * 2).min(self.config.backoff_max);
            }
        }
    }

    /// Connects, subscribes and waits for the acknowledgement; events that raced ahead of it are returned.
    async fn open_subscription(&self) -> CometResult<(Ws, Vec<WsMessage>)> {
        let transport = |e: tokio_tungstenite::tungstenite::Error| CometError::Transport {
            method: "subscribe".into(),
            message: e.to_string(),
        };
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_ws_message_bytes))
            .max_frame_size(Some(self.config.max_ws_message_bytes));
        let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            self.client.ws_url(),
            Some(ws_config),
            true,
            self.client.ws_connector(),
        )
        .await
        .map_err(transport)?;
        let req = wire::request(0, "subscribe", serde_json::json!({ "query": wire::NEW_BLOCK_QUERY }));
        ws.send(Message::text(req.to_string())).await.map_err(transport)?;
        let mut early = Vec::new();
        loop {
            match ws.next().await {
                None => {
                    return Err(CometError::Transport {
                        method: "subscribe".into(),
                        message: "websocket closed before the subscription was acknowledged".into(),
                    });
                }
                Some(Err(e)) => return Err(transport(e)),
                Some(Ok(Message::Text(text))) => match wire::parse_ws_message(&text)? {
                    WsMessage::Ack { .. } => return Ok((ws, early)),
                    WsMessage::Error(e) => return Err(e),
                    m @ WsMessage::NewBlock { .. } => early.push(m),
                },
                Some(Ok(Message::Close(_))) => {
                    return Err(CometError::Transport {
                        method: "subscribe".into(),
                        message: "websocket closed by the node".into(),
                    });
                }
                Some(Ok(_)) => {}
            }
        }
    }

    async fn poll(&mut self) {
        SubscriptionStats::inc(&self.stats.polls);
        self.next_safety_poll = Instant::now() + self.config.connected_poll_interval;
        match self.client.status().await {
            Ok(s) => self.raise_tip(s.latest_block_height),
            Err(e) => {
                SubscriptionStats::inc(&self.stats.rpc_errors);
                tracing::debug!(error = %e, "CometBFT status poll failed");
            }
        }
    }
}
